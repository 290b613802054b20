//! What starting a child needs from Windows besides the process itself: the bootstrap channel
//! (a private duplex named pipe), plain blocking and non-blocking I/O on it, handle helpers,
//! and the C runtime's at-exit list.
//!
//! The bootstrap channel is its own small world (its own pipe pair, synchronous I/O, reads
//! that never block because they take only what `PeekNamedPipe` says is there), so the start
//! path does not depend on how connections do their I/O.

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::sync::atomic::{AtomicU64, Ordering};

use windows_sys::Win32::Foundation::{
    DuplicateHandle, GetLastError, SetHandleInformation, DUPLICATE_SAME_ACCESS, ERROR_BROKEN_PIPE,
    ERROR_NO_DATA, ERROR_PIPE_CONNECTED, GENERIC_READ, GENERIC_WRITE, HANDLE, HANDLE_FLAG_INHERIT,
    INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, ReadFile, WriteFile, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_SHARE_READ,
    FILE_SHARE_WRITE, OPEN_EXISTING, PIPE_ACCESS_DUPLEX,
};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS,
    PIPE_TYPE_BYTE, PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

/// Buffer of each direction of a bootstrap pipe. A child's reports (at most two texts of
/// `MAX_PANIC_TEXT` and a few bytes) fit in it, so a child never blocks on its report; a
/// larger job streams through it while the child reads.
const BOOT_BUFFER: u32 = 256 * 1024;

/// A handle value as Windows returns it: `INVALID_HANDLE_VALUE` or null is the failure.
fn check(h: HANDLE) -> io::Result<OwnedHandle> {
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh handle the system just returned to us.
    Ok(unsafe { OwnedHandle::from_raw_handle(h as RawHandle) })
}

/// A `BOOL` result as an `io::Result`.
pub(crate) fn cvt(ok: i32) -> io::Result<()> {
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The two ends of a new bootstrap channel: (the parent's, the child's). A duplex byte-mode
/// named pipe with a random name that only this process can have opened (first instance, one
/// instance, no remote clients, connected at once by us), as Rust's std makes its anonymous
/// pipes. Neither end is inheritable; [`inheritable_copy`] makes the copy a child inherits.
pub(crate) fn boot_pair() -> io::Result<(OwnedHandle, OwnedHandle)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).map_err(io::Error::from)?;
    let name = format!(
        r"\\.\pipe\multiproc-boot-{}-{}-{:016x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        u64::from_le_bytes(random)
    );
    let wname = super::pipe::wide(&name);
    // SAFETY: a NUL-terminated name that outlives the call; no security attributes (the
    // default DACL, not inheritable).
    let server = check(unsafe {
        CreateNamedPipeW(
            wname.as_ptr(),
            PIPE_ACCESS_DUPLEX | FILE_FLAG_FIRST_PIPE_INSTANCE,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            1,
            BOOT_BUFFER,
            BOOT_BUFFER,
            0,
            std::ptr::null(),
        )
    })?;
    // SAFETY: as above; the client end is opened for reading and writing, not shared.
    let client = check(unsafe {
        CreateFileW(
            wname.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            0,
            std::ptr::null_mut(),
        )
    })?;
    // The client is connected already (ERROR_PIPE_CONNECTED); anything else is a failure.
    // SAFETY: a synchronous connect on the server end we own; the client exists, so it
    // returns at once.
    if unsafe { ConnectNamedPipe(server.as_raw_handle() as HANDLE, std::ptr::null_mut()) } == 0 {
        // SAFETY: reads this thread's last error.
        let e = unsafe { GetLastError() };
        if e != ERROR_PIPE_CONNECTED {
            return Err(io::Error::from_raw_os_error(e as i32));
        }
    }
    Ok((server, client))
}

/// An inheritable duplicate of `h` (for the handle list of one `CreateProcessW`).
pub(crate) fn inheritable_copy(h: RawHandle) -> io::Result<OwnedHandle> {
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: duplicate a handle of this process within this process into `out`.
    cvt(unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            h as HANDLE,
            GetCurrentProcess(),
            &mut out,
            0,
            1,
            DUPLICATE_SAME_ACCESS,
        )
    })?;
    // SAFETY: a fresh duplicate that we own.
    Ok(unsafe { OwnedHandle::from_raw_handle(out as RawHandle) })
}

/// The null device, readable and inheritable (a child's standard input: never its parent's).
pub(crate) fn null_input() -> io::Result<OwnedHandle> {
    let sa = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: std::ptr::null_mut(),
        bInheritHandle: 1,
    };
    let name = super::pipe::wide("NUL");
    // SAFETY: a NUL-terminated name and security attributes that outlive the call.
    check(unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            &sa,
            OPEN_EXISTING,
            0,
            std::ptr::null_mut(),
        )
    })
}

