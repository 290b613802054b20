//! `Listener` and `Client`: connections between unrelated processes, over Unix sockets or TCP,
//! with CPython's authkey challenge (`multiprocessing.connection`).
//!
//! Authentication is mutual and happens before any message: the accepting side challenges the
//! connecting side, then the connecting side challenges back. A challenge is `#CHALLENGE#`
//! followed by `{sha256}` and 40 random bytes; the answer is `{sha256}` and the HMAC-SHA256 of
//! the whole challenge (Python 3.12's protocol). For CPython ≤ 3.11 peers, a 16-byte answer
//! (legacy HMAC-MD5, as those versions send) is accepted and their 20-byte legacy challenges are
//! answered in kind, as CPython 3.12 itself does; [`Listener::require_modern_auth`] turns that off.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use hmac::{Hmac, Mac};

use crate::{Connection, Error};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const NONCE_LEN: usize = 40;
const MAX_AUTH_MESSAGE: u64 = 256;
/// How long `accept` waits for a connecting peer to finish authenticating, by default.
const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(20);

/// Where a [`Listener`] listens and a [`Client`] connects.
///
/// Parses from `"unix:/path/to/socket"`, a plain path containing `/`, or `"host:port"`.
///
/// ```
/// use multiproc_process::Address;
/// let a: Address = "127.0.0.1:6000".parse().unwrap();
/// assert!(matches!(a, Address::Tcp(_)));
/// let u: Address = "unix:/tmp/x.sock".parse().unwrap();
/// assert_eq!(u.to_string(), "unix:/tmp/x.sock");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A Unix domain socket path (Python's `AF_UNIX` family).
    Unix(PathBuf),
    /// A TCP address (Python's `AF_INET`/`AF_INET6` families).
    Tcp(SocketAddr),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Tcp(a) => write!(f, "{a}"),
        }
    }
}

impl FromStr for Address {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Address::Unix(p.into()));
        }
        if s.contains('/') {
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

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Tcp(a)
    }
}

type TimeoutSetter = Box<dyn Fn(Option<Duration>)>;

enum Sock {
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixListener, PathBuf),
    Tcp(std::net::TcpListener),
}

/// Accepts authenticated connections: Python's `multiprocessing.connection.Listener`.
///
/// ```
/// use multiproc_process::{Client, Listener};
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
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address())
            .field("authenticated", &self.authkey.is_some())
            .finish()
    }
}

fn to_connection_tcp(s: std::net::TcpStream) -> Result<Connection, Error> {
    let _ = s.set_nodelay(true);
    #[cfg(unix)]
    {
        let fd: std::os::fd::OwnedFd = s.into();
        let w = fd.try_clone()?;
        Ok(Connection::from_handles(Some(fd), Some(w)))
    }
    #[cfg(windows)]
    {
        let _ = s;
        Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "sockets are not yet supported on Windows",
        )))
    }
}

#[cfg(unix)]
fn to_connection_unix(s: std::os::unix::net::UnixStream) -> Result<Connection, Error> {
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
            Address::Unix(p) => Sock::Unix(std::os::unix::net::UnixListener::bind(&p)?, p),
            #[cfg(not(unix))]
            Address::Unix(_) => {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "Unix sockets need Unix",
                )))
            }
            Address::Tcp(a) => Sock::Tcp(std::net::TcpListener::bind(a)?),
        };
        Ok(Listener {
            sock,
            authkey: authkey.map(<[u8]>::to_vec),
            auth_timeout: Some(DEFAULT_AUTH_TIMEOUT),
            modern_only: false,
        })
    }

    /// The address clients connect to (with the real port if bound to port 0).
    pub fn address(&self) -> Address {
        match &self.sock {
            #[cfg(unix)]
            Sock::Unix(_, p) => Address::Unix(p.clone()),
            Sock::Tcp(l) => {
                Address::Tcp(l.local_addr().expect("a bound TCP listener has an address"))
            }
        }
    }

    /// Limit how long [`accept`](Self::accept) waits for a connecting peer to authenticate
    /// (default 20 s; `None` waits forever), so a silent peer cannot block the listener.
    pub fn set_auth_timeout(&mut self, timeout: Option<Duration>) {
        self.auth_timeout = timeout;
    }

    /// Refuse peers that answer with legacy HMAC-MD5 (CPython ≤ 3.11).
    pub fn require_modern_auth(&mut self, yes: bool) {
        self.modern_only = yes;
    }

    /// Wait for the next connection and authenticate it. An error concerns that connection
    /// only (it is closed); the listener keeps listening.
    pub fn accept(&self) -> Result<Connection, Error> {
        let (conn, set_timeout): (Connection, TimeoutSetter) = match &self.sock {
            #[cfg(unix)]
            Sock::Unix(l, _) => {
                let (s, _) = l.accept()?;
                let s2 = s.try_clone()?;
                (
                    to_connection_unix(s)?,
                    Box::new(move |t| drop(s2.set_read_timeout(t))),
                )
            }
            Sock::Tcp(l) => {
                let (s, _) = l.accept()?;
                let s2 = s.try_clone()?;
                (
                    to_connection_tcp(s)?,
                    Box::new(move |t| drop(s2.set_read_timeout(t))),
                )
            }
        };
        if let Some(key) = &self.authkey {
            set_timeout(self.auth_timeout);
            deliver_challenge(&conn, key, self.modern_only)?;
            answer_challenge(&conn, key)?;
            set_timeout(None);
        }
        Ok(conn)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Sock::Unix(_, p) = &self.sock {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Connects to a [`Listener`] (ours or CPython's): Python's `multiprocessing.connection.Client`.
///
/// ```no_run
/// use multiproc_process::Client;
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
            Address::Unix(p) => to_connection_unix(std::os::unix::net::UnixStream::connect(p)?)?,
            #[cfg(not(unix))]
            Address::Unix(_) => {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "Unix sockets need Unix",
                )))
            }
            Address::Tcp(a) => to_connection_tcp(std::net::TcpStream::connect(a)?)?,
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

