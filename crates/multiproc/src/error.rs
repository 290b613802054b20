//! One error type for programs that use several parts of multiproc.

use std::error::Error as StdError;
use std::io;

use multiproc_manager::ManagerError;
use multiproc_pickle::PickleError;
use multiproc_pool::PoolError;
use multiproc_process::Error as ProcessError;
use multiproc_shm::ShmError;
use multiproc_sync::{PutError, QueueError, SyncError};

/// Every error of multiproc: each crate's own error converts into it with `?`, so one
/// `fn main() -> multiproc::Result<()>` can start processes, open pipes, take locks, use
/// queues, shared memory and pools.
///
/// Each variant is one crate's error, unchanged: match the variant to look at the cause
/// (`Error::Pool(PoolError::WorkerDied { .. })`), or ask [`find`](Error::find) for a cause of
/// a given type anywhere in the chain, and [`io_error`](Error::io_error) /
/// [`io_kind`](Error::io_kind) for the operating system's error behind it. The variants are
/// transparent: an `Error` displays as the crate's error and has its
/// [`source`](std::error::Error::source), so printing the chain of sources says each thing
/// once.
///
/// ```
/// use multiproc::{Error, Lock, PoolError, Queue, QueueError};
///
/// fn run() -> multiproc::Result<u32> {
///     let q: Queue<u32> = Queue::new()?; // QueueError
///     let lock = Lock::new()?; // SyncError
///     let (a, b) = multiproc::Pipe(true)?; // multiproc::ProcessError
///     a.send(&7u32)?;
///     assert!(lock.acquire().acquired());
///     q.put(b.recv()?)?; // PutError<u32>: the value is dropped
///     lock.release()?;
///     Ok(q.get()?)
/// }
///
/// assert_eq!(run().unwrap(), 7);
/// let e = Error::from(QueueError::Empty);
/// assert!(matches!(e, Error::Queue(QueueError::Empty)));
/// assert!(e.io_error().is_none());
/// let e = Error::from(PoolError::Timeout);
/// assert_eq!(e.to_string(), "timed out waiting for the result");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Processes, pipes, connections, listeners ([`ProcessError`](crate::ProcessError)).
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// Encoding and decoding values ([`PickleError`]).
    #[error(transparent)]
    Pickle(#[from] PickleError),
    /// Shared memory, `Value`, `Array`, `ShareableList` ([`ShmError`]).
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// Locks, semaphores, conditions, events, barriers ([`SyncError`]).
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// Queues ([`QueueError`]; a [`PutError`] converts into it, without its value).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Pools and their results ([`PoolError`]).
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// Managers and their proxies ([`ManagerError`]).
    #[error(transparent)]
    Manager(#[from] ManagerError),
}

/// `Result` with [`multiproc::Error`](Error) as its error: `fn main() -> multiproc::Result<()>`.
///
/// ```
/// fn squares() -> multiproc::Result<Vec<u64>> {
///     let (a, b) = multiproc::Pipe(true)?;
///     a.send(&vec![1u64, 4, 9])?;
///     Ok(b.recv()?)
/// }
/// assert_eq!(squares().unwrap(), [1, 4, 9]);
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl<T> From<PutError<T>> for Error {
    fn from(e: PutError<T>) -> Self {
        Error::Queue(e.error)
    }
}

impl Error {
    /// The crate's error this one is.
    fn inner(&self) -> &(dyn StdError + 'static) {
        match self {
            Error::Process(e) => e,
            Error::Pickle(e) => e,
            Error::Shm(e) => e,
            Error::Sync(e) => e,
            Error::Queue(e) => e,
            Error::Pool(e) => e,
            Error::Manager(e) => e,
        }
    }

    /// The first cause of type `E`: the crate's error itself, or one in its chain of
    /// [`source`](std::error::Error::source)s (looking also into the errors that display as
    /// their cause, such as a [`ProcessError::Pickle`](crate::ProcessError::Pickle)).
    ///
    /// ```
    /// use multiproc::{Error, PickleError, ProcessError};
    /// let e = Error::from(ProcessError::Pickle(PickleError::HandleOutsideTransfer));
    /// assert!(matches!(e.find::<PickleError>(), Some(PickleError::HandleOutsideTransfer)));
    /// assert!(e.find::<ProcessError>().is_some());
    /// assert!(e.find::<std::io::Error>().is_none());
    /// ```
    pub fn find<E: StdError + 'static>(&self) -> Option<&E> {
        let mut cur = Some(self.inner());
        while let Some(link) = cur {
            if let Some(found) = link.downcast_ref::<E>() {
                return Some(found);
            }
            // A transparent wrapper's source skips what it wraps: look inside.
            if let Some(ProcessError::Pickle(p)) = link.downcast_ref::<ProcessError>() {
                if let Some(found) = (p as &(dyn StdError + 'static)).downcast_ref::<E>() {
                    return Some(found);
                }
            }
            cur = link.source();
        }
        None
    }

    /// The operating system's error behind this one, if there is one (a descriptor that could
    /// not be created or duplicated, a system call that failed, ...).
    ///
    /// ```
    /// use multiproc::{Error, ProcessError};
    /// let e = Error::from(ProcessError::from(std::io::Error::from_raw_os_error(24)));
    /// assert_eq!(e.io_error().and_then(|io| io.raw_os_error()), Some(24));
    /// ```
    pub fn io_error(&self) -> Option<&io::Error> {
        self.find::<io::Error>()
    }

    /// The [`io::ErrorKind`] of [`io_error`](Self::io_error).
    ///
    /// ```
    /// use multiproc::{Error, ProcessError};
    /// let e = Error::from(ProcessError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)));
    /// assert_eq!(e.io_kind(), Some(std::io::ErrorKind::TimedOut));
    /// assert_eq!(Error::from(ProcessError::Eof).io_kind(), None);
    /// ```
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        self.io_error().map(io::Error::kind)
    }
}
