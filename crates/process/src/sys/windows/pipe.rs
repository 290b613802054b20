//! Named pipes: the pipes of [`pipe`](crate::pipe), the duplex channel a child is bootstrapped
//! over, and the `\\.\pipe\name` listener and client.
//!
//! Every pipe is a byte-mode named pipe opened with `FILE_FLAG_OVERLAPPED` at both ends, so a
//! reader can wait with a timeout and [`poll`](super::poll) can wait on many at once (an
//! overlapped zero-byte read completes when data arrives, without taking it). Reads and writes
//! that block issue the overlapped operation and wait for it, so to their caller they behave as
//! on a Unix pipe: a read returns what is there (at least one byte) or 0 once the other end has
//! closed (`ERROR_BROKEN_PIPE`); a write returns when all of it is in the pipe.
//!
//! Handles are never inheritable here (a child gets the ones it needs explicitly).

use std::cell::RefCell;
use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_BROKEN_PIPE, ERROR_FILE_NOT_FOUND, ERROR_HANDLE_EOF, ERROR_IO_PENDING,
    ERROR_MORE_DATA, ERROR_NO_DATA, ERROR_PIPE_BUSY, ERROR_PIPE_CONNECTED,
    ERROR_PIPE_NOT_CONNECTED, ERROR_SEM_TIMEOUT, GENERIC_READ, GENERIC_WRITE, HANDLE,
    INVALID_HANDLE_VALUE, STATUS_PENDING,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, ReadFile, WriteFile, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED,
    FILE_READ_ATTRIBUTES, OPEN_EXISTING, PIPE_ACCESS_DUPLEX, PIPE_ACCESS_INBOUND,
};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, GetNamedPipeInfo, PeekNamedPipe, WaitNamedPipeW,
    PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_UNLIMITED_INSTANCES,
    PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::{CreateEventW, ResetEvent, SetEvent, SleepEx};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

/// Each direction's buffer, as on Linux (1 MiB): sends totalling less do not wait for the
/// reader. Windows charges it against the pool only for bytes actually buffered.
pub(crate) const BUFSIZE: u32 = 1 << 20;

/// How long a [`connect`] waits for a busy pipe to offer an instance (CPython's 20 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The NUL-terminated UTF-16 form of `s`.
pub(crate) fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

/// The last OS error, as an `io::Error`.
fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// Adopt the result of a call that returns a handle (`INVALID_HANDLE_VALUE` or null on failure).
fn handle_or_err(h: HANDLE) -> io::Result<OwnedHandle> {
    if h == INVALID_HANDLE_VALUE || h.is_null() {
        return Err(last_error());
    }
    // SAFETY: a fresh handle the call just returned, owned by nobody else.
    Ok(unsafe { OwnedHandle::from_raw_handle(h as RawHandle) })
}

/// A manual-reset event, not signaled.
pub(crate) fn new_event() -> io::Result<OwnedHandle> {
    // SAFETY: plain call; null attributes and name are allowed.
    handle_or_err(unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) })
}

thread_local! {
    /// The event this thread's blocking reads and writes wait on (one operation at a time).
    static IO_EVENT: RefCell<Option<OwnedHandle>> = const { RefCell::new(None) };
}

/// Run `f` with this thread's I/O event (a fresh one while the thread's locals are being torn
/// down). The event stays open as long as the thread, so `f` may use it past the borrow.
fn with_event<R>(f: impl FnOnce(HANDLE) -> io::Result<R>) -> io::Result<R> {
    let cached = IO_EVENT.try_with(|cell| -> io::Result<HANDLE> {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(new_event()?);
        }
        Ok(slot
            .as_ref()
            .map_or(std::ptr::null_mut(), |e| e.as_raw_handle() as HANDLE))
    });
    match cached {
        Ok(ev) => f(ev?),
        Err(_) => {
            let own = new_event()?;
            f(own.as_raw_handle() as HANDLE)
        }
    }
}

fn zeroed_overlapped(event: HANDLE) -> OVERLAPPED {
    // SAFETY: OVERLAPPED is plain data; all zeroes is its documented initial state.
    let mut ov: OVERLAPPED = unsafe { std::mem::zeroed() };
    ov.hEvent = event;
    ov
}

