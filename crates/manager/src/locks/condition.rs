//! `Condition`: a condition variable on the server, with a managed lock (its own `RLock`, or a
//! given [`LockProxy`]/[`RLockProxy`], as Python's `manager.Condition(lock)`).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use multiproc_shm::LockResult;
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use super::{Got, LockCore, LockObject, LockProxy, Owner, RLockProxy};
use crate::error::{ManagerError, ServerError};
use crate::proxy::{typed_proxy_serde, Proxy};
use crate::server::object::{decode_op, CallCtx, ServerObject};
use crate::wait::{thread_token, wait_until, Wait};
use crate::wire::{Id, Reply, Stored};
use crate::Manager;

pub(crate) const TYPE: &str = "Condition";

#[derive(Serialize, Deserialize)]
enum Op {
    Acquire(u64, Wait),
    Release(u64),
    Wait(u64, Wait),
    Notify(u64, u32),
}

#[derive(Default)]
struct Waiters {
    next: u64,
    /// Tickets of the waiters, oldest first.
    queue: VecDeque<u64>,
    /// Tickets notified and not yet gone.
    notified: HashSet<u64>,
}

/// The server's side of a condition: its waiters, and the lock it uses (another object of the
/// server, found by id on first use and kept alive by the reference the condition holds).
struct ConditionObject {
    lock_id: Id,
    lock: OnceLock<Arc<LockCore>>,
    waiters: Mutex<Waiters>,
    changed: Condvar,
}

pub(crate) fn construct(init: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    let [lock_id] = init.refs[..] else {
        return Err(ServerError::Malformed(
            "a condition is made with one lock".into(),
        ));
    };
    Ok(Arc::new(ConditionObject {
        lock_id,
        lock: OnceLock::new(),
        waiters: Mutex::new(Waiters::default()),
        changed: Condvar::new(),
    }))
}

impl ConditionObject {
    fn lock(&self, ctx: &CallCtx<'_>) -> Result<&Arc<LockCore>, ServerError> {
        if let Some(l) = self.lock.get() {
            return Ok(l);
        }
        let obj = ctx.object(self.lock_id)?;
        let core = obj
            .as_any()
            .and_then(|a| a.downcast_ref::<LockObject>())
            .map(|l| l.core.clone())
            .ok_or_else(|| ServerError::WrongType {
                id: self.lock_id,
                expected: "Lock or RLock".into(),
                actual: obj.type_name().to_owned(),
            })?;
        Ok(self.lock.get_or_init(|| core))
    }

    fn wait(&self, ctx: &CallCtx<'_>, who: Owner, wait: Wait) -> Result<bool, ServerError> {
        let lock = self.lock(ctx)?;
        if !lock.is_owned_by(who) {
            return Err(ServerError::NotHeld(
                "cannot wait on a condition without holding its lock".into(),
            ));
        }
        // a place among the waiters before the lock is let go: a notify made once it is free
        // sees us
        let ticket = {
            let mut w = self.waiters.lock();
            w.next += 1;
            let t = w.next;
            w.queue.push_back(t);
            t
        };
        let leave = |w: &mut Waiters| {
            w.queue.retain(|&t| t != ticket);
            w.notified.remove(&ticket)
        };
        let depth = match lock.release_all(who) {
            Ok(d) => d,
            Err(e) => {
                leave(&mut self.waiters.lock());
                return Err(e);
            }
        };
        let woken = {
            let mut w = self.waiters.lock();
            let r = wait_until(ctx, &self.changed, &mut w, wait, |w| {
                w.notified.contains(&ticket)
            });
            let notified = leave(&mut w);
            r.map(|_| notified)
        };
        // a caller that hung up (or a server shutting down) takes nothing back
        let woken = woken?;
        // take the lock back, notified or timed out
        match lock.acquire(ctx, who, Wait::Forever, depth)? {
            Got::TimedOut => unreachable!("an untimed acquire gets the lock"),
            Got::Acquired | Got::OwnerDied => {}
        }
        Ok(woken)
    }
}

