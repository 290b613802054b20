//! `RawValue` and `RawArray`: plain data in shared memory, with no lock.
//!
//! Python's `multiprocessing.RawValue` / `RawArray`, and what `Value(..., lock=False)` /
//! `Array(..., lock=False)` return there. The element type is any [`bytemuck::Pod`] type:
//! every bit pattern is a valid value, so whatever another process writes (even half of a
//! write) can be read without undefined behaviour, only with a surprising value.

use std::marker::PhantomData;
use std::sync::atomic::{
    AtomicI16, AtomicI32, AtomicI8, AtomicIsize, AtomicU16, AtomicU32, AtomicU8, AtomicUsize,
};
#[cfg(target_has_atomic = "64")]
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Segment, ShmError};

/// The data of every value and array starts at an address that is a multiple of this, so the
/// atomic twin of every element type is aligned (see [`HasAtomic`]).
pub(crate) const DATA_ALIGN: usize = 16;

mod sealed {
    pub trait Sealed {}
}

/// Plain-data types that have a standard atomic type of the same size and bits:
/// `u8`..`u64`, `i8`..`i64`, `usize`, `isize` (`AtomicU8`..`AtomicU64`, ...).
///
/// It gives [`RawValue::atomic`] and [`RawArray::atomic`]: lock-free read-modify-write on
/// shared memory, from any number of processes. (`bool` is not [`Pod`], so there is no
/// `RawValue<bool>`: use a `u8`.) The trait is sealed.
///
/// ```
/// use std::sync::atomic::Ordering;
/// let v = multiproc::RawValue::new(41u32).unwrap();
/// v.atomic().fetch_add(1, Ordering::SeqCst);
/// assert_eq!(v.get(), 42);
/// ```
pub trait HasAtomic: Pod + sealed::Sealed {
    /// The atomic type (`AtomicU64` for `u64`, ...).
    type Atomic: Send + Sync;

    /// View `*p` as the atomic type.
    ///
    /// # Safety
    /// `p` must be aligned to `align_of::<Self::Atomic>()`, valid for reads and writes for
    /// `'a`, and accessed only atomically while the reference is used (across threads).
    #[doc(hidden)]
    unsafe fn atomic_from_ptr<'a>(p: *mut Self) -> &'a Self::Atomic;
}

