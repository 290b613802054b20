use multiproc_pickle::{PickleError, SharedError};
use thiserror::Error;

/// Why a task (or the pool) failed.
///
/// ```
/// use multiproc::PoolError;
/// let e = PoolError::WorkerDied { exitcode: -9 };
/// assert_eq!(e.to_string(), "the worker running this task died (exit code -9)");
/// ```
#[derive(Debug, Clone, Error, PartialEq)]
#[non_exhaustive]
pub enum PoolError {
    /// The task panicked; the worker survived.
    #[error("task panicked: {message}")]
    Panic {
        /// The panic message.
        message: String,
        /// Where it panicked, and the worker-side backtrace.
        backtrace: String,
    },
    /// The worker process running the task ended (crash, `abort`, OOM kill, `SIGKILL`, `exit`);
    /// it was replaced. `exitcode` follows Python: −N for signal N.
    #[error("the worker running this task died (exit code {exitcode})")]
    WorkerDied {
        /// The worker's exit code.
        exitcode: i32,
    },
    /// The task ran longer than the pool's task timeout; its worker was killed and replaced.
    #[error("the task exceeded the pool's task timeout; its worker was killed")]
    TaskTimeout,
    /// The task's arguments or result could not be serialized or deserialized in this process
    /// (or a worker's reply did not hold what the task asked for); the [`PickleError`] is the
    /// [`source`](std::error::Error::source).
    #[error("cannot serialize or deserialize the task's data")]
    Serialization(#[source] SharedError<PickleError>),
    /// The worker could not serialize the task's result, or could not read the task; its
    /// message (the error happened in the worker's process, only its text came back).
    #[error("the worker could not serialize or deserialize the task's data: {0}")]
    WorkerSerialization(String),
    /// `AsyncResult::get` gave up waiting (the task goes on).
    #[error("timed out waiting for the result")]
    Timeout,
    /// The pool was closed: no new tasks.
    #[error("the pool is closed")]
    Closed,
    /// The pool was terminated before the task finished.
    #[error("the pool was terminated")]
    Terminated,
    /// An argument was invalid (zero workers, zero chunk size, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// `join` was called on a pool that is neither closed nor terminated.
    #[error("the pool is still running: call close() or terminate() before join()")]
    StillRunning,
    /// Starting a worker (or the pool's own shared memory, inbox or thread) failed; the cause
    /// (a `multiproc::ProcessError`, a `ShmError`, a `QueueError`, an `io::Error`) is the
    /// [`source`](std::error::Error::source): downcast it, or ask
    /// [`io_error`](Self::io_error) for the operating system's error (`EMFILE`, ...).
    #[error("cannot start a worker")]
    Start(#[source] SharedError<dyn std::error::Error + Send + Sync>),
    /// A chunk was delivered to `deliveries` workers of a Redis pool and none of them
    /// answered (each died or stalled past its lease): the item that kills its workers.
    #[error("the task was delivered to {deliveries} workers and none of them answered")]
    WorkerLost {
        /// How many times the task was delivered.
        deliveries: u32,
    },
    /// A Redis pool found no live worker of this build before its discovery timeout.
    #[error("no workers for this build ({build}) on cluster {cluster:?}, {others} for another build or authkey: start this binary with --multiproc-worker (with the pool's MULTIPROC_REDIS_AUTHKEY, if it has one)")]
    NoWorkers {
        /// The cluster name.
        cluster: String,
        /// This build's fingerprint (the stream keys' build part, with the key id of an
        /// authkey).
        build: String,
        /// Live workers of other builds (or with another authkey, or none).
        others: usize,
    },
    /// A process pool was made before `multiproc::init()` ran in this process (its workers
    /// would run `main` instead of the pool's work).
    ///
    /// ```
    /// // This example's `main` forgot `multiproc::init()`:
    /// let e = multiproc::Pool::new(2).unwrap_err();
    /// assert!(matches!(e, multiproc::PoolError::NotInitialized));
    /// assert!(e.to_string().contains("#[multiproc::main]"));
    /// ```
    #[error("cannot start a worker: {}", multiproc_process::Error::NotInitialized)]
    NotInitialized,
}

impl PoolError {
    /// [`PoolError::Start`] with `cause`.
    pub(crate) fn start(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        PoolError::Start(SharedError::any(cause))
    }

    /// The operating system's error behind this one, if there is one.
    ///
    /// ```
    /// use multiproc::PoolError;
    /// assert!(PoolError::Timeout.io_error().is_none());
    /// ```
    pub fn io_error(&self) -> Option<&std::io::Error> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(self);
        while let Some(e) = cur {
            // (the causes that display as their own cause: look inside them)
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return Some(io);
            }
            if let Some(p) = e.downcast_ref::<multiproc_process::Error>() {
                return p.io_error();
            }
            cur = e.source();
        }
        None
    }
}

impl From<PickleError> for PoolError {
    fn from(e: PickleError) -> Self {
        PoolError::Serialization(SharedError::new(e))
    }
}
