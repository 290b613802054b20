//! The sum of the squares of 0..10⁷, split into 4 chunks: one process, then a pool of 4, with
//! both times printed — the textbook "is it worth it?" measurement.
//!
//! ```python
//! def sum_squares(bounds):
//!     lo, hi = bounds
//!     return sum(i * i for i in range(lo, hi))
//!
//! if __name__ == '__main__':
//!     chunks = [(k * N // 4, (k + 1) * N // 4) for k in range(4)]
//!     t = time.perf_counter(); single = sum(map(sum_squares, chunks)); ...
//!     with Pool(4) as p:
//!         t = time.perf_counter(); pooled = sum(p.map(sum_squares, chunks)); ...
//! ```
//!
//! Rust does the sum about a hundred times faster than CPython, so the work per square is made
//! heavier (a few rounds of integer mixing) to keep it CPU-bound enough for the pool to show.
//! On a machine with fewer than 4 cores the pool's speed-up is capped by the cores.
//!
//! Run it with `cargo run --release -p multiproc-examples --bin sum_squares`.

use std::hint::black_box;
use std::time::Instant;

use multiproc::Pool;

const N: u64 = 10_000_000;

/// Σ i² over `lo..hi`, each square passed through some mixing rounds (and `black_box`) so the
/// compiler cannot turn the loop into a closed formula.
fn sum_squares((lo, hi): (u64, u64)) -> u128 {
    let mut acc: u128 = 0;
    for i in lo..hi {
        let mut x = black_box(i);
        for _ in 0..64 {
            x = x.rotate_left(7) ^ x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        black_box(x);
        acc += u128::from(i) * u128::from(i);
    }
    acc
}

#[multiproc::main]
fn main() -> Result<(), multiproc::PoolError> {
    let chunks: Vec<(u64, u64)> = (0..4).map(|k| (k * N / 4, (k + 1) * N / 4)).collect();

    let t = Instant::now();
    let single: u128 = chunks.iter().map(|&c| sum_squares(c)).sum();
    let single_t = t.elapsed();

    let pool = Pool::new(4)?;
    pool.apply(sum_squares, (0, 1))?; // the workers are up: time the work, not the start
    let t = Instant::now();
    let pooled: u128 = pool.map(sum_squares, chunks)?.into_iter().sum();
    let pooled_t = t.elapsed();

    assert_eq!(single, pooled);
    let expected = u128::from(N - 1) * u128::from(N) * u128::from(2 * N - 1) / 6;
    assert_eq!(single, expected);
    println!("sum of squares of 0..{N} = {single}");
    println!("single process: {:.3} s", single_t.as_secs_f64());
    println!(
        "pool of 4:      {:.3} s ({:.2}x on {} cores)",
        pooled_t.as_secs_f64(),
        single_t.as_secs_f64() / pooled_t.as_secs_f64(),
        multiproc::cpu_count()
    );
    Ok(())
}
