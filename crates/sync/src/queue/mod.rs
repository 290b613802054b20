//! Queues between processes: a byte ring in shared memory, one lock for producers and one for
//! consumers, spin-then-futex waiting. A busy queue makes no system call per message. An item
//! too big for the ring goes in its own memory, handed over beside it (`side`).

mod ring;
mod side;

use std::marker::PhantomData;
use std::time::Duration;

use multiproc_pickle::{decode, encode_checked, PickleError, SharedError};
use multiproc_shm::ShmError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use ring::Ring;

/// Bytes of ring a queue gets unless told otherwise: 8 MiB of shared memory, touched only as
/// it is used. A message larger than the ring (or of 64 KiB or more when the ring has no room
/// for it) goes in its own shared memory, handed to the consumer beside the ring.
pub const DEFAULT_CAPACITY: usize = 8 << 20;

/// Why a queue operation failed.
///
/// ```
/// use multiproc::{Queue, QueueError};
/// let q: Queue<u32> = Queue::new().unwrap();
/// assert_eq!(q.try_get(), Err(QueueError::Empty));
/// ```
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueError {
    /// Nothing to get (now, or within the timeout): Python's `queue.Empty`.
    #[error("the queue is empty")]
    Empty,
    /// No room (now, or within the timeout): Python's `queue.Full`.
    #[error("the queue is full")]
    Full,
    /// The queue was closed (and, for `get`, nothing is left in it).
    #[error("the queue is closed")]
    Closed,
    /// The value could not be serialized (nothing was put); the [`PickleError`] is the
    /// [`source`](std::error::Error::source).
    #[error("cannot serialize the value")]
    Encode(#[source] SharedError<PickleError>),
    /// A message could not be decoded as the queue's type (it was taken off the queue); the
    /// [`PickleError`] is the [`source`](std::error::Error::source).
    #[error("cannot decode a message")]
    Decode(#[source] SharedError<PickleError>),
    /// A message larger than a queue can carry (nothing was put).
    #[error("a message of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// The message's length.
        len: u64,
        /// The largest message a queue carries.
        max: u64,
    },
    /// The value owns OS handles (a connection, a lock, a queue, shared memory): a queue carries
    /// bytes through shared memory, not handles (nothing was put). Send such a value over a
    /// `Connection` from `pipe(true)`, or pass it as a process or pool-task argument.
    #[error(
        "a queue cannot carry OS handles (a connection, lock, queue or shared memory inside the \
         value): send it over a duplex pipe's Connection or as a process or pool-task argument"
    )]
    CarriesHandles,
    /// The ring holds what no producer wrote (a process scribbled over its shared memory):
    /// the queue's contents cannot be trusted any more.
    #[error("the queue is broken: {0}")]
    Broken(String),
    /// A system call failed while moving an item that goes beside the ring (creating its
    /// memory, sending or receiving its descriptor, mapping it) or while creating the queue:
    /// nothing was put or taken. The operating system's error is the
    /// [`source`](std::error::Error::source).
    #[error("cannot {op}")]
    System {
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: SharedError<std::io::Error>,
    },
    /// `task_done` called more times than items were put.
    #[error("task_done() called too many times")]
    TooManyTaskDone,
    /// Creating the queue's shared memory failed; the [`ShmError`] is the
    /// [`source`](std::error::Error::source).
    #[error("cannot create the queue's shared memory")]
    Shm(#[source] SharedError<ShmError>),
    /// An argument out of range (a ring under 4 KiB, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

impl QueueError {
    /// The operating system's error behind this one, if there is one (`EMFILE` when a big
    /// item's memory cannot be created for want of descriptors, ...).
    ///
    /// ```
    /// use multiproc::QueueError;
    /// let e = QueueError::system("create a queue item", std::io::Error::from_raw_os_error(24));
    /// assert_eq!(e.io_error().and_then(|io| io.raw_os_error()), Some(24));
    /// assert!(QueueError::Empty.io_error().is_none());
    /// ```
    pub fn io_error(&self) -> Option<&std::io::Error> {
        multiproc_pickle::find_source(self)
    }

    /// [`QueueError::System`] for `op` that failed with `source`.
    pub fn system(op: &'static str, source: std::io::Error) -> Self {
        QueueError::System {
            op,
            source: SharedError::new(source),
        }
    }
}

impl From<ShmError> for QueueError {
    fn from(e: ShmError) -> Self {
        QueueError::Shm(SharedError::new(e))
    }
}

/// A failed `put`: the error, and the value given back.
///
/// It displays as its [`QueueError`] and its [`source`](std::error::Error::source) is that
/// error's source (the error is transparent, the value is extra), so a chain never says the
/// same thing twice; `?` turns it into a `QueueError` (or `multiproc::Error`), dropping the
/// value.
#[derive(Debug)]
pub struct PutError<T> {
    /// Why it failed.
    pub error: QueueError,
    /// The value that was not put.
    pub value: T,
}

impl<T> std::fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl<T: std::fmt::Debug> std::error::Error for PutError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl<T> From<PutError<T>> for QueueError {
    fn from(e: PutError<T>) -> Self {
        e.error
    }
}

/// Python's `multiprocessing.Queue`: many producers and many consumers in any processes, FIFO
/// per producer, with an optional `maxsize` in items.
///
/// Values are serde types, serialized in the caller of `put` (a value that cannot be serialized
/// fails there, not in a background thread) straight into shared memory: a producer may exit as
/// soon as `put` returns, and nothing is lost (no "joining processes that use queues" deadlock),
/// whatever the size of the item: one larger than the ring goes in its own shared memory, whose
/// descriptor waits in a socket the queue owns until a consumer takes it. `qsize`, `empty` and
/// `full` are exact, and stay exact when processes are killed in the middle of `put` or `get`.
/// `put` waits only for `maxsize`, or when the ring (8 MiB by default) is full of items under
/// The error for a value that cannot be put.
fn encode_error(e: multiproc_pickle::PickleError) -> QueueError {
    match e {
        multiproc_pickle::PickleError::HandleOutsideTransfer => QueueError::CarriesHandles,
        e => QueueError::Encode(SharedError::new(e)),
    }
}

/// 64 KiB: an item of 64 KiB or more goes beside the ring rather than wait for room (it waits
/// at most 10 ms, and only while a consumer is inside `get`, freeing room). 256 items can be
/// beside the ring at once with Linux's default socket buffer (on Windows, 1024 per producing
/// process); past that, `put` waits for consumers as for a full ring. `get` waits for an item. [`close`](Self::close) closes the queue for every
/// process: later `put`s fail, `get`s drain what is left and then fail.
///
/// A consumer killed inside `get` leaves the item for the next one, except in the last
/// instants of taking an item that went beside the ring: then the item is gone with it, as if
/// it had been killed just after `get` returned. An item beside the ring outlives its
/// producer's exit; on Windows it is lost if the producer is *killed* before a consumer
/// reached it (Windows has no way to leave a handle in flight, as a Unix socket does).
///
/// Clones share the queue; pass it to a child process as (part of) its arguments.
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Queue, QueueError};
/// let q = Queue::with_maxsize(2).unwrap();
/// q.put("a".to_string()).unwrap();
/// q.put("b".to_string()).unwrap();
/// let full = q.try_put("c".to_string()).unwrap_err();
/// assert_eq!((full.error, full.value.as_str()), (QueueError::Full, "c"));
/// assert_eq!(q.len(), 2);
/// assert_eq!(q.get().unwrap(), "a");
/// assert_eq!(q.get_timeout(Duration::from_millis(5)).unwrap(), "b");
/// assert!(q.is_empty());
/// ```
pub struct Queue<T> {
    ring: Ring,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            ring: self.ring.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.ring.items())
            .field("maxsize", &self.ring.maxsize())
            .finish()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.ring.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Queue {
            ring: Ring::deserialize(d)?,
            _t: PhantomData,
        })
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue.
    pub fn new() -> Result<Queue<T>, QueueError> {
        Queue::with_capacity(0, DEFAULT_CAPACITY)
    }

    /// A queue of at most `maxsize` items (0: unbounded, as in Python).
    pub fn with_maxsize(maxsize: u32) -> Result<Queue<T>, QueueError> {
        Queue::with_capacity(maxsize, DEFAULT_CAPACITY)
    }

    /// A queue of at most `maxsize` items (0: unbounded) over a ring of `ring_bytes` bytes of
    /// shared memory (at least 4 KiB; rounded down to a power of two, at most 1 GiB).
    pub fn with_capacity(maxsize: u32, ring_bytes: usize) -> Result<Queue<T>, QueueError> {
        Ok(Queue {
            ring: Ring::new(maxsize, ring_bytes)?,
            _t: PhantomData,
        })
    }

    fn put_inner(
        &self,
        value: T,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<(), PutError<T>> {
        let bytes = match encode_checked(&value) {
            Ok(b) => b,
            Err(e) => {
                return Err(PutError {
                    error: encode_error(e),
                    value,
                })
            }
        };
        match self.ring.push(&[&bytes], block, timeout) {
            Ok(()) => Ok(()),
            Err(error) => Err(PutError { error, value }),
        }
    }

    /// Put a copy of `*value` (it is serialized; the caller keeps the original), waiting as
    /// long as it takes for room.
    ///
    /// ```
    /// let q = multiproc::Queue::new().unwrap();
    /// let big = vec![7u8; 1000];
    /// q.put_ref(&big).unwrap();
    /// assert_eq!(q.get().unwrap(), big);
    /// ```
    pub fn put_ref(&self, value: &T) -> Result<(), QueueError> {
        let bytes = encode_checked(value).map_err(encode_error)?;
        self.ring.push(&[&bytes], true, None)
    }

    /// Put `value`, waiting as long as it takes for room.
    ///
    /// `T` must keep to the serde features postcard can decode (no `#[serde(untagged)]`,
    /// `tag`, `flatten` or `skip_serializing_if`; see [`multiproc::pickle`'s "What a message
    /// type may use"](multiproc_pickle#what-a-message-type-may-use)): debug builds decode what
    /// they encoded and refuse such a value here ([`QueueError::Encode`] naming the attribute)
    /// instead of letting `get` fail in another process. Byte payloads: use
    /// [`Bytes`](multiproc_pickle::Bytes), not `Vec<u8>` (40× to 100× slower).
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_inner(value, true, None)
    }

    /// Put `value`, waiting at most `timeout` for room ([`QueueError::Full`] after that).
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_inner(value, true, Some(timeout))
    }

    /// Put `value` only if there is room now: Python's `put_nowait`.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_inner(value, false, None)
    }

    fn get_inner(&self, block: bool, timeout: Option<Duration>) -> Result<T, QueueError> {
        self.ring
            .pop_with(block, true, timeout, |bytes| decode(bytes))?
            .map_err(|e| QueueError::Decode(SharedError::new(e)))
    }

    /// Take the oldest item, waiting as long as it takes.
    pub fn get(&self) -> Result<T, QueueError> {
        self.get_inner(true, None)
    }

    /// Take the oldest item, waiting at most `timeout` ([`QueueError::Empty`] after that).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        self.get_inner(true, Some(timeout))
    }

    /// Take the oldest item only if there is one now: Python's `get_nowait`.
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, QueueError> {
        self.get_inner(false, None)
    }

    /// The number of items in the queue (exact: put and not yet taken).
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.ring.items() as usize
    }

    /// Whether the queue holds no item.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.ring.items() == 0
    }

    /// Whether the queue holds `maxsize` items.
    #[doc(alias = "full")]
    pub fn is_full(&self) -> bool {
        let max = self.ring.maxsize();
        max > 0 && self.ring.items() >= max
    }

    /// Close the queue, for every process: later `put`s fail with [`QueueError::Closed`];
    /// `get`s return what is left, then fail with it. Waiting callers wake up.
    pub fn close(&self) {
        self.ring.close();
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.ring.is_closed()
    }
}

