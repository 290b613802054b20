//! `multiproc-bench`: the Rust side of `cargo xtask bench`.
//!
//! Runs the same workloads, with the same sizes, as `shared/bench/python_baseline.py` and
//! prints one line per workload, `NAME\tVALUE\tUNIT` (higher is better unless the unit is a
//! time), so `cargo xtask bench` can put them next to CPython's figures and the OS limits.
//!
//! ```text
//! multiproc-bench [--quick] [--only NAME,...]
//! ```
//!
//! Workloads: `spawn_join`, `spawn_join_fork`, `spawn_join_forkserver`, `pipe_rtt`, `pipe_bw`,
//! `encode` (which prints `encode_vec_u8`, `encode_bytes`, `decode_vec_u8` and `decode_bytes`); `pool_start`, `map_tiny`, `map_tiny_bar`,
//! `map_chunk1`, `imap_unordered`, `apply_async_rtt`, `map_cpu` (module `pool`);
//! `redis_ping_rtt`, `redis_apply_rtt`, `redis_apply_rtt_signed`, `redis_map_chunk1`, `redis_map_tiny` (the pool
//! on Redis Streams, module `redis`, with a `redis-server` of its own);
//! `lock_uncontended`, `lock_handoff`, `queue_small`, `queue_big`, `shm_fill` (module `sync`);
//! `value_contended`, `array_fill` (module `values`); `procspawn_pool_start`,
//! `procspawn_apply_async_rtt`, `procspawn_map_chunk1` (procspawn's pool, module
//! `procspawn_cmp`); `manager_dict`, `manager_remote` (module `managers`). `--only` takes these names.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use multiproc::pickle::{decode, encode, Bytes};
use multiproc::{Connection, Process, StartMethod};

mod managers;
mod pool;
mod procspawn_cmp;
#[cfg(unix)]
mod redis;
mod sync;
mod values;

pub(crate) type Res<T = ()> = Result<T, Box<dyn Error>>;

/// Size of the messages of `pipe_bw` and of the buffers of `encode_*`: 4 MiB, as in Python.
pub(crate) const BIG: usize = 4 << 20;

fn main() {
    multiproc::init();
    // procspawn's children run their job here and exit (ours already did, in `init`)
    procspawn::init();
    if let Err(e) = run() {
        eprintln!("multiproc-bench: {e}");
        std::process::exit(1);
    }
}

/// The target of the `spawn_join*` workloads.
fn noop(_: ()) {}

/// The echo child of `pipe_rtt` and `pipe_bw`: sends back each of `n` messages.
fn pong((conn, n): (Connection, usize)) {
    for i in 0..n {
        let msg = conn
            .recv_bytes()
            .unwrap_or_else(|e| panic!("pong: receiving message {i} of {n}: {e}"));
        conn.send_bytes(&msg)
            .unwrap_or_else(|e| panic!("pong: sending message {i} of {n}: {e}"));
    }
}

pub(crate) struct Opts {
    pub(crate) quick: bool,
    pub(crate) only: Vec<String>,
}

