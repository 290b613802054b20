//! There is no forkserver on Windows.

use std::io;
use std::os::windows::io::{BorrowedHandle, OwnedHandle, RawHandle};

pub(crate) struct Server;

impl Server {
    pub(crate) fn wait_handle(&self) -> RawHandle {
        std::ptr::null_mut()
    }

    pub(crate) fn is_dead(&self) -> bool {
        true
    }
}

pub(crate) fn reap_retired() {}

pub(crate) fn reap(_server: &Server) -> bool {
    true
}

pub(crate) fn start_child(
    _exe: &std::path::Path,
    _boot: &OwnedHandle,
) -> io::Result<(u32, OwnedHandle, std::sync::Arc<Server>)> {
    Err(super::unsupported())
}

pub(crate) fn send_nowait(_sock: BorrowedHandle<'_>, _data: &[u8]) -> io::Result<()> {
    Err(super::unsupported())
}

pub(crate) fn forget_client() {}

pub(crate) fn serve(
    _sock: OwnedHandle,
    _child: fn(OwnedHandle) -> !,
    _on_exit: fn(&OwnedHandle, i32),
) -> ! {
    super::exit_now(1)
}