/// Python's `multiprocessing.SimpleQueue`: an unbounded [`Queue`] with only `put`, `get`,
/// `empty` and `close`.
///
/// ```
/// let q = multiproc::SimpleQueue::new().unwrap();
/// q.put(7u8).unwrap();
/// assert_eq!(q.get().unwrap(), 7);
/// assert!(q.is_empty());
/// ```
pub struct SimpleQueue<T>(Queue<T>);

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue(self.0.clone())
    }
}

impl<T> std::fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.0).finish()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Queue::deserialize(d).map(SimpleQueue)
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new queue.
    pub fn new() -> Result<SimpleQueue<T>, QueueError> {
        Queue::new().map(SimpleQueue)
    }

    /// See [`Queue::put`].
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.0.put(value)
    }

    /// See [`Queue::get`].
    pub fn get(&self) -> Result<T, QueueError> {
        self.0.get()
    }

    /// See [`Queue::is_empty`].
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// See [`Queue::close`].
    pub fn close(&self) {
        self.0.close()
    }
}

/// Python's `multiprocessing.JoinableQueue`: a [`Queue`]'s methods, plus a count of
/// unfinished tasks. Every `put` adds one; consumers call [`task_done`](Self::task_done) for each item they finished;
/// [`join`](Self::join) waits until none is left.
///
/// The count is derived from what was published (items put, minus `task_done` calls), so a
/// producer or consumer killed in the middle of a call never adds or removes a task. An item
/// whose consumer was killed after taking it and before its `task_done` stays unfinished, as
/// in CPython: nobody finished it, and `join` says so (give `join` a timeout, or have whoever
/// redoes the work call `task_done`).
///
/// ```
/// use std::time::Duration;
/// use multiproc::{JoinableQueue, QueueError};
/// let q = JoinableQueue::new().unwrap();
/// q.put(1u32).unwrap();
/// assert!(!q.join_timeout(Duration::from_millis(5))); // one unfinished
/// assert_eq!(q.get().unwrap(), 1);
/// q.task_done().unwrap();
/// assert!(q.join());
/// assert_eq!(q.task_done(), Err(QueueError::TooManyTaskDone));
/// ```
pub struct JoinableQueue<T>(Queue<T>);

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue(self.0.clone())
    }
}

