//! `Semaphore`, `BoundedSemaphore` and `Event`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use multiproc_shm::futex;
use serde::{Deserialize, Serialize};

use super::shared::{Shared, State};
use crate::word::Deadline;
use crate::SyncError;

const SPINS: u32 = 64;

/// "Someone may sleep on this word": set by a waiter before it sleeps, cleared by a release or
/// `set` that finds nobody asleep. A flag rather than a count of sleepers, so that a sleeper
/// killed while asleep costs one needless wake-up, not one on every release for ever.
const SLEEPERS: u32 = 1 << 31;

/// Sleep on `word`, seen holding `v`, for at most `left` (`None`: no limit), flagging it with [`SLEEPERS`] first
/// so that whoever changes it wakes us. Returns at once if the word changed meanwhile (also
/// while being flagged): the caller looks again.
fn sleep_flagged(word: &AtomicU32, v: u32, left: Option<Duration>) {
    if v & SLEEPERS == 0
        && word
            .compare_exchange(v, v | SLEEPERS, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    match left {
        Some(t) => {
            futex::wait_timeout(word, v | SLEEPERS, t);
        }
        None => futex::wait(word, v | SLEEPERS),
    }
}

#[repr(C)]
#[derive(Default)]
pub(crate) struct SemState {
    /// The number of permits, and `SLEEPERS`.
    value: AtomicU32,
    _unused: AtomicU32,
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
/// let s = multiproc::Semaphore::new(2).unwrap();
/// assert!(s.acquire());
/// assert!(s.acquire());
/// assert!(!s.acquire_timeout(Duration::from_millis(10))); // none left: times out
/// s.release();
/// assert_eq!(s.value(), 1);
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Semaphore {
    st: Shared<SemState>,
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .finish()
    }
}

impl Semaphore {
    /// A semaphore with `value` permits (below 2^31).
    pub fn new(value: u32) -> Result<Semaphore, SyncError> {
        if value & SLEEPERS != 0 {
            return Err(SyncError::InvalidArgument(
                "a semaphore holds fewer than 2^31 permits",
            ));
        }
        let st = Shared::<SemState>::new()?;
        st.get().value.store(value, Ordering::Release);
        Ok(Semaphore { st })
    }

    /// [`acquire_timeout`](Self::acquire_timeout) with no bound: waits as long as it takes.
    pub fn acquire(&self) -> bool {
        self.acquire_within(None)
    }

    /// Take a permit, waiting at most `timeout`. Whether one
    /// was taken.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_within(Some(timeout))
    }

    /// `acquire` (`None`) or `acquire_timeout` (`Some`).
    pub(crate) fn acquire_within(&self, timeout: Option<Duration>) -> bool {
        let st = self.st.get();
        let deadline = Deadline::after(timeout);
        let mut spins = 0;
        loop {
            let v = st.value.load(Ordering::Acquire);
            if v & !SLEEPERS > 0 {
                // (the flag stays: others may sleep)
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
            sleep_flagged(&st.value, v, left);
        }
    }

    /// Take a permit only if one is free now.
    #[must_use = "whether the semaphore was acquired: release it only if it was"]
    pub fn try_acquire(&self) -> bool {
        self.acquire_timeout(Duration::ZERO)
    }

    /// Give a permit back (a `BoundedSemaphore` checks its bound first).
    ///
    /// At most 2^31 - 1 permits, as glibc's `SEM_VALUE_MAX`: a release beyond is dropped, with
    /// a warning.
    pub fn release(&self) {
        let st = self.st.get();
        match st
            .value
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |v| {
                (v & !SLEEPERS < !SLEEPERS).then_some(v + 1)
            }) {
            Ok(old) => self.wake(old),
            Err(_) => tracing::warn!("semaphore release beyond 2^31 - 1 permits dropped"),
        }
    }

    /// After a release took the word from `old` to `old + 1`: wake a sleeper if one may sleep.
    /// If none did, clear the flag — only if the word is still `old + 1`: a waiter that went to
    /// sleep since must have seen no permit, so it changed the word, and the flag stays.
    fn wake(&self, old: u32) {
        if old & SLEEPERS == 0 {
            return;
        }
        let st = self.st.get();
        if futex::wake(&st.value, 1) == 0 {
            let now = old + 1;
            let _ = st.value.compare_exchange(
                now,
                now & !SLEEPERS,
                Ordering::SeqCst,
                Ordering::Relaxed,
            );
        }
    }

    /// Whether a waiter may be asleep (the flag is set).
    #[cfg(all(test, target_os = "linux"))]
    fn sleepers_flagged(&self) -> bool {
        self.st.get().value.load(Ordering::SeqCst) & SLEEPERS != 0
    }

    /// The number of free permits now (Python's `get_value`).
    #[doc(alias = "get_value")]
    pub fn value(&self) -> u32 {
        self.st.get().value.load(Ordering::Relaxed) & !SLEEPERS
    }
}

