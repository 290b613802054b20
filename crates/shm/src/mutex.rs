//! `RawMutex`: a lock that is one 64-bit word in shared memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{sys, ProcessId};

/// The "someone sleeps" bit, in the low (pid) half of the word: pids stay below 2^22.
const WAITERS: u64 = 1 << 31;
/// How long a waiter sleeps before checking whether the holder still lives: `FIRST_CHECK`
/// after it starts waiting, then twice as long each time, up to `LIVENESS_CHECK`. (A holder
/// killed right after we began to wait — a pool terminating its workers, say — is noticed
/// within a millisecond; a long wait costs a wake-up every 50 ms.)
const FIRST_CHECK: Duration = Duration::from_millis(1);
const LIVENESS_CHECK: Duration = Duration::from_millis(50);

/// How long `try_lock` trusts a holder it found alive by the full check (pid and start time):
/// within it, only the pid's existence is asked again. A holder that dies and whose pid is
/// taken by another process within this window keeps a non-blocking acquire failing until the
/// window ends; a blocking acquire is not affected (it always makes the full check).
const ALIVE_TRUST: Duration = Duration::from_millis(1);

std::thread_local! {
    /// The holder `try_lock` last found alive with the full check, and when.
    static LAST_ALIVE: std::cell::Cell<Option<(u64, Instant)>> = const { std::cell::Cell::new(None) };
}

/// Whether the holder `id` (a lock word without the waiters bit) is alive, for `try_lock`.
fn holder_alive(id: u64) -> bool {
    if !sys::pid_exists(pid_of(id)) {
        return false;
    }
    let now = Instant::now();
    if let Some((who, at)) = LAST_ALIVE.get() {
        if who == id && now.saturating_duration_since(at) < ALIVE_TRUST {
            return true;
        }
    }
    let alive = sys::identity_alive(id);
    if alive {
        LAST_ALIVE.set(Some((id, now)));
    }
    alive
}

/// What an acquire got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum LockResult {
    /// The lock is ours.
    Acquired,
    /// The lock is ours, but its previous holder died holding it: what it protected may be
    /// half-updated (like a poisoned `std::sync::Mutex`).
    OwnerDied,
    /// The timeout expired (or, for `try_lock`, the lock is held).
    TimedOut,
}

impl LockResult {
    /// Whether the lock was obtained (`Acquired` or `OwnerDied`).
    pub fn acquired(self) -> bool {
        !matches!(self, LockResult::TimedOut)
    }
}

/// A mutual-exclusion lock whose whole state is one word, so it can live in shared memory and
/// work across processes.
///
/// The word holds the holder's [`ProcessId`] (its pid in the low half, its start time in the
/// high half) and a "someone sleeps" bit: an uncontended acquire is a single compare-and-swap
/// and a release a single swap, with no system call. Waiters sleep on the low half with
/// [`futex`](crate::futex); every 50 ms they check that the holder still runs, so a holder
/// killed with `SIGKILL` hands the lock to the next acquirer as [`LockResult::OwnerDied`]
/// instead of hanging it forever — also when another process has got its pid since (it
/// started later).
///
/// Like Python's `multiprocessing.Lock`, any process may release it (it is not re-entrant and
/// not tied to a thread).
///
/// ```
/// use multiproc::shm::{LockResult, RawMutex};
/// let m = RawMutex::new();
/// assert_eq!(m.lock(), LockResult::Acquired);
/// assert_eq!(m.try_lock(), LockResult::TimedOut);
/// m.unlock().unwrap();
/// assert!(m.unlock().is_err()); // not locked
/// ```
#[repr(C, align(8))]
#[derive(Debug, Default)]
pub struct RawMutex {
    state: AtomicU64,
}

/// Releasing a lock that is not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("release of an unlocked lock")]
pub struct NotLocked;

impl RawMutex {
    /// An unlocked mutex (all-zero bytes are an unlocked mutex too, so fresh shared memory is
    /// ready to use).
    pub const fn new() -> RawMutex {
        RawMutex {
            state: AtomicU64::new(0),
        }
    }

