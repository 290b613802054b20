//! Registered user types (Python's `BaseManager.register`): a type of the program lives on the
//! server, and clients call its methods through a [`UserProxy`], typed on both sides by
//! [`Method`] descriptors.
//!
//! The type implements [`Managed`]: its name, its initial state (`Init`) and its method
//! table. The server must know it ([`ManagerBuilder::register`](crate::ManagerBuilder::register)):
//! a server [`start`](crate::ManagerBuilder::start)ed as a child gets it by a reference to its
//! constructor (the child runs this build), and one served in this process
//! ([`serve`](crate::ManagerBuilder::serve), [`serve_forever`](crate::ManagerBuilder::serve_forever))
//! has it directly. A server that does not know the type refuses to make one with
//! [`ServerError::UnknownType`].
//!
//! # Proxies inside a user type
//! A user type's state may hold proxies of objects of the same server (given in `Init` or as a
//! method's argument): the server claims its own reference on each (it is a client of itself),
//! so they live while the state holds them, and a method may call them. A method must not call
//! a proxy of its own object (its state is locked during the call: that would wait forever). A
//! proxy a method returns travels to the caller with a reference of its own.

use std::collections::HashMap;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;

use multiproc_pickle::{decode, encode, Bytes};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ManagerError, ServerError};
use crate::proxy::Proxy;
use crate::server::object::{decode_op, CallCtx, ServerObject};
use crate::wire::{Id, Reply, Stored};
use crate::{Manager, ManagerBuilder};

/// A type whose values live on a manager's server, called through a [`UserProxy`].
///
/// ```
/// use multiproc::managers::{Managed, Method, Methods};
/// use serde::{Deserialize, Serialize};
///
/// struct Counter { n: i64 }
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Negative;
///
/// impl Counter {
///     const ADD: Method<Counter, i64, i64> = Method::new("add");
///     const TAKE: Method<Counter, i64, i64, Negative> = Method::new("take");
/// }
///
/// impl Managed for Counter {
///     const NAME: &'static str = "Counter";
///     type Init = i64;
///     fn new(n: i64) -> Counter { Counter { n } }
///     fn methods(m: &mut Methods<Counter>) {
///         m.method(Counter::ADD, |c, d| { c.n += d; c.n });
///         m.fallible(Counter::TAKE, |c, d| {
///             if c.n < d { return Err(Negative) }
///             c.n -= d;
///             Ok(c.n)
///         });
///     }
/// }
///
/// multiproc::init();
/// let m = multiproc::Manager::builder().register::<Counter>().start().unwrap();
/// let c = m.make::<Counter>(&10).unwrap();
/// assert_eq!(c.call(Counter::ADD, &5).unwrap(), 15);
/// assert_eq!(c.try_call(Counter::TAKE, &20).unwrap(), Err(Negative));
/// assert_eq!(c.try_call(Counter::TAKE, &5).unwrap(), Ok(10));
/// ```
pub trait Managed: Sized + Send + 'static {
    /// The type's name on the server (unique among the types a server knows; the built-in
    /// names `dict`, `list`, ... are taken).
    const NAME: &'static str;
    /// What a new value is made from ([`Manager::make`](crate::Manager::make) sends it).
    type Init: Serialize + DeserializeOwned;
    /// Make a value (on the server).
    fn new(init: Self::Init) -> Self;
    /// Fill the method table (called on the server for each new value).
    fn methods(table: &mut Methods<Self>);
}

/// A method of `T` taking an `A` and returning an `R`, or failing with the method's own error
/// `E` ([`Infallible`]: it cannot fail): a typed name shared by the server's table and the
/// client's calls, usually a `const` of `T`.
///
/// ```
/// use multiproc::managers::Method;
/// struct Counter;
/// const ADD: Method<Counter, i64, i64> = Method::new("add");
/// assert_eq!(ADD.name(), "add");
/// ```
pub struct Method<T, A, R, E = Infallible> {
    name: &'static str,
    _t: PhantomData<Signature<T, A, R, E>>,
}

/// What a [`Method`] stands for.
type Signature<T, A, R, E> = fn(&mut T, A) -> Result<R, E>;

impl<T, A, R, E> Method<T, A, R, E> {
    /// The method called `name` (unique within `T`).
    pub const fn new(name: &'static str) -> Self {
        Method {
            name,
            _t: PhantomData,
        }
    }

    /// Its name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T, A, R, E> Clone for Method<T, A, R, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, A, R, E> Copy for Method<T, A, R, E> {}

impl<T, A, R, E> std::fmt::Debug for Method<T, A, R, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Method({:?})", self.name)
    }
}

