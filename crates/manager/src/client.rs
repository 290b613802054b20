//! A client of one server in this process: its session and a few connections to it. Every
//! proxy of that server in this process shares it (found again through a registry by address
//! and key), so proxies are cheap to clone, send and decode.
//!
//! A call takes an idle connection (or opens one, which joins the session), sends one
//! request, reads one reply and gives the connection back, so threads calling at once (a
//! blocking `get` in one, a `set` in another) never wait for each other. The session ends, and
//! the server drops its references, when the last connection closes: when the last proxy and
//! manager of that server in this process are dropped, or the process dies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use multiproc_pickle::{decode, encode, fingerprint};
use multiproc_process::{Address, Client, Error as ProcessError};
use parking_lot::Mutex;

use crate::channel::Channel;
use crate::error::ManagerError;
use crate::wire::{Id, Reply, Request, Welcome};

/// Where a server listens and the key it wants: what identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
}

/// The largest reply a client accepts (a `copy` of a big dict is one reply).
pub(crate) const MAX_REPLY: u64 = 1 << 30;

/// At most this many idle connections are kept (threads that called at once opened more).
const MAX_IDLE: usize = 8;

pub(crate) struct ClientInner {
    pub(crate) endpoint: Endpoint,
    pub(crate) welcome: Welcome,
    /// The process this client belongs to: a forked child must not use its parent's sockets.
    pid: u32,
    idle: Mutex<Vec<Channel>>,
    /// Set once a call found the server gone: later calls fail at once.
    gone: AtomicBool,
    /// Set when this process asked the server to shut down: a call that then cannot reach
    /// it reports the server gone, not a failed connection.
    closing: AtomicBool,
}

impl std::fmt::Debug for ClientInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.endpoint.address)
            .field("session", &self.welcome.session)
            .finish()
    }
}

/// The clients of this process, by endpoint.
static CLIENTS: Mutex<Vec<Weak<ClientInner>>> = Mutex::new(Vec::new());

fn connect_error(ep: &Endpoint, source: ProcessError) -> ManagerError {
    ManagerError::Connect {
        address: ep.address.to_string(),
        source,
    }
}

/// Open a connection and say hello; returns it with the server's welcome. A connection that
/// can carry descriptors (a Unix socket: the server is on this machine) gets a channel of
/// shared memory.
fn open(ep: &Endpoint, session: Option<u64>) -> Result<(Channel, Welcome), ManagerError> {
    let conn = Client::connect(&ep.address, Some(&ep.authkey)).map_err(|e| connect_error(ep, e))?;
    conn.set_max_message_size(MAX_REPLY);
    let rings = if conn.can_carry_handles() {
        match Channel::rings() {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!(error = %e, "no shared-memory channel to the manager: using its socket");
                None
            }
        }
    } else {
        None
    };
    let hello = Request::Hello {
        session,
        fingerprint: fingerprint(),
        rings: rings.is_some(),
    };
    conn.send_bytes(&encode(&hello)?)
        .map_err(|e| connect_error(ep, e))?;
    if let Some(r) = &rings {
        conn.send(r).map_err(|e| connect_error(ep, e))?;
    }
    let reply = conn.recv_bytes().map_err(|e| connect_error(ep, e))?;
    let chan = match rings {
        Some((out, inc)) => Channel::Shared { conn, out, inc },
        None => Channel::Socket(conn),
    };
    match decode::<Reply>(&reply)? {
        Reply::Ok { bytes, .. } => Ok((chan, decode::<Welcome>(&bytes)?)),
        Reply::Err(e) => Err(e.into()),
        Reply::UserErr(_) => Err(ManagerError::Server(crate::ServerError::Malformed(
            "unexpected reply to hello".into(),
        ))),
    }
}

impl ClientInner {
    /// The client of `ep` in this process: the existing one, or a new session.
    pub(crate) fn for_endpoint(ep: &Endpoint) -> Result<Arc<ClientInner>, ManagerError> {
        let pid = std::process::id();
        {
            let mut clients = CLIENTS.lock();
            clients.retain(|w| w.strong_count() > 0);
            for w in clients.iter() {
                if let Some(c) = w.upgrade() {
                    if c.pid == pid && c.endpoint == *ep && !c.gone.load(Ordering::Relaxed) {
                        return Ok(c);
                    }
                }
            }
        }
        let (chan, welcome) = open(ep, None)?;
        tracing::debug!(address = %ep.address, session = welcome.session, "connected to a manager");
        let c = Arc::new(ClientInner {
            endpoint: ep.clone(),
            welcome,
            pid,
            idle: Mutex::new(vec![chan]),
            gone: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        });
        CLIENTS.lock().push(Arc::downgrade(&c));
        Ok(c)
    }

    /// Whether this client belongs to the running process (not inherited through `fork`).
    pub(crate) fn is_ours(&self) -> bool {
        self.pid == std::process::id()
    }

    fn take(&self) -> Result<Channel, ManagerError> {
        if self.gone.load(Ordering::Relaxed) {
            return Err(ManagerError::ServerGone(ProcessError::Eof));
        }
        if let Some(c) = self.idle.lock().pop() {
            return Ok(c);
        }
        match open(&self.endpoint, Some(self.welcome.session)) {
            Ok((chan, _)) => Ok(chan),
            Err(ManagerError::Connect { source, .. }) if self.closing.load(Ordering::Acquire) => {
                Err(self.broken(source))
            }
            Err(e) => Err(e),
        }
    }

    /// Say that this process is shutting the server down: from now on a call that cannot
    /// connect fails with [`ManagerError::ServerGone`].
    pub(crate) fn closing(&self) {
        self.closing.store(true, Ordering::Release);
    }

    fn give_back(&self, conn: Channel) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn broken(&self, e: ProcessError) -> ManagerError {
        self.gone.store(true, Ordering::Relaxed);
        tracing::debug!(address = %self.endpoint.address, error = %e, "the manager server is gone");
        ManagerError::ServerGone(e)
    }

    /// Send `req` and wait for its reply.
    pub(crate) fn call(&self, req: &Request) -> Result<Reply, ManagerError> {
        let bytes = encode(req)?;
        if bytes.len() as u64 > self.welcome.max_request {
            return Err(ManagerError::RequestTooLarge {
                size: bytes.len() as u64,
                max: self.welcome.max_request,
            });
        }
        let conn = self.take()?;
        if let Err(e) = conn.send(&bytes) {
            return Err(self.broken(e));
        }
        let reply = match conn.recv(MAX_REPLY) {
            Ok(r) => r,
            Err(ProcessError::Pickle(e)) => return Err(e.into()), // too big: the connection is dropped
            Err(e) => return Err(self.broken(e)),
        };
        self.give_back(conn);
        Ok(decode::<Reply>(&reply)?)
    }

    /// Drop this session's references on `ids` (no reply; a server gone has dropped them).
    pub(crate) fn decref(&self, ids: Vec<Id>) {
        if ids.is_empty() || !self.is_ours() {
            return;
        }
        let Ok(bytes) = encode(&Request::Decref { ids }) else {
            return;
        };
        if let Ok(conn) = self.take() {
            match conn.send(&bytes) {
                Ok(()) => self.give_back(conn),
                Err(e) => {
                    self.broken(e);
                }
            }
        }
    }
}
