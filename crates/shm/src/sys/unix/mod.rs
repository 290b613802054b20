//! Unix implementation: Linux, macOS (its own futex, see `futex_apple`), and other Unixes
//! with a polling futex.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use crate::ShmError;

#[cfg(any(target_os = "macos", test))]
mod futex_apple;
mod identity;
mod tracker;
pub(crate) use identity::{alive as identity_alive, me as identity};
pub(crate) use tracker::{forget as tracker_forget, register as tracker_register};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn set_len(fd: &OwnedFd, len: usize) -> io::Result<()> {
    // SAFETY: ftruncate on a descriptor we own.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) })?;
    Ok(())
}

/// A new anonymous shared memory object of `len` zero bytes (close-on-exec).
pub(crate) fn anon_fd(len: usize) -> io::Result<OwnedFd> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let fd = {
        // SAFETY: memfd_create with a static NUL-terminated name.
        let raw = cvt(unsafe { libc::memfd_create(c"multiproc".as_ptr(), libc::MFD_CLOEXEC) })?;
        // SAFETY: a fresh descriptor owned by us.
        unsafe { OwnedFd::from_raw_fd(raw) }
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let fd = {
        let mut r = [0u8; 8];
        getrandom::getrandom(&mut r).map_err(io::Error::from)?;
        let name = format!("/mpa-{:016x}", u64::from_le_bytes(r));
        let fd = open(&name, true).map_err(|e| match e {
            ShmError::Io(e) => e,
            other => io::Error::other(other),
        })?;
        let _ = unlink(&name);
        fd
    };
    set_len(&fd, len)?;
    Ok(fd)
}

/// Open (or with `create`, exclusively create) the named object.
pub(crate) fn open(name: &str, create: bool) -> Result<OwnedFd, ShmError> {
    let c = CString::new(name).map_err(|_| ShmError::InvalidName(name.into(), "contains NUL"))?;
    let flags = libc::O_RDWR
        | libc::O_CLOEXEC
        | if create {
            libc::O_CREAT | libc::O_EXCL
        } else {
            0
        };
    // SAFETY: shm_open with a NUL-terminated name.
    let raw = unsafe { libc::shm_open(c.as_ptr(), flags, 0o600 as libc::c_uint) };
    if raw < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT) => ShmError::NotFound(name.into()),
            Some(libc::EEXIST) => ShmError::Exists(name.into()),
            Some(libc::EINVAL) => ShmError::InvalidName(name.into(), "refused by the OS"),
            Some(libc::ENAMETOOLONG) => {
                ShmError::InvalidName(name.into(), "longer than the OS allows")
            }
            _ => ShmError::Io(e),
        });
    }
    // SAFETY: a fresh descriptor owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Create the named object with `len` zero bytes.
pub(crate) fn create_named(name: &str, len: usize) -> Result<OwnedFd, ShmError> {
    let fd = open(name, true)?;
    if let Err(e) = set_len(&fd, len) {
        let _ = unlink(name);
        return Err(e.into());
    }
    Ok(fd)
}

/// Remove the name (mappings stay valid until unmapped).
pub(crate) fn unlink(name: &str) -> Result<(), ShmError> {
    let c = CString::new(name).map_err(|_| ShmError::InvalidName(name.into(), "contains NUL"))?;
    // SAFETY: shm_unlink with a NUL-terminated name.
    if unsafe { libc::shm_unlink(c.as_ptr()) } < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT) => ShmError::NotFound(name.into()),
            _ => ShmError::Io(e),
        });
    }
    Ok(())
}

/// Size of the object behind `fd`.
pub(crate) fn size_of(fd: &OwnedFd) -> io::Result<usize> {
    // SAFETY: zeroed stat is a valid out-buffer for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a descriptor we own, into a valid buffer.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st.st_size as usize)
}

/// Block while `*word == expected`, up to `timeout`. Returns false on timeout. Spurious
/// returns are allowed; callers re-check their condition.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let tsp = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: FUTEX_WAIT (shared, not PRIVATE: the word may be in memory mapped by several
        // processes) on a valid aligned u32, with a valid or null timeout.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                tsp,
            )
        };
        !(r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
    }
    #[cfg(target_os = "macos")]
    {
        futex_apple::wait(word.as_ptr(), expected, timeout)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
    {
        poll_wait(word, expected, timeout)
    }
}

/// The portable fallback where the OS offers no wait on a shared word: short sleeps.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn poll_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    let step = Duration::from_micros(200);
    let t = timeout.map_or(step, |t| t.min(step));
    std::thread::sleep(t);
    !(timeout.is_some_and(|to| to <= step)
        && word.load(std::sync::atomic::Ordering::Acquire) == expected)
}

/// The 32-bit half of `word` that holds its low 32 bits (the futex word of a 64-bit lock): the
/// first on little-endian targets (both Apple ones among them).
#[cfg(any(target_os = "linux", target_os = "android", target_os = "macos"))]
fn low_half(word: &AtomicU64) -> *mut u32 {
    let p = word.as_ptr() as *mut u32;
    if cfg!(target_endian = "big") {
        // SAFETY: the second half of the same 8-byte word.
        unsafe { p.add(1) }
    } else {
        p
    }
}

/// [`futex_wait`] on the low 32 bits of `word`: sleep while they equal `expected`. (Only the
/// kernel reads the half; in Rust the word is only ever accessed whole.)
pub(crate) fn futex_wait_low(word: &AtomicU64, expected: u32, timeout: Option<Duration>) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: the half is a valid, 4-byte aligned part of a live word, read by the kernel
        // atomically; an `AtomicU32` reference is only formed to pass its address.
        futex_wait(
            unsafe { AtomicU32::from_ptr(low_half(word)) },
            expected,
            timeout,
        )
    }
    #[cfg(target_os = "macos")]
    {
        // (only the kernel reads the half, as above)
        futex_apple::wait(low_half(word), expected, timeout)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
    {
        let step = Duration::from_micros(200);
        std::thread::sleep(timeout.map_or(step, |t| t.min(step)));
        !(timeout.is_some_and(|to| to <= step)
            && word.load(std::sync::atomic::Ordering::Acquire) as u32 == expected)
    }
}

/// [`futex_wake`] on the low 32 bits of `word`.
pub(crate) fn futex_wake_low(word: &AtomicU64, n: u32) -> usize {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: as in `futex_wait_low`.
        futex_wake(unsafe { AtomicU32::from_ptr(low_half(word)) }, n)
    }
    #[cfg(target_os = "macos")]
    {
        futex_apple::wake(low_half(word), n)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
    {
        let _ = (word, n);
        0
    }
}

/// Wake up to `n` waiters on `word`; returns how many woke. 0 means nobody was asleep: where
/// the OS cannot count (a wake of all on macOS) the answer is a
/// lower bound that is never 0 when someone may have been (callers compare it with 0). Other
/// Unixes poll: 0, their sleepers need no wake.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: FUTEX_WAKE on a valid aligned u32.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE,
                n.min(i32::MAX as u32),
            )
        };
        r.max(0) as usize
    }
    #[cfg(target_os = "macos")]
    {
        futex_apple::wake(word.as_ptr(), n)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
    {
        let _ = (word, n);
        0
    }
}

/// This process's id, cached (see [`identity`]).
pub(crate) fn getpid() -> u32 {
    identity::me() as u32
}

/// Whether a process `pid` exists (a zombie counts as existing). One system call.
pub(crate) fn pid_exists(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    !(unsafe { libc::kill(pid as libc::pid_t, 0) } == -1
        && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH))
}
