//! `Queue` and `JoinableQueue`: FIFO queues on the server, behind [`QueueProxy`] and
//! [`JoinableQueueProxy`].
//!
//! Items are kept encoded (the server needs no knowledge of their type) and may hold proxies,
//! which stay alive while they wait in the queue. A blocking `put` or `get` blocks only its own
//! connection on the server, and stops when its caller hangs up: a `get` whose process died
//! while it waited takes nothing, so the item stays for the next `get`.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{ManagerError, ServerError};
use crate::proxy::{typed_proxy_serde, Proxy};
use crate::server::object::{decode_op, CallCtx, ServerObject};
use crate::wait::{wait_until, Wait};
use crate::wire::{Id, Reply, Stored};
use crate::Manager;

pub(crate) const TYPE: &str = "Queue";
pub(crate) const JOINABLE: &str = "JoinableQueue";

#[derive(Serialize, Deserialize)]
enum Op {
    Put(Stored, Wait),
    Get(Wait),
    Len,
    IsFull,
    Maxsize,
    TaskDone,
    Join(Wait),
}

struct State {
    items: VecDeque<Stored>,
    /// 0: no bound.
    maxsize: u32,
    /// Items put and not yet marked done (`JoinableQueue`).
    unfinished: u64,
}

impl State {
    fn full(&self) -> bool {
        self.maxsize != 0 && self.items.len() >= self.maxsize as usize
    }
}

/// The server's side of a queue.
struct QueueObject {
    type_name: &'static str,
    st: Mutex<State>,
    /// Signalled when an item comes, a slot frees, or every task is done.
    changed: Condvar,
}

fn make(type_name: &'static str, init: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    let maxsize: u32 = decode_op(&init.bytes.0)?;
    Ok(Arc::new(QueueObject {
        type_name,
        st: Mutex::new(State {
            items: VecDeque::new(),
            maxsize,
            unfinished: 0,
        }),
        changed: Condvar::new(),
    }))
}

pub(crate) fn construct(init: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    make(TYPE, init)
}

pub(crate) fn construct_joinable(init: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    make(JOINABLE, init)
}

impl ServerObject for QueueObject {
    fn type_name(&self) -> &str {
        self.type_name
    }

    fn drain(&self) -> Vec<Id> {
        let mut st = self.st.lock();
        st.items.drain(..).flat_map(|s| s.refs).collect()
    }

    fn call(&self, op: &[u8], ctx: &mut CallCtx<'_>) -> Result<Reply, ServerError> {
        let op: Op = decode_op(op)?;
        let mut st = self.st.lock();
        match op {
            Op::Put(item, wait) => {
                if !wait_until(ctx, &self.changed, &mut st, wait, |st| !st.full())? {
                    return Err(ServerError::Full);
                }
                ctx.keep(&item)?;
                st.items.push_back(item);
                st.unfinished += 1;
                self.changed.notify_all();
                Reply::plain(&())
            }
            Op::Get(wait) => {
                if !wait_until(ctx, &self.changed, &mut st, wait, |st| !st.items.is_empty())? {
                    return Err(ServerError::Empty);
                }
                let item = st.items.pop_front().expect("waited for an item");
                self.changed.notify_all();
                drop(st);
                let mut out = ctx.out();
                out.value(&item);
                // the reply takes the caller's references before the queue's go
                ctx.release(item);
                ctx.finish(out)
            }
            Op::Len => Reply::plain(&(st.items.len() as u64)),
            Op::IsFull => Reply::plain(&st.full()),
            Op::Maxsize => Reply::plain(&st.maxsize),
            Op::TaskDone => {
                if st.unfinished == 0 {
                    return Err(ServerError::NotHeld(
                        "task_done() called more times than there were items".into(),
                    ));
                }
                st.unfinished -= 1;
                if st.unfinished == 0 {
                    self.changed.notify_all();
                }
                Reply::plain(&())
            }
            Op::Join(wait) => {
                let done = wait_until(ctx, &self.changed, &mut st, wait, |st| st.unfinished == 0)?;
                Reply::plain(&done)
            }
        }
    }
}

fn put<T: Serialize>(core: &Proxy, value: &T, wait: Wait) -> Result<(), ManagerError> {
    core.call(&Op::Put(Stored::of(value)?, wait))
}

