//! `Semaphore` and `BoundedSemaphore`: counters on the server.
//!
//! A `BoundedSemaphore` guards a resource (acquired and released by the same party), so the
//! server counts the permits each client session holds, and gives back those of a session that
//! ends (its process died): [`BoundedSemaphoreProxy::recovered`] counts them. A plain
//! `Semaphore` is also a signal (released by one process, acquired by another), so its permits
//! belong to nobody and none are given back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use crate::error::{ManagerError, ServerError};
use crate::proxy::{typed_proxy_serde, Proxy};
use crate::server::object::{decode_op, CallCtx, ServerObject};
use crate::wait::{wait_until, Wait};
use crate::wire::{Reply, Stored};
use crate::Manager;

pub(crate) const TYPE: &str = "Semaphore";
pub(crate) const BOUNDED: &str = "BoundedSemaphore";

#[derive(Serialize, Deserialize)]
enum Op {
    Acquire(Wait),
    Release,
    Value,
    Recovered,
}

struct State {
    value: u32,
    /// The initial value, for a `BoundedSemaphore`.
    bound: Option<u32>,
    /// Permits held per session (bounded only): their sum is `bound - value`.
    held: HashMap<u64, u32>,
    /// Permits given back from sessions that ended holding them.
    recovered: u64,
}

struct SemaphoreObject {
    type_name: &'static str,
    st: Mutex<State>,
    released: Condvar,
}

fn make(
    type_name: &'static str,
    init: Stored,
    bounded: bool,
) -> Result<Arc<dyn ServerObject>, ServerError> {
    let value: u32 = decode_op(&init.bytes.0)?;
    Ok(Arc::new(SemaphoreObject {
        type_name,
        st: Mutex::new(State {
            value,
            bound: bounded.then_some(value),
            held: HashMap::new(),
            recovered: 0,
        }),
        released: Condvar::new(),
    }))
}

pub(crate) fn construct(init: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    make(TYPE, init, false)
}

pub(crate) fn construct_bounded(init: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    make(BOUNDED, init, true)
}

impl ServerObject for SemaphoreObject {
    fn type_name(&self) -> &str {
        self.type_name
    }

    fn call(&self, op: &[u8], ctx: &mut CallCtx<'_>) -> Result<Reply, ServerError> {
        let op: Op = decode_op(op)?;
        let mut st = self.st.lock();
        match op {
            Op::Acquire(wait) => {
                if !wait_until(ctx, &self.released, &mut st, wait, |st| st.value > 0)? {
                    return Reply::plain(&false);
                }
                st.value -= 1;
                if st.bound.is_some() {
                    *st.held.entry(ctx.session).or_default() += 1;
                }
                Reply::plain(&true)
            }
            Op::Release => {
                match st.bound {
                    Some(bound) => {
                        if st.value >= bound {
                            return Err(ServerError::NotHeld(
                                "a BoundedSemaphore released too many times".into(),
                            ));
                        }
                        // the caller's permit, or (released on another's behalf) any holder's
                        let from = if st.held.contains_key(&ctx.session) {
                            Some(ctx.session)
                        } else {
                            st.held.keys().next().copied()
                        };
                        if let Some(s) = from {
                            let n = st.held.get_mut(&s).expect("a holder");
                            *n -= 1;
                            if *n == 0 {
                                st.held.remove(&s);
                            }
                        }
                        st.value += 1;
                    }
                    None => st.value = st.value.checked_add(1).ok_or(ServerError::Overflow)?,
                }
                self.released.notify_all();
                Reply::plain(&())
            }
            Op::Value => Reply::plain(&st.value),
            Op::Recovered => Reply::plain(&st.recovered),
        }
    }

    fn session_ended(&self, session: u64) {
        let mut st = self.st.lock();
        if let Some(n) = st.held.remove(&session) {
            tracing::warn!(
                session,
                permits = n,
                "a client ended holding permits of a managed BoundedSemaphore: given back"
            );
            st.value += n;
            st.recovered += u64::from(n);
            self.released.notify_all();
        }
    }
}

fn acquire(core: &Proxy, wait: Wait) -> Result<bool, ManagerError> {
    core.call(&Op::Acquire(wait))
}

