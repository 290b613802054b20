//! `Condition`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use multiproc_shm::{futex, LockResult};
use serde::{Deserialize, Serialize};

use super::shared::{Shared, State};
use super::{Lock, RLock};
use crate::word::{raw_mutex, Deadline, Held};
use crate::SyncError;

#[repr(C)]
#[derive(Default)]
pub(crate) struct CondState {
    /// Guards `waiters` and `tokens` (a few instructions at a time).
    m: std::sync::atomic::AtomicU64,
    /// Waiters not yet notified.
    waiters: AtomicU32,
    /// Notifications not yet taken by a waiter.
    tokens: AtomicU32,
    /// Bumped by every notify: what waiters sleep on.
    seq: AtomicU32,
}

// SAFETY: repr(C), atomics only.
unsafe impl State for CondState {}

/// Runs `f` under the condition's internal mutex.
fn guarded<T>(st: &CondState, f: impl FnOnce() -> T) -> T {
    let _held = Held::lock(raw_mutex(&st.m));
    f()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum CondLock {
    Lock(Lock),
    RLock(RLock),
}

/// Python's `multiprocessing.Condition`: wait until notified, releasing the lock meanwhile.
///
/// Built over an [`RLock`] (the default, as in Python) or a [`Lock`]. `notify(n)` wakes at most
/// `n` waiters — exactly `n` if that many wait. Waiting or notifying without holding the lock is
/// [`SyncError::NotOwner`] (with a plain `Lock`, only "not held by anyone" can be detected).
///
/// ```
/// use std::time::Duration;
/// let c = multiproc_sync::Condition::new().unwrap();
/// assert!(c.acquire(None).acquired());
/// assert_eq!(c.wait(Some(Duration::from_millis(5))), Ok(false)); // nobody notifies
/// assert_eq!(c.notify(1), Ok(0)); // nobody waits
/// c.release().unwrap();
/// assert!(c.wait(None).is_err()); // not holding the lock
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Condition {
    lock: CondLock,
    st: Shared<CondState>,
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

    /// Acquire the underlying lock.
    pub fn acquire(&self, timeout: Option<Duration>) -> LockResult {
        match &self.lock {
            CondLock::Lock(l) => l.acquire(timeout),
            CondLock::RLock(l) => l.acquire(timeout),
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

    /// Release the lock, wait until notified or `timeout` passes, take the lock back. Whether
    /// it was notified (Python's return value).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, SyncError> {
        self.check_owned()?;
        let st = self.st.get();
        guarded(st, || st.waiters.fetch_add(1, Ordering::Relaxed));
        let depth = match &self.lock {
            CondLock::Lock(l) => l.release().map(|_| 0)?,
            CondLock::RLock(l) => l.release_all()?,
        };
        let deadline = Deadline::after(timeout);
        let notified = loop {
            let seq = st.seq.load(Ordering::Acquire);
            let left = deadline.left();
            let outcome = guarded(st, || {
                if st.tokens.load(Ordering::Relaxed) > 0 {
                    st.tokens.fetch_sub(1, Ordering::Relaxed);
                    return Some(true);
                }
                if left.is_none() {
                    // (no token left, so our count is still among the waiters)
                    st.waiters.fetch_sub(1, Ordering::Relaxed);
                    return Some(false);
                }
                None
            });
            if let Some(n) = outcome {
                break n;
            }
            futex::wait(&st.seq, seq, left.flatten());
        };
        match &self.lock {
            CondLock::Lock(l) => {
                let _ = l.acquire(None);
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
            self.wait(left)?;
        }
    }

    /// Wake at most `n` waiters; how many were woken. The lock must be held.
    pub fn notify(&self, n: u32) -> Result<u32, SyncError> {
        self.check_owned()?;
        let st = self.st.get();
        let k = guarded(st, || {
            let k = st.waiters.load(Ordering::Relaxed).min(n);
            st.waiters.fetch_sub(k, Ordering::Relaxed);
            st.tokens.fetch_add(k, Ordering::Relaxed);
            st.seq.fetch_add(1, Ordering::Release);
            k
        });
        if k > 0 {
            futex::wake_all(&st.seq);
        }
        Ok(k)
    }

    /// Wake every waiter; how many. The lock must be held.
    pub fn notify_all(&self) -> Result<u32, SyncError> {
        self.notify(u32::MAX)
    }
}
