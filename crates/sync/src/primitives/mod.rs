//! Locks, semaphores, conditions, events and barriers: state in shared memory, waiting with
//! futex wait/wake, so uncontended operations make no system call.

mod barrier;
mod condition;
mod error;
mod lock;
mod semaphore;
mod shared;

pub use barrier::Barrier;
pub use condition::Condition;
pub use error::SyncError;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use multiproc_shm::LockResult;
pub use semaphore::{BoundedSemaphore, Event, Semaphore};

use std::time::{Duration, Instant};

/// A deadline for an optional timeout.
#[derive(Clone, Copy)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    pub(crate) fn after(timeout: Option<Duration>) -> Deadline {
        Deadline(timeout.map(|t| Instant::now() + t))
    }

    /// Time left: `Some(None)` for no limit, `None` once expired.
    pub(crate) fn left(&self) -> Option<Option<Duration>> {
        match self.0 {
            None => Some(None),
            Some(d) => {
                let now = Instant::now();
                (now < d).then(|| Some(d - now))
            }
        }
    }
}
