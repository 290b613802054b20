//! The listener's side of the authkey challenge as a non-blocking state machine, so that one
//! `accept` loop can drive many handshakes at once and a slow or silent peer never delays
//! another.
//!
//! The listener challenges first, then answers the peer's challenge (`auth` has the protocol):
//!
//! 1. send `#CHALLENGE#…`; read the answer; send `#WELCOME#` (or `#FAILURE#`, then fail);
//! 2. read the peer's challenge; send our answer;
//! 3. read the peer's verdict: `#WELCOME#` finishes the handshake.
//!
//! Frames are read exactly (the header, then the announced bytes, at most
//! [`MAX_AUTH_MESSAGE`]), so nothing of the first message after the handshake is read here: the
//! connection starts at a frame boundary with an empty buffer.

use std::io::{self, Read, Write};
use std::time::Instant;

use multiproc_pickle::frame::{self, Prefix};

use crate::auth::{
    auth_err, check_verdict, new_challenge, respond, verify_answer, FAILURE, MAX_AUTH_MESSAGE,
    WELCOME,
};
use crate::{sys, Connection, Error};

/// An accepted socket.
pub(crate) enum Stream {
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
    /// An instance of a named-pipe listener.
    #[cfg(windows)]
    Pipe(sys::pipe::Stream),
}

impl Stream {
    /// Put the socket in (or take it out of) the registry of descriptors a forked child
    /// releases, so a child never keeps a peer's connection open.
    pub(crate) fn set_tracked(&self, yes: bool) {
        #[cfg(unix)]
        {
            let fd = match self {
                Stream::Unix(s) => std::os::fd::AsFd::as_fd(s),
                Stream::Tcp(s) => std::os::fd::AsFd::as_fd(s),
            };
            sys::set_inheritable_tracked(fd, yes);
        }
        #[cfg(not(unix))]
        let _ = yes;
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => (&*s).read(buf),
            Stream::Tcp(s) => (&*s).read(buf),
            #[cfg(windows)]
            Stream::Pipe(p) => p.read(buf),
        }
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => (&*s).write(buf),
            Stream::Tcp(s) => (&*s).write(buf),
            #[cfg(windows)]
            Stream::Pipe(p) => p.write(buf),
        }
    }

    fn set_nonblocking(&self, yes: bool) -> io::Result<()> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.set_nonblocking(yes),
            Stream::Tcp(s) => s.set_nonblocking(yes),
            // (its reads never wait: they take only what `PeekNamedPipe` says is there)
            #[cfg(windows)]
            Stream::Pipe(_) => Ok(()),
        }
    }

    pub(crate) fn raw(&self) -> sys::RawWait {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => sys::raw(std::os::fd::AsFd::as_fd(s)),
            #[cfg(unix)]
            Stream::Tcp(s) => sys::raw(std::os::fd::AsFd::as_fd(s)),
            #[cfg(windows)]
            Stream::Tcp(s) => sys::socket::raw(std::os::windows::io::AsSocket::as_socket(s)),
            #[cfg(windows)]
            Stream::Pipe(p) => sys::raw(sys::borrow(&p.0)),
        }
    }

    /// The blocking [`Connection`] over this socket.
    pub(crate) fn into_connection(self) -> Result<Connection, Error> {
        self.set_nonblocking(false)?;
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => crate::listener::to_connection_unix(s),
            Stream::Tcp(s) => crate::listener::to_connection_tcp(s),
            #[cfg(windows)]
            Stream::Pipe(p) => crate::listener::to_connection_pipe(p.0),
        }
    }
}

/// A socket under authentication, registered as one a forked child releases until it becomes a
/// [`Connection`] (which registers its own descriptors) or is dropped.
struct Tracked(Option<Stream>);

impl Tracked {
    fn new(s: Stream) -> Tracked {
        s.set_tracked(true);
        Tracked(Some(s))
    }

    fn into_inner(mut self) -> Stream {
        let s = self
            .0
            .take()
            .expect("a Tracked holds its stream until into_inner");
        s.set_tracked(false);
        s
    }
}

impl std::ops::Deref for Tracked {
    type Target = Stream;

    fn deref(&self) -> &Stream {
        self.0
            .as_ref()
            .expect("a Tracked holds its stream until into_inner")
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // Out of the registry before the descriptor closes (its number may be reused at once).
        if let Some(s) = &self.0 {
            s.set_tracked(false);
        }
    }
}