impl Opts {
    fn parse() -> Res<Opts> {
        let mut opts = Opts {
            quick: false,
            only: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => opts.quick = true,
                "--only" => {
                    let list = args.next().ok_or("--only needs a comma-separated list")?;
                    opts.only = list
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                }
                "-h" | "--help" => {
                    println!("usage: multiproc-bench [--quick] [--only NAME,...]");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?}").into()),
            }
        }
        Ok(opts)
    }

    pub(crate) fn want(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

fn run() -> Res {
    let opts = Opts::parse()?;
    let q = if opts.quick { 10 } else { 1 };

    // Process starts first: this process has no threads yet, which `fork` wants.
    let n_spawn = 20 / if opts.quick { 2 } else { 1 };
    if opts.want("spawn_join") {
        let t = spawn_join(StartMethod::Spawn, n_spawn)?;
        report("spawn_join", ms_per(t, n_spawn), "ms/process");
    }
    if opts.want("spawn_join_fork") && StartMethod::available().contains(&StartMethod::Fork) {
        let t = spawn_join(StartMethod::Fork, n_spawn)?;
        report("spawn_join_fork", ms_per(t, n_spawn), "ms/process");
    }
    if opts.want("spawn_join_forkserver")
        && StartMethod::available().contains(&StartMethod::Forkserver)
    {
        // The first start also launches the forkserver: timed on its own, not in the figure.
        let first = spawn_join(StartMethod::Forkserver, 1)?;
        let t = spawn_join(StartMethod::Forkserver, n_spawn)?;
        report(
            "spawn_join_forkserver",
            ms_per(t, n_spawn),
            &format!(
                "ms/process (warm forkserver; first start incl. launch {:.3} ms)",
                ms_per(first, 1)
            ),
        );
        report(
            "forkserver_first_start",
            ms_per(first, 1),
            "ms (launch forkserver + first child + join)",
        );
    }

    // The pool next, then pipes, then the rest: the order of python_baseline.py, so both sides
    // meet each workload after the same ones (on a VM, what ran just before changes how fast
    // an idle CPU wakes up).
    pool::run(&opts)?;
    #[cfg(unix)]
    redis::run(&opts)?;
    procspawn_cmp::run(&opts)?;

    if opts.want("pipe_rtt") {
        let n = 20_000 / q;
        let per = echo_bench(64, n)?;
        report(
            "pipe_rtt",
            per.as_secs_f64() * 1e6,
            "us/round trip (64 B, median of 3)",
        );
    }
    if opts.want("pipe_bw") {
        let n = 200 / q;
        let per = echo_bench(BIG, n)?;
        report(
            "pipe_bw",
            2.0 * BIG as f64 / per.as_secs_f64() / 1e6,
            "MB/s (4 MiB messages, both ways, median of 3)",
        );
    }

    if opts.want("encode") {
        let iters = 20 / if opts.quick { 4 } else { 1 };
        let data: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
        let t = median_of(iters, || {
            let t = Instant::now();
            let out = encode(black_box(&data)).map_err(|e| e.to_string());
            let t = t.elapsed();
            black_box(out).map(|_| t)
        })?;
        report(
            "encode_vec_u8",
            BIG as f64 / t.as_secs_f64() / 1e6,
            "MB/s (encode a 4 MiB Vec<u8>, median)",
        );
        let bytes = Bytes(data);
        let t = median_of(iters, || {
            let t = Instant::now();
            let out = encode(black_box(&bytes)).map_err(|e| e.to_string());
            let t = t.elapsed();
            black_box(out).map(|_| t)
        })?;
        report(
            "encode_bytes",
            BIG as f64 / t.as_secs_f64() / 1e6,
            "MB/s (encode a 4 MiB pickle::Bytes, median)",
        );
        // The receiving half: decode what each way wrote.
        let as_vec = encode(&bytes.0)?;
        let t = median_of(iters, || {
            let t = Instant::now();
            let out = decode::<Vec<u8>>(black_box(&as_vec)).map_err(|e| e.to_string());
            let t = t.elapsed();
            black_box(out).map(|_| t)
        })?;
        report(
            "decode_vec_u8",
            BIG as f64 / t.as_secs_f64() / 1e6,
            "MB/s (decode a 4 MiB Vec<u8>, median)",
        );
        let as_bytes = encode(&bytes)?;
        let t = median_of(iters, || {
            let t = Instant::now();
            let out = decode::<Bytes>(black_box(&as_bytes)).map_err(|e| e.to_string());
            let t = t.elapsed();
            black_box(out).map(|_| t)
        })?;
        report(
            "decode_bytes",
            BIG as f64 / t.as_secs_f64() / 1e6,
            "MB/s (decode a 4 MiB pickle::Bytes, median)",
        );
    }
    sync::run(&opts)?;
    values::run(&opts)?;
    managers::run(&opts)?;
    Ok(())
}

/// Start and join `n` processes one after the other; the total time.
fn spawn_join(method: StartMethod, n: usize) -> Res<Duration> {
    let t = Instant::now();
    for _ in 0..n {
        let p = Process::new(noop, ()).start_method(method);
        p.start()?;
        let code = p.join()?;
        if code != 0 {
            return Err(format!("{} child exited with {code}", method.name()).into());
        }
    }
    Ok(t.elapsed())
}

/// Round trips of `len`-byte messages with an echo child: three timed batches of `n` (after one
/// untimed round trip that waits for the child to be up); the median time of one round trip.
fn echo_bench(len: usize, n: usize) -> Res<Duration> {
    const REPS: usize = 3;
    let (here, there) = multiproc::pipe(true)?;
    let child = Process::new(pong, (there, 1 + REPS * n)).start_method(StartMethod::Spawn);
    child.start()?;
    let msg = vec![b'x'; len];
    let round_trip = |here: &Connection| -> Res {
        here.send_bytes(&msg)?;
        let back = here.recv_bytes()?;
        if back.len() != len {
            return Err(format!("echo returned {} bytes, sent {len}", back.len()).into());
        }
        Ok(())
    };
    round_trip(&here)?;
    let mut times = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let t = Instant::now();
        for _ in 0..n {
            round_trip(&here)?;
        }
        times.push(t.elapsed() / n as u32);
    }
    drop(here);
    let code = child.join()?;
    if code != 0 {
        return Err(format!("echo child exited with {code}").into());
    }
    times.sort();
    Ok(times[REPS / 2])
}

/// Run `f` `iters` times; the median of the durations it measured.
fn median_of(iters: usize, mut f: impl FnMut() -> Result<Duration, String>) -> Res<Duration> {
    let mut times = (0..iters.max(1))
        .map(|_| f())
        .collect::<Result<Vec<_>, _>>()?;
    times.sort();
    Ok(times[times.len() / 2])
}

fn ms_per(t: Duration, n: usize) -> f64 {
    t.as_secs_f64() * 1e3 / n as f64
}

/// One result line: `NAME\tVALUE\tUNIT`, the value with 6 significant digits (Python's `.6g`).
pub(crate) fn report(name: &str, value: f64, unit: &str) {
    let digits = if value == 0.0 || !value.is_finite() {
        0
    } else {
        (5 - value.abs().log10().floor() as i32).max(0) as usize
    };
    let mut v = format!("{value:.digits$}");
    if v.contains('.') {
        v.truncate(v.trim_end_matches('0').trim_end_matches('.').len());
    }
    println!("{name}\t{v}\t{unit}");
}

/// Times `run` (which does `n` items of work), has `check` look at what it gave, and reports
/// `name`'s rate, `n` per second (`unit` says of what).
pub(crate) fn report_rate<T, E: Error + 'static>(
    name: &str,
    unit: &str,
    n: usize,
    run: impl FnOnce() -> Result<T, E>,
    check: impl FnOnce(T) -> Res,
) -> Res {
    let t = Instant::now();
    let out = run()?;
    let t = t.elapsed();
    check(out)?;
    report(name, n as f64 / t.as_secs_f64(), unit);
    Ok(())
}
