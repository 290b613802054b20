//! `Shared<T>`: a state struct of atomics living in its own shared segment.

use std::marker::PhantomData;
use std::sync::Arc;

use multiproc_shm::Segment;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::SyncError;

/// A `#[repr(C)]` struct made only of atomics (`AtomicU32`, `AtomicU64`), for which all-zero
/// bytes are a valid, initial value.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain only atomic integers (so any bit pattern another
/// process writes is valid and every access is atomic), and have an alignment of at most 8.
pub(crate) unsafe trait State: Sized {}

/// A `T` in shared memory: clones share it, and it travels to child processes as an argument.
pub(crate) struct Shared<T> {
    seg: Arc<Segment>,
    _t: PhantomData<T>,
}

impl<T> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            seg: self.seg.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: State> Shared<T> {
    /// A new all-zero `T`.
    pub(crate) fn new() -> Result<Shared<T>, SyncError> {
        Ok(Shared {
            seg: Arc::new(Segment::new(std::mem::size_of::<T>().max(8))?),
            _t: PhantomData,
        })
    }

    pub(crate) fn get(&self) -> &T {
        // SAFETY: the segment is page-aligned and at least size_of::<T>() long (checked at
        // creation and when received); `T: State` is made of atomics only, valid for any bytes,
        // and lives as long as `self` holds the segment.
        unsafe { &*(self.seg.as_ptr() as *const T) }
    }
}

impl<T> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.seg.serialize(s)
    }
}

impl<'de, T: State> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seg = Segment::deserialize(d)?;
        if seg.len() < std::mem::size_of::<T>() {
            return Err(serde::de::Error::custom("shared state segment too small"));
        }
        Ok(Shared {
            seg: Arc::new(seg),
            _t: PhantomData,
        })
    }
}
