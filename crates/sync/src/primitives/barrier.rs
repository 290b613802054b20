//! `Barrier`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use multiproc_pickle::FnRef;
use multiproc_shm::futex;
use serde::{Deserialize, Serialize};

use super::shared::{Shared, State};
use crate::word::{raw_mutex, Deadline, Held};
use crate::SyncError;

#[repr(C)]
#[derive(Default)]
pub(crate) struct BarrierState {
    /// Guards the rest (a few instructions at a time).
    m: AtomicU64,
    parties: AtomicU32,
    /// Arrived in the current cycle.
    count: AtomicU32,
    /// Bumped each time the barrier trips.
    generation: AtomicU32,
    /// Bumped by `reset`: waiters from before a reset leave with `BrokenBarrier`.
    epoch: AtomicU32,
    broken: AtomicU32,
    /// Bumped on every change waiters must see: what they sleep on.
    seq: AtomicU32,
}

// SAFETY: repr(C), atomics only.
unsafe impl State for BarrierState {}

/// Python's `multiprocessing.Barrier`: `parties` processes (or threads) wait until all have
/// arrived, then all go on.
///
/// `wait` returns the caller's arrival index (`0..parties`, the last one `parties - 1`). An
/// optional action (a plain `fn()`) runs once per cycle, in the process that arrives last,
/// before anyone is released. A timeout, [`abort`](Self::abort), [`reset`](Self::reset) while
/// some wait, or a panicking action break the barrier: waiters get
/// [`SyncError::BrokenBarrier`] until `reset`.
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Barrier, SyncError};
/// let b = Barrier::new(1).unwrap();
/// assert_eq!(b.wait(), Ok(0)); // one party: trips at once
/// let b2 = Barrier::new(2).unwrap();
/// assert_eq!(b2.wait_timeout(Duration::from_millis(10)), Err(SyncError::BrokenBarrier));
/// assert!(b2.broken());
/// b2.reset();
/// assert!(!b2.broken());
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Barrier {
    st: Shared<BarrierState>,
    action: Option<FnRef>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

impl Barrier {
    /// A barrier for `parties` (at least 1).
    pub fn new(parties: u32) -> Result<Barrier, SyncError> {
        if parties == 0 {
            return Err(SyncError::InvalidArgument(
                "a barrier needs at least one party",
            ));
        }
        let st = Shared::<BarrierState>::new()?;
        st.get().parties.store(parties, Ordering::Release);
        Ok(Barrier {
            st,
            action: None,
            timeout: None,
        })
    }

    /// Run `action` once each time the barrier trips (Python's `action=`).
    #[must_use = "the setting is on the barrier returned"]
    pub fn with_action(mut self, action: fn()) -> Barrier {
        self.action = Some(FnRef::of_action(action));
        self
    }

    /// The timeout of a `wait()` (Python's `timeout=`).
    #[must_use = "the setting is on the barrier returned"]
    pub fn with_timeout(mut self, timeout: Duration) -> Barrier {
        self.timeout = Some(timeout);
        self
    }

    /// The internal mutex (it guards a few instructions on the counters).
    fn lock(&self) -> Held<'_> {
        Held::lock(raw_mutex(&self.st.get().m))
    }

    fn bump(&self) {
        let st = self.st.get();
        st.seq.fetch_add(1, Ordering::Release);
        futex::wake_all(&st.seq);
    }

    /// [`wait_timeout`](Self::wait_timeout) with no bound: waits as long as it takes.
    pub fn wait(&self) -> Result<u32, SyncError> {
        self.wait_within(None)
    }

    /// Wait for the others, at most `timeout` (or the default timeout); the arrival index.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, SyncError> {
        self.wait_within(Some(timeout))
    }

    /// `wait` (`None`) or `wait_timeout` (`Some`).
    pub(crate) fn wait_within(&self, timeout: Option<Duration>) -> Result<u32, SyncError> {
        let st = self.st.get();
        let deadline = Deadline::after(timeout.or(self.timeout));
        let (index, generation, epoch) = {
            let _g = self.lock();
            if st.broken.load(Ordering::Relaxed) != 0 {
                return Err(SyncError::BrokenBarrier);
            }
            let index = st.count.fetch_add(1, Ordering::Relaxed);
            (
                index,
                st.generation.load(Ordering::Relaxed),
                st.epoch.load(Ordering::Relaxed),
            )
        };
        if index + 1 == st.parties.load(Ordering::Relaxed) {
            let ok = match self.action {
                Some(a) => {
                    // SAFETY: made by `of_action` in this build (a child from another build
                    // refuses to run before it could receive this barrier).
                    let f = unsafe { a.resolve_action() };
                    std::panic::catch_unwind(f).is_ok()
                }
                None => true,
            };
            {
                let _g = self.lock();
                if ok {
                    st.count.store(0, Ordering::Relaxed);
                    st.generation.fetch_add(1, Ordering::Relaxed);
                } else {
                    st.broken.store(1, Ordering::Relaxed);
                }
            }
            self.bump();
            return if ok {
                Ok(index)
            } else {
                Err(SyncError::BrokenBarrier)
            };
        }
        loop {
            let seq = st.seq.load(Ordering::Acquire);
            {
                let _g = self.lock();
                if st.generation.load(Ordering::Relaxed) != generation {
                    return Ok(index);
                }
                if st.broken.load(Ordering::Relaxed) != 0
                    || st.epoch.load(Ordering::Relaxed) != epoch
                {
                    return Err(SyncError::BrokenBarrier);
                }
            }
            let Some(left) = deadline.left() else {
                {
                    let _g = self.lock();
                    if st.generation.load(Ordering::Relaxed) != generation {
                        return Ok(index);
                    }
                    st.broken.store(1, Ordering::Relaxed);
                }
                self.bump();
                return Err(SyncError::BrokenBarrier);
            };
            match left {
                Some(t) => {
                    futex::wait_timeout(&st.seq, seq, t);
                }
                None => futex::wait(&st.seq, seq),
            }
        }
    }

    /// Break the barrier: current and future waiters get `BrokenBarrier` until `reset`.
    pub fn abort(&self) {
        {
            let _g = self.lock();
            self.st.get().broken.store(1, Ordering::Relaxed);
        }
        self.bump();
    }

    /// Back to the initial state; processes waiting now get `BrokenBarrier`.
    pub fn reset(&self) {
        {
            let st = self.st.get();
            let _g = self.lock();
            st.epoch.fetch_add(1, Ordering::Relaxed);
            st.count.store(0, Ordering::Relaxed);
            st.broken.store(0, Ordering::Relaxed);
        }
        self.bump();
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.st.get().parties.load(Ordering::Relaxed)
    }

    /// How many are waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.st.get().count.load(Ordering::Relaxed)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.st.get().broken.load(Ordering::Relaxed) != 0
    }
}