/// What a method of the table answers: its result encoded, or its own error encoded.
type Outcome = Result<Result<Vec<u8>, Vec<u8>>, ServerError>;

type Entry<T> = Box<dyn Fn(&mut T, &[u8]) -> Outcome + Send + Sync>;

/// The method table of a [`Managed`] type, on the server: each method by its name.
///
/// ```
/// use multiproc::managers::{Method, Methods};
/// struct Greeter;
/// const HELLO: Method<Greeter, String, String> = Method::new("hello");
/// let mut t = Methods::<Greeter>::default();
/// t.method(HELLO, |_, who| format!("hello, {who}"));
/// assert_eq!(t.names(), ["hello"]);
/// ```
pub struct Methods<T> {
    table: HashMap<&'static str, Entry<T>>,
}

impl<T> Default for Methods<T> {
    fn default() -> Self {
        Methods {
            table: HashMap::new(),
        }
    }
}

impl<T> std::fmt::Debug for Methods<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.table.keys()).finish()
    }
}

fn encode_result<X: Serialize>(x: &X) -> Result<Vec<u8>, ServerError> {
    encode(x).map_err(|e| ServerError::Malformed(format!("a method's result: {e}")))
}

impl<T: 'static> Methods<T> {
    /// Add a method that cannot fail (a later one of the same name replaces it).
    pub fn method<A, R>(
        &mut self,
        m: Method<T, A, R>,
        f: impl Fn(&mut T, A) -> R + Send + Sync + 'static,
    ) -> &mut Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        self.entry(m.name, move |t, a| Ok(Ok(encode_result(&f(t, a))?)))
    }

    /// Add a method that may fail with its own error `E`, which the caller gets back typed
    /// ([`UserProxy::try_call`], [`CallError::Method`]).
    pub fn fallible<A, R, E>(
        &mut self,
        m: Method<T, A, R, E>,
        f: impl Fn(&mut T, A) -> Result<R, E> + Send + Sync + 'static,
    ) -> &mut Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        E: Serialize + 'static,
    {
        self.entry(m.name, move |t, a| {
            Ok(match f(t, a) {
                Ok(r) => Ok(encode_result(&r)?),
                Err(e) => Err(encode_result(&e)?),
            })
        })
    }

    fn entry<A: DeserializeOwned + 'static>(
        &mut self,
        name: &'static str,
        f: impl Fn(&mut T, A) -> Outcome + Send + Sync + 'static,
    ) -> &mut Self {
        self.table.insert(
            name,
            Box::new(move |t, arg| {
                let a: A = decode(arg).map_err(|e| {
                    ServerError::Malformed(format!("the argument of {name:?}: {e}"))
                })?;
                f(t, a)
            }),
        );
        self
    }

    /// The names of the methods, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.table.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

/// A call: the method's name and its encoded argument.
#[derive(Serialize, Deserialize)]
struct Op {
    method: String,
    arg: Bytes,
}

/// The server's side of a user type's value.
struct UserObject<T> {
    state: Mutex<T>,
    methods: Methods<T>,
    /// The references the server took for the proxies inside `Init` (the value claimed its
    /// own when it was decoded): dropped at the first call, or with the object.
    init_refs: Mutex<Vec<Id>>,
}

fn construct<T: Managed>(init: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    let value: T::Init = decode_op(&init.bytes.0)?;
    let mut methods = Methods::default();
    T::methods(&mut methods);
    Ok(Arc::new(UserObject {
        state: Mutex::new(T::new(value)),
        methods,
        init_refs: Mutex::new(init.refs),
    }))
}

impl<T: Managed> ServerObject for UserObject<T> {
    fn type_name(&self) -> &str {
        T::NAME
    }

    fn call(&self, op: &[u8], ctx: &mut CallCtx<'_>) -> Result<Reply, ServerError> {
        // the state claimed its own references on the proxies of `Init`: the ones the server
        // took for the message go now (or with the object, if it is never called)
        ctx.release_ids(std::mem::take(&mut *self.init_refs.lock()));
        let op: Op = decode_op(op)?;
        let Some(f) = self.methods.table.get(op.method.as_str()) else {
            return Err(ServerError::UnknownMethod {
                type_name: T::NAME.to_owned(),
                method: op.method,
            });
        };
        let mut st = self.state.lock();
        match f(&mut st, &op.arg.0)? {
            Ok(bytes) => Ok(Reply::Ok {
                bytes: Bytes(bytes),
                given: Vec::new(),
            }),
            Err(bytes) => Ok(Reply::UserErr(Bytes(bytes))),
        }
    }