macro_rules! has_atomic {
    ($($(#[$m:meta])* $t:ty => $a:ty),* $(,)?) => {$(
        $(#[$m])*
        impl sealed::Sealed for $t {}
        $(#[$m])*
        impl HasAtomic for $t {
            type Atomic = $a;
            unsafe fn atomic_from_ptr<'a>(p: *mut $t) -> &'a $a {
                // SAFETY: the caller guarantees alignment, validity and atomic-only access,
                // which is `from_ptr`'s whole contract.
                unsafe { <$a>::from_ptr(p) }
            }
        }
        // Elements at `base + i * size` with `base` aligned to DATA_ALIGN are aligned for the
        // atomic type exactly when its alignment equals the size and divides DATA_ALIGN.
        $(#[$m])*
        const _: () = assert!(
            std::mem::size_of::<$t>() == std::mem::align_of::<$a>()
                && std::mem::size_of::<$t>() == std::mem::size_of::<$a>()
                && DATA_ALIGN % std::mem::align_of::<$a>() == 0
        );
    )*};
}

has_atomic! {
    u8 => AtomicU8,
    i8 => AtomicI8,
    u16 => AtomicU16,
    i16 => AtomicI16,
    u32 => AtomicU32,
    i32 => AtomicI32,
    #[cfg(target_has_atomic = "64")]
    u64 => AtomicU64,
    #[cfg(target_has_atomic = "64")]
    i64 => AtomicI64,
    usize => AtomicUsize,
    isize => AtomicIsize,
}

/// Bytes taken by `len` elements of `T`, or `InvalidSize`.
pub(crate) fn bytes_for<T>(len: usize) -> Result<usize, ShmError> {
    len.checked_mul(std::mem::size_of::<T>())
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or(ShmError::InvalidSize(len))
}

/// Where the data of a `T` starts in a segment whose first bytes hold something else (a lock
/// word): the first multiple of `DATA_ALIGN` (and of `T`'s alignment) past `header` bytes.
pub(crate) fn data_offset<T>(header: usize) -> usize {
    let align = DATA_ALIGN.max(std::mem::align_of::<T>());
    header.div_ceil(align) * align
}

/// Check that `len` elements of `T` fit at `offset` in `seg`, aligned; the first element.
fn place<T>(seg: &Segment, offset: usize, len: usize) -> Result<*mut T, ShmError> {
    let bytes = bytes_for::<T>(len)?;
    match offset.checked_add(bytes) {
        Some(end) if end <= seg.len() => {}
        _ => {
            return Err(ShmError::OutOfBounds {
                offset,
                end: offset.saturating_add(bytes),
                len: seg.len(),
            })
        }
    }
    let p = seg.as_ptr().wrapping_add(offset);
    let align = DATA_ALIGN.max(std::mem::align_of::<T>());
    if (p as usize) % align != 0 {
        return Err(ShmError::Misaligned { offset, align });
    }
    Ok(p.cast())
}

/// One plain-data value in shared memory, with no lock: Python's `RawValue` (and what
/// `Value(..., lock=False)` returns there).
///
/// Clones share the value; it travels to child processes as an argument, under every start
/// method, and the memory is freed when the last process holding it lets go.
///
/// [`get`](Self::get) and [`set`](Self::set) are plain (volatile) copies: two processes that
/// update the value at the same time can lose updates, and a value wider than a machine word
/// can be read half-written. For read-modify-write across processes, use
/// [`atomic`](Self::atomic) (integers) or [`Value`](crate::Value), which adds a lock.
///
/// ```
/// use multiproc::RawValue;
/// let v = RawValue::new(1.5f64).unwrap();
/// let w = v.clone(); // same memory
/// w.set(2.5);
/// assert_eq!(v.get(), 2.5);
/// ```
pub struct RawValue<T: Pod> {
    seg: Arc<Segment>,
    offset: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> RawValue<T> {
    /// A new value in a segment of its own, holding `v`.
    ///
    /// ```
    /// let v = multiproc::RawValue::new([1u16, 2, 3]).unwrap();
    /// assert_eq!(v.get(), [1, 2, 3]);
    /// ```
    pub fn new(v: T) -> Result<RawValue<T>, ShmError> {
        let seg = Arc::new(Segment::new(std::mem::size_of::<T>().max(1))?);
        let raw = RawValue::in_segment(seg, 0)?;
        raw.set(v);
        Ok(raw)
    }

    /// A new value of all zero bytes.
    ///
    /// ```
    /// let v = multiproc::RawValue::<i32>::zeroed().unwrap();
    /// assert_eq!(v.get(), 0);
    /// ```
    pub fn zeroed() -> Result<RawValue<T>, ShmError> {
        let seg = Arc::new(Segment::new(std::mem::size_of::<T>().max(1))?);
        RawValue::in_segment(seg, 0)
    }

    /// The value whose bytes are at `offset` in `seg` (inside it, and at a multiple of 16 and
    /// of `T`'s alignment). Whatever bytes are there are its value.
    pub(crate) fn in_segment(seg: Arc<Segment>, offset: usize) -> Result<RawValue<T>, ShmError> {
        place::<T>(&seg, offset, 1)?;
        Ok(RawValue {
            seg,
            offset,
            _t: PhantomData,
        })
    }

    /// Where the value is. Valid (and aligned) while `self` lives; other processes may write
    /// to it at any time, so read and write through it only with raw-pointer copies.
    ///
    /// ```
    /// let v = multiproc::RawValue::new(7u8).unwrap();
    /// assert_eq!(v.as_ptr() as usize % std::mem::align_of::<u8>(), 0);
    /// ```
    pub fn as_ptr(&self) -> *mut T {
        self.seg.as_ptr().wrapping_add(self.offset).cast()
    }

    /// A copy of the value.
    ///
    /// ```
    /// let v = multiproc::RawValue::new(3i64).unwrap();
    /// assert_eq!(v.get(), 3);
    /// ```
    #[doc(alias = "value")]
    pub fn get(&self) -> T {
        // SAFETY: `in_segment` checked that a `T` fits at the (aligned) pointer, and the
        // segment stays mapped while we hold its `Arc`. Any bytes are a valid `T` (Pod).
        // Volatile: another process may change the value between two reads.
        unsafe { self.as_ptr().read_volatile() }
    }

    /// Replace the value.
    ///
    /// ```
    /// let v = multiproc::RawValue::new(3i64).unwrap();
    /// v.set(-3);
    /// assert_eq!(v.get(), -3);
    /// ```
    pub fn set(&self, v: T) {
        // SAFETY: as in `get`; we never hand out references to these bytes, so writing does
        // not invalidate any.
        unsafe { self.as_ptr().write_volatile(v) }
    }

    /// The segment the value lives in, and its offset there.
    ///
    /// ```
    /// let v = multiproc::RawValue::new(1u32).unwrap();
    /// let (seg, offset) = v.location();
    /// assert_eq!(seg.read(offset, 4).unwrap(), 1u32.to_ne_bytes());
    /// ```
    pub fn location(&self) -> (&Arc<Segment>, usize) {
        (&self.seg, self.offset)
    }
}

impl<T: HasAtomic> RawValue<T> {
    /// The value as its atomic type (`&AtomicU64` for a `RawValue<u64>`): lock-free
    /// `fetch_add`, `compare_exchange`, ... that other processes see.
    ///
    /// Mix it with [`get`](Self::get)/[`set`](Self::set) only where a torn or stale value is
    /// acceptable; updates that must not be lost all go through the atomic.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// let hits = multiproc::RawValue::new(0u64).unwrap();
    /// hits.atomic().fetch_add(5, Ordering::Relaxed);
    /// assert_eq!(hits.atomic().load(Ordering::Relaxed), 5);
    /// ```
    pub fn atomic(&self) -> &T::Atomic {
        // SAFETY: the pointer is a multiple of DATA_ALIGN (checked by `in_segment`), which the
        // `has_atomic!` assertions show is a multiple of the atomic's alignment; the memory is
        // valid while `&self` is (we hold the segment). Non-atomic accesses to the same bytes
        // are volatile copies of the same width at most, documented as racy.
        unsafe { T::atomic_from_ptr(self.as_ptr()) }
    }
}

impl<T: Pod> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue {
            seg: self.seg.clone(),
            offset: self.offset,
            _t: PhantomData,
        }
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

/// Serializes as its segment (whose OS handle travels with a process start) and offset.
impl<T: Pod> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&*self.seg, self.offset as u64).serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (seg, offset) = <(Segment, u64)>::deserialize(d)?;
        let offset = usize::try_from(offset).map_err(serde::de::Error::custom)?;
        RawValue::in_segment(Arc::new(seg), offset).map_err(serde::de::Error::custom)
    }
}

/// A fixed-length array of plain data in shared memory, with no lock: Python's `RawArray`
/// (and what `Array(..., lock=False)` returns there).
///
/// Zero-filled at creation. Clones share the elements; it travels to child processes as an
/// argument, under every start method. Elements are read and written by copies
/// ([`get`](Self::get), [`set`](Self::set), [`to_vec`](Self::to_vec),
/// [`copy_from_slice`](Self::copy_from_slice), ...), never through references, since other
/// processes may write at any time; concurrent writers can interleave. For lock-free integer
/// updates use [`atomic`](Self::atomic); for exclusive access use [`Array`](crate::Array).
///
/// ```
/// use multiproc::shm::{RawArray, ShmError};
/// let a = RawArray::<i32>::new(4).unwrap();
/// a.set(1, 10).unwrap();
/// assert_eq!(a.to_vec(), [0, 10, 0, 0]);
/// assert!(matches!(a.get(4), Err(ShmError::IndexOutOfRange { index: 4, len: 4 })));
/// ```
pub struct RawArray<T: Pod> {
    seg: Arc<Segment>,
    offset: usize,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> RawArray<T> {
    /// `len` zero elements in a segment of their own. Its memory is backed now, in one system
    /// call (as CPython zero-fills a new array), so no process that uses it later pays a page
    /// allocation per page.
    ///
    /// ```
    /// let a = multiproc::RawArray::<f32>::new(3).unwrap();
    /// assert_eq!(a.to_vec(), [0.0; 3]);
    /// ```
    pub fn new(len: usize) -> Result<RawArray<T>, ShmError> {
        let seg = Arc::new(Segment::new(bytes_for::<T>(len)?.max(1))?);
        seg.populate();
        RawArray::in_segment(seg, 0, len)
    }

    /// A new array holding a copy of `data`.
    ///
    /// ```
    /// let a = multiproc::RawArray::from_slice(&[1u8, 2, 3]).unwrap();
    /// assert_eq!(a.len(), 3);
    /// assert_eq!(a.get(2).unwrap(), 3);
    /// ```
    pub fn from_slice(data: &[T]) -> Result<RawArray<T>, ShmError> {
        let a = RawArray::new(data.len())?;
        a.write_copy(0, data);
        Ok(a)
    }

    /// The `len` elements whose bytes start at `offset` in `seg` (inside it, at a multiple of
    /// 16 and of `T`'s alignment).
    pub(crate) fn in_segment(
        seg: Arc<Segment>,
        offset: usize,
        len: usize,
    ) -> Result<RawArray<T>, ShmError> {
        place::<T>(&seg, offset, len)?;
        Ok(RawArray {
            seg,
            offset,
            len,
            _t: PhantomData,
        })
    }

    /// The number of elements.
    ///
    /// ```
    /// assert_eq!(multiproc::RawArray::<u64>::new(5).unwrap().len(), 5);
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    ///
    /// ```
    /// assert!(multiproc::RawArray::<u64>::new(0).unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first element. Valid (and aligned) for `len()` elements while `self` lives; other
    /// processes may write at any time, so use it only with raw-pointer copies.
    ///
    /// ```
    /// let a = multiproc::RawArray::<u32>::new(2).unwrap();
    /// assert_eq!(a.as_ptr() as usize % 4, 0);
    /// ```
    pub fn as_ptr(&self) -> *mut T {
        self.seg.as_ptr().wrapping_add(self.offset).cast()
    }

    fn check(&self, index: usize) -> Result<(), ShmError> {
        if index < self.len {
            Ok(())
        } else {
            Err(ShmError::IndexOutOfRange {
                index,
                len: self.len,
            })
        }
    }

    fn check_range(&self, start: usize, n: usize) -> Result<(), ShmError> {
        match start.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(ShmError::IndexOutOfRange {
                index: start.saturating_add(n).max(1) - 1,
                len: self.len,
            }),
        }
    }

    /// A copy of element `index`, or `IndexOutOfRange`.
    ///
    /// ```
    /// let a = multiproc::RawArray::from_slice(&[5i8, 6]).unwrap();
    /// assert_eq!(a.get(1).unwrap(), 6);
    /// assert!(a.get(2).is_err());
    /// ```
    pub fn get(&self, index: usize) -> Result<T, ShmError> {
        self.check(index)?;
        // SAFETY: index < len, and `in_segment` checked that len elements fit at the aligned
        // pointer; the segment lives while we hold its `Arc`; any bytes are a valid T (Pod).
        Ok(unsafe { self.as_ptr().add(index).read_volatile() })
    }

    /// Replace element `index`, or `IndexOutOfRange`.
    ///
    /// ```
    /// let a = multiproc::RawArray::<u16>::new(2).unwrap();
    /// a.set(0, 9).unwrap();
    /// assert!(a.set(2, 9).is_err());
    /// assert_eq!(a.to_vec(), [9, 0]);
    /// ```
    pub fn set(&self, index: usize, v: T) -> Result<(), ShmError> {
        self.check(index)?;
        // SAFETY: as in `get`; no references to these bytes exist (we never make any).
        unsafe { self.as_ptr().add(index).write_volatile(v) };
        Ok(())
    }

    /// A copy of all the elements.
    ///
    /// ```
    /// let a = multiproc::RawArray::from_slice(&[1.0f64, 2.0]).unwrap();
    /// assert_eq!(a.to_vec(), vec![1.0, 2.0]);
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        let mut out = vec![T::zeroed(); self.len];
        self.read_copy(0, &mut out);
        out
    }

    /// Copy elements `start..start + buf.len()` into `buf`, or `IndexOutOfRange` if that range
    /// is not inside the array.
    ///
    /// ```
    /// let a = multiproc::RawArray::from_slice(&[1u8, 2, 3, 4]).unwrap();
    /// let mut buf = [0u8; 2];
    /// a.read_into(1, &mut buf).unwrap();
    /// assert_eq!(buf, [2, 3]);
    /// assert!(a.read_into(3, &mut buf).is_err());
    /// ```
    pub fn read_into(&self, start: usize, buf: &mut [T]) -> Result<(), ShmError> {
        self.check_range(start, buf.len())?;
        self.read_copy(start, buf);
        Ok(())
    }

    /// Copy `src` into elements `start..start + src.len()`, or `IndexOutOfRange` if that range
    /// is not inside the array.
    ///
    /// ```
    /// let a = multiproc::RawArray::<u8>::new(4).unwrap();
    /// a.write_from(2, &[7, 8]).unwrap();
    /// assert_eq!(a.to_vec(), [0, 0, 7, 8]);
    /// assert!(a.write_from(3, &[1, 2]).is_err());
    /// ```
    pub fn write_from(&self, start: usize, src: &[T]) -> Result<(), ShmError> {
        self.check_range(start, src.len())?;
        self.write_copy(start, src);
        Ok(())
    }

    /// Overwrite the whole array with `src`, which must have `len()` elements
    /// (`LengthMismatch` otherwise).
    ///
    /// ```
    /// let a = multiproc::RawArray::<i64>::new(2).unwrap();
    /// a.copy_from_slice(&[-1, 1]).unwrap();
    /// assert_eq!(a.to_vec(), [-1, 1]);
    /// assert!(a.copy_from_slice(&[1]).is_err());
    /// ```
    pub fn copy_from_slice(&self, src: &[T]) -> Result<(), ShmError> {
        if src.len() != self.len {
            return Err(ShmError::LengthMismatch {
                expected: self.len,
                got: src.len(),
            });
        }
        self.write_copy(0, src);
        Ok(())
    }

    /// Set every element to `v`.
    ///
    /// ```
    /// let a = multiproc::RawArray::<u32>::new(3).unwrap();
    /// a.fill(7);
    /// assert_eq!(a.to_vec(), [7, 7, 7]);
    /// ```
    pub fn fill(&self, v: T) {
        let p = self.as_ptr();
        for i in 0..self.len {
            // SAFETY: i < len elements fit at the aligned pointer (checked by `in_segment`);
            // no references to these bytes exist.
            unsafe { p.add(i).write(v) };
        }
    }

    /// The segment the elements live in, and the offset of the first.
    ///
    /// ```
    /// let a = multiproc::RawArray::from_slice(&[1u8, 2]).unwrap();
    /// let (seg, offset) = a.location();
    /// assert_eq!(seg.read(offset, 2).unwrap(), [1, 2]);
    /// ```
    pub fn location(&self) -> (&Arc<Segment>, usize) {
        (&self.seg, self.offset)
    }

    /// Copy `buf.len()` elements from `start` (in range: checked by the callers).
    fn read_copy(&self, start: usize, buf: &mut [T]) {
        debug_assert!(start + buf.len() <= self.len);
        // SAFETY: the range is inside the array (callers check), the array inside the mapped
        // segment (`in_segment`); `buf` is our own memory, so they do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(self.as_ptr().add(start), buf.as_mut_ptr(), buf.len())
        }
    }

    /// Copy `src` to elements from `start` (in range: checked by the callers).
    fn write_copy(&self, start: usize, src: &[T]) {
        debug_assert!(start + src.len() <= self.len);
        // SAFETY: as in `read_copy`; no references to the shared bytes exist.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.as_ptr().add(start), src.len()) }
    }
}

