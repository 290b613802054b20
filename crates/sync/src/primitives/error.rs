use thiserror::Error;

/// Errors of the synchronization primitives.
///
/// ```
/// use multiproc::{Lock, SyncError};
/// let lock = Lock::new().unwrap();
/// assert!(matches!(lock.release(), Err(SyncError::NotLocked)));
/// ```
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncError {
    /// Creating the shared memory failed.
    #[error("shared memory: {0}")]
    Shm(String),
    /// `release` of a lock that is not held (Python's `ValueError`/`RuntimeError`).
    #[error("release of an unlocked lock")]
    NotLocked,
    /// An `RLock` released, or a `Condition` used, by a thread that does not hold the lock.
    #[error("the lock is not held by this thread")]
    NotOwner,
    /// A `BoundedSemaphore` released more times than it was acquired.
    #[error("semaphore released too many times")]
    TooManyReleases,
    /// The barrier was aborted, reset while waiting, timed out, or its action panicked.
    #[error("broken barrier")]
    BrokenBarrier,
    /// A `Condition` already has as many waiters as it has places for.
    #[error("more than {0} waiters on one condition")]
    TooManyWaiters(usize),
    /// An argument out of range (a barrier of zero parties, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

impl From<multiproc_shm::ShmError> for SyncError {
    fn from(e: multiproc_shm::ShmError) -> Self {
        SyncError::Shm(e.to_string())
    }
}