fn auth_err(msg: impl Into<String>) -> Error {
    Error::Authentication(msg.into())
}

/// Split `{digest}payload`; legacy (unprefixed 16- or 20-byte) messages give `""`.
fn digest_and_payload(msg: &[u8]) -> Result<(&str, &[u8]), Error> {
    if msg.len() == 16 || msg.len() == 20 {
        return Ok(("", msg));
    }
    if msg.first() == Some(&b'{') {
        if let Some(end) = msg.iter().take(22).position(|&b| b == b'}') {
            let name =
                std::str::from_utf8(&msg[1..end]).map_err(|_| auth_err("bad digest name"))?;
            if matches!(name, "md5" | "sha256" | "sha384") {
                return Ok((name, &msg[end + 1..]));
            }
        }
    }
    Err(auth_err(
        "unsupported message length, missing digest prefix, or unsupported digest",
    ))
}

fn hmac_digest(name: &str, key: &[u8], msg: &[u8]) -> Result<Vec<u8>, Error> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .expect("HMAC takes keys of any length");
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    }
    match name {
        "md5" => Ok(run::<Hmac<md5::Md5>>(key, msg)),
        "sha256" => Ok(run::<Hmac<sha2::Sha256>>(key, msg)),
        "sha384" => Ok(run::<Hmac<sha2::Sha384>>(key, msg)),
        other => Err(auth_err(format!("digest {other:?} unsupported"))),
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn deliver_challenge(conn: &Connection, key: &[u8], modern_only: bool) -> Result<(), Error> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce)
        .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    let mut message = b"{sha256}".to_vec();
    message.extend_from_slice(&nonce);
    let mut out = CHALLENGE.to_vec();
    out.extend_from_slice(&message);
    conn.send_bytes(&out)?;
    let response = conn.recv_bytes_max(MAX_AUTH_MESSAGE)?;
    let verdict = (|| {
        let (name, mac) = digest_and_payload(&response)?;
        let name = if name.is_empty() { "md5" } else { name };
        if modern_only && name == "md5" {
            return Err(auth_err("legacy HMAC-MD5 answer refused"));
        }
        let expected = hmac_digest(name, key, &message)?;
        if !ct_eq(&expected, mac) {
            return Err(auth_err("digest received was wrong"));
        }
        Ok(())
    })();
    match verdict {
        Ok(()) => conn.send_bytes(WELCOME),
        Err(e) => {
            let _ = conn.send_bytes(FAILURE);
            Err(e)
        }
    }
}

fn answer_challenge(conn: &Connection, key: &[u8]) -> Result<(), Error> {
    let message = conn.recv_bytes_max(MAX_AUTH_MESSAGE)?;
    let Some(message) = message.strip_prefix(CHALLENGE) else {
        return Err(auth_err("protocol error: expected a challenge"));
    };
    if message.len() < 20 {
        return Err(auth_err(format!(
            "challenge too short: {} bytes",
            message.len()
        )));
    }
    let (name, _) = digest_and_payload(message)?;
    let response = if name.is_empty() {
        hmac_digest("md5", key, message)?
    } else {
        let mut r = format!("{{{name}}}").into_bytes();
        r.extend_from_slice(&hmac_digest(name, key, message)?);
        r
    };
    conn.send_bytes(&response)?;
    let verdict = conn.recv_bytes_max(MAX_AUTH_MESSAGE)?;
    if verdict != WELCOME {
        return Err(auth_err("digest sent was rejected"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_prefixed_digests() {
        assert_eq!(digest_and_payload(&[0; 16]).unwrap().0, "");
        let (n, p) =
            digest_and_payload(b"{sha256}0123456789012345678901234567890123456789").unwrap();
        assert_eq!((n, p.len()), ("sha256", 40));
        assert!(digest_and_payload(b"{sha1}01234567890123456789").is_err());
        assert!(digest_and_payload(b"garbage garbage garbage").is_err());
    }

    #[test]
    fn hmac_matches_known_vector() {
        // RFC 4231 test case 2
        let mac = hmac_digest("sha256", b"Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(mac[..4], [0x5b, 0xdc, 0xc1, 0x46]);
    }

    #[test]
    fn mutual_auth_in_process() {
        let (a, b) = crate::pipe(true).unwrap();
        let t = std::thread::spawn(move || {
            answer_challenge(&b, b"k")?;
            deliver_challenge(&b, b"k", false)
        });
        deliver_challenge(&a, b"k", true).unwrap();
        answer_challenge(&a, b"k").unwrap();
        t.join().unwrap().unwrap();
    }

    #[test]
    fn wrong_key_fails_both_sides() {
        let (a, b) = crate::pipe(true).unwrap();
        let t = std::thread::spawn(move || answer_challenge(&b, b"wrong"));
        assert!(matches!(
            deliver_challenge(&a, b"right", false),
            Err(Error::Authentication(_))
        ));
        assert!(matches!(t.join().unwrap(), Err(Error::Authentication(_))));
    }
}
