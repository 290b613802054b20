//! [`ThreadPool`] and [`ThreadPoolBuilder`]: [`Pool`]'s API over worker threads, each method
//! delegating to the pool inside by name (no `Deref`: a `ThreadPool` is not a `Pool`, and
//! methods that only make sense for processes, such as `pids`, are not offered).

use crate::builder::PoolBuilder;
use crate::pool::{Data, Pool};
use crate::{AsyncResult, IMapIter, PoolError};

/// A pool of worker *threads* with the same API as [`Pool`]: for I/O-bound work, and to compare.
/// Tasks still travel as serialized calls, so the code moves between the two unchanged; there
/// is no `task_timeout` (a thread cannot be killed).
///
/// ```
/// fn shout(s: String) -> String { s.to_uppercase() }
/// let pool = multiproc::ThreadPool::new(2).unwrap();
/// assert_eq!(pool.map(shout, vec!["a".to_string(), "b".to_string()]).unwrap(), ["A", "B"]);
/// ```
pub struct ThreadPool(Pool);

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

    /// [`Pool::apply`] on a thread.
    pub fn apply<A: Data, R: Data>(&self, f: fn(A) -> R, arg: A) -> Result<R, PoolError> {
        self.0.apply(f, arg)
    }

    /// [`Pool::apply_async`] on a thread.
    pub fn apply_async<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<AsyncResult<R>, PoolError> {
        self.0.apply_async(f, arg)
    }

    /// [`Pool::apply_async_with`] on a thread.
    pub fn apply_async_with<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        arg: A,
        callback: impl FnOnce(&R) + Send + 'static,
        error_callback: impl FnOnce(&PoolError) + Send + 'static,
    ) -> Result<AsyncResult<R>, PoolError> {
        self.0.apply_async_with(f, arg, callback, error_callback)
    }

    /// [`Pool::map`] over threads.
    pub fn map<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, PoolError> {
        self.0.map(f, items)
    }

    /// [`Pool::map_chunked`] over threads.
    pub fn map_chunked<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError> {
        self.0.map_chunked(f, items, chunksize)
    }

    /// [`Pool::map_async`] over threads.
    pub fn map_async<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError> {
        self.0.map_async(f, items, chunksize)
    }

    /// [`Pool::map_async_with`] over threads.
    pub fn map_async_with<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        callback: impl FnOnce(&Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(&PoolError) + Send + 'static,
    ) -> Result<AsyncResult<Vec<R>>, PoolError> {
        self.0
            .map_async_with(f, items, chunksize, callback, error_callback)
    }

    /// [`Pool::map_each`] over threads.
    pub fn map_each<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<Vec<Result<R, PoolError>>, PoolError> {
        self.0.map_each(f, items, chunksize)
    }

    /// [`Pool::map_with_progress`] over threads.
    pub fn map_with_progress<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        progress: impl Fn(usize, usize) + Send + Sync + 'static,
    ) -> Result<Vec<R>, PoolError> {
        self.0.map_with_progress(f, items, chunksize, progress)
    }

    /// [`Pool::map_with_bar`] over threads (feature `progress-bar`).
    #[cfg(feature = "progress-bar")]
    pub fn map_with_bar<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        label: &str,
    ) -> Result<Vec<R>, PoolError> {
        self.0.map_with_bar(f, items, chunksize, label)
    }

    /// [`Pool::map_with_this_bar`] over threads (feature `progress-bar`).
    #[cfg(feature = "progress-bar")]
    pub fn map_with_this_bar<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        bar: &crate::ProgressBar,
    ) -> Result<Vec<R>, PoolError> {
        self.0.map_with_this_bar(f, items, chunksize, bar)
    }

    /// [`Pool::starmap`] over threads.
    pub fn starmap<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, PoolError> {
        self.0.starmap(f, items)
    }

    /// [`Pool::starmap_async`] over threads.
    pub fn starmap_async<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError> {
        self.0.starmap_async(f, items, chunksize)
    }

    /// [`Pool::imap`] over threads.
    pub fn imap<A: Data, R: Data, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<IMapIter<'_, A, R, I::IntoIter>, PoolError> {
        self.0.imap(f, items, chunksize)
    }

    /// [`Pool::imap_unordered`] over threads.
    pub fn imap_unordered<A: Data, R: Data, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<IMapIter<'_, A, R, I::IntoIter>, PoolError> {
        self.0.imap_unordered(f, items, chunksize)
    }

    /// [`Pool::close`]: no new tasks; the threads finish the queued ones.
    pub fn close(&self) {
        self.0.close()
    }

    /// [`Pool::terminate`]: drop queued tasks and stop the threads.
    pub fn terminate(&self) {
        self.0.terminate()
    }

    /// [`Pool::join`]: wait for the threads after `close` or `terminate`.
    pub fn join(&self) -> Result<(), PoolError> {
        self.0.join()
    }
}