/// Whether `code` means the other end of a pipe is gone (end of file for a reader).
pub(crate) fn is_eof_code(code: u32) -> bool {
    matches!(
        code,
        ERROR_BROKEN_PIPE | ERROR_PIPE_NOT_CONNECTED | ERROR_HANDLE_EOF
    )
}

/// Whether the operation of `ov` has ended as this process sees it (its status in `ov` is no
/// longer `STATUS_PENDING`), waiting for that up to `within`, alertably (so that a completion
/// queued to this thread as an APC can write the status).
///
/// The event of an operation can be signaled, and `GetOverlappedResult` return, a moment before
/// the status reaches the OVERLAPPED (seen under Wine, whose `GetOverlappedResult` then reports
/// success for an operation still under way): an OVERLAPPED freed in that moment is written to
/// after it is freed (a heap corruption seen as a crash inside `RtlAllocateHeap`, writing
/// `STATUS_FILE_CLOSED`). So nothing frees or reuses an OVERLAPPED before this says it ended.
pub(crate) fn settled(ov: &OVERLAPPED, within: Duration) -> bool {
    let start = Instant::now();
    // SAFETY: reads a field the kernel writes, through a valid reference (volatile: the write
    // comes from outside this thread's view of the program).
    while unsafe { std::ptr::read_volatile(&ov.Internal) } == STATUS_PENDING as usize {
        if start.elapsed() > within {
            return false;
        }
        // SAFETY: plain call; alertable, so APCs queued to this thread run.
        unsafe { SleepEx(1, 1) };
    }
    true
}

/// Wait for an overlapped operation `ok`/`GetLastError` started, and return its byte count.
///
/// # Safety
/// `ov` must be the OVERLAPPED the operation on `h` was started with, alive until this returns.
unsafe fn finish(h: HANDLE, ov: &OVERLAPPED, ok: i32) -> Result<u32, u32> {
    // SAFETY: GetLastError is always safe.
    if ok == 0 && unsafe { GetLastError() } != ERROR_IO_PENDING {
        // SAFETY: as above.
        return Err(unsafe { GetLastError() });
    }
    let mut n = 0u32;
    // Completed (ok) or pending: GetOverlappedResult gives the count, waiting if pending. For a
    // handle opened without FILE_FLAG_OVERLAPPED the call completed synchronously.
    // SAFETY: `ov` is the operation's OVERLAPPED (caller's contract).
    let mut ok = unsafe { GetOverlappedResult(h, ov, &mut n, 1) };
    // (read before any other call)
    let mut err = if ok == 0 {
        // SAFETY: always safe.
        unsafe { GetLastError() }
    } else {
        0
    };
    // (`ov` lives on the caller's stack: it must not be left while the kernel may write it)
    while !settled(ov, Duration::from_secs(5)) {
        tracing::warn!("an overlapped pipe operation did not end in 5 s; cancelling it");
        // SAFETY: cancels the operation that uses `ov` (caller's contract: it is `h`'s).
        unsafe { CancelIoEx(h, ov) };
    }
    if ok != 0 && n == 0 {
        // (the count as the settled status has it)
        // SAFETY: as above; it has ended, no wait.
        ok = unsafe { GetOverlappedResult(h, ov, &mut n, 0) };
        err = if ok == 0 {
            // SAFETY: always safe.
            unsafe { GetLastError() }
        } else {
            0
        };
    }
    if ok == 0 {
        return Err(err);
    }
    Ok(n)
}

/// Read at most `len` bytes into `buf`, waiting until at least one is there; 0 at end of file.
///
/// # Safety
/// `buf` must be valid for `len` bytes of writes.
unsafe fn read_raw(h: HANDLE, buf: *mut u8, len: u32) -> io::Result<usize> {
    with_event(|ev| {
        let mut ov = zeroed_overlapped(ev);
        // SAFETY: `buf` is valid for `len` bytes (caller); `ov` lives until `finish` returns.
        let ok = unsafe { ReadFile(h, buf, len, std::ptr::null_mut(), &mut ov) };
        // SAFETY: `ov` is the read's OVERLAPPED.
        match unsafe { finish(h, &ov, ok) } {
            Ok(n) => Ok(n as usize),
            Err(c) if is_eof_code(c) => Ok(0),
            // (message-mode pipes only: part of a message)
            Err(ERROR_MORE_DATA) => Ok(ov.InternalHigh),
            Err(c) => Err(io::Error::from_raw_os_error(c as i32)),
        }
    })
}

