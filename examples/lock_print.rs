//! Five processes printing under a shared `Lock`, so their lines never interleave: the
//! synchronization example of Python's `multiprocessing` docs.
//!
//! ```python
//! from multiprocessing import Process, Lock
//!
//! def f(l, i):
//!     l.acquire()
//!     try:
//!         print('hello world', i)
//!     finally:
//!         l.release()
//!
//! if __name__ == '__main__':
//!     lock = Lock()
//!     for num in range(5):
//!         Process(target=f, args=(lock, num)).start()
//! ```
//!
//! Run it with `cargo run -p multiproc-examples --bin lock_print`.

use std::io::Write;

use multiproc::{Lock, Process};

fn f((lock, i): (Lock, u32)) {
    let _guard = lock.lock(); // released when `_guard` goes out of scope, even on panic
    let mut out = std::io::stdout().lock();
    // Three separate writes per line, each flushed (a system call of its own) with a pause in
    // between: without the lock, the words of different processes would mix.
    for word in ["hello ", "world ", &format!("{i}\n")] {
        let _ = out.write_all(word.as_bytes());
        let _ = out.flush();
        std::thread::yield_now();
    }
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lock = Lock::new()?;
    let children: Vec<Process> = (0..5).map(|i| Process::new(f, (lock.clone(), i))).collect();
    for p in &children {
        p.start()?;
    }
    for p in &children {
        p.join()?;
    }
    Ok(())
}
