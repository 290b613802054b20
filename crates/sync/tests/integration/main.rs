//! Integration tests of multiproc-sync: primitives and queues shared by real processes.
//!
//! On Windows (spawn only): everything but the fork-only and pid-reuse suites, Unix by
//! nature.

multiproc_process::test_support!();

#[cfg(unix)]
mod barrier_fork;
#[path = "../../../process/tests/integration/bounded.rs"]
mod bounded;
mod condition;
mod primitives;
mod queue;
mod queue_big;
mod queue_kills;
#[cfg(unix)]
mod reuse;
mod support;
mod wake;
