use multiproc_pickle::PickleError;
use thiserror::Error;

/// Errors of processes, connections and listeners.
///
/// ```
/// use multiproc_process::{pipe, Error};
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
    /// A value that owns OS handles was sent on a connection that cannot carry them (a
    /// one-way pipe, a TCP connection): only Unix sockets can (`pipe(true)`, a Unix-socket
    /// `Listener`/`Client`).
    #[error("this connection cannot carry OS handles: {0}")]
    HandlesNotCarried(&'static str),
    /// A received message's OS handles did not arrive as announced (more or fewer than its
    /// header said, or some attached to a message that announced none). Every handle that did
    /// arrive with it was closed; the connection stays usable.
    #[error("a message announced {announced} OS handles and came with {received}")]
    HandleCountMismatch {
        /// How many the message's header announced.
        announced: u32,
        /// How many arrived with it.
        received: usize,
    },
    /// The kernel dropped some of a message's OS handles (`MSG_CTRUNC`: more than a message
    /// may carry, or this process is out of descriptors). Those that arrived were closed.
    #[error("a message's OS handles were truncated by the kernel (out of descriptors?)")]
    HandlesTruncated,
    /// A message that carries OS handles was read with `recv_bytes`; read it with `recv` or
    /// `recv_bytes_with_handles`. Its handles were closed.
    #[error("a message carrying {0} OS handles was read without them (use recv or recv_bytes_with_handles)")]
    UnexpectedHandles(u32),
    /// `close()` was called on a process that is still running.
    #[error("cannot close a process while it is still running; join or kill it first")]
    StillRunning,
}