impl<T> std::fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("JoinableQueue").field(&self.0).finish()
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Queue::deserialize(d).map(JoinableQueue)
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// An unbounded joinable queue.
    pub fn new() -> Result<JoinableQueue<T>, QueueError> {
        Queue::new().map(JoinableQueue)
    }

    /// A joinable queue of at most `maxsize` items.
    pub fn with_maxsize(maxsize: u32) -> Result<JoinableQueue<T>, QueueError> {
        Queue::with_maxsize(maxsize).map(JoinableQueue)
    }

    /// [`Queue::put_ref`].
    pub fn put_ref(&self, value: &T) -> Result<(), QueueError> {
        self.0.put_ref(value)
    }

    /// [`Queue::put`]: one more unfinished task.
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.0.put(value)
    }

    /// [`Queue::put_timeout`].
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.0.put_timeout(value, timeout)
    }

    /// [`Queue::try_put`].
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, value: T) -> Result<(), PutError<T>> {
        self.0.try_put(value)
    }

    /// [`Queue::get`]; call [`task_done`](Self::task_done) when the item is finished.
    pub fn get(&self) -> Result<T, QueueError> {
        self.0.get()
    }

    /// [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        self.0.get_timeout(timeout)
    }

    /// [`Queue::try_get`].
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, QueueError> {
        self.0.try_get()
    }

    /// [`Queue::len`]: items put and not yet taken (not the unfinished count).
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// [`Queue::is_empty`].
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// [`Queue::is_full`].
    #[doc(alias = "full")]
    pub fn is_full(&self) -> bool {
        self.0.is_full()
    }

    /// [`Queue::close`].
    pub fn close(&self) {
        self.0.close()
    }

    /// [`Queue::is_closed`].
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Mark one item taken with `get` as finished.
    pub fn task_done(&self) -> Result<(), QueueError> {
        self.0.ring.task_done()
    }

    /// [`join_timeout`](Self::join_timeout) with no bound: waits as long as it takes.
    pub fn join(&self) -> bool {
        self.join_within(None)
    }

    /// Wait until every item put has been marked done, at most `timeout`; whether it happened.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_within(Some(timeout))
    }

    /// `join` (`None`) or `join_timeout` (`Some`).
    pub(crate) fn join_within(&self, timeout: Option<Duration>) -> bool {
        self.0.ring.join(timeout)
    }
}

