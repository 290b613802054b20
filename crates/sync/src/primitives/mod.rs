//! Locks, semaphores, conditions, events and barriers: state in shared memory, waiting with
//! futex wait/wake, so uncontended operations make no system call.

mod barrier;
mod condition;
mod error;
mod lock;
mod semaphore;
mod shared;
mod waiters;

pub use barrier::Barrier;
pub use condition::Condition;
pub use error::SyncError;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use multiproc_shm::LockResult;
pub use semaphore::{BoundedSemaphore, Event, Semaphore};
