use multiproc_pickle::PickleError;
use thiserror::Error;

/// Errors of processes, connections and listeners.
///
/// ```
/// use multiproc::{pipe, Error};
/// let (a, b) = pipe(true).unwrap();
/// drop(b);
/// assert!(matches!(a.recv_bytes(), Err(Error::Eof)));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Encoding or decoding a value failed, or a frame was malformed or too large.
    #[error(transparent)]
    Pickle(#[from] PickleError),
    /// The peer closed its end: no more messages will come.
    #[error("end of file: the other end of the connection is closed")]
    Eof,
    /// This handle was closed with `close()`.
    #[error("the handle is closed")]
    Closed,
    /// The connection is read-only (or write-only) and the other operation was attempted.
    #[error("connection is {0}")]
    WrongDirection(&'static str),
    /// `recv_bytes_into` got a message longer than the buffer; here is the whole message.
    #[error("buffer too short for a message of {} bytes", .0.len())]
    BufferTooShort(Vec<u8>),
    /// The authkey challenge failed (wrong key, or a peer that does not speak the protocol).
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// `start` was called on a process that was already started.
    #[error("a process can only be started once")]
    AlreadyStarted,
    /// The operation needs a started process.
    #[error("the process has not been started")]
    NotStarted,
    /// `set_start_method` was called after a start method was chosen.
    #[error("the start method has already been set")]
    StartMethodAlreadySet,
    /// The start method does not exist on this platform.
    #[error("start method {0:?} is not available on this platform")]
    StartMethodUnavailable(crate::StartMethod),
    /// A child refused to run its task, e.g. because it is a different build.
    #[error("the child refused its task: {0}")]
    Refused(String),
    /// A process handle was used after `close()`.
    #[error("process object is closed")]
    ProcessClosed,
    /// `close()` was called on a process that is still running.
    #[error("cannot close a process while it is still running; join or kill it first")]
    StillRunning,
}
