use thiserror::Error;

/// Everything that can go wrong while turning values into bytes and back.
///
/// ```
/// use multiproc_pickle::{decode, PickleError};
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
    /// Duplicating an OS handle failed.
    #[error("cannot duplicate an OS handle: {0}")]
    Io(#[from] std::io::Error),
}
