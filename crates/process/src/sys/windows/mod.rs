//! Windows implementation of the platform layer. Processes, pipes and sockets report
//! `Unsupported` until the cross-platform work lands; everything compiles against the same names.

pub(crate) mod forkserver;
pub(crate) mod proc;

use std::io;
use std::os::windows::io::{
    AsHandle, AsRawHandle, BorrowedHandle as Borrowed, FromRawHandle, OwnedHandle, RawHandle,
};
use std::time::Duration;

/// Raw handle that `wait()` can wait on.
pub(crate) type RawWait = RawHandle;

pub(crate) fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "not yet implemented on Windows")
}

pub(crate) fn pipe() -> io::Result<(OwnedHandle, OwnedHandle)> {
    Err(unsupported())
}

pub(crate) fn send_buffer_size(_h: Borrowed<'_>) -> Option<usize> {
    None
}

pub(crate) fn socketpair() -> io::Result<(OwnedHandle, OwnedHandle)> {
    Err(unsupported())
}

pub(crate) fn write_all_vectored(_h: Borrowed<'_>, _bufs: &[&[u8]]) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn poll_readable(_h: &[RawWait], _timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    Err(unsupported())
}

pub(crate) fn poll_ready(
    _h: &[(RawWait, bool)],
    _timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    Err(unsupported())
}

/// See the Unix version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    Readable,
    HungUp,
}

pub(crate) fn poll_for(
    _h: &[(RawWait, Readiness)],
    _timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    Err(unsupported())
}

pub(crate) fn send_with_fds(_h: Borrowed<'_>, _data: &[u8], _fds: &[RawWait]) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn recv_with_fds(
    _h: Borrowed<'_>,
    _buf: &mut [u8],
    _max: usize,
) -> io::Result<Vec<OwnedHandle>> {
    Err(unsupported())
}

pub(crate) fn read_into_spare(
    _h: Borrowed<'_>,
    _v: &mut Vec<u8>,
    _max: usize,
) -> io::Result<usize> {
    Err(unsupported())
}

/// What open file a handle names (unused on Windows: a handle number is not reused while
/// its owner holds it).
pub(crate) fn file_id(_h: Borrowed<'_>) -> io::Result<(u64, u64)> {
    Ok((0, 0))
}

pub(crate) fn set_nonblocking(_h: Borrowed<'_>) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn raw(h: Borrowed<'_>) -> RawWait {
    h.as_raw_handle()
}

pub(crate) fn borrow(h: &OwnedHandle) -> Borrowed<'_> {
    h.as_handle()
}

/// # Safety
/// `h` must be an open handle owned by nobody else.
pub(crate) unsafe fn adopt(h: RawWait) -> OwnedHandle {
    // SAFETY: the caller guarantees ownership of the handle value.
    unsafe { OwnedHandle::from_raw_handle(h) }
}

/// # Safety
/// The named handle must be owned by nobody else.
pub(crate) unsafe fn adopt_named(text: &str) -> Result<OwnedHandle, String> {
    let v: usize = text
        .parse()
        .map_err(|_| "is not a handle number".to_string())?;
    // SAFETY: forwarded from the caller.
    Ok(unsafe { adopt(v as RawHandle) })
}

pub(crate) fn stdin_from_devnull() -> std::io::Result<()> {
    Err(unsupported())
}

pub(crate) fn thread_count() -> Option<usize> {
    None
}

pub(crate) fn close_raw(h: RawWait) {
    // SAFETY: the caller names a handle of this process that nothing else will use.
    drop(unsafe { OwnedHandle::from_raw_handle(h) });
}

pub(crate) fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub(crate) fn getpid() -> u32 {
    std::process::id()
}

pub(crate) fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

pub(crate) fn at_exit(_f: extern "C" fn()) {}

pub(crate) fn track_inheritable(_h: Borrowed<'_>) {}
pub(crate) fn untrack_inheritable(_h: Borrowed<'_>) {}
pub(crate) fn neutralize_inherited() {}

pub(crate) fn ignore_sigpipe() {}