/// The methods both semaphore proxies have, with their docs.
macro_rules! semaphore_methods {
    ($make:literal) => {
        /// Take a permit, waiting as long as it takes for one (Python's `acquire()`); `true`
        /// (as the shared-memory semaphore's). Ends with an error if the server goes.
        ///
        /// ```
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// assert!(s.acquire().unwrap());
        /// ```
        pub fn acquire(&self) -> Result<bool, ManagerError> {
            acquire(&self.core, Wait::Forever)
        }

        /// Take a permit, waiting at most `timeout`; whether it got one.
        ///
        /// ```
        /// use std::time::Duration;
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// assert!(s.acquire_timeout(Duration::from_secs(1)).unwrap());
        /// assert!(!s.acquire_timeout(Duration::from_millis(10)).unwrap());
        /// ```
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
            acquire(&self.core, Wait::For(timeout))
        }

        /// Take a permit only if one is free now (Python's `acquire(False)`).
        ///
        /// ```
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// assert!(s.try_acquire().unwrap());
        /// assert!(!s.try_acquire().unwrap());
        /// ```
        pub fn try_acquire(&self) -> Result<bool, ManagerError> {
            acquire(&self.core, Wait::Now)
        }

        /// The number of free permits now (Python's `get_value`).
        ///
        /// ```
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// assert_eq!(s.value().unwrap(), 1);
        /// ```
        pub fn value(&self) -> Result<u32, ManagerError> {
            self.core.call(&Op::Value)
        }
    };
}

/// A proxy of a semaphore on a manager's server: Python's `manager.Semaphore(n)`, with the
/// methods of the shared-memory `multiproc::Semaphore`. Any process may release it, more
/// often than it acquired (a signal).
///
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let s = m.semaphore(0).unwrap();
/// assert!(!s.try_acquire().unwrap());
/// s.release().unwrap();
/// assert!(s.try_acquire().unwrap());
/// ```
pub struct SemaphoreProxy {
    core: Proxy,
    _t: std::marker::PhantomData<fn()>,
}

typed_proxy_serde!(SemaphoreProxy, TYPE);

impl SemaphoreProxy {
    semaphore_methods!("let s = m.semaphore(1).unwrap();");

    /// Give a permit back (Python's `release`); wakes a waiter.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let s = m.semaphore(0).unwrap();
    /// s.release().unwrap();
    /// assert_eq!(s.value().unwrap(), 1);
    /// ```
    pub fn release(&self) -> Result<(), ManagerError> {
        self.core.call(&Op::Release)
    }
}

/// A proxy of a bounded semaphore on a manager's server: Python's
/// `manager.BoundedSemaphore(n)`, with the methods of the shared-memory
/// `multiproc::BoundedSemaphore`: releasing above the initial value is an error. The permits a
/// process holds when it ends (killed) are given back to the others.
///
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let s = m.bounded_semaphore(1).unwrap();
/// assert!(s.release().is_err()); // above the bound
/// assert!(s.acquire().unwrap());
/// s.release().unwrap();
/// ```
pub struct BoundedSemaphoreProxy {
    core: Proxy,
    _t: std::marker::PhantomData<fn()>,
}

typed_proxy_serde!(BoundedSemaphoreProxy, BOUNDED);

impl BoundedSemaphoreProxy {
    semaphore_methods!("let s = m.bounded_semaphore(1).unwrap();");

    /// Give a permit back; [`ServerError::NotHeld`] if that would go above the initial value.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let s = m.bounded_semaphore(2).unwrap();
    /// s.acquire().unwrap();
    /// s.release().unwrap();
    /// assert_eq!(s.value().unwrap(), 2);
    /// ```
    pub fn release(&self) -> Result<(), ManagerError> {
        self.core.call(&Op::Release)
    }

    /// How many permits the server has given back so far because the process holding them
    /// ended (the way a lock reports its dead owner).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let s = m.bounded_semaphore(2).unwrap();
    /// assert_eq!(s.recovered().unwrap(), 0);
    /// ```
    pub fn recovered(&self) -> Result<u64, ManagerError> {
        self.core.call(&Op::Recovered)
    }
}

impl Manager {
    /// A new semaphore on the server with `value` permits (Python's `manager.Semaphore(value)`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.semaphore(3).unwrap().value().unwrap(), 3);
    /// ```
    pub fn semaphore(&self, value: u32) -> Result<SemaphoreProxy, ManagerError> {
        Ok(SemaphoreProxy {
            core: self.create(TYPE, Stored::of(&value)?)?,
            _t: std::marker::PhantomData,
        })
    }

    /// A new bounded semaphore on the server with `value` permits, never more (Python's
    /// `manager.BoundedSemaphore(value)`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.bounded_semaphore(3).unwrap().value().unwrap(), 3);
    /// ```
    pub fn bounded_semaphore(&self, value: u32) -> Result<BoundedSemaphoreProxy, ManagerError> {
        Ok(BoundedSemaphoreProxy {
            core: self.create(BOUNDED, Stored::of(&value)?)?,
            _t: std::marker::PhantomData,
        })
    }
}
