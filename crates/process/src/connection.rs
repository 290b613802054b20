//! `Connection`: framed messages over a pipe or socket, as in `multiprocessing.connection`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use multiproc_pickle::frame::{self, Prefix};
use multiproc_pickle::handles::{HandleOwned, HandleRef};
use multiproc_pickle::{Bytes, OsHandle, PickleError};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::sys;
use crate::wait::Waitable;
use crate::Error;

mod endpoint;
#[cfg(windows)]
mod lend;
pub(crate) use endpoint::Endpoint;

const READ_BUF: usize = 64 * 1024;
/// The most handles one Windows message lends (as many as a Unix message carries).
#[cfg(windows)]
const MAX_HANDLES: usize = 253;
/// How long a reader polls for data before it blocks (on Unix, where a look costs a system
/// call; a Windows read waits on its overlapped operation at once).
#[cfg(unix)]
const READ_SPIN: std::time::Duration = std::time::Duration::from_micros(20);

/// OS handles that arrived with the bytes of one read (a Unix socket's `SCM_RIGHTS`).
struct Batch {
    /// How many bytes had been received from the socket when they came (the end of that read).
    at: u64,
    handles: Vec<OsHandle>,
    /// The kernel dropped some (`MSG_CTRUNC`).
    truncated: bool,
}

struct ReadSide {
    fd: Option<Endpoint>,
    /// Whether `fd` is a Unix socket: read with `recvmsg`, collecting attached handles.
    sock: bool,
    /// Bytes received from `fd` so far (positions of frames and handle batches).
    received: u64,
    /// Handles received and not yet given to a message, oldest first.
    batches: std::collections::VecDeque<Batch>,
    buf: Vec<u8>,
    start: usize,
    /// Set when a frame could not be read whole (too large, malformed): the stream has lost
    /// its framing, so later reads must not misinterpret the rest of that message.
    broken: Option<String>,
    /// Windows: whether this end takes the handles its peer lends (a `pipe()` end: see
    /// `connection/lend.rs`).
    #[cfg(windows)]
    takes: bool,
}

impl ReadSide {
    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Make at least `n` bytes (n ≤ READ_BUF) available in the buffer.
    fn fill(&mut self, n: usize) -> Result<(), Error> {
        while self.buf.len() - self.start < n {
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let fd = self.fd.as_ref().ok_or(Error::Closed)?;
            // A reply usually follows within microseconds; look for it for a moment before
            // blocking, since a blocked reader costs a wake-up (tens of µs on a busy VM).
            #[cfg(unix)]
            {
                let raw = fd.raw();
                let start = std::time::Instant::now();
                while start.elapsed() < READ_SPIN {
                    if sys::poll_readable(&[raw], Some(std::time::Duration::ZERO))
                        .map_or(true, |r| r[0])
                    {
                        break;
                    }
                    std::hint::spin_loop();
                }
            }
            let got = read_some(
                fd,
                self.sock,
                &mut self.buf,
                READ_BUF,
                &mut self.received,
                &mut self.batches,
            )?;
            if got == 0 {
                return Err(Error::Eof);
            }
        }
        Ok(())
    }

    /// The handles that arrived with the bytes of the frame that ends at stream position `end`,
    /// which announced `count` (`None`: a plain frame). Anything else is an error, and every
    /// handle that came with the frame is closed (dropped) with it.
    fn claim(&mut self, end: u64, count: Option<u32>) -> Result<Vec<OsHandle>, Error> {
        let mut handles = Vec::new();
        let mut truncated = false;
        let mut batches = 0;
        while self.batches.front().is_some_and(|b| b.at <= end) {
            let b = self.batches.pop_front().expect("checked");
            batches += 1;
            truncated |= b.truncated;
            handles.extend(b.handles);
        }
        match count {
            None if batches == 0 => Ok(handles),
            _ if truncated => Err(Error::HandlesTruncated),
            Some(c) if batches == 1 && handles.len() == c as usize => Ok(handles),
            c => Err(Error::HandleCountMismatch {
                announced: c.unwrap_or(0),
                received: handles.len(),
            }),
        }
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let s = self.start;
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            return &[];
        }
        &self.buf[s..s + n]
    }

    /// Mark the stream unusable (part of a frame stays unread) and hand back the error.
    fn break_on(&mut self, e: PickleError) -> Error {
        self.broken = Some(e.to_string());
        e.into()
    }

    /// One frame: its bytes and the OS handles that came with it (on a socket), or the number
    /// of handles it announced (on a pipe: they come through the side channel).
    #[allow(clippy::type_complexity)]
    fn recv_frame(&mut self, max: u64) -> Result<(Vec<u8>, Vec<OsHandle>, Option<u32>), Error> {
        if let Some(why) = &self.broken {
            return Err(PickleError::BadFrame(format!(
                "connection unusable after an earlier error: {why}"
            ))
            .into());
        }
        self.fill(4)?;
        let p: [u8; 4] = self.buffered()[..4].try_into().expect("4 bytes buffered");
        let (size, count) = if p == frame::HANDLES_MARKER {
            self.fill(frame::HANDLES_HEADER)?;
            let b = self.buffered();
            let count = u32::from_be_bytes(b[4..8].try_into().expect("16 bytes"));
            let n = u64::from_be_bytes(b[8..16].try_into().expect("16 bytes"));
            self.start += frame::HANDLES_HEADER;
            (n, Some(count))
        } else {
            let prefix =
                frame::parse_prefix(p).inspect_err(|e| self.broken = Some(e.to_string()))?;
            match prefix {
                Prefix::Len(n) => {
                    self.start += 4;
                    (n, None)
                }
                Prefix::Long => {
                    self.fill(12)?;
                    let n =
                        u64::from_be_bytes(self.buffered()[4..12].try_into().expect("12 bytes"));
                    self.start += 12;
                    (n, None)
                }
            }
        };
        #[cfg(windows)]
        if let Some(count) = count {
            return self.recv_lent(size, max, count);
        }
        let out = self.recv_body(size, max)?;
        if !self.sock {
            // (a pipe: its handles come through its side channel, if it has one)
            return Ok((out, Vec::new(), count));
        }
        let end = self.received - self.buffered().len() as u64;
        let handles = self.claim(end, count)?;
        Ok((out, handles, None))
    }

    /// Windows: the rest of a handle frame of `count` handles whose header was taken: the
    /// lent block, the bytes, then the handles, taken over from the sender.
    #[cfg(windows)]
    #[allow(clippy::type_complexity)]
    fn recv_lent(
        &mut self,
        size: u64,
        max: u64,
        count: u32,
    ) -> Result<(Vec<u8>, Vec<OsHandle>, Option<u32>), Error> {
        if count as usize > MAX_HANDLES {
            self.broken = Some(format!("a message announced {count} OS handles"));
            return Err(Error::HandleCountMismatch {
                announced: count,
                received: 0,
            });
        }
        let n = lend::block_len(count);
        self.fill(n)
            .inspect_err(|_| self.broken = Some("end of file inside a message".into()))?;
        let block = self.buffered()[..n].to_vec();
        self.take(n);
        let out = self.recv_body(size, max)?;
        if !self.takes {
            return Err(Error::HandlesNotCarried(
                "handles are taken only from the peer of a pipe(true) end",
            ));
        }
        Ok((out, lend::take(&block, count)?, None))
    }

    /// The `size` bytes of a frame whose header was taken.
    fn recv_body(&mut self, size: u64, max: u64) -> Result<Vec<u8>, Error> {
        let n = frame::check_size(size, max).inspect_err(|e| self.broken = Some(e.to_string()))?;
        // The message's vector grows as its bytes arrive (`frame::reserve_next`), so a header
        // announcing 1 GiB reserves nothing until the peer actually sends that much.
        let mut out = Vec::new();
        let have = self.buffered().len().min(n);
        out.try_reserve_exact(have.max(n.min(frame::GROW_FROM)))
            .map_err(|_| self.break_on(PickleError::OutOfMemory { size: n as u64 }))?;
        let s = self.start;
        out.extend_from_slice(&self.buf[s..s + have]);
        self.take(have);
        while out.len() < n {
            let room = frame::reserve_next(&mut out, n).map_err(|e| self.break_on(e))?;
            let want = n - out.len();
            if want >= READ_BUF / 2 {
                let fd = self.fd.as_ref().ok_or(Error::Closed)?;
                let got = read_some(
                    fd,
                    self.sock,
                    &mut out,
                    room,
                    &mut self.received,
                    &mut self.batches,
                )?;
                if got == 0 {
                    self.broken = Some("end of file inside a message".into());
                    return Err(Error::Eof);
                }
            } else {
                self.fill(want)
                    .inspect_err(|_| self.broken = Some("end of file inside a message".into()))?;
                let s = self.start;
                out.extend_from_slice(&self.buf[s..s + want]);
                self.take(want);
            }
        }
        Ok(out)
    }
}

