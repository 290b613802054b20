//! Worker mode: `myapp --multiproc-worker redis://head:6379 --cluster prod -j 16` runs a
//! supervisor of `-j` worker processes (multiproc children of this binary), restarts those
//! that end, and exits on SIGTERM or SIGINT (Ctrl+C, Ctrl+Break or the console closing on
//! Windows) after asking them to finish their current chunk (an [`Event`] they look at).

use std::time::{Duration, Instant};

use multiproc_process::Process;
use multiproc_sync::Event;

use super::worker::{worker_process, WorkerArgs};
use super::{DEFAULT_LEASE, DEFAULT_MAX_DELIVERIES, DEFAULT_MAX_ENTRY_BYTES};
use crate::sys;

/// The first argument that puts a binary in worker mode.
pub(crate) const WORKER_FLAG: &str = "--multiproc-worker";

const USAGE: &str = "usage: PROGRAM --multiproc-worker redis://HOST:PORT [--cluster NAME] \
                     [-j N] [--lease-ms MS] [--max-deliveries N] [--max-entry-bytes N]\n\
                     (tasks signed with an authkey: the key in MULTIPROC_REDIS_AUTHKEY)";

/// The environment variable worker mode takes its authkey from (not an argument: the command
/// lines of processes are for anyone on the host to read).
pub(crate) const AUTHKEY_ENV: &str = "MULTIPROC_REDIS_AUTHKEY";

/// Worker mode's settings, from the command line (and the authkey from [`AUTHKEY_ENV`]).
#[derive(Clone, PartialEq)]
pub(crate) struct Options {
    pub url: String,
    pub cluster: String,
    pub jobs: usize,
    pub lease: Duration,
    pub max_deliveries: u32,
    pub max_entry_bytes: usize,
    pub authkey: Option<Vec<u8>>,
}

/// Parse the arguments after the program name (the first is [`WORKER_FLAG`]).
pub(crate) fn parse(args: &[String]) -> Result<Options, String> {
    let mut it = args.iter();
    if it.next().map(String::as_str) != Some(WORKER_FLAG) {
        return Err(format!("the first argument must be {WORKER_FLAG}"));
    }
    let url = it.next().ok_or("the Redis URL is missing")?.clone();
    if !url.starts_with("redis://")
        && !url.starts_with("rediss://")
        && !url.starts_with("redis+unix://")
        && !url.starts_with("unix://")
    {
        return Err(format!("not a Redis URL: {url}"));
    }
    let mut o = Options {
        url,
        cluster: "default".into(),
        jobs: multiproc_process::cpu_count(),
        lease: DEFAULT_LEASE,
        max_deliveries: DEFAULT_MAX_DELIVERIES,
        max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
        authkey: None,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: &String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--cluster" => o.cluster = value()?.clone(),
            "-j" | "--jobs" => o.jobs = number(value()?)? as usize,
            "--lease-ms" => o.lease = Duration::from_millis(number(value()?)?),
            "--max-deliveries" => o.max_deliveries = number(value()?)?.min(u32::MAX as u64) as u32,
            "--max-entry-bytes" => o.max_entry_bytes = number(value()?)? as usize,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.jobs == 0 {
        return Err("-j must be at least 1".into());
    }
    if o.lease < Duration::from_millis(30) {
        return Err("--lease-ms must be at least 30".into());
    }
    if o.max_deliveries == 0 {
        return Err("--max-deliveries must be at least 1".into());
    }
    super::keys::Keys::new(&o.cluster, None).map_err(|e| e.to_string())?;
    Ok(o)
}

/// If this process was started in worker mode, run it and exit; otherwise return.
pub(crate) fn run_if_flagged() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some(WORKER_FLAG) {
        return;
    }
    let authkey = std::env::var_os(AUTHKEY_ENV).map(|k| k.into_encoded_bytes());
    match parse(&args).and_then(|mut o| {
        if authkey.as_ref().is_some_and(|k| k.is_empty()) {
            return Err(format!("{AUTHKEY_ENV} is empty"));
        }
        o.authkey = authkey;
        Ok(o)
    }) {
        Ok(o) => std::process::exit(supervise(&o)),
        Err(e) => {
            eprintln!("multiproc worker mode: {e}\n{USAGE}");
            std::process::exit(2)
        }
    }
}

