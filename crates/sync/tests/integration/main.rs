//! Integration tests of multiproc-sync: primitives and queues shared by real processes.
#![cfg(unix)]

multiproc_process::test_support!();

mod condition;
mod primitives;
mod queue;
mod reuse;
mod support;
