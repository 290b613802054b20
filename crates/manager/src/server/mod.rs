//! The server: a listener, a thread per connection, the object table.
//!
//! Every connection has its own thread, so a slow, silent or blocked client (one waiting in a
//! queue's `get`) never delays another. The listener authenticates (CPython's HMAC challenge)
//! before a connection reaches a thread; its pending handshakes are driven together, with a
//! deadline, so a peer that sends nothing holds nothing. A frame over the size limit, a request
//! that does not decode (malformed, too deep) or a first message that is not `Hello` closes
//! that connection with a logged error and nothing else.

pub(crate) mod object;
mod table;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use multiproc_pickle::{decode_with_max_depth, encode, fingerprint, Bytes};
use multiproc_process::{Address, Connection, Error as ProcessError, Listener, ToAddress};
use multiproc_sync::ByteQueue;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::channel::Channel;
use crate::error::{ManagerError, ServerError};
use crate::wire::{Id, Reply, Request, Stored, Welcome};
use object::{CallCtx, Constructor};
use table::{Dead, Table};

/// Limits and choices of a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Config {
    /// Run functions clients send (`update` with a `fn`): only for clients trusted to run code
    /// of this build on the server.
    pub(crate) allow_functions: bool,
    /// The largest request accepted, in bytes.
    pub(crate) max_request: u64,
    /// The deepest nesting a request may have.
    pub(crate) max_depth: usize,
    /// How long a connecting peer has to authenticate.
    pub(crate) auth_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            allow_functions: false,
            max_request: 64 << 20,
            max_depth: multiproc_pickle::DEFAULT_MAX_DEPTH,
            auth_timeout: Duration::from_secs(5),
        }
    }
}

/// What every connection thread of a server shares.
pub(crate) struct Shared {
    table: Mutex<Table>,
    types: HashMap<String, Constructor>,
    pub(crate) config: Config,
    shutting_down: AtomicBool,
    /// Run once when the server stops (a `SharedMemoryManager` unlinks its blocks).
    pub(crate) on_shutdown: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
}

impl Shared {
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(crate) fn incref_all(&self, ids: &[Id]) -> Result<(), ServerError> {
        self.table.lock().incref_all(ids)
    }

    pub(crate) fn give(&self, session: u64, ids: &[Id]) -> Result<(), ServerError> {
        self.table.lock().give(session, ids)
    }

    /// Drop references on `ids` (of stored values), and whatever that frees.
    pub(crate) fn release(&self, ids: Vec<Id>) {
        if ids.is_empty() {
            return;
        }
        let mut dead = Dead::new();
        {
            let mut t = self.table.lock();
            for id in ids {
                t.decref(id, 1, &mut dead);
            }
        }
        self.bury(dead);
    }

    /// Drain dead objects (outside the table's lock), releasing what they stored, in a loop.
    fn bury(&self, mut dead: Dead) {
        while let Some(obj) = dead.pop() {
            let ids = obj.drain();
            drop(obj);
            if ids.is_empty() {
                continue;
            }
            let mut t = self.table.lock();
            for id in ids {
                t.decref(id, 1, &mut dead);
            }
        }
    }

    /// The number of live objects (for tests and logs).
    pub(crate) fn object_count(&self) -> usize {
        self.table.lock().len()
    }

    fn create(&self, session: u64, type_name: &str, init: Stored) -> Result<Reply, ServerError> {
        let make = self
            .types
            .get(type_name)
            .ok_or_else(|| ServerError::UnknownType(type_name.to_owned()))?;
        self.incref_all(&init.refs)?;
        let refs = init.refs.clone();
        let made = std::panic::catch_unwind(AssertUnwindSafe(|| make(init)))
            .unwrap_or_else(|p| Err(ServerError::Panicked(panic_text(&*p))));
        match made {
            Ok(obj) => {
                let id = self.table.lock().insert(session, obj);
                Reply::plain(&id)
            }
            Err(e) => {
                self.release(refs);
                Err(e)
            }
        }
    }

