//! Platform layer of multiproc-shm: creating and opening shared memory objects, futex wait/wake,
//! process liveness. Same names on every platform, chosen here once.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
