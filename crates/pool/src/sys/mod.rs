//! The pool's few calls into the operating system (worker mode's signal handling).

#[cfg(all(unix, feature = "redis"))]
pub(crate) mod unix;
