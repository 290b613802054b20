//! The messages between proxies and the server: typed, encoded with postcard, one frame each.
//! Nothing here names code to run, except `Func` (see `func.rs`), which a server refuses unless
//! it was built to trust its clients with it.

use multiproc_pickle::{encode, Bytes, PickleError};
use serde::{Deserialize, Serialize};

use crate::client::Endpoint;
use crate::error::ServerError;
use crate::proxy::Proxy;
use crate::refs;

/// An object's id on its server.
pub(crate) type Id = u64;

/// A value as the server keeps it: its encoding and the objects (proxies inside it) it refers
/// to, each of which it holds a reference on while it is stored.
///
/// Made by a client, it also remembers the proxies met while encoding: when it is sent
/// ([`refs::storing_to`]), only those of the receiving server become `refs` (ids mean nothing
/// on another server), and the others are pinned on their own servers.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Stored {
    pub(crate) bytes: Bytes,
    pub(crate) refs: Vec<Id>,
    #[serde(skip)]
    met: Vec<Proxy>,
}

impl Stored {
    /// Encode `value` for a server, noting the proxies inside it.
    pub(crate) fn of<T: Serialize + ?Sized>(value: &T) -> Result<Stored, PickleError> {
        let (bytes, met) = refs::collecting(|| encode(value));
        let bytes = bytes?;
        Ok(Stored {
            bytes: Bytes(bytes),
            refs: met.iter().map(Proxy::id).collect(),
            met,
        })
    }

    /// A value made of bytes and the references they hold (on the server, or a bundle).
    pub(crate) fn on_server(bytes: Bytes, refs: Vec<Id>) -> Stored {
        Stored {
            bytes,
            refs,
            met: Vec::new(),
        }
    }

    /// The initial state of a new object, made of values already encoded (their references
    /// travel inside them; the bundle lists them all, so the server takes them at once).
    pub(crate) fn bundle<T: Serialize + StoredParts + ?Sized>(
        parts: &T,
    ) -> Result<Stored, PickleError> {
        // Called inside `refs::storing_to` (see `Manager::bundle`): the parts, encoded now,
        // keep the ids of the receiving server's proxies and pin the others.
        let to = refs::target();
        let mut refs = Vec::new();
        parts.each_stored(&mut |s| refs.extend(s.own_refs(to.as_ref())));
        Ok(Stored::on_server(Bytes(encode(parts)?), refs))
    }

    /// The ids of the proxies inside that live on `to` (all of them when `to` is not known).
    fn own_refs(&self, to: Option<&Endpoint>) -> Vec<Id> {
        match to {
            Some(to) if !self.met.is_empty() => self
                .met
                .iter()
                .filter(|p| p.endpoint() == to)
                .map(Proxy::id)
                .collect(),
            _ => self.refs.clone(),
        }
    }

    /// Whether the value holds no proxy.
    pub(crate) fn is_plain(&self) -> bool {
        self.refs.is_empty()
    }
}

impl Serialize for Stored {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            bytes: &'a Bytes,
            refs: &'a [Id],
        }
        let to = refs::target();
        if let Some(to) = &to {
            if !multiproc_pickle::is_checking() {
                for p in self.met.iter().filter(|p| p.endpoint() != to) {
                    p.pin().map_err(serde::ser::Error::custom)?;
                }
            }
        }
        let refs = self.own_refs(to.as_ref());
        Wire {
            bytes: &self.bytes,
            refs: &refs,
        }
        .serialize(s)
    }
}

/// A request from a client.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// The first message on every connection: join `session` (another connection of the same
    /// client) or open a new one. With `rings`, the client sends the two rings of a shared
    /// channel next (a frame with their descriptors), and every later message goes through
    /// them. Reply (on the socket): [`Welcome`].
    Hello {
        session: Option<u64>,
        fingerprint: u64,
        rings: bool,
    },
    /// Create an object of a registered type from `init` (its encoded initial state). Reply:
    /// the new object's id, held by the caller's session.
    Create { type_name: String, init: Stored },
    /// Call an object: `op` is the encoded operation of its type.
    Call { id: Id, op: Bytes },
    /// A reference for a proxy about to travel outside any manager call (to a child process,
    /// through a pipe or a queue): held by the server until a receiver claims it. Reply: a
    /// token.
    Incref { id: Id },
    /// Take a reference for this session: the one a travelling proxy left (`token`), or a new
    /// one on a live object.
    Claim { id: Id, token: u64 },
    /// Drop references of this session. No reply.
    Decref { ids: Vec<Id> },
    /// The type name of an object. Reply: a `String`.
    TypeOf { id: Id },
    /// How many objects live on the server. Reply: a `u64`.
    Count,
    /// Stop the server. Reply: `()`.
    Shutdown,
    /// A reference on a live object that lasts until the server stops, for a proxy stored in
    /// an object of another server. Reply: `()`.
    Pin { id: Id },
}

/// The server's answer to `Hello`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Welcome {
    pub(crate) session: u64,
    pub(crate) fingerprint: u64,
    pub(crate) functions: bool,
    pub(crate) pid: u32,
    /// The largest request the server accepts: a client refuses a bigger one before sending
    /// it (the server would close the connection, which looks like the server gone).
    pub(crate) max_request: u64,
}

/// A reply to any request but `Decref`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The encoded result, and the objects it refers to on which the server took a reference
    /// for the caller's session (the proxies decoded from it adopt them).
    Ok { bytes: Bytes, given: Vec<Id> },
    /// The request was refused.
    Err(ServerError),
    /// A method of a registered type returned its own error (encoded as that method's error
    /// type).
    UserErr(Bytes),
}

impl Reply {
    /// An `Ok` reply of a value that holds no proxies.
    pub(crate) fn plain<T: Serialize + ?Sized>(value: &T) -> Result<Reply, ServerError> {
        let bytes = encode(value).map_err(|e| ServerError::Malformed(e.to_string()))?;
        Ok(Reply::Ok {
            bytes: Bytes(bytes),
            given: Vec::new(),
        })
    }
}

/// Something made of [`Stored`] values (an object's initial state).
pub(crate) trait StoredParts {
    fn each_stored(&self, f: &mut dyn FnMut(&Stored));
}

impl StoredParts for Stored {
    fn each_stored(&self, f: &mut dyn FnMut(&Stored)) {
        f(self)
    }
}

impl<T: StoredParts> StoredParts for [T] {
    fn each_stored(&self, f: &mut dyn FnMut(&Stored)) {
        self.iter().for_each(|x| x.each_stored(f))
    }
}

impl<T: StoredParts> StoredParts for Vec<T> {
    fn each_stored(&self, f: &mut dyn FnMut(&Stored)) {
        self.iter().for_each(|x| x.each_stored(f))
    }
}

impl<T: StoredParts> StoredParts for Option<T> {
    fn each_stored(&self, f: &mut dyn FnMut(&Stored)) {
        self.iter().for_each(|x| x.each_stored(f))
    }
}

impl<A, B: StoredParts> StoredParts for (A, B) {
    fn each_stored(&self, f: &mut dyn FnMut(&Stored)) {
        self.1.each_stored(f)
    }
}

/// Parts with no values (a lock's initial state).
impl StoredParts for () {
    fn each_stored(&self, _: &mut dyn FnMut(&Stored)) {}
}
