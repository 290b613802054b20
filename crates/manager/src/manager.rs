//! [`Manager`]: starting, serving, connecting to and stopping a server; [`ManagerBuilder`] for
//! the choices. The typed constructors (`dict`, `list`, ...) live beside their proxies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use multiproc_pickle::{decode, Bytes, FnRef, PickleError};
use multiproc_process::{Address, Connection, Process, StartMethod, ToAddress};
use serde::{Deserialize, Serialize};

use crate::client::{ClientInner, Endpoint};
use crate::error::{ManagerError, ServerError};
use crate::proxy::{Proxy, WireAddress};
use crate::refs;
use crate::server::object::Constructor;
use crate::server::{Config, Server, Shared};
use crate::wire::{Reply, Request, Stored, StoredParts};

/// What runs the server of a manager.
enum Owner {
    /// Another program (`connect`).
    Nobody,
    /// A child process (`start`).
    Child(Process),
    /// A thread of this process (`serve`).
    Thread {
        shared: Arc<Shared>,
        thread: Option<JoinHandle<()>>,
    },
}

/// A manager: a server process that owns objects, and the way to make them. Python's
/// `multiprocessing.Manager()` / `SyncManager` / `BaseManager`.
///
/// - [`Manager::start`] starts the server in a child process (stopped by
///   [`shutdown`](Self::shutdown) or when the `Manager` is dropped, and with this process if it
///   dies);
/// - [`Manager::connect`] reaches a server that runs elsewhere (another program, another host);
/// - [`Manager::serve`] runs one on threads of this process, [`Manager::serve_forever`] in the
///   calling thread.
///
/// Its methods make objects on the server and return typed proxies
/// ([`dict`](Self::dict), lists, namespaces, queues, locks, ...). A proxy is a serde value: pass it to a child process, put it on a queue, store it in
/// another managed object; every copy refers to the same object, which lives while any proxy of
/// it does.
///
/// ```
/// use multiproc::{Manager, Process};
/// use multiproc::managers::DictProxy;
///
/// fn work(d: DictProxy<String, u64>) {
///     d.add("hits".to_string(), 1).unwrap();
/// }
///
/// multiproc::init();
/// let m = Manager::start().unwrap();
/// let d = m.dict::<String, u64>().unwrap();
/// let ps: Vec<Process> = (0..3).map(|_| Process::new(work, d.clone())).collect();
/// for p in &ps { p.start().unwrap(); }
/// for p in &ps { assert_eq!(p.join().unwrap(), 0); }
/// assert_eq!(d.get(&"hits".to_string()).unwrap(), Some(3));
/// m.shutdown().unwrap();
/// ```
pub struct Manager {
    client: Arc<ClientInner>,
    owner: parking_lot::Mutex<Owner>,
    stopped: AtomicBool,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.client.endpoint.address)
            .finish()
    }
}

/// How a [`Manager`] is started or served: address, key, start method, limits, registered
/// types.
///
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::builder()
///     .start_method(multiproc::StartMethod::Spawn)
///     .start()
///     .unwrap();
/// let d = m.dict::<u8, u8>().unwrap();
/// d.set(1, 2).unwrap();
/// assert_eq!(d.copy().unwrap()[&1], 2);
/// ```
#[derive(Debug, Clone)]
pub struct ManagerBuilder {
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    start_method: Option<StartMethod>,
    start_timeout: Duration,
    config: Config,
    functions: Option<bool>,
    types: Vec<(String, FnRef)>,
}

/// What a server child gets.
#[derive(Serialize, Deserialize)]
struct ChildArgs {
    address: WireAddress,
    authkey: Bytes,
    config: Config,
    types: Vec<(String, FnRef)>,
    report: Connection,
}

fn random_key() -> Vec<u8> {
    let mut k = vec![0u8; 32];
    getrandom::getrandom(&mut k).expect("the operating system's random numbers");
    k
}

/// A fresh local address for a server this process starts.
fn local_address() -> Address {
    let mut r = [0u8; 8];
    getrandom::getrandom(&mut r).expect("the operating system's random numbers");
    let name = format!(
        "multiproc-manager-{}-{:016x}",
        std::process::id(),
        u64::from_le_bytes(r)
    );
    if cfg!(windows) {
        // a named pipe, where Unix uses a socket: local clients only (the pipe layer refuses
        // remote ones), and its name goes with its last handle
        Address::Pipe(format!(r"\\.\pipe\{name}"))
    } else if cfg!(target_os = "linux") {
        Address::Unix(format!("\0{name}").into())
    } else {
        Address::Unix(std::env::temp_dir().join(name))
    }
}

