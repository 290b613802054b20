//! Four processes computing Fibonacci numbers in parallel, each sending its result back to the
//! parent over a pipe.
//!
//! To show that they really run at the same time, the parent first computes the same numbers
//! one after the other itself, then prints both wall-clock times. The speed-up is bounded twice:
//! by the cores, and by the longest single number (fib(39) is almost half the work here: the
//! numbers are close, so two cores can share them), and the program prints that bound next to
//! what it measured, and (on Linux) the load average, as other programs on the cores lower the
//! speed-up.
//!
//! ```python
//! import time
//! from multiprocessing import Process, Pipe
//!
//! def fib(n):
//!     return n if n < 2 else fib(n - 1) + fib(n - 2)
//!
//! def work(n, conn):
//!     conn.send(fib(n))
//!
//! if __name__ == '__main__':
//!     start = time.perf_counter()
//!     jobs = []
//!     for n in (36, 37, 38, 39):
//!         here, there = Pipe()
//!         p = Process(target=work, args=(n, there))
//!         p.start()
//!         jobs.append((n, p, here))
//!     for n, p, here in jobs:
//!         print(f'fib({n}) = {here.recv()}')
//!         p.join()
//!     print(f'total: {time.perf_counter() - start:.2f} s')
//! ```
//!
//! Run it with `cargo run --release -p multiproc-examples --bin fibonacci`
//! (give other numbers on the command line: `-- 20 25 30`).

use std::time::Instant;

use multiproc::{Connection, Process};

/// The naive recursive Fibonacci: deliberately slow, so the processes have work to share.
fn fib(n: u32) -> u64 {
    if n < 2 {
        n as u64
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

/// The child: compute `fib(n)` and send it back.
fn work((n, conn): (u32, Connection)) {
    conn.send(&fib(n)).expect("the parent holds the other end");
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut numbers: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("arguments must be small integers: {e}"))?;
    if numbers.is_empty() {
        numbers = vec![36, 37, 38, 39];
    }
    if let Some(&n) = numbers.iter().find(|&&n| n > 50) {
        return Err(format!("fib({n}) would take far too long with the naive algorithm").into());
    }

    // One after the other, in this process: the reference, and the time of the longest one.
    if let Some(load) = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
    {
        println!("load average before the run: {load:.2} (busy cores lower the speed-up)");
    }
    let start = Instant::now();
    let mut longest = 0f64;
    for &n in &numbers {
        let t = Instant::now();
        std::hint::black_box(fib(std::hint::black_box(n)));
        longest = longest.max(t.elapsed().as_secs_f64());
    }
    let sequential = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut jobs = Vec::new();
    for &n in &numbers {
        let (here, there) = multiproc::pipe(true)?;
        let p = Process::new(work, (n, there)).with_name(format!("fib-{n}"));
        p.start()?;
        jobs.push((n, p, here));
    }
    for (n, p, here) in &jobs {
        let value: u64 = here.recv()?;
        println!("fib({n}) = {value}");
        p.join()?;
    }
    let parallel = start.elapsed().as_secs_f64();
    let cores = multiproc::cpu_count();
    let bound = (sequential / longest).min(jobs.len().min(cores) as f64);
    println!("one after the other in one process: {sequential:.3} s");
    println!(
        "{} processes at once:                {parallel:.3} s (speed-up {:.2}x on {cores} cores; \
         at most {bound:.2}x here, as the longest number alone takes {longest:.3} s)",
        jobs.len(),
        sequential / parallel
    );
    Ok(())
}
