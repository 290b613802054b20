//! [`Pool`]: the mapping calls and the pool's life (close, terminate, join).

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::pool_api;
use crate::backend::Backend;
use crate::builder::PoolBuilder;
use crate::imap::IMapIter;
use crate::result::{AsyncResult, Cell, Finish, MapSink, Progress, Sink, StreamSink};
use crate::scheduler::{RunState, Unit};
use crate::worker::{chunk_call, resplit, Chunk};
use crate::PoolError;

/// What every task argument and result must be: serde both ways, sendable, owned.
pub trait Data: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Data for T {}

/// A pool of worker processes: Python's `multiprocessing.Pool`.
///
/// Tasks are plain functions `fn(A) -> R` (or non-capturing closures) with serde arguments and
/// results. Beyond Python: a worker that dies mid-task (segfault, `abort`, OOM kill, `SIGKILL`)
/// fails only that task with [`PoolError::WorkerDied`] and is replaced, also when the task was
/// one item of a chunk: the chunk's other items run again on other workers (those that had
/// completed too, as their results died with the worker); a task can be given a
/// timeout; a panic comes back as [`PoolError::Panic`] with the worker-side backtrace; the pool
/// never hangs. Dropping the pool terminates it and reaps its workers (like `with Pool() as p:`).
///
/// Arguments that own OS handles (a `Lock`, a `Value`, a `Queue`, a `Connection`) reach the
/// workers with them, in a task as through the [initializer](PoolBuilder::initializer) (on
/// Windows the task's handles are lent over the worker's pipe: see `Connection`).
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init(); // first thing in main
/// let pool = multiproc::Pool::new(4).unwrap();
/// let squares = pool.map(square, 0..10u64).unwrap();
/// assert_eq!(squares[9], 81);
/// ```
pub struct Pool {
    engine: Box<dyn Backend>,
    size: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.size)
            .field("state", &self.engine.run_state())
            .finish()
    }
}

/// Python's default chunk size for `map`: about four chunks per worker.
fn default_chunksize(len: usize, workers: usize) -> usize {
    let per = workers * 4;
    let (q, r) = (len / per, len % per);
    (q + usize::from(r > 0)).max(1)
}

fn collect_all<R>(chunks: Vec<Chunk<R>>, total: usize) -> Result<Vec<R>, PoolError> {
    let mut chunks = chunks.into_iter().peekable();
    // The first chunk's results become the front of the whole: growing them moves pages (a
    // large allocation is remapped) instead of copying them into fresh memory.
    let mut out = match chunks.next_if(|c| matches!(c, Chunk::Ok(_))) {
        Some(Chunk::Ok(mut v)) => {
            v.reserve_exact(total.saturating_sub(v.len()));
            v
        }
        _ => Vec::with_capacity(total),
    };
    for c in chunks {
        match c {
            Chunk::Ok(v) => out.extend(v),
            Chunk::Each(v) => {
                for r in v {
                    out.push(r?);
                }
            }
        }
    }
    Ok(out)
}

fn keep_each<R>(
    chunks: Vec<Chunk<R>>,
    total: usize,
) -> Result<Vec<Result<R, PoolError>>, PoolError> {
    let mut out = Vec::with_capacity(total);
    for c in chunks {
        out.extend(c.into_results());
    }
    Ok(out)
}

fn first_of<R>(chunks: Vec<Chunk<R>>, _: usize) -> Result<R, PoolError> {
    chunks
        .into_iter()
        .flat_map(Chunk::into_results)
        .next()
        .unwrap_or_else(|| {
            Err(multiproc_pickle::PickleError::Decode("a reply without a result".into()).into())
        })
}

impl Pool {
    pub(crate) fn from_parts(engine: Box<dyn Backend>, size: usize) -> Pool {
        Pool { engine, size }
    }

    /// Hand units to the backend.
    pub(crate) fn submit(&self, units: Vec<Unit>) -> Result<(), PoolError> {
        self.engine.submit(units)
    }

    /// Chunks an `imap` reads ahead at most.
    pub(crate) fn imap_window(&self) -> usize {
        self.engine.imap_window(self.size)
    }

    /// A pool of `processes` workers with default settings.
    pub fn new(processes: usize) -> Result<Pool, PoolError> {
        Pool::builder().processes(processes).build()
    }

