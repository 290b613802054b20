use multiproc_pickle::PickleError;
use thiserror::Error;

/// Errors of processes, connections and listeners.
///
/// ```
/// use multiproc::{pipe, ProcessError as Error};
/// let (a, b) = pipe(true).unwrap();
/// drop(b);
/// assert!(matches!(a.recv_bytes(), Err(Error::Eof)));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed (or a listener gave up on a handshake: a deadline, a
    /// dropped connection); the `io::Error` is the [`source`](std::error::Error::source), and
    /// [`io_error`](Self::io_error) finds it here and behind [`Error::Pickle`].
    #[error("an I/O operation failed")]
    Io(#[from] std::io::Error),
    /// Starting the child failed in the operating system (creating its channel, spawning or
    /// forking it, handing it its job); the `io::Error` is the
    /// [`source`](std::error::Error::source). Nothing is left running.
    #[error("cannot start the process")]
    Start(#[source] std::io::Error),
    /// Encoding or decoding a value failed, or a frame was malformed or too large (it displays
    /// as the [`PickleError`] and has its source).
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
    /// A process was started before [`init`](crate::init) ran in this process. A spawned child
    /// would run `main` again instead of its task (with every start method `init` is required,
    /// so a program never depends on the method it happens to use).
    #[error(
        "multiproc::init() has not run in this process, so it cannot start processes: put \
         #[multiproc::main] on main, or call multiproc::init() as its first line (in a test \
         binary: multiproc::test_support!())"
    )]
    NotInitialized,
    /// The child ran the program's `main` instead of its task, because that `main` does not
    /// call [`init`](crate::init) first (it said so on its stderr and exited with 1).
    #[error(
        "the child ran the program's main instead of its task: main must call \
         multiproc::init() first (put #[multiproc::main] on it; in a test binary: \
         multiproc::test_support!())"
    )]
    ChildNotInitialized,
    /// A daemon process tried to start a child that is not a daemon. A daemon is killed when its
    /// parent ends, and could not wait for such a child, which would live on as an orphan
    /// (Python forbids daemons any children; here their children are daemons by default).
    #[error(
        "a daemon process cannot start a non-daemon child (it would outlive the daemon, which \
         is killed when its own parent ends); leave the child's daemon flag as inherited"
    )]
    DaemonWithNonDaemonChild,
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

impl Error {
    /// The operating system's error behind this one, if there is one: the `io::Error` of
    /// [`Error::Io`] or [`Error::Start`], or of a handle that could not be duplicated ([`Error::Pickle`] of
    /// [`PickleError::Io`], `EMFILE` when the process has no descriptor left).
    ///
    /// ```
    /// use multiproc::ProcessError as Error;
    /// let e = Error::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
    /// assert_eq!(e.io_error().map(|io| io.kind()), Some(std::io::ErrorKind::TimedOut));
    /// assert!(Error::Eof.io_error().is_none());
    /// ```
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            Error::Pickle(p) => p.io_error(),
            other => multiproc_pickle::find_source(other),
        }
    }
}