    /// View the 8 bytes at `ptr` as a mutex.
    ///
    /// # Safety
    /// `ptr` must be 8-byte aligned, valid for reads and writes for `'a`, and only ever accessed
    /// atomically (by `RawMutex` methods) while it is used as a mutex.
    pub unsafe fn from_ptr<'a>(ptr: *mut u8) -> &'a RawMutex {
        // SAFETY: RawMutex is repr(C) over one AtomicU64; the caller guarantees alignment,
        // validity and atomic-only access.
        unsafe { &*(ptr as *const RawMutex) }
    }

    /// The mutex whose word is `word` (a word of shared state used only as a mutex).
    pub fn from_atomic(word: &AtomicU64) -> &RawMutex {
        // SAFETY: a reference to an AtomicU64 is 8-byte aligned, valid as long as it lives,
        // and only accessed atomically; RawMutex is repr(C) over one AtomicU64.
        unsafe { RawMutex::from_ptr(word as *const AtomicU64 as *mut u8) }
    }

    #[inline]
    fn me() -> u64 {
        sys::identity()
    }

    /// Acquire without waiting. `TimedOut` if a live holder has it; a holder that died (its
    /// pid gone, a zombie, or its pid since taken by a process that started later) hands it
    /// over as `OwnerDied`.
    ///
    /// A held lock costs a liveness check (`/proc/<pid>/stat` on Linux) when its holder's pid
    /// exists: with only the pid to go by, a non-blocking acquire (a queue's `put_nowait`,
    /// say) failed for as long as another process had a dead holder's pid, however long no
    /// live process held the lock — and pids of dead processes come round within moments
    /// once anything moves the kernel's next pid back (`ns_last_pid`). A holder this thread
    /// found alive is trusted for 1 ms (only its pid's existence is asked again),
    /// so a loop of failing `try_lock`s costs a system call each, not a `/proc` read.
    pub fn try_lock(&self) -> LockResult {
        let me = Self::me();
        match self
            .state
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => LockResult::Acquired,
            Err(c) if !holder_alive(c & !WAITERS) => {
                self.take_over(c).unwrap_or(LockResult::TimedOut)
            }
            Err(_) => LockResult::TimedOut,
        }
    }

    fn take_over(&self, seen: u64) -> Option<LockResult> {
        let me = Self::me();
        self.state
            .compare_exchange(
                seen,
                me | (seen & WAITERS),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| LockResult::OwnerDied)
    }

    /// [`lock_timeout`](Self::lock_timeout) with no bound: waits as long as it takes.
    pub fn lock(&self) -> LockResult {
        self.lock_within(None)
    }

    /// Acquire, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult {
        self.lock_within(Some(timeout))
    }

    /// `lock` (`None`) or `lock_timeout` (`Some`).
    pub fn lock_within(&self, timeout: Option<Duration>) -> LockResult {
        let me = Self::me();
        if self
            .state
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return LockResult::Acquired;
        }
        self.lock_slow(me, timeout)
    }

    /// A held lock is waited for by sleeping at once, without spinning first: two processes
    /// taking turns in a tight loop otherwise steal the lock from each other at every release
    /// and pay a cache-line transfer per turn (half the throughput, measured), while a sleeping
    /// waiter lets the holder run on uncontended until the waiter wakes.
    #[cold]
    fn lock_slow(&self, me: u64, timeout: Option<Duration>) -> LockResult {
        let deadline = timeout.map(|t| Instant::now() + t);
        // Before the first sleep: is the holder already gone and reaped? (Then no need to wait
        // a slice. One cheap system call; a zombie holder is caught by the checks between
        // slices, which read its state.)
        let mut checked = false;
        let mut slice = FIRST_CHECK;
        loop {
            let c = self.state.load(Ordering::Relaxed);
            if !checked && c != 0 {
                checked = true;
                if !sys::pid_exists(pid_of(c)) {
                    if let Some(r) = self.take_over(c) {
                        return r;
                    }
                    continue;
                }
            }
            if c == 0 {
                // Others may be sleeping: keep the flag so our release wakes one of them.
                if self
                    .state
                    .compare_exchange(0, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return LockResult::Acquired;
                }
                continue;
            }
            if c & WAITERS == 0
                && self
                    .state
                    .compare_exchange(c, c | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let left = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        // a last look, with the full liveness check (a short timeout ends
                        // before the first check between slices)
                        return self.try_lock();
                    }
                    (d - now).min(slice)
                }
                None => slice,
            };
            if !sys::futex_wait_low(&self.state, (c | WAITERS) as u32, Some(left)) {
                slice = (slice * 2).min(LIVENESS_CHECK);
                // Slept a full slice: is the holder still there (and not someone who got its
                // pid since)?
                let now = self.state.load(Ordering::Relaxed);
                if now != 0 && !sys::identity_alive(now & !WAITERS) {
                    if let Some(r) = self.take_over(now) {
                        return r;
                    }
                }
            }
        }
    }

    /// Release. Any process may release (Python's `Lock` semantics); releasing an unlocked
    /// mutex is an error and changes nothing.
    pub fn unlock(&self) -> Result<(), NotLocked> {
        let c = self.state.swap(0, Ordering::Release);
        if c == 0 {
            return Err(NotLocked);
        }
        if c & WAITERS != 0 {
            sys::futex_wake_low(&self.state, 1);
        }
        Ok(())
    }

    /// Whether some process holds the lock now.
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != 0
    }

    /// The pid of the holder, if held.
    pub fn owner(&self) -> Option<u32> {
        self.holder().map(ProcessId::pid)
    }

    /// The holder, if held (ask it [`is_alive`](ProcessId::is_alive) to tell whether it died
    /// holding the lock).
    pub fn holder(&self) -> Option<ProcessId> {
        ProcessId::from_bits(self.state.load(Ordering::Relaxed) & !WAITERS)
    }
}