/// Python's `multiprocessing.BoundedSemaphore`: a [`Semaphore`] whose `release` fails with
/// [`SyncError::TooManyReleases`] when it would exceed the initial value.
///
/// ```
/// use multiproc::{BoundedSemaphore, SyncError};
/// let s = BoundedSemaphore::new(1).unwrap();
/// assert!(s.acquire());
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

    /// [`acquire_timeout`](Self::acquire_timeout) with no bound: waits as long as it takes.
    pub fn acquire(&self) -> bool {
        self.acquire_within(None)
    }

    /// See [`Semaphore::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_within(Some(timeout))
    }

    /// `acquire` (`None`) or `acquire_timeout` (`Some`).
    pub(crate) fn acquire_within(&self, timeout: Option<Duration>) -> bool {
        self.sem.acquire_within(timeout)
    }

    /// See [`Semaphore::try_acquire`].
    #[must_use = "whether the semaphore was acquired: release it only if it was"]
    pub fn try_acquire(&self) -> bool {
        self.sem.try_acquire()
    }

    /// Give a permit back; an error (and no change) if all permits are already free.
    pub fn release(&self) -> Result<(), SyncError> {
        let st = self.sem.st.get();
        let bound = st.bound.load(Ordering::Relaxed);
        let old = st
            .value
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |v| {
                (v & !SLEEPERS < bound).then_some(v + 1)
            })
            .map_err(|_| SyncError::TooManyReleases)?;
        self.sem.wake(old);
        Ok(())
    }

    /// The number of free permits now.
    #[doc(alias = "get_value")]
    pub fn value(&self) -> u32 {
        self.sem.value()
    }
}

/// The flag of an `Event`, beside `SLEEPERS` in its word.
const SET: u32 = 1;

#[repr(C)]
#[derive(Default)]
pub(crate) struct EventState {
    /// `SET` and `SLEEPERS`.
    flag: AtomicU32,
    _unused: AtomicU32,
}

// SAFETY: repr(C), atomics only.
unsafe impl State for EventState {}

/// Python's `multiprocessing.Event`: a flag processes can wait for.
///
/// ```
/// use std::time::Duration;
/// let e = multiproc::Event::new().unwrap();
/// assert!(!e.wait_timeout(Duration::from_millis(5)));
/// e.set();
/// assert!(e.is_set() && e.wait());
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
        // (the flag of sleepers goes: all of them wake, and whoever sleeps again sets it again)
        if st.flag.swap(SET, Ordering::SeqCst) & SLEEPERS != 0 {
            futex::wake_all(&st.flag);
        }
    }

    /// Clear the flag.
    pub fn clear(&self) {
        self.st.get().flag.fetch_and(!SET, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.st.get().flag.load(Ordering::Acquire) & SET != 0
    }

    /// [`wait_timeout`](Self::wait_timeout) with no bound: waits as long as it takes.
    pub fn wait(&self) -> bool {
        self.wait_within(None)
    }

    /// Wait until the flag is set, at most `timeout`; whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_within(Some(timeout))
    }

    /// `wait` (`None`) or `wait_timeout` (`Some`).
    pub(crate) fn wait_within(&self, timeout: Option<Duration>) -> bool {
        let st = self.st.get();
        let deadline = Deadline::after(timeout);
        loop {
            let v = st.flag.load(Ordering::Acquire);
            if v & SET != 0 {
                return true;
            }
            let Some(left) = deadline.left() else {
                return false;
            };
            sleep_flagged(&st.flag, v, left);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Fork a child that runs `f` (only atomics and futex calls: safe after a fork), let it
    /// fall asleep (`asleep` says when), kill it there and reap it.
    fn kill_while_asleep(f: impl FnOnce(), asleep: impl Fn() -> bool) {
        // SAFETY: the child only runs `f` (atomics and futex system calls) and `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            f();
            // SAFETY: leave the child without running the parent's exit handlers.
            unsafe { libc::_exit(0) };
        }
        let t = Instant::now();
        while !asleep() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the child never slept"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20)); // (inside the futex wait by now)
                                                       // SAFETY: kill and reap our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }

    #[test]
    fn a_sleeper_killed_asleep_is_forgotten_at_the_next_release() {
        let s = Semaphore::new(0).unwrap();
        let s2 = s.clone();
        kill_while_asleep(
            move || {
                let _ = s2.acquire_timeout(Duration::from_secs(60));
            },
            || s.sleepers_flagged(),
        );
        s.release();
        assert!(!s.sleepers_flagged(), "a dead sleeper is still flagged");
        assert_eq!(s.value(), 1);
        assert!(s.acquire_timeout(Duration::ZERO));
        // a live sleeper keeps its flag and gets the next permit
        let s3 = s.clone();
        let h = std::thread::spawn(move || s3.acquire_timeout(Duration::from_secs(20)));
        let t = Instant::now();
        while !s.sleepers_flagged() && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(1));
        }
        s.release();
        assert!(h.join().unwrap());
        assert_eq!(s.value(), 0);
    }

    #[test]
    fn an_event_sleeper_killed_asleep_is_forgotten_at_the_next_set() {
        let e = Event::new().unwrap();
        let e2 = e.clone();
        kill_while_asleep(
            move || {
                let _ = e2.wait_timeout(Duration::from_secs(60));
            },
            || e.st.get().flag.load(Ordering::SeqCst) & SLEEPERS != 0,
        );
        e.set();
        assert_eq!(e.st.get().flag.load(Ordering::SeqCst), SET);
        e.clear();
        assert!(!e.is_set() && !e.wait_timeout(Duration::from_millis(5)));
    }

    #[test]
    fn permits_stop_below_the_sleepers_flag() {
        assert!(Semaphore::new(SLEEPERS).is_err());
        let s = Semaphore::new(SLEEPERS - 1).unwrap();
        s.release();
        assert_eq!(s.value(), SLEEPERS - 1);
        assert!(!s.sleepers_flagged());
        let b = BoundedSemaphore::new(2).unwrap();
        assert!(b.acquire());
        b.release().unwrap();
        assert_eq!(b.release(), Err(SyncError::TooManyReleases));
    }
}
