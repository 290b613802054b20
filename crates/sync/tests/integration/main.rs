//! Integration tests of multiproc-sync: primitives and queues shared by real processes.
//!
//! On Windows (spawn only): the primitives' suites; fork-only and pid-reuse suites are Unix by
//! nature, and the queues need their side channel, which Windows does not have yet.

multiproc_process::test_support!();

#[cfg(unix)]
mod barrier_fork;
#[path = "../../../process/tests/integration/bounded.rs"]
mod bounded;
mod condition;
mod primitives;
#[cfg(unix)]
mod queue;
#[cfg(unix)]
mod queue_big;
#[cfg(unix)]
mod queue_kills;
#[cfg(unix)]
mod reuse;
mod support;
mod wake;