/// The methods both queue proxies have, with their docs.
macro_rules! queue_methods {
    ($make:literal) => {
        /// Put `value` at the back, waiting as long as it takes for room (Python's `put`).
        ///
        /// ```
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// q.put(7).unwrap();
        /// assert_eq!(q.get().unwrap(), 7);
        /// ```
        pub fn put(&self, value: T) -> Result<(), ManagerError> {
            put(&self.core, &value, Wait::Forever)
        }

        /// Put `value` if there is room now; [`ServerError::Full`] if not (Python's
        /// `put_nowait`).
        ///
        /// ```
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// q.try_put(1).unwrap();
        /// ```
        pub fn try_put(&self, value: T) -> Result<(), ManagerError> {
            put(&self.core, &value, Wait::Now)
        }

        /// Put `value`, waiting at most `timeout` for room; [`ServerError::Full`] if none came
        /// (Python's `put(value, timeout=...)`).
        ///
        /// ```
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// q.put_timeout(1, std::time::Duration::from_millis(10)).unwrap();
        /// ```
        pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), ManagerError> {
            put(&self.core, &value, Wait::For(timeout))
        }

        /// Take the item at the front, waiting as long as it takes for one (Python's `get`).
        /// It ends with the item, or with an error if the server goes
        /// ([`ManagerError::ServerGone`]) or shuts down.
        ///
        /// ```
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// q.put(3).unwrap();
        /// assert_eq!(q.get().unwrap(), 3);
        /// ```
        pub fn get(&self) -> Result<T, ManagerError> {
            self.core.call(&Op::Get(Wait::Forever))
        }

        /// Take the item at the front if there is one now; [`ServerError::Empty`] if not
        /// (Python's `get_nowait`).
        ///
        /// ```
        /// use multiproc::managers::ServerError;
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// let e = q.try_get().unwrap_err();
        /// assert_eq!(e.server_error(), Some(&ServerError::Empty));
        /// ```
        pub fn try_get(&self) -> Result<T, ManagerError> {
            self.core.call(&Op::Get(Wait::Now))
        }

        /// Take the item at the front, waiting at most `timeout`; [`ServerError::Empty`] if
        /// none came (Python's `get(timeout=...)`).
        ///
        /// ```
        /// use std::time::Duration;
        /// use multiproc::managers::ServerError;
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// let e = q.get_timeout(Duration::from_millis(10)).unwrap_err();
        /// assert_eq!(e.server_error(), Some(&ServerError::Empty));
        /// ```
        pub fn get_timeout(&self, timeout: Duration) -> Result<T, ManagerError> {
            self.core.call(&Op::Get(Wait::For(timeout)))
        }

        /// The number of items now (Python's `qsize`).
        ///
        /// ```
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// q.put(1).unwrap();
        /// assert_eq!(q.len().unwrap(), 1);
        /// ```
        pub fn len(&self) -> Result<usize, ManagerError> {
            Ok(self.core.call::<_, u64>(&Op::Len)? as usize)
        }

        /// Whether there are no items now (Python's `empty`).
        ///
        /// ```
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// assert!(q.is_empty().unwrap());
        /// ```
        pub fn is_empty(&self) -> Result<bool, ManagerError> {
            Ok(self.len()? == 0)
        }

        /// Whether the queue holds `maxsize` items now (Python's `full`; never for a queue
        /// without a bound).
        ///
        /// ```
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// assert!(!q.is_full().unwrap());
        /// ```
        pub fn is_full(&self) -> Result<bool, ManagerError> {
            self.core.call(&Op::IsFull)
        }

        /// The bound on the number of items (0: none).
        ///
        /// ```
        /// multiproc::init();
        /// let m = multiproc::Manager::start().unwrap();
        #[doc = $make]
        /// assert_eq!(q.maxsize().unwrap(), 0);
        /// ```
        pub fn maxsize(&self) -> Result<u32, ManagerError> {
            self.core.call(&Op::Maxsize)
        }
    };
}

/// A proxy of a FIFO queue on a manager's server: Python's `manager.Queue()`, typed, with the
/// method names of `multiproc::Queue` (the shared-memory queue),
/// so one can stand in for the other. Unlike the shared-memory queue it reaches processes that
/// are not children of its maker (and other hosts), and its items may hold proxies.
///
/// ```
/// use multiproc::Process;
/// use multiproc::managers::QueueProxy;
///
/// fn produce(q: QueueProxy<u32>) {
///     for i in 0..3 {
///         q.put(i).unwrap();
///     }
/// }
///
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let q = m.queue::<u32>().unwrap();
/// let p = Process::new(produce, q.clone());
/// p.start().unwrap();
/// let got: Vec<u32> = (0..3).map(|_| q.get().unwrap()).collect();
/// assert_eq!(got, [0, 1, 2]);
/// assert_eq!(p.join().unwrap(), 0);
/// ```
pub struct QueueProxy<T> {
    core: Proxy,
    _t: PhantomData<fn() -> T>,
}

