//! The pool workloads: `pool_start`, `map_tiny`, `map_tiny_bar`, `map_chunk1`, `imap_unordered`,
//! `apply_async_rtt`, `map_cpu_speedup` — the same as `python_baseline.py`'s, with its sizes.

use std::hint::black_box;
use std::time::Instant;

use multiproc::Pool;

use crate::{report, report_rate, Opts, Res};

/// Python's `square`.
fn square(x: u64) -> u64 {
    x * x
}

/// The target of `pool_start`'s first result.
fn noop(_: ()) {}

/// Python's `spin`: a CPU-bound loop.
fn spin(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        acc = (acc + black_box(i) * i) % 1_000_003;
    }
    acc
}

/// Workers of every pool here, as in Python's baseline.
const PROCS: usize = 2;

pub(crate) fn run(opts: &Opts) -> Res {
    let q = if opts.quick { 10 } else { 1 };

    if opts.want("pool_start") {
        // (more pools than Python's 5: ours take ~1 ms, and a mean of 5 swings with one hiccup)
        let n = 20;
        let t = Instant::now();
        for _ in 0..n {
            let pool = Pool::new(PROCS)?;
            pool.apply(noop, ())?;
            drop(pool);
        }
        report(
            "pool_start",
            t.elapsed().as_secs_f64() / n as f64 * 1e3,
            "ms/pool(2 workers, first result)",
        );
    }

    // The shared pool only for the workloads that use it (`--only spawn_join,pipe_rtt` runs
    // where no pool can start yet, as under Wine).
    let with_the_pool = [
        "map_tiny",
        "map_tiny_bar",
        "map_chunk1",
        "imap_unordered",
        "apply_async_rtt",
        "map_cpu",
    ];
    if !with_the_pool.iter().any(|w| opts.want(w)) {
        return Ok(());
    }
    let pool = Pool::new(PROCS)?;
    pool.map(square, 0..100)?; // warm, as in Python
    if opts.want("map_tiny") {
        let n = 200_000 / q;
        report_rate(
            "map_tiny",
            "tasks/s (default chunksize)",
            n,
            || pool.map(square, 0..n as u64),
            |out| check(&out, n),
        )?;
    }
    if opts.want("map_tiny_bar") {
        // map_tiny with a (hidden) progress bar counting every item: what the bar costs.
        let n = 200_000 / q;
        let bar = multiproc::pool::ProgressBar::hidden("bench");
        report_rate(
            "map_tiny_bar",
            "tasks/s (default chunksize, with a progress bar)",
            n,
            || pool.map_with_this_bar(square, 0..n as u64, None, &bar),
            |out| check(&out, n),
        )?;
    }
    if opts.want("map_chunk1") {
        let n = 20_000 / q;
        report_rate(
            "map_chunk1",
            "tasks/s (chunksize=1)",
            n,
            || pool.map_chunked(square, 0..n as u64, 1),
            |out| check(&out, n),
        )?;
    }
    if opts.want("imap_unordered") {
        let n = 20_000 / q;
        report_rate(
            "imap_unordered",
            "tasks/s (chunksize=1)",
            n,
            || pool.imap_unordered(square, 0..n as u64, 1)?.collect(),
            |mut out: Vec<u64>| {
                out.sort_unstable();
                check(&out, n)
            },
        )?;
    }
    if opts.want("apply_async_rtt") {
        let n = 5_000 / q;
        let t = Instant::now();
        for i in 0..n as u64 {
            let r = pool.apply_async(square, i)?.get()?;
            if r != i * i {
                return Err(format!("apply_async: square({i}) gave {r}").into());
            }
        }
        report(
            "apply_async_rtt",
            t.elapsed().as_secs_f64() / n as f64 * 1e6,
            "us/round trip",
        );
    }
    if opts.want("map_cpu") {
        // Python spins 300 000 times per task; Rust runs that loop ~100x faster, so each task
        // spins 100x longer here to keep tasks long next to the pool's own overhead.
        let work = vec![30_000_000u64; 16];
        let t = Instant::now();
        let seq: Vec<u64> = work.iter().map(|&w| spin(w)).collect();
        let seq_t = t.elapsed();
        let t = Instant::now();
        let par = pool.map_chunked(spin, work, 1)?;
        let par_t = t.elapsed();
        if seq != par {
            return Err("map_cpu: pool results differ from sequential ones".into());
        }
        report(
            "map_cpu_speedup",
            seq_t.as_secs_f64() / par_t.as_secs_f64(),
            &format!("x on {PROCS} workers (ideal {PROCS})"),
        );
    }
    Ok(())
}

/// `out` must be the squares of `0..n`.
fn check(out: &[u64], n: usize) -> Res {
    if out.len() != n || out.iter().enumerate().any(|(i, &r)| r != (i * i) as u64) {
        return Err(format!("pool returned wrong results ({} of {n})", out.len()).into());
    }
    Ok(())
}
