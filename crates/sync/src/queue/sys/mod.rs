//! Platform layer of the queues' side channel (items too big for the ring): a socket pair that
//! carries memory files with their descriptors, the memory files themselves and read-only
//! mappings of them. Same names on every platform, chosen here once.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(super) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(super) use windows::*;