/// The pid half of a lock word.
fn pid_of(word: u64) -> u32 {
    (word & !WAITERS) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn threads_count_exactly() {
        let m = Arc::new(RawMutex::new());
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (m, c) = (m.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        assert!(m.lock().acquired());
                        // non-atomic read-modify-write under the lock
                        let v = c.load(Ordering::Relaxed);
                        c.store(v + 1, Ordering::Relaxed);
                        m.unlock().unwrap();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::Relaxed), 40_000);
    }

    #[test]
    fn timeout_expires_while_held() {
        let m = RawMutex::new();
        assert_eq!(m.lock(), LockResult::Acquired);
        let t = Instant::now();
        assert_eq!(
            m.lock_timeout(Duration::from_millis(30)),
            LockResult::TimedOut
        );
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert_eq!(m.owner(), Some(std::process::id()));
    }

    #[test]
    fn dead_owner_is_detected() {
        let m = RawMutex::new();
        // a pid that cannot exist (above the kernel's pid_max limit of 2^22)
        m.state.store((1 << 22) + 5, Ordering::Relaxed);
        assert_eq!(
            m.lock_timeout(Duration::from_secs(5)),
            LockResult::OwnerDied
        );
        assert_eq!(m.owner(), Some(std::process::id()));
        assert_eq!(m.holder(), Some(ProcessId::current()));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_live_pid_with_another_start_time_is_a_dead_owner() {
        // our own pid, as recorded by a process of that pid that started at another time
        let m = RawMutex::new();
        let me = ProcessId::current().to_bits();
        m.state.store(me ^ (1 << 40), Ordering::Relaxed);
        assert_eq!(
            m.lock_timeout(Duration::from_secs(5)),
            LockResult::OwnerDied
        );
        assert_eq!(m.holder(), Some(ProcessId::current()));
        // and a non-blocking acquire takes such a lock over too (it used to fail for as long
        // as the pid existed, since it only asked whether the pid did)
        m.unlock().unwrap();
        m.state.store(me ^ (1 << 40), Ordering::Relaxed);
        assert_eq!(m.try_lock(), LockResult::OwnerDied);
        assert_eq!(m.holder(), Some(ProcessId::current()));
        // while a live holder's lock stays its own
        assert_eq!(m.try_lock(), LockResult::TimedOut);
        // a timeout shorter than the first liveness check takes it over as well
        m.unlock().unwrap();
        m.state.store(me ^ (1 << 40), Ordering::Relaxed);
        assert_eq!(m.lock_timeout(Duration::ZERO), LockResult::OwnerDied);
        assert_eq!(m.lock_timeout(Duration::ZERO), LockResult::TimedOut);
    }
}
