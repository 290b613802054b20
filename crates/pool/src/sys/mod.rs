//! Platform layer of multiproc-pool: what a worker process sets up about itself. Same names on
//! every platform, chosen here once.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
