//! `Listener` and `Client`: connections between unrelated processes, over Unix sockets, Windows
//! named pipes or TCP, with CPython's authkey challenge (`multiprocessing.connection`).
//!
//! Authentication is mutual and happens before any message: the accepting side challenges the
//! connecting side, then the connecting side challenges back (the protocol is in `auth`; the
//! listener drives it without blocking, `handshake`). A challenge is `#CHALLENGE#` followed by
//! `{sha256}` and 40 random bytes; the answer is `{sha256}` and the HMAC-SHA256 of the whole
//! challenge (Python 3.12's protocol). For CPython ≤ 3.11 peers, a 16-byte answer (legacy
//! HMAC-MD5, as those versions send) is accepted and their 20-byte legacy challenges are
//! answered in kind, as CPython 3.12 itself does; [`Listener::require_modern_auth`] turns that off.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::auth::{answer_challenge, deliver_challenge};
use crate::handshake::{Handshake, Stream};
use crate::{sys, Connection, Error};

/// How long a connecting peer may take to finish authenticating, by default.
const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(20);
/// How many handshakes may be under way at once, by default.
const DEFAULT_MAX_PENDING: usize = 64;

/// Where a [`Listener`] listens and a [`Client`] connects.
///
/// Parses from `"host:port"` (TCP), a Windows named pipe `r"\\.\pipe\name"` (any string that
/// starts with two backslashes, as CPython's `address_type` says `AF_PIPE`), `"unix:<path>"`,
/// or, as CPython takes any other string as a Unix address, from anything else that is not
/// `host:port`: a path with a `/`, a relative
/// file name without `:` (`"app.sock"`, resolved against the current directory as the OS
/// does), or a Linux *abstract* address, a string starting with a NUL byte (`"\0name"`: no
/// file is made, the name vanishes with the socket). Abstract addresses display as `unix:@name`,
/// the way Linux tools (`ss`) show them; they are an error on other systems.
///
/// ```
/// use multiproc::connection::Address;
/// let a: Address = "127.0.0.1:6000".parse().unwrap();
/// assert!(matches!(a, Address::Tcp(_)));
/// let u: Address = "unix:/tmp/x.sock".parse().unwrap();
/// assert_eq!(u.to_string(), "unix:/tmp/x.sock");
/// let r: Address = "app.sock".parse().unwrap(); // relative, as in CPython
/// assert_eq!(r, Address::Unix("app.sock".into()));
/// let abs: Address = "\0my-service".parse().unwrap(); // Linux abstract namespace
/// assert_eq!(abs.to_string(), "unix:@my-service");
/// let p: Address = r"\\.\pipe\my-service".parse().unwrap(); // Windows named pipe
/// assert_eq!(p, Address::Pipe(r"\\.\pipe\my-service".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A Unix domain socket path (Python's `AF_UNIX` family), absolute or relative to the
    /// current directory; a leading NUL byte makes it a Linux abstract address, as in CPython.
    Unix(PathBuf),
    /// A TCP address (Python's `AF_INET`/`AF_INET6` families).
    Tcp(SocketAddr),
    /// A Windows named pipe, `\\.\pipe\<name>` (Python's `AF_PIPE` family); binding or
    /// connecting to one elsewhere is an `Unsupported` error.
    Pipe(String),
}

impl Address {
    /// A fresh named-pipe address, as CPython's `arbitrary_address('AF_PIPE')` makes one:
    /// `\\.\pipe\pyc-<pid>-<counter>-<random>`.
    ///
    /// ```
    /// use multiproc::connection::Address;
    /// let a = Address::arbitrary_pipe();
    /// assert!(a.to_string().starts_with(r"\\.\pipe\pyc-"));
    /// assert_ne!(a, Address::arbitrary_pipe());
    /// ```
    pub fn arbitrary_pipe() -> Address {
        Address::Pipe(arbitrary_pipe_name())
    }
}

/// `\\.\pipe\pyc-<pid>-<counter>-<random hex>`: unique in this process by the counter, and
/// between processes by the pid and the random part.
pub(crate) fn arbitrary_pipe_name() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut r = [0u8; 8];
    // (the counter alone keeps this process's names apart; the random part is for others)
    let _ = getrandom::getrandom(&mut r);
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(r"\\.\pipe\pyc-{}-{n}-{hex}", std::process::id())
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => match abstract_name(p) {
                Some(name) => write!(f, "unix:@{}", String::from_utf8_lossy(name)),
                None => write!(f, "unix:{}", p.display()),
            },
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Pipe(name) => f.write_str(name),
        }
    }
}

