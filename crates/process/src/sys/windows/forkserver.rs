//! There is no forkserver on Windows (as in Python): `StartMethod::Forkserver` is not among
//! the available methods, so starting with it is `Error::StartMethodUnavailable` and no
//! [`Server`] is ever made. What is here lets the code that handles forkserver children (on
//! Unix) compile unchanged.

use std::os::windows::io::RawHandle;

/// A forkserver (never made on Windows).
pub(crate) struct Server;

impl Server {
    pub(crate) fn wait_handle(&self) -> RawHandle {
        std::ptr::null_mut()
    }

    pub(crate) fn is_dead(&self) -> bool {
        true
    }
}

pub(crate) fn reap_retired() {}

pub(crate) fn reap(_server: &Server) -> bool {
    true
}
