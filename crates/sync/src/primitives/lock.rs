//! `Lock` and `RLock`.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use multiproc_shm::{LockResult, ProcessId, RawMutex, SharedMutex};
use serde::{Deserialize, Serialize};

use super::shared::{Shared, State};
use crate::word::raw_mutex;
use crate::SyncError;

/// Python's `multiprocessing.Lock`: a non-recursive lock shared by processes.
///
/// One word in shared memory: an uncontended `acquire` + `release` is two atomic instructions.
/// Any process (or thread) may release it, as in Python. Beyond Python: when a process dies
/// holding it, the next acquirer gets [`LockResult::OwnerDied`] — the lock is theirs, and what it
/// protected may be half-updated, like a poisoned `std::sync::Mutex` — instead of waiting forever.
///
/// Clones share the lock; pass it to a child process as (part of) its arguments.
///
/// ```
/// use multiproc::{Lock, LockResult};
/// let lock = Lock::new().unwrap();
/// {
///     let guard = lock.lock();
///     assert!(!guard.owner_died());
///     assert_eq!(lock.try_acquire(), LockResult::TimedOut);
/// } // released here
/// assert_eq!(lock.acquire(), LockResult::Acquired);
/// lock.release().unwrap();
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lock {
    m: SharedMutex,
}

impl Lock {
    /// A new unlocked lock.
    pub fn new() -> Result<Lock, SyncError> {
        Ok(Lock {
            m: SharedMutex::new()?,
        })
    }

    /// [`acquire_timeout`](Self::acquire_timeout) with no bound: waits as long as it takes.
    pub fn acquire(&self) -> LockResult {
        self.acquire_within(None)
    }

    /// Acquire, waiting at most `timeout`. Python's
    /// `acquire(block=True, timeout=...)`.
    pub fn acquire_timeout(&self, timeout: Duration) -> LockResult {
        self.acquire_within(Some(timeout))
    }

    /// `acquire` (`None`) or `acquire_timeout` (`Some`).
    pub(crate) fn acquire_within(&self, timeout: Option<Duration>) -> LockResult {
        match timeout {
            Some(t) => self.m.lock_timeout(t),
            None => self.m.lock(),
        }
    }

    /// Acquire only if free now: Python's `acquire(block=False)`.
    pub fn try_acquire(&self) -> LockResult {
        self.m.try_lock()
    }

    /// Release; [`SyncError::NotLocked`] if it is not held.
    pub fn release(&self) -> Result<(), SyncError> {
        self.m.unlock().map_err(|_| SyncError::NotLocked)
    }

    /// Acquire (waiting as long as it takes) and release when the guard drops: Python's
    /// `with lock:`.
    pub fn lock(&self) -> LockGuard<'_> {
        let r = self.acquire();
        LockGuard {
            lock: self,
            died: r == LockResult::OwnerDied,
        }
    }

    /// [`lock`](Self::lock) with a timeout: `None` if it expired.
    pub fn lock_timeout(&self, timeout: Duration) -> Option<LockGuard<'_>> {
        match self.acquire_timeout(timeout) {
            LockResult::TimedOut => None,
            r => Some(LockGuard {
                lock: self,
                died: r == LockResult::OwnerDied,
            }),
        }
    }

    /// Whether some process holds it now.
    pub fn is_locked(&self) -> bool {
        self.m.is_locked()
    }

    /// The underlying shared mutex (to share it as the lock of a shared value).
    pub fn as_shared_mutex(&self) -> &SharedMutex {
        &self.m
    }
}

impl From<Lock> for SharedMutex {
    fn from(l: Lock) -> SharedMutex {
        l.m
    }
}

impl From<&Lock> for SharedMutex {
    fn from(l: &Lock) -> SharedMutex {
        l.m.clone()
    }
}

/// Holds a [`Lock`]; releases it when dropped.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    died: bool,
}

impl LockGuard<'_> {
    /// Whether the previous holder died holding the lock.
    pub fn owner_died(&self) -> bool {
        self.died
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

#[repr(C)]
#[derive(Default)]
pub(crate) struct RLockState {
    m: AtomicU64,
    /// The holding process ([`ProcessId`] bits; 0 when free), stored last when taken (with
    /// `Release`), cleared first when freed.
    owner: AtomicU64,
    /// The holding thread's number in that process (stored before `owner`).
    thread: AtomicU32,
    count: AtomicU32,
}

// SAFETY: repr(C), atomics only, alignment 8.
unsafe impl State for RLockState {}

thread_local! {
    static THREAD_NO: Cell<u32> = const { Cell::new(0) };
}

/// This thread's number in its process (from 1; a forked child keeps the forking thread's,
/// which is harmless: the child is another process).
fn thread_no() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    THREAD_NO.with(|c| {
        if c.get() == 0 {
            c.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        c.get()
    })
}

/// Python's `multiprocessing.RLock`: a recursive lock, owned by one thread of one process at a
/// time, which may acquire it again; it is free once released as many times.
///
/// Releasing an `RLock` this thread does not hold is [`SyncError::NotOwner`]. A holder's death
/// is reported as for [`Lock`]. The owner is a [`ProcessId`] (pid and start time, so a
/// process that later gets a dead holder's pid is not taken for it) and a thread number.
///
/// ```
/// use multiproc::{LockResult, RLock, SyncError};
/// let r = RLock::new().unwrap();
/// assert_eq!(r.acquire(), LockResult::Acquired);
/// assert_eq!(r.acquire(), LockResult::Acquired); // again, same thread
/// r.release().unwrap();
/// r.release().unwrap();
/// assert_eq!(r.release(), Err(SyncError::NotOwner));
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct RLock {
    st: Shared<RLockState>,
}

impl std::fmt::Debug for RLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RLock")
            .field("count", &self.st.get().count.load(Ordering::Relaxed))
            .finish()
    }
}

