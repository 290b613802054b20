//! Waiting until some of many handles are ready: pipes, sockets and waitable objects (process
//! handles, events), in any number and mix.
//!
//! Each call first checks every handle without waiting (`PeekNamedPipe` for a pipe, one
//! `WSAPoll` for the sockets, `WaitForSingleObject(0)` for an object). If none is ready it arms
//! one event per handle, waits for any of them, disarms, and checks again:
//!
//! * a pipe opened for overlapped I/O: an overlapped zero-byte `ReadFile`, which completes when
//!   data or end of file is there and takes nothing (a pipe opened without it cannot be waited
//!   on so: it is looked at again every [`TICK`]);
//! * a connected socket: an overlapped zero-byte `WSARecv`, the same for a socket; a listening
//!   socket, or one waited on for room to write: `WSAEventSelect` (which leaves it non-blocking:
//!   only the listener, whose sockets are, waits so);
//! * an object: itself.
//!
//! `WaitForMultipleObjects` takes at most 64 handles; beyond that, one helper thread waits on
//! each further batch of 63 and wakes the caller through a shared event, so any number of
//! handles works (CPython's `wait` is limited to 63).

use std::io;
use std::os::windows::io::{AsRawHandle, OwnedHandle, RawHandle};
use std::time::{Duration, Instant};

use windows_sys::Wdk::Storage::FileSystem::{
    FileModeInformation, NtQueryInformationFile, FILE_MODE_INFORMATION, FILE_SYNCHRONOUS_IO_ALERT,
    FILE_SYNCHRONOUS_IO_NONALERT,
};
use windows_sys::Win32::Foundation::{HANDLE, WAIT_FAILED, WAIT_OBJECT_0};
use windows_sys::Win32::Networking::WinSock::{
    WSAEventSelect, WSAGetLastError, WSAPoll, WSARecv, FD_ACCEPT, FD_CLOSE, FD_READ, FD_WRITE,
    POLLRDNORM, POLLWRNORM, SOCKET, SOCKET_ERROR, WSABUF, WSAPOLLFD, WSA_IO_PENDING,
};
use windows_sys::Win32::Storage::FileSystem::{GetFileType, FILE_TYPE_PIPE, FILE_TYPE_UNKNOWN};
use windows_sys::Win32::System::Threading::{
    SetEvent, WaitForMultipleObjects, WaitForSingleObject, INFINITE,
};
use windows_sys::Win32::System::IO::IO_STATUS_BLOCK;

use super::pipe::{self, Pending};
use super::socket;

/// How often a handle that cannot be waited on is looked at again.
const TICK: Duration = Duration::from_millis(5);
/// How often a socket armed with `WSAEventSelect` is looked at again anyway: its write event
/// is recorded only after a send met a full buffer, so room that appeared between the check
/// and the arming may never signal (a later check finds it). Rare, so the tick is long.
const SELECT_TICK: Duration = Duration::from_millis(200);

/// What a caller waits for on a handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    /// Data or end of file (a pipe or socket), a connection to accept (a listening socket),
    /// signaled (an object).
    Read,
    /// Room to write (a socket; a pipe always counts as writable).
    Write,
}

/// What a handle is.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// (whether it was opened for overlapped I/O is asked only when it must be waited on)
    Pipe,
    Socket {
        listening: bool,
    },
    /// A waitable kernel object: a process, a thread, an event.
    Object,
    /// A file or a console: always ready, as `poll` says of regular files.
    Always,
}

fn classify(raw: RawHandle) -> Kind {
    if let Some(listening) = socket::classify(raw) {
        return Kind::Socket { listening };
    }
    // SAFETY: GetFileType accepts any handle value.
    match unsafe { GetFileType(raw as HANDLE) } {
        FILE_TYPE_PIPE => Kind::Pipe,
        FILE_TYPE_UNKNOWN => Kind::Object,
        _ => Kind::Always,
    }
}

/// Whether the file `raw` was opened for overlapped I/O (its mode has no synchronous flag).
fn is_overlapped(raw: RawHandle) -> bool {
    let mut info = FILE_MODE_INFORMATION { Mode: 0 };
    // SAFETY: a zeroed IO_STATUS_BLOCK is valid output space.
    let mut iosb: IO_STATUS_BLOCK = unsafe { std::mem::zeroed() };
    // SAFETY: NtQueryInformationFile writes one FILE_MODE_INFORMATION into `info`.
    let status = unsafe {
        NtQueryInformationFile(
            raw as HANDLE,
            &mut iosb,
            (&mut info as *mut FILE_MODE_INFORMATION).cast(),
            std::mem::size_of::<FILE_MODE_INFORMATION>() as u32,
            FileModeInformation,
        )
    };
    status >= 0 && info.Mode & (FILE_SYNCHRONOUS_IO_ALERT | FILE_SYNCHRONOUS_IO_NONALERT) == 0
}

