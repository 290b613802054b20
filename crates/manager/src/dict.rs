//! `dict`: a map on the server, behind [`DictProxy`].
//!
//! The server keeps keys and values encoded: it needs no knowledge of the program's types, so
//! a server of another build (or a plain `serve_forever` binary) holds dicts of any types. Two
//! keys are the same key when their encodings are equal, which for the usual key types
//! (integers, strings, tuples and structs of them) is when they are equal. Iteration order is
//! insertion order, as in Python.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use multiproc_pickle::{encode, Bytes};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{ManagerError, ServerError};
use crate::func::Func;
use crate::numeric::{self, NumKind, Number};
use crate::proxy::{typed_proxy_serde, Proxy};
use crate::server::object::{decode_op, CallCtx, ServerObject};
use crate::wire::{Id, Reply, Stored};
use crate::Manager;

pub(crate) const TYPE: &str = "dict";

#[derive(Serialize, Deserialize)]
enum Op {
    Get(Bytes),
    Insert(Bytes, Stored),
    Set(Bytes, Stored),
    Remove(Bytes),
    Contains(Bytes),
    Len,
    Keys,
    Values,
    Items,
    Update(Vec<(Bytes, Stored)>),
    SetDefault(Bytes, Stored),
    PopItem,
    Clear,
    Add(Bytes, NumKind, Bytes),
    CompareAndSet(Bytes, Option<Bytes>, Stored),
    Apply(Bytes, Func),
}

#[derive(Default)]
struct State {
    map: HashMap<Vec<u8>, (u64, Stored)>,
    order: BTreeMap<u64, Vec<u8>>,
    next: u64,
}

impl State {
    /// Insert or replace; returns the old value.
    fn put(&mut self, key: Vec<u8>, value: Stored) -> Option<Stored> {
        if let Some((_, v)) = self.map.get_mut(&key) {
            return Some(std::mem::replace(v, value));
        }
        self.next += 1;
        self.order.insert(self.next, key.clone());
        self.map.insert(key, (self.next, value));
        None
    }

    fn take(&mut self, key: &[u8]) -> Option<Stored> {
        let (seq, v) = self.map.remove(key)?;
        self.order.remove(&seq);
        Some(v)
    }

    fn entries(&self) -> impl Iterator<Item = (&Vec<u8>, &Stored)> {
        self.order.values().map(|k| (k, &self.map[k].1))
    }
}

/// The server's side of a dict.
struct DictObject(Mutex<State>);

pub(crate) fn construct(init: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    let pairs: Vec<(Bytes, Stored)> = decode_op(&init.bytes.0)?;
    let mut st = State::default();
    for (k, v) in pairs {
        st.put(k.0, v);
    }
    Ok(Arc::new(DictObject(Mutex::new(st))))
}

impl ServerObject for DictObject {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn drain(&self) -> Vec<Id> {
        let mut st = self.0.lock();
        st.order.clear();
        st.map.drain().flat_map(|(_, (_, v))| v.refs).collect()
    }

    fn call(&self, op: &[u8], ctx: &mut CallCtx<'_>) -> Result<Reply, ServerError> {
        let op: Op = decode_op(op)?;
        let mut st = self.0.lock();
        let mut out = ctx.out();
        match op {
            Op::Get(k) => {
                out.option(st.map.get(&k.0).map(|(_, v)| v));
            }
            Op::Insert(k, v) => {
                ctx.keep(&v)?;
                let old = st.put(k.0, v);
                out.option(old.as_ref());
                if let Some(old) = old {
                    // the caller adopts the old value's references through the reply: keep
                    // ours until the reply took its own
                    ctx.release(old);
                }
            }
            Op::Set(k, v) => {
                ctx.keep(&v)?;
                if let Some(old) = st.put(k.0, v) {
                    ctx.release(old);
                }
            }
            Op::Remove(k) => {
                let old = st.take(&k.0);
                out.option(old.as_ref());
                if let Some(old) = old {
                    ctx.release(old);
                }
            }
            Op::Contains(k) => return Reply::plain(&st.map.contains_key(&k.0)),
            Op::Len => return Reply::plain(&(st.map.len() as u64)),
            Op::Keys => {
                out.len(st.map.len());
                for (k, _) in st.entries() {
                    out.raw(k);
                }
            }
            Op::Values => {
                out.len(st.map.len());
                let values: Vec<&Stored> = st.entries().map(|(_, v)| v).collect();
                for v in values {
                    out.value(v);
                }
            }
            Op::Items => {
                out.len(st.map.len());
                let items: Vec<(&Vec<u8>, &Stored)> = st.entries().collect();
                for (k, v) in items {
                    out.raw(k).value(v);
                }
            }
            Op::Update(pairs) => {
                for (_, v) in &pairs {
                    ctx.keep(v)?;
                }
                for (k, v) in pairs {
                    if let Some(old) = st.put(k.0, v) {
                        ctx.release(old);
                    }
                }
            }
            Op::SetDefault(k, v) => {
                if !st.map.contains_key(&k.0) {
                    ctx.keep(&v)?;
                    st.put(k.0.clone(), v);
                }
                out.value(&st.map[&k.0].1);
            }
            Op::PopItem => {
                let Some((_, k)) = st.order.iter().next_back().map(|(s, k)| (*s, k.clone())) else {
                    return Err(ServerError::KeyNotFound);
                };
                let v = st.take(&k).expect("in order");
                out.raw(&k).value(&v);
                ctx.release(v);
            }
            Op::Clear => {
                let ids: Vec<Id> = st.map.drain().flat_map(|(_, (_, v))| v.refs).collect();
                st.order.clear();
                ctx.release_ids(ids);
            }
            Op::Add(k, kind, delta) => {
                let current = st.map.get(&k.0).map(|(_, v)| &v.bytes.0[..]);
                let sum = numeric::add(current, &delta.0, kind)?;
                out.raw(&sum);
                let new = Stored::on_server(Bytes(sum), Vec::new());
                if let Some(old) = st.put(k.0, new) {
                    ctx.release(old);
                }
            }
            Op::CompareAndSet(k, expected, new) => {
                let current = st.map.get(&k.0).map(|(_, v)| &v.bytes.0);
                let matches = match (&expected, current) {
                    (None, None) => true,
                    (Some(e), Some(c)) => e.0 == *c,
                    _ => false,
                };
                if matches {
                    ctx.keep(&new)?;
                    if let Some(old) = st.put(k.0, new) {
                        ctx.release(old);
                    }
                }
                return Reply::plain(&matches);
            }
            Op::Apply(k, f) => {
                let new = f.apply(st.map.get(&k.0).map(|(_, v)| v), ctx)?;
                out.value(&new);
                if let Some(old) = st.put(k.0, new) {
                    ctx.release(old);
                }
            }
        }
        drop(st);
        ctx.finish(out)
    }
}