/// A pipe's side channel for OS handles (see [`Connection::with_side`]).
struct Side {
    sock: OsHandle,
    /// The number the next handle-carrying frame this end sends gets.
    sent: AtomicU64,
    /// The number the next handle-carrying frame this end receives must have.
    next: AtomicU64,
}

/// Read what is available into `v`'s spare capacity (at most `max` bytes), counting it in
/// `received`; on a Unix socket, handles that come along join `batches`.
fn read_some(
    fd: &Endpoint,
    sock: bool,
    v: &mut Vec<u8>,
    max: usize,
    received: &mut u64,
    batches: &mut std::collections::VecDeque<Batch>,
) -> Result<usize, Error> {
    loop {
        match read_once(fd, sock, v, max, received, batches) {
            // The descriptor is in non-blocking mode (its file may be shared with another
            // process that set it so): wait for data. A `WouldBlock` passed up from inside a
            // frame would drop what was read of it while its header is consumed, and the
            // stream would lose its framing.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                sys::poll_readable(&[fd.raw()], None)?;
            }
            r => return Ok(r?),
        }
    }
}

/// One read of [`read_some`]: a socket's descriptors are queued in `batches`.
fn read_once(
    fd: &Endpoint,
    sock: bool,
    v: &mut Vec<u8>,
    max: usize,
    received: &mut u64,
    batches: &mut std::collections::VecDeque<Batch>,
) -> std::io::Result<usize> {
    #[cfg(unix)]
    if let (true, Some(fd)) = (sock, fd.handle()) {
        let got = sys::recv_into_spare(sys::borrow(fd), v, max)?;
        *received += got.len as u64;
        if !got.fds.is_empty() || got.truncated {
            batches.push_back(Batch {
                at: *received,
                handles: got.fds,
                truncated: got.truncated,
            });
        }
        return Ok(got.len);
    }
    let _ = (sock, &batches);
    let got = fd.read_into_spare(v, max)?;
    *received += got as u64;
    Ok(got)
}

/// One end of a [`pipe`] or of a [`Listener`](crate::Listener)/[`Client`](crate::Client)
/// connection: whole messages in, whole messages out.
///
/// Messages are framed exactly as CPython's `multiprocessing.connection` frames them, so
/// `send_bytes`/`recv_bytes` interoperate with Python peers. Typed `send`/`recv` carry any serde
/// value (postcard-encoded). A `Connection` can be passed to a child process as (part of) its
/// arguments, with every start method.
///
/// Both directions can be used from different threads at once; each direction is serialized
/// by its own lock.
///
/// ```
/// let (a, b) = multiproc::pipe(true).unwrap();
/// a.send(&("hello", 42u32)).unwrap();
/// let (s, n): (String, u32) = b.recv().unwrap();
/// assert_eq!((s.as_str(), n), ("hello", 42));
/// b.send_bytes(b"raw").unwrap();
/// assert_eq!(a.recv_bytes().unwrap(), b"raw");
/// ```
pub struct Connection {
    r: Mutex<ReadSide>,
    w: Mutex<Option<Endpoint>>,
    readable: bool,
    writable: bool,
    /// Why this end cannot send OS handles (`None`: it can, it writes to a Unix socket or
    /// has a side socket).
    no_handles: Option<&'static str>,
    /// A [`pipe`]'s side channel: a datagram socket shared with the peer, one datagram of
    /// handles (and its frame's number) per frame that carries handles.
    side: Option<Side>,
    /// Windows: a `pipe(true)` end, which lends and takes handles (`connection/lend.rs`).
    #[cfg(windows)]
    lends: bool,
    max: AtomicU64,
    max_depth: AtomicUsize,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Create a pair of connected [`Connection`]s, like Python's `multiprocessing.Pipe(duplex)`.
///
/// With `duplex == true` both ends can send and receive; otherwise the first end only receives
/// and the second only sends.
///
/// ```
/// let (rx, tx) = multiproc::pipe(false).unwrap();
/// tx.send(&vec![1u8, 2, 3]).unwrap();
/// assert_eq!(rx.recv::<Vec<u8>>().unwrap(), [1, 2, 3]);
/// assert!(rx.send(&1u8).is_err()); // read-only end
/// ```
#[doc(alias = "Pipe")]
pub fn pipe(duplex: bool) -> Result<(Connection, Connection), Error> {
    // Windows: one duplex named pipe, as CPython's `Pipe(duplex=True)` makes (one kernel object
    // per end, each end one handle to hand a child); both directions of an end use it, through
    // two handles to it, so a read and a write may wait at the same time.
    #[cfg(windows)]
    if duplex {
        let (a, b) = sys::socketpair()?;
        let (a2, b2) = (a.try_clone()?, b.try_clone()?);
        return Ok((
            Connection::from_handles(Some(a), Some(a2)).lending(),
            Connection::from_handles(Some(b), Some(b2)).lending(),
        ));
    }
    if duplex {
        let (r1, w1) = sys::pipe()?;
        let (r2, w2) = sys::pipe()?;
        let (a, b) = (
            Connection::from_handles(Some(r1), Some(w2)),
            Connection::from_handles(Some(r2), Some(w1)),
        );
        // The bytes go through pipes (large kernel buffers, nothing per message); OS handles
        // through a datagram socket pair beside them.
        #[cfg(unix)]
        {
            let (s1, s2) = sys::datagram_pair()?;
            Ok((a.with_side(s1), b.with_side(s2)))
        }
        #[cfg(not(unix))]
        Ok((a, b))
    } else {
        let (r, w) = sys::pipe()?;
        Ok((
            Connection::from_handles(Some(r), None),
            Connection::from_handles(None, Some(w)),
        ))
    }
}

impl Connection {
    /// Wrap OS handles: `read` to receive from, `write` to send to (either may be the same
    /// socket, duplicated). Used by [`pipe`], the listener and the child bootstrap.
    pub(crate) fn from_handles(read: Option<OsHandle>, write: Option<OsHandle>) -> Connection {
        Connection::from_endpoints(read.map(Endpoint::Handle), write.map(Endpoint::Handle))
    }

    /// A connection over a Winsock socket (a TCP connection), both directions.
    #[cfg(windows)]
    pub(crate) fn from_socket(s: std::os::windows::io::OwnedSocket) -> Connection {
        let s = std::sync::Arc::new(s);
        Connection::from_endpoints(Some(Endpoint::Socket(s.clone())), Some(Endpoint::Socket(s)))
    }

    fn from_endpoints(read: Option<Endpoint>, write: Option<Endpoint>) -> Connection {
        for h in read.iter().chain(write.iter()) {
            h.set_tracked(true);
        }
        #[cfg(unix)]
        let sock = read
            .as_ref()
            .and_then(Endpoint::handle)
            .is_some_and(|h| sys::is_unix_socket(sys::borrow(h)));
        #[cfg(not(unix))]
        let sock = false;
        #[cfg(unix)]
        let no_handles = match write.as_ref().map(Endpoint::handle) {
            None => Some("it is read-only"),
            Some(Some(h)) if sys::is_unix_socket(sys::borrow(h)) => None,
            Some(_) => Some("it is not a Unix socket (a one-way pipe or a network connection)"),
        };
        #[cfg(not(unix))]
        let no_handles = Some("only the ends of a pipe(true) lend handles on Windows");
        Connection {
            readable: read.is_some(),
            writable: write.is_some(),
            no_handles,
            side: None,
            #[cfg(windows)]
            lends: false,
            r: Mutex::new(ReadSide {
                fd: read,
                sock,
                received: 0,
                batches: std::collections::VecDeque::new(),
                buf: Vec::new(),
                start: 0,
                broken: None,
                #[cfg(windows)]
                takes: false,
            }),
            w: Mutex::new(write),
            max: AtomicU64::new(frame::DEFAULT_MAX_MESSAGE),
            max_depth: AtomicUsize::new(multiproc_pickle::DEFAULT_MAX_DEPTH),
        }
    }

