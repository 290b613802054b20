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

/// `cmd`'s process dies with this one (Linux), so a bench killed mid-run (by a deadline)
/// leaves no server or workers behind.
fn die_with_us(cmd: &mut Command) -> &mut Command {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec the closure only calls prctl, async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    cmd
}

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
    let server = match die_with_us(&mut Command::new("redis-server"))
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(std::env::temp_dir())
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
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = redis_ping(port);
        if ok {
            break;
        }
        if Instant::now() > deadline {
            return Err("redis-server did not answer in 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
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

/// Whether a `PING` on `port` is answered (RESP by hand: the bench needs no client of its own).
fn redis_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

fn check(out: &[u64], n: usize) -> Res {
    if out.len() != n || out.iter().enumerate().any(|(i, &r)| r != (i * i) as u64) {
        return Err(format!("redis pool returned wrong results ({} of {n})", out.len()).into());
    }
    Ok(())
}
