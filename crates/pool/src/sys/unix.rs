//! Unix: a crash (`SIGSEGV`, `SIGBUS`, ...) already ends the worker at once, with the signal
//! as its exit code; in the Redis backend's worker mode, SIGTERM and SIGINT end it gracefully
//! (a flag the loops look at).

/// Make a crash end this worker process at once, reported by its exit code. Nothing to do.
pub(crate) fn crashes_end_the_process() {}

#[cfg(feature = "redis")]
extern "C" fn on_signal(_: libc::c_int) {
    // (an atomic store is async-signal-safe)
    super::set_terminated();
}

/// Worker mode: from now on SIGTERM and SIGINT set the flag [`terminated`](super::terminated)
/// reads instead of ending the process.
#[cfg(feature = "redis")]
pub(crate) fn catch_termination() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed `sigaction` is a valid empty one; the handler only stores to an
        // atomic, which is async-signal-safe; `sigaction` is given valid pointers.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                tracing::warn!(
                    "cannot catch signal {sig}: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// This host's name (for worker names in the workers set).
#[cfg(feature = "redis")]
pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end])
        .chars()
        .map(|c| if c == '|' { '_' } else { c })
        .collect()
}
