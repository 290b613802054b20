//! Four processes computing Fibonacci numbers in parallel, each sending its result back to the
//! parent over a pipe.
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
//!     for n in (30, 32, 34, 36):
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
        numbers = vec![30, 32, 34, 36];
    }
    if let Some(&n) = numbers.iter().find(|&&n| n > 50) {
        return Err(format!("fib({n}) would take far too long with the naive algorithm").into());
    }

    let start = Instant::now();
    let mut jobs = Vec::new();
    for &n in &numbers {
        let (here, there) = multiproc::pipe(true)?;
        let p = Process::new(work, (n, there)).name(format!("fib-{n}"));
        p.start()?;
        jobs.push((n, p, here));
    }
    for (n, p, here) in &jobs {
        let value: u64 = here.recv()?;
        println!("fib({n}) = {value}");
        p.join()?;
    }
    println!(
        "total: {:.2} s in {} processes ({} CPUs)",
        start.elapsed().as_secs_f64(),
        jobs.len(),
        multiproc::cpu_count()
    );
    Ok(())
}