struct Slot {
    process: Option<Process>,
    started: Instant,
    failures: u32,
    restart_at: Instant,
}

/// Run `o.jobs` workers until SIGTERM or SIGINT; the exit code.
fn supervise(o: &Options) -> i32 {
    sys::catch_termination();
    let stop = match Event::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("multiproc worker mode: cannot make the workers' stop event: {e}");
            return 1;
        }
    };
    let args = WorkerArgs {
        stop: stop.clone(),
        url: o.url.clone(),
        cluster: o.cluster.clone(),
        lease_ms: o.lease.as_millis() as u64,
        max_entry_bytes: o.max_entry_bytes,
        max_deliveries: o.max_deliveries,
        authkey: o.authkey.clone(),
    };
    tracing::info!(
        cluster = %o.cluster,
        build = %format!("{:016x}", multiproc_pickle::fingerprint()),
        jobs = o.jobs,
        signed = o.authkey.is_some(),
        "multiproc worker mode"
    );
    let now = Instant::now();
    let mut slots: Vec<Slot> = (0..o.jobs)
        .map(|_| Slot {
            process: None,
            started: now,
            failures: 0,
            restart_at: now,
        })
        .collect();
    let mut number = 0u64;
    while !sys::terminated() {
        for s in &mut slots {
            if let Some(p) = &s.process {
                if p.is_alive() {
                    continue;
                }
                let code = p.join().unwrap_or(-1);
                tracing::warn!("redis worker {:?} ended with {code}; restarting", p.pid());
                // (one that dies at once again and again is restarted ever more slowly)
                if s.started.elapsed() < Duration::from_secs(1) {
                    s.failures = (s.failures + 1).min(6);
                } else {
                    s.failures = 0;
                }
                s.restart_at = Instant::now() + Duration::from_millis(50) * (1 << s.failures)
                    - Duration::from_millis(50);
                s.process = None;
            }
            if Instant::now() < s.restart_at {
                continue;
            }
            number += 1;
            let p = Process::new(worker_process, args.clone())
                .daemon(true)
                .with_name(format!("RedisWorker-{number}"));
            match p.start() {
                Ok(()) => {
                    s.process = Some(p);
                    s.started = Instant::now();
                }
                Err(e) => {
                    tracing::error!("cannot start a redis worker: {e}");
                    s.restart_at = Instant::now() + Duration::from_secs(1);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Ask each to finish its chunk, give them a lease's time, then kill the rest.
    stop.set();
    let deadline = Instant::now() + o.lease + Duration::from_secs(1);
    for s in &slots {
        if let Some(p) = &s.process {
            let left = deadline.saturating_duration_since(Instant::now());
            if !matches!(p.join_timeout(left), Ok(Some(_))) {
                let _ = p.kill();
                let _ = p.join();
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_worker_mode_arguments() {
        let o = parse(&args(
            "--multiproc-worker redis://127.0.0.1:7000 --cluster prod -j 3 --lease-ms 250",
        ))
        .unwrap();
        assert_eq!(o.url, "redis://127.0.0.1:7000");
        assert_eq!(o.cluster, "prod");
        assert_eq!(o.jobs, 3);
        assert_eq!(o.lease, Duration::from_millis(250));
        assert_eq!(o.max_deliveries, DEFAULT_MAX_DELIVERIES);
        for bad in [
            "--multiproc-worker",
            "--multiproc-worker http://x",
            "--multiproc-worker redis://x -j 0",
            "--multiproc-worker redis://x -j",
            "--multiproc-worker redis://x --cluster a{b}",
            "--multiproc-worker redis://x --bogus 1",
            "--multiproc-worker redis://x --lease-ms 5",
            "--multiproc-worker redis://x --max-deliveries 0",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
    }
}
