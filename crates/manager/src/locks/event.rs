//! `Event`: a flag on the server that processes wait for.

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

pub(crate) const TYPE: &str = "Event";

#[derive(Serialize, Deserialize)]
enum Op {
    Set,
    Clear,
    IsSet,
    Wait(Wait),
}

struct EventObject {
    flag: Mutex<bool>,
    set: Condvar,
}

pub(crate) fn construct(_: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    Ok(Arc::new(EventObject {
        flag: Mutex::new(false),
        set: Condvar::new(),
    }))
}

impl ServerObject for EventObject {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn call(&self, op: &[u8], ctx: &mut CallCtx<'_>) -> Result<Reply, ServerError> {
        let op: Op = decode_op(op)?;
        let mut flag = self.flag.lock();
        match op {
            Op::Set => {
                *flag = true;
                self.set.notify_all();
                Reply::plain(&())
            }
            Op::Clear => {
                *flag = false;
                Reply::plain(&())
            }
            Op::IsSet => Reply::plain(&*flag),
            Op::Wait(wait) => Reply::plain(&wait_until(ctx, &self.set, &mut flag, wait, |f| *f)?),
        }
    }
}

/// A proxy of an event on a manager's server: Python's `manager.Event()`, with the methods of
/// the shared-memory `multiproc::Event`.
///
/// ```
/// use std::time::Duration;
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let e = m.event().unwrap();
/// assert!(!e.wait_timeout(Duration::from_millis(10)).unwrap());
/// e.set().unwrap();
/// assert!(e.wait().unwrap());
/// ```
pub struct EventProxy {
    core: Proxy,
    _t: std::marker::PhantomData<fn()>,
}

typed_proxy_serde!(EventProxy, TYPE);

impl EventProxy {
    /// Set the flag, waking every waiter.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let e = m.event().unwrap();
    /// e.set().unwrap();
    /// assert!(e.is_set().unwrap());
    /// ```
    pub fn set(&self) -> Result<(), ManagerError> {
        self.core.call(&Op::Set)
    }

    /// Clear the flag.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let e = m.event().unwrap();
    /// e.set().unwrap();
    /// e.clear().unwrap();
    /// assert!(!e.is_set().unwrap());
    /// ```
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.core.call(&Op::Clear)
    }

    /// Whether the flag is set.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(!m.event().unwrap().is_set().unwrap());
    /// ```
    pub fn is_set(&self) -> Result<bool, ManagerError> {
        self.core.call(&Op::IsSet)
    }

    /// Wait until the flag is set (as long as it takes, or until the server goes); `true`.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let e = m.event().unwrap();
    /// e.set().unwrap();
    /// assert!(e.wait().unwrap());
    /// ```
    pub fn wait(&self) -> Result<bool, ManagerError> {
        self.core.call(&Op::Wait(Wait::Forever))
    }

    /// Wait at most `timeout` for the flag; whether it is set.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let e = m.event().unwrap();
    /// assert!(!e.wait_timeout(std::time::Duration::from_millis(10)).unwrap());
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.core.call(&Op::Wait(Wait::For(timeout)))
    }
}

impl Manager {
    /// A new event on the server, not set (Python's `manager.Event()`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let e = m.event().unwrap();
    /// assert!(!e.is_set().unwrap());
    /// ```
    pub fn event(&self) -> Result<EventProxy, ManagerError> {
        Ok(EventProxy {
            core: self.create(TYPE, Stored::of(&())?)?,
            _t: std::marker::PhantomData,
        })
    }
}
