//! `PerProcess<T>`: process-wide state behind a lock that a forked child never waits for.
//!
//! A lock another thread held at the instant of a `fork` stays held for ever in the child (the
//! thread that would release it does not exist there), and the data behind it may be half
//! written. So a lock a forked child may reach cannot be a plain `static Mutex`: here the state
//! lives in a heap *slot* tagged with the pid of the process that made it. A process that finds
//! a slot of another pid (it is a forked child, forked by us or by anyone) installs a fresh slot
//! of its own and never touches the old one's lock: it only tries it, and if nobody held it at
//! the fork the inherited value is consistent and handed to `inherit` (to copy or to drop);
//! otherwise the old slot is left alone (leaked, a few bytes per fork). Slots are never freed,
//! so a pointer once loaded stays valid.
//!
//! The cost is one `getpid` per lock, which is why this is for registries (a process start,
//! a `current_process()`), not for hot paths.

use std::sync::atomic::{AtomicPtr, Ordering};

use parking_lot::{Mutex, MutexGuard};

struct Slot<T> {
    pid: u32,
    state: Mutex<T>,
}

/// A `Mutex<T>` per process: see the module docs.
pub(crate) struct PerProcess<T> {
    slot: AtomicPtr<Slot<T>>,
    /// The state a process starts with: built from the parent's (`Some` if it was consistent at
    /// the fork), or from nothing (`None`: first use, or the parent's was locked).
    inherit: fn(Option<&mut T>) -> T,
}

impl<T> PerProcess<T> {
    /// State made by `inherit` on first use in each process.
    pub(crate) const fn new(inherit: fn(Option<&mut T>) -> T) -> PerProcess<T> {
        PerProcess {
            slot: AtomicPtr::new(std::ptr::null_mut()),
            inherit,
        }
    }

    /// Lock this process's state (making it first if this process has none yet).
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.slot().state.lock()
    }

    /// Lock this process's state if no other thread holds it (for exit handlers, which must
    /// not wait).
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.slot().state.try_lock()
    }

    fn slot(&self) -> &Slot<T> {
        let me = crate::sys::getpid();
        let mut cur = self.slot.load(Ordering::Acquire);
        loop {
            // SAFETY: a non-null pointer here came from `Box::into_raw` below and its slot is
            // never freed (not even the parent's, in a child).
            if let Some(s) = unsafe { cur.as_ref() } {
                if s.pid == me {
                    return s;
                }
            }
            // First use in this process. The parent's state is used only if nobody held its
            // lock at the fork (then it is whole).
            // SAFETY: as above.
            let mut old = unsafe { cur.as_ref() }.and_then(|s| s.state.try_lock());
            let state = (self.inherit)(old.as_deref_mut());
            drop(old);
            let fresh = Box::into_raw(Box::new(Slot {
                pid: me,
                state: Mutex::new(state),
            }));
            match self
                .slot
                .compare_exchange(cur, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // The old slot stays allocated (and, if its lock was held, locked) for ever.
                    // SAFETY: just installed; slots are never freed.
                    return unsafe { &*fresh };
                }
                Err(now) => {
                    // Another thread of this process installed one first: use it.
                    // SAFETY: `fresh` was never shared.
                    drop(unsafe { Box::from_raw(fresh) });
                    cur = now;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_state_per_process_shared_by_its_threads() {
        static S: PerProcess<Vec<u32>> = PerProcess::new(|_| Vec::new());
        std::thread::scope(|s| {
            for i in 0..4 {
                s.spawn(move || S.lock().push(i));
            }
        });
        let mut v = S.lock().clone();
        v.sort_unstable();
        assert_eq!(v, [0, 1, 2, 3]);
    }
}
