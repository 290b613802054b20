//! Result plumbing: sinks that receive chunk replies, `AsyncResult`, and imap iterators.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::de::DeserializeOwned;

use crate::worker::{decode_reply, Chunk};
use crate::PoolError;

/// Where a chunk's outcome goes. Implemented per job kind; the dispatcher only sees this.
pub(crate) trait Sink: Send + Sync {
    /// Results for items `first..first + n` (the worker's encoded reply), or one error for all.
    fn deliver(&self, first: usize, n: usize, reply: Result<&[u8], PoolError>);

    /// [`deliver`](Self::deliver) without waking a waiting consumer yet: the dispatcher calls
    /// [`wake`](Self::wake) once it has read every reply that is there (one wake-up for several).
    fn deliver_quiet(&self, first: usize, n: usize, reply: Result<&[u8], PoolError>) {
        self.deliver(first, n, reply)
    }

    /// Wake a consumer waiting for what `deliver_quiet` brought.
    fn wake(&self) {}

    #[cfg(feature = "progress-bar")]
    /// The identity of the progress hook this sink reports to (see
    /// [`Progress`]), for counting the items of its units that workers are running.
    fn progress_id(&self) -> Option<usize> {
        None
    }
}

fn split<R: DeserializeOwned>(n: usize, reply: Result<&[u8], PoolError>) -> Chunk<R> {
    match reply.and_then(decode_reply::<R>) {
        Ok(c) if c.len() == n => c,
        Ok(c) => Chunk::failed(
            n,
            &multiproc_pickle::PickleError::Decode(format!(
                "worker returned {} results for {n} items",
                c.len()
            ))
            .into(),
        ),
        Err(e) => Chunk::failed(n, &e),
    }
}

type Callback<T> = Box<dyn FnOnce(&T) + Send>;
type Callbacks<T> = (Option<Callback<T>>, Option<Callback<PoolError>>);
/// Turns a job's per-item results into what its `AsyncResult` holds.
/// Its argument: the chunks' results, in input order, and the number of items.
pub(crate) type Finish<R, T> = fn(Vec<Chunk<R>>, usize) -> Result<T, PoolError>;
/// A map's chunks received so far, by their first item, and how many items they hold; the
/// number of items submitted, once submission is over (until then the map cannot complete,
/// however many chunks are in).
struct Slots<R> {
    chunks: BTreeMap<usize, Chunk<R>>,
    done: usize,
    total: Option<usize>,
}

pub(crate) struct Cell<T> {
    value: Mutex<Option<Result<T, PoolError>>>,
    done: std::sync::atomic::AtomicBool,
    ok: std::sync::atomic::AtomicBool,
    cv: Condvar,
    callbacks: Mutex<Callbacks<T>>,
}

impl<T> Cell<T> {
    pub(crate) fn new(
        callback: Option<Callback<T>>,
        error_callback: Option<Callback<PoolError>>,
    ) -> Arc<Self> {
        Arc::new(Cell {
            value: Mutex::new(None),
            done: Default::default(),
            ok: Default::default(),
            cv: Condvar::new(),
            callbacks: Mutex::new((callback, error_callback)),
        })
    }

    pub(crate) fn set(&self, r: Result<T, PoolError>) {
        use std::sync::atomic::Ordering;
        let (cb, ecb) = std::mem::take(&mut *self.callbacks.lock());
        // As in Python, callbacks run before the result becomes ready.
        match &r {
            Ok(v) => {
                if let Some(cb) = cb {
                    cb(v)
                }
            }
            Err(e) => {
                if let Some(ecb) = ecb {
                    ecb(e)
                }
            }
        }
        let mut g = self.value.lock();
        self.ok.store(r.is_ok(), Ordering::Release);
        *g = Some(r);
        self.done.store(true, Ordering::Release);
        self.cv.notify_all();
    }
}

/// The result of a task (or a whole map) that is still running: Python's `AsyncResult`.
///
/// ```
/// # fn square(x: u64) -> u64 { x * x }
/// multiproc::init(); // first thing in main
/// let pool = multiproc::Pool::new(2).unwrap();
/// let r = pool.apply_async(square, 12).unwrap();
/// assert_eq!(r.get().unwrap(), 144);
/// ```
#[must_use = "the task runs anyway, but its result and its error are lost unless you `get` it"]
pub struct AsyncResult<T> {
    cell: Arc<Cell<T>>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(cell: Arc<Cell<T>>) -> Self {
        AsyncResult { cell }
    }

    /// [`get_timeout`](Self::get_timeout) with no bound: waits as long as it takes.
    pub fn get(&self) -> Result<T, PoolError> {
        self.get_within(None)
    }

