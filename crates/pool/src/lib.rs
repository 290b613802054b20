//! Python's `multiprocessing.Pool`, in Rust, and a pool that never hangs.
//!
//! * [`Pool`]: `apply`, `apply_async` and `map_async` (with callbacks), `map`, `imap`,
//!   `imap_unordered`, `starmap`, `starmap_async`, chunk sizes as in Python, `close`,
//!   `terminate`, `join`; dropping the pool terminates it.
//! * Beyond Python: a crashed worker fails only the task it was running
//!   ([`PoolError::WorkerDied`]), even within a chunk (the chunk's other items run again
//!   elsewhere), and is replaced; per-task timeouts; panics come back with their backtrace;
//!   results that cannot be serialized fail only their task; `imap` reads its input lazily; progress callbacks, and a
//!   tqdm-style progress bar with the `progress-bar` feature (`Pool::map_with_bar`).
//! * [`ThreadPool`]: the same API over threads.
//!
//! ```
//! fn factorial(n: u64) -> f64 { (1..=n).map(|k| k as f64).product() }
//!
//! multiproc::init(); // first thing in main
//! let pool = multiproc::Pool::new(4).unwrap();
//! let results = pool.map(factorial, 1..=100u64).unwrap();
//! println!("completed {} computations", results.len());
//! ```

#![warn(missing_debug_implementations)]

// First, so that `ThreadPool`'s docs list its constructors before the methods `pool_api!` adds
// to it in `pool` and `progress` (rustdoc shows impl blocks in the order of their modules).
mod thread_pool;

mod api;
mod backend;
mod builder;
mod control;
mod dispatcher;
mod error;
mod imap;
mod inbox;
mod pool;
#[cfg(feature = "progress-bar")]
mod progress;
#[cfg(feature = "redis")]
mod redis;
mod result;
mod scheduler;
mod sys;
mod worker;

#[cfg(feature = "redis")]
pub use self::redis::{worker_mode as redis_worker_mode, RedisStats};
pub use builder::PoolBuilder;
pub use error::PoolError;
pub use imap::IMapIter;
pub use pool::{Data, Pool};
#[cfg(feature = "progress-bar")]
pub use progress::ProgressBar;
pub use result::AsyncResult;
pub use thread_pool::{ThreadPool, ThreadPoolBuilder};
