//! Blocking waits on the server, shared by queues, locks and the other synchronization types.
//!
//! A call that waits (a queue's `get`, a lock's `acquire`) blocks only the thread of the
//! connection that made it. It sleeps on its object's condition variable for at most
//! [`TICK`] at a time, and between sleeps checks that its caller is still connected and the
//! server still serving: a caller that hung up (killed while it waited) gets nothing taken for
//! it, and a server that shuts down ends every wait. The caller's timeout travels with the
//! request ([`Wait`]).

use std::time::{Duration, Instant};

use parking_lot::{Condvar, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::error::ServerError;
use crate::server::object::CallCtx;

/// The longest a waiting call sleeps before it checks its caller and the server again.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// How long a call may wait: not at all (`try_`), at most a duration (`_timeout`), or as long
/// as it takes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) enum Wait {
    Now,
    For(Duration),
    Forever,
}

impl Wait {
    fn deadline(self) -> Deadline {
        match self {
            Wait::Now => Deadline::Now,
            Wait::For(d) => match Instant::now().checked_add(d) {
                Some(at) => Deadline::At(at),
                None => Deadline::Never,
            },
            Wait::Forever => Deadline::Never,
        }
    }
}

enum Deadline {
    Now,
    At(Instant),
    Never,
}

/// Wait on `cv` (guarding `guard`'s state) until `ready` says so: `Ok(true)`. `Ok(false)` when
/// `wait` ran out first; an error ([`ServerError::CallerGone`], [`ServerError::ShuttingDown`])
/// when the wait had to stop. `ready` is checked first, so `Wait::Now` never sleeps, and it
/// runs with the lock held: it may take what it waited for (an item, the lock).
pub(crate) fn wait_until<T>(
    ctx: &CallCtx<'_>,
    cv: &Condvar,
    guard: &mut MutexGuard<'_, T>,
    wait: Wait,
    mut ready: impl FnMut(&mut T) -> bool,
) -> Result<bool, ServerError> {
    let deadline = wait.deadline();
    loop {
        if ready(guard) {
            return Ok(true);
        }
        let sleep = match deadline {
            Deadline::Now => return Ok(false),
            Deadline::At(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                left.min(TICK)
            }
            Deadline::Never => TICK,
        };
        cv.wait_for(guard, sleep);
        // woken or a quiet tick: is anyone still waiting for this reply? (checked before
        // `ready` may take something for a caller that is gone)
        if let Some(e) = MutexGuard::unlocked(guard, || ctx.wait_ended()) {
            return Err(e);
        }
    }
}

/// This thread's identity, sent with the requests of a lock that has an owner (an `RLock`
/// is re-entered by the thread that holds it, not by its other threads): unique in this
/// process, and the server tells processes apart by their sessions.
pub(crate) fn thread_token() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TOKEN.with(|t| *t)
}
