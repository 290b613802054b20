//! Wait until a 32-bit word in shared memory changes; wake those waiting on it.
//!
//! On Linux this is the futex system call in its *shared* form, so the word may live in memory
//! mapped by several processes; on macOS `os_sync_wait_on_address` with its shared flag (14.4
//! and later) or `__ulock_wait` with `UL_COMPARE_AND_WAIT_SHARED` before, chosen at run time. Callers call [`wait`] only when they must sleep; a [`wake`] with
//! nobody waiting costs one system call, which callers avoid by keeping a "someone waits" flag
//! (see [`RawMutex`](crate::RawMutex)).
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! let w = AtomicU32::new(0);
//! // the value is not 1: returns at once
//! assert!(multiproc::shm::futex::wait_timeout(&w, 1, Duration::from_secs(1)));
//! // the value is 0 and nobody changes it: times out
//! assert!(!multiproc::shm::futex::wait_timeout(&w, 0, Duration::from_millis(5)));
//! w.store(1, Ordering::Release);
//! multiproc::shm::futex::wake(&w, 1);
//! ```

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleep while `*word == expected`, with no time limit. Returns when woken, when the value
/// differed, or on a spurious wake-up: callers re-check their condition in a loop.
pub fn wait(word: &AtomicU32, expected: u32) {
    crate::sys::futex_wait(word, expected, None);
}

/// Sleep while `*word == expected`, at most `timeout`. Returns `false` only when the timeout
/// expired; `true` means woken, or the value differed, or a spurious wake-up: callers re-check
/// their condition in a loop.
pub fn wait_timeout(word: &AtomicU32, expected: u32, timeout: Duration) -> bool {
    crate::sys::futex_wait(word, expected, Some(timeout))
}

/// Wake up to `n` processes or threads sleeping in [`wait`] on `word`; how many woke. 0 means
/// nobody slept there; on macOS, whose wake-all cannot count, a wake of all (`n ≥ 2^31 - 1`)
/// that woke some returns 1.
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    crate::sys::futex_wake(word, n)
}

/// Wake everyone sleeping on `word`; 0 if nobody slept there (see [`wake`] for the count).
pub fn wake_all(word: &AtomicU32) -> usize {
    crate::sys::futex_wake(word, u32::MAX)
}