    /// Windows: make this end of a `pipe(true)` lend and take handles (`connection/lend.rs`).
    #[cfg(windows)]
    fn lending(mut self) -> Connection {
        self.lends = true;
        self.r.get_mut().takes = true;
        if self.writable {
            self.no_handles = None;
        }
        self
    }

    /// Give a pipe connection its side channel for OS handles (one end of a datagram socket
    /// pair; the peer has the other).
    #[cfg(unix)]
    fn with_side(mut self, sock: OsHandle) -> Connection {
        sys::track_inheritable(sys::borrow(&sock));
        if self.no_handles.is_some() && self.writable {
            self.no_handles = None;
        }
        self.side = Some(Side {
            sock,
            sent: AtomicU64::new(0),
            next: AtomicU64::new(0),
        });
        self
    }

    /// The handles of the handle-carrying frame just read from the pipe, announced as
    /// `count`: the side channel's next datagram. Strays (numbered below the one expected:
    /// never sent by a `Connection`) are closed and skipped.
    #[cfg(unix)]
    fn side_handles(&self, side: &Side, count: u32) -> Result<Vec<OsHandle>, Error> {
        let want = side.next.fetch_add(1, Ordering::AcqRel);
        loop {
            let mut d = [0u8; 8];
            let got = match multiproc_pickle::scm::recv_with_fds(
                sys::borrow(&side.sock),
                &mut d,
                false,
                true,
            ) {
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(Error::HandleCountMismatch {
                        announced: count,
                        received: 0,
                    })
                }
                Err(e) => return Err(e.into()),
            };
            let seq = u64::from_le_bytes(d);
            if got.len != 8 || seq < want {
                tracing::debug!(
                    seq,
                    want,
                    "stray datagram on a pipe's handle channel; closed"
                );
                continue;
            }
            if got.truncated {
                return Err(Error::HandlesTruncated);
            }
            if seq > want || got.fds.len() != count as usize {
                return Err(Error::HandleCountMismatch {
                    announced: count,
                    received: got.fds.len(),
                });
            }
            return Ok(got.fds);
        }
    }

    /// Whether this end lends and takes handles as a Windows `pipe(true)` end does (on Unix:
    /// never; its handles go by `SCM_RIGHTS`).
    fn lends(&self) -> bool {
        #[cfg(windows)]
        return self.lends;
        #[cfg(not(windows))]
        false
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether [`close`](Self::close) was called.
    #[doc(alias = "closed")]
    pub fn is_closed(&self) -> bool {
        self.r.lock().fd.is_none() && self.w.lock().is_none()
    }

    /// The kernel's buffer for what this end sends, in bytes (a pipe's capacity, or a socket's
    /// send buffer as the kernel reports it); `None` for a receive-only end, a closed one, or
    /// where it cannot be known. While the peer reads nothing, sends totalling well under this
    /// do not block (a socket's usable share is smaller than its reported size).
    ///
    /// ```
    /// let (rx, tx) = multiproc::pipe(false).unwrap();
    /// assert!(tx.send_buffer_size().unwrap() >= 4096);
    /// assert_eq!(rx.send_buffer_size(), None);
    /// ```
    pub fn send_buffer_size(&self) -> Option<usize> {
        let w = self.w.lock();
        w.as_ref()?.send_buffer_size()
    }

    /// The largest message this end will send or accept (default 1 GiB).
    pub fn max_message_size(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// Change the largest message this end will send or accept. A larger incoming frame is a
    /// [`PickleError::TooLarge`] error, and the connection cannot be read from afterwards (the
    /// rest of that frame is never interpreted as messages).
    ///
    /// ```
    /// let (a, b) = multiproc::pipe(true).unwrap();
    /// b.set_max_message_size(4);
    /// a.send_bytes(b"too long").unwrap();
    /// assert!(b.recv_bytes().is_err());
    /// ```
    pub fn set_max_message_size(&self, max: u64) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// How deeply a value received with [`recv`](Self::recv) may nest (default
    /// [`DEFAULT_MAX_DEPTH`](multiproc_pickle::DEFAULT_MAX_DEPTH), 128 levels).
    pub fn max_depth(&self) -> usize {
        self.max_depth.load(Ordering::Relaxed)
    }

    /// Change how deeply a value received with [`recv`](Self::recv) may nest. Each sequence,
    /// map, enum and `Some` opens one level (structs and tuples are free); a message nested
    /// deeper is a [`PickleError::TooDeep`] error (that message is dropped, the connection stays
    /// usable), so a peer cannot make decoding recurse until the stack overflows. Raise it only
    /// for data that nests deeper and a stack that can hold it.
    ///
    /// ```
    /// use multiproc::ProcessError as Error;
    /// use multiproc::pickle::PickleError;
    /// let (a, b) = multiproc::pipe(true).unwrap();
    /// b.set_max_depth(2);
    /// a.send(&Some(Some(Some(1u8)))).unwrap();
    /// assert!(matches!(
    ///     b.recv::<Option<Option<Option<u8>>>>(),
    ///     Err(Error::Pickle(PickleError::TooDeep { max: 2 }))
    /// ));
    /// a.send(&Some(Some(1u8))).unwrap();
    /// assert_eq!(b.recv::<Option<Option<u8>>>().unwrap(), Some(Some(1)));
    /// ```
    pub fn set_max_depth(&self, max_depth: usize) {
        self.max_depth.store(max_depth, Ordering::Relaxed);
    }

    /// Send one message of raw bytes (one `writev` of header and payload where the OS allows).
    pub fn send_bytes(&self, data: &[u8]) -> Result<(), Error> {
        if !self.writable {
            return Err(Error::WrongDirection("read-only"));
        }
        let max = self.max_message_size();
        frame::check_size(data.len() as u64, max)?;
        let (h, hn) = frame::encode_header(data.len());
        let w = self.w.lock();
        let fd = w.as_ref().ok_or(Error::Closed)?;
        fd.write_all_vectored(&[&h[..hn], data])?;
        Ok(())
    }

    /// Send several messages with one system call (where the OS allows): the peer receives them
    /// as separate messages, in order, exactly as from as many [`send_bytes`](Self::send_bytes).
    /// All sizes are checked before anything is sent.
    ///
    /// ```
    /// let (a, b) = multiproc::pipe(true).unwrap();
    /// a.send_bytes_many(&[b"one", b"", b"three"]).unwrap();
    /// assert_eq!(b.recv_bytes().unwrap(), b"one");
    /// assert_eq!(b.recv_bytes().unwrap(), b"");
    /// assert_eq!(b.recv_bytes().unwrap(), b"three");
    /// ```
    pub fn send_bytes_many(&self, msgs: &[&[u8]]) -> Result<(), Error> {
        if !self.writable {
            return Err(Error::WrongDirection("read-only"));
        }
        let max = self.max_message_size();
        let mut headers = Vec::with_capacity(msgs.len());
        for m in msgs {
            frame::check_size(m.len() as u64, max)?;
            headers.push(frame::encode_header(m.len()));
        }
        let mut bufs: Vec<&[u8]> = Vec::with_capacity(2 * msgs.len());
        for ((h, hn), m) in headers.iter().zip(msgs) {
            bufs.push(&h[..*hn]);
            bufs.push(m);
        }
        let w = self.w.lock();
        let fd = w.as_ref().ok_or(Error::Closed)?;
        fd.write_all_vectored(&bufs)?;
        Ok(())
    }

    /// Receive one message of raw bytes. [`Error::Eof`] when the peer has closed. A message
    /// that carries OS handles is an [`Error::UnexpectedHandles`] (its handles are closed):
    /// read those with [`recv`](Self::recv) or
    /// [`recv_bytes_with_handles`](Self::recv_bytes_with_handles).
    pub fn recv_bytes(&self) -> Result<Vec<u8>, Error> {
        self.recv_bytes_max(self.max_message_size())
    }

    /// Receive one message, refusing (with [`PickleError::TooLarge`]) one longer than
    /// `maxlength`, like Python's `recv_bytes(maxlength)`.
    pub fn recv_bytes_max(&self, maxlength: u64) -> Result<Vec<u8>, Error> {
        let (bytes, handles) = self.recv_frame(maxlength.min(self.max_message_size()))?;
        if !handles.is_empty() {
            return Err(Error::UnexpectedHandles(handles.len() as u32));
        }
        Ok(bytes)
    }

    fn recv_frame(&self, max: u64) -> Result<(Vec<u8>, Vec<OsHandle>), Error> {
        if !self.readable {
            return Err(Error::WrongDirection("write-only"));
        }
        let mut r = self.r.lock();
        let (bytes, handles, count) = r.recv_frame(max)?;
        #[cfg(unix)]
        if let (Some(side), Some(count)) = (&self.side, count) {
            return Ok((bytes, self.side_handles(side, count)?));
        }
        let _ = count;
        Ok((bytes, handles))
    }

    /// Whether this end can send values that own OS handles (a [`Connection`], a lock, a
    /// queue, a descriptor): on Unix it writes to a Unix socket (`pipe(true)`, a Unix-socket
    /// [`Listener`](crate::Listener)); on Windows it is an end of a `pipe(true)`, which lends
    /// its handles to the peer. Elsewhere such a value is an [`Error::HandlesNotCarried`] that
    /// says why.
    ///
    /// ```
    /// let (a, _b) = multiproc::pipe(true).unwrap();
    /// assert!(a.can_carry_handles());
    /// let (_rx, tx) = multiproc::pipe(false).unwrap();
    /// assert!(!tx.can_carry_handles());
    /// ```
    pub fn can_carry_handles(&self) -> bool {
        self.no_handles.is_none()
    }

    /// Send one message of raw bytes with OS handles attached (`SCM_RIGHTS`, duplicated into
    /// the receiver): the peer gets both with
    /// [`recv_bytes_with_handles`](Self::recv_bytes_with_handles). At most 253 handles.
    ///
    /// ```
    /// # #[cfg(unix)] {
    /// use std::os::fd::AsFd;
    /// let (a, b) = multiproc::pipe(true).unwrap();
    /// let file = std::fs::File::open("/dev/null").unwrap();
    /// a.send_bytes_with_handles(b"a file", &[file.as_fd()]).unwrap();
    /// let (bytes, handles) = b.recv_bytes_with_handles().unwrap();
    /// assert_eq!((bytes.as_slice(), handles.len()), (&b"a file"[..], 1));
    /// # }
    /// ```
    #[cfg(unix)]
    pub fn send_bytes_with_handles(
        &self,
        data: &[u8],
        handles: &[std::os::fd::BorrowedFd<'_>],
    ) -> Result<(), Error> {
        if !self.writable {
            return Err(Error::WrongDirection("read-only"));
        }
        if let Some(why) = self.no_handles {
            return Err(Error::HandlesNotCarried(why));
        }
        if handles.len() > multiproc_pickle::scm::MAX_FDS {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "more than 253 handles in one message",
            )));
        }
        frame::check_size(data.len() as u64, self.max_message_size())?;
        let h = frame::encode_handles_header(data.len(), handles.len() as u32);
        let w = self.w.lock();
        let fd = w.as_ref().ok_or(Error::Closed)?;
        match &self.side {
            // (the handles first: when the peer reads the frame, they are there)
            Some(side) => {
                let seq = side.sent.load(Ordering::Acquire);
                multiproc_pickle::scm::send_with_fds(
                    sys::borrow(&side.sock),
                    &[&seq.to_le_bytes()],
                    handles,
                    false,
                )?;
                side.sent.store(seq + 1, Ordering::Release);
                fd.write_all_vectored(&[&h, data])?;
            }
            None => {
                let fd = fd
                    .handle()
                    .ok_or(Error::HandlesNotCarried("not a Unix socket"))?;
                sys::send_all_with_fds(sys::borrow(fd), &[&h, data], handles)?
            }
        }
        Ok(())
    }

