//! What a [`Connection`](super::Connection) reads and writes: a pipe or a Unix socket (a file
//! handle), or, on Windows, a Winsock socket, which the OS's file calls must never be given
//! (it is read with `recv`, written with `WSASend`, closed with `closesocket`).

use std::io;

use multiproc_pickle::OsHandle;

use crate::sys;

/// One direction's OS object.
pub(crate) enum Endpoint {
    /// A pipe, or a socket on Unix.
    Handle(OsHandle),
    /// A TCP socket on Windows, shared by both directions of its connection (it closes when
    /// both are gone).
    #[cfg(windows)]
    Socket(std::sync::Arc<std::os::windows::io::OwnedSocket>),
}

impl Endpoint {
    /// The value `wait` and `poll` take.
    pub(crate) fn raw(&self) -> sys::RawWait {
        match self {
            Endpoint::Handle(h) => sys::raw(sys::borrow(h)),
            #[cfg(windows)]
            Endpoint::Socket(s) => {
                sys::socket::raw(std::os::windows::io::AsSocket::as_socket(&**s))
            }
        }
    }

    /// The file handle, if this is one (not a Windows socket).
    pub(crate) fn handle(&self) -> Option<&OsHandle> {
        match self {
            Endpoint::Handle(h) => Some(h),
            #[cfg(windows)]
            Endpoint::Socket(_) => None,
        }
    }

    /// Read what is available (waiting for at least one byte) into `v`'s spare capacity, at
    /// most `max`; 0 at end of file.
    pub(crate) fn read_into_spare(&self, v: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        match self {
            Endpoint::Handle(h) => sys::read_into_spare(sys::borrow(h), v, max),
            #[cfg(windows)]
            Endpoint::Socket(s) => sys::socket::recv_into_spare(
                std::os::windows::io::AsSocket::as_socket(&**s),
                v,
                max,
            ),
        }
    }

    /// Write all of `bufs`, in order.
    pub(crate) fn write_all_vectored(&self, bufs: &[&[u8]]) -> io::Result<()> {
        match self {
            Endpoint::Handle(h) => sys::write_all_vectored(sys::borrow(h), bufs),
            #[cfg(windows)]
            Endpoint::Socket(s) => sys::socket::send_all_vectored(
                std::os::windows::io::AsSocket::as_socket(&**s),
                bufs,
            ),
        }
    }

    /// The OS buffer for what is sent here.
    pub(crate) fn send_buffer_size(&self) -> Option<usize> {
        match self {
            Endpoint::Handle(h) => sys::send_buffer_size(sys::borrow(h)),
            #[cfg(windows)]
            Endpoint::Socket(s) => {
                sys::socket::send_buffer_size(std::os::windows::io::AsSocket::as_socket(&**s))
            }
        }
    }

    /// Put the handle in (or take it out of) the registry of handles a forked child releases.
    pub(crate) fn set_tracked(&self, yes: bool) {
        if let Some(h) = self.handle() {
            if yes {
                sys::track_inheritable(sys::borrow(h));
            } else {
                sys::untrack_inheritable(sys::borrow(h));
            }
        }
    }
}
