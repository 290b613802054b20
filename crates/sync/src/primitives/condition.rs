//! `Condition`.

use std::time::Duration;

use multiproc_shm::LockResult;
use serde::{Deserialize, Serialize};

use super::shared::Shared;
use super::waiters::Waiters;
use super::{Lock, RLock};
use crate::word::Deadline;
use crate::SyncError;

#[derive(Clone, Debug, Serialize, Deserialize)]
enum CondLock {
    Lock(Lock),
    RLock(RLock),
}

/// Python's `multiprocessing.Condition`: wait until notified, releasing the lock meanwhile.
///
/// Built over an [`RLock`] (the default, as in Python) or a [`Lock`]. `notify(n)` wakes the `n`
/// oldest of the processes or threads waiting when it is called — exactly `n` if that many
/// wait, never one that starts waiting later, and never one that died waiting (it counts for
/// nothing). Waiting or notifying without holding the lock is [`SyncError::NotOwner`] (with a
/// plain `Lock`, only "not held by anyone" can be detected). At most 1024 may wait at once
/// ([`SyncError::TooManyWaiters`]).
///
/// ```
/// use std::time::Duration;
/// let c = multiproc::Condition::new().unwrap();
/// assert!(c.acquire().acquired());
/// assert_eq!(c.wait_timeout(Duration::from_millis(5)), Ok(false)); // nobody notifies
/// assert_eq!(c.notify(1), Ok(0)); // nobody waits
/// c.release().unwrap();
/// assert!(c.wait().is_err()); // not holding the lock
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Condition {
    lock: CondLock,
    st: Shared<Waiters>,
}

impl Condition {
    /// A condition over a new [`RLock`].
    pub fn new() -> Result<Condition, SyncError> {
        Condition::with_rlock(RLock::new()?)
    }

    /// A condition over `lock`.
    pub fn with_lock(lock: Lock) -> Result<Condition, SyncError> {
        Ok(Condition {
            lock: CondLock::Lock(lock),
            st: Shared::new()?,
        })
    }

    /// A condition over `lock`.
    pub fn with_rlock(lock: RLock) -> Result<Condition, SyncError> {
        Ok(Condition {
            lock: CondLock::RLock(lock),
            st: Shared::new()?,
        })
    }

    /// [`acquire_timeout`](Self::acquire_timeout) with no bound: waits as long as it takes.
    pub fn acquire(&self) -> LockResult {
        self.acquire_within(None)
    }

    /// Acquire the underlying lock.
    pub fn acquire_timeout(&self, timeout: Duration) -> LockResult {
        self.acquire_within(Some(timeout))
    }

    /// `acquire` (`None`) or `acquire_timeout` (`Some`).
    pub(crate) fn acquire_within(&self, timeout: Option<Duration>) -> LockResult {
        match &self.lock {
            CondLock::Lock(l) => l.acquire_within(timeout),
            CondLock::RLock(l) => l.acquire_within(timeout),
        }
    }

    /// Release the underlying lock.
    pub fn release(&self) -> Result<(), SyncError> {
        match &self.lock {
            CondLock::Lock(l) => l.release(),
            CondLock::RLock(l) => l.release(),
        }
    }

    fn check_owned(&self) -> Result<(), SyncError> {
        let owned = match &self.lock {
            CondLock::Lock(l) => l.is_locked(),
            CondLock::RLock(l) => l.is_owned(),
        };
        if owned {
            Ok(())
        } else {
            Err(SyncError::NotOwner)
        }
    }

    /// [`wait_timeout`](Self::wait_timeout) with no bound: waits as long as it takes.
    pub fn wait(&self) -> Result<bool, SyncError> {
        self.wait_within(None)
    }

    /// Release the lock, wait until notified or `timeout` passes, take the lock back. Whether
    /// it was notified (Python's return value).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, SyncError> {
        self.wait_within(Some(timeout))
    }

    /// `wait` (`None`) or `wait_timeout` (`Some`).
    pub(crate) fn wait_within(&self, timeout: Option<Duration>) -> Result<bool, SyncError> {
        self.check_owned()?;
        let waiters = self.st.get();
        // a place among the waiters before the lock is released: a notify made once it is
        // free sees us
        let place = waiters.arrive()?;
        let released = match &self.lock {
            CondLock::Lock(l) => l.release().map(|_| 0),
            CondLock::RLock(l) => l.release_all(),
        };
        let depth = match released {
            Ok(depth) => depth,
            Err(e) => {
                waiters.leave(place);
                return Err(e);
            }
        };
        let notified = waiters.wait(place, Deadline::after(timeout));
        match &self.lock {
            CondLock::Lock(l) => {
                let _ = l.acquire();
            }
            CondLock::RLock(l) => {
                let _ = l.acquire_restore(depth);
            }
        }
        Ok(notified)
    }

    /// Wait until `predicate()` is true, at most `timeout` in all; the predicate's last value.
    /// The lock must be held; `predicate` runs with it held.
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, SyncError> {
        let deadline = Deadline::after(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            let Some(left) = deadline.left() else {
                return Ok(false);
            };
            self.wait_within(left)?;
        }
    }

    /// Wake the `n` oldest waiters (fewer if fewer wait); how many were woken. The lock must
    /// be held.
    pub fn notify(&self, n: u32) -> Result<u32, SyncError> {
        self.check_owned()?;
        Ok(self.st.get().notify(n))
    }

    /// Wake every waiter; how many. The lock must be held.
    pub fn notify_all(&self) -> Result<u32, SyncError> {
        self.notify(u32::MAX)
    }
}