    /// Send one message of raw bytes with OS handles lent to the peer (see
    /// `connection/lend.rs`): the peer gets both with
    /// [`recv_bytes_with_handles`](Self::recv_bytes_with_handles). At most 253 handles; only
    /// the ends of a [`pipe(true)`](pipe) (and their copies in children) lend and take.
    ///
    /// ```
    /// # #[cfg(windows)] {
    /// use std::os::windows::io::AsHandle;
    /// let (a, b) = multiproc::pipe(true).unwrap();
    /// let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    /// a.send_bytes_with_handles(b"a file", &[file.as_handle()]).unwrap();
    /// let (bytes, handles) = b.recv_bytes_with_handles().unwrap();
    /// assert_eq!((bytes.as_slice(), handles.len()), (&b"a file"[..], 1));
    /// # }
    /// ```
    #[cfg(windows)]
    pub fn send_bytes_with_handles(
        &self,
        data: &[u8],
        handles: &[std::os::windows::io::BorrowedHandle<'_>],
    ) -> Result<(), Error> {
        if !self.writable {
            return Err(Error::WrongDirection("read-only"));
        }
        if let Some(why) = self.no_handles {
            return Err(Error::HandlesNotCarried(why));
        }
        if handles.len() > MAX_HANDLES {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "more than 253 handles in one message",
            )));
        }
        frame::check_size(data.len() as u64, self.max_message_size())?;
        let h = frame::encode_handles_header(data.len(), handles.len() as u32);
        let lent = lend::Lent::new(handles)?;
        let w = self.w.lock();
        let fd = w.as_ref().ok_or(Error::Closed)?;
        fd.write_all_vectored(&[&h, &lent.block, data])?;
        lent.sent();
        Ok(())
    }

    /// Receive one message and the OS handles that came with it (none for a plain message).
    /// Handles that did not arrive as the message announced are an error
    /// ([`Error::HandleCountMismatch`], [`Error::HandlesTruncated`]), and every one that did
    /// arrive is closed: a hostile peer cannot make this end leak descriptors.
    pub fn recv_bytes_with_handles(&self) -> Result<(Vec<u8>, Vec<OsHandle>), Error> {
        self.recv_frame(self.max_message_size())
    }

    /// Send a raw descriptor (duplicated into the receiver), like Python's
    /// `reduction.send_handle`; the peer takes it with [`recv_handle`](Self::recv_handle).
    ///
    /// ```
    /// # #[cfg(unix)] {
    /// use std::io::{Read, Seek, Write};
    /// use std::os::fd::AsFd;
    /// let (a, b) = multiproc::pipe(true).unwrap();
    /// let path = std::env::temp_dir().join(format!("mp-send-handle-{}", std::process::id()));
    /// let mut file = std::fs::File::options()
    ///     .read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    /// std::fs::remove_file(&path).unwrap();
    /// file.write_all(b"shared").unwrap();
    /// a.send_handle(file.as_fd()).unwrap();
    /// let mut same = std::fs::File::from(b.recv_handle().unwrap());
    /// let mut text = String::new();
    /// same.rewind().unwrap();
    /// same.read_to_string(&mut text).unwrap();
    /// assert_eq!(text, "shared");
    /// # }
    /// ```
    #[cfg(unix)]
    pub fn send_handle(&self, handle: std::os::fd::BorrowedFd<'_>) -> Result<(), Error> {
        self.send(&HandleRef(&handle))
    }

    /// Receive a descriptor sent with [`send_handle`](Self::send_handle) (or any message that
    /// is exactly one handle), like Python's `reduction.recv_handle`.
    #[cfg(unix)]
    pub fn recv_handle(&self) -> Result<std::os::fd::OwnedFd, Error> {
        Ok(self.recv::<HandleOwned>()?.0)
    }

    /// Windows: send a raw handle (lent to the receiver: see
    /// [`send_bytes_with_handles`](Self::send_bytes_with_handles)), like Python's
    /// `reduction.send_handle`; the peer takes it with [`recv_handle`](Self::recv_handle).
    #[cfg(windows)]
    pub fn send_handle(
        &self,
        handle: std::os::windows::io::BorrowedHandle<'_>,
    ) -> Result<(), Error> {
        self.send(&HandleRef(&handle))
    }

    /// Windows: receive a handle sent with [`send_handle`](Self::send_handle), like Python's
    /// `reduction.recv_handle`.
    #[cfg(windows)]
    pub fn recv_handle(&self) -> Result<std::os::windows::io::OwnedHandle, Error> {
        Ok(self.recv::<HandleOwned>()?.0)
    }

    /// Receive one message into `buf`, returning its length. A message longer than `buf` is an
    /// [`Error::BufferTooShort`] that carries the whole message, so nothing is lost.
    ///
    /// ```
    /// use multiproc::ProcessError as Error;
    /// let (a, b) = multiproc::pipe(true).unwrap();
    /// a.send_bytes(b"0123456789").unwrap();
    /// let mut small = [0u8; 4];
    /// match b.recv_bytes_into(&mut small) {
    ///     Err(Error::BufferTooShort(msg)) => assert_eq!(msg, b"0123456789"),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let msg = self.recv_bytes()?;
        if msg.len() > buf.len() {
            return Err(Error::BufferTooShort(msg));
        }
        buf[..msg.len()].copy_from_slice(&msg);
        Ok(msg.len())
    }

    /// Send a serde value. A value that owns OS handles (a [`Connection`], a lock, a queue, a
    /// shared-memory block) travels with them where this end
    /// [can carry handles](Self::can_carry_handles); elsewhere it is an
    /// [`Error::HandlesNotCarried`].
    ///
    /// The value's type must keep to the serde features postcard can decode (no
    /// `#[serde(untagged)]`, `tag`, `flatten` or `skip_serializing_if`; see
    /// [`multiproc::pickle`'s "What a message type may use"](multiproc_pickle#what-a-message-type-may-use)).
    /// Debug builds check what they can here ([`check_shape`](multiproc_pickle::check_shape):
    /// a skipped field is an error at the sender). Byte payloads: send
    /// [`Bytes`](multiproc_pickle::Bytes), not `Vec<u8>`, 40× to 100× slower.
    ///
    /// ```
    /// let (a, b) = multiproc::pipe(true).unwrap();
    /// let (x, y) = multiproc::pipe(true).unwrap();
    /// # #[cfg(unix)] {
    /// a.send(&x).unwrap(); // a connection over a connection
    /// let x2: multiproc::Connection = b.recv().unwrap();
    /// x2.send(&5u8).unwrap();
    /// assert_eq!(y.recv::<u8>().unwrap(), 5);
    /// # }
    /// ```
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        multiproc_pickle::check_shape(value)?;
        if self.no_handles.is_none() {
            let (bytes, handles) = multiproc_pickle::encode_with_handles(value)?;
            if handles.is_empty() {
                return self.send_bytes(&bytes);
            }
            let borrowed: Vec<_> = handles.iter().map(sys::borrow).collect();
            return self.send_bytes_with_handles(&bytes, &borrowed);
        }
        match multiproc_pickle::encode(value) {
            Ok(bytes) => self.send_bytes(&bytes),
            Err(PickleError::HandleOutsideTransfer) => Err(Error::HandlesNotCarried(
                self.no_handles.unwrap_or("it cannot carry them"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Receive a serde value sent with [`send`](Self::send), with the OS handles it owns. A
    /// message that does not decode as a `T`, or nests deeper than
    /// [`max_depth`](Self::max_depth), is an error for that message (and the handles that came
    /// with it are closed).
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let (bytes, handles) = self.recv_frame(self.max_message_size())?;
        if handles.is_empty() {
            return Ok(multiproc_pickle::decode_with_max_depth(
                &bytes,
                self.max_depth(),
            )?);
        }
        Ok(multiproc_pickle::decode_with_handles_and_max_depth(
            &bytes,
            handles,
            self.max_depth(),
        )?)
    }

    /// Whether a message (or end of file) is ready to be received, waiting up to `timeout`
    /// (`None` waits forever, `Some(ZERO)` only checks).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = multiproc::pipe(true).unwrap();
    /// assert!(!b.poll(Some(Duration::from_millis(10))).unwrap());
    /// a.send(&1u8).unwrap();
    /// assert!(b.poll(Some(Duration::ZERO)).unwrap());
    /// ```
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool, Error> {
        if !self.readable {
            return Err(Error::WrongDirection("write-only"));
        }
        let raw = {
            let r = self.r.lock();
            if !r.buffered().is_empty() {
                return Ok(true);
            }
            r.fd.as_ref().ok_or(Error::Closed)?.raw()
        };
        Ok(sys::poll_readable(&[raw], timeout)?[0])
    }

    /// Close both directions now (dropping the connection does the same). Later calls fail
    /// with [`Error::Closed`]; the peer sees end of file.
    pub fn close(&self) {
        let mut r = self.r.lock();
        let mut w = self.w.lock();
        for h in r.fd.iter().chain(w.iter()) {
            h.set_tracked(false);
        }
        r.fd = None;
        r.buf = Vec::new();
        r.start = 0;
        r.batches.clear();
        // (the side socket closes with the connection's drop: `close` takes `&self`)
        *w = None;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
        if let Some(side) = self.side.take() {
            sys::untrack_inheritable(sys::borrow(&side.sock));
        }
    }
}

impl Waitable for Connection {
    fn ready_now(&self) -> bool {
        !self.r.lock().buffered().is_empty()
    }

    fn wait_handle(&self) -> Option<sys::RawWait> {
        self.r.lock().fd.as_ref().map(Endpoint::raw)
    }
}

/// A connection serializes as its handles (moved through the process-start transfer) and any
/// bytes already read ahead and its limits, so a receiver continues exactly where this end stopped. Outside a
/// transfer it refuses ([`PickleError::HandleOutsideTransfer`]).
impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.r.lock();
        let w = self.w.lock();
        // handles read ahead go along, at their places in the bytes read ahead
        let from = r.received - r.buffered().len() as u64;
        let batches: Vec<(u64, bool, Vec<HandleRef<'_, OsHandle>>)> = r
            .batches
            .iter()
            .map(|b| {
                let handles = b.handles.iter().map(HandleRef).collect();
                (b.at.saturating_sub(from), b.truncated, handles)
            })
            .collect();
        let side = self.side.as_ref().map(|sd| {
            (
                HandleRef(&sd.sock),
                sd.sent.load(Ordering::Acquire),
                sd.next.load(Ordering::Acquire),
            )
        });
        let wire = (
            wire_handle::<S>(r.fd.as_ref())?,
            wire_handle::<S>(w.as_ref())?,
            Bytes(r.buffered().to_vec()),
            self.max_message_size(),
            self.max_depth(),
            batches,
            side,
            self.lends(),
        );
        wire.serialize(s)
    }
}

/// The handle of one direction, as it travels (a Windows socket cannot: it is no handle that
/// `DuplicateHandle` may copy).
fn wire_handle<S: Serializer>(
    e: Option<&Endpoint>,
) -> Result<Option<HandleRef<'_, OsHandle>>, S::Error> {
    match e {
        None => Ok(None),
        Some(e) => match e.handle() {
            Some(h) => Ok(Some(HandleRef(h))),
            None => {
                // (postcard keeps no text of a custom error: say it here too)
                tracing::debug!("a TCP connection cannot be passed to another process on Windows");
                Err(serde::ser::Error::custom(
                    "a TCP connection cannot be passed to another process on Windows",
                ))
            }
        },
    }
}

