//! `SharedMutex`: a [`RawMutex`] that owns (a share of) the memory it lives in.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{LockResult, NotLocked, RawMutex, Segment, ShmError};

/// A process-shared mutex that can be cloned, sent to child processes as an argument, and
/// embedded in a larger segment (a shared value can keep its lock next to its data).
///
/// It is the lock under `multiproc-sync`'s `Lock` and the default lock of shared values. Clones
/// share the same lock word; the memory stays mapped while any clone lives.
///
/// ```
/// use multiproc::shm::{LockResult, SharedMutex};
/// let m = SharedMutex::new().unwrap();
/// let m2 = m.clone();
/// assert_eq!(m.lock(), LockResult::Acquired);
/// assert_eq!(m2.try_lock(), LockResult::TimedOut);
/// m2.unlock().unwrap(); // any holder of the lock may release it, as in Python
/// assert!(!m.is_locked());
/// ```
#[derive(Clone, Debug)]
pub struct SharedMutex {
    seg: Arc<Segment>,
    offset: usize,
}

impl SharedMutex {
    /// A new unlocked mutex in a segment of its own.
    pub fn new() -> Result<SharedMutex, ShmError> {
        SharedMutex::in_segment(Arc::new(Segment::new(std::mem::size_of::<RawMutex>())?), 0)
    }

    /// The mutex whose word is at `offset` in `seg` (4-byte aligned, inside the segment). The
    /// word must be used only as a mutex from then on; all-zero bytes are an unlocked mutex.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiproc::shm::{Segment, SharedMutex};
    /// let seg = Arc::new(Segment::new(64).unwrap());
    /// let m = SharedMutex::in_segment(seg.clone(), 8).unwrap();
    /// assert!(m.lock().acquired());
    /// assert!(SharedMutex::in_segment(seg.clone(), 6).is_err()); // misaligned
    /// assert!(SharedMutex::in_segment(seg, 64).is_err()); // outside
    /// ```
    pub fn in_segment(seg: Arc<Segment>, offset: usize) -> Result<SharedMutex, ShmError> {
        let size = std::mem::size_of::<RawMutex>();
        if offset % std::mem::align_of::<RawMutex>() != 0 || offset + size > seg.len() {
            return Err(ShmError::OutOfBounds {
                offset,
                end: offset.saturating_add(size),
                len: seg.len(),
            });
        }
        Ok(SharedMutex { seg, offset })
    }

    /// The lock word.
    pub fn raw(&self) -> &RawMutex {
        // SAFETY: `in_segment` checked alignment and bounds; the segment lives as long as
        // `self` (we hold an `Arc`), and the word is only accessed atomically as a mutex.
        unsafe { RawMutex::from_ptr(self.seg.as_ptr().add(self.offset)) }
    }

    /// [`lock_timeout`](Self::lock_timeout) with no bound: waits as long as it takes.
    pub fn lock(&self) -> LockResult {
        self.lock_within(None)
    }

    /// Acquire, waiting at most `timeout`. See [`RawMutex::lock_timeout`].
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult {
        self.lock_within(Some(timeout))
    }

    /// `lock` (`None`) or `lock_timeout` (`Some`).
    pub(crate) fn lock_within(&self, timeout: Option<Duration>) -> LockResult {
        self.raw().lock_within(timeout)
    }

    /// Acquire without waiting.
    pub fn try_lock(&self) -> LockResult {
        self.raw().try_lock()
    }

    /// Release; an error if it is not held.
    pub fn unlock(&self) -> Result<(), NotLocked> {
        self.raw().unlock()
    }

    /// Whether some process holds it now.
    pub fn is_locked(&self) -> bool {
        self.raw().is_locked()
    }

    /// The pid of the holder, if held.
    pub fn owner(&self) -> Option<u32> {
        self.raw().owner()
    }

    /// The segment the word lives in, and its offset there.
    pub fn location(&self) -> (&Arc<Segment>, usize) {
        (&self.seg, self.offset)
    }
}

/// Serializes as its segment (whose handle travels with the value) and offset.
impl Serialize for SharedMutex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&*self.seg, self.offset as u64).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedMutex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (seg, offset) = <(Segment, u64)>::deserialize(d)?;
        SharedMutex::in_segment(Arc::new(seg), offset as usize).map_err(serde::de::Error::custom)
    }
}
