//! A worker's control block: two words of shared memory between the pool and one worker, by
//! which the pool takes back units the worker has not started (work stealing) and learns, when
//! the worker dies, which item it was running.
//!
//! Messages on a worker's pipe are numbered by the order they were sent (`u32`, wrapping); the
//! worker counts them as it reads them.
//!
//! * `CLAIM` = `[revoked_below: u32][started: u32]` (high, low). Before it runs message `m`, the
//!   worker compare-and-swaps the word to `[m][m + 1]`, unless `m` is below `revoked_below`: then
//!   the pool has taken it back and the worker skips it. The pool revokes everything sent so far
//!   and not started by a compare-and-swap that raises `revoked_below` to the next message's
//!   number; the `started` it replaced says exactly which messages had started. Both sides
//!   change the word only by compare-and-swap, so a unit is either started by the worker or
//!   taken back by the pool, never both, whatever instant either dies at.
//! * `MARK` = `[message: u32][item: u32]`: the worker stores it before each item of a unit (and
//!   `item = n` once all `n` have run), so after a death the pool knows which item was running.
//!   One plain store per item on a cache line only this worker writes.

use std::sync::atomic::{AtomicU64, Ordering};

use multiproc_shm::RawArray;
use serde::{Deserialize, Serialize};

use crate::PoolError;

const CLAIM: usize = 0;
const MARK: usize = 8; // (its own cache line: the pool reads it only after a death)
const WORDS: usize = 16;

fn pack(hi: u32, lo: u32) -> u64 {
    (u64::from(hi) << 32) | u64::from(lo)
}

fn unpack(w: u64) -> (u32, u32) {
    ((w >> 32) as u32, w as u32)
}

/// `a < b` for message numbers that wrap (they are never 2^31 apart).
pub(crate) fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// One worker's control block (a clone is the same memory).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Control {
    words: RawArray<u64>,
}

impl Control {
    pub(crate) fn new() -> Result<Control, PoolError> {
        let words = RawArray::new(WORDS).map_err(PoolError::start)?;
        Ok(Control { words })
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        self.words.atomic(i).expect("control words are in range")
    }

    /// Worker side: may message `m` run? If so it is recorded as started.
    pub(crate) fn claim(&self, m: u32) -> bool {
        let w = self.word(CLAIM);
        let mut cur = w.load(Ordering::Acquire);
        loop {
            let (revoked_below, _) = unpack(cur);
            if before(m, revoked_below) {
                return false;
            }
            match w.compare_exchange_weak(
                cur,
                // (`revoked_below` moves up to `m`: everything below it has been read, and a
                // stale mark must not look ahead of the numbers once they wrap)
                pack(m, m.wrapping_add(1)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Worker side: item `item` of message `m` is about to run (`item == n`: all have run).
    pub(crate) fn mark(&self, m: u32, item: u32) {
        self.word(MARK).store(pack(m, item), Ordering::Release);
    }

    /// Pool side: take back every message numbered below `next` that has not started. Returns
    /// the number of the first message taken back (all from it up to `next` are).
    pub(crate) fn revoke(&self, next: u32) -> u32 {
        let w = self.word(CLAIM);
        let mut cur = w.load(Ordering::Acquire);
        loop {
            let (_, started) = unpack(cur);
            match w.compare_exchange_weak(
                cur,
                pack(next, started),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return started,
                Err(now) => cur = now,
            }
        }
    }

    /// Pool side: the number after the last message the worker started.
    pub(crate) fn started(&self) -> u32 {
        unpack(self.word(CLAIM).load(Ordering::Acquire)).1
    }

    /// Pool side: the item of message `m` the worker marked last, if it marked one.
    pub(crate) fn marked_item(&self, m: u32) -> Option<u32> {
        let (msg, item) = unpack(self.word(MARK).load(Ordering::Acquire));
        (msg == m).then_some(item)
    }
}

/// A worker's control block and the number of the message it runs, for the chunk runner.
pub(crate) struct Running {
    pub(crate) control: Control,
    pub(crate) message: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_started_or_revoked_never_both() {
        let c = Control::new().unwrap();
        assert!(c.claim(0));
        assert_eq!(c.started(), 1);
        // messages 1 and 2 sent, none started: revoke both
        assert_eq!(c.revoke(3), 1);
        assert!(!c.claim(1));
        assert!(!c.claim(2));
        // a message sent after the revocation runs
        assert!(c.claim(3));
        assert_eq!(c.started(), 4);
        c.mark(3, 5);
        assert_eq!(c.marked_item(3), Some(5));
        assert_eq!(c.marked_item(2), None);
    }

    #[test]
    fn numbers_wrap() {
        assert!(before(u32::MAX, 0));
        assert!(!before(0, u32::MAX));
        let c = Control::new().unwrap();
        assert_eq!(c.revoke(u32::MAX), 0);
        assert!(c.claim(u32::MAX));
        assert_eq!(c.started(), 0);
        assert!(c.claim(0));
    }
}
