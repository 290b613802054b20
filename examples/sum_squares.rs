//! Is a pool worth it? The same CPU-bound job timed in one process, then split over a pool of
//! one worker per core, with the measured speed-up printed next to the core count.
//!
//! The job: the sum of the squares of 0..10⁷ — **plus**, for every number, 64 rounds of integer
//! mixing whose result is thrown away. Rust sums plain squares about a hundred times faster
//! than CPython (10⁷ of them take a few milliseconds, less than a pool's messages), so without
//! the extra rounds there would be nothing to share; the program says so when it runs. The
//! sum itself is checked against the closed formula.
//!
//! ```python
//! def sum_squares(bounds):
//!     lo, hi = bounds
//!     return sum(i * i for i in range(lo, hi))
//!
//! if __name__ == '__main__':
//!     chunks = [(k * N // 8, (k + 1) * N // 8) for k in range(8)]
//!     t = time.perf_counter(); single = sum(map(sum_squares, chunks)); ...
//!     with Pool(os.cpu_count()) as p:
//!         t = time.perf_counter(); pooled = sum(p.map(sum_squares, chunks)); ...
//! ```
//!
//! Each way is timed three times, alternating, and the fastest run of each is kept, so that a
//! moment of load on the machine does not decide the result. A pool of `n` workers can at best be `n`× faster, and
//! never more than the number of cores: the program prints that bound too.
//!
//! Other programs running at the same time take cores away from the pool: on Linux the program
//! prints the load average before it starts, so that a low speed-up on a busy machine is seen
//! for what it is.
//!
//! Run it with `cargo run --release -p multiproc-examples --bin sum_squares`; an argument sets
//! how many numbers (10⁷ by default; a debug build wants fewer: `sum_squares 1000000`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use multiproc::Pool;

/// How many numbers, unless the first argument says.
const N: u64 = 10_000_000;
/// Extra mixing rounds per number: the CPU work that makes the job worth splitting.
const ROUNDS: u32 = 64;
/// Pieces the range is cut into (more than cores, so a worker that finishes early takes more).
const CHUNKS: u64 = 8;
/// Timed runs of each way; the fastest is reported.
const RUNS: usize = 3;

/// Σ i² over `lo..hi`, each number also passed through `ROUNDS` mixing rounds (and
/// `black_box`) so the compiler can neither skip the work nor turn the loop into a formula.
fn sum_squares((lo, hi): (u64, u64)) -> u128 {
    let mut acc: u128 = 0;
    for i in lo..hi {
        let mut x = black_box(i);
        for _ in 0..ROUNDS {
            x = x.rotate_left(7) ^ x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        black_box(x);
        acc += u128::from(i) * u128::from(i);
    }
    acc
}

/// Time `f` once.
fn timed<T>(
    f: impl FnOnce() -> Result<T, multiproc::PoolError>,
) -> Result<(Duration, T), multiproc::PoolError> {
    let t = Instant::now();
    let v = f()?;
    Ok((t.elapsed(), v))
}

/// The 1-minute load average (runnable processes, Linux only): how many cores others use.
fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[multiproc::main]
fn main() -> Result<(), multiproc::PoolError> {
    let n: u64 = match std::env::args().nth(1) {
        None => N,
        Some(a) => {
            a.parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(multiproc::PoolError::InvalidArgument(
                    "the argument is how many numbers to sum, a positive integer",
                ))?
        }
    };
    let chunks: Vec<(u64, u64)> = (0..CHUNKS)
        .map(|k| (k * n / CHUNKS, (k + 1) * n / CHUNKS))
        .collect();
    let cores = multiproc::cpu_count();
    println!(
        "job: sum of the squares of 0..{n}, each number also put through {ROUNDS} rounds of \
         integer mixing (the CPU work), in {CHUNKS} chunks"
    );

    if let Some(load) = load_average() {
        println!("load average before the run: {load:.2} on {cores} cores (busy cores lower the speed-up)");
    }

    let pool = Pool::new(cores)?;
    pool.map(sum_squares, vec![(0, 1); cores])?; // the workers are up: time the work, not the start
                                                 // Alternate the two ways, so that a burst of load from other programs hits both alike.
    let (mut single_t, mut pooled_t) = (Duration::MAX, Duration::MAX);
    let (mut single, mut pooled) = (0u128, 0u128);
    for _ in 0..RUNS {
        let (t, v) = timed(|| Ok(chunks.iter().map(|&c| sum_squares(c)).sum::<u128>()))?;
        (single_t, single) = (single_t.min(t), v);
        let (t, v) = timed(|| Ok(pool.map(sum_squares, chunks.clone())?.into_iter().sum()))?;
        (pooled_t, pooled) = (pooled_t.min(t), v);
    }

    assert_eq!(single, pooled);
    let expected = u128::from(n - 1) * u128::from(n) * u128::from(2 * n - 1) / 6;
    assert_eq!(single, expected);
    println!("sum = {single} (checked against n(n-1)(2n-1)/6)");
    println!(
        "one process:          {:.3} s (fastest of {RUNS})",
        single_t.as_secs_f64()
    );
    println!(
        "pool of {cores} workers:    {:.3} s (fastest of {RUNS})",
        pooled_t.as_secs_f64()
    );
    let speedup = single_t.as_secs_f64() / pooled_t.as_secs_f64();
    println!(
        "measured speed-up:    {speedup:.2}x on {cores} cores (the most {cores} workers can give is {cores}x{})",
        if speedup > cores as f64 {
            "; above it is timing noise"
        } else {
            ""
        }
    );
    Ok(())
}
