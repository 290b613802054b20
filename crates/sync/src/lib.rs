//! Synchronization across processes for multiproc: Python's `multiprocessing` locks,
//! semaphores, conditions, events, barriers and queues.
//!
//! Every primitive lives in shared memory ([`multiproc_shm`]): a lock is a word plus wait/wake,
//! not a kernel semaphore per object, so uncontended operations make no system call. Each one
//! can be cloned within a process and passed to a child process as an argument (its memory
//! travels with it) under every start method.

#![warn(missing_debug_implementations)]

mod primitives;
mod queue;
mod word;

pub use primitives::*;
pub use queue::*;
