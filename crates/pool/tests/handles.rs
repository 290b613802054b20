//! Values that own OS handles (locks, shared values and arrays, queues, connections) as
//! arguments of pool tasks and of the pool's initializer, with every start method.
//!
//! On Windows the initializer's handles travel (the process-start transfer duplicates them
//! into each worker), a task's do not yet: a connection does not carry handles there, so a
//! task owning some is refused with a typed error (the last test).

multiproc_process::test_support!();

#[path = "../../process/tests/integration/bounded.rs"]
mod bounded;
#[path = "support/platform.rs"]
mod platform;

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;

use bounded::BOUND;
use multiproc_pool::{Pool, PoolError, ThreadPool};
use multiproc_process::{Connection, StartMethod};
use multiproc_shm::{RawArray, Value};
use multiproc_sync::{Lock, Queue};

/// The start methods of this platform.
fn methods() -> &'static [StartMethod] {
    StartMethod::available()
}

/// The initializer's arguments, kept by each worker process.
static SHARED: OnceLock<(Lock, RawArray<u64>)> = OnceLock::new();

/// `[inside, count, violations, killed]`
const INSIDE: usize = 0;
const COUNT: usize = 1;
const VIOLATIONS: usize = 2;
const KILLED: usize = 3;

fn keep_shared(args: (Lock, RawArray<u64>)) {
    let _ = SHARED.set(args);
}

/// Under the lock from the initializer: nobody else may be inside, and the count is bumped
/// with a plain (non-atomic) read and write, so an unserialized pair would lose updates.
fn append_locked(i: u32) -> u32 {
    let (lock, arr) = SHARED
        .get()
        .expect("the initializer's handles reached this worker");
    let _g = lock.lock();
    if arr.atomic(INSIDE).unwrap().swap(1, Ordering::AcqRel) != 0 {
        arr.atomic(VIOLATIONS)
            .unwrap()
            .fetch_add(1, Ordering::AcqRel);
    }
    let n = arr.get(COUNT).unwrap();
    std::thread::sleep(Duration::from_micros(200));
    arr.set(COUNT, n + 1).unwrap();
    arr.atomic(INSIDE).unwrap().store(0, Ordering::Release);
    i
}

#[test]
fn a_lock_in_initargs_serializes_tasks_of_every_worker() {
    for &m in methods() {
        let lock = Lock::new().unwrap();
        let arr = RawArray::<u64>::new(4).unwrap();
        let pool = Pool::builder()
            .processes(3)
            .start_method(m)
            .initializer(keep_shared, (lock, arr.clone()))
            .build()
            .unwrap();
        let out = bounded::within(move || {
            let out = pool.map_chunked(append_locked, 0..300u32, 1);
            pool.terminate();
            out
        })
        .unwrap();
        assert_eq!(out, (0..300).collect::<Vec<_>>(), "{m:?}");
        assert_eq!(arr.get(COUNT).unwrap(), 300, "{m:?}");
        assert_eq!(arr.get(VIOLATIONS).unwrap(), 0, "{m:?}");
    }
}

fn bump((counter, _i): (Value<u64>, u32)) {
    *counter.lock() += 1;
}

#[test]
fn a_value_counter_in_every_task_counts_exactly() {
    for &m in methods() {
        let counter = Value::new(0u64).unwrap();
        let pool = Pool::builder()
            .processes(2)
            .start_method(m)
            .build()
            .unwrap();
        let items: Vec<(Value<u64>, u32)> = (0..10_000).map(|i| (counter.clone(), i)).collect();
        bounded::within(move || {
            pool.map_chunked(bump, items, 100).unwrap();
            pool.terminate();
        });
        assert_eq!(counter.get(), 10_000, "{m:?}");
    }
    // a chunk owning more handles than a message can carry says what to do
    let counter = Value::new(0u64).unwrap();
    let pool = Pool::new(1).unwrap();
    let items: Vec<(Value<u64>, u32)> = (0..300).map(|i| (counter.clone(), i)).collect();
    let r = pool.map_chunked(bump, items, 300);
    assert!(
        matches!(&r, Err(PoolError::Serialization(e)) if e.to_string().contains("chunksize")),
        "{r:?}"
    );
}