/// The ring under [`Queue`], carrying byte messages as they are: for callers that frame their
/// own messages (the pool's result channel is one) and want to read them in place.
///
/// Same guarantees as [`Queue`] (many producers and consumers in any processes, FIFO per
/// producer, a process killed mid-message tears nothing and miscounts nothing), with no
/// `maxsize`. A message may be given in parts, written as one.
///
/// ```
/// use std::time::Duration;
/// let q = multiproc::ByteQueue::with_capacity(64 << 10).unwrap();
/// q.put_parts(&[b"head:", b"body"]).unwrap();
/// let len = q.get_with(Some(Duration::from_secs(1)), |bytes| {
///     assert_eq!(bytes, b"head:body");
///     bytes.len()
/// });
/// assert_eq!(len, Ok(9));
/// assert_eq!(q.try_get_with(|b| b.len()), Err(multiproc::QueueError::Empty));
/// ```
#[derive(Clone)]
pub struct ByteQueue {
    ring: Ring,
}

impl std::fmt::Debug for ByteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteQueue")
            .field("qsize", &self.ring.items())
            .finish()
    }
}

impl Serialize for ByteQueue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.ring.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ByteQueue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ByteQueue {
            ring: Ring::deserialize(d)?,
        })
    }
}

impl ByteQueue {
    /// A queue over a ring of `ring_bytes` bytes of shared memory (at least 4 KiB; rounded down
    /// to a power of two, at most 1 GiB); larger messages still pass, beside the ring.
    pub fn with_capacity(ring_bytes: usize) -> Result<ByteQueue, QueueError> {
        Ok(ByteQueue {
            ring: Ring::new(0, ring_bytes)?,
        })
    }