/// A proxy of a dict on a manager's server: Python's `DictProxy`, typed. Every method is one
/// round trip to the server, atomic there; [`add`](Self::add),
/// [`compare_and_set`](Self::compare_and_set), [`setdefault`](Self::setdefault) and
/// [`update_with`](Self::update_with) read and write in one step, so no update is lost when
/// several processes change one key (Python's `d[k] += 1` through a proxy loses them).
///
/// Values may hold proxies (a dict of lists): the server keeps the inner objects alive while
/// they are stored, and [`get`](Self::get) returns a proxy of the same object, never a copy.
///
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let d = m.dict::<String, i64>().unwrap();
/// d.set("a".to_string(), 1).unwrap();
/// assert_eq!(d.get("a").unwrap(), Some(1));
/// assert_eq!(d.add("a".to_string(), 41).unwrap(), 42);
/// assert_eq!(d.len().unwrap(), 1);
/// ```
pub struct DictProxy<K, V> {
    core: Proxy,
    _t: PhantomData<fn() -> (K, V)>,
}

typed_proxy_serde!(DictProxy<K, V>, TYPE);

fn key<K: Serialize + ?Sized>(k: &K) -> Result<Bytes, ManagerError> {
    let s = Stored::of(k)?;
    if !s.is_plain() {
        return Err(ServerError::ProxyAsKey.into());
    }
    Ok(s.bytes)
}

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    pub(crate) fn from_proxy(core: Proxy) -> Self {
        DictProxy {
            core,
            _t: PhantomData,
        }
    }

    /// The value of `key`, if any (Python's `d.get(key)`). Like `HashMap`'s lookups it takes any
    /// borrowed form of the key (`&str` for a `String`), which encodes as the key does.
    pub fn get<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>, ManagerError>
    where
        K: Borrow<Q>,
    {
        self.core.call(&Op::Get(self::key(key)?))
    }

    /// Set `key` to `value`, returning the old value (`HashMap::insert`).
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, ManagerError> {
        self.core
            .call(&Op::Insert(self::key(&key)?, Stored::of(&value)?))
    }

    /// Set `key` to `value` (Python's `d[key] = value`); unlike [`insert`](Self::insert) the old
    /// value does not come back.
    pub fn set(&self, key: K, value: V) -> Result<(), ManagerError> {
        self.core
            .call(&Op::Set(self::key(&key)?, Stored::of(&value)?))
    }

    /// Remove `key`, returning its value if it was there (`del d[key]`, `HashMap::remove`).
    pub fn remove<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>, ManagerError>
    where
        K: Borrow<Q>,
    {
        self.core.call(&Op::Remove(self::key(key)?))
    }

    /// Remove `key` and return its value; [`ServerError::KeyNotFound`] if it is not there
    /// (Python's `d.pop(key)`).
    pub fn pop<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<V, ManagerError>
    where
        K: Borrow<Q>,
    {
        self.remove(key)?
            .ok_or(ManagerError::Server(ServerError::KeyNotFound))
    }

    /// Remove and return the last inserted pair (Python's `popitem`);
    /// [`ServerError::KeyNotFound`] when empty.
    pub fn popitem(&self) -> Result<(K, V), ManagerError> {
        self.core.call(&Op::PopItem)
    }

    /// Whether `key` is there (`key in d`).
    pub fn contains_key<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<bool, ManagerError>
    where
        K: Borrow<Q>,
    {
        self.core.call(&Op::Contains(self::key(key)?))
    }

    /// The number of pairs.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Result<usize, ManagerError> {
        Ok(self.core.call::<_, u64>(&Op::Len)? as usize)
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        self.core.call(&Op::Keys)
    }

    /// The values, in insertion order.
    pub fn values(&self) -> Result<Vec<V>, ManagerError> {
        self.core.call(&Op::Values)
    }

    /// The pairs, in insertion order.
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        self.core.call(&Op::Items)
    }

    /// Set every pair of `pairs`, in one step (Python's `update`).
    pub fn update(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<(), ManagerError> {
        // the values stay until the server has them: a proxy among them dropped before would
        // give back the last reference of its object
        let pairs: Vec<(K, V)> = pairs.into_iter().collect();
        let stored = pairs
            .iter()
            .map(|(k, v)| Ok((key(k)?, Stored::of(v)?)))
            .collect::<Result<Vec<_>, ManagerError>>()?;
        self.core.call(&Op::Update(stored))
    }

    /// The value of `key`, first setting it to `default` if it is not there (Python's
    /// `setdefault`; the `get_or_insert` every server runs).
    pub fn setdefault(&self, key: K, default: V) -> Result<V, ManagerError> {
        self.core
            .call(&Op::SetDefault(self::key(&key)?, Stored::of(&default)?))
    }

    /// Remove every pair.
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.core.call(&Op::Clear)
    }

    /// A copy of the whole dict, as a plain `HashMap` (Python's `d.copy()`).
    pub fn copy(&self) -> Result<HashMap<K, V>, ManagerError>
    where
        K: Eq + Hash,
    {
        Ok(self.items()?.into_iter().collect())
    }

    /// Set `key` to `new` only if its value is now `expected` (`None`: only if absent); returns
    /// whether it did. Values compare by their encoding.
    pub fn compare_and_set(
        &self,
        key: K,
        expected: Option<&V>,
        new: V,
    ) -> Result<bool, ManagerError> {
        let expected = match expected {
            Some(e) => Some(Bytes(encode(e)?)),
            None => None,
        };
        self.core.call(&Op::CompareAndSet(
            self::key(&key)?,
            expected,
            Stored::of(&new)?,
        ))
    }

    /// Set `key` to `f(its value)` on the server, in one step, and return the new value. `f` is
    /// a plain `fn` of this program: only a server of the same build that trusts its clients
    /// runs it (one [`Manager::start`] started; else [`ServerError::FunctionsNotAllowed`] or
    /// [`ServerError::BuildMismatch`]). A panic in `f` is [`ServerError::Panicked`] and changes
    /// nothing.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<String, Vec<u32>>().unwrap();
    /// fn push_one(v: Option<Vec<u32>>) -> Vec<u32> {
    ///     let mut v = v.unwrap_or_default();
    ///     v.push(1);
    ///     v
    /// }
    /// d.update_with("k".into(), push_one).unwrap();
    /// assert_eq!(d.update_with("k".into(), push_one).unwrap(), [1, 1]);
    /// ```
    pub fn update_with(&self, key: K, f: fn(Option<V>) -> V) -> Result<V, ManagerError> {
        self.core.call(&Op::Apply(self::key(&key)?, Func::new(f)))
    }

    /// Add `delta` to the number at `key` on the server, in one step, and return the sum (a
    /// key not there counts as 0). [`ServerError::Overflow`] if the sum does not fit `V`.
    /// Every server runs it, whatever its build.
    pub fn add(&self, key: K, delta: V) -> Result<V, ManagerError>
    where
        V: Number,
    {
        self.core
            .call(&Op::Add(self::key(&key)?, V::KIND, Bytes(encode(&delta)?)))
    }
}

impl Manager {
    /// A new empty dict on the server (Python's `manager.dict()`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u32, String>().unwrap();
    /// assert!(d.is_empty().unwrap());
    /// ```
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>, ManagerError>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        let none: Vec<(Bytes, Stored)> = Vec::new();
        Ok(DictProxy::from_proxy(
            self.create(TYPE, self.bundle(&none)?)?,
        ))
    }

    /// A new dict on the server holding `pairs`.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict_from([(1u8, 'a'), (2, 'b')]).unwrap();
    /// assert_eq!(d.keys().unwrap(), [1, 2]);
    /// ```
    pub fn dict_from<K, V>(
        &self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<DictProxy<K, V>, ManagerError>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        // the values stay until the server has them: a proxy among them dropped before would
        // give back the last reference of its object
        let pairs: Vec<(K, V)> = pairs.into_iter().collect();
        let stored = pairs
            .iter()
            .map(|(k, v)| Ok((key(k)?, Stored::of(v)?)))
            .collect::<Result<Vec<_>, ManagerError>>()?;
        Ok(DictProxy::from_proxy(
            self.create(TYPE, self.bundle(&stored)?)?,
        ))
    }
}
