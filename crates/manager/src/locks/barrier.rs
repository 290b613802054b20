//! `Barrier`: a meeting point on the server for a fixed number of parties.
//!
//! A waiter whose process ends while it waits breaks the barrier, as a waiter that times out
//! does (Python): the others would otherwise wait for a party that never comes.

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

pub(crate) const TYPE: &str = "Barrier";

#[derive(Serialize, Deserialize)]
enum Op {
    Wait(Wait),
    Reset,
    Abort,
    Parties,
    NWaiting,
    Broken,
}

struct State {
    parties: u32,
    count: u32,
    /// Bumped each time the parties meet.
    generation: u64,
    /// Bumped by `reset`.
    epoch: u64,
    broken: bool,
}

struct BarrierObject {
    st: Mutex<State>,
    changed: Condvar,
}

pub(crate) fn construct(init: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    let parties: u32 = decode_op(&init.bytes.0)?;
    if parties == 0 {
        return Err(ServerError::Malformed(
            "a barrier needs at least one party".into(),
        ));
    }
    Ok(Arc::new(BarrierObject {
        st: Mutex::new(State {
            parties,
            count: 0,
            generation: 0,
            epoch: 0,
            broken: false,
        }),
        changed: Condvar::new(),
    }))
}

impl BarrierObject {
    fn wait(&self, ctx: &CallCtx<'_>, wait: Wait) -> Result<u32, ServerError> {
        let mut st = self.st.lock();
        if st.broken {
            return Err(ServerError::BrokenBarrier);
        }
        let index = st.count;
        st.count += 1;
        if st.count == st.parties {
            st.count = 0;
            st.generation += 1;
            self.changed.notify_all();
            return Ok(index);
        }
        let (generation, epoch) = (st.generation, st.epoch);
        let r = wait_until(ctx, &self.changed, &mut st, wait, |st| {
            st.generation != generation || st.broken || st.epoch != epoch
        });
        if st.generation != generation {
            return Ok(index);
        }
        if st.epoch == epoch && !st.broken {
            // timed out, or the caller or the server went: nobody else may wait in vain
            st.broken = true;
            self.changed.notify_all();
        }
        r?;
        Err(ServerError::BrokenBarrier)
    }
}

impl ServerObject for BarrierObject {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn call(&self, op: &[u8], ctx: &mut CallCtx<'_>) -> Result<Reply, ServerError> {
        let op: Op = decode_op(op)?;
        if let Op::Wait(wait) = op {
            return Reply::plain(&self.wait(ctx, wait)?);
        }
        let mut st = self.st.lock();
        match op {
            Op::Wait(_) => unreachable!("answered above"),
            Op::Reset => {
                st.epoch += 1;
                st.count = 0;
                st.broken = false;
                self.changed.notify_all();
                Reply::plain(&())
            }
            Op::Abort => {
                st.broken = true;
                self.changed.notify_all();
                Reply::plain(&())
            }
            Op::Parties => Reply::plain(&st.parties),
            Op::NWaiting => Reply::plain(&st.count),
            Op::Broken => Reply::plain(&st.broken),
        }
    }
}

/// A proxy of a barrier on a manager's server: Python's `manager.Barrier(parties)`, with the
/// methods of the shared-memory `multiproc::Barrier`. `wait` returns once `parties` callers
/// wait, each with its arrival index; a timeout, [`abort`](Self::abort), [`reset`](Self::reset)
/// or a waiter's process ending breaks it ([`ServerError::BrokenBarrier`]).
///
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let b = m.barrier(1).unwrap();
/// assert_eq!(b.wait().unwrap(), 0); // a party of one meets at once
/// assert_eq!(b.parties().unwrap(), 1);
/// ```
pub struct BarrierProxy {
    core: Proxy,
    _t: std::marker::PhantomData<fn()>,
}

typed_proxy_serde!(BarrierProxy, TYPE);

impl BarrierProxy {
    /// Wait for the other parties, as long as it takes; the arrival index (0 first).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let b = m.barrier(1).unwrap();
    /// assert_eq!(b.wait().unwrap(), 0);
    /// ```
    pub fn wait(&self) -> Result<u32, ManagerError> {
        self.core.call(&Op::Wait(Wait::Forever))
    }

    /// Wait at most `timeout`; when it runs out the barrier breaks and every waiter gets
    /// [`ServerError::BrokenBarrier`] (Python's behavior).
    ///
    /// ```
    /// use multiproc::managers::ServerError;
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let b = m.barrier(2).unwrap();
    /// let e = b.wait_timeout(std::time::Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(e.server_error(), Some(&ServerError::BrokenBarrier));
    /// assert!(b.broken().unwrap());
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, ManagerError> {
        self.core.call(&Op::Wait(Wait::For(timeout)))
    }

    /// Back to the initial state; parties waiting now get [`ServerError::BrokenBarrier`].
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let b = m.barrier(2).unwrap();
    /// b.abort().unwrap();
    /// b.reset().unwrap();
    /// assert!(!b.broken().unwrap());
    /// ```
    pub fn reset(&self) -> Result<(), ManagerError> {
        self.core.call(&Op::Reset)
    }

    /// Break the barrier: current and later waiters get [`ServerError::BrokenBarrier`] until
    /// [`reset`](Self::reset).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let b = m.barrier(2).unwrap();
    /// b.abort().unwrap();
    /// assert!(b.wait().is_err());
    /// ```
    pub fn abort(&self) -> Result<(), ManagerError> {
        self.core.call(&Op::Abort)
    }

    /// The number of parties.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.barrier(3).unwrap().parties().unwrap(), 3);
    /// ```
    pub fn parties(&self) -> Result<u32, ManagerError> {
        self.core.call(&Op::Parties)
    }

    /// How many wait now.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.barrier(3).unwrap().n_waiting().unwrap(), 0);
    /// ```
    pub fn n_waiting(&self) -> Result<u32, ManagerError> {
        self.core.call(&Op::NWaiting)
    }

    /// Whether the barrier is broken.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(!m.barrier(3).unwrap().broken().unwrap());
    /// ```
    pub fn broken(&self) -> Result<bool, ManagerError> {
        self.core.call(&Op::Broken)
    }
}

impl Manager {
    /// A new barrier on the server for `parties` callers (Python's `manager.Barrier(parties)`);
    /// [`ServerError::Malformed`] for 0.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.barrier(0).is_err());
    /// let b = m.barrier(2).unwrap();
    /// # drop(b);
    /// ```
    pub fn barrier(&self, parties: u32) -> Result<BarrierProxy, ManagerError> {
        Ok(BarrierProxy {
            core: self.create(TYPE, Stored::of(&parties)?)?,
            _t: std::marker::PhantomData,
        })
    }
}
