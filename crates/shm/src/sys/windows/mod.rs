//! Windows implementation: not yet (typed `Unsupported` errors); compiles against the same names.

use std::io;
use std::os::windows::io::OwnedHandle;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use crate::ShmError;

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

pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    let step = Duration::from_micros(200);
    std::thread::sleep(timeout.map_or(step, |t| t.min(step)));
    !(timeout.is_some_and(|to| to <= step)
        && word.load(std::sync::atomic::Ordering::Acquire) == expected)
}

pub(crate) fn futex_wake(_word: &AtomicU32, _n: u32) -> usize {
    0
}

pub(crate) fn futex_wait_low(word: &AtomicU64, expected: u32, timeout: Option<Duration>) -> bool {
    let step = Duration::from_micros(200);
    std::thread::sleep(timeout.map_or(step, |t| t.min(step)));
    !(timeout.is_some_and(|to| to <= step)
        && word.load(std::sync::atomic::Ordering::Acquire) as u32 == expected)
}

pub(crate) fn futex_wake_low(_word: &AtomicU64, _n: u32) -> usize {
    0
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