/// Which of `entries` are ready now.
fn check_now(entries: &[(RawHandle, Interest)], kinds: &[Kind]) -> io::Result<Vec<bool>> {
    let mut ready = vec![false; entries.len()];
    let mut socks: Vec<(usize, WSAPOLLFD)> = Vec::new();
    for (i, (&(raw, interest), kind)) in entries.iter().zip(kinds).enumerate() {
        ready[i] = match (kind, interest) {
            (Kind::Pipe, Interest::Write) | (Kind::Always, _) => true,
            // data, or an error (the other end gone) that the reader will see
            (Kind::Pipe, Interest::Read) => pipe::peek(raw as HANDLE).map_or(true, |n| n > 0),
            (Kind::Object, _) => {
                // SAFETY: a zero-timeout wait on a handle value the caller holds open.
                let r = unsafe { WaitForSingleObject(raw as HANDLE, 0) };
                r == WAIT_OBJECT_0 || r == WAIT_FAILED
            }
            (Kind::Socket { .. }, _) => {
                socks.push((
                    i,
                    WSAPOLLFD {
                        fd: raw as SOCKET,
                        events: if interest == Interest::Write {
                            POLLWRNORM
                        } else {
                            POLLRDNORM
                        },
                        revents: 0,
                    },
                ));
                false
            }
        };
    }
    if !socks.is_empty() {
        let mut fds: Vec<WSAPOLLFD> = socks.iter().map(|(_, p)| *p).collect();
        // SAFETY: `fds` is a valid array of `fds.len()` WSAPOLLFD structs; no waiting.
        if unsafe { WSAPoll(fds.as_mut_ptr(), fds.len() as u32, 0) } == SOCKET_ERROR {
            // SAFETY: always safe.
            return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
        }
        for ((i, _), p) in socks.iter().zip(&fds) {
            ready[*i] = p.revents != 0;
        }
    }
    Ok(ready)
}

/// What was armed for one handle.
enum Armed {
    /// An overlapped zero-byte read (its event is signaled on completion).
    Op(Pending),
    /// A socket associated with an event by `WSAEventSelect` (undone on drop).
    Select(SOCKET, OwnedHandle),
}

