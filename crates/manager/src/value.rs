//! `value`: one value on the server, behind [`ValueProxy`] (Python's
//! `manager.Value(typecode, value)`).

use std::marker::PhantomData;
use std::sync::Arc;

use multiproc_pickle::{encode, Bytes};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{ManagerError, ServerError};
use crate::func::Func;
use crate::list::probe;
use crate::numeric::{self, NumKind, Number};
use crate::proxy::{typed_proxy_serde, Proxy};
use crate::server::object::{decode_op, CallCtx, ServerObject};
use crate::wire::{Id, Reply, Stored};
use crate::Manager;

pub(crate) const TYPE: &str = "value";

#[derive(Serialize, Deserialize)]
enum Op {
    Get,
    Set(Stored),
    Swap(Stored),
    Add(NumKind, Bytes),
    CompareAndSet(Bytes, Stored),
    Apply(Func),
}

/// The server's side of a value.
struct ValueObject(Mutex<Stored>);

pub(crate) fn construct(init: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    // the initial value is the whole state, its references already taken
    Ok(Arc::new(ValueObject(Mutex::new(init))))
}

impl ServerObject for ValueObject {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn drain(&self) -> Vec<Id> {
        std::mem::take(&mut self.0.lock().refs)
    }

    fn call(&self, op: &[u8], ctx: &mut CallCtx<'_>) -> Result<Reply, ServerError> {
        let op: Op = decode_op(op)?;
        let mut v = self.0.lock();
        let mut out = ctx.out();
        match op {
            Op::Get => {
                out.value(&v);
            }
            Op::Set(new) => {
                ctx.keep(&new)?;
                let old = std::mem::replace(&mut *v, new);
                ctx.release(old);
            }
            Op::Swap(new) => {
                ctx.keep(&new)?;
                let old = std::mem::replace(&mut *v, new);
                // the caller adopts the old value's references through the reply
                out.value(&old);
                ctx.release(old);
            }
            Op::Add(kind, delta) => {
                let sum = numeric::add(Some(&v.bytes.0), &delta.0, kind)?;
                out.raw(&sum);
                let old = std::mem::replace(&mut *v, Stored::on_server(Bytes(sum), Vec::new()));
                ctx.release(old);
            }
            Op::CompareAndSet(expected, new) => {
                let matches = v.bytes.0 == expected.0;
                if matches {
                    ctx.keep(&new)?;
                    let old = std::mem::replace(&mut *v, new);
                    ctx.release(old);
                }
                return Reply::plain(&matches);
            }
            Op::Apply(f) => {
                let new = f.apply(Some(&v), ctx)?;
                out.value(&new);
                let old = std::mem::replace(&mut *v, new);
                ctx.release(old);
            }
        }
        drop(v);
        ctx.finish(out)
    }
}

/// A proxy of one value on a manager's server: Python's `ValueProxy`, typed, for any serde
/// type (not only Python's C numbers). Every method is one round trip, atomic on the server;
/// [`add`](Self::add), [`compare_and_set`](Self::compare_and_set), [`swap`](Self::swap) and
/// [`update_with`](Self::update_with) read and write in one step, so no update is lost when
/// several processes change it (Python's `v.value += 1` through a proxy loses them).
///
/// It is not [`multiproc::Value`](multiproc_shm::Value), which lives in shared memory: this one
/// lives on the manager's server, so it reaches other machines and holds any type (proxies
/// too).
///
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let v = m.value(1u64).unwrap();
/// assert_eq!(v.add(2).unwrap(), 3);
/// v.set(10).unwrap();
/// assert_eq!(v.get().unwrap(), 10);
/// ```
pub struct ValueProxy<T> {
    core: Proxy,
    _t: PhantomData<fn() -> T>,
}

typed_proxy_serde!(ValueProxy<T>, TYPE);

impl<T> ValueProxy<T>
where
    T: Serialize + DeserializeOwned,
{
    /// The value (Python's `v.value`, `v.get()`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.value("hi".to_string()).unwrap().get().unwrap(), "hi");
    /// ```
    pub fn get(&self) -> Result<T, ManagerError> {
        self.core.call(&Op::Get)
    }

    /// Set the value (Python's `v.value = new`, `v.set(new)`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let v = m.value(1i8).unwrap();
    /// v.set(-1).unwrap();
    /// assert_eq!(v.get().unwrap(), -1);
    /// ```
    pub fn set(&self, new: T) -> Result<(), ManagerError> {
        self.core.call(&Op::Set(Stored::of(&new)?))
    }

    /// Set the value and return the old one, in one step.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let v = m.value('a').unwrap();
    /// assert_eq!(v.swap('b').unwrap(), 'a');
    /// assert_eq!(v.get().unwrap(), 'b');
    /// ```
    pub fn swap(&self, new: T) -> Result<T, ManagerError> {
        self.core.call(&Op::Swap(Stored::of(&new)?))
    }

    /// Set the value to `new` only if it is now `expected` (by encoding); returns whether it
    /// did. Every server runs it.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let v = m.value(0u32).unwrap();
    /// assert!(v.compare_and_set(&0, 1).unwrap());
    /// assert!(!v.compare_and_set(&0, 2).unwrap());
    /// assert_eq!(v.get().unwrap(), 1);
    /// ```
    pub fn compare_and_set(&self, expected: &T, new: T) -> Result<bool, ManagerError> {
        self.core
            .call(&Op::CompareAndSet(probe(expected)?, Stored::of(&new)?))
    }

    /// Set the value to `f(value)` on the server, in one step, and return it. `f` is a plain
    /// `fn` of this program: only a server of the same build that trusts its clients runs it
    /// (one [`Manager::start`] started; else [`ServerError::FunctionsNotAllowed`] or
    /// [`ServerError::BuildMismatch`]). A panic in `f` is [`ServerError::Panicked`] and changes
    /// nothing.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let v = m.value(vec![1u8]).unwrap();
    /// fn grow(mut v: Vec<u8>) -> Vec<u8> { v.push(2); v }
    /// assert_eq!(v.update_with(grow).unwrap(), [1, 2]);
    /// ```
    pub fn update_with(&self, f: fn(T) -> T) -> Result<T, ManagerError> {
        self.core.call(&Op::Apply(Func::present(f)))
    }

    /// Add `delta` on the server, in one step, and return the sum; [`ServerError::Overflow`]
    /// if it does not fit `T`. Every server runs it, whatever its build.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let v = m.value(250u8).unwrap();
    /// assert_eq!(v.add(5).unwrap(), 255);
    /// assert!(v.add(1).is_err());
    /// ```
    pub fn add(&self, delta: T) -> Result<T, ManagerError>
    where
        T: Number,
    {
        self.core.call(&Op::Add(T::KIND, Bytes(encode(&delta)?)))
    }
}

impl Manager {
    /// A new value on the server, set to `initial` (Python's `manager.Value(typecode,
    /// initial)`; the type says what the typecode did).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let v = m.value(0.5f64).unwrap();
    /// assert_eq!(v.get().unwrap(), 0.5);
    /// ```
    pub fn value<T>(&self, initial: T) -> Result<ValueProxy<T>, ManagerError>
    where
        T: Serialize + DeserializeOwned,
    {
        Ok(ValueProxy {
            core: self.create(TYPE, Stored::of(&initial)?)?,
            _t: PhantomData,
        })
    }
}
