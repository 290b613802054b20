//! `Segment`: anonymous shared memory that travels to child processes.

#[cfg(unix)]
use std::fs::File;

#[cfg(unix)]
use memmap2::{MmapOptions, MmapRaw};
use multiproc_pickle::handles::{deserialize_handle, serialize_handle, AsOsHandle};
use multiproc_pickle::OsHandle;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{sys, ShmError};

/// A block of memory shared between processes, zero-filled at creation.
///
/// It has no name: it reaches other processes as (part of) the arguments of a child process,
/// with every start method, and the memory is freed when the last process holding it drops
/// it or dies, so it cannot leak. Use [`SharedMemory`](crate::SharedMemory) for a block that
/// unrelated processes attach to by name.
///
/// Other processes may write at any time, so the contents are reached through copies
/// ([`read`](Self::read), [`write`](Self::write)), atomics, or raw pointers
/// ([`as_ptr`](Self::as_ptr)) — never through plain `&[u8]` references.
///
/// On Linux it is a `memfd`; on Windows a section backed by the paging file, with a random
/// `Local\mpa_…` name of its own (a section lives while a handle to it or a view of it is
/// open, in any process).
///
/// ```
/// let seg = multiproc::shm::Segment::new(16).unwrap();
/// seg.write(8, &[1, 2, 3]).unwrap();
/// assert_eq!(seg.read(7, 4).unwrap(), [0, 1, 2, 3]);
/// assert!(seg.write(15, &[0, 0]).is_err()); // out of bounds
/// ```
pub struct Segment {
    #[cfg(unix)]
    map: MmapRaw,
    #[cfg(unix)]
    file: File,
    #[cfg(windows)]
    view: sys::View,
}

/// Windows: the section's handle, to duplicate into another process (`DuplicateHandle`) so
/// that it holds the memory too.
///
/// ```
/// # #[cfg(windows)] {
/// use std::os::windows::io::AsHandle;
/// let seg = multiproc::shm::Segment::new(16).unwrap();
/// let h = seg.as_handle().try_clone_to_owned().unwrap();
/// # drop(h);
/// # }
/// ```
#[cfg(windows)]
impl std::os::windows::io::AsHandle for Segment {
    fn as_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
        self.view.handle().as_handle()
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment").field("len", &self.len()).finish()
    }
}

impl Segment {
    /// A new zero-filled segment of `len` bytes.
    pub fn new(len: usize) -> Result<Segment, ShmError> {
        if len == 0 || len > isize::MAX as usize {
            return Err(ShmError::InvalidSize(len));
        }
        #[cfg(unix)]
        return Segment::from_handle(sys::anon_fd(len)?, len);
        #[cfg(windows)]
        return Ok(Segment::from_view(sys::View::anon(len)?));
    }

    /// Map an existing shared memory object of `len` bytes.
    #[cfg(unix)]
    pub(crate) fn from_handle(handle: OsHandle, len: usize) -> Result<Segment, ShmError> {
        let file = File::from(handle);
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        Ok(Segment { map, file })
    }

    /// A segment over a mapped view.
    #[cfg(windows)]
    pub(crate) fn from_view(view: sys::View) -> Segment {
        Segment { view }
    }

    /// Back every page now, in one system call, rather than one fault at a time at first
    /// touch (best effort: kernels before 5.14, and other systems, fault as usual).
    pub(crate) fn populate(&self) {
        #[cfg(target_os = "linux")]
        let _ = self.map.advise(memmap2::Advice::PopulateWrite);
    }

    /// A second handle on the same memory (a duplicate of the OS handle, mapped again): to give
    /// one to each of several children.
    ///
    /// ```
    /// let a = multiproc::shm::Segment::new(8).unwrap();
    /// let b = a.try_clone().unwrap();
    /// a.write(0, b"x").unwrap();
    /// assert_eq!(b.read(0, 1).unwrap(), b"x");
    /// ```
    pub fn try_clone(&self) -> Result<Segment, ShmError> {
        #[cfg(unix)]
        return Segment::from_handle(self.file.try_clone()?.into(), self.len());
        #[cfg(windows)]
        return Ok(Segment::from_view(self.view.try_clone()?));
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        #[cfg(unix)]
        return self.map.len();
        #[cfg(windows)]
        return self.view.len();
    }

    /// Always false: segments have at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The first byte. Valid for `len()` bytes while `self` lives; other processes may write
    /// through their own mappings at any time.
    pub fn as_ptr(&self) -> *mut u8 {
        #[cfg(unix)]
        return self.map.as_mut_ptr();
        #[cfg(windows)]
        return self.view.as_ptr();
    }

    fn check(&self, offset: usize, n: usize) -> Result<(), ShmError> {
        match offset.checked_add(n) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(ShmError::OutOfBounds {
                offset,
                end: offset.saturating_add(n),
                len: self.len(),
            }),
        }
    }

    /// Copy `data` into the segment at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), ShmError> {
        self.check(offset, data.len())?;
        // SAFETY: bounds checked above; the mapping is valid for len() bytes; `data` cannot
        // overlap the mapping's bytes through a Rust reference (we never hand one out).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.as_ptr().add(offset), data.len())
        };
        Ok(())
    }

    /// Copy `n` bytes out of the segment from `offset`.
    pub fn read(&self, offset: usize, n: usize) -> Result<Vec<u8>, ShmError> {
        let mut out = vec![0u8; n];
        self.read_into(offset, &mut out)?;
        Ok(out)
    }

    /// Copy `buf.len()` bytes out of the segment from `offset` into `buf`.
    pub fn read_into(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
        self.check(offset, buf.len())?;
        // SAFETY: bounds checked above; see `write`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.as_ptr().add(offset), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    /// Fill `n` bytes from `offset` with `byte`.
    pub fn fill(&self, offset: usize, n: usize, byte: u8) -> Result<(), ShmError> {
        self.check(offset, n)?;
        // SAFETY: bounds checked above.
        unsafe { std::ptr::write_bytes(self.as_ptr().add(offset), byte, n) };
        Ok(())
    }
}

struct H<'a, T: AsOsHandle>(&'a T);

impl<T: AsOsHandle> Serialize for H<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_handle(self.0, s)
    }
}

/// Serializes as its OS handle (moved with the process-start transfer) and its length; on
/// Windows also the section's name (what the futex keys on, the same in every process).
impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[cfg(unix)]
        return (H(&self.file), self.len() as u64).serialize(s);
        #[cfg(windows)]
        return (
            H(self.view.handle()),
            self.len() as u64,
            &**self.view.name(),
        )
            .serialize(s);
    }
}

struct HO(OsHandle);

impl<'de> Deserialize<'de> for HO {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_handle(d).map(HO)
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[cfg(unix)]
        {
            let (h, len) = <(HO, u64)>::deserialize(d)?;
            Segment::from_handle(h.0, len as usize).map_err(serde::de::Error::custom)
        }
        #[cfg(windows)]
        {
            let (h, len, name) = <(HO, u64, String)>::deserialize(d)?;
            if len == 0 || len > isize::MAX as u64 {
                return Err(serde::de::Error::custom(ShmError::InvalidSize(
                    len as usize,
                )));
            }
            sys::View::map(h.0, len as usize, name.into())
                .map(Segment::from_view)
                .map_err(serde::de::Error::custom)
        }
    }
}