impl ServerObject for ConditionObject {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn drain(&self) -> Vec<Id> {
        vec![self.lock_id]
    }

    fn call(&self, op: &[u8], ctx: &mut CallCtx<'_>) -> Result<Reply, ServerError> {
        match decode_op::<Op>(op)? {
            Op::Acquire(thread, wait) => Reply::plain(&self.lock(ctx)?.acquire(
                ctx,
                Owner::of(ctx, thread),
                wait,
                1,
            )?),
            Op::Release(thread) => {
                self.lock(ctx)?.release(Owner::of(ctx, thread))?;
                Reply::plain(&())
            }
            Op::Wait(thread, wait) => {
                Reply::plain(&self.wait(ctx, Owner::of(ctx, thread), wait)?)
            }
            Op::Notify(thread, n) => {
                if !self.lock(ctx)?.is_owned_by(Owner::of(ctx, thread)) {
                    return Err(ServerError::NotHeld(
                        "cannot notify on a condition without holding its lock".into(),
                    ));
                }
                let mut w = self.waiters.lock();
                let mut woken = 0u32;
                while woken < n {
                    let Some(t) = w.queue.pop_front() else { break };
                    w.notified.insert(t);
                    woken += 1;
                }
                if woken > 0 {
                    self.changed.notify_all();
                }
                Reply::plain(&woken)
            }
        }
    }
}

/// The lock of a condition: a managed [`LockProxy`] or [`RLockProxy`] (Python's
/// `manager.Condition(lock)`); made with `.into()` from either.
///
/// ```
/// use multiproc::managers::ConditionLock;
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let lock: ConditionLock = m.lock().unwrap().into();
/// let cond = m.condition_with(lock).unwrap();
/// # drop(cond);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConditionLock {
    /// A plain lock.
    Lock(LockProxy),
    /// A re-entrant lock.
    RLock(RLockProxy),
}

impl From<LockProxy> for ConditionLock {
    fn from(l: LockProxy) -> Self {
        ConditionLock::Lock(l)
    }
}

impl From<RLockProxy> for ConditionLock {
    fn from(l: RLockProxy) -> Self {
        ConditionLock::RLock(l)
    }
}

/// A proxy of a condition variable on a manager's server: Python's `manager.Condition()`, with
/// the methods of the shared-memory `multiproc::Condition`. Its lock is held with
/// [`acquire`](Self::acquire) / [`release`](Self::release) (or through the lock's own proxy);
/// [`wait`](Self::wait) lets it go while it waits and takes it back.
///
/// ```
/// use std::time::Duration;
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let cond = m.condition().unwrap();
/// assert!(cond.acquire().unwrap().acquired());
/// assert!(!cond.wait_timeout(Duration::from_millis(10)).unwrap()); // nobody notified
/// assert_eq!(cond.notify_all().unwrap(), 0);
/// cond.release().unwrap();
/// ```
pub struct ConditionProxy {
    core: Proxy,
    _t: std::marker::PhantomData<fn()>,
}

typed_proxy_serde!(ConditionProxy, TYPE);

impl ConditionProxy {
    fn acquire_with(&self, wait: Wait) -> Result<LockResult, ManagerError> {
        Ok(self
            .core
            .call::<_, Got>(&Op::Acquire(thread_token(), wait))?
            .into())
    }

    /// Acquire its lock, waiting as long as it takes; [`LockResult::OwnerDied`] if its last
    /// holder's process ended holding it.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let cond = m.condition().unwrap();
    /// assert!(cond.acquire().unwrap().acquired());
    /// cond.release().unwrap();
    /// ```
    pub fn acquire(&self) -> Result<LockResult, ManagerError> {
        self.acquire_with(Wait::Forever)
    }

    /// Acquire its lock, waiting at most `timeout`.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let cond = m.condition().unwrap();
    /// let r = cond.acquire_timeout(std::time::Duration::from_secs(1)).unwrap();
    /// assert!(r.acquired());
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockResult, ManagerError> {
        self.acquire_with(Wait::For(timeout))
    }

