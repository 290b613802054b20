//! A client of `manager_remote_server`: it connects with the key, makes a queue of jobs on the
//! server and feeds it, and has two worker processes (each reaching the server through the
//! proxies it was given) take jobs until a `None` and write results into a managed dict, then
//! checks every result and asks the server to shut down (pass `--keep` to leave it running).
//!
//! Run `cargo run -p multiproc-examples --bin manager_remote_server -- 127.0.0.1:50000`
//! first, then `cargo run -p multiproc-examples --bin manager_remote_client --
//! 127.0.0.1:50000` (same `MANAGER_KEY` for both, if you set one).

use multiproc::managers::{DictProxy, QueueProxy};
use multiproc::{Manager, Process};

/// The example's default key, as the server's.
const DEFAULT_KEY: &str = "multiproc example key";
const JOBS: u64 = 50;

/// Each result: the square and the pid of the worker that computed it.
type Results = DictProxy<u64, (u64, u32)>;

/// Take jobs until a `None`, writing `n * n` under each.
fn worker(args: (QueueProxy<Option<u64>>, Results)) {
    let (jobs, results) = args;
    while let Some(next) = jobs.get().expect("the manager is there") {
        results
            .set(next, (next * next, std::process::id()))
            .expect("the manager is there");
    }
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:50000".into());
    let keep = args.any(|a| a == "--keep");
    let key = std::env::var("MANAGER_KEY").unwrap_or_else(|_| DEFAULT_KEY.into());
    let m = Manager::connect(address.as_str(), key.as_bytes())?;
    println!(
        "connected to the manager at {address} (server pid {})",
        m.server_pid()
    );
    let jobs = m.queue_with_maxsize::<Option<u64>>(8)?;
    let results = m.dict::<u64, (u64, u32)>()?;
    let ps: Vec<Process> = (0..2)
        .map(|_| Process::new(worker, (jobs.clone(), results.clone())))
        .collect();
    for p in &ps {
        p.start()?;
    }
    // feed the queue (at most 8 waiting: `put` blocks while it is full), then one stop each
    for n in 0..JOBS {
        jobs.put(Some(n))?;
    }
    for _ in &ps {
        jobs.put(None)?;
    }
    for p in &ps {
        if p.join()? != 0 {
            return Err(format!("{p:?} failed").into());
        }
    }
    let mut by_worker = std::collections::BTreeMap::<u32, u32>::new();
    for n in 0..JOBS {
        match results.get(&n)? {
            Some((sq, pid)) if sq == n * n => *by_worker.entry(pid).or_default() += 1,
            other => return Err(format!("job {n}: {other:?}").into()),
        }
    }
    for (pid, done) in &by_worker {
        println!("worker {pid} did {done} jobs");
    }
    if !jobs.is_empty()? || results.len()? != JOBS as usize {
        return Err("jobs left over".into());
    }
    println!("all {JOBS} jobs done through the remote manager");
    if !keep {
        m.shutdown()?;
        println!("asked the server to shut down");
    }
    Ok(())
}
