//! Windows implementation: not yet (typed `Unsupported` errors); compiles against the same names.

use std::io;
use std::os::windows::io::OwnedHandle;

use crate::ShmError;

mod futex;
pub(crate) use futex::{futex_wait, futex_wait_low, futex_wake, futex_wake_low};

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "shared memory is not yet implemented on Windows",
    )
}

pub(crate) fn anon_fd(_len: usize) -> io::Result<OwnedHandle> {
    Err(unsupported())
}

pub(crate) fn open(_name: &str, _create: bool) -> Result<OwnedHandle, ShmError> {
    Err(ShmError::Unsupported("named shared memory"))
}

pub(crate) fn create_named(_name: &str, _len: usize) -> Result<OwnedHandle, ShmError> {
    Err(ShmError::Unsupported("named shared memory"))
}

pub(crate) fn unlink(_name: &str) -> Result<(), ShmError> {
    Err(ShmError::Unsupported("named shared memory"))
}

pub(crate) fn size_of(_h: &OwnedHandle) -> io::Result<usize> {
    Err(unsupported())
}

/// Stand-in for the registry of shared views (until it lands): no address is shared.
pub(crate) fn mapping_of(_addr: usize) -> Option<(std::sync::Arc<str>, usize)> {
    None
}

/// The pid alone (no start time yet on Windows).
pub(crate) fn identity() -> u64 {
    u64::from(std::process::id())
}

pub(crate) fn identity_alive(_id: u64) -> bool {
    true
}

pub(crate) fn pid_exists(_pid: u32) -> bool {
    true
}

/// Named segments vanish with their last handle on Windows: nothing to track.
pub(crate) fn tracker_register(_os_name: &str) {}

/// See [`tracker_register`].
pub(crate) fn tracker_forget(_os_name: &str) {}