/// The wire form of [`Connection`]'s read-ahead handles.
type WireBatches = Vec<(u64, bool, Vec<HandleOwned>)>;

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (r, w, buffered, max, max_depth, batches, side, lends) = <(
            Option<HandleOwned>,
            Option<HandleOwned>,
            Bytes,
            u64,
            usize,
            WireBatches,
            Option<(HandleOwned, u64, u64)>,
            bool,
        )>::deserialize(d)?;
        #[allow(unused_mut)]
        let mut c = Connection::from_handles(r.map(|h| h.0), w.map(|h| h.0));
        #[cfg(windows)]
        if lends {
            c = c.lending();
        }
        #[cfg(not(windows))]
        let _ = lends;
        #[cfg(unix)]
        if let Some((sock, sent, next)) = side {
            c = c.with_side(sock.0);
            if let Some(sd) = &c.side {
                sd.sent.store(sent, Ordering::Release);
                sd.next.store(next, Ordering::Release);
            }
        }
        #[cfg(not(unix))]
        let _ = side;
        {
            let mut rs = c.r.lock();
            rs.received = buffered.0.len() as u64;
            rs.buf = buffered.0;
            rs.batches = batches
                .into_iter()
                .map(|(at, truncated, handles)| Batch {
                    at,
                    truncated,
                    handles: handles.into_iter().map(|h| h.0).collect(),
                })
                .collect();
        }
        c.set_max_message_size(max);
        c.set_max_depth(max_depth);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write a handle frame lending `values` from the process `identity`, by hand.
    #[cfg(windows)]
    fn forge_lent(c: &Connection, identity: u64, values: &[u64], data: &[u8]) {
        let h = frame::encode_handles_header(data.len(), values.len() as u32);
        let mut block = identity.to_le_bytes().to_vec();
        for v in values {
            block.extend_from_slice(&v.to_le_bytes());
        }
        let w = c.w.lock();
        w.as_ref()
            .unwrap()
            .write_all_vectored(&[&h, &block, data])
            .unwrap();
    }

    #[cfg(windows)]
    fn is_open(h: &impl std::os::windows::io::AsRawHandle) -> bool {
        let mut flags = 0u32;
        // SAFETY: queries a handle value into a local.
        unsafe {
            windows_sys::Win32::Foundation::GetHandleInformation(h.as_raw_handle(), &mut flags) != 0
        }
    }

    /// A peer that is not a `pipe(true)` end lends nothing: its handle frame is refused whole
    /// (the values it names, here one of the receiver's own handles, are not touched) and the
    /// connection goes on; a lender that is gone is a count mismatch, and the pipe goes on.
    #[cfg(windows)]
    #[test]
    fn forged_or_orphaned_lent_handles_are_refused_and_the_connection_goes_on() {
        use std::os::windows::io::AsRawHandle;
        let me = (u64::from(u32::MAX) << 32) | u64::from(std::process::id());
        let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        let mine = file.as_raw_handle() as usize as u64;
        let (rx, tx) = pipe(false).unwrap();
        forge_lent(&tx, me, &[mine], b"steal");
        assert!(matches!(
            rx.recv_bytes_with_handles(),
            Err(Error::HandlesNotCarried(_))
        ));
        assert!(
            is_open(&file),
            "a refused frame closed the receiver's own handle"
        );
        tx.send(&7u8).unwrap();
        assert_eq!(rx.recv::<u8>().unwrap(), 7);
        // a lender whose identity is no live process (creation tag wrong)
        let (a, b) = pipe(true).unwrap();
        forge_lent(&a, me, &[mine], b"gone");
        assert!(matches!(
            b.recv_bytes_with_handles(),
            Err(Error::HandleCountMismatch {
                announced: 1,
                received: 0
            })
        ));
        assert!(is_open(&file));
        a.send(&8u8).unwrap();
        assert_eq!(b.recv::<u8>().unwrap(), 8);
        // and a real lend between the two ends
        use std::os::windows::io::AsHandle;
        a.send_bytes_with_handles(b"real", &[file.as_handle()])
            .unwrap();
        let (bytes, hs) = b.recv_bytes_with_handles().unwrap();
        assert_eq!((bytes.as_slice(), hs.len()), (&b"real"[..], 1));
        assert!(is_open(&hs[0]) && is_open(&file));
    }

    #[test]
    fn many_small_messages_in_one_read() {
        let (a, b) = pipe(true).unwrap();
        for i in 0..1000u32 {
            a.send(&i).unwrap();
        }
        for i in 0..1000u32 {
            assert_eq!(b.recv::<u32>().unwrap(), i);
        }
    }

    #[test]
    fn large_message_across_threads() {
        let (a, b) = pipe(true).unwrap();
        let msg: Vec<u8> = (0..(3 << 20)).map(|i| (i % 251) as u8).collect();
        let m2 = msg.clone();
        let t = std::thread::spawn(move || a.send_bytes(&m2).unwrap());
        assert_eq!(b.recv_bytes().unwrap(), msg);
        t.join().unwrap();
    }

    #[test]
    fn malformed_and_oversized_frames() {
        let (r, w) = sys::pipe().unwrap();
        let c = Connection::from_handles(Some(r), None);
        sys::write_all_vectored(sys::borrow(&w), &[&[0x80, 0, 0, 1]]).unwrap();
        assert!(matches!(
            c.recv_bytes(),
            Err(Error::Pickle(PickleError::BadFrame(_)))
        ));
        // the stream lost its framing: every later read says so instead of misreading
        assert!(matches!(
            c.recv_bytes(),
            Err(Error::Pickle(PickleError::BadFrame(_)))
        ));

        let (a, b) = pipe(true).unwrap();
        b.set_max_message_size(16);
        a.send_bytes(&[0; 17]).unwrap();
        assert!(matches!(
            b.recv_bytes(),
            Err(Error::Pickle(PickleError::TooLarge { size: 17, max: 16 }))
        ));
        a.set_max_message_size(16);
        assert!(matches!(
            a.send_bytes(&[0; 17]),
            Err(Error::Pickle(PickleError::TooLarge { .. }))
        ));
    }

    #[test]
    fn eof_and_close() {
        let (a, b) = pipe(true).unwrap();
        a.send_bytes(b"last").unwrap();
        drop(a);
        assert_eq!(b.recv_bytes().unwrap(), b"last");
        assert!(matches!(b.recv_bytes(), Err(Error::Eof)));
        b.close();
        assert!(matches!(b.send_bytes(b"x"), Err(Error::Closed)));
        assert!(b.is_closed());
    }

    #[test]
    fn connection_refuses_plain_encode() {
        let (a, _b) = pipe(true).unwrap();
        assert!(matches!(
            multiproc_pickle::encode(&a),
            Err(PickleError::HandleOutsideTransfer)
        ));
        // a one-way pipe cannot carry handles, and says so
        let (_rx, tx) = pipe(false).unwrap();
        assert!(!tx.can_carry_handles());
        assert!(matches!(tx.send(&a), Err(Error::HandlesNotCarried(_))));
        assert!(tx.send(&1u8).is_ok());
    }

    #[cfg(unix)]
    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
    }

    /// A connection over a connection, over a duplex pipe (its side channel) and over a Unix
    /// socket (in band), interleaved with plain messages; and raw descriptors.
    #[test]
    #[cfg(unix)]
    fn connections_and_descriptors_travel_over_connections() {
        use std::os::fd::AsFd;
        let (sa, sb) = sys::socketpair().unwrap();
        let sock_pair = (
            Connection::from_handles(Some(sa.try_clone().unwrap()), Some(sa)),
            Connection::from_handles(Some(sb.try_clone().unwrap()), Some(sb)),
        );
        for (a, b) in [pipe(true).unwrap(), sock_pair] {
            assert!(a.can_carry_handles());
            for round in 0..3u8 {
                let (x, y) = pipe(true).unwrap();
                a.send(&round).unwrap();
                a.send(&(round, &x, "after")).unwrap();
                drop(x);
                a.send(&round).unwrap();
                assert_eq!(b.recv::<u8>().unwrap(), round);
                let (r, x2, tail): (u8, Connection, String) = b.recv().unwrap();
                assert_eq!((r, tail.as_str()), (round, "after"));
                assert_eq!(b.recv::<u8>().unwrap(), round);
                x2.send(&"through").unwrap();
                assert_eq!(y.recv::<String>().unwrap(), "through");
                // and the received connection carries handles in turn
                let (p, q) = pipe(true).unwrap();
                y.send(&p).unwrap();
                let p2: Connection = x2.recv().unwrap();
                p2.send(&9u8).unwrap();
                assert_eq!(q.recv::<u8>().unwrap(), 9);
            }
            let file = std::fs::File::open("/dev/null").unwrap();
            a.send_handle(file.as_fd()).unwrap();
            let fd = b.recv_handle().unwrap();
            assert_ne!(sys::raw(fd.as_fd()), sys::raw(file.as_fd()));
            // read as raw bytes, a handle message is a typed error and its handles close
            let before = open_fds();
            a.send_handle(file.as_fd()).unwrap();
            assert!(matches!(b.recv_bytes(), Err(Error::UnexpectedHandles(1))));
            assert_eq!(open_fds(), before);
            a.send_bytes(b"still in step").unwrap();
            assert_eq!(b.recv_bytes().unwrap(), b"still in step");
        }
    }

    /// A hostile peer on a Unix socket: more descriptors than announced, descriptors on a
    /// message that announced none, a frame with descriptors that fails to decode. Each is a
    /// typed error, every descriptor received is closed, and the connection stays in step.
    #[test]
    #[cfg(unix)]
    fn hostile_descriptors_are_refused_and_closed() {
        use std::os::fd::AsFd;
        let (sa, sb) = sys::socketpair().unwrap();
        let b = Connection::from_handles(Some(sb.try_clone().unwrap()), Some(sb));
        let files: Vec<std::fs::File> = (0..3)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let fds: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
        let before = open_fds();
        // announces one, sends three
        let h = frame::encode_handles_header(1, 1);
        sys::send_all_with_fds(sa.as_fd(), &[&h, &[0]], &fds).unwrap();
        let r = b.recv::<HandleOwned>();
        assert!(
            matches!(
                r,
                Err(Error::HandleCountMismatch {
                    announced: 1,
                    received: 3
                })
            ),
            "{:?}",
            r.err()
        );
        assert_eq!(open_fds(), before);
        // a plain frame with descriptors attached
        let (h, n) = frame::encode_header(1);
        sys::send_all_with_fds(sa.as_fd(), &[&h[..n], &[7]], &fds[..2]).unwrap();
        assert!(matches!(
            b.recv::<u8>(),
            Err(Error::HandleCountMismatch {
                announced: 0,
                received: 2
            })
        ));
        assert_eq!(open_fds(), before);
        // announced right, but the bytes do not decode (as a connection)
        let h = frame::encode_handles_header(2, 2);
        sys::send_all_with_fds(sa.as_fd(), &[&h, &[0xff, 0xff]], &fds[..2]).unwrap();
        assert!(matches!(b.recv::<Connection>(), Err(Error::Pickle(_))));
        assert_eq!(open_fds(), before);
        // the stream is still in step
        let (h, n) = frame::encode_header(1);
        sys::write_all_vectored(sa.as_fd(), &[&h[..n], &[42]]).unwrap();
        assert_eq!(b.recv::<u8>().unwrap(), 42);

        // the same on a pipe's side channel: a stray datagram, then a short one
        let (a, b) = pipe(true).unwrap();
        let before = open_fds();
        let side = a.side.as_ref().unwrap();
        multiproc_pickle::scm::send_with_fds(side.sock.as_fd(), &[b"junk"], &fds, false).unwrap();
        a.send_handle(fds[0]).unwrap();
        drop(b.recv_handle().unwrap());
        assert_eq!(open_fds(), before);
        let h = frame::encode_handles_header(1, 2);
        a.w.lock()
            .as_ref()
            .unwrap()
            .write_all_vectored(&[&h, &[0]])
            .unwrap();
        assert!(matches!(
            b.recv::<HandleOwned>(),
            Err(Error::HandleCountMismatch {
                announced: 2,
                received: 0
            })
        ));
        assert_eq!(open_fds(), before);
    }

    #[cfg(target_os = "linux")]
    const CTRUNC_CHILD: &str = "MULTIPROC_TEST_CTRUNC_CHILD";

    /// Out of descriptors, the kernel truncates what arrives (`MSG_CTRUNC`): a typed error.
    /// Run in a child of its own (the limit on open files is per process).
    #[test]
    #[cfg(target_os = "linux")]
    fn truncated_descriptors_are_a_typed_error() {
        use std::os::fd::AsFd;
        if std::env::var_os(CTRUNC_CHILD).is_some() {
            let (a, b) = pipe(true).unwrap();
            let files: Vec<std::fs::File> = (0..8)
                .map(|_| std::fs::File::open("/dev/null").unwrap())
                .collect();
            let fds: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
            a.send_bytes_with_handles(b"x", &fds).unwrap();
            // room for two more descriptors only
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit into a valid struct.
            assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
            // (descriptors are numbered from the lowest free one: room for two at most)
            let open: std::collections::HashSet<u64> = std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
                .collect();
            let lowest_free = (0..).find(|n| !open.contains(n)).unwrap();
            lim.rlim_cur = (lowest_free + 2) as libc::rlim_t;
            // SAFETY: setrlimit with a valid struct.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
            let r = b.recv_bytes_with_handles();
            assert!(matches!(r, Err(Error::HandlesTruncated)), "{r:?}");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--exact", "--test-threads", "1"])
            .arg("connection::tests::truncated_descriptors_are_a_typed_error")
            .env(CTRUNC_CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }

    /// This process's address-space size (`VmSize`), in bytes.
    #[cfg(target_os = "linux")]
    fn vm_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb << 10
    }

    /// Set in a child that runs one test alone (see [`run_alone`]).
    #[cfg(target_os = "linux")]
    const ALONE_CHILD: &str = "MULTIPROC_TEST_ALONE_CHILD";

    /// Run `test` of this test binary again, alone, in a child (after the shell command
    /// `setup`, such as a `ulimit`), with [`ALONE_CHILD`] set; fail unless it passed there.
    /// For tests that measure the whole process, which other tests' threads would disturb.
    #[cfg(target_os = "linux")]
    fn run_alone(test: &str, setup: &str) {
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                r#"{setup} && exec "$0" --exact --test-threads 1 "$1""#
            ))
            .arg(exe)
            .arg(test)
            .env(ALONE_CHILD, "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{test}: the child did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{:?}: {text}", out.status);
        assert!(text.contains("1 passed"), "{text}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn an_announced_size_reserves_nothing_until_bytes_arrive() {
        // (alone in a child: the address space of this process grows with other tests'
        // threads, 64 MiB for each malloc arena)
        if std::env::var_os(ALONE_CHILD).is_none() {
            run_alone(
                "connection::tests::an_announced_size_reserves_nothing_until_bytes_arrive",
                "true",
            );
            return;
        }
        // four peers announce 1 GiB each and send a few bytes, then stall
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut writers = Vec::new();
        for _ in 0..4 {
            let (r, w) = sys::pipe().unwrap();
            let c = Connection::from_handles(Some(r), None);
            writers.push(w);
            let done = done_tx.clone();
            std::thread::spawn(move || {
                let _ = done.send(c.recv_bytes());
            });
        }
        // the readers now block on empty pipes: their threads (stacks, malloc arenas) exist
        std::thread::sleep(Duration::from_millis(200));
        let before = vm_size();
        for w in &writers {
            sys::write_all_vectored(sys::borrow(w), &[&[0x40, 0, 0, 0], b"a few bytes"]).unwrap();
        }
        // let every reader take the header and block for the rest
        std::thread::sleep(Duration::from_millis(300));
        let grown = vm_size().saturating_sub(before);
        assert!(grown < 64 << 20, "address space grew by {grown} bytes");
        drop(writers);
        for _ in 0..4 {
            let r = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert!(matches!(r, Err(Error::Eof)), "{r:?}");
        }
    }

    /// Under a 1 GiB address-space limit, a peer streams a 4 GiB message: the receiver's buffer
    /// cannot grow that far, which must be a typed error on that connection while another
    /// connection keeps working.
    #[cfg(target_os = "linux")]
    fn receive_under_a_memory_limit() {
        let (r, w) = sys::pipe().unwrap();
        let big = Connection::from_handles(Some(r), None);
        big.set_max_message_size(8 << 30);
        let writer = std::thread::spawn(move || {
            let chunk = vec![7u8; 1 << 20];
            let mut bufs: Vec<&[u8]> = vec![&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0]];
            for _ in 0..4096 {
                bufs.push(&chunk);
                if sys::write_all_vectored(sys::borrow(&w), &bufs).is_err() {
                    return; // the reader gave up on this connection
                }
                bufs.clear();
            }
        });
        let r = big.recv_bytes();
        assert!(
            matches!(r, Err(Error::Pickle(PickleError::OutOfMemory { .. }))),
            "{r:?}"
        );
        assert!(matches!(
            big.recv_bytes(),
            Err(Error::Pickle(PickleError::BadFrame(_)))
        ));
        drop(big);
        writer.join().unwrap();
        let (a, b) = pipe(true).unwrap();
        a.send_bytes(b"still serving").unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"still serving");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn allocation_failure_is_a_typed_error_not_an_abort() {
        if std::env::var_os(ALONE_CHILD).is_some() {
            receive_under_a_memory_limit();
            return;
        }
        // run this same test again in a child whose address space is limited to 1 GiB
        run_alone(
            "connection::tests::allocation_failure_is_a_typed_error_not_an_abort",
            "ulimit -v 1048576",
        );
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Tree {
        Leaf,
        Node(Box<Tree>),
    }

    #[test]
    fn deep_values_are_refused_and_the_connection_stays_usable() {
        let (a, b) = pipe(true).unwrap();
        let mut deep = vec![1u8; 100_000];
        deep.push(0);
        a.send_bytes(&deep).unwrap();
        let r = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let r = b.recv::<Tree>();
                (r, b)
            })
            .unwrap()
            .join()
            .unwrap();
        let (r, b) = r;
        assert!(
            matches!(
                r,
                Err(Error::Pickle(PickleError::TooDeep {
                    max: multiproc_pickle::DEFAULT_MAX_DEPTH
                }))
            ),
            "{r:?}"
        );
        a.send(&Tree::Node(Box::new(Tree::Leaf))).unwrap();
        assert_eq!(b.recv::<Tree>().unwrap(), Tree::Node(Box::new(Tree::Leaf)));
        b.set_max_depth(1);
        a.send(&Tree::Node(Box::new(Tree::Leaf))).unwrap();
        assert!(matches!(
            b.recv::<Tree>(),
            Err(Error::Pickle(PickleError::TooDeep { max: 1 }))
        ));
        assert_eq!(b.max_depth(), 1);
    }

    /// Both ends of a pipe in non-blocking mode (as another process sharing their files may set
    /// them): the reader meets an empty pipe inside a frame and the writer a full one, and every
    /// message still arrives whole and in order.
    #[test]
    #[cfg(unix)]
    fn non_blocking_descriptors_keep_whole_messages() {
        let (r, w) = sys::pipe().unwrap();
        sys::set_nonblocking(sys::borrow(&r)).unwrap();
        sys::set_nonblocking(sys::borrow(&w)).unwrap();
        let rx = Connection::from_handles(Some(r), None);
        let tx = Connection::from_handles(None, Some(w));
        // larger than the pipe's buffer (1 MiB at most): the writer fills it and must wait
        let big: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 251) as u8).collect();
        let expect = big.clone();
        let writer = std::thread::spawn(move || {
            // a header and part of its message first: the reader then finds the pipe empty
            // inside a frame
            let raw = |bytes: &[u8]| {
                let fd = tx.w.lock();
                fd.as_ref().unwrap().write_all_vectored(&[bytes])
            };
            let (h, n) = frame::encode_header(5);
            raw(&h[..n])?;
            raw(b"fi")?;
            std::thread::sleep(Duration::from_millis(50));
            raw(b"rst")?;
            tx.send_bytes(&big)?;
            tx.send_bytes(b"next")
        });
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(rx.recv_bytes());
            }
            got
        });
        let t = std::time::Instant::now();
        while !(reader.is_finished() && writer.is_finished()) {
            assert!(t.elapsed() < Duration::from_secs(30), "a side hangs");
            std::thread::sleep(Duration::from_millis(5));
        }
        let got = reader.join().unwrap();
        assert_eq!(got[0].as_deref().ok(), Some(&b"first"[..]), "{:?}", got[0]);
        assert!(
            got[1].as_ref().is_ok_and(|m| *m == expect),
            "{:?}",
            got[1].as_ref().err()
        );
        assert_eq!(got[2].as_deref().ok(), Some(&b"next"[..]), "{:?}", got[2]);
        let sent = writer.join().unwrap();
        assert!(sent.is_ok(), "send: {sent:?}");
    }

    /// A writer that dies inside a frame: the reader gets end of file (typed), and says so on
    /// every later read.
    #[test]
    fn a_writer_closing_mid_frame_is_end_of_file() {
        let (r, w) = sys::pipe().unwrap();
        let c = Connection::from_handles(Some(r), None);
        sys::write_all_vectored(sys::borrow(&w), &[&[0, 0, 0, 100], b"ten bytes!"]).unwrap();
        drop(w);
        assert!(matches!(c.recv_bytes(), Err(Error::Eof)));
        assert!(c.recv_bytes().is_err());
    }

    /// `poll` waits for data written later by another thread, and for end of file.
    #[test]
    fn poll_wakes_for_data_and_for_end_of_file() {
        let (a, b) = pipe(true).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            a.send(&7u8).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            drop(a);
        });
        assert!(b.poll(Some(Duration::from_secs(20))).unwrap());
        assert_eq!(b.recv::<u8>().unwrap(), 7);
        assert!(b.poll(Some(Duration::from_secs(20))).unwrap());
        assert!(matches!(b.recv_bytes(), Err(Error::Eof)));
        t.join().unwrap();
    }

    /// Windows: a TCP connection is a Winsock socket; it works both ways, knows its buffer, and
    /// refuses to travel to another process (a socket is no handle `DuplicateHandle` copies).
    #[test]
    #[cfg(windows)]
    fn tcp_connections_on_windows() {
        let l = crate::Listener::bind("127.0.0.1:0", None).unwrap();
        let addr = l.address();
        let t = std::thread::spawn(move || crate::Client::connect(&addr, None).unwrap());
        let s = l.accept().unwrap();
        let c = t.join().unwrap();
        assert!(s.send_buffer_size().is_some_and(|n| n > 0));
        let big: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 253) as u8).collect();
        let expect = big.clone();
        let t = std::thread::spawn(move || {
            c.send_bytes(&big).unwrap();
            c.recv::<String>().unwrap()
        });
        assert_eq!(s.recv_bytes().unwrap(), expect);
        s.send(&"back").unwrap();
        assert_eq!(t.join().unwrap(), "back");
        let r = multiproc_pickle::encode_with_handles(&s);
        assert!(matches!(r, Err(PickleError::Encode(_))), "{:?}", r.err());
        // the peer is gone (it closed with nothing unread: a graceful close)
        assert!(matches!(s.recv_bytes(), Err(Error::Eof)));
    }

    #[test]
    fn dripped_bytes_make_whole_messages() {
        let (r, w) = sys::pipe().unwrap();
        let c = Connection::from_handles(Some(r), None);
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut wire = Vec::new();
        for m in [&b"first"[..], &big, b""] {
            let (h, n) = frame::encode_header(m.len());
            wire.extend_from_slice(&h[..n]);
            wire.extend_from_slice(m);
        }
        let writer = std::thread::spawn(move || {
            // one byte at a time through the headers and the small message, then odd-sized
            // pieces through the big one
            let mut at = 0;
            let mut piece = 1;
            while at < wire.len() {
                let end = (at + piece).min(wire.len());
                sys::write_all_vectored(sys::borrow(&w), &[&wire[at..end]]).unwrap();
                at = end;
                if at > 20 {
                    piece = piece * 3 % 40_009 + 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        assert!(c.poll(Some(Duration::from_secs(10))).unwrap());
        assert_eq!(c.recv_bytes().unwrap(), b"first");
        assert_eq!(c.recv_bytes().unwrap(), big);
        assert_eq!(c.recv_bytes().unwrap(), b"");
        writer.join().unwrap();
    }
}