/// Write all of `data`, waiting for room as needed.
fn write_raw(h: HANDLE, mut data: &[u8]) -> io::Result<()> {
    with_event(|ev| {
        while !data.is_empty() {
            let len = data.len().min(1 << 30) as u32;
            let mut ov = zeroed_overlapped(ev);
            // SAFETY: `data` is valid for `len` bytes; `ov` lives until `finish` returns.
            let ok = unsafe { WriteFile(h, data.as_ptr(), len, std::ptr::null_mut(), &mut ov) };
            // SAFETY: `ov` is the write's OVERLAPPED.
            match unsafe { finish(h, &ov, ok) } {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n as usize..],
                Err(c) => return Err(io::Error::from_raw_os_error(c as i32)),
            }
        }
        Ok(())
    })
}

/// How many bytes wait in the pipe `h`; `Err` with the OS code if it cannot be read (the other
/// end closed: `ERROR_BROKEN_PIPE`).
pub(crate) fn peek(h: HANDLE) -> Result<u32, u32> {
    let mut avail = 0u32;
    // SAFETY: PeekNamedPipe with no buffer, only the count written to `avail`.
    let ok = unsafe {
        PeekNamedPipe(
            h,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
            &mut avail,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        // SAFETY: GetLastError is always safe.
        return Err(unsafe { GetLastError() });
    }
    Ok(avail)
}

/// Read up to `max` bytes into `v`'s spare capacity (waiting for at least one); 0 at end of
/// file.
pub(crate) fn read_into_spare(
    h: BorrowedHandle<'_>,
    v: &mut Vec<u8>,
    max: usize,
) -> io::Result<usize> {
    let raw = h.as_raw_handle() as HANDLE;
    let want = max;
    v.reserve(want);
    let spare = v.spare_capacity_mut();
    let len = spare.len().min(want).min(u32::MAX as usize) as u32;
    // SAFETY: `spare` is valid for `len` bytes of writes.
    let n = unsafe { read_raw(raw, spare.as_mut_ptr().cast(), len)? };
    // SAFETY: the read initialized exactly `n` bytes after the old length.
    unsafe { v.set_len(v.len() + n) };
    Ok(n)
}

/// Write all of `bufs`, in order: small pieces are gathered into one write (a pipe has no
/// gather-write), large ones go as they are.
pub(crate) fn write_all_vectored(h: BorrowedHandle<'_>, bufs: &[&[u8]]) -> io::Result<()> {
    const GATHER: usize = 64 * 1024;
    let raw = h.as_raw_handle() as HANDLE;
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    if total <= GATHER {
        let mut one = Vec::with_capacity(total);
        for b in bufs {
            one.extend_from_slice(b);
        }
        return write_raw(raw, &one);
    }
    let mut small: Vec<u8> = Vec::new();
    for b in bufs {
        if b.len() < GATHER / 4 && small.len() + b.len() <= GATHER {
            small.extend_from_slice(b);
            continue;
        }
        if !small.is_empty() {
            write_raw(raw, &small)?;
            small.clear();
        }
        write_raw(raw, b)?;
    }
    if !small.is_empty() {
        write_raw(raw, &small)?;
    }
    Ok(())
}

/// The outbound buffer of the pipe `h`, in bytes (`None`: not a pipe).
pub(crate) fn send_buffer_size(h: BorrowedHandle<'_>) -> Option<usize> {
    let (mut flags, mut out, mut inb, mut max) = (0u32, 0u32, 0u32, 0u32);
    // SAFETY: GetNamedPipeInfo writes four u32s.
    let ok = unsafe {
        GetNamedPipeInfo(
            h.as_raw_handle() as HANDLE,
            &mut flags,
            &mut out,
            &mut inb,
            &mut max,
        )
    };
    (ok != 0 && out > 0).then_some(out as usize)
}

/// A new server instance of the pipe `name`: byte mode, overlapped, local clients only.
fn create_instance(
    name: &[u16],
    access: u32,
    first: bool,
    instances: u32,
) -> io::Result<OwnedHandle> {
    let open = access
        | FILE_FLAG_OVERLAPPED
        | if first {
            FILE_FLAG_FIRST_PIPE_INSTANCE
        } else {
            0
        };
    // SAFETY: `name` is NUL-terminated UTF-16; null security attributes: default security, not
    // inheritable.
    let h = unsafe {
        CreateNamedPipeW(
            name.as_ptr(),
            open,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            instances,
            BUFSIZE,
            BUFSIZE,
            0,
            std::ptr::null(),
        )
    };
    handle_or_err(h).map_err(|e| {
        if e.raw_os_error() == Some(5) && first {
            // ERROR_ACCESS_DENIED for a first instance: the name is taken
            in_use(name)
        } else {
            e
        }
    })
}

/// The error for a pipe name (NUL-terminated UTF-16) that exists already.
fn in_use(name: &[u16]) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "the named pipe {} exists already",
            String::from_utf16_lossy(&name[..name.len() - 1])
        ),
    )
}

