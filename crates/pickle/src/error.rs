use thiserror::Error;

/// Everything that can go wrong while turning values into bytes and back.
///
/// ```
/// use multiproc::pickle::{decode, PickleError};
/// let err = decode::<String>(&[200]).unwrap_err();
/// assert!(matches!(err, PickleError::Decode(_)));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PickleError {
    /// The value could not be serialized (a serde `Serialize` impl failed).
    #[error("cannot serialize value: {0}")]
    Encode(String),
    /// The bytes are not a valid encoding of the requested type.
    #[error("malformed bytes: {0}")]
    Decode(String),
    /// A frame announced more bytes than the configured maximum.
    #[error("message of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The announced size.
        size: u64,
        /// The configured maximum.
        max: u64,
    },
    /// The bytes describe a value nested deeper than the decoding limit (see
    /// [`DEFAULT_MAX_DEPTH`](crate::DEFAULT_MAX_DEPTH)); decoding stopped there instead of
    /// recursing further.
    #[error("value nested deeper than the limit of {max} levels")]
    TooDeep {
        /// The nesting limit that was in force.
        max: usize,
    },
    /// A buffer for an incoming message could not be allocated.
    #[error("cannot allocate {size} bytes for an incoming message")]
    OutOfMemory {
        /// How many bytes the buffer needed.
        size: u64,
    },
    /// A frame header was invalid (for example a negative length).
    #[error("malformed frame header: {0}")]
    BadFrame(String),
    /// An OS handle was serialized outside a handle-carrying transfer
    /// (for example with plain [`encode`](crate::encode), or sent through a connection).
    #[error(
        "an OS handle can only travel as an argument to a child process, not with a plain encode"
    )]
    HandleOutsideTransfer,
    /// A serialized value referred to an OS handle that did not arrive (or was used twice).
    #[error("OS handle #{0} is missing from the transfer")]
    MissingHandle(u32),
    /// The receiving binary is not the build that sent the function reference.
    #[error("build fingerprint mismatch: sender is {expected:#018x}, this binary is {actual:#018x}; parent and child must be the same build")]
    BuildMismatch {
        /// Fingerprint of the sender's binary.
        expected: u64,
        /// Fingerprint of this binary.
        actual: u64,
    },
    /// A message that encodes but that the receiver could not decode back into its type: a
    /// serde feature postcard does not support (see the crate docs, "What a message type may
    /// use"). Found at the sender by [`check_round_trip`](crate::check_round_trip) in debug
    /// builds.
    #[error("a {type_name} encodes but would not decode at the receiver ({reason}); likely cause: {hint}")]
    WontRoundTrip {
        /// The message's type.
        type_name: &'static str,
        /// What decoding said.
        reason: String,
        /// The serde attribute that most likely causes it, and what to do instead.
        hint: &'static str,
    },
    /// Duplicating an OS handle for a transfer failed (for example with `EMFILE`, "Too many
    /// open files", when the process has no descriptor left); the operating system's error is
    /// the [`source`](std::error::Error::source).
    #[error("cannot duplicate an OS handle")]
    Io(#[source] std::io::Error),
}

impl PickleError {
    /// The operating system's error behind this one, if there is one.
    ///
    /// ```
    /// use multiproc::pickle::PickleError;
    /// let e = PickleError::Io(std::io::Error::from_raw_os_error(24));
    /// assert_eq!(e.io_error().and_then(|io| io.raw_os_error()), Some(24));
    /// assert!(PickleError::HandleOutsideTransfer.io_error().is_none());
    /// ```
    pub fn io_error(&self) -> Option<&std::io::Error> {
        find_source(self)
    }
}

/// The first error of type `E` in `err`'s chain of [`source`](std::error::Error::source)s,
/// `err` itself included: how to reach a typed cause (an `io::Error`, a crate's error) from
/// any error of multiproc, whatever wraps it.
///
/// ```
/// use multiproc::pickle::{find_source, PickleError};
/// let e = PickleError::Io(std::io::Error::from(std::io::ErrorKind::Unsupported));
/// let io: &std::io::Error = find_source(&e).unwrap();
/// assert_eq!(io.kind(), std::io::ErrorKind::Unsupported);
/// assert!(find_source::<PickleError>(&e).is_some());
/// ```
pub fn find_source<'a, E: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

/// A cause shared by the clones of the error that holds it: the errors of queues, locks and
/// pools are `Clone` (a pool hands one error to every task of a failed chunk), their causes
/// (an `io::Error`, a [`PickleError`]) are not, so they hold them behind an `Arc`.
///
/// It dereferences to the cause, and the holder's [`source`](std::error::Error::source) is
/// the cause itself, so `find_source`/`downcast_ref` find it. Two `SharedError`s are equal
/// when they share one cause (clones of one error), never by comparing two causes' contents.
///
/// ```
/// use multiproc::pickle::SharedError;
/// let a = SharedError::new(std::io::Error::from_raw_os_error(24));
/// assert_eq!(a.raw_os_error(), Some(24));
/// assert_eq!(a, a.clone());
/// assert_ne!(a, SharedError::new(std::io::Error::from_raw_os_error(24)));
/// ```
pub struct SharedError<E: ?Sized>(std::sync::Arc<E>);

impl<E> SharedError<E> {
    /// Wrap `cause`.
    pub fn new(cause: E) -> Self {
        SharedError(std::sync::Arc::new(cause))
    }
}

impl SharedError<dyn std::error::Error + Send + Sync> {
    /// Wrap a cause of any error type (the holder's `source` is still that error, so it can
    /// be downcast).
    ///
    /// ```
    /// use multiproc::pickle::{PickleError, SharedError};
    /// let e = SharedError::any(PickleError::HandleOutsideTransfer);
    /// assert!(e.downcast_ref::<PickleError>().is_some());
    /// ```
    pub fn any(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        SharedError(std::sync::Arc::new(cause))
    }
}

impl<E> From<E> for SharedError<E> {
    fn from(cause: E) -> Self {
        SharedError::new(cause)
    }
}

impl<E: ?Sized> Clone for SharedError<E> {
    fn clone(&self) -> Self {
        SharedError(self.0.clone())
    }
}

impl<E: ?Sized> PartialEq for SharedError<E> {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<E: ?Sized> Eq for SharedError<E> {}

impl<E: ?Sized> std::ops::Deref for SharedError<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.0
    }
}

impl<E: std::fmt::Debug + ?Sized> std::fmt::Debug for SharedError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