    fn call(
        &self,
        session: u64,
        id: Id,
        op: &[u8],
        conn: Option<&Connection>,
    ) -> Result<Reply, ServerError> {
        let obj = self.table.lock().get(id)?;
        let mut ctx = CallCtx::new(self, session, conn);
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| obj.call(op, &mut ctx)))
            .unwrap_or_else(|p| Err(ServerError::Panicked(panic_text(&*p))));
        let released = ctx.take_released();
        drop(obj);
        self.release(released);
        r
    }

    /// Answer one request of `session` (not `Hello`, not `Decref`).
    fn handle(
        &self,
        session: u64,
        req: Request,
        conn: Option<&Connection>,
    ) -> Result<Reply, ServerError> {
        if self.is_shutting_down() {
            return Err(ServerError::ShuttingDown);
        }
        match req {
            Request::Create { type_name, init } => self.create(session, &type_name, init),
            Request::Call { id, op } => self.call(session, id, &op.0, conn),
            Request::Incref { id } => Reply::plain(&self.table.lock().travel(id)?),
            Request::Claim { id, token } => {
                self.table.lock().claim(session, id, token)?;
                Reply::plain(&())
            }
            Request::Pin { id } => {
                self.table.lock().pin(id)?;
                Reply::plain(&())
            }
            Request::Count => Reply::plain(&(self.object_count() as u64)),
            Request::TypeOf { id } => Reply::plain(&self.table.lock().type_of(id)?),
            Request::Shutdown => {
                self.shut_down();
                Reply::plain(&())
            }
            Request::Hello { .. } | Request::Decref { .. } => {
                Err(ServerError::Malformed("unexpected request".into()))
            }
        }
    }

    fn drop_refs(&self, session: u64, ids: &[Id]) {
        let mut dead = Dead::new();
        self.table.lock().drop_session_refs(session, ids, &mut dead);
        self.bury(dead);
    }

    fn close_connection(&self, session: u64) {
        let mut dead = Dead::new();
        let (ended, all) = {
            let mut t = self.table.lock();
            let ended = t.close_connection(session, &mut dead);
            (ended, if ended { t.all() } else { Vec::new() })
        };
        if ended {
            tracing::debug!(session, "a client session ended");
            for obj in all {
                obj.session_ended(session);
            }
        }
        self.bury(dead);
    }

    /// Stop serving: new requests are refused, the accept loop ends, cleanups run.
    pub(crate) fn shut_down(&self) {
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::debug!("manager server shutting down");
        let hooks = std::mem::take(&mut *self.on_shutdown.lock());
        for h in hooks {
            h();
        }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// A bound server: serves once `serve_forever` runs (or `spawn` runs it on a thread).
pub(crate) struct Server {
    listener: Listener,
    pub(crate) shared: Arc<Shared>,
}

impl Server {
    pub(crate) fn bind(
        address: impl ToAddress,
        authkey: &[u8],
        config: Config,
        types: HashMap<String, Constructor>,
    ) -> Result<Server, ManagerError> {
        let address = address.to_address().map_err(ManagerError::Start)?;
        let mut listener =
            Listener::bind(&address, Some(authkey)).map_err(|e| ManagerError::Connect {
                address: address.to_string(),
                source: e,
            })?;
        listener.set_auth_timeout(Some(config.auth_timeout));
        let mut all = crate::builtin_types();
        all.extend(types);
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                table: Mutex::new(Table::default()),
                types: all,
                config,
                shutting_down: AtomicBool::new(false),
                on_shutdown: Mutex::new(Vec::new()),
            }),
        })
    }

    pub(crate) fn address(&self) -> Address {
        self.listener.address()
    }

    /// Accept and serve until a client asks for shutdown.
    pub(crate) fn serve_forever(&self) {
        while !self.shared.is_shutting_down() {
            match self.listener.accept_timeout(Duration::from_millis(100)) {
                Ok(Some(conn)) => {
                    let shared = self.shared.clone();
                    let spawned = std::thread::Builder::new()
                        .name("manager-conn".into())
                        .spawn(move || serve_connection(&shared, conn));
                    if let Err(e) = spawned {
                        tracing::error!(error = %e, "manager server: no thread for a connection");
                    }
                }
                Ok(None) => {}
                Err(ProcessError::Authentication(why)) => {
                    tracing::warn!(%why, "manager server: a client failed to authenticate");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "manager server: a connection failed before it was served");
                    if matches!(&e, ProcessError::Io(io) if io.raw_os_error() == Some(24)) {
                        // out of descriptors: let some close before trying again
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }
    }
}

/// Serve one connection until it closes or misbehaves.
fn serve_connection(shared: &Shared, conn: Connection) {
    conn.set_max_message_size(shared.config.max_request);
    conn.set_max_depth(shared.config.max_depth);
    let (depth, max) = (shared.config.max_depth, shared.config.max_request);
    let read = |chan: &Channel| -> Option<Request> {
        let bytes = match chan.recv(max) {
            Ok(b) => b,
            Err(ProcessError::Eof) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "manager server: closing a connection that sent a bad frame");
                return None;
            }
        };
        match decode_with_max_depth::<Request>(&bytes, depth) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "manager server: closing a connection that sent a malformed request");
                None
            }
        }
    };
    let send = |chan: &Channel, r: Result<Reply, ServerError>| -> bool {
        let r = r.unwrap_or_else(Reply::Err);
        match encode(&r) {
            Ok(b) => chan.send(&b).is_ok(),
            Err(e) => {
                tracing::error!(error = %e, "manager server: a reply did not encode");
                false
            }
        }
    };
    // The first request says which session the connection belongs to, and whether the
    // client's rings follow.
    let mut chan = Channel::Socket(conn);
    let session = match read(&chan) {
        Some(Request::Hello { session, rings, .. }) => {
            if rings {
                match chan.conn().recv::<(ByteQueue, ByteQueue)>() {
                    // the client's (to server, to client) are our (incoming, outgoing)
                    Ok((inc, out)) => {
                        let Channel::Socket(conn) = chan else {
                            unreachable!("a fresh connection")
                        };
                        chan = Channel::Shared { conn, out, inc };
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "manager server: closing a connection whose rings did not come");
                        return;
                    }
                }
            }
            let joined = {
                let mut t = shared.table.lock();
                match session {
                    None => Some(t.open_session()),
                    Some(s) => t.join_session(s).then_some(s),
                }
            };
            let welcome_on_socket = |r: Result<Reply, ServerError>| -> bool {
                let r = r.unwrap_or_else(Reply::Err);
                encode(&r).is_ok_and(|b| chan.conn().send_bytes(&b).is_ok())
            };
            let Some(s) = joined else {
                welcome_on_socket(Err(ServerError::Malformed("no such session".into())));
                return;
            };
            let welcome = Welcome {
                session: s,
                fingerprint: fingerprint(),
                functions: shared.config.allow_functions,
                pid: std::process::id(),
                max_request: shared.config.max_request,
            };
            let bytes = encode(&welcome).map(Bytes).unwrap_or_default();
            if !welcome_on_socket(Ok(Reply::Ok {
                bytes,
                given: Vec::new(),
            })) {
                shared.close_connection(s);
                return;
            }
            s
        }
        Some(_) => {
            tracing::warn!("manager server: closing a connection whose first request is not hello");
            return;
        }
        None => return,
    };
    while let Some(req) = read(&chan) {
        match req {
            Request::Decref { ids } => shared.drop_refs(session, &ids),
            req => {
                let reply = shared.handle(session, req, Some(chan.conn()));
                if !send(&chan, reply) {
                    break;
                }
            }
        }
    }
    shared.close_connection(session);
}
