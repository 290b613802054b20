//! Windows: a crash (an exception nothing handles: an access violation, a stack overflow once
//! Rust's handler has said so) would go to Windows Error Reporting, which may hold the process
//! for a dialog or a dump (Wine starts its debugger and ends the process with
//! `STATUS_DEBUGGER_INACTIVE` when it cannot attach), so the pool would wait for a worker
//! that has already failed. A pool worker ends itself instead, at once, with the exception's
//! code as its exit code: what a crash reports on Windows without those tools (`0xC0000005`,
//! an access violation, is −1073741819 as Python's exit code).
//!
//! Worker mode (the Redis backend) stops on Ctrl+C, Ctrl+Break and the console closing (a
//! console control handler sets the flag its loops look at).

use windows_sys::Win32::System::Diagnostics::Debug::{
    SetUnhandledExceptionFilter, EXCEPTION_CONTINUE_SEARCH, EXCEPTION_POINTERS,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};

/// Make a crash end this worker process at once, reported by its exit code: the process's
/// top-level exception filter (called for an exception no handler took, before error
/// reporting or a debugger) ends the process with the exception's code.
pub(crate) fn crashes_end_the_process() {
    // SAFETY: installs a filter function that stays valid for the life of the process; the
    // previous filter (none in a pool worker: Rust's runtime uses a vectored handler) is
    // dropped.
    unsafe { SetUnhandledExceptionFilter(Some(end_with_the_exception_code)) };
}

/// The top-level filter: end the process with the exception's code.
unsafe extern "system" fn end_with_the_exception_code(info: *const EXCEPTION_POINTERS) -> i32 {
    // SAFETY: Windows calls the filter with the pointers of the exception being dispatched
    // (both valid for the call); a null one is only read as "no record".
    let code = unsafe { info.as_ref().and_then(|i| i.ExceptionRecord.as_ref()) }
        .map_or(1, |r| r.ExceptionCode as u32);
    // SAFETY: ends this process (the pseudo-handle needs no closing); nothing runs after it.
    unsafe { TerminateProcess(GetCurrentProcess(), code) };
    EXCEPTION_CONTINUE_SEARCH
}

/// Worker mode: from now on Ctrl+C, Ctrl+Break, the console closing, logoff and shutdown set
/// the flag [`terminated`](super::terminated) reads instead of ending the process.
#[cfg(feature = "redis")]
pub(crate) fn catch_termination() {
    /// Runs on a thread Windows starts for the event; says it was handled (for a close,
    /// logoff or shutdown Windows ends the process once the handler returns).
    unsafe extern "system" fn on_event(_event: u32) -> windows_sys::Win32::Foundation::BOOL {
        super::set_terminated();
        1
    }
    // SAFETY: adds a handler function that stays valid for the life of the process.
    let ok =
        unsafe { windows_sys::Win32::System::Console::SetConsoleCtrlHandler(Some(on_event), 1) };
    if ok == 0 {
        tracing::warn!(
            "cannot catch console events: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// This host's name (for worker names in the workers set).
#[cfg(feature = "redis")]
pub(crate) fn hostname() -> String {
    std::env::var("COMPUTERNAME")
        .unwrap_or_else(|_| "host".into())
        .replace('|', "_")
}
