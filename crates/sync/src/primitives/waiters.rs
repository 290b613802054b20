//! The waiting places of a `Condition`: who waits, since when, and whether it was notified.
//!
//! Each waiter takes a place before it releases the condition's lock: its [`ProcessId`], a
//! ticket (arrival order) and a state word it sleeps on. `notify(n)` marks the `n` oldest
//! places waiting *now* and wakes exactly those, so a notification belongs to the waiters
//! present when it was made, never to one that arrives later. A waiter that times out frees
//! its place, so no notification is spent on it; a waiter that died waiting is recognised by
//! its identity (a dead process, or a live one that only got its pid later), skipped and its
//! place reclaimed.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use multiproc_shm::{futex, ProcessId};

use super::shared::State;
use crate::word::{raw_mutex, Deadline, Held};
use crate::SyncError;

/// How many processes or threads may wait on one condition at the same time.
pub(crate) const PLACES: usize = 1024;

const FREE: u32 = 0;
const WAITING: u32 = 1;
const NOTIFIED: u32 = 2;

#[repr(C)]
struct Slot {
    /// The waiter ([`ProcessId`] bits), written before `state` leaves `FREE`.
    who: AtomicU64,
    /// Its arrival order, written with `who`.
    ticket: AtomicU64,
    /// `FREE`, `WAITING` or `NOTIFIED`: what the waiter sleeps on. Taken (`FREE` → `WAITING`)
    /// and notified (`WAITING` → `NOTIFIED`) under the table's mutex; given back (→ `FREE`) by
    /// its waiter alone, without it, or by whoever finds its waiter dead, under it.
    state: AtomicU32,
    _pad: AtomicU32,
}

/// The shared state of a `Condition`: a table of waiting places.
#[repr(C)]
pub(crate) struct Waiters {
    /// Guards taking and notifying places (a scan of the places in use at most).
    m: AtomicU64,
    next_ticket: AtomicU64,
    /// One past the highest place that may be in use.
    used: AtomicU32,
    _pad: AtomicU32,
    places: [Slot; PLACES],
}

// SAFETY: repr(C), atomics only (all-zero: no waiter, every place free), alignment 8.
unsafe impl State for Waiters {}

/// A place taken by [`Waiters::arrive`]: give it to [`Waiters::wait`] or [`Waiters::leave`].
#[must_use]
pub(crate) struct Place(usize);