/// Open the client end of the pipe `name`.
fn open_client(name: &[u16], access: u32) -> Result<OwnedHandle, u32> {
    // SAFETY: `name` is NUL-terminated UTF-16; no sharing, default security (not inheritable).
    let h = unsafe {
        CreateFileW(
            name.as_ptr(),
            access,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED,
            std::ptr::null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE {
        // SAFETY: GetLastError is always safe.
        return Err(unsafe { GetLastError() });
    }
    // SAFETY: a fresh handle, ours alone.
    Ok(unsafe { OwnedHandle::from_raw_handle(h as RawHandle) })
}

/// A connected pair of pipe ends: (server, client). `duplex`: both read and write; else the
/// server end reads and the client end writes.
pub(crate) fn pair(duplex: bool) -> io::Result<(OwnedHandle, OwnedHandle)> {
    let name = wide(&crate::listener::arbitrary_pipe_name());
    let (open, access) = if duplex {
        (PIPE_ACCESS_DUPLEX, GENERIC_READ | GENERIC_WRITE)
    } else {
        // (the write end may read the pipe's attributes: its buffer size)
        (PIPE_ACCESS_INBOUND, GENERIC_WRITE | FILE_READ_ATTRIBUTES)
    };
    let server = create_instance(&name, open, true, 1)?;
    let client = open_client(&name, access).map_err(|c| io::Error::from_raw_os_error(c as i32))?;
    // The client is connected already; ConnectNamedPipe says so (ERROR_PIPE_CONNECTED).
    let ev = new_event()?;
    let mut ov = zeroed_overlapped(ev.as_raw_handle() as HANDLE);
    let sh = server.as_raw_handle() as HANDLE;
    // SAFETY: `ov` lives until the operation has finished (waited for below).
    let ok = unsafe { ConnectNamedPipe(sh, &mut ov) };
    // SAFETY: GetLastError is always safe.
    match unsafe { GetLastError() } {
        _ if ok != 0 => {}
        ERROR_PIPE_CONNECTED => {}
        ERROR_IO_PENDING => {
            let mut n = 0;
            // SAFETY: waits for the operation `ov` belongs to.
            let ok = unsafe { GetOverlappedResult(sh, &ov, &mut n, 1) };
            let err = last_error();
            // (`ov` is on this stack: not left while the kernel may write it)
            while !settled(&ov, Duration::from_secs(5)) {
                // SAFETY: cancels the operation `ov` belongs to.
                unsafe { CancelIoEx(sh, &ov) };
            }
            if ok == 0 {
                return Err(err);
            }
        }
        c => return Err(io::Error::from_raw_os_error(c as i32)),
    }
    Ok((server, client))
}

/// Connect to the named pipe `name` (`\\.\pipe\...`), read and write, overlapped. A busy pipe
/// (every instance taken) is waited for, up to 20 s as in CPython; a name nobody listens on is
/// a `NotFound` error that says so.
pub(crate) fn connect(name: &str) -> io::Result<OwnedHandle> {
    let w = wide(name);
    let start = Instant::now();
    loop {
        match open_client(&w, GENERIC_READ | GENERIC_WRITE) {
            Ok(h) => return Ok(h),
            Err(ERROR_FILE_NOT_FOUND) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no named pipe {name} (nothing listens there)"),
                ))
            }
            Err(ERROR_PIPE_BUSY | ERROR_SEM_TIMEOUT) if start.elapsed() < CONNECT_TIMEOUT => {
                // SAFETY: `w` is NUL-terminated UTF-16; waits at most 1 s.
                unsafe { WaitNamedPipeW(w.as_ptr(), 1000) };
            }
            Err(c) => return Err(io::Error::from_raw_os_error(c as i32)),
        }
    }
}

