//! Several processes increment one shared counter: first with no lock (updates get lost), then
//! under the value's lock (the count is exact). It prints, for each, the final count, the count
//! expected and how many increments were lost.
//!
//! Each increment is a read, a short pause, then a write of the value read plus one. The pause
//! (a `yield_now`, a chance for the scheduler to run another process) stands for any real work
//! between reading and writing; it makes the race window wide enough that other processes write
//! inside it on every run, even on two cores. Without it, `counter.set(counter.get() + 1)` is
//! still a race, but one that may by chance lose few or no updates. Python's version:
//!
//! ```python
//! import time
//! from multiprocessing import Process, RawValue, Value
//!
//! def unsafe_add(counter, n):
//!     for _ in range(n):
//!         v = counter.value           # read,
//!         time.sleep(0)               # pause,
//!         counter.value = v + 1       # write: not atomic
//!
//! def safe_add(counter, n):
//!     for _ in range(n):
//!         with counter.get_lock():
//!             v = counter.value; time.sleep(0); counter.value = v + 1
//!
//! if __name__ == '__main__':
//!     for target, counter in [(unsafe_add, RawValue('q', 0)), (safe_add, Value('q', 0))]:
//!         ps = [Process(target=target, args=(counter, 10_000)) for _ in range(4)]
//!         for p in ps: p.start()
//!         for p in ps: p.join()
//!         print(target.__name__, counter.value)
//! ```
//!
//! Run it with `cargo run -p multiproc-examples --bin shared_counter`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc::Process;
use multiproc_shm::{RawValue, Value};

const PROCS: u32 = 4;
const N: i64 = 10_000;

/// Wait until all the children are here, so that they count at the same time (spinning:
/// 10 000 increments take microseconds, less than waking from a sleep).
fn wait_for_all(arrived: &RawValue<u32>) {
    arrived.atomic().fetch_add(1, Ordering::AcqRel);
    let t = Instant::now();
    while arrived.atomic().load(Ordering::Acquire) < PROCS {
        if t.elapsed() > Duration::from_millis(1) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Read, pause, write back the value read plus one: another process that writes during the
/// pause has its update overwritten, lost.
fn unsafe_add((counter, arrived): (RawValue<i64>, RawValue<u32>)) {
    wait_for_all(&arrived);
    for _ in 0..N {
        let v = counter.get();
        std::thread::yield_now();
        counter.set(v + 1);
    }
}

/// The same under the lock: no other process can write between the read and the write. The
/// guard derefs to the `i64` and releases the lock when dropped.
fn safe_add((counter, arrived): (Value<i64>, RawValue<u32>)) {
    wait_for_all(&arrived);
    for _ in 0..N {
        let mut guard = counter.lock();
        let v = *guard;
        std::thread::yield_now();
        *guard = v + 1;
    }
}

/// Start `PROCS` children of `target` and wait for them all.
fn run_all<
    A: Clone + Send + multiproc::serde::Serialize + multiproc::serde::de::DeserializeOwned + 'static,
>(
    target: fn((A, RawValue<u32>)),
    counter: &A,
) -> Result<(), Box<dyn std::error::Error>> {
    let arrived = RawValue::new(0u32)?;
    let children: Vec<Process> = (0..PROCS)
        .map(|_| Process::new(target, (counter.clone(), arrived.clone())))
        .collect();
    for p in &children {
        p.start()?;
    }
    for p in &children {
        p.join()?;
    }
    Ok(())
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let expected = PROCS as i64 * N;

    let raw = RawValue::new(0i64)?;
    run_all(unsafe_add, &raw)?;
    println!(
        "RawValue, no lock:  {} of {expected} ({} updates lost)",
        raw.get(),
        expected - raw.get()
    );

    let locked = Value::new(0i64)?;
    run_all(safe_add, &locked)?;
    println!(
        "Value::lock():      {} of {expected} ({} updates lost)",
        locked.get(),
        expected - locked.get()
    );
    Ok(())
}
