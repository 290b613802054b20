//! Windows implementation of the platform layer. Processes, pipes and sockets report
//! `Unsupported` until the cross-platform work lands; everything compiles against the same names.

pub(crate) mod forkserver;
pub(crate) mod proc;
pub(crate) mod spawn_support;

pub(crate) use spawn_support::at_exit;

use std::io;
use std::os::windows::io::{
    AsHandle, AsRawHandle, BorrowedHandle as Borrowed, OwnedHandle, RawHandle,
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

pub(crate) fn raw(h: Borrowed<'_>) -> RawWait {
    h.as_raw_handle()
}

pub(crate) fn borrow(h: &OwnedHandle) -> Borrowed<'_> {
    h.as_handle()
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

pub(crate) fn track_inheritable(_h: Borrowed<'_>) {}
pub(crate) fn untrack_inheritable(_h: Borrowed<'_>) {}

pub(crate) fn ignore_sigpipe() {}
