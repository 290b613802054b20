//! `Semaphore`, `BoundedSemaphore` and `Event`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use multiproc_shm::futex;
use serde::{Deserialize, Serialize};

use super::shared::{Shared, State};
use crate::word::Deadline;
use crate::SyncError;

const SPINS: u32 = 64;

#[repr(C)]
#[derive(Default)]
pub(crate) struct SemState {
    value: AtomicU32,
    waiters: AtomicU32,
    /// For `BoundedSemaphore`: the initial value (0 = unbounded).
    bound: AtomicU32,
}

// SAFETY: repr(C), atomics only.
unsafe impl State for SemState {}

/// Python's `multiprocessing.Semaphore`: a counter that `acquire` decrements, waiting while it
/// is zero, and `release` increments.
///
/// ```
/// use std::time::Duration;
/// let s = multiproc_sync::Semaphore::new(2).unwrap();
/// assert!(s.acquire(None));
/// assert!(s.acquire(None));
/// assert!(!s.acquire(Some(Duration::from_millis(10)))); // none left: times out
/// s.release();
/// assert_eq!(s.get_value(), 1);
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Semaphore {
    st: Shared<SemState>,
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.get_value())
            .finish()
    }
}

impl Semaphore {
    /// A semaphore with `value` permits.
    pub fn new(value: u32) -> Result<Semaphore, SyncError> {
        let st = Shared::<SemState>::new()?;
        st.get().value.store(value, Ordering::Release);
        Ok(Semaphore { st })
    }

    /// Take a permit, waiting at most `timeout` (`None`: as long as it takes). Whether one
    /// was taken.
    pub fn acquire(&self, timeout: Option<Duration>) -> bool {
        let st = self.st.get();
        let deadline = Deadline::after(timeout);
        let mut spins = 0;
        loop {
            let v = st.value.load(Ordering::Acquire);
            if v > 0 {
                if st
                    .value
                    .compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let Some(left) = deadline.left() else {
                return false;
            };
            st.waiters.fetch_add(1, Ordering::SeqCst);
            futex::wait(&st.value, 0, left);
            st.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Take a permit only if one is free now.
    pub fn try_acquire(&self) -> bool {
        self.acquire(Some(Duration::ZERO))
    }

    /// Give a permit back (a `BoundedSemaphore` checks its bound first).
    pub fn release(&self) {
        let st = self.st.get();
        st.value.fetch_add(1, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        let st = self.st.get();
        if st.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake(&st.value, 1);
        }
    }

    /// The number of free permits now (Python's `get_value`).
    pub fn get_value(&self) -> u32 {
        self.st.get().value.load(Ordering::Relaxed)
    }
}

/// Python's `multiprocessing.BoundedSemaphore`: a [`Semaphore`] whose `release` fails with
/// [`SyncError::TooManyReleases`] when it would exceed the initial value.
///
/// ```
/// use multiproc_sync::{BoundedSemaphore, SyncError};
/// let s = BoundedSemaphore::new(1).unwrap();
/// assert!(s.acquire(None));
/// s.release().unwrap();
/// assert_eq!(s.release(), Err(SyncError::TooManyReleases));
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BoundedSemaphore {
    sem: Semaphore,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` permits, at most.
    pub fn new(value: u32) -> Result<BoundedSemaphore, SyncError> {
        let sem = Semaphore::new(value)?;
        sem.st.get().bound.store(value, Ordering::Release);
        Ok(BoundedSemaphore { sem })
    }

    /// See [`Semaphore::acquire`].
    pub fn acquire(&self, timeout: Option<Duration>) -> bool {
        self.sem.acquire(timeout)
    }

    /// See [`Semaphore::try_acquire`].
    pub fn try_acquire(&self) -> bool {
        self.sem.try_acquire()
    }

    /// Give a permit back; an error (and no change) if all permits are already free.
    pub fn release(&self) -> Result<(), SyncError> {
        let st = self.sem.st.get();
        let bound = st.bound.load(Ordering::Relaxed);
        st.value
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |v| {
                (v < bound).then_some(v + 1)
            })
            .map_err(|_| SyncError::TooManyReleases)?;
        self.sem.wake();
        Ok(())
    }

    /// The number of free permits now.
    pub fn get_value(&self) -> u32 {
        self.sem.get_value()
    }
}

#[repr(C)]
#[derive(Default)]
pub(crate) struct EventState {
    flag: AtomicU32,
    waiters: AtomicU32,
}

// SAFETY: repr(C), atomics only.
unsafe impl State for EventState {}

/// Python's `multiprocessing.Event`: a flag processes can wait for.
///
/// ```
/// use std::time::Duration;
/// let e = multiproc_sync::Event::new().unwrap();
/// assert!(!e.wait(Some(Duration::from_millis(5))));
/// e.set();
/// assert!(e.is_set() && e.wait(None));
/// e.clear();
/// assert!(!e.is_set());
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Event {
    st: Shared<EventState>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Result<Event, SyncError> {
        Ok(Event { st: Shared::new()? })
    }

    /// Set the flag and wake every waiter.
    pub fn set(&self) {
        let st = self.st.get();
        st.flag.store(1, Ordering::SeqCst);
        if st.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake_all(&st.flag);
        }
    }

    /// Clear the flag.
    pub fn clear(&self) {
        self.st.get().flag.store(0, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.st.get().flag.load(Ordering::Acquire) != 0
    }

    /// Wait until the flag is set, at most `timeout`; whether it is set.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let st = self.st.get();
        let deadline = Deadline::after(timeout);
        loop {
            if self.is_set() {
                return true;
            }
            let Some(left) = deadline.left() else {
                return false;
            };
            st.waiters.fetch_add(1, Ordering::SeqCst);
            futex::wait(&st.flag, 0, left);
            st.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