fn types_of(list: &[(String, FnRef)]) -> HashMap<String, Constructor> {
    list.iter()
        .map(|(name, f)| {
            // SAFETY: made by `FnRef::of` from a `Constructor` of this build (the child runs the
            // parent's binary, checked by the job's fingerprint; `serve` runs in-process).
            let c: Constructor = unsafe { f.resolve() };
            (name.clone(), c)
        })
        .collect()
}

/// The server child's body.
fn server_main(args: ChildArgs) {
    let ChildArgs {
        address,
        authkey,
        config,
        types,
        report,
    } = args;
    let server = match Server::bind(address.into_address(), &authkey.0, config, types_of(&types)) {
        Ok(s) => s,
        Err(e) => {
            let _ = report.send(&Err::<WireAddress, String>(e.to_string()));
            std::process::exit(1);
        }
    };
    let _ = report.send(&Ok::<WireAddress, String>(WireAddress::of(
        &server.address(),
    )));
    drop(report);
    server.serve_forever();
}

impl Default for ManagerBuilder {
    fn default() -> Self {
        ManagerBuilder {
            address: None,
            authkey: None,
            start_method: None,
            start_timeout: Duration::from_secs(30),
            config: Config::default(),
            functions: None,
            types: Vec::new(),
        }
    }
}

impl ManagerBuilder {
    /// Listen on `address` (TCP `host:port`, port 0 for any; a Unix socket path; a Windows
    /// named pipe `\\.\pipe\name`). Default for [`start`](Self::start): a fresh local
    /// address only this machine reaches (a Unix socket, on Windows a named pipe).
    pub fn address(mut self, address: impl ToAddress) -> Result<Self, ManagerError> {
        self.address = Some(address.to_address().map_err(ManagerError::Start)?);
        Ok(self)
    }

    /// The key clients must prove they know. Default for [`start`](Self::start): 32 random
    /// bytes.
    pub fn authkey(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.authkey = Some(key.into());
        self
    }

    /// How [`start`](Self::start) starts the server process (default: the context's).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// How long [`start`](Self::start) waits for the server to come up (default 30 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Whether the server runs functions clients send ([`DictProxy::update_with`](crate::DictProxy::update_with)
    /// and friends): code of this build, run on the server for whoever knows the key. Default:
    /// on for [`start`](Self::start) (the key is random and only this program's processes know
    /// it), off for [`serve`](Self::serve) and [`serve_forever`](Self::serve_forever).
    pub fn allow_functions(mut self, yes: bool) -> Self {
        self.functions = Some(yes);
        self
    }

    /// The largest request the server accepts, in bytes (default 64 MiB); a bigger frame
    /// closes the connection that sent it. The server tells its clients the limit, so a proxy
    /// refuses a bigger request before sending it ([`ManagerError::RequestTooLarge`]) and goes
    /// on.
    pub fn max_request_size(mut self, bytes: u64) -> Self {
        self.config.max_request = bytes;
        self
    }

    /// How long a connecting client has to authenticate (default 5 s).
    pub fn auth_timeout(mut self, timeout: Duration) -> Self {
        self.config.auth_timeout = timeout;
        self
    }

    /// Let clients create objects of `name`, made by `make`.
    pub(crate) fn register_constructor(mut self, name: &str, make: Constructor) -> Self {
        self.types.retain(|(n, _)| n != name);
        self.types.push((name.to_owned(), FnRef::of(make)));
        self
    }

    fn config(&self, functions_default: bool) -> Config {
        Config {
            allow_functions: self.functions.unwrap_or(functions_default),
            ..self.config.clone()
        }
    }

