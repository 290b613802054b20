//! Python's `multiprocessing.managers` for Rust: a server process owns objects, and other
//! processes (on this machine or others) call their methods through typed proxies.
//!
//! ```
//! use multiproc::Manager;
//!
//! multiproc::init();
//! let m = Manager::start().unwrap();
//! let d = m.dict::<String, i64>().unwrap();
//! d.set("x".to_string(), 1).unwrap();
//! assert_eq!(d.add("x".to_string(), 2).unwrap(), 3);
//! ```
//!
//! # The objects
//! [`DictProxy`] (Python's `dict`), [`ListProxy`] (`list`), [`ArrayProxy`] (`Array`: a list of
//! fixed length), [`ValueProxy`] (`Value`) and [`NamespaceProxy`] (`Namespace`: named fields,
//! each of its own type). Each offers atomic read-modify-write steps that run on every server
//! (`add` for numbers, `compare_and_set`), and `update_with(fn)` on a server of the same build.
//!
//! ```
//! use multiproc::managers::ListProxy;
//!
//! multiproc::init();
//! let m = multiproc::Manager::start().unwrap();
//! let ns = m.namespace().unwrap();
//! ns.set("results", &m.list::<u32>().unwrap()).unwrap();
//! let results: ListProxy<u32> = ns.get("results").unwrap();
//! results.push(7).unwrap();
//! let again: ListProxy<u32> = ns.get("results").unwrap();
//! assert_eq!(again.copy().unwrap(), [7]);
//! ```
//!
//! # What crosses the wire
//! Only typed requests, encoded with postcard: a client can create objects of the types the
//! server knows and call their operations, nothing else. The one exception is a function sent
//! to update a value in place (`update_with`): it is code of the same build, which a server
//! runs only if it was told to trust its clients with it (`allow_functions`; on for a server
//! [`Manager::start`] started, whose random key only this program's processes know, off for one
//! served on an address). Every connection first passes CPython's HMAC challenge on the key.
//!
//! # Values on the server
//! The server keeps values encoded and compares keys by their encoding: it needs to know
//! nothing about the program's types, so a server of another build (a separate binary serving
//! on a TCP port) holds dicts, lists and queues of any serde types. Arithmetic
//! ([`DictProxy::add`]) says the kind of number with the request.
//!
//! # Proxies inside values
//! A proxy is a serde value. Stored in another managed object (a dict of lists), it keeps its
//! object alive while it is stored, and reading it back gives a proxy of the same object, so
//! `d.get(&k)?.unwrap().push(1)` changes what every process sees (Python's silent copies of
//! nested values cannot happen). Sent anywhere else (a child's arguments, a pipe, a queue), it
//! takes a reference that travels with it and that its receiver claims; a proxy that is sent but
//! never received keeps its object until the server stops. Objects that refer to each other in a
//! cycle live until the server stops.
//!
//! # Queues and synchronization
//! [`QueueProxy`], [`JoinableQueueProxy`], [`LockProxy`], [`RLockProxy`], [`ConditionProxy`],
//! [`SemaphoreProxy`], [`BoundedSemaphoreProxy`], [`EventProxy`] and [`BarrierProxy`] have the
//! method names of the shared-memory types (`multiproc::Queue`, `multiproc::Lock`, ...), so one
//! can stand in for the other; every method returns a `Result`, as it is a call to the server.
//! A blocking call (`get`, `acquire`, `wait`) blocks only its own connection's thread on the
//! server (each calling thread has its own connection), carries its timeout with the request,
//! and ends when its caller hangs up (a killed process's `get` takes nothing), when the server
//! shuts down, or, on the client side, at once when the server dies. A lock is owned by a
//! process and a thread of it; when a process ends holding a lock, the lock is released and the
//! next acquirer gets [`LockResult::OwnerDied`].
//!
//! # Lifetimes and failure
//! An object lives while a proxy of it exists anywhere (the server counts references per
//! process, and drops a process's references when its connections close: a killed client
//! leaks nothing). If the server dies, every call fails at once with
//! [`ManagerError::ServerGone`]; nothing waits forever.
#![warn(missing_debug_implementations)]

mod array;
mod channel;
mod client;
mod dict;
mod error;
mod func;
mod list;
mod locks;
mod manager;
mod namespace;
mod numeric;
mod proxy;
mod queue;
mod refs;
mod register;
mod server;
mod shm_manager;
mod value;
mod wait;
mod wire;

use std::collections::HashMap;

pub use array::ArrayProxy;
pub use dict::DictProxy;
pub use error::{ManagerError, ServerError};
pub use list::ListProxy;
pub use locks::{
    BarrierProxy, BoundedSemaphoreProxy, ConditionLock, ConditionProxy, EventProxy, LockProxy,
    LockProxyGuard, RLockProxy, SemaphoreProxy,
};
pub use manager::{Manager, ManagerBuilder};
/// What a managed lock's acquire got (the type the shared-memory locks return).
pub use multiproc_shm::LockResult;
pub use namespace::NamespaceProxy;
pub use numeric::{NumKind, Number};
pub use proxy::Proxy;
pub use queue::{JoinableQueueProxy, QueueProxy};
pub use register::{CallError, Managed, Method, Methods, UserProxy};
pub use shm_manager::SharedMemoryManager;
pub use value::ValueProxy;

use server::object::Constructor;

/// The types every server knows.
pub(crate) fn builtin_types() -> HashMap<String, Constructor> {
    let mut t: HashMap<String, Constructor> = HashMap::new();
    t.insert(dict::TYPE.into(), dict::construct);
    t.insert(shm_manager::TYPE.into(), shm_manager::construct);
    t.insert(queue::TYPE.into(), queue::construct);
    t.insert(queue::JOINABLE.into(), queue::construct_joinable);
    t.insert(locks::LOCK.into(), locks::construct_lock);
    t.insert(locks::RLOCK.into(), locks::construct_rlock);
    t.insert(locks::CONDITION.into(), locks::construct_condition);
    t.insert(locks::SEMAPHORE.into(), locks::construct_semaphore);
    t.insert(
        locks::BOUNDED_SEMAPHORE.into(),
        locks::construct_bounded_semaphore,
    );
    t.insert(locks::EVENT.into(), locks::construct_event);
    t.insert(locks::BARRIER.into(), locks::construct_barrier);
    t.insert(list::TYPE.into(), list::construct);
    t.insert(list::ARRAY_TYPE.into(), list::construct_array);
    t.insert(namespace::TYPE.into(), namespace::construct);
    t.insert(value::TYPE.into(), value::construct);
    t
}
