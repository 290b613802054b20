//! Windows implementation: pagefile-backed sections and their views ([`mapping`]), the
//! registry of live views the futex names its kernel objects after ([`registry`]), process
//! identities ([`identity`]).

use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use crate::ShmError;

mod identity;
mod mapping;
mod registry;
pub(crate) use identity::{alive as identity_alive, me as identity, pid_exists};
pub(crate) use mapping::View;
#[allow(unused_imports)] // (the futex uses it)
pub(crate) use registry::mapping_of;

/// Named sections have no name to remove on Windows: a section lives while a handle to it or
/// a view of it is open, and goes with the last. Unlinking is the documented no-op (as in
/// CPython).
pub(crate) fn unlink(_name: &str) -> Result<(), ShmError> {
    Ok(())
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

/// Named segments vanish with their last handle on Windows: nothing to track.
pub(crate) fn tracker_register(_os_name: &str) {}

/// See [`tracker_register`].
pub(crate) fn tracker_forget(_os_name: &str) {}
