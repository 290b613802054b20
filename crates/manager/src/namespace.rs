//! `namespace`: named fields of any serde types on the server, behind [`NamespaceProxy`]
//! (Python's `manager.Namespace()`, whose attributes are its fields).

use std::collections::BTreeMap;
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

pub(crate) const TYPE: &str = "namespace";

#[derive(Serialize, Deserialize)]
enum Op {
    Get(String),
    Set(String, Stored),
    Del(String),
    Contains(String),
    Names,
    Add(String, NumKind, Bytes),
    Apply(String, Func),
}

/// The server's side of a namespace.
struct NamespaceObject(Mutex<BTreeMap<String, Stored>>);

pub(crate) fn construct(init: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    let fields: Vec<(String, Stored)> = decode_op(&init.bytes.0)?;
    Ok(Arc::new(NamespaceObject(Mutex::new(
        fields.into_iter().collect(),
    ))))
}

impl ServerObject for NamespaceObject {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn drain(&self) -> Vec<Id> {
        let fields = std::mem::take(&mut *self.0.lock());
        fields.into_values().flat_map(|v| v.refs).collect()
    }

    fn call(&self, op: &[u8], ctx: &mut CallCtx<'_>) -> Result<Reply, ServerError> {
        let op: Op = decode_op(op)?;
        let mut fields = self.0.lock();
        let mut out = ctx.out();
        match op {
            Op::Get(name) => {
                out.option(fields.get(&name));
            }
            Op::Set(name, v) => {
                ctx.keep(&v)?;
                if let Some(old) = fields.insert(name, v) {
                    ctx.release(old);
                }
            }
            Op::Del(name) => match fields.remove(&name) {
                Some(old) => ctx.release(old),
                None => return Err(ServerError::NoAttribute(name)),
            },
            Op::Contains(name) => return Reply::plain(&fields.contains_key(&name)),
            Op::Names => return Reply::plain(&fields.keys().collect::<Vec<_>>()),
            Op::Add(name, kind, delta) => {
                let current = fields.get(&name).map(|v| &v.bytes.0[..]);
                let sum = numeric::add(current, &delta.0, kind)?;
                out.raw(&sum);
                let new = Stored::on_server(Bytes(sum), Vec::new());
                if let Some(old) = fields.insert(name, new) {
                    ctx.release(old);
                }
            }
            Op::Apply(name, f) => {
                let new = f.apply(fields.get(&name), ctx)?;
                out.value(&new);
                if let Some(old) = fields.insert(name, new) {
                    ctx.release(old);
                }
            }
        }
        drop(fields);
        ctx.finish(out)
    }
}

/// A proxy of a namespace on a manager's server: Python's `NamespaceProxy`, whose attributes
/// are fields named by strings, each of its own serde type. A field read as another type than
/// it holds is a decode error ([`ManagerError::Pickle`]), never a wrong value read silently
/// (the encoding must be consumed whole). Every method is one round trip, atomic on the
/// server; [`add`](Self::add) and [`update_with`](Self::update_with) read and write a field in
/// one step, so no update is lost (Python's `ns.x += 1` loses them).
///
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let ns = m.namespace().unwrap();
/// ns.set("name", &"run 1".to_string()).unwrap();
/// ns.set("count", &0u32).unwrap();
/// assert_eq!(ns.add("count", 2u32).unwrap(), 2);
/// assert_eq!(ns.get::<String>("name").unwrap(), "run 1");
/// assert_eq!(ns.names().unwrap(), ["count", "name"]);
/// ```
pub struct NamespaceProxy {
    core: Proxy,
    _t: PhantomData<()>,
}

// (the empty `<>`: the macro takes a generic list, here with nothing in it)
#[rustfmt::skip]
typed_proxy_serde!(NamespaceProxy<>, TYPE);

impl NamespaceProxy {
    /// The field `name` as a `T` (Python's `ns.name`); [`ServerError::NoAttribute`] if there is
    /// no such field.
    ///
    /// ```
    /// use multiproc::managers::{ManagerError, ServerError};
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// ns.set("x", &(1u8, 'a')).unwrap();
    /// assert_eq!(ns.get::<(u8, char)>("x").unwrap(), (1, 'a'));
    /// assert!(matches!(
    ///     ns.get::<u8>("y"),
    ///     Err(ManagerError::Server(ServerError::NoAttribute(n))) if n == "y"
    /// ));
    /// ```
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T, ManagerError> {
        self.try_get(name)?
            .ok_or_else(|| ServerError::NoAttribute(name.to_owned()).into())
    }

    /// The field `name` as a `T`, or `None` if there is no such field (Python's
    /// `getattr(ns, name, None)`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// assert_eq!(ns.try_get::<u8>("x").unwrap(), None);
    /// ```
    pub fn try_get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ManagerError> {
        self.core.call(&Op::Get(name.to_owned()))
    }

