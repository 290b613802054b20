//! `Connection`: framed messages over a pipe or socket, as in `multiprocessing.connection`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use multiproc_pickle::frame::{self, Prefix};
use multiproc_pickle::handles::{deserialize_handle, serialize_handle};
use multiproc_pickle::{Bytes, OsHandle, PickleError};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::sys;
use crate::wait::Waitable;
use crate::Error;

const READ_BUF: usize = 64 * 1024;
/// How long a reader polls for data before it blocks.
const READ_SPIN: std::time::Duration = std::time::Duration::from_micros(20);

struct ReadSide {
    fd: Option<OsHandle>,
    buf: Vec<u8>,
    start: usize,
    /// Set when a frame could not be read whole (too large, malformed): the stream has lost
    /// its framing, so later reads must not misinterpret the rest of that message.
    broken: Option<String>,
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
            let raw = sys::raw(sys::borrow(fd));
            let start = std::time::Instant::now();
            while start.elapsed() < READ_SPIN {
                if sys::poll_readable(&[raw], Some(std::time::Duration::ZERO))
                    .map_or(true, |r| r[0])
                {
                    break;
                }
                std::hint::spin_loop();
            }
            let got = sys::read_into_spare(sys::borrow(fd), &mut self.buf, READ_BUF)?;
            if got == 0 {
                return Err(Error::Eof);
            }
        }
        Ok(())
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

    fn recv_frame(&mut self, max: u64) -> Result<Vec<u8>, Error> {
        if let Some(why) = &self.broken {
            return Err(PickleError::BadFrame(format!(
                "connection unusable after an earlier error: {why}"
            ))
            .into());
        }
        self.fill(4)?;
        let p: [u8; 4] = self.buffered()[..4].try_into().expect("4 bytes buffered");
        let prefix = frame::parse_prefix(p).inspect_err(|e| self.broken = Some(e.to_string()))?;
        let size = match prefix {
            Prefix::Len(n) => {
                self.start += 4;
                n
            }
            Prefix::Long => {
                self.fill(12)?;
                let n = u64::from_be_bytes(self.buffered()[4..12].try_into().expect("12 bytes"));
                self.start += 12;
                n
            }
        };
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
                if sys::read_into_spare(sys::borrow(fd), &mut out, room)? == 0 {
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
/// let (a, b) = multiproc_process::pipe(true).unwrap();
/// a.send(&("hello", 42u32)).unwrap();
/// let (s, n): (String, u32) = b.recv().unwrap();
/// assert_eq!((s.as_str(), n), ("hello", 42));
/// b.send_bytes(b"raw").unwrap();
/// assert_eq!(a.recv_bytes().unwrap(), b"raw");
/// ```
pub struct Connection {
    r: Mutex<ReadSide>,
    w: Mutex<Option<OsHandle>>,
    readable: bool,
    writable: bool,
    max: AtomicU64,
    max_depth: AtomicUsize,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .field("closed", &self.closed())
            .finish()
    }
}

/// Create a pair of connected [`Connection`]s, like Python's `multiprocessing.Pipe(duplex)`.
///
/// With `duplex == true` both ends can send and receive; otherwise the first end only receives
/// and the second only sends.
///
/// ```
/// let (rx, tx) = multiproc_process::pipe(false).unwrap();
/// tx.send(&vec![1u8, 2, 3]).unwrap();
/// assert_eq!(rx.recv::<Vec<u8>>().unwrap(), [1, 2, 3]);
/// assert!(rx.send(&1u8).is_err()); // read-only end
/// ```
#[doc(alias = "Pipe")]
pub fn pipe(duplex: bool) -> Result<(Connection, Connection), Error> {
    if duplex {
        let (r1, w1) = sys::pipe()?;
        let (r2, w2) = sys::pipe()?;
        Ok((
            Connection::from_handles(Some(r1), Some(w2)),
            Connection::from_handles(Some(r2), Some(w1)),
        ))
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
        for h in read.iter().chain(write.iter()) {
            sys::track_inheritable(sys::borrow(h));
        }
        Connection {
            readable: read.is_some(),
            writable: write.is_some(),
            r: Mutex::new(ReadSide {
                fd: read,
                buf: Vec::new(),
                start: 0,
                broken: None,
            }),
            w: Mutex::new(write),
            max: AtomicU64::new(frame::DEFAULT_MAX_MESSAGE),
            max_depth: AtomicUsize::new(multiproc_pickle::DEFAULT_MAX_DEPTH),
        }
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
    pub fn closed(&self) -> bool {
        self.r.lock().fd.is_none() && self.w.lock().is_none()
    }

    /// The kernel's buffer for what this end sends, in bytes (a pipe's capacity, or a socket's
    /// send buffer as the kernel reports it); `None` for a receive-only end, a closed one, or
    /// where it cannot be known. While the peer reads nothing, sends totalling well under this
    /// do not block (a socket's usable share is smaller than its reported size).
    ///
    /// ```
    /// let (rx, tx) = multiproc_process::pipe(false).unwrap();
    /// assert!(tx.send_buffer_size().unwrap() >= 4096);
    /// assert_eq!(rx.send_buffer_size(), None);
    /// ```
    pub fn send_buffer_size(&self) -> Option<usize> {
        let w = self.w.lock();
        sys::send_buffer_size(sys::borrow(w.as_ref()?))
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
    /// let (a, b) = multiproc_process::pipe(true).unwrap();
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
    /// use multiproc_process::Error;
    /// use multiproc_pickle::PickleError;
    /// let (a, b) = multiproc_process::pipe(true).unwrap();
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
        sys::write_all_vectored(sys::borrow(fd), &[&h[..hn], data])?;
        Ok(())
    }

    /// Send several messages with one system call (where the OS allows): the peer receives them
    /// as separate messages, in order, exactly as from as many [`send_bytes`](Self::send_bytes).
    /// All sizes are checked before anything is sent.
    ///
    /// ```
    /// let (a, b) = multiproc_process::pipe(true).unwrap();
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
        sys::write_all_vectored(sys::borrow(fd), &bufs)?;
        Ok(())
    }

    /// Receive one message of raw bytes. [`Error::Eof`] when the peer has closed.
    pub fn recv_bytes(&self) -> Result<Vec<u8>, Error> {
        self.recv_bytes_max(self.max_message_size())
    }

    /// Receive one message, refusing (with [`PickleError::TooLarge`]) one longer than
    /// `maxlength`, like Python's `recv_bytes(maxlength)`.
    pub fn recv_bytes_max(&self, maxlength: u64) -> Result<Vec<u8>, Error> {
        if !self.readable {
            return Err(Error::WrongDirection("write-only"));
        }
        self.r
            .lock()
            .recv_frame(maxlength.min(self.max_message_size()))
    }

    /// Receive one message into `buf`, returning its length. A message longer than `buf` is an
    /// [`Error::BufferTooShort`] that carries the whole message, so nothing is lost.
    ///
    /// ```
    /// use multiproc_process::Error;
    /// let (a, b) = multiproc_process::pipe(true).unwrap();
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

    /// Send a serde value.
    ///
    /// The value's type must keep to the serde features postcard can decode (no
    /// `#[serde(untagged)]`, `tag`, `flatten` or `skip_serializing_if`; see
    /// [`multiproc::pickle`'s "What a message type may use"](multiproc_pickle#what-a-message-type-may-use)).
    /// Debug builds check what they can here ([`check_shape`](multiproc_pickle::check_shape):
    /// a skipped field is an error at the sender). Byte payloads: send
    /// [`Bytes`](multiproc_pickle::Bytes), not `Vec<u8>`, 40× to 100× slower.
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        multiproc_pickle::check_shape(value)?;
        self.send_bytes(&multiproc_pickle::encode(value)?)
    }

    /// Receive a serde value sent with [`send`](Self::send). A message that does not decode as a
    /// `T`, or nests deeper than [`max_depth`](Self::max_depth), is an error for that message.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(multiproc_pickle::decode_with_max_depth(
            &self.recv_bytes()?,
            self.max_depth(),
        )?)
    }

    /// Whether a message (or end of file) is ready to be received, waiting up to `timeout`
    /// (`None` waits forever, `Some(ZERO)` only checks).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = multiproc_process::pipe(true).unwrap();
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
            sys::raw(sys::borrow(r.fd.as_ref().ok_or(Error::Closed)?))
        };
        Ok(sys::poll_readable(&[raw], timeout)?[0])
    }

    /// Close both directions now (dropping the connection does the same). Later calls fail
    /// with [`Error::Closed`]; the peer sees end of file.
    pub fn close(&self) {
        let mut r = self.r.lock();
        let mut w = self.w.lock();
        for h in r.fd.iter().chain(w.iter()) {
            sys::untrack_inheritable(sys::borrow(h));
        }
        r.fd = None;
        r.buf = Vec::new();
        r.start = 0;
        *w = None;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

impl Waitable for Connection {
    fn ready_now(&self) -> bool {
        !self.r.lock().buffered().is_empty()
    }

    fn wait_handle(&self) -> Option<sys::RawWait> {
        self.r
            .lock()
            .fd
            .as_ref()
            .map(|fd| sys::raw(sys::borrow(fd)))
    }
}

struct HandleRef<'a>(&'a OsHandle);

