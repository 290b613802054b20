//! Windows implementation of the platform layer: named pipes (`pipe`), Winsock sockets
//! (`socket`), waiting on many handles (`poll`); processes in `proc`.

pub(crate) mod forkserver;
pub(crate) mod pipe;
pub(crate) mod poll;
pub(crate) mod proc;
pub(crate) mod socket;

use std::io;
use std::os::windows::io::{
    AsHandle, AsRawHandle, BorrowedHandle as Borrowed, BorrowedSocket, FromRawHandle, OwnedHandle,
    RawHandle,
};
use std::time::Duration;

use poll::Interest;

/// Raw handle that `wait()` can wait on: a pipe, a socket (its value), a process or an event.
pub(crate) type RawWait = RawHandle;

pub(crate) fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "not yet implemented on Windows")
}

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

/// Read up to `max` bytes from the pipe `h` into `v`'s spare capacity; 0 at end of file.
pub(crate) fn read_into_spare(h: Borrowed<'_>, v: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    pipe::read_into_spare(h, v, max)
}

/// What open file a handle names (unused on Windows: a handle number is not reused while
/// its owner holds it).
pub(crate) fn file_id(_h: Borrowed<'_>) -> io::Result<(u64, u64)> {
    Ok((0, 0))
}

/// Make reads of `h` return `WouldBlock` instead of waiting: a socket through `FIONBIO`, a pipe
/// by this process's own mark (see [`pipe::set_nonblocking`]).
pub(crate) fn set_nonblocking(h: Borrowed<'_>) -> io::Result<()> {
    if socket::classify(h.as_raw_handle()).is_some() {
        // SAFETY: the value names a socket (checked), borrowed for this call.
        let s = unsafe { BorrowedSocket::borrow_raw(h.as_raw_handle() as usize as _) };
        return socket::set_nonblocking(s);
    }
    pipe::set_nonblocking(h);
    Ok(())
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

/// Point standard input at `NUL` (a child never reads its parent's input, as in Python).
pub(crate) fn stdin_from_devnull() -> std::io::Result<()> {
    use windows_sys::Win32::Foundation::{GENERIC_READ, INVALID_HANDLE_VALUE};
    use windows_sys::Win32::Storage::FileSystem::{
        CreateFileW, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
    };
    use windows_sys::Win32::System::Console::{SetStdHandle, STD_INPUT_HANDLE};
    let name = pipe::wide("NUL");
    // SAFETY: a NUL-terminated name; default security (not inheritable).
    let h = unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            std::ptr::null(),
            OPEN_EXISTING,
            0,
            std::ptr::null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handle becomes standard input for the rest of the process (never closed).
    if unsafe { SetStdHandle(STD_INPUT_HANDLE, h) } == 0 {
        let e = io::Error::last_os_error();
        // SAFETY: ours, unused.
        drop(unsafe { OwnedHandle::from_raw_handle(h) });
        return Err(e);
    }
    Ok(())
}

/// How many threads this process has: a Toolhelp snapshot of the system's threads, counting
/// ours (`None` if the snapshot fails).
pub(crate) fn thread_count() -> Option<usize> {
    use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
    };
    // SAFETY: plain call; the snapshot handle is closed below.
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    if snap == INVALID_HANDLE_VALUE {
        return None;
    }
    // SAFETY: a fresh handle, ours alone.
    let snap = unsafe { OwnedHandle::from_raw_handle(snap) };
    // SAFETY: THREADENTRY32 is plain data; dwSize is set before use, as the API requires.
    let mut e: THREADENTRY32 = unsafe { std::mem::zeroed() };
    e.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
    let me = std::process::id();
    let mut n = 0;
    // SAFETY: walks the snapshot with a correctly sized entry.
    let mut more = unsafe { Thread32First(snap.as_raw_handle(), &mut e) } != 0;
    while more {
        if e.th32OwnerProcessID == me {
            n += 1;
        }
        // SAFETY: as above.
        more = unsafe { Thread32Next(snap.as_raw_handle(), &mut e) } != 0;
    }
    (n > 0).then_some(n)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// (Other tests run threads at the same time: only a lower bound holds.)
    #[test]
    fn thread_count_sees_new_threads() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = std::sync::Arc::new(parking_lot::Mutex::new(rx));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || {
                    let _ = rx.lock().recv();
                })
            })
            .collect();
        assert!(
            thread_count().is_some_and(|n| n >= 9),
            "{:?}",
            thread_count()
        );
        drop(tx);
        for t in threads {
            let _ = t.join();
        }
    }

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

    /// A pipe marked non-blocking: an empty pipe is `WouldBlock`, data is read, and end of
    /// file is 0.
    #[test]
    fn non_blocking_pipe_reads() {
        let (r, w) = socketpair().unwrap();
        set_nonblocking(borrow(&r)).unwrap();
        let mut v = Vec::new();
        assert_eq!(
            read_into_spare(borrow(&r), &mut v, 16).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        write_all_vectored(borrow(&w), &[b"ab", b"cd"]).unwrap();
        assert_eq!(read_into_spare(borrow(&r), &mut v, 16).unwrap(), 4);
        assert_eq!(v, b"abcd");
        drop(w);
        assert_eq!(read_into_spare(borrow(&r), &mut v, 16).unwrap(), 0);
    }

    #[test]
    fn stdin_reads_end_of_file_after_devnull() {
        use std::io::Read;
        stdin_from_devnull().unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(std::io::stdin().read(&mut buf).unwrap(), 0);
    }
}