impl FromStr for Address {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Address::Unix(p.into()));
        }
        // CPython's `address_type`: a string that starts with `\\` is a named pipe
        if s.starts_with(r"\\") {
            return Ok(Address::Pipe(s.to_string()));
        }
        // CPython: every string is an AF_UNIX address; here `host:port` is TCP, so a path is a
        // string with a '/', a leading NUL (abstract), or no ':' at all (a relative file name).
        if s.contains('/') || s.starts_with('\0') || !s.contains(':') {
            return Ok(Address::Unix(s.into()));
        }
        use std::net::ToSocketAddrs;
        s.to_socket_addrs()?
            .next()
            .map(Address::Tcp)
            .ok_or_else(|| {
                Error::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "no address",
                ))
            })
    }
}

/// The name of a Linux abstract address (the path's bytes after its leading NUL), if it is one.
fn abstract_name(p: &std::path::Path) -> Option<&[u8]> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        p.as_os_str().as_bytes().strip_prefix(b"\0")
    }
    #[cfg(not(unix))]
    {
        p.to_str()?.strip_prefix('\0').map(str::as_bytes)
    }
}

/// The socket address of a Unix `Address` path: a file path, or an abstract name on Linux.
#[cfg(unix)]
fn unix_socket_addr(p: &std::path::Path) -> std::io::Result<std::os::unix::net::SocketAddr> {
    match abstract_name(p) {
        #[cfg(target_os = "linux")]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
        }
        #[cfg(not(target_os = "linux"))]
        Some(_) => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "abstract Unix socket addresses (a leading NUL) exist on Linux only",
        )),
        None => std::os::unix::net::SocketAddr::from_pathname(p),
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Tcp(a)
    }
}

enum Sock {
    /// The socket, its address as given, and the file to remove on drop (made absolute at
    /// bind time, so a later change of directory does not remove another file; `None` for
    /// an abstract address, which has no file).
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixListener, PathBuf, Option<PathBuf>),
    Tcp(std::net::TcpListener),
    /// A named pipe, with one instance always waiting for a client.
    #[cfg(windows)]
    Pipe(Mutex<sys::pipe::Server>),
}

impl Sock {
    /// Put the socket in (or take it out of) the registry of descriptors a forked child
    /// releases.
    fn set_tracked(&self, yes: bool) {
        #[cfg(unix)]
        {
            let fd = match self {
                Sock::Unix(l, ..) => std::os::fd::AsFd::as_fd(l),
                Sock::Tcp(l) => std::os::fd::AsFd::as_fd(l),
            };
            sys::set_inheritable_tracked(fd, yes);
        }
        #[cfg(not(unix))]
        let _ = yes;
    }

    /// The next connection waiting in the kernel's backlog (`WouldBlock` if none).
    fn accept(&self) -> std::io::Result<Stream> {
        match self {
            #[cfg(unix)]
            Sock::Unix(l, ..) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Sock::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            #[cfg(windows)]
            Sock::Pipe(p) => p
                .lock()
                .accept()
                .map(|h| Stream::Pipe(sys::pipe::Stream(h))),
        }
    }

    fn raw(&self) -> sys::RawWait {
        match self {
            #[cfg(unix)]
            Sock::Unix(l, ..) => sys::raw(std::os::fd::AsFd::as_fd(l)),
            #[cfg(unix)]
            Sock::Tcp(l) => sys::raw(std::os::fd::AsFd::as_fd(l)),
            #[cfg(windows)]
            Sock::Tcp(l) => sys::socket::raw(std::os::windows::io::AsSocket::as_socket(l)),
            #[cfg(windows)]
            Sock::Pipe(p) => p.lock().wait_handle(),
        }
    }
}

/// The handshakes a listener is driving.
#[derive(Default)]
struct Pending {
    /// Oldest first.
    list: VecDeque<Handshake>,
    /// When the last `accept` returned: deadlines stand still until the next one.
    paused_at: Option<Instant>,
}

impl Pending {
    /// Shift every deadline by the time no `accept` was running: a handshake is only timed
    /// while we drive it, as a connection in the kernel's backlog is not timed at all.
    fn resume(&mut self) {
        if let Some(t) = self.paused_at.take() {
            let idle = t.elapsed();
            for h in &mut self.list {
                h.deadline = h.deadline.and_then(|d| d.checked_add(idle));
            }
        }
    }

    fn pause(&mut self) {
        self.paused_at = Some(Instant::now());
    }
}

