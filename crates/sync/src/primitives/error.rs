use multiproc_pickle::SharedError;
use multiproc_shm::ShmError;
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
    /// Creating the primitive's shared memory failed; the [`ShmError`] is the
    /// [`source`](std::error::Error::source) (and `err.io_error()` the operating system's
    /// error, if there is one).
    #[error("cannot create the shared memory of a synchronization primitive")]
    Shm(#[source] SharedError<ShmError>),
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

impl From<ShmError> for SyncError {
    fn from(e: ShmError) -> Self {
        SyncError::Shm(SharedError::new(e))
    }
}

impl SyncError {
    /// The operating system's error behind this one, if there is one.
    ///
    /// ```
    /// use multiproc::SyncError;
    /// let e = SyncError::from(multiproc::ShmError::Io(std::io::Error::from_raw_os_error(24)));
    /// assert_eq!(e.io_error().and_then(|io| io.raw_os_error()), Some(24));
    /// assert!(SyncError::NotLocked.io_error().is_none());
    /// ```
    pub fn io_error(&self) -> Option<&std::io::Error> {
        multiproc_pickle::find_source(self)
    }
}
