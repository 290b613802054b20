//! The proxy every typed proxy wraps: an object id on a server, the client that reaches it,
//! and the reference it holds there.

use std::sync::Arc;

use multiproc_pickle::{decode, encode, Bytes, PickleError};
use multiproc_process::Address;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::client::{ClientInner, Endpoint};
use crate::error::{ManagerError, ServerError};
use crate::refs::{self, OnDecode, OnEncode};
use crate::wire::{Id, Reply, Request};

/// One reference to an object: dropping the last clone of a [`Proxy`] gives it back.
struct Handle {
    id: Id,
    type_name: String,
    endpoint: Endpoint,
    /// The client it was made or decoded with (`None`: decoded as plain data, on the server
    /// or in a dry run; it connects when first used).
    client: Option<Arc<ClientInner>>,
    /// Whether it holds a reference of its client's session.
    owned: bool,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let (true, Some(c)) = (self.owned, &self.client) {
            // (a handle inherited through fork is its parent's: `decref` ignores it)
            c.decref(vec![self.id]);
        }
    }
}

/// An untyped proxy: a reference to an object on a manager's server. Typed proxies
/// ([`DictProxy`](crate::DictProxy), ...) wrap one; it is what they have in common. Cloning
/// is cheap (one reference on the server for all clones in a process).
///
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let d = m.dict::<String, u32>().unwrap();
/// assert_eq!(d.proxy().type_name(), "dict");
/// ```
#[derive(Clone)]
pub struct Proxy(Arc<Handle>);

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "<{} proxy {} at {}>",
            self.0.type_name, self.0.id, self.0.endpoint.address
        )
    }
}

/// A proxy's encoding: where the server is, its key, the object, and the travelling
/// reference's token (0: none).
#[derive(Serialize, Deserialize)]
struct Wire {
    address: WireAddress,
    authkey: Bytes,
    id: Id,
    type_name: String,
    token: u64,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum WireAddress {
    Unix(Bytes),
    Tcp(std::net::SocketAddr),
    Pipe(String),
}

impl WireAddress {
    pub(crate) fn of(a: &Address) -> WireAddress {
        match a {
            #[cfg(unix)]
            Address::Unix(p) => {
                use std::os::unix::ffi::OsStrExt;
                WireAddress::Unix(Bytes(p.as_os_str().as_bytes().to_vec()))
            }
            #[cfg(not(unix))]
            Address::Unix(p) => WireAddress::Unix(Bytes(p.to_string_lossy().as_bytes().to_vec())),
            Address::Tcp(s) => WireAddress::Tcp(*s),
            Address::Pipe(n) => WireAddress::Pipe(n.clone()),
        }
    }

    pub(crate) fn into_address(self) -> Address {
        match self {
            #[cfg(unix)]
            WireAddress::Unix(b) => {
                use std::os::unix::ffi::OsStringExt;
                Address::Unix(std::ffi::OsString::from_vec(b.0).into())
            }
            #[cfg(not(unix))]
            WireAddress::Unix(b) => {
                Address::Unix(String::from_utf8_lossy(&b.0).into_owned().into())
            }
            WireAddress::Tcp(s) => Address::Tcp(s),
            WireAddress::Pipe(n) => Address::Pipe(n),
        }
    }
}

impl Proxy {
    /// A proxy of a reference the caller's session holds.
    pub(crate) fn owned(client: Arc<ClientInner>, id: Id, type_name: &str) -> Proxy {
        Proxy(Arc::new(Handle {
            id,
            type_name: type_name.to_owned(),
            endpoint: client.endpoint.clone(),
            client: Some(client),
            owned: true,
        }))
    }

    /// The object's id on its server.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let a = m.dict::<u8, u8>().unwrap();
    /// let b = m.dict::<u8, u8>().unwrap();
    /// assert_ne!(a.proxy().id(), b.proxy().id());
    /// ```
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The object's type name on the server (`"dict"`, `"list"`, a registered type's name).
    pub fn type_name(&self) -> &str {
        &self.0.type_name
    }

    /// The address of the server.
    pub fn address(&self) -> &Address {
        &self.0.endpoint.address
    }

    /// The client to call through: this process's client of the server (a proxy inherited by a
    /// forked child, or decoded as data, finds or opens its own).
    pub(crate) fn client(&self) -> Result<Arc<ClientInner>, ManagerError> {
        match &self.0.client {
            Some(c) if c.is_ours() => Ok(c.clone()),
            _ => ClientInner::for_endpoint(&self.0.endpoint),
        }
    }

