//! Platform layer of multiproc-pool: what a worker process sets up about itself (how a crash
//! ends it; worker mode's Unix signals or Windows console events, and the host's name). Same
//! names on every platform, chosen here once.

#[cfg(unix)]
pub(crate) mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;

#[cfg(feature = "redis")]
static TERMINATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Note that worker mode was asked to stop (from a signal handler or a console control
/// handler: an atomic store, async-signal-safe).
#[cfg(feature = "redis")]
pub(crate) fn set_terminated() {
    TERMINATED.store(true, std::sync::atomic::Ordering::Release);
}

/// Whether worker mode was asked to stop (SIGTERM or SIGINT; Ctrl+C, Ctrl+Break or the
/// console closing on Windows), after `catch_termination`.
#[cfg(feature = "redis")]
pub(crate) fn terminated() -> bool {
    TERMINATED.load(std::sync::atomic::Ordering::Acquire)
}
