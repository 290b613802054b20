//! The Redis backend's workloads: `redis_ping_rtt` (p50 of a `PING`, interleaved with the next
//! row's round trips: the server's round trip, of which a task takes at least two),
//! `redis_apply_rtt` (p50 of a synchronous task's round trip),
//! `redis_apply_rtt_signed` (the same with an authkey: tasks and answers signed and checked),
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
    let names = [
        "redis_ping_rtt",
        "redis_apply_rtt",
        "redis_apply_rtt_signed",
        "redis_map_chunk1",
        "redis_map_tiny",
    ];
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
    // Workers for unsigned pools, and workers with an authkey for signed ones (the key id
    // is part of the stream keys: the two sets never see each other's tasks).
    let signed = opts.want("redis_apply_rtt_signed");
    for env in [None, Some(AUTHKEY)] {
        if env.is_some() && !signed {
            continue;
        }
        let mut cmd = Command::new(std::env::current_exe()?);
        if let Some(key) = env {
            cmd.env("MULTIPROC_REDIS_AUTHKEY", key);
        }
        kids.0.push(
            die_with_us(&mut cmd)
                .args(["--multiproc-worker", &url, "--cluster", "bench"])
                .args(["-j", &WORKERS.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()?,
        );
    }
    let pool = Pool::builder()
        .redis(&url, "bench")
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
    if opts.want("redis_apply_rtt") || opts.want("redis_ping_rtt") {
        let pinger = if opts.want("redis_ping_rtt") {
            Some(Pinger::new(port)?)
        } else {
            None
        };
        apply_rtt(&pool, "redis_apply_rtt", 4_000 / q, pinger)?;
    }
    if signed {
        let signed = Pool::builder()
            .redis(&url, "bench")
            .authkey(AUTHKEY)
            .discover_timeout(Duration::from_secs(20))
            .build()?;
        signed.map(square, 0..100)?; // warm
        apply_rtt(&signed, "redis_apply_rtt_signed", 4_000 / q, None)?;
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

/// The authkey of the signed rows.
const AUTHKEY: &str = "bench authkey";

/// A `PING` on a loopback connection of its own (`TCP_NODELAY`, RESP by hand): the round trip
/// through the server that a task takes at least twice (driver to worker through Redis, and
/// back).
struct Pinger(std::net::TcpStream);

impl Pinger {
    fn new(port: u16) -> Result<Pinger, Box<dyn std::error::Error>> {
        let s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Pinger(s))
    }

    fn ping(&mut self) -> Result<Duration, Box<dyn std::error::Error>> {
        use std::io::{Read, Write};
        let mut buf = [0u8; 7];
        let t = Instant::now();
        self.0.write_all(b"PING\r\n")?;
        self.0.read_exact(&mut buf)?;
        let took = t.elapsed();
        if &buf != b"+PONG\r\n" {
            return Err(format!("redis-server answered PING with {buf:?}").into());
        }
        Ok(took)
    }
}

fn p50_p99(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort_unstable();
    let n = times.len();
    (
        times[n / 2].as_secs_f64() * 1e6,
        times[n * 99 / 100].as_secs_f64() * 1e6,
    )
}

/// Report the p50 (and p99) of `n` synchronous `apply_async(..).get()` round trips; with a
/// pinger, a `PING` before each one too, reported as `redis_ping_rtt` (interleaved, so both
/// figures see the same machine: on a VM whose CPU is throttled under sustained load, a run of
/// PINGs alone starts ten times faster than it goes on).
fn apply_rtt(pool: &Pool, name: &str, n: usize, mut pinger: Option<Pinger>) -> Res {
    let mut times = Vec::with_capacity(n);
    let mut pings = Vec::with_capacity(n);
    for i in 0..n as u64 {
        if let Some(p) = pinger.as_mut() {
            pings.push(p.ping()?);
        }
        let t = Instant::now();
        let r = pool.apply_async(square, i)?.get()?;
        times.push(t.elapsed());
        if r != i * i {
            return Err(format!("redis apply: square({i}) gave {r}").into());
        }
    }
    if !pings.is_empty() {
        let (p50, p99) = p50_p99(pings);
        report(
            "redis_ping_rtt",
            p50,
            &format!(
                "us/round trip (p50 of PING, interleaved with redis_apply_rtt; p99 {p99:.0} us)"
            ),
        );
    }
    let (p50, p99) = p50_p99(times);
    report(name, p50, &format!("us/round trip (p50; p99 {p99:.0} us)"));
    Ok(())
}

fn check(out: &[u64], n: usize) -> Res {
    if out.len() != n || out.iter().enumerate().any(|(i, &r)| r != (i * i) as u64) {
        return Err(format!("redis pool returned wrong results ({} of {n})", out.len()).into());
    }
    Ok(())
}