typed_proxy_serde!(QueueProxy<T>, TYPE);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    queue_methods!("let q = m.queue::<u32>().unwrap();");
}

/// A proxy of a joinable queue on a manager's server: Python's `manager.JoinableQueue()`, a
/// [`QueueProxy`] that also counts the items not yet marked done, for
/// [`join`](Self::join) to wait for.
///
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let q = m.joinable_queue::<String>().unwrap();
/// q.put("job".to_string()).unwrap();
/// assert!(!q.join_timeout(std::time::Duration::from_millis(10)).unwrap());
/// let job = q.get().unwrap();
/// q.task_done().unwrap();
/// assert!(q.join_timeout(std::time::Duration::from_secs(10)).unwrap());
/// # drop(job);
/// ```
pub struct JoinableQueueProxy<T> {
    core: Proxy,
    _t: PhantomData<fn() -> T>,
}

typed_proxy_serde!(JoinableQueueProxy<T>, JOINABLE);

impl<T: Serialize + DeserializeOwned> JoinableQueueProxy<T> {
    queue_methods!("let q = m.joinable_queue::<u32>().unwrap();");

    /// Mark one item taken by `get` as done (Python's `task_done`);
    /// [`ServerError::NotHeld`] when called more often than items were put.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.joinable_queue::<u8>().unwrap();
    /// assert!(q.task_done().is_err());
    /// q.put(1).unwrap();
    /// q.get().unwrap();
    /// q.task_done().unwrap();
    /// ```
    pub fn task_done(&self) -> Result<(), ManagerError> {
        self.core.call(&Op::TaskDone)
    }

    /// Wait until every item put has been marked done (Python's `join`). Returns `true`, as
    /// the shared-memory queue's `join` does.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.joinable_queue::<u8>().unwrap();
    /// assert!(q.join().unwrap()); // nothing put: done at once
    /// ```
    pub fn join(&self) -> Result<bool, ManagerError> {
        self.core.call(&Op::Join(Wait::Forever))
    }

    /// [`join`](Self::join), waiting at most `timeout`: whether every item was done by then.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.joinable_queue::<u8>().unwrap();
    /// q.put(1).unwrap();
    /// assert!(!q.join_timeout(std::time::Duration::from_millis(10)).unwrap());
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.core.call(&Op::Join(Wait::For(timeout)))
    }
}

impl Manager {
    /// A new empty queue on the server, with no bound on its length (Python's
    /// `manager.Queue()`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.queue::<(u32, String)>().unwrap();
    /// q.put((1, "one".into())).unwrap();
    /// assert_eq!(q.get().unwrap(), (1, "one".to_string()));
    /// ```
    pub fn queue<T: Serialize + DeserializeOwned>(&self) -> Result<QueueProxy<T>, ManagerError> {
        self.queue_with_maxsize(0)
    }

    /// A new empty queue that holds at most `maxsize` items (0: no bound); a `put` on a full
    /// queue waits (Python's `manager.Queue(maxsize)`).
    ///
    /// ```
    /// use multiproc::managers::ServerError;
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.queue_with_maxsize::<u8>(1).unwrap();
    /// q.put(1).unwrap();
    /// assert!(q.is_full().unwrap());
    /// assert_eq!(q.try_put(2).unwrap_err().server_error(), Some(&ServerError::Full));
    /// ```
    pub fn queue_with_maxsize<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: u32,
    ) -> Result<QueueProxy<T>, ManagerError> {
        Ok(QueueProxy {
            core: self.create(TYPE, Stored::of(&maxsize)?)?,
            _t: PhantomData,
        })
    }

    /// A new empty joinable queue, with no bound on its length (Python's
    /// `manager.JoinableQueue()`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.joinable_queue::<u8>().unwrap();
    /// assert!(q.is_empty().unwrap());
    /// ```
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(
        &self,
    ) -> Result<JoinableQueueProxy<T>, ManagerError> {
        self.joinable_queue_with_maxsize(0)
    }

    /// A new empty joinable queue that holds at most `maxsize` items (0: no bound).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.joinable_queue_with_maxsize::<u8>(4).unwrap();
    /// assert_eq!(q.maxsize().unwrap(), 4);
    /// ```
    pub fn joinable_queue_with_maxsize<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: u32,
    ) -> Result<JoinableQueueProxy<T>, ManagerError> {
        Ok(JoinableQueueProxy {
            core: self.create(JOINABLE, Stored::of(&maxsize)?)?,
            _t: PhantomData,
        })
    }
}