    /// Configure a pool.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            init: None,
            maxtasks: None,
            method: None,
            task_timeout: None,
            threads: false,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.size
    }

    /// The pids of the current worker processes (empty for a thread pool). Workers that died
    /// or were retired are replaced, so the list changes over time.
    pub fn pids(&self) -> Vec<u32> {
        self.engine.pids()
    }

    /// What a Redis pool's driver counted so far (`None` for a local pool).
    ///
    /// ```
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// assert!(pool.redis_stats().is_none());
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis_stats(&self) -> Option<crate::RedisStats> {
        self.engine.redis_stats()
    }

    /// Encode `items` in chunks and submit them as they are made — the first batch as soon
    /// as there is a chunk per worker, then batches twice as large each time — so the workers
    /// start while the rest is encoded, with few submissions. Items are read straight from
    /// the iterator into one reused chunk buffer. The number of items submitted.
    fn submit_chunks<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        mut items: impl Iterator<Item = A>,
        chunksize: usize,
        sink: Arc<dyn Sink>,
    ) -> Result<usize, PoolError> {
        let mut batch = Vec::new();
        let mut flush_at = self.size;
        let mut first = 0;
        let mut chunk: Vec<A> = Vec::new();
        loop {
            chunk.clear();
            chunk.extend(items.by_ref().take(chunksize));
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            let (payload, handles) = chunk_call(f, &chunk)?;
            batch.push(Unit {
                first,
                n,
                payload,
                handles,
                sink: sink.clone(),
                split: resplit::<A, R>,
                retried: false,
            });
            first += n;
            if batch.len() >= flush_at {
                self.submit(std::mem::take(&mut batch))?;
                flush_at *= 2;
            }
        }
        if !batch.is_empty() {
            self.submit(batch)?;
        }
        Ok(first)
    }

    /// Submit a map of `f` over `items`; its result, made by `finish`, completes `cell`.
    /// Python's default chunk size needs the number of items: an iterator that knows it
    /// exactly (a range, a `Vec`) is read as chunks are encoded, any other is collected first,
    /// as Python makes a list of it.
    fn map_into<A: Data, R: Data, T: Send + 'static>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        cell: Arc<Cell<T>>,
        finish: Finish<R, T>,
        progress: Option<Progress>,
    ) -> Result<AsyncResult<T>, PoolError> {
        if chunksize == Some(0) {
            return Err(PoolError::InvalidArgument("chunksize must be at least 1"));
        }
        self.check_running()?;
        let items = items.into_iter();
        match items.size_hint() {
            (lo, Some(hi)) if lo == hi => {
                self.map_from(f, items, lo, chunksize, &cell, finish, progress)?
            }
            _ => {
                let v: Vec<A> = items.collect();
                let n = v.len();
                self.map_from(f, v.into_iter(), n, chunksize, &cell, finish, progress)?
            }
        }
        Ok(AsyncResult::new(cell))
    }

    /// [`map_into`](Self::map_into) for about `len` items (a wrong count only changes the
    /// chunk size: the map completes with the items there were).
    #[allow(clippy::too_many_arguments)]
    fn map_from<A: Data, R: Data, T: Send + 'static>(
        &self,
        f: fn(A) -> R,
        items: impl Iterator<Item = A>,
        len: usize,
        chunksize: Option<usize>,
        cell: &Arc<Cell<T>>,
        finish: Finish<R, T>,
        progress: Option<Progress>,
    ) -> Result<(), PoolError> {
        let chunksize = chunksize.unwrap_or_else(|| default_chunksize(len, self.size));
        let sink = MapSink::new(len, cell.clone(), finish, progress);
        let n = self.submit_chunks(f, items, chunksize, sink.clone())?;
        sink.submitted(n);
        Ok(())
    }

    fn check_running(&self) -> Result<(), PoolError> {
        match self.engine.run_state() {
            RunState::Running => Ok(()),
            RunState::Closed => Err(PoolError::Closed),
            RunState::Terminated => Err(PoolError::Terminated),
        }
    }

    /// [`map_with_progress`](Self::map_with_progress) with the hook already shared, so the
    /// caller can also ask [`items_running`](Self::items_running) about it.
    pub(crate) fn map_with_hook<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        hook: Progress,
    ) -> Result<Vec<R>, PoolError> {
        self.map_into(
            f,
            items,
            chunksize,
            Cell::new(None, None),
            collect_all,
            Some(hook),
        )?
        .get()
    }

    /// How many items of the units reporting to `hook` the workers have finished inside the
    /// chunks they are running now (read from each worker's control block, where the worker
    /// marks every item it starts): what a chunk's reply will add when it comes.
    #[cfg(feature = "progress-bar")]
    pub(crate) fn items_running(&self, hook: &Progress) -> usize {
        let id = Some(crate::result::progress_id(hook));
        let Some(shared) = self.engine.local() else {
            return 0;
        };
        let st = shared.st.lock();
        st.lanes
            .iter()
            .filter_map(|lane| {
                let b = lane.busy.front()?;
                if b.unit.sink.progress_id() != id {
                    return None;
                }
                let item = lane.control.marked_item(b.msg)? as usize;
                Some(item.min(b.unit.n))
            })
            .sum()
    }

    fn imap_impl<A: Data, R: Data, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
        unordered: bool,
    ) -> Result<IMapIter<'_, A, R, I::IntoIter>, PoolError> {
        if chunksize == 0 {
            return Err(PoolError::InvalidArgument("chunksize must be at least 1"));
        }
        self.check_running()?;
        Ok(IMapIter {
            pool: self,
            f,
            input: Some(items.into_iter()),
            chunksize,
            sink: StreamSink::new(unordered),
            submitted_items: 0,
            submitted_bytes: 0,
            chunk: Vec::new(),
            yielded: 0,
            window: self.imap_window(),
            failed: None,
        })
    }
}

