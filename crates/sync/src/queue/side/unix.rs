//! Unix: a datagram socket pair with `SCM_RIGHTS` (through `multiproc_pickle::scm`), memory files (`memfd` on Linux, an
//! unlinked POSIX shared memory object elsewhere) and read-only `mmap`s.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use multiproc_pickle::scm;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

#[cfg(not(target_os = "linux"))]
fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD on a descriptor we own.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(())
}

/// A connected pair of Unix datagram sockets (close-on-exec): what is sent on one is received,
/// message by message, on the other.
pub(in crate::queue) fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    #[cfg(target_os = "linux")]
    let ty = libc::SOCK_DGRAM | libc::SOCK_CLOEXEC;
    #[cfg(not(target_os = "linux"))]
    let ty = libc::SOCK_DGRAM;
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) })?;
    // SAFETY: two fresh descriptors, owned by us from here on.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(not(target_os = "linux"))]
    {
        set_cloexec(fds[0])?;
        set_cloexec(fds[1])?;
    }
    Ok(pair)
}

/// Errors that mean "no room now, try again once the receiver took something": a full socket
/// buffer, or too many descriptors in flight for this user.
fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
        || matches!(e.raw_os_error(), Some(libc::ETOOMANYREFS | libc::ENOBUFS))
}

/// Send one datagram `data` with `files` attached, without waiting. `false` when the socket
/// has no room now.
pub(in crate::queue) fn send_with_handles(
    sock: &OwnedFd,
    data: &[u8],
    files: &[BorrowedFd<'_>],
) -> io::Result<bool> {
    match scm::send_with_fds(sock.as_fd(), &[data], files, true) {
        Ok(_) => Ok(true),
        Err(e) if is_full(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Take (or with `peek`, look at without taking) the first datagram, without waiting: its
/// length (at most `buf.len()` bytes are copied) and the descriptors it carries, installed in
/// this process (close-on-exec; a peek installs duplicates). `None` when there is none.
pub(in crate::queue) fn recv_with_handles(
    sock: &OwnedFd,
    buf: &mut [u8],
    peek: bool,
) -> io::Result<Option<(usize, Vec<OwnedFd>)>> {
    let got = match scm::recv_with_fds(sock.as_fd(), buf, peek, true) {
        Ok(got) => got,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
        Err(e) => return Err(e),
    };
    if peek && got.truncated {
        // (the descriptors could not be installed: out of descriptors, most likely; those
        // that were are closed with `got`)
        return Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            "a queue item's descriptors could not be received",
        ));
    }
    Ok(Some((got.len, got.fds)))
}

/// Borrow a handle (the form `send_with_handles` takes).
pub(in crate::queue) fn borrow(h: &OwnedFd) -> BorrowedFd<'_> {
    h.as_fd()
}

/// A new anonymous memory file (close-on-exec) holding the concatenation of `parts`.
pub(in crate::queue) fn memory_file(parts: &[&[u8]]) -> io::Result<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        use std::io::Write;
        // SAFETY: memfd_create with a static NUL-terminated name.
        let raw = cvt(unsafe {
            libc::memfd_create(c"multiproc-queue-item".as_ptr(), libc::MFD_CLOEXEC)
        })?;
        // SAFETY: a fresh descriptor, owned by us from here on.
        let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
        for part in parts {
            file.write_all(part)?;
        }
        Ok(file.into())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let fd = anonymous_shm()?;
        let len: usize = parts.iter().map(|p| p.len()).sum();
        // SAFETY: ftruncate on a descriptor we own.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) })?;
        if len > 0 {
            // SAFETY: a fresh shared mapping of the `len` bytes just allocated, unmapped below;
            // nobody else has the object yet.
            unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    0,
                );
                if p == libc::MAP_FAILED {
                    return Err(io::Error::last_os_error());
                }
                let mut at = p.cast::<u8>();
                for part in parts {
                    std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                    at = at.add(part.len());
                }
                libc::munmap(p, len);
            }
        }
        Ok(fd)
    }
}

/// A POSIX shared memory object, created under a unique name and unlinked at once.
#[cfg(not(target_os = "linux"))]
fn anonymous_shm() -> io::Result<OwnedFd> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "/mpq-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
        // SAFETY: shm_open with a NUL-terminated name.
        let r = unsafe {
            libc::shm_open(
                c.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
                0o600 as libc::c_uint,
            )
        };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::AlreadyExists {
                continue;
            }
            return Err(e);
        }
        // SAFETY: a fresh descriptor, owned by us from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(r) };
        // SAFETY: shm_unlink with the NUL-terminated name just created.
        unsafe { libc::shm_unlink(c.as_ptr()) };
        set_cloexec(fd.as_raw_fd())?;
        return Ok(fd);
    }
}

/// The first `len` bytes of a memory file, mapped read-only.
pub(in crate::queue) struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    /// Map `len` bytes of `file`, which must be at least that long (a shorter file would
    /// fault on access).
    pub(in crate::queue) fn new(file: &OwnedFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: a zeroed stat is a valid buffer for fstat to fill.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on a descriptor we own, into a local buffer.
        cvt(unsafe { libc::fstat(file.as_raw_fd(), &mut st) })?;
        if (st.st_size as u64) < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a queue item's memory file is shorter than the item",
            ));
        }
        if len == 0 {
            return Ok(Mapping {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a new read-only shared mapping of `len` bytes, which the file has.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }

    /// The mapped bytes. A queue item's file is written whole before its descriptor is sent
    /// and never written again, so the bytes do not change under the reference.
    pub(in crate::queue) fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` maps `len` readable bytes while `self` lives; see above for why no
        // one writes them.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping the mapping made in `new`, once.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}
