//! There is no forkserver on Windows.

use std::io;
use std::os::windows::io::OwnedHandle;

pub(crate) fn start_child(
    _exe: &std::path::Path,
    _boot: &OwnedHandle,
) -> io::Result<(u32, OwnedHandle)> {
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
