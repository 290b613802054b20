//! Integration tests of multiproc-shm: shared memory used by real processes.
#![cfg(unix)]

multiproc_process::test_support!();

#[path = "../../../process/tests/integration/bounded.rs"]
mod bounded;
mod named;
mod values;
