//! Whether the current thread is inside a sender-side check (debug builds), so a value whose
//! serde impls have effects (a manager proxy counts references on its server) can tell a dry
//! run from a real encode or decode.

use std::cell::Cell;

thread_local! {
    static CHECKING: Cell<u32> = const { Cell::new(0) };
}

/// True while [`check_round_trip`](crate::check_round_trip) decodes, or
/// [`check_shape`](crate::check_shape) walks, a value on this thread: what is built then is
/// thrown away, so a `Deserialize` or `Serialize` impl with side effects (a manager proxy
/// claims or takes a reference on its server) must have none. Always false in release builds,
/// which make no such checks.
///
/// ```
/// assert!(!multiproc::pickle::is_checking());
/// ```
pub fn is_checking() -> bool {
    CHECKING.with(Cell::get) > 0
}

/// Marks the current thread as checking until dropped (nests; restores on unwind).
#[cfg(debug_assertions)]
pub(crate) struct Checking(());

#[cfg(debug_assertions)]
impl Checking {
    pub(crate) fn enter() -> Checking {
        CHECKING.with(|c| c.set(c.get() + 1));
        Checking(())
    }
}

#[cfg(debug_assertions)]
impl Drop for Checking {
    fn drop(&mut self) {
        CHECKING.with(|c| c.set(c.get() - 1));
    }
}
