//! Platform layer. Everything that talks to the OS directly lives below here; the rest of the
//! crate sees one set of functions with the same names on every platform.
//!
//! Contract: every handle returned is close-on-exec / non-inheritable unless the function says
//! otherwise; reads and writes retry on `EINTR`; timeouts are `Option<Duration>` (None = forever).

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