/// Accepts authenticated connections: Python's `multiprocessing.connection.Listener`.
///
/// With an authkey, [`accept`](Self::accept) authenticates many connecting peers at once: it
/// keeps the handshakes under way inside the listener, drives them all from one `poll` loop
/// without blocking on any, and returns the first connection whose handshake has finished,
/// while the others proceed at the next call. So a slow, silent or malicious peer never delays
/// an honest one. Each handshake has one deadline as a whole
/// ([`set_auth_timeout`](Self::set_auth_timeout), 20 s by default), counted while an `accept`
/// is running; at most [`set_max_pending`](Self::set_max_pending) handshakes (64 by default)
/// are under way, and one more drops the oldest.
///
/// ```
/// use multiproc::connection::{Client, Listener};
/// let listener = Listener::bind("127.0.0.1:0", Some(b"secret")).unwrap();
/// let addr = listener.address();
/// let t = std::thread::spawn(move || {
///     let c = Client::connect(&addr, Some(b"secret")).unwrap();
///     c.send(&"hi").unwrap();
/// });
/// let conn = listener.accept().unwrap();
/// assert_eq!(conn.recv::<String>().unwrap(), "hi");
/// t.join().unwrap();
/// ```
pub struct Listener {
    sock: Sock,
    authkey: Option<Vec<u8>>,
    auth_timeout: Option<Duration>,
    modern_only: bool,
    max_pending: usize,
    pending: Mutex<Pending>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address())
            .field("authenticated", &self.authkey.is_some())
            .finish()
    }
}

pub(crate) fn to_connection_tcp(s: std::net::TcpStream) -> Result<Connection, Error> {
    let _ = s.set_nodelay(true);
    #[cfg(unix)]
    {
        let fd: std::os::fd::OwnedFd = s.into();
        let w = fd.try_clone()?;
        Ok(Connection::from_handles(Some(fd), Some(w)))
    }
    #[cfg(windows)]
    Ok(Connection::from_socket(s.into()))
}

/// A connection over one handle of a duplex named pipe (both directions use it).
#[cfg(windows)]
pub(crate) fn to_connection_pipe(
    h: std::os::windows::io::OwnedHandle,
) -> Result<Connection, Error> {
    let w = h.try_clone()?;
    Ok(Connection::from_handles(Some(h), Some(w)))
}

/// The error for a named-pipe address where there are none.
#[cfg(not(windows))]
fn pipes_need_windows() -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "named pipes (\\\\.\\pipe\\...) need Windows",
    ))
}

#[cfg(unix)]
pub(crate) fn to_connection_unix(s: std::os::unix::net::UnixStream) -> Result<Connection, Error> {
    let fd: std::os::fd::OwnedFd = s.into();
    let w = fd.try_clone()?;
    Ok(Connection::from_handles(Some(fd), Some(w)))
}

