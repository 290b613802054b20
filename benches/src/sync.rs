//! The lock, queue and shared-memory workloads: `lock_uncontended`, `queue_small`,
//! `queue_big`, `shm_fill` — the same as `python_baseline.py`'s, with its sizes — and
//! `lock_handoff` (ours: the cost of a sleep and a wake-up between two processes).

use std::hint::black_box;
use std::time::Instant;

use multiproc::pickle::Bytes;
use multiproc::shared_memory::SharedMemory;
use multiproc::{Lock, Process, Queue, Semaphore};

use crate::{report, Opts, Res, BIG};

/// Python's `drain`: take `n` items.
fn drain<T: serde::de::DeserializeOwned + serde::Serialize>((q, n): (Queue<T>, usize)) {
    for i in 0..n {
        q.get()
            .unwrap_or_else(|e| panic!("drain: item {i} of {n}: {e}"));
    }
}

/// Python's `shm_child`: attach by name and fill with 2s.
fn shm_child((name, size): (String, usize)) {
    let s = SharedMemory::attach(&name).expect("attach by name");
    s.segment().fill(0, size, 2).expect("in bounds");
}

/// `lock_handoff`'s other process: `n` times, wait for its turn, take the lock, hand the turn
/// back and release the lock (which the main process may be asleep on by then).
fn handoff_child((lock, mine, theirs, n): (Lock, Semaphore, Semaphore, usize)) {
    for i in 0..n {
        assert!(mine.acquire(), "handoff: turn {i}");
        let _g = lock.lock();
        theirs.release();
    }
}

pub(crate) fn run(opts: &Opts) -> Res {
    let q = if opts.quick { 10 } else { 1 };

    if opts.want("lock_uncontended") {
        let n = 200_000 / q;
        let lock = Lock::new()?;
        let t = Instant::now();
        for _ in 0..n {
            let _ = black_box(lock.acquire());
            lock.release()?;
        }
        report(
            "lock_uncontended",
            t.elapsed().as_secs_f64() / n as f64 * 1e9,
            "ns/acquire+release",
        );
    }

    if opts.want("lock_handoff") {
        // Each round: the child takes the lock and signals; we try the lock while it holds it,
        // sleep on it, and are woken by its release. Two sleeps and two wake-ups per round (our
        // turn semaphore and the lock), across processes.
        let n = 20_000 / q;
        let (lock, mine, theirs) = (Lock::new()?, Semaphore::new(0)?, Semaphore::new(0)?);
        let p = Process::new(
            handoff_child,
            (lock.clone(), mine.clone(), theirs.clone(), n),
        );
        p.start()?;
        let t = Instant::now();
        for _ in 0..n {
            mine.release();
            assert!(theirs.acquire());
            let _ = black_box(lock.acquire());
            lock.release()?;
        }
        let code = p.join()?;
        let t = t.elapsed();
        if code != 0 {
            return Err(format!("lock_handoff: the child exited with {code}").into());
        }
        report(
            "lock_handoff",
            t.as_secs_f64() / n as f64 * 1e6,
            "us/round (turn + lock handed between two processes)",
        );
    }

    if opts.want("queue_small") {
        let n = 100_000 / q;
        let queue: Queue<u64> = Queue::new()?;
        let p = Process::new(drain::<u64>, (queue.clone(), n));
        p.start()?;
        let t = Instant::now();
        for i in 0..n as u64 {
            queue.put(i).map_err(|e| e.error)?;
        }
        let code = p.join()?;
        let t = t.elapsed();
        if code != 0 {
            return Err(format!("queue_small: the consumer exited with {code}").into());
        }
        report(
            "queue_small",
            n as f64 / t.as_secs_f64(),
            "msgs/s (int, to another process)",
        );
    }

    if opts.want("queue_big") {
        let n = 100 / q;
        let queue: Queue<Bytes> = Queue::new()?;
        let p = Process::new(drain::<Bytes>, (queue.clone(), n));
        p.start()?;
        let msg = Bytes(vec![b'y'; BIG]);
        let t = Instant::now();
        for _ in 0..n {
            queue.put_ref(&msg)?;
        }
        let code = p.join()?;
        let t = t.elapsed();
        if code != 0 {
            return Err(format!("queue_big: the consumer exited with {code}").into());
        }
        report(
            "queue_big",
            (n * BIG) as f64 / t.as_secs_f64() / 1e6,
            "MB/s (4 MiB messages)",
        );
    }

    if opts.want("shm_fill") {
        let size = (256 << 20) / q;
        let s = SharedMemory::create(None, size)?;
        let p = Process::new(shm_child, (s.name().to_string(), size));
        let t = Instant::now();
        p.start()?;
        let code = p.join()?;
        let t = t.elapsed();
        let ok = code == 0 && s.read(size - 1, 1)? == [2];
        report(
            "shm_fill",
            size as f64 / t.as_secs_f64() / 1e6,
            &format!("MB/s (child fills SharedMemory, incl. start, ok={ok})"),
        );
    }
    Ok(())
}
