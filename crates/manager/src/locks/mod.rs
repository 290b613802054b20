//! Synchronization objects on the server: `Lock` and `RLock` (here), `Condition`,
//! `Semaphore`/`BoundedSemaphore`, `Event` and `Barrier` (in the submodules), behind proxies
//! with the method names of the shared-memory types of `multiproc` (`multiproc::Lock`, ...), so
//! one can stand in for the other.
//!
//! A lock's owner is a client session (a process) and a thread of it: the proxy sends its
//! thread's identity with each request, so an `RLock` is re-entered by the thread that holds it
//! and by no other. When a session ends while it holds a lock (its process was killed, or it
//! dropped its last proxy), the server releases the lock, and the next acquirer learns it:
//! [`LockResult::OwnerDied`], as the shared-memory locks report a dead holder.

mod barrier;
mod condition;
mod event;
mod semaphore;

pub use barrier::BarrierProxy;
pub use condition::{ConditionLock, ConditionProxy};
pub use event::EventProxy;
pub use semaphore::{BoundedSemaphoreProxy, SemaphoreProxy};

pub(crate) use barrier::{construct as construct_barrier, TYPE as BARRIER};
pub(crate) use condition::{construct as construct_condition, TYPE as CONDITION};
pub(crate) use event::{construct as construct_event, TYPE as EVENT};
pub(crate) use semaphore::{
    construct as construct_semaphore, construct_bounded as construct_bounded_semaphore,
    BOUNDED as BOUNDED_SEMAPHORE, TYPE as SEMAPHORE,
};

use std::sync::Arc;
use std::time::Duration;

use multiproc_shm::LockResult;
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use crate::error::{ManagerError, ServerError};
use crate::proxy::Proxy;
use crate::server::object::{decode_op, CallCtx, ServerObject};
use crate::wait::{thread_token, wait_until, Wait};
use crate::wire::{Reply, Stored};
use crate::Manager;

pub(crate) const LOCK: &str = "Lock";
pub(crate) const RLOCK: &str = "RLock";

/// Who holds a lock: a client session and a thread of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    session: u64,
    thread: u64,
}

impl Owner {
    pub(crate) fn of(ctx: &CallCtx<'_>, thread: u64) -> Owner {
        Owner {
            session: ctx.session,
            thread,
        }
    }
}

/// What an acquire got, as it crosses the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) enum Got {
    Acquired,
    OwnerDied,
    TimedOut,
}

impl From<Got> for LockResult {
    fn from(g: Got) -> LockResult {
        match g {
            Got::Acquired => LockResult::Acquired,
            Got::OwnerDied => LockResult::OwnerDied,
            Got::TimedOut => LockResult::TimedOut,
        }
    }
}

#[derive(Default)]
struct LockState {
    owner: Option<Owner>,
    /// How often the owner acquired it (1 for a `Lock`).
    depth: u32,
    /// The last holder's session ended holding it; the next acquirer is told.
    died: bool,
}

/// A lock's state on the server, shared with the conditions that use it.
pub(crate) struct LockCore {
    recursive: bool,
    st: Mutex<LockState>,
    /// Signalled when the lock is let go.
    freed: Condvar,
}

impl LockCore {
    fn new(recursive: bool) -> LockCore {
        LockCore {
            recursive,
            st: Mutex::new(LockState::default()),
            freed: Condvar::new(),
        }
    }

    /// Acquire for `who`, `depth` times at once (a condition's wait takes back the depth it
    /// let go).
    pub(crate) fn acquire(
        &self,
        ctx: &CallCtx<'_>,
        who: Owner,
        wait: Wait,
        depth: u32,
    ) -> Result<Got, ServerError> {
        let mut st = self.st.lock();
        if self.recursive && st.owner == Some(who) {
            st.depth = st.depth.checked_add(depth).ok_or(ServerError::Overflow)?;
            return Ok(Got::Acquired);
        }
        if !wait_until(ctx, &self.freed, &mut st, wait, |st| st.owner.is_none())? {
            return Ok(Got::TimedOut);
        }
        st.owner = Some(who);
        st.depth = depth;
        Ok(if std::mem::take(&mut st.died) {
            Got::OwnerDied
        } else {
            Got::Acquired
        })
    }

    /// Whether `who` may release it, or wait on a condition with it: for a `Lock` (which any
    /// thread may release, as in Python) that it is locked, for an `RLock` that `who` holds it.
    pub(crate) fn is_owned_by(&self, who: Owner) -> bool {
        let st = self.st.lock();
        if self.recursive {
            st.owner == Some(who)
        } else {
            st.owner.is_some()
        }
    }

