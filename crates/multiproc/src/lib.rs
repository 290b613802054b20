//! # multiproc
//!
//! Python's `multiprocessing`, rebuilt in Rust. This facade re-exports the workspace crates
//! under the names a Python user expects:
//!
//! | Python | multiproc |
//! |---|---|
//! | `Process(target=f, args=(x,))` | [`Process::new(f, x)`](Process::new) |
//! | `Pipe()` | [`Pipe(true)`](fn@Pipe) / [`pipe(true)`](pipe) |
//! | `connection.Listener` / `Client` / `wait` | [`connection::Listener`], [`connection::Client`], [`connection::wait`] |
//! | `get_context`, `set_start_method` | [`get_context`], [`set_start_method`] |
//! | `current_process`, `parent_process`, `active_children`, `cpu_count` | same names |
//! | `Pool(4).map(f, xs)` | [`Pool::new(4)?.map(f, xs)`](Pool::map) |
//! | `Lock()`, `RLock()`, `Semaphore(n)`, `Condition()`, `Event()`, `Barrier(n)` | [`Lock::new()`](Lock::new), [`RLock::new()`](RLock::new), ... |
//! | `Queue(maxsize)`, `SimpleQueue()`, `JoinableQueue()` | [`Queue::with_maxsize`], [`SimpleQueue::new`], [`JoinableQueue::new`] |
//! | `Value('q', 0)`, `Array('d', 10)`, `RawValue`, `RawArray` | [`Value::new(0i64)`](Value::new), [`Array::<f64>::new(10)`](Array::new), [`RawValue`], [`RawArray`] |
//! | `shared_memory.SharedMemory(name, create, size)` | [`shared_memory::SharedMemory::create`] / [`attach`](shared_memory::SharedMemory::attach) |
//! | `if __name__ == '__main__':` | `#[multiproc::main]` or [`init()`](init) |
//! | an exception; `except OSError as e: e.errno` | [`multiproc::Result`](Result) and [`Error`]; [`e.io_error()`](Error::io_error)`.and_then(io::Error::raw_os_error)` |
//!
//! ```no_run
//! use multiproc::{Connection, Process};
//!
//! fn worker(conn: Connection) {
//!     let n: u64 = conn.recv().unwrap();
//!     conn.send(&(n * n)).unwrap();
//! }
//!
//! #[multiproc::main]
//! fn main() {
//!     let (here, there) = multiproc::pipe(true).unwrap();
//!     let p = Process::new(worker, there);
//!     p.start().unwrap();
//!     here.send(&7u64).unwrap();
//!     assert_eq!(here.recv::<u64>().unwrap(), 49);
//!     p.join().unwrap();
//! }
//! ```
//!
//! ## Errors
//!
//! Each crate has its own error ([`ProcessError`], [`PickleError`], [`ShmError`],
//! [`SyncError`], [`QueueError`], [`PoolError`]); all of them convert into [`Error`] with `?`,
//! so one `fn main() -> multiproc::Result<()>` can use every part of multiproc. Causes are kept
//! as [`source`](std::error::Error::source)s and no message repeats its cause's, so printing the
//! chain says each thing once; [`Error::io_kind`] gives the operating system's error behind
//! one (`EMFILE`, "Too many open files", when no descriptor is left).
//!
//! ```
//! use multiproc::{Error, Queue, QueueError};
//!
//! fn first(q: &Queue<u32>) -> multiproc::Result<u32> {
//!     Ok(q.try_get()?)
//! }
//!
//! let q = Queue::new().unwrap();
//! assert!(matches!(first(&q), Err(Error::Queue(QueueError::Empty))));
//! q.put(3).unwrap();
//! assert_eq!(first(&q).unwrap(), 3);
//! ```

//! ## Your own types
//!
//! Messages, task arguments and results are serde types; the element of a [`Value`],
//! [`Array`], [`RawValue`] or [`RawArray`] is a [`bytemuck::Pod`] type. The facade re-exports
//! both crates, so their derives need no dependency of your own: point each derive at the
//! re-export with its `crate` attribute.
//!
//! ```
//! use multiproc::bytemuck::{Pod, Zeroable};
//! use multiproc::serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! #[serde(crate = "multiproc::serde")]
//! struct Job {
//!     id: u32,
//!     name: String,
//! }
//!
//! #[derive(Clone, Copy, Pod, Zeroable, Debug, PartialEq)]
//! #[bytemuck(crate = "multiproc::bytemuck")]
//! #[repr(C)]
//! struct Point {
//!     x: f64,
//!     y: f64,
//! }
//!
//! let (a, b) = multiproc::pipe(true).unwrap();
//! a.send(&Job { id: 1, name: "resize".into() }).unwrap();
//! assert_eq!(b.recv::<Job>().unwrap(), Job { id: 1, name: "resize".into() });
//!
//! let p = multiproc::Value::new(Point { x: 1.0, y: 2.0 }).unwrap();
//! assert_eq!(p.get(), Point { x: 1.0, y: 2.0 });
//! ```
//!
//! Without the attribute the derives name `::serde` / `::bytemuck`, which then must be your
//! own dependencies (of the same major versions).

#![warn(missing_debug_implementations)]

mod error;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

pub use error::{Error, Result};
pub use multiproc_macros::main;