    fn drain(&self) -> Vec<Id> {
        std::mem::take(&mut *self.init_refs.lock())
    }
}

/// The error of a call of a method that may fail: the manager's (the server gone, a
/// refusal), or the method's own, typed.
///
/// A method that cannot fail has `E = Infallible`, and its `CallError<Infallible>` converts to
/// a [`ManagerError`], so `?` works in a function returning `Result<_, ManagerError>`.
///
/// ```
/// use multiproc::managers::{CallError, ManagerError, ServerError};
/// let e: CallError<String> = CallError::Method("too small".into());
/// assert_eq!(e.to_string(), "the method failed: \"too small\"");
/// let m: ManagerError = CallError::<std::convert::Infallible>::Manager(ServerError::Empty.into()).into();
/// assert!(matches!(m, ManagerError::Server(ServerError::Empty)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError<E: std::fmt::Debug> {
    /// The call did not get through, or the server refused it.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The method returned its own error.
    #[error("the method failed: {0:?}")]
    Method(E),
}

impl From<CallError<Infallible>> for ManagerError {
    fn from(e: CallError<Infallible>) -> ManagerError {
        match e {
            CallError::Manager(m) => m,
            CallError::Method(never) => match never {},
        }
    }
}

/// A proxy of a value of a registered type `T` on a manager's server: its methods are called
/// with [`call`](Self::call) (methods that cannot fail) and [`try_call`](Self::try_call) (those
/// with their own error). A serde value like every proxy: send it to a child, store it in a
/// dict.
///
/// See [`Managed`] for a whole example.
///
/// ```
/// use multiproc::managers::{Managed, Method, Methods};
///
/// struct Log(Vec<String>);
/// impl Log {
///     const PUSH: Method<Log, String, usize> = Method::new("push");
/// }
/// impl Managed for Log {
///     const NAME: &'static str = "Log";
///     type Init = ();
///     fn new(_: ()) -> Log { Log(Vec::new()) }
///     fn methods(m: &mut Methods<Log>) {
///         m.method(Log::PUSH, |l, s| { l.0.push(s); l.0.len() });
///     }
/// }
///
/// multiproc::init();
/// let m = multiproc::Manager::builder().register::<Log>().start().unwrap();
/// let log = m.make::<Log>(&()).unwrap();
/// assert_eq!(log.call(Log::PUSH, &"one".to_string()).unwrap(), 1);
/// assert_eq!(log.clone().call(Log::PUSH, &"two".to_string()).unwrap(), 2);
/// ```
pub struct UserProxy<T> {
    core: Proxy,
    _t: PhantomData<fn() -> T>,
}