impl Listener {
    /// Listen on `address` (anything that parses as an [`Address`]; TCP port 0 picks a free
    /// port, see [`address`](Self::address)). With an authkey, every connection must pass the
    /// challenge before [`accept`](Self::accept) returns it.
    pub fn bind(address: impl ToAddress, authkey: Option<&[u8]>) -> Result<Listener, Error> {
        let address = address.to_address()?;
        let sock = match address {
            #[cfg(unix)]
            Address::Unix(p) => {
                let l = std::os::unix::net::UnixListener::bind_addr(&unix_socket_addr(&p)?)?;
                let file = match abstract_name(&p) {
                    Some(_) => None,
                    None => {
                        Some(std::env::current_dir().map_or_else(|_| p.clone(), |d| d.join(&p)))
                    }
                };
                Sock::Unix(l, p, file)
            }
            #[cfg(not(unix))]
            Address::Unix(_) => {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "Unix sockets need Unix",
                )))
            }
            Address::Tcp(a) => Sock::Tcp(std::net::TcpListener::bind(a)?),
            #[cfg(windows)]
            Address::Pipe(name) => Sock::Pipe(Mutex::new(sys::pipe::Server::bind(&name)?)),
            #[cfg(not(windows))]
            Address::Pipe(_) => return Err(pipes_need_windows()),
        };
        // `accept` polls; the socket itself never blocks
        match &sock {
            #[cfg(unix)]
            Sock::Unix(l, ..) => l.set_nonblocking(true)?,
            Sock::Tcp(l) => l.set_nonblocking(true)?,
            // (a pipe instance is looked at, never read, until a client has connected)
            #[cfg(windows)]
            Sock::Pipe(_) => {}
        }
        // A forked child must not keep the listening socket (the port would stay taken, and
        // connections would queue in a backlog nobody accepts from).
        sock.set_tracked(true);
        Ok(Listener {
            sock,
            authkey: authkey.map(<[u8]>::to_vec),
            auth_timeout: Some(DEFAULT_AUTH_TIMEOUT),
            modern_only: false,
            max_pending: DEFAULT_MAX_PENDING,
            pending: Mutex::new(Pending::default()),
        })
    }

    /// The address clients connect to (with the real port if bound to port 0).
    pub fn address(&self) -> Address {
        match &self.sock {
            #[cfg(unix)]
            Sock::Unix(_, p, _) => Address::Unix(p.clone()),
            Sock::Tcp(l) => {
                Address::Tcp(l.local_addr().expect("a bound TCP listener has an address"))
            }
            #[cfg(windows)]
            Sock::Pipe(p) => Address::Pipe(p.lock().name().to_string()),
        }
    }

    /// Limit how long a connecting peer may take to authenticate, from when `accept` takes
    /// its connection to its last message (default 20 s; `None`: no limit). It is one deadline
    /// for the whole handshake, however the peer spreads its bytes, and it counts while an
    /// `accept` is running (handshakes wait while nobody accepts, as the kernel's backlog does).
    /// A peer that misses it is dropped, and `accept` returns an [`Error::Io`] of kind
    /// `TimedOut` for it.
    pub fn set_auth_timeout(&mut self, timeout: Option<Duration>) {
        self.auth_timeout = timeout;
    }

    /// Limit how many handshakes may be under way at once (default 64, at least 1). A peer
    /// that connects when that many are pending drops the oldest of them, for which `accept`
    /// returns an [`Error::Io`] of kind `ConnectionAborted`: a flood of silent connections
    /// costs a bounded number of descriptors, and an honest client, whose handshake takes one
    /// round trip, is only dropped if that many newer peers connect during it.
    pub fn set_max_pending(&mut self, max: usize) {
        self.max_pending = max.max(1);
    }

    /// Refuse peers that answer with legacy HMAC-MD5 (CPython ≤ 3.11).
    pub fn require_modern_auth(&mut self, yes: bool) {
        self.modern_only = yes;
    }

    /// Wait for the next authenticated connection (Python's `accept`).
    ///
    /// Every handshake that fails ends in one error from `accept`, and concerns that
    /// connection only (it is closed; the listener keeps listening and the other handshakes
    /// continue): [`Error::Authentication`] for a wrong key or a peer that does not speak the
    /// protocol (as Python raises `AuthenticationError`), [`Error::Eof`] for a peer that hung
    /// up, [`Error::Io`] for a deadline missed or a handshake dropped, [`Error::Pickle`] for a
    /// malformed frame. A server loop logs such errors and calls `accept` again. Several
    /// threads may call `accept`; they take turns.
    pub fn accept(&self) -> Result<Connection, Error> {
        loop {
            if let Some(c) = self.accept_within(None)? {
                return Ok(c);
            }
        }
    }

    /// [`accept`](Self::accept), waiting at most `timeout`; `Ok(None)` if no
    /// connection finished its handshake in that time (those under way stay pending).
    ///
    /// ```
    /// use std::time::Duration;
    /// let listener = multiproc::connection::Listener::bind("127.0.0.1:0", Some(b"k")).unwrap();
    /// assert!(listener.accept_timeout(Duration::from_millis(10)).unwrap().is_none());
    /// ```
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Option<Connection>, Error> {
        self.accept_within(Some(timeout))
    }

    /// `accept` (`None`) or `accept_timeout` (`Some`).
    fn accept_within(&self, timeout: Option<Duration>) -> Result<Option<Connection>, Error> {
        // a timeout too long to represent waits forever
        let until = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut pending = self.pending.lock();
        pending.resume();
        let r = self.drive(&mut pending, until);
        pending.pause();
        r
    }

    /// The accept loop: poll the listening socket and every pending handshake, advance what is
    /// ready, and return at the first connection authenticated, handshake failed, or `until`.
    fn drive(&self, p: &mut Pending, until: Option<Instant>) -> Result<Option<Connection>, Error> {
        let mut fds = Vec::new();
        loop {
            let now = Instant::now();
            if let Some(i) = p
                .list
                .iter()
                .position(|h| h.deadline.is_some_and(|d| d <= now))
            {
                drop(p.list.remove(i));
                tracing::debug!("a connecting peer missed its authentication deadline");
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the peer did not finish authenticating in time",
                )));
            }
            fds.clear();
            fds.push((self.sock.raw(), false));
            fds.extend(p.list.iter().map(|h| (h.raw(), h.wants_write())));
            let wake = p.list.iter().filter_map(|h| h.deadline).chain(until).min();
            let ready = sys::poll_ready(&fds, wake.map(|w| w.saturating_duration_since(now)))?;
            let key = self.authkey.as_deref().unwrap_or_default();
            for (i, _) in ready[1..].iter().enumerate().filter(|(_, &r)| r) {
                match p.list[i].advance(key, self.modern_only) {
                    Ok(false) => {}
                    Ok(true) => {
                        let h = p.list.remove(i).expect("index in range");
                        return h.finish().map(Some);
                    }
                    Err(e) => {
                        drop(p.list.remove(i));
                        return Err(e);
                    }
                }
            }
            if ready[0] {
                loop {
                    let stream = match self.sock.accept() {
                        Ok(s) => s,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e.into()),
                    };
                    if self.authkey.is_none() {
                        return stream.into_connection().map(Some);
                    }
                    let deadline = self
                        .auth_timeout
                        .and_then(|t| Instant::now().checked_add(t));
                    let mut h = Handshake::start(stream, deadline)?;
                    // sends our challenge (a fresh socket has room for it); a quick peer may
                    // even finish at once
                    if h.advance(key, self.modern_only)? {
                        return h.finish().map(Some);
                    }
                    p.list.push_back(h);
                    if p.list.len() > self.max_pending {
                        drop(p.list.pop_front());
                        tracing::debug!("too many handshakes under way: dropped the oldest");
                        return Err(Error::Io(std::io::Error::new(
                            std::io::ErrorKind::ConnectionAborted,
                            "too many handshakes under way: dropped the oldest",
                        )));
                    }
                }
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(None);
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Out of the registry before the descriptor closes (its number may be reused at once).
        self.sock.set_tracked(false);
        #[cfg(unix)]
        if let Sock::Unix(_, _, Some(file)) = &self.sock {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Connects to a [`Listener`] (ours or CPython's): Python's `multiprocessing.connection.Client`.
///
/// ```no_run
/// use multiproc::connection::Client;
/// let conn = Client::connect("127.0.0.1:6000", Some(b"secret")).unwrap();
/// conn.send_bytes(b"hello").unwrap();
/// ```
#[derive(Debug)]
pub struct Client;

impl Client {
    /// Connect and, with an authkey, pass the mutual challenge.
    pub fn connect(address: impl ToAddress, authkey: Option<&[u8]>) -> Result<Connection, Error> {
        let conn = match address.to_address()? {
            #[cfg(unix)]
            Address::Unix(p) => to_connection_unix(std::os::unix::net::UnixStream::connect_addr(
                &unix_socket_addr(&p)?,
            )?)?,
            #[cfg(not(unix))]
            Address::Unix(_) => {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "Unix sockets need Unix",
                )))
            }
            Address::Tcp(a) => to_connection_tcp(std::net::TcpStream::connect(a)?)?,
            #[cfg(windows)]
            Address::Pipe(name) => to_connection_pipe(sys::pipe::connect(&name)?)?,
            #[cfg(not(windows))]
            Address::Pipe(_) => return Err(pipes_need_windows()),
        };
        if let Some(key) = authkey {
            answer_challenge(&conn, key)?;
            deliver_challenge(&conn, key, false)?;
        }
        Ok(conn)
    }
}

