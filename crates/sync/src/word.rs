//! What the primitives and the queue ring share: deadlines, and the one-word mutexes inside
//! their shared state.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use multiproc_shm::RawMutex;

/// When an optional timeout runs out.
#[derive(Clone, Copy)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    pub(crate) fn after(timeout: Option<Duration>) -> Deadline {
        Deadline(timeout.map(|t| Instant::now() + t))
    }

    /// Already over: for the non-blocking calls.
    pub(crate) fn now() -> Deadline {
        Deadline(Some(Instant::now()))
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

/// The mutex whose word is `word` (a word of shared state used only as a mutex).
pub(crate) fn raw_mutex(word: &AtomicU64) -> &RawMutex {
    RawMutex::from_atomic(word)
}

/// A held `RawMutex`, released when dropped.
pub(crate) struct Held<'a>(pub(crate) &'a RawMutex);

impl<'a> Held<'a> {
    /// Take `m`, waiting as long as it takes. For mutexes that guard a few instructions on
    /// counters: a holder that died there left them consistent enough, so owner-died is
    /// accepted as acquired.
    pub(crate) fn lock(m: &'a RawMutex) -> Held<'a> {
        let _ = m.lock();
        Held(m)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}