    /// Start the server in a child process and connect to it.
    pub fn start(self) -> Result<Manager, ManagerError> {
        let address = self.address.clone().unwrap_or_else(local_address);
        let authkey = self.authkey.clone().unwrap_or_else(random_key);
        let (report, theirs) = multiproc_process::pipe(false).map_err(ManagerError::Start)?;
        let args = ChildArgs {
            address: WireAddress::of(&address),
            authkey: Bytes(authkey.clone()),
            config: self.config(true),
            types: self.types.clone(),
            report: theirs,
        };
        let mut p = Process::new(server_main, args)
            .with_name("SyncManager")
            .daemon(true);
        if let Some(m) = self.start_method {
            p = p.start_method(m);
        }
        p.start().map_err(ManagerError::Start)?;
        let up = match report.poll(Some(self.start_timeout)) {
            Ok(true) => report.recv::<Result<WireAddress, String>>(),
            Ok(false) => {
                let _ = p.kill();
                let _ = p.join_timeout(Duration::from_secs(5));
                return Err(ManagerError::StartTimeout(self.start_timeout));
            }
            Err(e) => Err(e),
        };
        let address = match up {
            Ok(Ok(a)) => a.into_address(),
            Ok(Err(why)) => {
                let _ = p.join_timeout(Duration::from_secs(5));
                return Err(ManagerError::Server(ServerError::Os(why)));
            }
            Err(e) => {
                let _ = p.kill();
                let _ = p.join_timeout(Duration::from_secs(5));
                return Err(ManagerError::Start(e));
            }
        };
        let client = ClientInner::for_endpoint(&Endpoint { address, authkey })?;
        Ok(Manager {
            client,
            owner: parking_lot::Mutex::new(Owner::Child(p)),
            stopped: AtomicBool::new(false),
        })
    }

    fn bind(&self, address: impl ToAddress, authkey: &[u8]) -> Result<Server, ManagerError> {
        Server::bind(address, authkey, self.config(false), types_of(&self.types))
    }

    /// Serve on `address` from threads of this process, and return a manager connected to it
    /// (dropping it stops the server).
    pub fn serve(self, address: impl ToAddress, authkey: &[u8]) -> Result<Manager, ManagerError> {
        let server = self.bind(address, authkey)?;
        let endpoint = Endpoint {
            address: server.address(),
            authkey: authkey.to_vec(),
        };
        let shared = server.shared.clone();
        let thread = std::thread::Builder::new()
            .name("manager-accept".into())
            .spawn(move || server.serve_forever())
            .map_err(|e| ManagerError::Start(e.into()))?;
        let client = ClientInner::for_endpoint(&endpoint)?;
        Ok(Manager {
            client,
            owner: parking_lot::Mutex::new(Owner::Thread {
                shared,
                thread: Some(thread),
            }),
            stopped: AtomicBool::new(false),
        })
    }

    /// Serve on `address` in the calling thread until a client asks for
    /// [`shutdown`](Manager::shutdown). `on_ready` gets the bound address first (the port, when
    /// 0 asked for any).
    pub fn serve_forever(
        self,
        address: impl ToAddress,
        authkey: &[u8],
        on_ready: impl FnOnce(&Address),
    ) -> Result<(), ManagerError> {
        let server = self.bind(address, authkey)?;
        on_ready(&server.address());
        server.serve_forever();
        Ok(())
    }
}

impl Manager {
    /// Start a server in a child process, with a fresh local address and a random key, and
    /// connect to it (Python's `multiprocessing.Manager()`).
    pub fn start() -> Result<Manager, ManagerError> {
        ManagerBuilder::default().start()
    }

    /// The choices of a manager to start or serve.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Connect to a server that runs elsewhere, proving the key (Python's
    /// `BaseManager(address, authkey).connect()`). A wrong key fails here, with
    /// [`ManagerError::Connect`] around the authentication error.
    ///
    /// ```
    /// multiproc::init();
    /// let server = multiproc::Manager::serve("127.0.0.1:0", b"key").unwrap();
    /// let there = multiproc::Manager::connect(server.address().clone(), b"key").unwrap();
    /// there.dict::<u8, u8>().unwrap().set(1, 2).unwrap();
    /// assert!(multiproc::Manager::connect(server.address().clone(), b"nope").is_err());
    /// ```
    pub fn connect(address: impl ToAddress, authkey: &[u8]) -> Result<Manager, ManagerError> {
        let address = address.to_address().map_err(|e| ManagerError::Connect {
            address: "?".into(),
            source: e,
        })?;
        let client = ClientInner::for_endpoint(&Endpoint {
            address,
            authkey: authkey.to_vec(),
        })?;
        Ok(Manager {
            client,
            owner: parking_lot::Mutex::new(Owner::Nobody),
            stopped: AtomicBool::new(false),
        })
    }