/// What the handshake waits for next.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// The peer's answer to our challenge.
    Answer,
    /// The peer's challenge to us.
    Challenge,
    /// The peer's verdict on our answer.
    Verdict,
}

/// One connection being authenticated.
pub(crate) struct Handshake {
    stream: Tracked,
    /// When the handshake must have finished (`None`: no limit).
    pub(crate) deadline: Option<Instant>,
    step: Step,
    /// The message whose HMAC the peer's answer must carry.
    message: Vec<u8>,
    /// Framed bytes still to send, from `sent` on.
    out: Vec<u8>,
    sent: usize,
    /// The frame being read: its header, then its payload.
    inbuf: Vec<u8>,
    /// Authentication failed: fail once `#FAILURE#` has been sent.
    failed: Option<Error>,
}

impl Handshake {
    /// Start authenticating `stream`: it turns non-blocking and our challenge is queued.
    pub(crate) fn start(stream: Stream, deadline: Option<Instant>) -> Result<Handshake, Error> {
        stream.set_nonblocking(true)?;
        let (challenge, message) = new_challenge()?;
        let mut h = Handshake {
            stream: Tracked::new(stream),
            deadline,
            step: Step::Answer,
            message,
            out: Vec::new(),
            sent: 0,
            inbuf: Vec::new(),
            failed: None,
        };
        h.queue(&challenge);
        Ok(h)
    }

    /// The socket, to poll.
    pub(crate) fn raw(&self) -> sys::RawWait {
        self.stream.raw()
    }

    /// Whether the next step needs the socket writable (else readable).
    pub(crate) fn wants_write(&self) -> bool {
        self.sent < self.out.len()
    }

    fn queue(&mut self, payload: &[u8]) {
        let (h, n) = frame::encode_header(payload.len());
        self.out.extend_from_slice(&h[..n]);
        self.out.extend_from_slice(payload);
    }

    /// Do everything possible without blocking. `Ok(true)`: authenticated, take the
    /// connection with [`finish`](Self::finish); `Ok(false)`: waiting for the peer; an error
    /// ends this handshake (the socket is then closed by dropping it).
    pub(crate) fn advance(&mut self, key: &[u8], modern_only: bool) -> Result<bool, Error> {
        loop {
            while self.sent < self.out.len() {
                match self.stream.write(&self.out[self.sent..]) {
                    Ok(0) => return Err(Error::Io(io::ErrorKind::WriteZero.into())),
                    Ok(n) => self.sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            self.out.clear();
            self.sent = 0;
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
            let Some(msg) = self.read_frame()? else {
                return Ok(false);
            };
            match self.step {
                Step::Answer => match verify_answer(&self.message, &msg, key, modern_only) {
                    Ok(()) => {
                        self.queue(WELCOME);
                        self.step = Step::Challenge;
                    }
                    Err(e) => {
                        self.queue(FAILURE);
                        self.failed = Some(e);
                    }
                },
                Step::Challenge => {
                    let answer = respond(&msg, key)?;
                    self.queue(&answer);
                    self.step = Step::Verdict;
                }
                Step::Verdict => {
                    check_verdict(&msg)?;
                    return Ok(true);
                }
            }
        }
    }

    /// The authenticated connection (blocking again).
    pub(crate) fn finish(self) -> Result<Connection, Error> {
        self.stream.into_inner().into_connection()
    }

    /// Read the rest of the current frame; `None` if the peer has not sent it all yet.
    fn read_frame(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let mut tmp = [0u8; 4 + MAX_AUTH_MESSAGE as usize];
        loop {
            let total = match self.inbuf.get(..4) {
                None => 4,
                Some(h) => {
                    let h: [u8; 4] = h.try_into().expect("four bytes");
                    match frame::parse_prefix(h)? {
                        Prefix::Len(n) => 4 + frame::check_size(n, MAX_AUTH_MESSAGE)?,
                        Prefix::Long => {
                            return Err(auth_err(format!(
                                "authentication message longer than {MAX_AUTH_MESSAGE} bytes"
                            )))
                        }
                    }
                }
            };
            if self.inbuf.len() >= 4 && self.inbuf.len() == total {
                let msg = self.inbuf.split_off(4);
                self.inbuf.clear();
                return Ok(Some(msg));
            }
            let want = total - self.inbuf.len();
            match self.stream.read(&mut tmp[..want]) {
                Ok(0) => return Err(Error::Eof),
                Ok(n) => self.inbuf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}
