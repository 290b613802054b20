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
    /// The task's arguments or result could not be (de)serialized.
    #[error("serialization failed: {0}")]
    Serialization(String),
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
    /// Starting a worker failed.
    #[error("cannot start a worker: {0}")]
    Start(String),
}

impl From<multiproc_pickle::PickleError> for PoolError {
    fn from(e: multiproc_pickle::PickleError) -> Self {
        PoolError::Serialization(e.to_string())
    }
}
