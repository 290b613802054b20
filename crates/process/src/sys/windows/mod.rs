//! Windows implementation of the platform layer: named pipes (`pipe`), Winsock sockets
//! (`socket`), waiting on many handles (`poll`); processes in `proc`.

pub(crate) mod forkserver;
pub(crate) mod pipe;
pub(crate) mod poll;
pub(crate) mod proc;
pub(crate) mod socket;
pub(crate) mod spawn_support;

pub(crate) use spawn_support::at_exit;

use std::io;
use std::os::windows::io::{
    AsHandle, AsRawHandle, BorrowedHandle as Borrowed, BorrowedSocket, OwnedHandle, RawHandle,
};
use std::time::Duration;

use poll::Interest;

/// Raw handle that `wait()` can wait on: a pipe, a socket (its value), a process or an event.
pub(crate) type RawWait = RawHandle;

/// A one-way pipe: (read end, write end), a named pipe overlapped at both ends, not
/// inheritable.
pub(crate) fn pipe() -> io::Result<(OwnedHandle, OwnedHandle)> {
    pipe::pair(false)
}

/// The buffer of the sending end `h` (a pipe's outbound buffer, or a socket's send buffer).
pub(crate) fn send_buffer_size(h: Borrowed<'_>) -> Option<usize> {
    if socket::classify(h.as_raw_handle()).is_some() {
        // SAFETY: the value names a socket (checked), borrowed for this call.
        let s = unsafe { BorrowedSocket::borrow_raw(h.as_raw_handle() as usize as _) };
        return socket::send_buffer_size(s);
    }
    pipe::send_buffer_size(h)
}

/// A connected duplex channel: the two ends of one duplex named pipe (each reads what the other
/// writes), the Windows stand-in for a Unix socket pair.
pub(crate) fn socketpair() -> io::Result<(OwnedHandle, OwnedHandle)> {
    pipe::pair(true)
}

/// Write all of `bufs`, in order, to the pipe `h`.
pub(crate) fn write_all_vectored(h: Borrowed<'_>, bufs: &[&[u8]]) -> io::Result<()> {
    pipe::write_all_vectored(h, bufs)
}

/// Wait until some of `h` are readable (data or end of file; a process or event: signaled);
/// a flag per handle. `None` waits forever; a zero timeout only checks.
pub(crate) fn poll_readable(h: &[RawWait], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let e: Vec<(RawWait, Interest)> = h.iter().map(|&h| (h, Interest::Read)).collect();
    poll::poll(&e, timeout)
}

/// Wait until some of `h` are ready: each `(handle, write)` for reading, or for writing when
/// `write` is set (a pipe is always writable). A socket waited on for writing, or a listening
/// one, is left non-blocking (the listener's are).
pub(crate) fn poll_ready(
    h: &[(RawWait, bool)],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let e: Vec<(RawWait, Interest)> = h
        .iter()
        .map(|&(h, w)| (h, if w { Interest::Write } else { Interest::Read }))
        .collect();
    poll::poll(&e, timeout)
}

/// See the Unix version. On Windows `HungUp` is readability (end of file on a pipe, signaled for
/// a process), as on Unix systems other than Linux.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    Readable,
    HungUp,
}

/// Wait until some of `h` are ready, each as its [`Readiness`] says; a flag per handle.
pub(crate) fn poll_for(
    h: &[(RawWait, Readiness)],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let e: Vec<(RawWait, Interest)> = h.iter().map(|&(h, _)| (h, Interest::Read)).collect();
    poll::poll(&e, timeout)
}

/// Read up to `max` bytes from the pipe `h` into `v`'s spare capacity; 0 at end of file.
pub(crate) fn read_into_spare(h: Borrowed<'_>, v: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    pipe::read_into_spare(h, v, max)
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

/// End the process with `code` through the C runtime's `exit`, which runs the exit handlers
/// registered with `atexit` (our children's joining, the queues' hand-over of items nobody has
/// taken yet) before `ExitProcess`. `std::process::exit` on Windows is `ExitProcess` itself,
/// which skips them. From inside an exit handler, `ExitProcess` at once.
pub(crate) fn exit_now(code: i32) -> ! {
    use std::io::Write;
    extern "C" {
        fn exit(code: i32) -> !;
    }
    let _ = std::io::stdout().flush();
    if spawn_support::EXITING.load(std::sync::atomic::Ordering::SeqCst) {
        std::process::exit(code)
    }
    // SAFETY: the C runtime's exit, not from inside its handlers; nothing of ours is borrowed
    // across it.
    unsafe { exit(code) }
}

pub(crate) fn track_inheritable(_h: Borrowed<'_>) {}
pub(crate) fn untrack_inheritable(_h: Borrowed<'_>) {}
pub(crate) fn ignore_sigpipe() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_ends_report_their_buffer() {
        let (r, w) = pipe().unwrap();
        assert_eq!(send_buffer_size(borrow(&w)), Some(pipe::BUFSIZE as usize));
        let (a, _b) = socketpair().unwrap();
        assert_eq!(send_buffer_size(borrow(&a)), Some(pipe::BUFSIZE as usize));
        drop(r);
        // a write to a pipe whose reader is gone fails, it does not wait
        assert_eq!(
            write_all_vectored(borrow(&w), &[b"x"]).unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }
}