/// An overlapped operation whose OVERLAPPED the kernel may still be using: boxed (its address
/// stays put), cancelled and waited for before it is freed.
pub(crate) struct Pending {
    /// The handle the operation runs on (borrowed: it outlives this).
    pub(crate) on: HANDLE,
    pub(crate) ov: Box<OVERLAPPED>,
    /// `ov`'s event (signaled when the operation completes).
    pub(crate) event: OwnedHandle,
    /// Still running (cancel and wait on drop).
    pub(crate) running: bool,
}

impl Pending {
    pub(crate) fn new(on: HANDLE) -> io::Result<Pending> {
        let event = new_event()?;
        let ov = Box::new(zeroed_overlapped(event.as_raw_handle() as HANDLE));
        Ok(Pending {
            on,
            ov,
            event,
            running: false,
        })
    }

    /// Cancel the operation if it still runs, and wait until the kernel is done with it.
    pub(crate) fn cancel(&mut self) {
        if !self.running {
            return;
        }
        // SAFETY: cancels only the operation that uses `ov`, on a handle that is still open.
        unsafe { CancelIoEx(self.on, &*self.ov) };
        let mut n = 0u32;
        // SAFETY: waits for that operation to end (cancelled or completed).
        unsafe { GetOverlappedResult(self.on, &*self.ov, &mut n, 1) };
        self.running = false;
        if !settled(&self.ov, Duration::from_secs(10)) {
            // never freed while the kernel may still write it: leaked instead
            tracing::warn!("an overlapped operation did not end in 10 s; its OVERLAPPED is leaked");
            let fresh = Box::new(zeroed_overlapped(self.event.as_raw_handle() as HANDLE));
            Box::leak(std::mem::replace(&mut self.ov, fresh));
        }
    }

    /// Start an overlapped zero-byte read: it completes when data (or end of file) is there,
    /// and takes nothing. `Ok(true)`: completed at once (ready).
    pub(crate) fn start_zero_read(&mut self) -> io::Result<bool> {
        let mut byte = 0u8;
        // SAFETY: a zero-byte read into a valid address; `ov` is boxed and outlives the
        // operation (cancelled and waited for on drop).
        let ok = unsafe { ReadFile(self.on, &mut byte, 0, std::ptr::null_mut(), &mut *self.ov) };
        self.started(ok)
    }

