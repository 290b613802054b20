use thiserror::Error;

/// Errors of shared memory.
///
/// ```
/// use multiproc::shm::{SharedMemory, ShmError};
/// assert!(matches!(SharedMemory::attach("/no-such-segment-here"), Err(ShmError::NotFound(_))));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ShmError {
    /// An operating-system call failed; the `io::Error` is the
    /// [`source`](std::error::Error::source) (see [`io_error`](Self::io_error)).
    #[error("an I/O operation on shared memory failed")]
    Io(#[from] std::io::Error),
    /// No segment has this name.
    #[error("no shared memory segment named {0:?}")]
    NotFound(String),
    /// A segment with this name exists already.
    #[error("a shared memory segment named {0:?} already exists")]
    Exists(String),
    /// The name is not portable (see [`SharedMemory::create`](crate::SharedMemory::create)).
    #[error("invalid shared memory name {0:?}: {1}")]
    InvalidName(String, &'static str),
    /// An access outside the segment.
    #[error("range {offset}..{end} is outside the segment of {len} bytes")]
    OutOfBounds {
        /// Start of the access.
        offset: usize,
        /// End of the access.
        end: usize,
        /// Segment length.
        len: usize,
    },
    /// A size of zero (or too large for this platform).
    #[error("invalid size {0}")]
    InvalidSize(usize),
    /// An element index past the end of a shared array.
    #[error("index {index} is out of range for a shared array of {len} elements")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// A slice whose length does not match the shared array's part it is copied to or from.
    #[error("length mismatch: expected {expected} elements, got {got}")]
    LengthMismatch {
        /// The length needed.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// Data that cannot be placed at this address: its alignment is larger than the
    /// segment's (a page), or an offset received from elsewhere is not aligned.
    #[error("offset {offset} is not aligned to {align} bytes")]
    Misaligned {
        /// Offset of the data in its segment.
        offset: usize,
        /// The alignment needed.
        align: usize,
    },
    /// A `ShareableList` str/bytes value longer than its slot.
    #[error("a value of {len} bytes does not fit its slot of {capacity} bytes")]
    ItemTooLarge {
        /// The value's encoded length.
        len: usize,
        /// The slot's capacity.
        capacity: usize,
    },
    /// `ShareableList::index` of a value the list does not hold.
    #[error("value not in the list")]
    NotInList,
    /// One item of a `ShareableList` that cannot be read (its format or bytes were
    /// overwritten by something that does not follow the list's layout).
    #[error("item {index} of the shared list cannot be read: {reason}")]
    BadItem {
        /// The item's position in the list.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A segment that does not hold what it should (attached to the wrong name?).
    #[error("malformed shared data: {0}")]
    Corrupt(String),
}

impl ShmError {
    /// The operating system's error behind this one, if there is one.
    ///
    /// ```
    /// use multiproc::ShmError;
    /// let e = ShmError::from(std::io::Error::from_raw_os_error(24));
    /// assert_eq!(e.io_error().and_then(|io| io.raw_os_error()), Some(24));
    /// assert!(ShmError::NotInList.io_error().is_none());
    /// ```
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            ShmError::Io(e) => Some(e),
            _ => None,
        }
    }
}
