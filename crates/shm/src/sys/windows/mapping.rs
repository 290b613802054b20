//! Pagefile-backed sections (`CreateFileMappingW(INVALID_HANDLE_VALUE, …)`) and their views
//! (`MapViewOfFile`), registered in the [registry](super::registry) while mapped.
//!
//! A section lives while a handle to it or a view of it is open, in any process: there is no
//! name to unlink, and nothing leaks when the last holder goes (even when killed).

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::sync::Arc;

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_ALREADY_EXISTS, ERROR_BAD_PATHNAME, ERROR_FILE_NOT_FOUND,
    ERROR_INVALID_HANDLE, ERROR_INVALID_NAME, ERROR_PATH_NOT_FOUND, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery,
    FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS,
    PAGE_READWRITE,
};

use super::registry;
use crate::ShmError;

/// `s` as a NUL-terminated UTF-16 string.
fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain([0]).collect()
}

/// A random name for an anonymous section, `Local\mpa_` and 16 hex digits: unnamed sections
/// would do for the memory, but the futex names its events after the section (see
/// [`registry`]), so every section needs a name all its processes agree on.
fn anon_name() -> io::Result<String> {
    let mut r = [0u8; 8];
    getrandom::getrandom(&mut r).map_err(io::Error::from)?;
    Ok(format!("Local\\mpa_{:016x}", u64::from_le_bytes(r)))
}

/// A view of a whole section, mapped read-write in this process, with the section's handle
/// and name.
pub(crate) struct View {
    handle: OwnedHandle,
    name: Arc<str>,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the view is plain shared memory owned by this value; the pointer is only a
// location (all access through it is by raw pointers or atomics), valid from any thread.
unsafe impl Send for View {}
// SAFETY: as above; `&View` only hands out the pointer, the handle (to duplicate) and the name.
unsafe impl Sync for View {}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("name", &self.name)
            .field("len", &self.len)
            .finish()
    }
}

/// Create the pagefile-backed section `name` of `len` bytes. `Ok(None)`: a section (or another
/// kernel object) of that name exists already.
fn create_section(name: &str, len: usize) -> io::Result<Option<OwnedHandle>> {
    let w = wide(name);
    let len = len as u64;
    // SAFETY: a section backed by the paging file (INVALID_HANDLE_VALUE), default security, a
    // NUL-terminated name that lives across the call.
    let h = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            std::ptr::null(),
            PAGE_READWRITE,
            (len >> 32) as u32,
            len as u32,
            w.as_ptr(),
        )
    };
    // (read before any other call can overwrite it)
    // SAFETY: no preconditions.
    let err = unsafe { GetLastError() };
    if h.is_null() {
        if err == ERROR_INVALID_HANDLE {
            // the name belongs to a kernel object of another type (an event, a mutex...)
            return Ok(None);
        }
        return Err(io::Error::from_raw_os_error(err as i32));
    }
    // SAFETY: a fresh handle owned by us.
    let h = unsafe { OwnedHandle::from_raw_handle(h) };
    if err == ERROR_ALREADY_EXISTS {
        // (the handle is to the existing section: it is dropped, the section stays as it was)
        return Ok(None);
    }
    Ok(Some(h))
}

/// What an error of `CreateFileMappingW`/`OpenFileMappingW` about `name` means.
fn name_error(name: &str, e: io::Error) -> ShmError {
    match e.raw_os_error().map(|c| c as u32) {
        Some(ERROR_FILE_NOT_FOUND) => ShmError::NotFound(name.into()),
        Some(ERROR_INVALID_NAME | ERROR_BAD_PATHNAME | ERROR_PATH_NOT_FOUND) => {
            ShmError::InvalidName(name.into(), "refused by the OS")
        }
        _ => ShmError::Io(e),
    }
}

impl View {
    /// A new anonymous (randomly named) section of `len` zero bytes, mapped.
    pub(crate) fn anon(len: usize) -> io::Result<View> {
        for _ in 0..8 {
            let name = anon_name()?;
            if let Some(h) = create_section(&name, len)? {
                return View::map(h, len, name.into());
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free random section name in 8 attempts",
        ))
    }

    /// Create the section called `name` (exactly as given: the OS's namespace rules apply)
    /// with `len` zero bytes, mapped. An existing name is [`ShmError::Exists`].
    pub(crate) fn create_named(name: &str, len: usize) -> Result<View, ShmError> {
        match create_section(name, len).map_err(|e| name_error(name, e))? {
            Some(h) => Ok(View::map(h, len, name.into())?),
            None => Err(ShmError::Exists(name.into())),
        }
    }