    /// Account for a started operation's immediate result.
    pub(crate) fn started(&mut self, ok: i32) -> io::Result<bool> {
        if ok != 0 {
            return Ok(true);
        }
        // SAFETY: GetLastError is always safe.
        match unsafe { GetLastError() } {
            ERROR_IO_PENDING => {
                self.running = true;
                Ok(false)
            }
            // finished with an error: ready (the reader will see it)
            _ => Ok(true),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// How many instances of a listener's pipe wait for clients at once: clients that connect
/// while nobody accepts wait there, as in a socket's backlog (CPython keeps one; a client that
/// finds every instance taken waits for one, up to 20 s).
const BACKLOG: usize = 8;

/// One instance of a listener's pipe and its `ConnectNamedPipe`.
struct Instance {
    /// (taken out by `into_handle`)
    handle: Option<OwnedHandle>,
    /// Boxed: the kernel writes to it until the operation ends (cancelled and waited for on
    /// drop, before the handle closes).
    ov: Box<OVERLAPPED>,
    running: bool,
    connected: bool,
}

// SAFETY: the OVERLAPPED is only touched through `&mut self` and drop; handles may be used from
// any thread.
unsafe impl Send for Instance {}

impl Instance {
    /// A fresh instance, waiting for a client; its completion signals `event`.
    fn new(name: &[u16], first: bool, event: HANDLE) -> io::Result<Instance> {
        let handle = create_instance(name, PIPE_ACCESS_DUPLEX, first, PIPE_UNLIMITED_INSTANCES)?;
        let h = handle.as_raw_handle() as HANDLE;
        let mut i = Instance {
            handle: Some(handle),
            ov: Box::new(zeroed_overlapped(event)),
            running: false,
            connected: false,
        };
        // SAFETY: `ov` is boxed and outlives the operation (see `Drop`).
        let ok = unsafe { ConnectNamedPipe(h, &mut *i.ov) };
        // SAFETY: GetLastError is always safe.
        match unsafe { GetLastError() } {
            _ if ok != 0 => i.connected = true,
            ERROR_IO_PENDING => i.running = true,
            // a client connected before we asked (and may have left already: ERROR_NO_DATA,
            // which its connection then reads as end of file)
            ERROR_PIPE_CONNECTED | ERROR_NO_DATA => i.connected = true,
            c => return Err(io::Error::from_raw_os_error(c as i32)),
        }
        Ok(i)
    }

    /// Whether a client has connected (`Err`: the instance failed).
    fn poll(&mut self) -> Result<bool, u32> {
        if self.connected {
            return Ok(true);
        }
        if self.ov.Internal == STATUS_PENDING as usize {
            return Ok(false);
        }
        self.running = false;
        let Some(h) = &self.handle else {
            return Err(ERROR_PIPE_NOT_CONNECTED);
        };
        let mut n = 0u32;
        // SAFETY: the completed operation's OVERLAPPED; no wait.
        let ok = unsafe { GetOverlappedResult(h.as_raw_handle() as HANDLE, &*self.ov, &mut n, 0) };
        // SAFETY: GetLastError is always safe.
        match unsafe { GetLastError() } {
            _ if ok != 0 => {}
            ERROR_PIPE_CONNECTED | ERROR_NO_DATA => {}
            c => return Err(c),
        }
        self.connected = true;
        Ok(true)
    }

    /// The handle of an instance whose operation has completed.
    fn into_handle(mut self) -> OwnedHandle {
        self.running = false;
        self.handle
            .take()
            .expect("an instance holds its handle until into_handle")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let Some(h) = &self.handle else { return };
        if self.running && self.ov.Internal == STATUS_PENDING as usize {
            let h = h.as_raw_handle() as HANDLE;
            let mut n = 0u32;
            // SAFETY: cancel our own operation and wait until the kernel is done with `ov`.
            unsafe {
                CancelIoEx(h, &*self.ov);
                GetOverlappedResult(h, &*self.ov, &mut n, 1);
            }
            if !settled(&self.ov, Duration::from_secs(10)) {
                // never freed while the kernel may still write it: leaked instead
                tracing::warn!("a pipe instance's ConnectNamedPipe did not end in 10 s; leaked");
                let fresh = Box::new(zeroed_overlapped(std::ptr::null_mut()));
                Box::leak(std::mem::replace(&mut self.ov, fresh));
            }
        }
    }
}

/// The server side of a named-pipe [`Listener`](crate::Listener): [`BACKLOG`] instances always
/// wait for clients (`ConnectNamedPipe` under way), so a client never finds the name missing
/// between two accepts (CPython's `PipeListener` keeps one for that).
pub(crate) struct Server {
    name: Vec<u16>,
    display: String,
    /// Instances waiting for (or with) a client, oldest first.
    instances: Vec<Instance>,
    /// Signaled when any instance's `ConnectNamedPipe` completes (shared by all).
    event: OwnedHandle,
}

impl Server {
    /// Create the pipe `name`; an error (`AddrInUse`) if it exists already.
    pub(crate) fn bind(name: &str) -> io::Result<Server> {
        let w = wide(name);
        // FILE_FLAG_FIRST_PIPE_INSTANCE refuses a name in use; Wine ignores it, so look first
        // (without connecting) too: a pipe that exists answers, even when busy, with anything
        // but "not found".
        // SAFETY: `w` is NUL-terminated UTF-16; waits at most 1 ms.
        let exists = unsafe { WaitNamedPipeW(w.as_ptr(), 1) } != 0
            // SAFETY: GetLastError is always safe.
            || unsafe { GetLastError() } != ERROR_FILE_NOT_FOUND;
        if exists {
            return Err(in_use(&w));
        }
        let event = new_event()?;
        let ev = event.as_raw_handle() as HANDLE;
        let mut instances = vec![Instance::new(&w, true, ev)?];
        for _ in 1..BACKLOG {
            instances.push(Instance::new(&w, false, ev)?);
        }
        let s = Server {
            name: w,
            display: name.to_string(),
            instances,
            event,
        };
        s.rearm();
        Ok(s)
    }

    pub(crate) fn name(&self) -> &str {
        &self.display
    }

    /// What to wait on for a client: an event, signaled once one has connected.
    pub(crate) fn wait_handle(&self) -> RawHandle {
        self.event.as_raw_handle()
    }

    /// Signal the event if some instance has a client already (starting an operation may
    /// have reset it after another's completion set it).
    fn rearm(&self) {
        let any = self
            .instances
            .iter()
            .any(|i| i.connected || i.ov.Internal != STATUS_PENDING as usize);
        if any {
            // SAFETY: SetEvent on our own event.
            unsafe { SetEvent(self.event.as_raw_handle() as HANDLE) };
        }
    }

    /// An instance a client has connected to (`WouldBlock` if none has); a fresh instance takes
    /// its place.
    pub(crate) fn accept(&mut self) -> io::Result<OwnedHandle> {
        // (reset first: a completion after this sets it again)
        // SAFETY: ResetEvent on our own event.
        unsafe { ResetEvent(self.event.as_raw_handle() as HANDLE) };
        let mut found = None;
        let mut failed = None;
        for (k, i) in self.instances.iter_mut().enumerate() {
            match i.poll() {
                Ok(true) => {
                    found = Some(k);
                    break;
                }
                Ok(false) => {}
                Err(c) => {
                    failed = Some((k, c));
                    break;
                }
            }
        }
        let ev = self.event.as_raw_handle() as HANDLE;
        let r = match (found, failed) {
            (Some(k), _) => {
                let fresh = Instance::new(&self.name, false, ev)?;
                // (its operation has completed: nothing to cancel)
                Ok(std::mem::replace(&mut self.instances[k], fresh).into_handle())
            }
            (None, Some((k, c))) => {
                // this instance is unusable: a fresh one takes its place
                self.instances[k] = Instance::new(&self.name, false, ev)?;
                Err(io::Error::from_raw_os_error(c as i32))
            }
            (None, None) => Err(io::ErrorKind::WouldBlock.into()),
        };
        self.rearm();
        r
    }
}

/// A pipe instance under authentication: reads never wait (an empty pipe is `WouldBlock`),
/// writes are the handshake's few bytes, far below the pipe's buffer, so they never wait for
/// the peer either.
pub(crate) struct Stream(pub(crate) OwnedHandle);

impl Stream {
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let raw = self.0.as_raw_handle() as HANDLE;
        let want = match peek(raw) {
            Ok(0) => return Err(io::ErrorKind::WouldBlock.into()),
            Ok(n) => (n as usize).min(buf.len()),
            Err(c) if is_eof_code(c) || c == ERROR_NO_DATA => return Ok(0),
            Err(c) => return Err(io::Error::from_raw_os_error(c as i32)),
        };
        // SAFETY: `buf` is valid for `want` bytes; that many are waiting, so this does not wait.
        unsafe { read_raw(raw, buf.as_mut_ptr(), want as u32) }
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        write_raw(self.0.as_raw_handle() as HANDLE, buf)?;
        Ok(buf.len())
    }
}