    /// The server the object lives on.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.0.endpoint
    }

    /// Take a reference on the object that lives until its server stops: for a proxy stored
    /// in an object of another server, which never says when it lets the value go.
    pub(crate) fn pin(&self) -> Result<(), ManagerError> {
        match self.client()?.call(&Request::Pin { id: self.0.id })? {
            Reply::Ok { .. } => Ok(()),
            Reply::Err(e) => Err(e.into()),
            Reply::UserErr(_) => Err(ServerError::Malformed("pin".into()).into()),
        }
    }

    /// Check that the object is a `type_name` (used when a typed proxy is decoded).
    pub(crate) fn expect_type(self, type_name: &str) -> Result<Proxy, ManagerError> {
        if self.0.type_name == type_name {
            Ok(self)
        } else {
            Err(ManagerError::WrongProxy {
                expected: type_name.to_owned(),
                actual: self.0.type_name.clone(),
            })
        }
    }

    /// Call the object with `op` (an operation of its type, encoded) and decode the reply as
    /// `R`, adopting the references the server gave with it.
    pub(crate) fn call<O: Serialize, R: DeserializeOwned>(
        &self,
        op: &O,
    ) -> Result<R, ManagerError> {
        match self.call_raw(op)? {
            Ok(r) => Ok(r),
            Err(bytes) => Err(ManagerError::Server(ServerError::Malformed(format!(
                "an error of {} bytes from a built-in object",
                bytes.len()
            )))),
        }
    }

    /// [`call`](Self::call), with a method's own error (a registered type's) kept apart:
    /// `Ok(Err(bytes))` is its encoding.
    pub(crate) fn call_raw<O: Serialize, R: DeserializeOwned>(
        &self,
        op: &O,
    ) -> Result<Result<R, Vec<u8>>, ManagerError> {
        let client = self.client()?;
        let op = refs::storing_to(&client.endpoint, || encode(op))?;
        let req = Request::Call {
            id: self.0.id,
            op: Bytes(op),
        };
        match client.call(&req)? {
            Reply::Ok { bytes, given } => Ok(Ok(decode_reply(&client, &bytes, given)?)),
            Reply::Err(e) => Err(e.into()),
            Reply::UserErr(b) => Ok(Err(b.0)),
        }
    }
}

/// Decode a reply's bytes, the proxies inside adopting the references `given`; references
/// left over (a decode that failed half-way) are given back.
pub(crate) fn decode_reply<R: DeserializeOwned>(
    client: &ClientInner,
    bytes: &[u8],
    given: Vec<Id>,
) -> Result<R, PickleError> {
    if given.is_empty() {
        return decode(bytes);
    }
    let (r, left) = refs::adopting(&client.endpoint, given, || decode::<R>(bytes));
    client.decref(left);
    r
}

impl Serialize for Proxy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let token = match refs::on_encode(self) {
            OnEncode::Nothing => 0,
            OnEncode::Travel => {
                let travel = || -> Result<u64, ManagerError> {
                    let client = self.client()?;
                    match client.call(&Request::Incref { id: self.0.id })? {
                        Reply::Ok { bytes, .. } => Ok(decode::<u64>(&bytes)?),
                        Reply::Err(e) => Err(e.into()),
                        Reply::UserErr(_) => Err(ServerError::Malformed("incref".into()).into()),
                    }
                };
                travel().map_err(serde::ser::Error::custom)?
            }
        };
        Wire {
            address: WireAddress::of(&self.0.endpoint.address),
            authkey: Bytes(self.0.endpoint.authkey.clone()),
            id: self.0.id,
            type_name: self.0.type_name.clone(),
            token,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Proxy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let endpoint = Endpoint {
            address: w.address.into_address(),
            authkey: w.authkey.0,
        };
        let (client, owned) = match refs::on_decode(&endpoint, w.id) {
            OnDecode::Inert => (None, false),
            how => {
                let client =
                    ClientInner::for_endpoint(&endpoint).map_err(serde::de::Error::custom)?;
                if let OnDecode::Claim = how {
                    let req = Request::Claim {
                        id: w.id,
                        token: w.token,
                    };
                    match client.call(&req).map_err(serde::de::Error::custom)? {
                        Reply::Ok { .. } => {}
                        Reply::Err(e) => return Err(serde::de::Error::custom(e)),
                        Reply::UserErr(_) => return Err(serde::de::Error::custom("claim")),
                    }
                }
                (Some(client), true)
            }
        };
        Ok(Proxy(Arc::new(Handle {
            id: w.id,
            type_name: w.type_name,
            endpoint,
            client,
            owned,
        })))
    }
}

/// Implements `Serialize`/`Deserialize` for a typed proxy `$t` (a struct with a `core: Proxy`
/// field and a `PhantomData`), checking the type name when decoding. A proxy type without
/// type parameters (a lock's) is named alone: `typed_proxy_serde!(LockProxy, TYPE)`.
macro_rules! typed_proxy_serde {
    ($t:ident, $name:expr) => {
        $crate::proxy::typed_proxy_serde!($t<>, $name);
    };
    ($t:ident < $($g:ident),* >, $name:expr) => {
        impl<$($g),*> serde::Serialize for $t<$($g),*> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.core.serialize(s)
            }
        }
        impl<'de, $($g),*> serde::Deserialize<'de> for $t<$($g),*> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let core = $crate::Proxy::deserialize(d)?
                    .expect_type($name)
                    .map_err(serde::de::Error::custom)?;
                Ok($t { core, _t: std::marker::PhantomData })
            }
        }
        impl<$($g),*> Clone for $t<$($g),*> {
            fn clone(&self) -> Self {
                $t { core: self.core.clone(), _t: std::marker::PhantomData }
            }
        }
        impl<$($g),*> std::fmt::Debug for $t<$($g),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&self.core, f)
            }
        }
        impl<$($g),*> $t<$($g),*> {
            /// The untyped proxy underneath (its id, type name, server address).
            pub fn proxy(&self) -> &$crate::Proxy {
                &self.core
            }
        }
    };
}
pub(crate) use typed_proxy_serde;
