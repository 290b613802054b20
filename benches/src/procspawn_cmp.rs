//! procspawn's process pool on the pool workloads it has an equivalent for: `pool_start`,
//! `apply_async_rtt` (spawn + join of one small task) and `map_chunk1` (20 000 tasks, each its
//! own job). Printed as `procspawn_<workload>`; `cargo xtask bench` sets them next to ours.

use std::time::Instant;

use crate::{report, Opts, Res};

fn square(x: u64) -> u64 {
    x * x
}

fn noop(_: ()) {}

pub(crate) fn run(opts: &Opts) -> Res {
    let q = if opts.quick { 10 } else { 1 };
    if opts.want("procspawn_pool_start") {
        let n = 5;
        let t = Instant::now();
        for _ in 0..n {
            let pool = procspawn::Pool::new(2)?;
            pool.spawn((), noop).join()?;
            pool.kill();
        }
        report(
            "procspawn_pool_start",
            t.elapsed().as_secs_f64() / n as f64 * 1e3,
            "ms/pool(2 workers, first result)",
        );
    }
    if !opts.want("procspawn_apply_async_rtt") && !opts.want("procspawn_map_chunk1") {
        return Ok(());
    }
    let pool = procspawn::Pool::new(2)?;
    pool.spawn(0u64, square).join()?; // warm
    if opts.want("procspawn_apply_async_rtt") {
        let n = 2_000 / q;
        let t = Instant::now();
        for i in 0..n as u64 {
            let r = pool.spawn(i, square).join()?;
            if r != i * i {
                return Err(format!("procspawn: square({i}) gave {r}").into());
            }
        }
        report(
            "procspawn_apply_async_rtt",
            t.elapsed().as_secs_f64() / n as f64 * 1e6,
            "us/round trip",
        );
    }
    if opts.want("procspawn_map_chunk1") {
        // Every queued job holds two IPC channels (descriptors): 20 000 at once exhaust the
        // descriptor limit, so they go in batches of 256.
        let n = 20_000 / q;
        let t = Instant::now();
        let mut first = 0u64;
        while first < n as u64 {
            let last = (first + 256).min(n as u64);
            let handles: Vec<_> = (first..last).map(|i| pool.spawn(i, square)).collect();
            for (i, h) in (first..last).zip(handles) {
                let r = h.join()?;
                if r != i * i {
                    return Err(format!("procspawn: square({i}) gave {r}").into());
                }
            }
            first = last;
        }
        report(
            "procspawn_map_chunk1",
            n as f64 / t.elapsed().as_secs_f64(),
            "tasks/s (one job per task, 256 queued at a time)",
        );
    }
    pool.kill();
    Ok(())
}
