//! The manager's errors: what went wrong on the way ([`ManagerError`]) and what the server
//! refused ([`ServerError`], which crosses the wire).

use multiproc_pickle::PickleError;
use multiproc_process::Error as ProcessError;
use serde::{Deserialize, Serialize};

/// Every error of a manager, a proxy or a server.
///
/// ```
/// use multiproc::managers::{ManagerError, ServerError};
/// let e = ManagerError::from(ServerError::KeyNotFound);
/// assert_eq!(e.to_string(), "the server refused: key not found");
/// assert!(matches!(e, ManagerError::Server(ServerError::KeyNotFound)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The server could not be reached, or did not accept us (a wrong authkey is
    /// `ProcessError::Authentication` inside).
    #[error("could not connect to the manager at {address}")]
    Connect {
        /// The address tried.
        address: String,
        /// Why.
        #[source]
        source: ProcessError,
    },
    /// The connection to the server broke during a call: the server is gone (killed, shut
    /// down, its host unreachable). Every later call fails the same way, at once.
    #[error("the manager server is gone")]
    ServerGone(#[source] ProcessError),
    /// The server process could not be started, or did not come up.
    #[error("could not start the manager server")]
    Start(#[source] ProcessError),
    /// The server did not come up within its start timeout.
    #[error("the manager server did not come up within {0:?}")]
    StartTimeout(std::time::Duration),
    /// A value could not be encoded or decoded.
    #[error(transparent)]
    Pickle(#[from] PickleError),
    /// A block of shared memory could not be attached (a `SharedMemoryManager`'s).
    #[error(transparent)]
    Shm(#[from] multiproc_shm::ShmError),
    /// The request is bigger than the server accepts (its `max_request_size`): refused before
    /// it was sent, and the client goes on.
    #[error("a request of {size} bytes is over the server's limit of {max}")]
    RequestTooLarge {
        /// The encoded request's size.
        size: u64,
        /// The server's limit.
        max: u64,
    },
    /// The server refused the request (the refusal is shown here, not repeated as a
    /// [`source`](std::error::Error::source)).
    #[error("the server refused: {0}")]
    Server(ServerError),
    /// The object behind a proxy has another type than the proxy expects (a proxy decoded as
    /// the wrong kind of proxy).
    #[error("a proxy of a {actual} cannot be used as a proxy of a {expected}")]
    WrongProxy {
        /// The type the proxy was decoded as.
        expected: String,
        /// The object's type on the server.
        actual: String,
    },
}

impl From<ServerError> for ManagerError {
    fn from(e: ServerError) -> Self {
        ManagerError::Server(e)
    }
}

impl ManagerError {
    /// The server's refusal, if that is what this is.
    ///
    /// ```
    /// use multiproc::managers::{ManagerError, ServerError};
    /// let e = ManagerError::from(ServerError::Empty);
    /// assert_eq!(e.server_error(), Some(&ServerError::Empty));
    /// ```
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            ManagerError::Server(e) => Some(e),
            _ => None,
        }
    }
}

/// What the server refused, and why: sent back to the caller as a typed value.
///
/// ```
/// use multiproc::managers::ServerError;
/// let e = ServerError::IndexOutOfRange { index: 5, len: 2 };
/// assert_eq!(e.to_string(), "index 5 out of range for length 2");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// No object with this id lives on the server (every proxy of it was dropped, or the id was
    /// never handed out).
    #[error("no object {0} on the server (released, or never created)")]
    NoSuchObject(u64),
    /// The object exists but is of another type.
    #[error("object {id} is a {actual}, not a {expected}")]
    WrongType {
        /// Its id.
        id: u64,
        /// The type the request was for.
        expected: String,
        /// The object's type.
        actual: String,
    },
    /// No type of this name is registered on the server.
    #[error("no type {0:?} is registered on this server")]
    UnknownType(String),
    /// A registered type has no method of this name.
    #[error("{type_name} has no method {method:?}")]
    UnknownMethod {
        /// The type.
        type_name: String,
        /// The method asked for.
        method: String,
    },
    /// The key is not in the dict (Python's `KeyError`).
    #[error("key not found")]
    KeyNotFound,
    /// The index is out of range (Python's `IndexError`).
    #[error("index {index} out of range for length {len}")]
    IndexOutOfRange {
        /// The index asked for.
        index: i64,
        /// The length then.
        len: u64,
    },
    /// The value is not in the list (Python's `ValueError` from `index` or `remove`).
    #[error("value not found")]
    ValueNotFound,
    /// An operation that would change the length of a fixed-length array
    /// ([`ArrayProxy`](crate::ArrayProxy)): Python's arrays cannot grow or shrink either.
    #[error("an array's length is fixed")]
    FixedLength,
    /// A namespace has no attribute of this name (Python's `AttributeError`).
    #[error("no attribute {0:?}")]
    NoAttribute(String),
    /// The stored value cannot be read as the number asked for.
    #[error("the stored value is not a {0}")]
    NotANumber(String),
    /// The arithmetic result does not fit its type.
    #[error("arithmetic overflow")]
    Overflow,
    /// A proxy cannot be a dict key.
    #[error("a proxy cannot be used as a key")]
    ProxyAsKey,
    /// This server does not run functions that clients send (`update` with a `fn`): only a
    /// server started by [`Manager::start`](crate::Manager::start), or one built with
    /// `allow_functions(true)`, runs them.
    #[error("this server does not run functions sent by clients (allow_functions is off)")]
    FunctionsNotAllowed,
    /// The function was sent by another build of the program than the server runs.
    #[error(
        "the function comes from another build than the server's ({client:#x} vs {server:#x})"
    )]
    BuildMismatch {
        /// The client's build fingerprint.
        client: u64,
        /// The server's.
        server: u64,
    },
    /// A function or method panicked on the server (the server goes on).
    #[error("panicked on the server: {0}")]
    Panicked(String),
    /// The queue is empty (a non-blocking or timed `get`).
    #[error("the queue is empty")]
    Empty,
    /// The queue is full (a non-blocking or timed `put`).
    #[error("the queue is full")]
    Full,
    /// A timed wait ran out.
    #[error("timed out")]
    Timeout,
    /// Releasing something not held (a lock not locked, a semaphore released too often, a
    /// condition used without its lock, `task_done` called too often).
    #[error("{0}")]
    NotHeld(String),
    /// The barrier was broken (reset or aborted, or a waiter timed out).
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// The request could not be decoded, or is not valid for the object.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The caller hung up while its call waited on the server (a blocking `get` or
    /// `acquire`): nothing was taken for it. Nobody receives this reply; it names why the wait
    /// ended.
    #[error("the caller hung up while it waited")]
    CallerGone,
    /// An error of the operating system on the server.
    #[error("on the server: {0}")]
    Os(String),
}
