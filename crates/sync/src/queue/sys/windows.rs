//! Windows: no side channel yet (shared memory itself is not there yet either); every call is
//! `Unsupported`.

use std::io;

use multiproc_pickle::OsHandle;

fn unsupported<T>() -> io::Result<T> {
    Err(io::ErrorKind::Unsupported.into())
}

/// See the Unix version.
pub(in crate::queue) fn socket_pair() -> io::Result<(OsHandle, OsHandle)> {
    unsupported()
}

/// See the Unix version.
pub(in crate::queue) fn send_with_handles(
    _sock: &OsHandle,
    _data: &[u8],
    _handles: &[std::os::windows::io::BorrowedHandle<'_>],
) -> io::Result<bool> {
    unsupported()
}

/// See the Unix version.
pub(in crate::queue) fn recv_with_handles(
    _sock: &OsHandle,
    _buf: &mut [u8],
    _peek: bool,
) -> io::Result<Option<(usize, Vec<OsHandle>)>> {
    unsupported()
}

/// See the Unix version.
pub(in crate::queue) fn borrow(h: &OsHandle) -> std::os::windows::io::BorrowedHandle<'_> {
    use std::os::windows::io::AsHandle;
    h.as_handle()
}

/// See the Unix version.
pub(in crate::queue) fn memory_file(_parts: &[&[u8]]) -> io::Result<OsHandle> {
    unsupported()
}

/// See the Unix version.
pub(in crate::queue) struct Mapping;

impl Mapping {
    /// See the Unix version.
    pub(in crate::queue) fn new(_file: &OsHandle, _len: usize) -> io::Result<Mapping> {
        unsupported()
    }

    /// See the Unix version.
    pub(in crate::queue) fn bytes(&self) -> &[u8] {
        &[]
    }
}
