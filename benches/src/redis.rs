//! The Redis backend's workloads: `redis_apply_rtt` (p50 of a synchronous task's round trip),
//! `redis_map_chunk1` (tasks/s, chunksize 1) and `redis_map_tiny` (items/s, default chunks),
//! with 2 workers of this binary in worker mode and a `redis-server` of our own on a free
//! loopback port (without persistence), as the tests' fixture does. Skipped, with a notice on
//! stderr, where `redis-server` is not installed.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::Pool;

use crate::{report, report_rate, Opts, Res};

fn square(x: u64) -> u64 {
    x * x
}

const WORKERS: usize = 2;

// The fixture of the pool's Redis tests: the server's command line, `die_with_us`, `PING`.
#[path = "../../crates/pool/tests/redis_support/server.rs"]
mod server;

use server::{answers_within, die_with_us, server_command};

/// Kills its children on drop (the server last).
struct Kids(Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in self.0.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn run(opts: &Opts) -> Res {
    let names = ["redis_apply_rtt", "redis_map_chunk1", "redis_map_tiny"];
    if !names.iter().any(|n| opts.want(n)) {
        return Ok(());
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let server = match server_command("redis-server", port)
        .stdout(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "multiproc-bench: redis-server cannot start ({e}): skipping the redis_* rows"
            );
            return Ok(());
        }
    };
    let mut kids = Kids(vec![server]);
    let url = format!("redis://127.0.0.1:{port}");
    if !answers_within(port, Duration::from_secs(10)) {
        return Err("redis-server did not answer in 10 s".into());
    }
    kids.0.push(
        die_with_us(&mut Command::new(std::env::current_exe()?))
            .args(["--multiproc-worker", &url, "--cluster", "bench"])
            .args(["-j", &WORKERS.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?,
    );
    let pool = Pool::builder()
        .redis(url, "bench")
        .discover_timeout(Duration::from_secs(20))
        .build()?;
    if pool.processes() != WORKERS {
        return Err(format!(
            "{} redis workers registered, not {WORKERS}",
            pool.processes()
        )
        .into());
    }
    let q = if opts.quick { 10 } else { 1 };
    pool.map(square, 0..100)?; // warm
    if opts.want("redis_apply_rtt") {
        let n = 4_000 / q;
        let mut times = Vec::with_capacity(n);
        for i in 0..n as u64 {
            let t = Instant::now();
            let r = pool.apply_async(square, i)?.get()?;
            times.push(t.elapsed());
            if r != i * i {
                return Err(format!("redis apply: square({i}) gave {r}").into());
            }
        }
        times.sort_unstable();
        report(
            "redis_apply_rtt",
            times[n / 2].as_secs_f64() * 1e6,
            &format!(
                "us/round trip (p50; p99 {:.0} us)",
                times[n * 99 / 100].as_secs_f64() * 1e6
            ),
        );
    }
    if opts.want("redis_map_chunk1") {
        let n = 20_000 / q;
        report_rate(
            "redis_map_chunk1",
            "tasks/s (chunksize=1, 2 workers)",
            n,
            || pool.map_chunked(square, 0..n as u64, 1),
            |out| check(&out, n),
        )?;
    }
    if opts.want("redis_map_tiny") {
        let n = 2_000_000 / q;
        report_rate(
            "redis_map_tiny",
            "items/s (default chunksize, 2 workers)",
            n,
            || pool.map(square, 0..n as u64),
            |out| check(&out, n),
        )?;
    }
    drop(pool);
    drop(kids);
    Ok(())
}

fn check(out: &[u64], n: usize) -> Res {
    if out.len() != n || out.iter().enumerate().any(|(i, &r)| r != (i * i) as u64) {
        return Err(format!("redis pool returned wrong results ({} of {n})", out.len()).into());
    }
    Ok(())
}
