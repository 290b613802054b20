//! Child processes on Windows: not yet implemented (`Unsupported`).

use std::io;
use std::os::windows::io::{BorrowedHandle, OwnedHandle};
use std::path::Path;

pub(crate) const BOOTSTRAP_ENV: &str = "MULTIPROC_BOOTSTRAP";
pub(crate) const FORKSERVER_ENV: &str = "MULTIPROC_FORKSERVER";
pub(crate) const CHILD_ARG: &str = "--multiproc-child";
pub(crate) const SIGTERM: i32 = 15;
pub(crate) const SIGKILL: i32 = 9;

pub(crate) fn unsupported() -> io::Error {
    super::unsupported()
}

pub(crate) fn spawn_exe(_exe: &Path, _env: &str, _h: &OwnedHandle) -> io::Result<u32> {
    Err(unsupported())
}

/// # Safety
/// Never called on Windows (fork does not exist); present so callers compile.
pub(crate) unsafe fn fork(_child: impl FnOnce()) -> io::Result<u32> {
    Err(unsupported())
}

pub(crate) fn pidfd_for_new_child(_pid: u32) -> io::Result<OwnedHandle> {
    Err(unsupported())
}

pub(crate) fn send_signal(_h: BorrowedHandle<'_>, _sig: i32) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn waitpid(_pid: u32, _block: bool) -> io::Result<Option<i32>> {
    Err(unsupported())
}

pub(crate) fn die_with_parent(_boot: BorrowedHandle<'_>) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn stop_dying_with_parent(_boot: BorrowedHandle<'_>) {}

pub(crate) fn at_exit_with_status(_f: extern "C" fn(i32, *mut std::ffi::c_void)) -> bool {
    false
}