impl Waiters {
    fn lock(&self) -> Held<'_> {
        Held::lock(raw_mutex(&self.m))
    }

    /// Take a place as a waiter (before releasing the condition's lock).
    pub(crate) fn arrive(&self) -> Result<Place, SyncError> {
        let _held = self.lock();
        let me = ProcessId::current().to_bits();
        let i = match self.free_place() {
            Some(i) => i,
            None => {
                self.reclaim_dead(me);
                self.free_place().ok_or(SyncError::TooManyWaiters(PLACES))?
            }
        };
        let p = &self.places[i];
        p.who.store(me, Ordering::Relaxed);
        p.ticket.store(
            self.next_ticket.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        // last: a waiter killed before this store leaves the place free
        p.state.store(WAITING, Ordering::Release);
        Ok(Place(i))
    }

    /// A free place (under the mutex), growing the part in use if needed.
    fn free_place(&self) -> Option<usize> {
        let mut used = (self.used.load(Ordering::Relaxed) as usize).min(PLACES);
        while used > 0 && self.places[used - 1].state.load(Ordering::Acquire) == FREE {
            used -= 1;
        }
        let i = self.places[..used]
            .iter()
            .position(|p| p.state.load(Ordering::Acquire) == FREE)
            .or_else(|| {
                (used < PLACES).then(|| {
                    used += 1;
                    used - 1
                })
            });
        self.used.store(used as u32, Ordering::Relaxed);
        i
    }

    /// Free the places of waiters that died (under the mutex).
    fn reclaim_dead(&self, me: u64) {
        let used = (self.used.load(Ordering::Relaxed) as usize).min(PLACES);
        for p in &self.places[..used] {
            let s = p.state.load(Ordering::Acquire);
            if s != FREE && !alive(p.who.load(Ordering::Relaxed), me) {
                let _ = p
                    .state
                    .compare_exchange(s, FREE, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    /// Give the place back without waiting.
    pub(crate) fn leave(&self, place: Place) {
        self.places[place.0].state.store(FREE, Ordering::Release);
    }

    /// Sleep on the place until it is notified or `deadline` passes, then give it back.
    /// Whether it was notified (a notification that races with the deadline counts).
    pub(crate) fn wait(&self, place: Place, deadline: Deadline) -> bool {
        let p = &self.places[place.0];
        loop {
            if p.state.load(Ordering::Acquire) == NOTIFIED {
                p.state.store(FREE, Ordering::Release);
                return true;
            }
            let Some(left) = deadline.left() else {
                return match p.state.compare_exchange(
                    WAITING,
                    FREE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => false,
                    Err(_) => {
                        // notified just now
                        p.state.store(FREE, Ordering::Release);
                        true
                    }
                };
            };
            match left {
                Some(t) => {
                    futex::wait_timeout(&p.state, WAITING, t);
                }
                None => futex::wait(&p.state, WAITING),
            }
        }
    }

    /// Notify the `n` oldest live waiters; how many were notified.
    pub(crate) fn notify(&self, n: u32) -> u32 {
        let _held = self.lock();
        let me = ProcessId::current().to_bits();
        let used = (self.used.load(Ordering::Relaxed) as usize).min(PLACES);
        let places = &self.places[..used];
        let waiting = places
            .iter()
            .filter(|p| p.state.load(Ordering::Acquire) == WAITING)
            .count();
        let mut k = 0;
        if n as usize >= waiting {
            // all of them: no order to keep
            for p in places {
                if self.mark(p, me) {
                    k += 1;
                }
            }
            return k;
        }
        while k < n {
            let oldest = places
                .iter()
                .filter(|p| p.state.load(Ordering::Acquire) == WAITING)
                .min_by_key(|p| p.ticket.load(Ordering::Relaxed));
            let Some(p) = oldest else { break };
            if self.mark(p, me) {
                k += 1;
            }
        }
        k
    }

    /// Notify the waiter at `p` if it waits and lives (under the mutex); free its place if it
    /// died. Whether it was notified.
    fn mark(&self, p: &Slot, me: u64) -> bool {
        if p.state.load(Ordering::Acquire) != WAITING {
            return false;
        }
        if !alive(p.who.load(Ordering::Relaxed), me) {
            // died waiting: counts for nothing, and its place is free again
            let _ = p
                .state
                .compare_exchange(WAITING, FREE, Ordering::AcqRel, Ordering::Relaxed);
            return false;
        }
        // (fails if it timed out just now)
        if p.state
            .compare_exchange(WAITING, NOTIFIED, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        futex::wake(&p.state, 1);
        true
    }
}

/// Whether waiter `who` lives (this process's waiters do, without asking).
fn alive(who: u64, me: u64) -> bool {
    who == me || ProcessId::from_bits(who).is_some_and(ProcessId::is_alive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitives::shared::Shared;
    use std::time::Duration;

    #[test]
    fn places_are_reused_and_the_part_in_use_stays_small() {
        let w = Shared::<Waiters>::new().unwrap();
        let w = w.get();
        for _ in 0..100 {
            let a = w.arrive().unwrap();
            let b = w.arrive().unwrap();
            assert_eq!((a.0, b.0), (0, 1));
            w.leave(a);
            assert!(!w.wait(b, Deadline::now()));
        }
        assert!(w.used.load(Ordering::Relaxed) <= 2);
        assert_eq!(w.notify(u32::MAX), 0);
    }

    #[test]
    fn a_full_table_is_an_error_and_a_notified_place_counts_once() {
        let w = Shared::<Waiters>::new().unwrap();
        let w = w.get();
        let places: Vec<Place> = (0..PLACES).map(|_| w.arrive().unwrap()).collect();
        assert_eq!(w.arrive().err(), Some(SyncError::TooManyWaiters(PLACES)));
        assert_eq!(w.notify(2), 2);
        let mut it = places.into_iter();
        // the two oldest were notified, even with their deadline passed
        assert!(w.wait(it.next().unwrap(), Deadline::now()));
        assert!(w.wait(it.next().unwrap(), Deadline::now()));
        assert!(!w.wait(
            it.next().unwrap(),
            Deadline::after(Some(Duration::from_millis(1)))
        ));
        for p in it {
            w.leave(p);
        }
        assert_eq!(w.notify(u32::MAX), 0);
        assert!(w.arrive().is_ok());
    }
}