impl RLock {
    /// A new unlocked recursive lock.
    pub fn new() -> Result<RLock, SyncError> {
        Ok(RLock { st: Shared::new()? })
    }

    fn raw(&self) -> &RawMutex {
        raw_mutex(&self.st.get().m)
    }

    /// Whether this thread holds it. A thread of another process, or another thread of this
    /// one, never reads its own identity here: the owner process is stored last with
    /// `Release`, so whoever sees its own process there also sees the holder's thread number.
    fn mine(&self) -> bool {
        let st = self.st.get();
        st.owner.load(Ordering::Acquire) == ProcessId::current().to_bits()
            && st.thread.load(Ordering::Relaxed) == thread_no()
    }

    /// Record this thread as the holder, at depth `count` (the raw lock is ours).
    fn take(&self, count: u32) {
        let st = self.st.get();
        st.thread.store(thread_no(), Ordering::Relaxed);
        st.count.store(count, Ordering::Relaxed);
        st.owner
            .store(ProcessId::current().to_bits(), Ordering::Release);
    }

    /// Forget the holder (before the raw lock is released).
    fn clear(&self) {
        let st = self.st.get();
        st.owner.store(0, Ordering::Relaxed);
        st.thread.store(0, Ordering::Relaxed);
    }

    /// [`acquire_timeout`](Self::acquire_timeout) with no bound: waits as long as it takes.
    pub fn acquire(&self) -> LockResult {
        self.acquire_within(None)
    }

    /// Acquire (again, if this thread holds it), waiting at most `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> LockResult {
        self.acquire_within(Some(timeout))
    }

    /// `acquire` (`None`) or `acquire_timeout` (`Some`).
    pub(crate) fn acquire_within(&self, timeout: Option<Duration>) -> LockResult {
        if self.mine() {
            self.st.get().count.fetch_add(1, Ordering::Relaxed);
            return LockResult::Acquired;
        }
        let r = self.raw().lock_within(timeout);
        if r.acquired() {
            self.take(1);
        }
        r
    }

    /// Acquire only if free now (or already ours).
    pub fn try_acquire(&self) -> LockResult {
        self.acquire_timeout(Duration::ZERO)
    }

    /// Release once; [`SyncError::NotOwner`] if this thread does not hold it.
    pub fn release(&self) -> Result<(), SyncError> {
        if !self.mine() {
            return Err(SyncError::NotOwner);
        }
        let st = self.st.get();
        let c = st.count.load(Ordering::Relaxed);
        if c > 1 {
            st.count.store(c - 1, Ordering::Relaxed);
            return Ok(());
        }
        self.clear();
        st.count.store(0, Ordering::Relaxed);
        self.raw().unlock().map_err(|_| SyncError::NotLocked)
    }

    /// Whether this thread holds it.
    pub fn is_owned(&self) -> bool {
        self.mine()
    }

    /// Release completely, returning the recursion depth (for `Condition::wait`).
    pub(crate) fn release_all(&self) -> Result<u32, SyncError> {
        if !self.is_owned() {
            return Err(SyncError::NotOwner);
        }
        self.clear();
        let c = self.st.get().count.swap(0, Ordering::Relaxed);
        self.raw().unlock().map_err(|_| SyncError::NotLocked)?;
        Ok(c)
    }

    /// Take the lock back at depth `count` (after `release_all`).
    pub(crate) fn acquire_restore(&self, count: u32) -> LockResult {
        let r = self.raw().lock();
        self.take(count);
        r
    }

    /// Acquire and release when the guard drops: `with rlock:`.
    pub fn lock(&self) -> RLockGuard<'_> {
        let r = self.acquire();
        RLockGuard {
            lock: self,
            died: r == LockResult::OwnerDied,
        }
    }
}

/// Holds an [`RLock`] once; releases it when dropped.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    died: bool,
}

impl RLockGuard<'_> {
    /// Whether the previous holder died holding the lock.
    pub fn owner_died(&self) -> bool {
        self.died
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}
