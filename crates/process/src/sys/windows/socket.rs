//! Winsock sockets (TCP connections and listeners): read and written with `recv`/`WSASend`,
//! closed with `closesocket` (by `OwnedSocket`), never treated as file handles.

use std::io;
use std::os::windows::io::{AsRawSocket, BorrowedSocket, RawHandle};
use std::sync::Once;

use windows_sys::Win32::Networking::WinSock::{
    getsockopt, recv, WSAGetLastError, WSAPoll, WSASend, WSAStartup, POLLWRNORM, SOCKET,
    SOCKET_ERROR, SOL_SOCKET, SO_ACCEPTCONN, SO_SNDBUF, SO_TYPE, WSABUF, WSADATA, WSAEWOULDBLOCK,
    WSAPOLLFD,
};

/// Start Winsock once for the process (reference-counted by Windows; std starts it too, but
/// only when it makes a socket itself, and `wait` may look at handles before that).
pub(crate) fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: WSAStartup writes into a zeroed WSADATA.
        let mut data: WSADATA = unsafe { std::mem::zeroed() };
        // SAFETY: as above; version 2.2.
        let r = unsafe { WSAStartup(0x202, &mut data) };
        if r != 0 {
            tracing::warn!("WSAStartup failed: {}", io::Error::from_raw_os_error(r));
        }
    });
}

fn wsa_error() -> io::Error {
    // SAFETY: always safe.
    io::Error::from_raw_os_error(unsafe { WSAGetLastError() })
}

fn int_opt(s: SOCKET, name: i32) -> Option<i32> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as i32;
    // SAFETY: getsockopt of an int-sized option into `v`, whose size `len` states. Any value
    // may be passed as `s`: one that names no socket is WSAENOTSOCK.
    let r = unsafe { getsockopt(s, SOL_SOCKET, name, (&mut v as *mut i32).cast(), &mut len) };
    (r == 0).then_some(v)
}

/// What a raw handle value is to Winsock: `None` if it is not a socket, else whether it is a
/// listening one.
pub(crate) fn classify(raw: RawHandle) -> Option<bool> {
    init();
    let s = raw as SOCKET;
    int_opt(s, SO_TYPE)?;
    Some(int_opt(s, SO_ACCEPTCONN).is_some_and(|v| v != 0))
}

/// A socket's raw value as the handle `wait` takes (a socket is a kernel handle).
pub(crate) fn raw(s: BorrowedSocket<'_>) -> RawHandle {
    s.as_raw_socket() as usize as RawHandle
}

/// Receive what is available (at least one byte, waiting for it on a blocking socket) into
/// `v`'s spare capacity, at most `max`; 0 at end of stream.
pub(crate) fn recv_into_spare(
    s: BorrowedSocket<'_>,
    v: &mut Vec<u8>,
    max: usize,
) -> io::Result<usize> {
    v.reserve(max);
    let spare = v.spare_capacity_mut();
    let len = spare.len().min(max).min(i32::MAX as usize) as i32;
    // SAFETY: `spare` is valid for `len` bytes of writes.
    let n = unsafe {
        recv(
            s.as_raw_socket() as SOCKET,
            spare.as_mut_ptr().cast(),
            len,
            0,
        )
    };
    if n == SOCKET_ERROR {
        return Err(wsa_error());
    }
    // SAFETY: recv initialized exactly `n` bytes after the old length.
    unsafe { v.set_len(v.len() + n as usize) };
    Ok(n as usize)
}

/// Send all of `bufs`, in order, gathered by `WSASend` (waiting for room if the socket was
/// made non-blocking).
pub(crate) fn send_all_vectored(s: BorrowedSocket<'_>, bufs: &[&[u8]]) -> io::Result<()> {
    let sock = s.as_raw_socket() as SOCKET;
    let mut wsa: Vec<WSABUF> = Vec::with_capacity(bufs.len());
    for b in bufs.iter().filter(|b| !b.is_empty()) {
        // (a piece over 4 GiB goes as several)
        for c in b.chunks(u32::MAX as usize) {
            wsa.push(WSABUF {
                len: c.len() as u32,
                buf: c.as_ptr() as *mut u8,
            });
        }
    }
    let mut first = 0;
    while first < wsa.len() {
        let cnt = (wsa.len() - first).min(1024) as u32;
        let mut sent = 0u32;
        // SAFETY: every WSABUF points into a live slice of `bufs` (advanced below within
        // bounds); no overlapped operation.
        let r = unsafe {
            WSASend(
                sock,
                wsa[first..].as_ptr(),
                cnt,
                &mut sent,
                0,
                std::ptr::null_mut(),
                None,
            )
        };
        if r == SOCKET_ERROR {
            // SAFETY: always safe.
            let code = unsafe { WSAGetLastError() };
            if code == WSAEWOULDBLOCK {
                wait_writable(sock)?;
                continue;
            }
            return Err(io::Error::from_raw_os_error(code));
        }
        let mut n = sent as usize;
        while n > 0 {
            let b = &mut wsa[first];
            if n >= b.len as usize {
                n -= b.len as usize;
                first += 1;
            } else {
                // SAFETY: n < len, so the advanced pointer stays inside the same slice.
                b.buf = unsafe { b.buf.add(n) };
                b.len -= n as u32;
                n = 0;
            }
        }
    }
    Ok(())
}

fn wait_writable(sock: SOCKET) -> io::Result<()> {
    let mut p = WSAPOLLFD {
        fd: sock,
        events: POLLWRNORM,
        revents: 0,
    };
    // SAFETY: one valid WSAPOLLFD.
    if unsafe { WSAPoll(&mut p, 1, -1) } == SOCKET_ERROR {
        return Err(wsa_error());
    }
    Ok(())
}

/// The socket's send buffer, as Winsock reports it.
pub(crate) fn send_buffer_size(s: BorrowedSocket<'_>) -> Option<usize> {
    int_opt(s.as_raw_socket() as SOCKET, SO_SNDBUF)
        .filter(|&v| v > 0)
        .map(|v| v as usize)
}