    /// Wait at most `timeout` and take the result. On timeout the task goes
    /// on and a later `get` can still succeed. The value moves out on the first success; a
    /// second `get` after that is an error.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, PoolError> {
        self.get_within(Some(timeout))
    }

    /// `get` (`None`) or `get_timeout` (`Some`).
    pub(crate) fn get_within(&self, timeout: Option<Duration>) -> Result<T, PoolError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = self.cell.value.lock();
        loop {
            if self.cell.done.load(std::sync::atomic::Ordering::Acquire) {
                return match g.take() {
                    Some(Ok(v)) => Ok(v),
                    Some(Err(e)) => {
                        *g = Some(Err(e.clone()));
                        Err(e)
                    }
                    None => Err(PoolError::InvalidArgument(
                        "the result was already taken by an earlier get",
                    )),
                };
            }
            match deadline {
                None => self.cell.cv.wait(&mut g),
                Some(d) => {
                    if self.cell.cv.wait_until(&mut g, d).timed_out()
                        && !self.cell.done.load(std::sync::atomic::Ordering::Acquire)
                    {
                        return Err(PoolError::Timeout);
                    }
                }
            }
        }
    }

    /// [`wait_timeout`](Self::wait_timeout) with no bound: waits as long as it takes.
    pub fn wait(&self) -> bool {
        self.wait_within(None)
    }

    /// Wait up to `timeout` for the result to be ready; true if it is.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_within(Some(timeout))
    }

    /// `wait` (`None`) or `wait_timeout` (`Some`).
    pub(crate) fn wait_within(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = self.cell.value.lock();
        while !self.ready() {
            match deadline {
                None => self.cell.cv.wait(&mut g),
                Some(d) => {
                    if self.cell.cv.wait_until(&mut g, d).timed_out() {
                        return self.ready();
                    }
                }
            }
        }
        true
    }

    /// Whether the task has finished (successfully or not).
    pub fn ready(&self) -> bool {
        self.cell.done.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether the task finished without error; `None` while it runs (Python raises there).
    pub fn successful(&self) -> Option<bool> {
        self.ready()
            .then(|| self.cell.ok.load(std::sync::atomic::Ordering::Acquire))
    }
}

/// A map's progress hook: `(done, total)` each time a chunk completes. Its address (see
/// `progress_id`) identifies the map's units in the workers' lanes.
pub(crate) type Progress = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// The identity of a progress hook: the address of what it points to.
#[cfg(feature = "progress-bar")]
pub(crate) fn progress_id(p: &Progress) -> usize {
    Arc::as_ptr(p) as *const () as usize
}

/// Collects a whole map into one `Vec`, then completes a `Cell`. Chunks are delivered while
/// the map is still being submitted; [`submitted`](Self::submitted) says how many items there
/// are in all.
pub(crate) struct MapSink<R, T> {
    st: Mutex<Slots<R>>,
    /// The number of items expected, for progress reports before submission is over.
    hint: usize,
    cell: Arc<Cell<T>>,
    finish: Finish<R, T>,
    progress: Option<Progress>,
}

impl<R, T> MapSink<R, T> {
    /// A sink for about `hint` items.
    pub(crate) fn new(
        hint: usize,
        cell: Arc<Cell<T>>,
        finish: Finish<R, T>,
        progress: Option<Progress>,
    ) -> Arc<Self> {
        Arc::new(MapSink {
            st: Mutex::new(Slots {
                chunks: BTreeMap::new(),
                done: 0,
                total: None,
            }),
            hint,
            cell,
            finish,
            progress,
        })
    }

    /// Submission is over: `total` items were submitted.
    pub(crate) fn submitted(&self, total: usize) {
        let mut st = self.st.lock();
        st.total = Some(total);
        self.complete_if_done(st);
    }

    fn complete_if_done(&self, mut st: parking_lot::MutexGuard<'_, Slots<R>>) {
        if st.total != Some(st.done) {
            return;
        }
        let chunks: Vec<Chunk<R>> = std::mem::take(&mut st.chunks).into_values().collect();
        let total = st.done;
        drop(st);
        self.cell.set((self.finish)(chunks, total));
    }
}

impl<R: DeserializeOwned + Send, T: Send> Sink for MapSink<R, T> {
    fn deliver(&self, first: usize, n: usize, reply: Result<&[u8], PoolError>) {
        let chunk = split::<R>(n, reply);
        let mut st = self.st.lock();
        if st.chunks.insert(first, chunk).is_none() {
            st.done += n;
        }
        if let Some(p) = &self.progress {
            p(st.done, st.total.unwrap_or(self.hint).max(st.done));
        }
        self.complete_if_done(st);
    }

    #[cfg(feature = "progress-bar")]
    fn progress_id(&self) -> Option<usize> {
        self.progress.as_ref().map(progress_id)
    }
}

/// Collects results for an imap iterator, in order or as they come.
pub(crate) struct StreamSink<R> {
    pub(crate) st: Mutex<StreamState<R>>,
    pub(crate) cv: Condvar,
}

pub(crate) struct StreamState<R> {
    pub ordered: BTreeMap<usize, Result<R, PoolError>>,
    pub arrived: VecDeque<Result<R, PoolError>>,
    pub unordered: bool,
}

impl<R> StreamSink<R> {
    pub(crate) fn new(unordered: bool) -> Arc<Self> {
        Arc::new(StreamSink {
            st: Mutex::new(StreamState {
                ordered: BTreeMap::new(),
                arrived: VecDeque::new(),
                unordered,
            }),
            cv: Condvar::new(),
        })
    }
}

impl<R: DeserializeOwned + Send> Sink for StreamSink<R> {
    fn deliver(&self, first: usize, n: usize, reply: Result<&[u8], PoolError>) {
        self.deliver_quiet(first, n, reply);
        self.wake();
    }

    fn wake(&self) {
        self.cv.notify_all();
    }

    fn deliver_quiet(&self, first: usize, n: usize, reply: Result<&[u8], PoolError>) {
        let results = split::<R>(n, reply).into_results();
        let mut st = self.st.lock();
        for (i, r) in results.into_iter().enumerate() {
            if st.unordered {
                st.arrived.push_back(r);
            } else {
                st.ordered.insert(first + i, r);
            }
        }
    }
}