    /// Put one message made of `parts`, waiting as long as it takes for room.
    pub fn put_parts(&self, parts: &[&[u8]]) -> Result<(), QueueError> {
        self.ring.push(parts, true, None)
    }

    /// Take the oldest message, waiting at most `timeout` (`None`: as long as it takes), and
    /// hand its bytes to `f` (in place in shared memory when they lie there in one piece).
    /// A wait spins a moment before it sleeps: a busy queue makes no system call.
    pub fn get_with<R>(
        &self,
        timeout: Option<Duration>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, QueueError> {
        self.ring.pop_with(true, true, timeout, f)
    }

    /// [`get_with`](Self::get_with) that sleeps at once when there is nothing to take: for a
    /// consumer that expects a long wait and would only take a CPU from others by spinning.
    pub fn get_with_sleeping<R>(
        &self,
        timeout: Option<Duration>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, QueueError> {
        self.ring.pop_with(true, false, timeout, f)
    }

    /// [`get_with`](Self::get_with) only if a message is there now.
    pub fn try_get_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, QueueError> {
        self.ring.pop_with(false, false, None, f)
    }

    /// Messages put and not yet taken.
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.ring.items() as usize
    }

    /// Whether the queue holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Close the queue for every process (see [`Queue::close`]).
    pub fn close(&self) {
        self.ring.close();
    }
}
