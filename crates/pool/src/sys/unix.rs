//! Unix: a crash (`SIGSEGV`, `SIGBUS`, ...) already ends the worker at once, with the signal
//! as its exit code.

/// Make a crash end this worker process at once, reported by its exit code. Nothing to do.
pub(crate) fn crashes_end_the_process() {}