/// The serde the facade's bounds name (`Serialize`, `DeserializeOwned`), derives included.
/// Derive with `#[serde(crate = "multiproc::serde")]` to need no serde dependency of your own.
pub use serde;

/// The bytemuck whose [`Pod`](bytemuck::Pod) shared values hold, derives included. Derive
/// with `#[bytemuck(crate = "multiproc::bytemuck")]` to need no bytemuck dependency of your own.
pub use bytemuck;
pub use multiproc_process::{
    active_children, cpu_count, current_process, get_context, get_start_method, parent_process,
    pipe, set_executable, set_start_method, Connection, Context, Error as ProcessError,
    ParentProcess, Process, ProcessInfo, StartMethod,
};

pub use multiproc_pool::{
    AsyncResult, Pool, PoolBuilder, PoolError, ThreadPool, ThreadPoolBuilder,
};

/// Python's `multiprocessing.pool`: the pool types, plus the iterator of `imap`.
pub mod pool {
    /// The text progress bar of `Pool::map_with_bar` (feature `progress-bar`).
    #[cfg(feature = "progress-bar")]
    pub use multiproc_pool::ProgressBar;
    /// The Redis backend (feature `redis`): worker mode and the driver's counters.
    #[cfg(feature = "redis")]
    pub use multiproc_pool::{redis_worker_mode, RedisStats};
    pub use multiproc_pool::{
        AsyncResult, Data, IMapIter, Pool, PoolBuilder, PoolError, ThreadPool, ThreadPoolBuilder,
    };
}

pub use multiproc_manager::{Manager, ManagerError};

/// Python's `multiprocessing.managers`: a server process owning objects, typed proxies to
/// them, locally or over TCP.
pub mod managers {
    pub use multiproc_manager::*;
}

pub use multiproc_sync::{
    Barrier, BoundedSemaphore, ByteQueue, Condition, Event, JoinableQueue, Lock, LockGuard,
    LockResult, PutError, Queue, QueueError, RLock, RLockGuard, Semaphore, SimpleQueue, SyncError,
};

/// Python's `multiprocessing.shared_memory`: named blocks of shared memory.
pub mod shared_memory {
    pub use multiproc_shm::{Item, ShareableList, SharedMemory, ShmError};
}

pub use multiproc_shm::ShmError;

pub use multiproc_shm::{Array, RawArray, RawValue, Value};

/// Python's `multiprocessing.sharedctypes`: plain data in shared memory, with a lock
/// (`Value`, `Array`) or without (`RawValue`, `RawArray`).
pub mod sharedctypes {
    pub use multiproc_shm::{
        Array, ArrayGuard, HasAtomic, RawArray, RawValue, SharedMutex, ShmError, Value, ValueGuard,
    };
}

/// The shared-memory layer under the locks and queues: anonymous segments, futex wait/wake,
/// one-word mutexes.
pub use multiproc_shm as shm;

/// The pickle layer: encoding, framing, function identity, handle transfer.
pub use multiproc_pickle as pickle;

pub use multiproc_pickle::PickleError;

/// Python's `multiprocessing.connection`: listeners, clients, `wait`.
pub mod connection {
    pub use multiproc_process::{
        wait, wait_timeout, Address, Client, Connection, Listener, RawWaitHandle, ToAddress,
        Waitable,
    };
}

/// Make this binary multiproc-aware: call it first thing in `main` (or put
/// `#[multiproc::main]` on `main`, or [`test_support!`] in a test binary).
///
/// In a process started by multiproc it runs the task it was started for and exits; it never
/// returns there, so code before `init()` is the only code of `main` a child runs. In the main
/// program it arranges for children to be joined at exit (daemon children are terminated
/// first) and returns. Starting a process needs it, with every start method. With the `redis`
/// feature, a process whose first argument is `--multiproc-worker` runs worker mode
/// (`multiproc::pool::redis_worker_mode`) instead and never returns either. Calling it again does nothing.
///
/// ```
/// multiproc::init();
/// multiproc::init(); // idempotent
/// ```
pub fn init() {
    multiproc_process::init();
    #[cfg(feature = "redis")]
    multiproc_pool::redis_worker_mode();
}

/// Let a test binary (or any binary without a multiproc-aware `main`) start child processes
/// and run in worker mode: one line at the top level of the crate. It runs [`init`] before
/// `main` (and before the test harness), so a spawned child runs its task instead of the tests.
///
/// ```no_run
/// // at the top of tests/my_test.rs
/// multiproc::test_support!();
/// ```
#[macro_export]
macro_rules! test_support {
    () => {
        $crate::__before_main!(__MULTIPROC_TEST_SUPPORT, $crate::init);
    };
}

// What `test_support!` expands to (the process crate's constructor), calling this crate's `init`.
#[doc(hidden)]
pub use multiproc_process::__before_main;

/// Python's spelling of [`pipe`]: `multiproc::Pipe(duplex)`.
///
/// ```
/// let (a, b) = multiproc::Pipe(true).unwrap();
/// a.send(&1u8).unwrap();
/// assert_eq!(b.recv::<u8>().unwrap(), 1);
/// ```
#[allow(non_snake_case)]
pub fn Pipe(duplex: bool) -> Result<(Connection, Connection), ProcessError> {
    pipe(duplex)
}