pool_api! {
    #[thread_pool = "[`Pool::apply`] on a thread."]
    /// Run `f(arg)` in a worker and wait for the result.
    pub fn apply<A: Data, R: Data>(&self, f: fn(A) -> R, arg: A) -> Result<R, PoolError> {
        self.apply_async(f, arg)?.get()
    }

    #[thread_pool = "[`Pool::apply_async`] on a thread."]
    /// Run `f(arg)` in a worker; the result arrives in the returned [`AsyncResult`].
    pub fn apply_async<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<AsyncResult<R>, PoolError> {
        self.map_into(f, vec![arg], Some(1), Cell::new(None, None), first_of, None)
    }

    #[thread_pool = "[`Pool::apply_async_with`] on a thread."]
    /// [`apply_async`](Self::apply_async) with Python's `callback` (called with the result) and
    /// `error_callback` (called with the error), run on the pool's result thread before the
    /// result becomes ready.
    pub fn apply_async_with<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        arg: A,
        callback: impl FnOnce(&R) + Send + 'static,
        error_callback: impl FnOnce(&PoolError) + Send + 'static,
    ) -> Result<AsyncResult<R>, PoolError> {
        let cell = Cell::new(Some(Box::new(callback)), Some(Box::new(error_callback)));
        self.map_into(f, vec![arg], Some(1), cell, first_of, None)
    }

    #[thread_pool = "[`Pool::map`] over threads."]
    /// Apply `f` to every item, in parallel, and return the results in order. The first
    /// failed task's error is returned (the other tasks still run to completion). Chunks of
    /// Python's default size (about four per worker).
    ///
    /// Arguments and results must keep to the serde features postcard can decode (no
    /// `#[serde(untagged)]`, `tag`, `flatten` or `skip_serializing_if`; see
    /// [`multiproc::pickle`'s "What a message type may use"](multiproc_pickle#what-a-message-type-may-use)):
    /// debug builds decode the arguments they encoded and refuse such a type here, with an
    /// error naming the attribute, instead of in the worker. Byte payloads: use
    /// [`Bytes`](multiproc_pickle::Bytes), not `Vec<u8>` (40× to 100× slower).
    pub fn map<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, PoolError> {
        self.map_async(f, items, None)?.get()
    }

    #[thread_pool = "[`Pool::map_chunked`] over threads."]
    /// [`map`](Self::map) with an explicit chunk size.
    pub fn map_chunked<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError> {
        self.map_async(f, items, Some(chunksize))?.get()
    }

    #[thread_pool = "[`Pool::map_async`] over threads."]
    /// Like [`map`](Self::map) but without waiting; `chunksize: None` is Python's default.
    pub fn map_async<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError> {
        self.map_into(
            f,
            items,
            chunksize,
            Cell::new(None, None),
            collect_all,
            None,
        )
    }

    #[thread_pool = "[`Pool::map_async_with`] over threads."]
    /// [`map_async`](Self::map_async) with Python's `callback` (called with all the results,
    /// in order) and `error_callback` (called with the first failed task's error), run on the
    /// pool's result thread before the result becomes ready. Also Python's `starmap_async` with
    /// callbacks: a tuple is the argument.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// fn double(x: i32) -> i32 { 2 * x }
    /// multiproc::init(); // first thing in main
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let (tx, rx) = mpsc::channel();
    /// let r = pool
    ///     .map_async_with(double, 1..=3, None, move |v: &Vec<i32>| tx.send(v.iter().sum::<i32>()).unwrap(), |_| {})
    ///     .unwrap();
    /// assert_eq!(r.get().unwrap(), [2, 4, 6]);
    /// assert_eq!(rx.recv().unwrap(), 12);
    /// ```
    pub fn map_async_with<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        callback: impl FnOnce(&Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(&PoolError) + Send + 'static,
    ) -> Result<AsyncResult<Vec<R>>, PoolError> {
        let cell = Cell::new(Some(Box::new(callback)), Some(Box::new(error_callback)));
        self.map_into(f, items, chunksize, cell, collect_all, None)
    }

    #[thread_pool = "[`Pool::map_each`] over threads."]
    /// Apply `f` to every item and keep every task's own outcome: one failure does not hide
    /// the other results (the crash-resistant way to map).
    pub fn map_each<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<Vec<Result<R, PoolError>>, PoolError> {
        self.map_into(f, items, chunksize, Cell::new(None, None), keep_each, None)?
            .get()
    }

    #[thread_pool = "[`Pool::map_with_progress`] over threads."]
    /// [`map`](Self::map) that reports progress: `progress(done, total)` is called on the
    /// pool's result thread each time a chunk completes (drive a progress bar from it).
    pub fn map_with_progress<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        progress: impl Fn(usize, usize) + Send + Sync + 'static,
    ) -> Result<Vec<R>, PoolError> {
        self.map_with_hook(f, items, chunksize, Arc::new(progress))
    }

    #[thread_pool = "[`Pool::starmap`] over threads."]
    /// Python's `starmap`: our tasks take one argument, so a tuple *is* the argument list;
    /// `starmap` is [`map`](Self::map) over tuples, kept for familiarity.
    ///
    /// ```
    /// fn add((a, b): (i32, i32)) -> i32 { a + b }
    /// multiproc::init(); // first thing in main
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)]).unwrap(), [3, 7]);
    /// ```
    pub fn starmap<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, PoolError> {
        self.map(f, items)
    }

    #[thread_pool = "[`Pool::starmap_async`] over threads."]
    /// [`starmap`](Self::starmap) without waiting.
    pub fn starmap_async<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError> {
        self.map_async(f, items, chunksize)
    }

    #[thread_pool = "[`Pool::imap`] over threads."]
    /// Lazily apply `f` over `items`, yielding results in input order as they become ready.
    /// The input is read only a bounded distance ahead of the results consumed (at most 128
    /// chunks per worker, and past two chunks per worker, about 16 MiB of encoded chunks), so
    /// an endless iterator works.
    pub fn imap<A: Data, R: Data, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<IMapIter<'_, A, R, I::IntoIter>, PoolError> {
        self.imap_impl(f, items, chunksize, false)
    }

    #[thread_pool = "[`Pool::imap_unordered`] over threads."]
    /// Like [`imap`](Self::imap), but yielding results in completion order.
    pub fn imap_unordered<A: Data, R: Data, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<IMapIter<'_, A, R, I::IntoIter>, PoolError> {
        self.imap_impl(f, items, chunksize, true)
    }

    #[thread_pool = "[`Pool::close`]: no new tasks; the threads finish the queued ones."]
    /// Stop accepting tasks; workers leave once the queued work is done. See [`join`](Self::join).
    pub fn close(&self) {
        self.engine.close();
    }

    #[thread_pool = "[`Pool::terminate`]: drop queued tasks and stop the threads."]
    /// Stop now: kill the workers, fail unfinished tasks with [`PoolError::Terminated`], and
    /// wait until every worker is reaped.
    pub fn terminate(&self) {
        self.engine.terminate();
    }

    #[thread_pool = "[`Pool::join`]: wait for the threads after `close` or `terminate`."]
    /// Wait for the workers to finish after [`close`](Self::close) or
    /// [`terminate`](Self::terminate); [`PoolError::StillRunning`] otherwise.
    pub fn join(&self) -> Result<(), PoolError> {
        if self.engine.run_state() == RunState::Running {
            return Err(PoolError::StillRunning);
        }
        self.engine.join();
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ThreadPool;

    #[test]
    fn python_default_chunksize() {
        // divmod(len, workers * 4), rounded up
        assert_eq!(default_chunksize(100, 4), 7);
        assert_eq!(default_chunksize(16, 4), 1);
        assert_eq!(default_chunksize(0, 4), 1);
        assert_eq!(default_chunksize(200_000, 2), 25_000);
    }

    fn double(x: i64) -> i64 {
        x * 2
    }

    #[test]
    fn thread_pool_maps_in_order() {
        let pool = ThreadPool::new(3).unwrap();
        let out = pool.map_chunked(double, 0..1000, 7).unwrap();
        assert_eq!(out, (0..1000).map(double).collect::<Vec<_>>());
        let out: Vec<i64> = pool
            .imap(double, 0..100, 3)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(out, (0..100).map(double).collect::<Vec<_>>());
    }
}