    /// Open the existing section called `name` and map all of it; its length is the view's
    /// region size (`VirtualQuery`, as CPython does: whole pages).
    pub(crate) fn open_named(name: &str) -> Result<View, ShmError> {
        let w = wide(name);
        // SAFETY: a NUL-terminated name that lives across the call; not inheritable.
        let h = unsafe { OpenFileMappingW(FILE_MAP_READ | FILE_MAP_WRITE, 0, w.as_ptr()) };
        if h.is_null() {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error().map(|c| c as u32) {
                // a kernel object of another type has the name: no section has it
                Some(ERROR_INVALID_HANDLE) => ShmError::NotFound(name.into()),
                _ => name_error(name, e),
            });
        }
        // SAFETY: a fresh handle owned by us.
        let h = unsafe { OwnedHandle::from_raw_handle(h) };
        let ptr = map_view(&h, 0)?;
        // SAFETY: an all-zero MEMORY_BASIC_INFORMATION is a valid out-buffer.
        let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: queries an address of our own live view into a buffer of the given size.
        let n = unsafe {
            VirtualQuery(
                ptr as *const _,
                &mut info,
                std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
            )
        };
        if n == 0 {
            let e = io::Error::last_os_error();
            unmap_view(ptr);
            return Err(e.into());
        }
        Ok(View::registered(h, ptr, info.RegionSize, name.into()))
    }

    /// Map the section behind `handle` (`len` bytes from its start; 0: all of it) and
    /// register the view under `name`.
    pub(crate) fn map(handle: OwnedHandle, len: usize, name: Arc<str>) -> io::Result<View> {
        let ptr = map_view(&handle, len)?;
        Ok(View::registered(handle, ptr, len, name))
    }

    fn registered(handle: OwnedHandle, ptr: *mut u8, len: usize, name: Arc<str>) -> View {
        registry::register(ptr as usize, len, name.clone());
        View {
            handle,
            name,
            ptr,
            len,
        }
    }

    /// A second view of the same section, through a duplicate of its handle.
    pub(crate) fn try_clone(&self) -> io::Result<View> {
        View::map(self.handle.try_clone()?, self.len, self.name.clone())
    }

    /// The first byte of the view.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The view's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The section's handle (to pass to a child).
    pub(crate) fn handle(&self) -> &OwnedHandle {
        &self.handle
    }

    /// The section's name, the same in every process.
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }
}

impl Drop for View {
    fn drop(&mut self) {
        registry::unregister(self.ptr as usize);
        unmap_view(self.ptr);
    }
}

/// Map `len` bytes (0: all) of the section behind `handle`, read-write, from its start.
fn map_view(handle: &OwnedHandle, len: usize) -> io::Result<*mut u8> {
    // SAFETY: maps a section handle we own, read-write, from offset 0; the OS checks the
    // length against the section's size.
    let addr = unsafe {
        MapViewOfFile(
            handle.as_raw_handle(),
            FILE_MAP_READ | FILE_MAP_WRITE,
            0,
            0,
            len,
        )
    };
    if addr.Value.is_null() {
        return Err(io::Error::last_os_error());
    }
    Ok(addr.Value as *mut u8)
}

/// Unmap the view at `ptr` (mapped by [`map_view`], and no longer used or registered).
fn unmap_view(ptr: *mut u8) {
    // SAFETY: unmaps a view mapped by `map_view`, once; nothing refers to it any more.
    unsafe {
        UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
            Value: ptr as *mut _,
        })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exists(name: &str) -> bool {
        match View::open_named(name) {
            Ok(_) => true,
            Err(ShmError::NotFound(_)) => false,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn an_anonymous_section_has_a_name_of_its_own_and_goes_with_its_last_view() {
        let a = View::anon(100).unwrap();
        let name = a.name().to_string();
        assert!(
            name.starts_with("Local\\mpa_") && name.len() == 26,
            "{name}"
        );
        let b = a.try_clone().unwrap();
        assert_ne!(a.as_ptr(), b.as_ptr());
        assert_eq!(b.name(), a.name());
        // every view is registered under the section's name, at its own address
        let at = |v: &View, off: usize| registry::mapping_of(v.as_ptr() as usize + off);
        assert_eq!(
            at(&a, 5).map(|(n, o)| (n.to_string(), o)),
            Some((name.clone(), 5))
        );
        assert_eq!(
            at(&b, 99).map(|(n, o)| (n.to_string(), o)),
            Some((name.clone(), 99))
        );
        assert!(at(&a, 100).is_none_or(|(n, _)| *n != *name));
        let pa = a.as_ptr() as usize;
        drop(a);
        assert!(registry::mapping_of(pa).is_none_or(|(n, _)| *n != *name));
        assert!(exists(&name), "a view is open");
        drop(b);
        assert!(!exists(&name), "the last view went");
    }

    #[test]
    fn attaching_sees_whole_pages_and_a_view_longer_than_its_section_is_refused() {
        let name = format!("mpt_pages_{}", std::process::id());
        let a = View::create_named(&name, 100).unwrap();
        assert_eq!(a.len(), 100);
        let b = View::open_named(&name).unwrap();
        assert_eq!(
            b.len(),
            4096,
            "VirtualQuery's region: whole pages, as CPython sees it"
        );
        assert!(matches!(
            View::create_named(&name, 100),
            Err(ShmError::Exists(_))
        ));
        // a length from elsewhere (a corrupt message) that the section does not have
        let h = a.handle().try_clone().unwrap();
        assert!(View::map(h, 1 << 20, name.as_str().into()).is_err());
    }
}