    fn check(&self, st: &LockState, who: Owner) -> Result<(), ServerError> {
        match st.owner {
            None => Err(ServerError::NotHeld("release of an unlocked lock".into())),
            Some(o) if self.recursive && o != who => Err(ServerError::NotHeld(
                "cannot release an RLock another thread or process holds".into(),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Release once (an `RLock` is let go when its depth reaches 0).
    pub(crate) fn release(&self, who: Owner) -> Result<(), ServerError> {
        let mut st = self.st.lock();
        self.check(&st, who)?;
        st.depth = st.depth.saturating_sub(1);
        if st.depth == 0 || !self.recursive {
            st.owner = None;
            st.depth = 0;
            self.freed.notify_all();
        }
        Ok(())
    }

    /// Let go entirely, whatever the depth (a condition's wait); returns the depth.
    pub(crate) fn release_all(&self, who: Owner) -> Result<u32, ServerError> {
        let mut st = self.st.lock();
        self.check(&st, who)?;
        let depth = st.depth.max(1);
        st.owner = None;
        st.depth = 0;
        self.freed.notify_all();
        Ok(depth)
    }

    fn is_locked(&self) -> bool {
        self.st.lock().owner.is_some()
    }

    fn session_ended(&self, session: u64) {
        let mut st = self.st.lock();
        if st.owner.is_some_and(|o| o.session == session) {
            tracing::warn!(
                session,
                "a client ended holding a managed lock: released, the next acquirer is told"
            );
            st.owner = None;
            st.depth = 0;
            st.died = true;
            self.freed.notify_all();
        }
    }
}

#[derive(Serialize, Deserialize)]
enum Op {
    Acquire(u64, Wait),
    Release(u64),
    IsLocked,
    IsOwned(u64),
}

/// The server's side of a `Lock` or an `RLock`.
pub(crate) struct LockObject {
    type_name: &'static str,
    pub(crate) core: Arc<LockCore>,
}

pub(crate) fn construct_lock(_: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    Ok(Arc::new(LockObject {
        type_name: LOCK,
        core: Arc::new(LockCore::new(false)),
    }))
}

pub(crate) fn construct_rlock(_: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    Ok(Arc::new(LockObject {
        type_name: RLOCK,
        core: Arc::new(LockCore::new(true)),
    }))
}

impl ServerObject for LockObject {
    fn type_name(&self) -> &str {
        self.type_name
    }

    fn call(&self, op: &[u8], ctx: &mut CallCtx<'_>) -> Result<Reply, ServerError> {
        match decode_op::<Op>(op)? {
            Op::Acquire(thread, wait) => {
                Reply::plain(&self.core.acquire(ctx, Owner::of(ctx, thread), wait, 1)?)
            }
            Op::Release(thread) => {
                self.core.release(Owner::of(ctx, thread))?;
                Reply::plain(&())
            }
            Op::IsLocked => Reply::plain(&self.core.is_locked()),
            Op::IsOwned(thread) => {
                let who = Owner::of(ctx, thread);
                let st = self.core.st.lock();
                Reply::plain(&(st.owner == Some(who)))
            }
        }
    }

    fn session_ended(&self, session: u64) {
        self.core.session_ended(session);
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

fn acquire(core: &Proxy, wait: Wait) -> Result<LockResult, ManagerError> {
    Ok(core
        .call::<_, Got>(&Op::Acquire(thread_token(), wait))?
        .into())
}

/// Holds a managed [`LockProxy`] or [`RLockProxy`]; releases it when dropped (Python's
/// `with lock:`), as the shared-memory `multiproc::LockGuard` does. A release that fails on
/// drop (the server is gone) is logged.
///
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let lock = m.lock().unwrap();
/// {
///     let guard = lock.lock().unwrap();
///     assert!(!guard.owner_died());
///     assert!(lock.is_locked().unwrap());
/// }
/// assert!(!lock.is_locked().unwrap());
/// ```
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockProxyGuard<'a> {
    core: &'a Proxy,
    died: bool,
    /// Released by the thread that took it (an `RLock` belongs to its thread): not `Send`.
    _thread: std::marker::PhantomData<*const ()>,
}

impl LockProxyGuard<'_> {
    /// Whether the previous holder's process ended holding the lock (what it protected may be
    /// half-updated).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let lock = m.rlock().unwrap();
    /// assert!(!lock.lock().unwrap().owner_died());
    /// ```
    pub fn owner_died(&self) -> bool {
        self.died
    }
}

impl Drop for LockProxyGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.core.call::<_, ()>(&Op::Release(thread_token())) {
            tracing::warn!(error = %e, "releasing a managed lock on drop");
        }
    }
}

fn guard(core: &Proxy, r: LockResult) -> Option<LockProxyGuard<'_>> {
    match r {
        LockResult::TimedOut => None,
        r => Some(LockProxyGuard {
            core,
            died: r == LockResult::OwnerDied,
            _thread: std::marker::PhantomData,
        }),
    }
}

/// The methods both lock proxies have, with their docs.
macro_rules! lock_methods {
    ($make:literal) => {
        /// Acquire, waiting as long as it takes (Python's `acquire()`):
        /// [`LockResult::OwnerDied`] when the previous holder's process ended holding it. The
        /// wait ends with the lock, or with an error if the server goes.
        ///
        /// ```
        /// use multiproc::LockResult;
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// assert_eq!(lock.acquire().unwrap(), LockResult::Acquired);
        /// lock.release().unwrap();
        /// ```
        pub fn acquire(&self) -> Result<LockResult, ManagerError> {
            acquire(&self.core, Wait::Forever)
        }

        /// Acquire, waiting at most `timeout`: [`LockResult::TimedOut`] if it did not get it
        /// (Python's `acquire(timeout=...)`).
        ///
        /// ```
        /// use std::time::Duration;
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// assert!(lock.acquire_timeout(Duration::from_secs(1)).unwrap().acquired());
        /// lock.release().unwrap();
        /// ```
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockResult, ManagerError> {
            acquire(&self.core, Wait::For(timeout))
        }

        /// Acquire only if it is free now (Python's `acquire(False)`).
        ///
        /// ```
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// assert!(lock.try_acquire().unwrap().acquired());
        /// lock.release().unwrap();
        /// ```
        pub fn try_acquire(&self) -> Result<LockResult, ManagerError> {
            acquire(&self.core, Wait::Now)
        }

        /// Release; [`ServerError::NotHeld`] if it is not locked (for an `RLock`: not held by
        /// this thread).
        ///
        /// ```
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// assert!(lock.release().is_err());
        /// ```
        pub fn release(&self) -> Result<(), ManagerError> {
            self.core.call(&Op::Release(thread_token()))
        }

        /// Acquire (waiting as long as it takes) and release when the guard drops.
        ///
        /// ```
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// let g = lock.lock().unwrap();
        /// drop(g);
        /// ```
        pub fn lock(&self) -> Result<LockProxyGuard<'_>, ManagerError> {
            let r = self.acquire()?;
            Ok(guard(&self.core, r).expect("an untimed acquire gets the lock"))
        }

        /// [`lock`](Self::lock), waiting at most `timeout`: `None` if it did not get it.
        ///
        /// ```
        /// use std::time::Duration;
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// assert!(lock.lock_timeout(Duration::from_secs(1)).unwrap().is_some());
        /// ```
        pub fn lock_timeout(
            &self,
            timeout: Duration,
        ) -> Result<Option<LockProxyGuard<'_>>, ManagerError> {
            let r = self.acquire_timeout(timeout)?;
            Ok(guard(&self.core, r))
        }