    /// Release its lock.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let cond = m.condition().unwrap();
    /// assert!(cond.release().is_err()); // not held
    /// ```
    pub fn release(&self) -> Result<(), ManagerError> {
        self.core.call(&Op::Release(thread_token()))
    }

    /// [`wait_timeout`](Self::wait_timeout) with no bound: waits until notified (or the server
    /// goes).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let cond = m.condition().unwrap();
    /// assert!(cond.wait().is_err()); // the lock is not held
    /// ```
    pub fn wait(&self) -> Result<bool, ManagerError> {
        self.core.call(&Op::Wait(thread_token(), Wait::Forever))
    }

    /// Let go of the lock, wait until notified or `timeout` passes, take the lock back; whether
    /// it was notified. [`ServerError::NotHeld`] if the lock is not held.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let cond = m.condition().unwrap();
    /// cond.acquire().unwrap();
    /// assert!(!cond.wait_timeout(std::time::Duration::from_millis(1)).unwrap());
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.core
            .call(&Op::Wait(thread_token(), Wait::For(timeout)))
    }

    /// Wait until `predicate()` is true, at most `timeout` in all (`None`: no bound); the
    /// predicate's last value. The lock must be held; `predicate` runs here, with it held.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let cond = m.condition().unwrap();
    /// cond.acquire().unwrap();
    /// assert!(cond.wait_for(|| true, None).unwrap());
    /// ```
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, ManagerError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if predicate() {
                return Ok(true);
            }
            match deadline {
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    self.wait_timeout(left)?;
                }
                None => {
                    self.wait()?;
                }
            }
        }
    }

    /// Wake the `n` oldest waiters (fewer if fewer wait); how many. The lock must be held.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let cond = m.condition().unwrap();
    /// cond.acquire().unwrap();
    /// assert_eq!(cond.notify(1).unwrap(), 0);
    /// ```
    pub fn notify(&self, n: u32) -> Result<u32, ManagerError> {
        self.core.call(&Op::Notify(thread_token(), n))
    }

    /// Wake every waiter; how many. The lock must be held.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let cond = m.condition().unwrap();
    /// cond.acquire().unwrap();
    /// assert_eq!(cond.notify_all().unwrap(), 0);
    /// ```
    pub fn notify_all(&self) -> Result<u32, ManagerError> {
        self.notify(u32::MAX)
    }
}

impl Manager {
    /// A new condition variable on the server with its own re-entrant lock (Python's
    /// `manager.Condition()`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let cond = m.condition().unwrap();
    /// cond.acquire().unwrap();
    /// cond.release().unwrap();
    /// ```
    pub fn condition(&self) -> Result<ConditionProxy, ManagerError> {
        self.condition_with(self.rlock()?)
    }

    /// A new condition variable on the server using `lock`, a managed lock of the same server
    /// (Python's `manager.Condition(lock)`): holding the lock through its own proxy holds the
    /// condition's.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let lock = m.lock().unwrap();
    /// let cond = m.condition_with(lock.clone()).unwrap();
    /// lock.acquire().unwrap();
    /// assert_eq!(cond.notify_all().unwrap(), 0); // the lock is held: allowed
    /// lock.release().unwrap();
    /// ```
    pub fn condition_with(
        &self,
        lock: impl Into<ConditionLock>,
    ) -> Result<ConditionProxy, ManagerError> {
        // the lock's proxy lives until the condition holds its own reference
        let lock = lock.into();
        let (init, address) = match &lock {
            ConditionLock::Lock(l) => (Stored::of(l)?, l.proxy().address().clone()),
            ConditionLock::RLock(l) => (Stored::of(l)?, l.proxy().address().clone()),
        };
        if &address != self.address() {
            return Err(ServerError::Malformed(format!(
                "the lock of a condition must live on the same server (it is on {address})"
            ))
            .into());
        }
        let core = self.create(TYPE, init)?;
        drop(lock);
        Ok(ConditionProxy {
            core,
            _t: std::marker::PhantomData,
        })
    }
}