/// Make `h` non-inheritable (a handle this process inherited must not reach its children).
pub(crate) fn not_inheritable(h: RawHandle) {
    // SAFETY: changes a flag of a handle we own; failure leaves it as it was.
    unsafe {
        SetHandleInformation(h as HANDLE, HANDLE_FLAG_INHERIT, 0);
    }
}

fn is_broken(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(c) if c == ERROR_BROKEN_PIPE as i32 || c == ERROR_NO_DATA as i32)
}

/// Write all of `bufs` to the pipe `h` (blocking). A closed reader is `BrokenPipe`.
pub(crate) fn write_all(h: BorrowedHandle<'_>, bufs: &[&[u8]]) -> io::Result<()> {
    for buf in bufs {
        let mut at = 0;
        while at < buf.len() {
            let chunk = (buf.len() - at).min(1 << 30) as u32;
            let mut n = 0u32;
            // SAFETY: writes from a live slice of at least `chunk` bytes; synchronous handle.
            let ok = unsafe {
                WriteFile(
                    h.as_raw_handle() as HANDLE,
                    buf[at..].as_ptr(),
                    chunk,
                    &mut n,
                    std::ptr::null_mut(),
                )
            };
            if ok == 0 {
                let e = io::Error::last_os_error();
                return Err(if is_broken(&e) {
                    io::Error::new(io::ErrorKind::BrokenPipe, e)
                } else {
                    e
                });
            }
            at += n as usize;
        }
    }
    Ok(())
}

/// Read up to `max` bytes into the spare capacity of `v` (blocking until at least one byte
/// arrives); 0 at end of file (the other end closed).
pub(crate) fn read_some(h: BorrowedHandle<'_>, v: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    v.try_reserve(max)
        .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    let want = max.min(1 << 30) as u32;
    let mut n = 0u32;
    // SAFETY: reads at most `want` bytes into the reserved, uninitialised tail of `v`; only
    // the bytes the system reports read are then counted as initialised.
    let ok = unsafe {
        ReadFile(
            h.as_raw_handle() as HANDLE,
            v.as_mut_ptr().add(v.len()),
            want,
            &mut n,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        let e = io::Error::last_os_error();
        if is_broken(&e) {
            return Ok(0);
        }
        return Err(e);
    }
    // SAFETY: ReadFile initialised `n` bytes past the old length, within the reservation.
    unsafe { v.set_len(v.len() + n as usize) };
    Ok(n as usize)
}

/// Read exactly `buf.len()` bytes (blocking); `UnexpectedEof` if the other end closes first.
pub(crate) fn read_exact(h: BorrowedHandle<'_>, buf: &mut [u8]) -> io::Result<()> {
    let mut got = Vec::with_capacity(buf.len());
    while got.len() < buf.len() {
        let want = buf.len() - got.len();
        if read_some(h, &mut got, want)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    buf.copy_from_slice(&got);
    Ok(())
}

/// Read what the pipe holds now, at most `max` bytes, without blocking: `WouldBlock` when it
/// holds nothing, 0 at end of file.
pub(crate) fn read_available(
    h: BorrowedHandle<'_>,
    v: &mut Vec<u8>,
    max: usize,
) -> io::Result<usize> {
    let avail = match super::pipe::peek(h.as_raw_handle() as HANDLE) {
        Ok(n) => n,
        Err(code) => {
            let e = io::Error::from_raw_os_error(code as i32);
            return if is_broken(&e) { Ok(0) } else { Err(e) };
        }
    };
    if avail == 0 {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    // The bytes are there: this read returns at once.
    read_some(h, v, max.min(avail as usize))
}

extern "C" {
    /// The C runtime's at-exit list (run when `main` returns or the C `exit` is called).
    fn atexit(f: extern "C" fn()) -> i32;
}

/// Our exit handlers, newest last: the C runtime runs one trampoline, which runs these.
static HANDLERS: parking_lot::Mutex<Vec<extern "C" fn()>> = parking_lot::Mutex::new(Vec::new());

/// Set once the exit handlers run: an exit from inside one must not call the C `exit` again
/// (undefined behaviour in C), [`super::exit_now`] then ends the process at once.
pub(crate) static EXITING: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

extern "C" fn run_handlers() {
    EXITING.store(true, std::sync::atomic::Ordering::SeqCst);
    // newest first, as the C runtime would; each taken out before it runs
    while let Some(f) = HANDLERS.lock().pop() {
        f();
    }
}

/// Register `f` to run when the program ends by returning from `main` or through
/// [`super::exit_now`] (the C runtime's `exit`). `std::process::exit` on Windows is
/// `ExitProcess`, which does not run the list.
pub(crate) fn at_exit(f: extern "C" fn()) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a plain function with the signature atexit expects.
        unsafe {
            atexit(run_handlers);
        }
    });
    HANDLERS.lock().push(f);
}