impl Armed {
    fn event(&self) -> HANDLE {
        match self {
            Armed::Op(p) => p.event.as_raw_handle() as HANDLE,
            Armed::Select(_, e) => e.as_raw_handle() as HANDLE,
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if let Armed::Select(s, _) = self {
            // SAFETY: ends the association made when armed (the socket stays non-blocking).
            unsafe { WSAEventSelect(*s, 0, 0) };
        }
    }
}

/// An overlapped zero-byte `WSARecv` on the connected socket `s`: `Ok(true)` if it completed
/// at once (ready).
fn zero_recv(p: &mut Pending, s: SOCKET) -> io::Result<bool> {
    let mut byte = 0u8;
    let buf = WSABUF {
        len: 0,
        buf: &mut byte,
    };
    let mut flags = 0u32;
    // SAFETY: a zero-length buffer at a valid address; `p.ov` is boxed and outlives the
    // operation (cancelled and waited for when `p` drops).
    let r = unsafe {
        WSARecv(
            s,
            &buf,
            1,
            std::ptr::null_mut(),
            &mut flags,
            &mut *p.ov,
            None,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    // SAFETY: always safe.
    if unsafe { WSAGetLastError() } == WSA_IO_PENDING {
        p.running = true;
        return Ok(false);
    }
    // failed at once (reset, shut down): ready, the reader sees the error
    Ok(true)
}

/// Arm one handle that was not ready. `Ok(None)`: cannot be waited on (look again each tick);
/// `Err(())` inside: completed at once.
fn arm(raw: RawHandle, interest: Interest, kind: Kind) -> io::Result<Result<Option<Armed>, ()>> {
    match (kind, interest) {
        (Kind::Pipe, Interest::Read) if is_overlapped(raw) => {
            let mut p = Pending::new(raw as HANDLE)?;
            if p.start_zero_read()? {
                return Ok(Err(()));
            }
            Ok(Ok(Some(Armed::Op(p))))
        }
        (Kind::Pipe, _) => Ok(Ok(None)),
        (Kind::Socket { listening: false }, Interest::Read) => {
            let mut p = Pending::new(raw as HANDLE)?;
            if zero_recv(&mut p, raw as SOCKET)? {
                return Ok(Err(()));
            }
            Ok(Ok(Some(Armed::Op(p))))
        }
        (Kind::Socket { .. }, _) => {
            let ev = pipe::new_event()?;
            let events = match interest {
                Interest::Read => FD_ACCEPT | FD_READ | FD_CLOSE,
                Interest::Write => FD_WRITE | FD_CLOSE,
            };
            // SAFETY: associates our event with the socket; undone when the Armed drops.
            let r = unsafe {
                WSAEventSelect(raw as SOCKET, ev.as_raw_handle() as isize, events as i32)
            };
            if r == SOCKET_ERROR {
                // SAFETY: always safe.
                return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
            }
            Ok(Ok(Some(Armed::Select(raw as SOCKET, ev))))
        }
        // (never armed: an object is waited on as it is, `Always` is ready)
        (Kind::Object | Kind::Always, _) => Ok(Ok(None)),
    }
}

/// Wait until any of `handles` is signaled or `ms` pass. More than 64: helper threads, one per
/// further batch of 63, each waking the caller through a shared event.
fn wait_any(handles: &[HANDLE], ms: u32) -> io::Result<()> {
    const MAX: usize = 64;
    let wfmo = |hs: &[HANDLE], ms: u32| -> io::Result<u32> {
        // SAFETY: `hs` is a valid array of at most 64 open handles, no duplicates.
        let r = unsafe { WaitForMultipleObjects(hs.len() as u32, hs.as_ptr(), 0, ms) };
        if r == WAIT_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(r)
    };
    if handles.is_empty() {
        // (only handles that are looked at each tick: nothing to wait on but the time)
        if ms != INFINITE {
            std::thread::sleep(Duration::from_millis(ms.into()));
        }
        return Ok(());
    }
    if handles.len() <= MAX {
        wfmo(handles, ms)?;
        return Ok(());
    }
    let wake = pipe::new_event()?;
    let wake_raw = wake.as_raw_handle() as usize;
    std::thread::scope(|scope| -> io::Result<()> {
        let mut helpers = Vec::new();
        for chunk in handles[MAX - 1..].chunks(MAX - 1) {
            let batch: Vec<usize> = std::iter::once(wake_raw)
                .chain(chunk.iter().map(|&h| h as usize))
                .collect();
            helpers.push(scope.spawn(move || -> io::Result<()> {
                let hs: Vec<HANDLE> = batch.iter().map(|&h| h as HANDLE).collect();
                let r = wfmo(&hs, INFINITE);
                // one of ours is signaled (or the wait failed): wake everybody
                // SAFETY: SetEvent on the shared event, open until the scope ends.
                unsafe { SetEvent(wake_raw as HANDLE) };
                r.map(|_| ())
            }));
        }
        let mut hs: Vec<HANDLE> = handles[..MAX - 1].to_vec();
        hs.push(wake_raw as HANDLE);
        let r = wfmo(&hs, ms);
        // SAFETY: as above: releases the helpers.
        unsafe { SetEvent(wake_raw as HANDLE) };
        let mut out = r.map(|_| ());
        for h in helpers {
            let joined = h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a wait helper thread panicked")));
            if out.is_ok() {
                out = joined;
            }
        }
        out
    })
}

/// Milliseconds for a wait of `d`, rounded up (never returning early), below `INFINITE`.
fn millis(d: Duration) -> u32 {
    d.as_micros().div_ceil(1000).min(INFINITE as u128 - 1) as u32
}

/// Wait until some of `entries` are ready; a flag per entry. `None` waits forever; a zero
/// timeout only checks.
pub(crate) fn poll(
    entries: &[(RawHandle, Interest)],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    if entries.is_empty() {
        // nothing can become ready: wait out a bound, never forever
        if let Some(t) = timeout {
            std::thread::sleep(t);
        }
        return Ok(Vec::new());
    }
    let kinds: Vec<Kind> = entries.iter().map(|&(h, _)| classify(h)).collect();
    // (a timeout too long to represent waits forever)
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let ready = check_now(entries, &kinds)?;
        if ready.iter().any(|&r| r) {
            return Ok(ready);
        }
        let left = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(ready);
                }
                Some(left)
            }
            None => None,
        };
        let mut armed = Vec::new();
        let mut handles: Vec<HANDLE> = Vec::new();
        let mut tick: Option<Duration> = None;
        let mut at_once = false;
        for (&(raw, interest), &kind) in entries.iter().zip(&kinds) {
            if let Kind::Object = kind {
                handles.push(raw as HANDLE);
                continue;
            }
            match arm(raw, interest, kind)? {
                Err(()) => {
                    at_once = true;
                    break;
                }
                Ok(None) => tick = Some(tick.map_or(TICK, |t| t.min(TICK))),
                Ok(Some(a)) => {
                    if let Armed::Select(..) = a {
                        tick = Some(tick.map_or(SELECT_TICK, |t| t.min(SELECT_TICK)));
                    }
                    handles.push(a.event());
                    armed.push(a);
                }
            }
        }
        if !at_once {
            let wait = match (left, tick) {
                (Some(l), Some(t)) => l.min(t),
                (Some(l), None) => l,
                (None, Some(t)) => t,
                (None, None) => Duration::MAX,
            };
            let ms = if wait == Duration::MAX {
                INFINITE
            } else {
                millis(wait)
            };
            // the same object twice is an error to WaitForMultipleObjects
            handles.sort_unstable();
            handles.dedup();
            wait_any(&handles, ms)?;
        }
        // cancel what is still running (and wait for it) before looking again
        drop(armed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind of handle is recognized, so that it is waited on (not looked at each tick).
    #[test]
    fn handles_are_classified() {
        let (r, w) = super::super::pipe().unwrap();
        for h in [&r, &w] {
            assert!(matches!(classify(h.as_raw_handle()), Kind::Pipe));
            assert!(is_overlapped(h.as_raw_handle()));
        }
        // a pipe opened for synchronous I/O is told apart (it is looked at each tick)
        let (sr, _sw) = std::io::pipe().unwrap();
        assert!(matches!(classify(sr.as_raw_handle()), Kind::Pipe));
        assert!(!is_overlapped(sr.as_raw_handle()));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let raw =
            |s: &dyn std::os::windows::io::AsRawSocket| s.as_raw_socket() as usize as RawHandle;
        assert!(matches!(
            classify(raw(&l)),
            Kind::Socket { listening: true }
        ));
        assert!(matches!(
            classify(raw(&c)),
            Kind::Socket { listening: false }
        ));
        let ev = pipe::new_event().unwrap();
        assert!(matches!(classify(ev.as_raw_handle()), Kind::Object));
    }

    /// A pipe opened for synchronous I/O (as std makes them) is waited on too, by looking.
    #[test]
    fn a_synchronous_pipe_is_waited_on_by_looking() {
        use std::io::Write;
        let (r, mut w) = std::io::pipe().unwrap();
        let e = [(r.as_raw_handle(), Interest::Read)];
        assert_eq!(poll(&e, Some(Duration::from_millis(20))).unwrap(), [false]);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            w.write_all(b"x").unwrap();
            w
        });
        assert_eq!(poll(&e, Some(Duration::from_secs(20))).unwrap(), [true]);
        drop(t.join().unwrap());
    }

    /// Readiness of each kind, and waiting with a bound on all of them at once.
    #[test]
    fn readiness_of_each_kind() {
        use std::io::Write;
        let (r, w) = super::super::pipe().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let ev = pipe::new_event().unwrap();
        let sraw = std::os::windows::io::AsRawSocket::as_raw_socket(&s) as usize as RawHandle;
        let lraw = std::os::windows::io::AsRawSocket::as_raw_socket(&l) as usize as RawHandle;
        let all = [
            (r.as_raw_handle(), Interest::Read),
            (sraw, Interest::Read),
            (lraw, Interest::Read),
            (ev.as_raw_handle(), Interest::Read),
        ];
        let none = poll(&all, Some(Duration::from_millis(30))).unwrap();
        assert_eq!(none, [false; 4]);
        // a connected socket and a pipe are always writable here
        let wr = poll(
            &[
                (w.as_raw_handle(), Interest::Write),
                (sraw, Interest::Write),
            ],
            None,
        );
        assert_eq!(wr.unwrap(), [true, true]);
        super::super::write_all_vectored(std::os::windows::io::AsHandle::as_handle(&w), &[b"x"])
            .unwrap();
        c.write_all(b"y").unwrap();
        let _c2 = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        // SAFETY: our event.
        unsafe { SetEvent(ev.as_raw_handle() as HANDLE) };
        let start = Instant::now();
        let mut got = [false; 4];
        while got != [true; 4] && start.elapsed() < Duration::from_secs(20) {
            let r = poll(&all, Some(Duration::from_secs(20))).unwrap();
            for (g, r) in got.iter_mut().zip(r) {
                *g |= r;
            }
        }
        assert_eq!(got, [true; 4]);
        // end of file is ready too
        drop(w);
        drop(c);
        let mut v = Vec::new();
        super::super::read_into_spare(std::os::windows::io::AsHandle::as_handle(&r), &mut v, 8)
            .unwrap();
        let r2 = poll(&all[..1], Some(Duration::from_secs(20))).unwrap();
        assert_eq!(r2, [true]);
    }
}