impl<T: HasAtomic> RawArray<T> {
    /// Element `index` as its atomic type (`&AtomicU32` for a `RawArray<u32>`), or
    /// `IndexOutOfRange`.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// let counts = multiproc::RawArray::<u32>::new(4).unwrap();
    /// counts.atomic(2).unwrap().fetch_add(1, Ordering::Relaxed);
    /// assert_eq!(counts.to_vec(), [0, 0, 1, 0]);
    /// assert!(counts.atomic(4).is_err());
    /// ```
    pub fn atomic(&self, index: usize) -> Result<&T::Atomic, ShmError> {
        self.check(index)?;
        // SAFETY: index < len; the array starts at a multiple of DATA_ALIGN (`in_segment`) and
        // elements are `size_of::<T>()` apart, which `has_atomic!` asserts equals the atomic's
        // alignment and divides DATA_ALIGN, so the element is aligned; the segment lives while
        // `&self` does.
        Ok(unsafe { T::atomic_from_ptr(self.as_ptr().add(index)) })
    }
}

impl<T: Pod> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            seg: self.seg.clone(),
            offset: self.offset,
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> std::fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawArray").field("len", &self.len).finish()
    }
}

/// Serializes as its segment (whose OS handle travels with a process start), offset and length.
impl<T: Pod> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&*self.seg, self.offset as u64, self.len as u64).serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (seg, offset, len) = <(Segment, u64, u64)>::deserialize(d)?;
        let offset = usize::try_from(offset).map_err(serde::de::Error::custom)?;
        let len = usize::try_from(len).map_err(serde::de::Error::custom)?;
        RawArray::in_segment(Arc::new(seg), offset, len).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounded::ThreadJoinBounded;
    use std::sync::atomic::Ordering;

    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    struct Point {
        x: f64,
        y: f64,
        tag: u32,
        _pad: u32,
    }

    #[test]
    fn value_roundtrip_and_clones_share() {
        let v = RawValue::new(Point {
            x: 1.0,
            y: 2.0,
            tag: 3,
            _pad: 0,
        })
        .unwrap();
        let w = v.clone();
        let mut p = w.get();
        p.tag = 9;
        w.set(p);
        assert_eq!(v.get().tag, 9);
        assert_eq!(v.get().x, 1.0);
    }

    #[test]
    fn zero_sized_and_empty() {
        let v = RawValue::new(()).unwrap();
        v.set(());
        let a = RawArray::<u64>::new(0).unwrap();
        assert!(a.is_empty());
        assert_eq!(a.to_vec(), Vec::<u64>::new());
        assert!(matches!(
            a.get(0),
            Err(ShmError::IndexOutOfRange { index: 0, len: 0 })
        ));
        a.copy_from_slice(&[]).unwrap();
        a.fill(1);
    }

    #[test]
    fn index_and_length_errors() {
        let a = RawArray::from_slice(&[1u32, 2, 3]).unwrap();
        assert!(matches!(
            a.set(3, 0),
            Err(ShmError::IndexOutOfRange { index: 3, len: 3 })
        ));
        assert!(matches!(
            a.get(usize::MAX),
            Err(ShmError::IndexOutOfRange { .. })
        ));
        assert!(matches!(
            a.copy_from_slice(&[1, 2]),
            Err(ShmError::LengthMismatch {
                expected: 3,
                got: 2
            })
        ));
        let mut buf = [0u32; 2];
        assert!(a.read_into(usize::MAX, &mut buf).is_err());
        assert!(a.write_from(2, &buf).is_err());
        assert_eq!(a.to_vec(), [1, 2, 3], "failed writes changed nothing");
        assert!(matches!(
            RawArray::<u64>::new(usize::MAX),
            Err(ShmError::InvalidSize(_))
        ));
    }

    #[test]
    fn misplaced_data_is_refused() {
        let seg = Arc::new(Segment::new(64).unwrap());
        assert!(matches!(
            RawValue::<u8>::in_segment(seg.clone(), 8),
            Err(ShmError::Misaligned { .. })
        ));
        assert!(matches!(
            RawArray::<u8>::in_segment(seg.clone(), 48, 17),
            Err(ShmError::OutOfBounds { .. })
        ));
        assert!(RawArray::<u8>::in_segment(seg, 48, 16).is_ok());
    }

    #[test]
    fn atomics_count_across_threads() {
        let a = RawArray::<u64>::new(3).unwrap();
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        a.atomic(1).unwrap().fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join_bounded();
        }
        assert_eq!(a.to_vec(), [0, 40_000, 0]);
        let v = RawValue::new(-1i8).unwrap();
        assert_eq!(v.atomic().swap(5, Ordering::SeqCst), -1);
        assert_eq!(v.get(), 5);
    }

    #[test]
    fn travels_with_its_handle() {
        let a = RawArray::from_slice(&[1u16, 2, 3]).unwrap();
        let (bytes, handles) = multiproc_pickle::encode_with_handles(&a).unwrap();
        let b: RawArray<u16> = multiproc_pickle::decode_with_handles(&bytes, handles).unwrap();
        b.set(0, 100).unwrap();
        assert_eq!(
            a.to_vec(),
            [100, 2, 3],
            "a second mapping of the same memory"
        );
        let v = RawValue::new(5u64).unwrap();
        let (bytes, handles) = multiproc_pickle::encode_with_handles(&v).unwrap();
        let w: RawValue<u64> = multiproc_pickle::decode_with_handles(&bytes, handles).unwrap();
        w.atomic().fetch_add(1, Ordering::SeqCst);
        assert_eq!(v.get(), 6);
    }
}
