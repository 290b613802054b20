//! [`ThreadPool`] and [`ThreadPoolBuilder`]: [`Pool`]'s API over worker threads. The mapping
//! calls and `close`/`terminate`/`join` are defined beside `Pool`'s (`pool.rs`, `progress.rs`),
//! by [`pool_api!`](crate::api::pool_api), each delegating to the pool inside by name (no
//! `Deref`: a `ThreadPool` is not a `Pool`, and methods that only make sense for processes,
//! such as `pids`, are not offered).

use crate::builder::PoolBuilder;
use crate::pool::{Data, Pool};
use crate::PoolError;

/// A pool of worker *threads* with the same API as [`Pool`]: for I/O-bound work, and to compare.
/// Tasks still travel as serialized calls, so the code moves between the two unchanged; there
/// is no `task_timeout` (a thread cannot be killed).
///
/// ```
/// fn shout(s: String) -> String { s.to_uppercase() }
/// let pool = multiproc::ThreadPool::new(2).unwrap();
/// assert_eq!(pool.map(shout, vec!["a".to_string(), "b".to_string()]).unwrap(), ["A", "B"]);
/// ```
pub struct ThreadPool(pub(crate) Pool);

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ThreadPool")
            .field(&self.0.processes())
            .finish()
    }
}

/// Configures a [`ThreadPool`]: Python's `ThreadPool(processes, initializer, initargs)`.
///
/// ```
/// fn setup(tag: String) { let _ = tag; }
/// let pool: multiproc::ThreadPool = multiproc::ThreadPool::builder()
///     .threads(2)
///     .initializer(setup, "ready".to_string())
///     .build()
///     .unwrap();
/// # drop(pool);
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ThreadPoolBuilder(PoolBuilder);

impl ThreadPoolBuilder {
    /// Number of worker threads (default: [`cpu_count`](multiproc_process::cpu_count)). Zero
    /// is an error.
    #[doc(alias = "processes")]
    pub fn threads(self, n: usize) -> Self {
        ThreadPoolBuilder(self.0.processes(n))
    }

    /// Run `f(args)` once in each worker thread before its first task.
    pub fn initializer<A: Data>(self, f: fn(A), args: A) -> Self {
        ThreadPoolBuilder(self.0.initializer(f, args))
    }

    /// Replace a worker thread after it has completed `n` tasks (chunks). Zero is an error.
    pub fn maxtasksperchild(self, n: usize) -> Self {
        ThreadPoolBuilder(self.0.maxtasksperchild(n))
    }

    /// Start the worker threads.
    pub fn build(self) -> Result<ThreadPool, PoolError> {
        self.0.build().map(ThreadPool)
    }
}

impl ThreadPool {
    /// A pool of `threads` worker threads.
    pub fn new(threads: usize) -> Result<ThreadPool, PoolError> {
        ThreadPool::builder().threads(threads).build()
    }

    /// Configure a thread pool.
    pub fn builder() -> ThreadPoolBuilder {
        let mut b = Pool::builder();
        b.threads = true;
        ThreadPoolBuilder(b)
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.0.processes()
    }
}
