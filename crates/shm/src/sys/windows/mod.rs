//! Windows implementation: pagefile-backed sections and their views ([`mapping`]), the
//! registry of live views the futex names its kernel objects after ([`registry`]), process
//! identities ([`identity`]), waiting on shared words ([`futex`]).

use crate::ShmError;

mod futex;
mod identity;
mod mapping;
mod registry;
pub(crate) use futex::{futex_wait, futex_wait_low, futex_wake, futex_wake_low};
pub(crate) use identity::{alive as identity_alive, me as identity, pid_exists};
pub(crate) use mapping::View;
pub(crate) use registry::mapping_of;

/// Named sections have no name to remove on Windows: a section lives while a handle to it or
/// a view of it is open, and goes with the last. Unlinking is the documented no-op (as in
/// CPython).
pub(crate) fn unlink(_name: &str) -> Result<(), ShmError> {
    Ok(())
}

/// Named segments vanish with their last handle on Windows: nothing to track.
pub(crate) fn tracker_register(_os_name: &str) {}

/// See [`tracker_register`].
pub(crate) fn tracker_forget(_os_name: &str) {}
