//! Integration tests of multiproc-sync: primitives and queues shared by real processes.
#![cfg(unix)]

multiproc_process::test_support!();

mod barrier_fork;
#[path = "../../../process/tests/integration/bounded.rs"]
mod bounded;
mod condition;
mod primitives;
mod queue;
mod queue_big;
mod queue_kills;
mod reuse;
mod support;
