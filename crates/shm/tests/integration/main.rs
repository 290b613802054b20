//! Integration tests of multiproc-shm: shared memory used by real processes, with every start
//! method this platform has (spawn only on Windows).

multiproc_process::test_support!();

#[path = "../../../process/tests/integration/bounded.rs"]
mod bounded;
mod identity;
mod named;
mod segment;
mod values;