fn put_double((q, x): (Queue<u64>, u64)) -> u64 {
    q.put(x * 2).unwrap();
    x
}

fn answer_on((conn, x): (Connection, u64)) {
    conn.send(&(x + 1)).unwrap();
}

#[test]
fn a_queue_and_a_connection_reach_apply_async() {
    for &m in methods() {
        let q: Queue<u64> = Queue::new().unwrap();
        let pool = Pool::builder()
            .processes(2)
            .start_method(m)
            .build()
            .unwrap();
        let q2 = q.clone();
        let (here, there) = multiproc_process::pipe(true).unwrap();
        bounded::within(move || {
            let results: Vec<_> = (0..20u64)
                .map(|x| pool.apply_async(put_double, (q2.clone(), x)).unwrap())
                .collect();
            for (x, r) in results.into_iter().enumerate() {
                assert_eq!(r.get_timeout(BOUND).unwrap(), x as u64);
            }
            pool.apply(answer_on, (there, 41)).unwrap();
            pool.terminate();
        });
        let mut got: Vec<u64> = (0..20).map(|_| q.get_timeout(BOUND).unwrap()).collect();
        got.sort();
        assert_eq!(got, (0..20).map(|x| x * 2).collect::<Vec<_>>(), "{m:?}");
        assert_eq!(here.recv_timeout_u64(), 42, "{m:?}");
    }
    // thread pools too
    let q: Queue<u64> = Queue::new().unwrap();
    let pool = ThreadPool::new(2).unwrap();
    assert_eq!(pool.apply(put_double, (q.clone(), 4)).unwrap(), 4);
    assert_eq!(q.get_timeout(BOUND).unwrap(), 8);
}

trait RecvU64 {
    fn recv_timeout_u64(&self) -> u64;
}

impl RecvU64 for Connection {
    fn recv_timeout_u64(&self) -> u64 {
        assert!(
            self.poll(Some(BOUND)).unwrap(),
            "no answer within {BOUND:?}"
        );
        self.recv().unwrap()
    }
}

/// The first task to get here kills its worker (once per pool: the flag is shared).
fn die_once_then_append(i: u32) -> u32 {
    let (_, arr) = SHARED
        .get()
        .expect("the initializer's handles reached this worker");
    if i == 7 && arr.atomic(KILLED).unwrap().swap(1, Ordering::AcqRel) == 0 {
        platform::kill_self();
    }
    append_locked(i)
}

#[test]
fn a_replacement_worker_gets_the_initializers_handles() {
    for &m in methods() {
        let lock = Lock::new().unwrap();
        let arr = RawArray::<u64>::new(4).unwrap();
        let pool = Pool::builder()
            .processes(2)
            .start_method(m)
            .initializer(keep_shared, (lock, arr.clone()))
            .build()
            .unwrap();
        let before = pool.pids();
        let (out, after) = bounded::within(move || {
            let out = pool.map_each(die_once_then_append, 0..40u32, Some(1));
            // every worker now, the replacement included, must have the handles
            let again = pool.map_chunked(append_locked, 0..40u32, 1);
            let after = pool.pids();
            pool.terminate();
            (
                out.map(|v| v.into_iter().map(|r| r.is_ok()).collect::<Vec<_>>()),
                (again, after),
            )
        });
        let ok = out.unwrap();
        assert_eq!(ok.iter().filter(|&&o| !o).count(), 1, "{m:?}: {ok:?}");
        assert!(!ok[7], "{m:?}: item 7 killed its worker");
        let (again, after) = after;
        assert_eq!(again.unwrap().len(), 40, "{m:?}");
        assert_ne!(before, after, "{m:?}: a worker was replaced");
        assert_eq!(arr.get(COUNT).unwrap(), 79, "{m:?}");
        assert_eq!(arr.get(VIOLATIONS).unwrap(), 0, "{m:?}");
        assert_eq!(arr.get(KILLED).unwrap(), 1, "{m:?}");
    }
}