/// Anything that names an [`Address`]: an `Address`, a `&str`/`String` to parse, a `SocketAddr`.
pub trait ToAddress {
    /// Turn `self` into an address.
    fn to_address(self) -> Result<Address, Error>;
}

impl ToAddress for Address {
    fn to_address(self) -> Result<Address, Error> {
        Ok(self)
    }
}

impl ToAddress for &Address {
    fn to_address(self) -> Result<Address, Error> {
        Ok(self.clone())
    }
}

impl ToAddress for &str {
    fn to_address(self) -> Result<Address, Error> {
        self.parse()
    }
}

impl ToAddress for String {
    fn to_address(self) -> Result<Address, Error> {
        self.parse()
    }
}

impl ToAddress for SocketAddr {
    fn to_address(self) -> Result<Address, Error> {
        Ok(Address::Tcp(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Listener>();
    }

    #[test]
    fn huge_timeouts_mean_no_limit() {
        let mut l = Listener::bind("127.0.0.1:0", Some(b"k")).unwrap();
        l.set_auth_timeout(Some(Duration::MAX));
        let addr = l.address();
        let t = std::thread::spawn(move || Client::connect(&addr, Some(b"k")).map(|_| ()));
        let c = l.accept_timeout(Duration::MAX).unwrap();
        assert!(c.is_some());
        t.join().unwrap().unwrap();
    }
}
