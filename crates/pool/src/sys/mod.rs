//! Platform layer of multiproc-pool: what a worker process sets up about itself (how a crash
//! ends it; on Unix, worker mode's signal handling). Same names on every platform, chosen here
//! once.

#[cfg(unix)]
pub(crate) mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
