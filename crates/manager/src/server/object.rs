//! What the server knows of an object: a trait every type implements (the built-in ones and
//! registered user types), the context of one call, and the replies it builds.

use std::sync::Arc;

use multiproc_pickle::Bytes;
use multiproc_process::Connection;

use super::Shared;
use crate::error::ServerError;
use crate::wire::{Id, Reply, Stored};

/// An object on the server. Its state is behind its own lock; a call may block (a queue's
/// `get`), which blocks only the connection that made it.
pub(crate) trait ServerObject: Send + Sync + 'static {
    /// Its type's name, as clients create it.
    fn type_name(&self) -> &str;
    /// Run one operation (`op`, encoded by the proxy).
    fn call(&self, op: &[u8], ctx: &mut CallCtx<'_>) -> Result<Reply, ServerError>;
    /// The object is gone: the references held by everything it stores, to be dropped.
    fn drain(&self) -> Vec<Id> {
        Vec::new()
    }
    /// A client session ended (its process died or let go): release what it held (locks).
    fn session_ended(&self, _session: u64) {}
    /// The object as `Any`, for another object of the server that uses it (a condition finds
    /// its lock by id). `None`: nobody may look inside.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// How the server makes an object of a type from its encoded initial state (whose references
/// the server has already taken for it).
pub(crate) type Constructor = fn(Stored) -> Result<Arc<dyn ServerObject>, ServerError>;

/// Decode an operation, or say it is malformed.
pub(crate) fn decode_op<O: serde::de::DeserializeOwned>(op: &[u8]) -> Result<O, ServerError> {
    multiproc_pickle::decode(op).map_err(|e| ServerError::Malformed(e.to_string()))
}

/// The context of one call: who calls, and the reference counting the call causes.
pub(crate) struct CallCtx<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) session: u64,
    /// The connection the call came on (a blocking wait checks that its caller is still
    /// there).
    pub(crate) conn: Option<&'a Connection>,
    /// References to drop once the call is over (values the call removed or replaced).
    released: Vec<Id>,
}

impl<'a> CallCtx<'a> {
    pub(crate) fn new(shared: &'a Shared, session: u64, conn: Option<&'a Connection>) -> Self {
        CallCtx {
            shared,
            session,
            conn,
            released: Vec::new(),
        }
    }

    /// Take the references a value about to be stored holds (all or none: an unknown id is
    /// refused and nothing is stored).
    pub(crate) fn keep(&mut self, s: &Stored) -> Result<(), ServerError> {
        if s.refs.is_empty() {
            return Ok(());
        }
        self.shared.incref_all(&s.refs)
    }

    /// A stored value was removed or replaced: its references go when the call is over.
    pub(crate) fn release(&mut self, s: Stored) {
        self.released.extend(s.refs);
    }

    /// References to drop once the call is over.
    pub(crate) fn release_ids(&mut self, ids: impl IntoIterator<Item = Id>) {
        self.released.extend(ids);
    }

    /// The references to drop now that the call is over.
    pub(crate) fn take_released(&mut self) -> Vec<Id> {
        std::mem::take(&mut self.released)
    }

    /// Whether the caller hung up (a blocking wait stops waiting for a caller that is gone, so
    /// what it would take stays for others).
    pub(crate) fn caller_gone(&self) -> bool {
        // a caller waiting for its reply sends nothing: readable means end of file
        self.conn
            .is_some_and(|c| c.poll(Some(std::time::Duration::ZERO)).unwrap_or(true))
            || self.shared.is_shutting_down()
    }

    /// Why a blocking wait must stop now, if it must: the caller hung up
    /// ([`ServerError::CallerGone`]) or the server is shutting down.
    pub(crate) fn wait_ended(&self) -> Option<ServerError> {
        if self.shared.is_shutting_down() {
            Some(ServerError::ShuttingDown)
        } else if self.caller_gone() {
            Some(ServerError::CallerGone)
        } else {
            None
        }
    }

    /// Another object of this server, by id.
    pub(crate) fn object(&self, id: Id) -> Result<Arc<dyn ServerObject>, ServerError> {
        self.shared.table.lock().get(id)
    }

    /// Start a reply that will carry values.
    pub(crate) fn out(&self) -> Out {
        Out {
            bytes: Vec::new(),
            given: Vec::new(),
        }
    }

    /// Finish a reply: take the caller's references on what it carries.
    pub(crate) fn finish(&mut self, out: Out) -> Result<Reply, ServerError> {
        if !out.given.is_empty() {
            self.shared.give(self.session, &out.given)?;
        }
        Ok(Reply::Ok {
            bytes: Bytes(out.bytes),
            given: out.given,
        })
    }
}

/// A reply under construction, written in postcard's format directly: values are copied as
/// stored (they are already encoded), so an `Option<V>` is a tag and the bytes, a `Vec<V>` a
/// length and the values one after the other, a map a length and its pairs.
pub(crate) struct Out {
    bytes: Vec<u8>,
    given: Vec<Id>,
}

impl Out {
    /// A stored value (the caller gets a reference on each proxy inside).
    pub(crate) fn value(&mut self, s: &Stored) -> &mut Self {
        self.bytes.extend_from_slice(&s.bytes.0);
        self.given.extend_from_slice(&s.refs);
        self
    }

    /// Bytes that are a whole encoded value with no proxies (a key).
    pub(crate) fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(b);
        self
    }

    /// `Some(value)`.
    pub(crate) fn some(&mut self, s: &Stored) -> &mut Self {
        self.bytes.push(1);
        self.value(s)
    }

    /// `None`.
    pub(crate) fn none(&mut self) -> &mut Self {
        self.bytes.push(0);
        self
    }

    /// An `Option` of a stored value.
    pub(crate) fn option(&mut self, s: Option<&Stored>) -> &mut Self {
        match s {
            Some(s) => self.some(s),
            None => self.none(),
        }
    }

    /// The length of a sequence or map that follows.
    pub(crate) fn len(&mut self, mut n: usize) -> &mut Self {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.bytes.push(byte);
                return self;
            }
            self.bytes.push(byte | 0x80);
        }
    }
}