    /// Set the field `name` to `value`, of any serde type (Python's `ns.name = value`); it may
    /// hold proxies.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// ns.set("items", &m.list_from([1, 2]).unwrap()).unwrap();
    /// let items: multiproc::managers::ListProxy<i32> = ns.get("items").unwrap();
    /// assert_eq!(items.len().unwrap(), 2);
    /// ```
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), ManagerError> {
        self.core
            .call(&Op::Set(name.to_owned(), Stored::of(value)?))
    }

    /// Remove the field `name` (Python's `del ns.name`); [`ServerError::NoAttribute`] if there
    /// is no such field.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// ns.set("x", &1u8).unwrap();
    /// ns.del("x").unwrap();
    /// assert!(ns.del("x").is_err());
    /// ```
    pub fn del(&self, name: &str) -> Result<(), ManagerError> {
        self.core.call(&Op::Del(name.to_owned()))
    }

    /// Whether there is a field `name` (Python's `hasattr(ns, name)`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// ns.set("x", &()).unwrap();
    /// assert!(ns.contains("x").unwrap());
    /// assert!(!ns.contains("y").unwrap());
    /// ```
    pub fn contains(&self, name: &str) -> Result<bool, ManagerError> {
        self.core.call(&Op::Contains(name.to_owned()))
    }

    /// The names of the fields, sorted (as Python's `repr` of a namespace lists them).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// ns.set("b", &1u8).unwrap();
    /// ns.set("a", &2u8).unwrap();
    /// assert_eq!(ns.names().unwrap(), ["a", "b"]);
    /// ```
    pub fn names(&self) -> Result<Vec<String>, ManagerError> {
        self.core.call(&Op::Names)
    }

    /// Add `delta` to the number in the field `name` on the server, in one step, and return
    /// the sum (a field not there counts as 0, as [`DictProxy::add`](crate::DictProxy::add)'s
    /// keys do). [`ServerError::NotANumber`] if the field holds no `T`,
    /// [`ServerError::Overflow`] if the sum does not fit. Every server runs it.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// assert_eq!(ns.add("hits", 1i64).unwrap(), 1);
    /// assert_eq!(ns.add("hits", 1i64).unwrap(), 2);
    /// ```
    pub fn add<T: Number>(&self, name: &str, delta: T) -> Result<T, ManagerError> {
        self.core
            .call(&Op::Add(name.to_owned(), T::KIND, Bytes(encode(&delta)?)))
    }

    /// Set the field `name` to `f(its value)` (`None`: not there) on the server, in one step,
    /// and return it. `f` is a plain `fn` of this program: only a server of the same build
    /// that trusts its clients runs it (one [`Manager::start`] started; else
    /// [`ServerError::FunctionsNotAllowed`] or [`ServerError::BuildMismatch`]).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// fn append(s: Option<String>) -> String { s.unwrap_or_default() + "x" }
    /// ns.update_with("log", append).unwrap();
    /// assert_eq!(ns.update_with("log", append).unwrap(), "xx");
    /// ```
    pub fn update_with<T>(&self, name: &str, f: fn(Option<T>) -> T) -> Result<T, ManagerError>
    where
        T: Serialize + DeserializeOwned,
    {
        self.core.call(&Op::Apply(name.to_owned(), Func::new(f)))
    }
}

impl Manager {
    /// A new namespace on the server, with no fields (Python's `manager.Namespace()`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// assert!(ns.names().unwrap().is_empty());
    /// ```
    pub fn namespace(&self) -> Result<NamespaceProxy, ManagerError> {
        self.namespace_from(std::iter::empty::<(&str, ())>())
    }

    /// A new namespace on the server with these fields, all of one type (Python's
    /// `manager.Namespace(a=1, b=2)`); set fields of other types with
    /// [`set`](NamespaceProxy::set).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace_from([("a", 1u32), ("b", 2)]).unwrap();
    /// assert_eq!(ns.get::<u32>("b").unwrap(), 2);
    /// ```
    pub fn namespace_from<'a, T: Serialize>(
        &self,
        fields: impl IntoIterator<Item = (&'a str, T)>,
    ) -> Result<NamespaceProxy, ManagerError> {
        // the values stay until the server has them (a proxy among them keeps its object)
        let fields: Vec<(&str, T)> = fields.into_iter().collect();
        let stored = fields
            .iter()
            .map(|(k, v)| Ok((k.to_string(), Stored::of(v)?)))
            .collect::<Result<Vec<_>, ManagerError>>()?;
        Ok(NamespaceProxy {
            core: self.create(TYPE, self.bundle(&stored)?)?,
            _t: PhantomData,
        })
    }
}
