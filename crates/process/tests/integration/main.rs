//! Integration tests of multiproc-process: real child processes, real sockets, a real CPython.

multiproc_process::test_support!();

mod bootstrap;
mod bounded;
mod listener;
#[cfg(unix)] // LOCAL ONLY
mod process;
#[cfg(windows)] // raw Win32 pipes and handles
mod process_windows;
