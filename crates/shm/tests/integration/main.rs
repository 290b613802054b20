//! Integration tests of multiproc-shm: shared memory used by real processes.
#![cfg(unix)]

multiproc_process::test_support!();

mod named;
mod values;