impl<T: Managed> UserProxy<T> {
    /// Call a method that cannot fail.
    pub fn call<A, R>(&self, method: Method<T, A, R>, arg: &A) -> Result<R, ManagerError>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        self.call_by_name(method.name, arg)
    }

    /// Call a method that may fail: `Ok(Err(e))` is the method's own error, typed; `Err` is
    /// the manager's (the server gone, a refusal).
    pub fn try_call<A, R, E>(
        &self,
        method: Method<T, A, R, E>,
        arg: &A,
    ) -> Result<Result<R, E>, ManagerError>
    where
        A: Serialize,
        R: DeserializeOwned,
        E: DeserializeOwned,
    {
        let op = Op {
            method: method.name.to_owned(),
            arg: Bytes(encode(arg)?),
        };
        match self.core.call_raw::<Op, R>(&op)? {
            Ok(r) => Ok(Ok(r)),
            Err(bytes) => Ok(Err(decode::<E>(&bytes)?)),
        }
    }

    /// Call a method that may fail, its error folded into [`CallError::Method`].
    ///
    /// ```
    /// # use multiproc::managers::{CallError, Managed, Method, Methods};
    /// struct Stack(Vec<u8>);
    /// impl Stack { const POP: Method<Stack, (), u8, String> = Method::new("pop"); }
    /// impl Managed for Stack {
    ///     const NAME: &'static str = "Stack";
    ///     type Init = Vec<u8>;
    ///     fn new(v: Vec<u8>) -> Stack { Stack(v) }
    ///     fn methods(m: &mut Methods<Stack>) {
    ///         m.fallible(Stack::POP, |s, ()| s.0.pop().ok_or_else(|| "empty".to_string()));
    ///     }
    /// }
    /// multiproc::init();
    /// let m = multiproc::Manager::builder().register::<Stack>().start().unwrap();
    /// let s = m.make::<Stack>(&vec![7]).unwrap();
    /// assert_eq!(s.call_or_err(Stack::POP, &()).unwrap(), 7);
    /// assert!(matches!(s.call_or_err(Stack::POP, &()), Err(CallError::Method(e)) if e == "empty"));
    /// ```
    pub fn call_or_err<A, R, E>(
        &self,
        method: Method<T, A, R, E>,
        arg: &A,
    ) -> Result<R, CallError<E>>
    where
        A: Serialize,
        R: DeserializeOwned,
        E: DeserializeOwned + std::fmt::Debug,
    {
        self.try_call(method, arg)?.map_err(CallError::Method)
    }

    /// Call a method by name, untyped (what a client of another build can do): for a method
    /// that cannot fail. A name the type does not have is [`ServerError::UnknownMethod`].
    ///
    /// ```
    /// # use multiproc::managers::{Managed, Method, Methods, ServerError, ManagerError};
    /// # struct Unit;
    /// # impl Managed for Unit {
    /// #     const NAME: &'static str = "Unit";
    /// #     type Init = ();
    /// #     fn new(_: ()) -> Unit { Unit }
    /// #     fn methods(_: &mut Methods<Unit>) {}
    /// # }
    /// multiproc::init();
    /// let m = multiproc::Manager::builder().register::<Unit>().start().unwrap();
    /// let u = m.make::<Unit>(&()).unwrap();
    /// let e = u.call_by_name::<(), ()>("missing", &()).unwrap_err();
    /// assert!(matches!(e, ManagerError::Server(ServerError::UnknownMethod { .. })));
    /// ```
    pub fn call_by_name<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        arg: &A,
    ) -> Result<R, ManagerError> {
        let op = Op {
            method: method.to_owned(),
            arg: Bytes(encode(arg)?),
        };
        self.core.call::<Op, R>(&op)
    }

    /// The untyped proxy underneath (its id, type name, server address).
    pub fn proxy(&self) -> &Proxy {
        &self.core
    }
}

impl<T> Clone for UserProxy<T> {
    fn clone(&self) -> Self {
        UserProxy {
            core: self.core.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for UserProxy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.core, f)
    }
}

impl<T> Serialize for UserProxy<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.core.serialize(s)
    }
}

impl<'de, T: Managed> Deserialize<'de> for UserProxy<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let core = Proxy::deserialize(d)?
            .expect_type(T::NAME)
            .map_err(serde::de::Error::custom)?;
        Ok(UserProxy {
            core,
            _t: PhantomData,
        })
    }
}

impl ManagerBuilder {
    /// Let clients make values of the user type `T` on this server (Python's
    /// `BaseManager.register`). See [`Managed`].
    ///
    /// ```
    /// # use multiproc::managers::{Managed, Methods};
    /// # struct Unit;
    /// # impl Managed for Unit {
    /// #     const NAME: &'static str = "Unit";
    /// #     type Init = ();
    /// #     fn new(_: ()) -> Unit { Unit }
    /// #     fn methods(_: &mut Methods<Unit>) {}
    /// # }
    /// multiproc::init();
    /// let m = multiproc::Manager::builder().register::<Unit>().serve("127.0.0.1:0", b"k").unwrap();
    /// assert_eq!(m.make::<Unit>(&()).unwrap().proxy().type_name(), "Unit");
    /// ```
    pub fn register<T: Managed>(self) -> Self {
        self.register_constructor(T::NAME, construct::<T>)
    }
}

impl Manager {
    /// Make a value of the registered type `T` on the server from `init`, and return its
    /// proxy (Python's `manager.Counter(...)` after `register("Counter", Counter)`). A server
    /// that does not know `T` refuses with [`ServerError::UnknownType`].
    ///
    /// ```
    /// # use multiproc::managers::{Managed, Methods, ManagerError, ServerError};
    /// # struct Unit;
    /// # impl Managed for Unit {
    /// #     const NAME: &'static str = "Unit";
    /// #     type Init = ();
    /// #     fn new(_: ()) -> Unit { Unit }
    /// #     fn methods(_: &mut Methods<Unit>) {}
    /// # }
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap(); // Unit not registered
    /// assert!(matches!(m.make::<Unit>(&()), Err(ManagerError::Server(ServerError::UnknownType(_)))));
    /// ```
    pub fn make<T: Managed>(&self, init: &T::Init) -> Result<UserProxy<T>, ManagerError> {
        let core = self.create(T::NAME, Stored::of(init)?)?;
        Ok(UserProxy {
            core,
            _t: PhantomData,
        })
    }
}