    /// Serve on `address` (TCP `host:port`, a Unix socket path, a Windows named pipe) from
    /// threads of this process, and return a manager connected to it; clients elsewhere
    /// [`connect`](Self::connect) with the key. Dropping it stops the server.
    pub fn serve(address: impl ToAddress, authkey: &[u8]) -> Result<Manager, ManagerError> {
        ManagerBuilder::default().serve(address, authkey)
    }

    /// Serve on `address` in the calling thread until a client asks for
    /// [`shutdown`](Self::shutdown); `on_ready` gets the bound address first.
    pub fn serve_forever(
        address: impl ToAddress,
        authkey: &[u8],
        on_ready: impl FnOnce(&Address),
    ) -> Result<(), ManagerError> {
        ManagerBuilder::default().serve_forever(address, authkey, on_ready)
    }

    /// The server's address (give it to [`connect`](Self::connect) elsewhere).
    pub fn address(&self) -> &Address {
        &self.client.endpoint.address
    }

    /// The key of the server.
    pub fn authkey(&self) -> &[u8] {
        &self.client.endpoint.authkey
    }

    /// The pid of the server's process.
    pub fn server_pid(&self) -> u32 {
        self.client.welcome.pid
    }

    /// How many objects live on the server now (every object any proxy, anywhere, refers to).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// assert_eq!(m.object_count().unwrap(), 1);
    /// drop(d);
    /// assert_eq!(m.object_count().unwrap(), 0);
    /// ```
    pub fn object_count(&self) -> Result<usize, ManagerError> {
        match self.client.call(&Request::Count)? {
            Reply::Ok { bytes, .. } => Ok(decode::<u64>(&bytes)? as usize),
            Reply::Err(e) => Err(e.into()),
            Reply::UserErr(_) => Err(ServerError::Malformed("count".into()).into()),
        }
    }

    /// Stop the server: it refuses new requests at once and ends; proxies then fail with
    /// [`ManagerError::ServerGone`] or [`ServerError::ShuttingDown`]. A server this manager
    /// started is waited for (and killed if it does not end within 5 s). Idempotent; `Drop`
    /// calls it for a server this manager started or serves.
    pub fn shutdown(&self) -> Result<(), ManagerError> {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.client.closing();
        let asked = match self.client.call(&Request::Shutdown) {
            Ok(Reply::Ok { .. }) | Ok(Reply::Err(ServerError::ShuttingDown)) => Ok(()),
            Ok(Reply::Err(e)) => Err(e.into()),
            Ok(Reply::UserErr(_)) => Ok(()),
            Err(ManagerError::ServerGone(_)) => Ok(()),
            Err(e) => Err(e),
        };
        let mut owner = self.owner.lock();
        match &mut *owner {
            Owner::Nobody => {}
            Owner::Child(p) => match p.join_timeout(Duration::from_secs(5)) {
                Ok(Some(_)) => {}
                _ => {
                    tracing::warn!("the manager server did not stop within 5 s: killed");
                    let _ = p.kill();
                    let _ = p.join_timeout(Duration::from_secs(5));
                }
            },
            Owner::Thread { shared, thread } => {
                shared.shut_down();
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
        }
        asked
    }

    /// Make an object of `type_name` on the server from its initial state.
    pub(crate) fn create(&self, type_name: &str, init: Stored) -> Result<Proxy, ManagerError> {
        create(&self.client, type_name, init)
    }

    /// The initial state of a new object on this server, made of values already encoded.
    pub(crate) fn bundle<T: Serialize + StoredParts + ?Sized>(
        &self,
        parts: &T,
    ) -> Result<Stored, PickleError> {
        refs::storing_to(&self.client.endpoint, || Stored::bundle(parts))
    }
}

/// Make an object of `type_name` on the server `client` reaches.
pub(crate) fn create(
    client: &Arc<ClientInner>,
    type_name: &str,
    init: Stored,
) -> Result<Proxy, ManagerError> {
    let req = Request::Create {
        type_name: type_name.to_owned(),
        init,
    };
    match refs::storing_to(&client.endpoint, || client.call(&req))? {
        Reply::Ok { bytes, .. } => Ok(Proxy::owned(client.clone(), decode(&bytes)?, type_name)),
        Reply::Err(e) => Err(e.into()),
        Reply::UserErr(_) => Err(ServerError::Malformed("create".into()).into()),
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if !matches!(*self.owner.lock(), Owner::Nobody) {
            if let Err(e) = self.shutdown() {
                tracing::debug!(error = %e, "stopping the manager server on drop");
            }
        }
    }
}