impl Serialize for HandleRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_handle(self.0, s)
    }
}

struct HandleOwned(OsHandle);

impl<'de> Deserialize<'de> for HandleOwned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_handle(d).map(HandleOwned)
    }
}

/// A connection serializes as its handles (moved through the process-start transfer) and any
/// bytes already read ahead and its limits, so a receiver continues exactly where this end stopped. Outside a
/// transfer it refuses ([`PickleError::HandleOutsideTransfer`]).
impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.r.lock();
        let w = self.w.lock();
        let wire = (
            r.fd.as_ref().map(HandleRef),
            w.as_ref().map(HandleRef),
            Bytes(r.buffered().to_vec()),
            self.max_message_size(),
            self.max_depth(),
        );
        wire.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (r, w, buffered, max, max_depth) =
            <(Option<HandleOwned>, Option<HandleOwned>, Bytes, u64, usize)>::deserialize(d)?;
        let c = Connection::from_handles(r.map(|h| h.0), w.map(|h| h.0));
        c.r.lock().buf = buffered.0;
        c.set_max_message_size(max);
        c.set_max_depth(max_depth);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(b.closed());
    }

    #[test]
    fn connection_refuses_plain_encode() {
        let (a, _b) = pipe(true).unwrap();
        assert!(matches!(
            multiproc_pickle::encode(&a),
            Err(PickleError::HandleOutsideTransfer)
        ));
        let (x, _y) = pipe(true).unwrap();
        assert!(matches!(
            x.send(&a),
            Err(Error::Pickle(PickleError::HandleOutsideTransfer))
        ));
    }

    /// This process's address-space size (`VmSize`), in bytes.
    #[cfg(target_os = "linux")]
    fn vm_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb << 10
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn an_announced_size_reserves_nothing_until_bytes_arrive() {
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

    #[cfg(target_os = "linux")]
    const OOM_CHILD: &str = "MULTIPROC_TEST_OOM_CHILD";

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
        if std::env::var_os(OOM_CHILD).is_some() {
            receive_under_a_memory_limit();
            return;
        }
        // run this same test again in a child whose address space is limited to 1 GiB
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"ulimit -v 1048576 && exec "$0" --exact --test-threads 1 "$1""#)
            .arg(exe)
            .arg("connection::tests::allocation_failure_is_a_typed_error_not_an_abort")
            .env(OOM_CHILD, "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("the memory-limited child did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{:?}: {text}", out.status);
        assert!(text.contains("1 passed"), "{text}");
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