        /// Whether some thread of some process holds it now.
        ///
        /// ```
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// assert!(!lock.is_locked().unwrap());
        /// ```
        pub fn is_locked(&self) -> Result<bool, ManagerError> {
            self.core.call(&Op::IsLocked)
        }
    };
}

/// A proxy of a lock on a manager's server: Python's `manager.Lock()`, with the methods of the
/// shared-memory `multiproc::Lock`. Not re-entrant; any thread or process may release it. When
/// a process ends holding it, the server releases it and the next acquirer gets
/// [`LockResult::OwnerDied`].
///
/// ```
/// use multiproc::LockResult;
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let lock = m.lock().unwrap();
/// assert_eq!(lock.acquire().unwrap(), LockResult::Acquired);
/// assert_eq!(lock.try_acquire().unwrap(), LockResult::TimedOut);
/// lock.release().unwrap();
/// ```
pub struct LockProxy {
    core: Proxy,
    _t: std::marker::PhantomData<fn()>,
}

crate::proxy::typed_proxy_serde!(LockProxy, LOCK);

impl LockProxy {
    lock_methods!("let lock = m.lock().unwrap();");
}

/// A proxy of a re-entrant lock on a manager's server: Python's `manager.RLock()`, with the
/// methods of the shared-memory `multiproc::RLock`. The thread that holds it may acquire it
/// again, and must release it as often; other threads and processes wait.
///
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let lock = m.rlock().unwrap();
/// let _a = lock.lock().unwrap();
/// let _b = lock.lock().unwrap(); // the same thread again
/// assert!(lock.is_owned().unwrap());
/// ```
pub struct RLockProxy {
    core: Proxy,
    _t: std::marker::PhantomData<fn()>,
}

crate::proxy::typed_proxy_serde!(RLockProxy, RLOCK);

impl RLockProxy {
    lock_methods!("let lock = m.rlock().unwrap();");

    /// Whether this thread holds it.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let lock = m.rlock().unwrap();
    /// assert!(!lock.is_owned().unwrap());
    /// ```
    pub fn is_owned(&self) -> Result<bool, ManagerError> {
        self.core.call(&Op::IsOwned(thread_token()))
    }
}

impl Manager {
    /// A new unlocked lock on the server (Python's `manager.Lock()`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let lock = m.lock().unwrap();
    /// assert!(!lock.is_locked().unwrap());
    /// ```
    pub fn lock(&self) -> Result<LockProxy, ManagerError> {
        Ok(LockProxy {
            core: self.create(LOCK, Stored::of(&())?)?,
            _t: std::marker::PhantomData,
        })
    }

    /// A new unlocked re-entrant lock on the server (Python's `manager.RLock()`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let lock = m.rlock().unwrap();
    /// assert!(!lock.is_locked().unwrap());
    /// ```
    pub fn rlock(&self) -> Result<RLockProxy, ManagerError> {
        Ok(RLockProxy {
            core: self.create(RLOCK, Stored::of(&())?)?,
            _t: std::marker::PhantomData,
        })
    }
}
