//! `Pool` and `ThreadPool`: the dispatcher, the builder, and the mapping calls.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc_pickle::{encode, Call};
use multiproc_process::{Connection, StartMethod};
use multiproc_sync::{ByteQueue, QueueError};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::inbox::{self, Kind};
use crate::result::{AsyncResult, Cell, Finish, MapSink, Sink, StreamSink};
use crate::worker::{chunk_call, Chunk, Stop, Worker, WorkerKind};
use crate::PoolError;

/// What every task argument and result must be: serde both ways, sendable, owned.
pub trait Data: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Data for T {}

struct Unit {
    first: usize,
    n: usize,
    payload: Vec<u8>,
    sink: Arc<dyn Sink>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RunState {
    Running,
    Closed,
    Terminated,
}

/// A worker as submitters see it: where to send units and what it holds. Lives in the shared
/// state, so a caller can hand a unit straight to a worker with room (no dispatcher hop).
struct Lane {
    conn: Arc<Connection>,
    /// Units sent to this worker, in order: the front one runs, the others wait in its pipe.
    busy: VecDeque<Busy>,
    /// When the front unit started (about: when it was sent, or its predecessor answered).
    front_since: Instant,
    /// The units this worker may hold (see `MAX_DEPTH`), from the time its units take.
    depth: usize,
    /// A moving average of that time, in nanoseconds (0: none measured yet).
    unit_nanos: u64,
    /// Bytes that may wait in the worker's pipe behind its running unit (see `MAX_QUEUED_BYTES`).
    queue_bytes: usize,
    tasks_done: usize,
    /// False while the worker is being retired or replaced.
    open: bool,
}

impl Lane {
    fn new(conn: Arc<Connection>) -> Lane {
        let queue_bytes = conn
            .send_buffer_size()
            .map_or(UNKNOWN_QUEUED_BYTES, |n| (n / 2).min(MAX_QUEUED_BYTES));
        Lane {
            queue_bytes,
            conn,
            busy: VecDeque::new(),
            front_since: Instant::now(),
            depth: START_DEPTH,
            unit_nanos: 0,
            tasks_done: 0,
            open: true,
        }
    }

    /// Whether `unit` may be sent to this worker now.
    fn accepts(&self, unit: &Unit, maxtasks: Option<usize>) -> bool {
        if !self.open {
            return false;
        }
        if self.busy.is_empty() {
            return true;
        }
        let queued: usize = self.busy.iter().skip(1).map(|b| b.len).sum();
        let room = maxtasks.map_or(true, |m| self.tasks_done + self.busy.len() < m);
        room && self.busy.len() < self.depth && queued + unit.payload.len() <= self.queue_bytes
    }

    /// The front unit was answered: take its time into the average, and start the next one's.
    fn front_done(&mut self) {
        let now = Instant::now();
        let took = now.saturating_duration_since(self.front_since).as_nanos() as u64;
        self.front_since = now;
        self.unit_nanos = match self.unit_nanos {
            0 => took.max(1),
            avg => (avg - avg / 8 + took / 8).max(1),
        };
        let fits = QUEUED_WORK.as_nanos() as u64 / self.unit_nanos;
        self.depth = (fits as usize).clamp(2, MAX_DEPTH);
    }
}

/// The pool state every thread shares, behind one lock.
struct State {
    queue: VecDeque<Unit>,
    run: RunState,
    lanes: Vec<Lane>,
}

impl State {
    /// Give queued units to workers with room, one per worker per round so work spreads
    /// evenly; each worker gets its share in one write.
    fn assign(&mut self, maxtasks: Option<usize>, timeout: Option<Duration>) {
        let before: Vec<usize> = self.lanes.iter().map(|l| l.busy.len()).collect();
        'rounds: loop {
            let mut took = false;
            for lane in self.lanes.iter_mut() {
                let Some(unit) = self.queue.front() else {
                    break 'rounds;
                };
                if !lane.accepts(unit, maxtasks) {
                    continue;
                }
                let unit = self.queue.pop_front().expect("peeked");
                // (the payload is kept: if the worker dies before starting the unit, it is
                // sent again to another worker)
                let len = unit.payload.len();
                let deadline = match lane.busy.is_empty() {
                    true => {
                        lane.front_since = Instant::now();
                        timeout.map(|t| lane.front_since + t)
                    }
                    false => None,
                };
                lane.busy.push_back(Busy {
                    unit,
                    len,
                    deadline,
                });
                took = true;
            }
            if !took {
                break;
            }
        }
        for (lane, old) in self.lanes.iter_mut().zip(before) {
            if lane.busy.len() == old {
                continue;
            }
            let payloads: Vec<&[u8]> = lane
                .busy
                .iter()
                .skip(old)
                .map(|b| &b.unit.payload[..])
                .collect();
            if let Err(e) = lane.conn.send_bytes_many(&payloads) {
                // The worker is gone; the dispatcher sees its death and replaces it. What it
                // did not get goes back to the queue, in order.
                tracing::debug!("worker unreachable: {e}");
                lane.open = false;
                for b in lane.busy.drain(old..).rev() {
                    self.queue.push_front(b.unit);
                }
            }
        }
    }
}

struct Shared {
    st: Mutex<State>,
    /// Where workers reply and submitters nudge; the dispatcher waits on it alone.
    inbox: ByteQueue,
    /// Whether a nudge is in the inbox and not yet read: at most one is.
    wake_pending: AtomicBool,
    /// Set while the dispatcher sleeps with no work out: a submitter that hands work straight
    /// to a worker then nudges it, so it wakes while the worker runs and catches the reply
    /// spinning instead of being woken by it (one wake-up fewer on the way back).
    idle_sleep: AtomicBool,
    pids: Mutex<Vec<u32>>,
    maxtasks: Option<usize>,
    /// Whether submitters may send to workers themselves. Not with task timeouts: the
    /// dispatcher must know every deadline when it goes to sleep.
    direct: bool,
}

impl Shared {
    fn nudge(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.inbox.put_parts(&[&inbox::header(Kind::Nudge, 0)]) {
                tracing::error!("cannot wake the pool's dispatcher: {e}");
            }
        }
    }

    fn submit(&self, units: Vec<Unit>) -> Result<(), PoolError> {
        let leftover = {
            let mut st = self.st.lock();
            match st.run {
                RunState::Running => st.queue.extend(units),
                RunState::Closed => return Err(PoolError::Closed),
                RunState::Terminated => return Err(PoolError::Terminated),
            }
            if self.direct {
                st.assign(self.maxtasks, None);
            }
            !st.queue.is_empty()
        };
        if leftover || self.idle_sleep.load(Ordering::Acquire) {
            self.nudge();
        }
        Ok(())
    }
}

struct Config {
    kind: WorkerKind,
    init: Option<Vec<u8>>,
    maxtasks: Option<usize>,
    task_timeout: Option<Duration>,
}

/// Configures a [`Pool`] (or a [`ThreadPool`]): Python's `Pool(processes, initializer,
/// initargs, maxtasksperchild, context)` plus a per-task timeout.
///
/// ```no_run
/// use std::time::Duration;
/// fn setup(tag: String) { /* runs once in each worker */ let _ = tag; }
/// let pool = multiproc_pool::Pool::builder()
///     .processes(4)
///     .initializer(setup, "ready".to_string())
///     .maxtasksperchild(100)
///     .task_timeout(Duration::from_secs(30))
///     .build()
///     .unwrap();
/// # drop(pool);
/// ```
pub struct PoolBuilder {
    processes: Option<usize>,
    init: Option<Result<Vec<u8>, PoolError>>,
    maxtasks: Option<usize>,
    method: Option<StartMethod>,
    task_timeout: Option<Duration>,
    threads: bool,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("threads", &self.threads)
            .finish()
    }
}

impl PoolBuilder {
    /// Number of workers (default: [`cpu_count`](multiproc_process::cpu_count)). Zero is an error.
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Run `f(args)` once in each worker before its first task.
    pub fn initializer<A: Data>(mut self, f: fn(A), args: A) -> Self {
        self.init = Some(Call::new(f, &args).map_err(PoolError::from).and_then(
            |(call, handles)| {
                if handles.is_empty() {
                    Ok(encode(&call)?)
                } else {
                    Err(PoolError::Serialization(
                        "initializer arguments cannot carry OS handles".into(),
                    ))
                }
            },
        ));
        self
    }

    /// Replace a worker after it has completed `n` tasks (chunks). Zero is an error.
    pub fn maxtasksperchild(mut self, n: usize) -> Self {
        self.maxtasks = Some(n);
        self
    }

    /// Start workers with `method` instead of the global start method.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Kill and replace a worker whose task (chunk) runs longer than `timeout`; that task fails
    /// with [`PoolError::TaskTimeout`]. Not available for thread pools (threads cannot be killed).
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Start the workers.
    pub fn build(self) -> Result<Pool, PoolError> {
        let n = self.processes.unwrap_or_else(multiproc_process::cpu_count);
        if n == 0 {
            return Err(PoolError::InvalidArgument(
                "the number of processes must be at least 1",
            ));
        }
        if self.maxtasks == Some(0) {
            return Err(PoolError::InvalidArgument(
                "maxtasksperchild must be at least 1",
            ));
        }
        if self.threads && self.task_timeout.is_some() {
            return Err(PoolError::InvalidArgument(
                "a thread pool cannot kill a task: no task_timeout",
            ));
        }
        let init = self.init.transpose()?;
        let config = Config {
            kind: if self.threads {
                WorkerKind::Thread
            } else {
                WorkerKind::Process(self.method)
            },
            init,
            maxtasks: self.maxtasks,
            task_timeout: self.task_timeout,
        };
        crate::worker::install_panic_hook();
        let inbox = inbox::new()?;
        let mut workers = Vec::with_capacity(n);
        for id in 0..n as u64 {
            workers.push(Worker::start(
                &config.kind,
                config.init.as_ref(),
                &inbox,
                id,
            )?);
        }
        let shared = Arc::new(Shared {
            st: Mutex::new(State {
                queue: VecDeque::new(),
                run: RunState::Running,
                lanes: workers.iter().map(|w| Lane::new(w.conn.clone())).collect(),
            }),
            inbox,
            wake_pending: AtomicBool::new(false),
            idle_sleep: AtomicBool::new(false),
            pids: Mutex::new(workers.iter().filter_map(|w| w.pid()).collect()),
            maxtasks: config.maxtasks,
            direct: config.task_timeout.is_none(),
        });
        let s2 = shared.clone();
        let dispatcher = std::thread::Builder::new()
            .name("multiproc-pool".into())
            .spawn(move || {
                Dispatcher {
                    shared: s2,
                    config,
                    workers,
                    next_id: n as u64,
                    to_wake: Vec::new(),
                    last_check: Instant::now(),
                }
                .run()
            })
            .map_err(|e| PoolError::Start(e.to_string()))?;
        Ok(Pool {
            shared,
            dispatcher: Mutex::new(Some(dispatcher)),
            size: n,
        })
    }
}

/// Units a worker may hold at once (one running, the rest waiting in its pipe), so it never
/// idles for a round trip between two small chunks: at most `MAX_DEPTH`, and only as many as
/// it runs in about `QUEUED_WORK` (units queued behind a long one would wait while another
/// worker idles). `START_DEPTH` until a unit's time is known.
const MAX_DEPTH: usize = 64;
const START_DEPTH: usize = 4;
const QUEUED_WORK: Duration = Duration::from_millis(2);
/// Units are queued behind a running one only while the bytes waiting in the worker's pipe stay
/// under half the pipe's buffer (as the kernel reports it; at most `MAX_QUEUED_BYTES`,
/// `UNKNOWN_QUEUED_BYTES` if it cannot tell), so writing to a busy worker never blocks whoever
/// writes: a blocked writer holding the pool's lock would keep the dispatcher from draining
/// the inbox, which a worker may be waiting on. (Pipes are 1 MiB where the kernel allows, but
/// a user over the kernel's pipe-memory limit gets 8 KiB ones.)
const MAX_QUEUED_BYTES: usize = 512 << 10;
const UNKNOWN_QUEUED_BYTES: usize = 32 << 10;
/// While workers hold work, the dispatcher looks at least this often whether one has died (a
/// dead worker sends nothing: its death is seen here); an idle pool, at `IDLE_CHECK` (as
/// CPython's pool does), so a worker killed while idle is replaced and reaped without waiting
/// for work. (The inbox's own sleep wakes every 50 ms anyway: this costs no extra wake-up.)
const LIVENESS_CHECK: Duration = Duration::from_millis(20);
const IDLE_CHECK: Duration = Duration::from_millis(100);
/// Inbox messages handled in one cycle at most, so deadlines and deaths are looked at between.
const DRAIN_MAX: usize = 256;

struct Busy {
    unit: Unit,
    /// Length of the unit's payload, for the pipelining budget.
    len: usize,
    /// Set for the running (front) unit when tasks have a timeout.
    deadline: Option<Instant>,
}

/// The thread that watches the workers: it reads their replies from the inbox and delivers
/// them, notices deaths and timeouts, replaces workers, and assigns what submitters could not.
struct Dispatcher {
    shared: Arc<Shared>,
    config: Config,
    workers: Vec<Worker>,
    /// The id the next started worker gets.
    next_id: u64,
    /// Sinks that got results in this cycle: their consumers are woken once, at its end.
    to_wake: Vec<Arc<dyn Sink>>,
    /// When the workers were last checked for deaths.
    last_check: Instant,
}

impl Dispatcher {
    fn run(mut self) {
        loop {
            let state = {
                let mut st = self.shared.st.lock();
                if st.run != RunState::Terminated {
                    st.assign(self.config.maxtasks, self.config.task_timeout);
                }
                let idle = st.queue.is_empty() && st.lanes.iter().all(|l| l.busy.is_empty());
                (st.run, idle)
            };
            match state {
                (RunState::Terminated, _) => return self.terminate(),
                (RunState::Closed, true) => return self.retire_all(),
                (_, idle) => self.wait_and_handle(idle),
            }
        }
    }

    fn wait_and_handle(&mut self, idle: bool) {
        let now = Instant::now();
        let deadline = {
            let st = self.shared.st.lock();
            st.lanes
                .iter()
                .filter_map(|l| l.busy.front().and_then(|b| b.deadline))
                .min()
        };
        let every = if idle { IDLE_CHECK } else { LIVENESS_CHECK };
        let check = every.saturating_sub(self.last_check.elapsed());
        let timeout = Some(deadline.map_or(check, |d| d.saturating_duration_since(now).min(check)));
        // Wait for one message, then take what else is there without waiting. While workers
        // hold work, a reply is due within microseconds: spin a moment before sleeping. An idle
        // pool sleeps at once, leaving the CPU to the threads about to submit.
        let shared = self.shared.clone();
        let mut got = match idle {
            false => shared.inbox.get_with(timeout, |m| self.on_message(m)),
            true => {
                shared.idle_sleep.store(true, Ordering::Release);
                let got = shared
                    .inbox
                    .get_with_sleeping(timeout, |m| self.on_message(m));
                shared.idle_sleep.store(false, Ordering::Release);
                got
            }
        };
        let mut n = 1;
        while got.is_ok() && n < DRAIN_MAX {
            got = shared.inbox.try_get_with(|m| self.on_message(m));
            n += 1;
        }
        if let Err(e @ (QueueError::Broken(_) | QueueError::Closed)) = got {
            // Only memory corruption gets here (inbox messages fit the ring whole): stop
            // rather than hang, failing what is out.
            tracing::error!("the pool's inbox failed: {e}");
            self.shared.st.lock().run = RunState::Terminated;
        }
        for sink in self.to_wake.drain(..) {
            sink.wake();
        }
        let now = Instant::now();
        let expired: Vec<usize> = {
            let st = self.shared.st.lock();
            (0..st.lanes.len())
                .filter(|&i| {
                    st.lanes[i]
                        .busy
                        .front()
                        .and_then(|b| b.deadline)
                        .is_some_and(|d| now >= d)
                })
                .collect()
        };
        for i in expired {
            let code = self.workers[i].kill();
            tracing::warn!(code, "task timed out; worker killed");
            self.fail_front(i, PoolError::TaskTimeout);
            self.replace(i);
        }
        if self.last_check.elapsed() >= every {
            self.check_deaths();
        }
    }

    /// Replace every worker that has ended, failing the unit it was running.
    fn check_deaths(&mut self) {
        self.last_check = Instant::now();
        let shared = self.shared.clone();
        for i in 0..self.workers.len() {
            let Some(code) = self.workers[i].ended() else {
                continue;
            };
            // What it replied before dying is in the inbox, ahead of anything it could not
            // send: deliver that first, so the unit failed is the one it was running.
            let id = self.workers[i].id;
            while shared.inbox.try_get_with(|m| self.on_message(m)).is_ok() {}
            if self.workers[i].id == id {
                self.fail_and_replace(i, code);
            }
        }
        for sink in self.to_wake.drain(..) {
            sink.wake();
        }
    }

    /// Handle one inbox message.
    fn on_message(&mut self, msg: &[u8]) {
        let Some((kind, id, body)) = inbox::parse(msg) else {
            tracing::error!("malformed message in the pool's inbox; dropped");
            return;
        };
        if kind == Kind::Nudge {
            // At most one nudge is in the inbox (a nudge is sent only when it turns the flag
            // on): re-arm. A nudge racing with us either found the flag still set, and its work
            // is picked up by the `assign` that follows this cycle, or sends a fresh one.
            self.shared.wake_pending.store(false, Ordering::Release);
            return;
        }
        // A message from a worker since replaced (killed for a timeout) is stale: its unit
        // has already failed.
        let Some(i) = self.workers.iter().position(|w| w.id == id) else {
            return;
        };
        match kind {
            Kind::Reply => self.on_reply(i, body),
            _ => match self.workers[i].conn.recv_bytes() {
                Ok(reply) => self.on_reply(i, &reply),
                Err(_) => {
                    // end of file: the worker died while sending its reply
                    let code = self.workers[i].reap(Stop::Retire);
                    self.fail_and_replace(i, code);
                }
            },
        }
    }

    /// Worker `i` answered the oldest unit it holds with `reply`.
    fn on_reply(&mut self, i: usize, reply: &[u8]) {
        let (done, retire) = {
            let mut st = self.shared.st.lock();
            let lane = &mut st.lanes[i];
            let Some(b) = lane.busy.pop_front() else {
                tracing::error!("a pool worker replied to a unit it was not given; ignored");
                return;
            };
            lane.tasks_done += 1;
            lane.front_done();
            if let (Some(t), Some(next)) = (self.config.task_timeout, lane.busy.front_mut()) {
                next.deadline = Some(lane.front_since + t);
            }
            let retire = self.config.maxtasks.is_some_and(|m| lane.tasks_done >= m);
            if retire {
                lane.open = false;
            }
            (b, retire)
        };
        done.unit
            .sink
            .deliver_quiet(done.unit.first, done.unit.n, Ok(reply));
        if !self.to_wake.iter().any(|w| Arc::ptr_eq(w, &done.unit.sink)) {
            self.to_wake.push(done.unit.sink.clone());
        }
        if retire {
            self.workers[i].retire();
            self.replace(i);
        }
    }

    /// Fail the unit worker `i` was running with `err`; the units waiting behind it never
    /// started, so they go back to the front of the queue for another worker.
    fn fail_front(&mut self, i: usize, err: PoolError) {
        let front = {
            let mut st = self.shared.st.lock();
            let lane = &mut st.lanes[i];
            lane.open = false;
            let mut busy = std::mem::take(&mut lane.busy);
            let front = busy.pop_front();
            for b in busy.into_iter().rev() {
                st.queue.push_front(b.unit);
            }
            front
        };
        if let Some(b) = front {
            b.unit.sink.deliver(b.unit.first, b.unit.n, Err(err));
        }
    }

    fn fail_and_replace(&mut self, i: usize, exitcode: i32) {
        tracing::warn!(exitcode, "pool worker died; replacing it");
        self.fail_front(i, PoolError::WorkerDied { exitcode });
        self.replace(i);
    }

    fn replace(&mut self, i: usize) {
        let id = self.next_id;
        self.next_id += 1;
        let started = Worker::start(
            &self.config.kind,
            self.config.init.as_ref(),
            &self.shared.inbox,
            id,
        );
        match started {
            Ok(w) => {
                let lane = Lane::new(w.conn.clone());
                let old = std::mem::replace(&mut self.workers[i], w);
                self.shared.st.lock().lanes[i] = lane;
                drop(old);
                *self.shared.pids.lock() = self.workers.iter().filter_map(|w| w.pid()).collect();
            }
            Err(e) => {
                tracing::error!("cannot replace a pool worker: {e}");
                // Fail what is queued rather than hang; the pool keeps trying on later work.
                let pending: Vec<Unit> = self.shared.st.lock().queue.drain(..).collect();
                for u in pending {
                    u.sink.deliver(u.first, u.n, Err(e.clone()));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn terminate(mut self) {
        // (signal all, then wait for all: the workers die in parallel)
        for w in &self.workers {
            w.stop(Stop::Kill);
        }
        for w in &mut self.workers {
            w.reap(Stop::Kill);
        }
        let (busy, pending): (Vec<Busy>, Vec<Unit>) = {
            let mut st = self.shared.st.lock();
            let busy = st.lanes.iter_mut().flat_map(|l| l.busy.drain(..)).collect();
            (busy, st.queue.drain(..).collect())
        };
        for u in busy.into_iter().map(|b| b.unit).chain(pending) {
            u.sink.deliver(u.first, u.n, Err(PoolError::Terminated));
        }
    }

    fn retire_all(mut self) {
        for w in &self.workers {
            w.stop(Stop::Retire);
        }
        for w in &mut self.workers {
            w.reap(Stop::Retire);
        }
    }
}

/// A pool of worker processes: Python's `multiprocessing.Pool`.
///
/// Tasks are plain functions `fn(A) -> R` (or non-capturing closures) with serde arguments and
/// results. Beyond Python: a worker that dies mid-task (segfault, `abort`, OOM kill, `SIGKILL`)
/// fails only that task with [`PoolError::WorkerDied`] and is replaced; a task can be given a
/// timeout; a panic comes back as [`PoolError::Panic`] with the worker-side backtrace; the pool
/// never hangs. Dropping the pool terminates it and reaps its workers (like `with Pool() as p:`).
///
/// ```no_run
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc_process::init(); // first thing in main
/// let pool = multiproc_pool::Pool::new(4).unwrap();
/// let squares = pool.map(square, 0..10u64).unwrap();
/// assert_eq!(squares[9], 81);
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    size: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.size)
            .field("state", &self.shared.st.lock().run)
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
        .unwrap_or(Err(PoolError::Serialization("no result".into())))
}

impl Pool {
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
        }
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.size
    }

    /// The pids of the current worker processes (empty for a thread pool). Workers that died
    /// or were retired are replaced, so the list changes over time.
    pub fn pids(&self) -> Vec<u32> {
        self.shared.pids.lock().clone()
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
            batch.push(Unit {
                first,
                n,
                payload: chunk_call(f, &chunk)?,
                sink: sink.clone(),
            });
            first += n;
            if batch.len() >= flush_at {
                self.shared.submit(std::mem::take(&mut batch))?;
                flush_at *= 2;
            }
        }
        if !batch.is_empty() {
            self.shared.submit(batch)?;
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
        progress: Option<Box<dyn Fn(usize, usize) + Send + Sync>>,
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
        progress: Option<Box<dyn Fn(usize, usize) + Send + Sync>>,
    ) -> Result<(), PoolError> {
        let chunksize = chunksize.unwrap_or_else(|| default_chunksize(len, self.size));
        let sink = MapSink::new(len, cell.clone(), finish, progress);
        let n = self.submit_chunks(f, items, chunksize, sink.clone())?;
        sink.submitted(n);
        Ok(())
    }

    fn check_running(&self) -> Result<(), PoolError> {
        match self.shared.st.lock().run {
            RunState::Running => Ok(()),
            RunState::Closed => Err(PoolError::Closed),
            RunState::Terminated => Err(PoolError::Terminated),
        }
    }

    /// Run `f(arg)` in a worker and wait for the result.
    pub fn apply<A: Data, R: Data>(&self, f: fn(A) -> R, arg: A) -> Result<R, PoolError> {
        self.apply_async(f, arg)?.get(None)
    }

    /// Run `f(arg)` in a worker; the result arrives in the returned [`AsyncResult`].
    pub fn apply_async<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<AsyncResult<R>, PoolError> {
        self.map_into(f, vec![arg], Some(1), Cell::new(None, None), first_of, None)
    }

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

    /// Apply `f` to every item, in parallel, and return the results in order. The first
    /// failed task's error is returned (the other tasks still run to completion). Chunks of
    /// Python's default size (about four per worker).
    pub fn map<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, PoolError> {
        self.map_async(f, items, None)?.get(None)
    }

    /// [`map`](Self::map) with an explicit chunk size.
    pub fn map_chunked<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError> {
        self.map_async(f, items, Some(chunksize))?.get(None)
    }

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

    /// [`map_async`](Self::map_async) with Python's `callback` (called with all the results,
    /// in order) and `error_callback` (called with the first failed task's error), run on the
    /// pool's result thread before the result becomes ready. Also Python's `starmap_async` with
    /// callbacks: a tuple is the argument.
    ///
    /// ```no_run
    /// use std::sync::mpsc;
    /// fn double(x: i32) -> i32 { 2 * x }
    /// let pool = multiproc_pool::Pool::new(2).unwrap();
    /// let (tx, rx) = mpsc::channel();
    /// let r = pool
    ///     .map_async_with(double, 1..=3, None, move |v: &Vec<i32>| tx.send(v.iter().sum::<i32>()).unwrap(), |_| {})
    ///     .unwrap();
    /// assert_eq!(r.get(None).unwrap(), [2, 4, 6]);
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

    /// Apply `f` to every item and keep every task's own outcome: one failure does not hide
    /// the other results (the crash-resistant way to map).
    pub fn map_each<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<Vec<Result<R, PoolError>>, PoolError> {
        self.map_into(f, items, chunksize, Cell::new(None, None), keep_each, None)?
            .get(None)
    }

    /// [`map`](Self::map) that reports progress: `progress(done, total)` is called on the
    /// pool's result thread each time a chunk completes (drive a progress bar from it).
    pub fn map_with_progress<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        progress: impl Fn(usize, usize) + Send + Sync + 'static,
    ) -> Result<Vec<R>, PoolError> {
        self.map_into(
            f,
            items,
            chunksize,
            Cell::new(None, None),
            collect_all,
            Some(Box::new(progress)),
        )?
        .get(None)
    }

    /// Python's `starmap`: our tasks take one argument, so a tuple *is* the argument list;
    /// `starmap` is [`map`](Self::map) over tuples, kept for familiarity.
    ///
    /// ```no_run
    /// fn add((a, b): (i32, i32)) -> i32 { a + b }
    /// let pool = multiproc_pool::Pool::new(2).unwrap();
    /// assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)]).unwrap(), [3, 7]);
    /// ```
    pub fn starmap<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, PoolError> {
        self.map(f, items)
    }

    /// [`starmap`](Self::starmap) without waiting.
    pub fn starmap_async<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError> {
        self.map_async(f, items, chunksize)
    }

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

    /// Like [`imap`](Self::imap), but yielding results in completion order.
    pub fn imap_unordered<A: Data, R: Data, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<IMapIter<'_, A, R, I::IntoIter>, PoolError> {
        self.imap_impl(f, items, chunksize, true)
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
            window: self.size * MAX_DEPTH * 2,
            failed: None,
        })
    }

    /// Stop accepting tasks; workers leave once the queued work is done. See [`join`](Self::join).
    pub fn close(&self) {
        let mut st = self.shared.st.lock();
        if st.run == RunState::Running {
            st.run = RunState::Closed;
        }
        drop(st);
        self.shared.nudge();
    }

    /// Stop now: kill the workers, fail unfinished tasks with [`PoolError::Terminated`], and
    /// wait until every worker is reaped.
    pub fn terminate(&self) {
        self.shared.st.lock().run = RunState::Terminated;
        self.shared.nudge();
        self.join_dispatcher();
    }

    /// Wait for the workers to finish after [`close`](Self::close) or
    /// [`terminate`](Self::terminate); [`PoolError::StillRunning`] otherwise.
    pub fn join(&self) -> Result<(), PoolError> {
        if self.shared.st.lock().run == RunState::Running {
            return Err(PoolError::StillRunning);
        }
        self.join_dispatcher();
        Ok(())
    }

    fn join_dispatcher(&self) {
        if let Some(h) = self.dispatcher.lock().take() {
            let _ = h.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`]: one `Result` per input item.
pub struct IMapIter<'p, A, R, I> {
    pool: &'p Pool,
    f: fn(A) -> R,
    input: Option<I>,
    chunksize: usize,
    sink: Arc<StreamSink<R>>,
    submitted_items: usize,
    /// Encoded bytes of the units submitted (for the look-ahead's byte budget).
    submitted_bytes: usize,
    yielded: usize,
    /// Units read ahead at most.
    window: usize,
    /// The chunk being read from the input (one buffer, reused).
    chunk: Vec<A>,
    failed: Option<PoolError>,
}

/// Encoded input an `imap` reads ahead at most (about: units of the average size so far).
const LOOKAHEAD_BYTES: usize = 16 << 20;

impl<A, R, I> std::fmt::Debug for IMapIter<'_, A, R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMapIter")
            .field("submitted", &self.submitted_items)
            .field("yielded", &self.yielded)
            .finish()
    }
}

impl<A: Data, R: Data, I: Iterator<Item = A>> IMapIter<'_, A, R, I> {
    /// Whether the look-ahead (items read and not yet yielded) is under `1/div` of its bounds
    /// with `items` more items of `bytes` more bytes read.
    fn under(&self, div: usize, items: usize, bytes: usize) -> bool {
        let all = self.submitted_items + items;
        let ahead = all - self.yielded;
        // Two chunks per worker are always allowed, however large: every worker busy.
        if ahead * div < 2 * self.pool.size * self.chunksize {
            return true;
        }
        let avg = (self.submitted_bytes + bytes).checked_div(all).unwrap_or(0);
        ahead * div < self.window * self.chunksize && ahead * avg * div < LOOKAHEAD_BYTES
    }

    fn top_up(&mut self) {
        // Refill only once half the window is free: fewer, larger submissions.
        if !self.under(2, 0, 0) {
            return;
        }
        let mut batch = Vec::new();
        let mut items = 0;
        let mut bytes = 0;
        while self.under(1, items, bytes) {
            let Some(input) = self.input.as_mut() else {
                break;
            };
            // Reading the input happens here, in the caller's thread: a panic in the
            // iterator propagates to the caller, as an exception would in Python.
            self.chunk.clear();
            self.chunk.extend(input.by_ref().take(self.chunksize));
            if self.chunk.is_empty() {
                self.input = None;
                break;
            }
            let n = self.chunk.len();
            let sink: Arc<dyn Sink> = self.sink.clone();
            match chunk_call(self.f, &self.chunk) {
                Ok(payload) => {
                    bytes += payload.len();
                    batch.push(Unit {
                        first: self.submitted_items + items,
                        n,
                        payload,
                        sink,
                    });
                    items += n;
                }
                Err(e) => {
                    self.failed = Some(e);
                    self.input = None;
                    break;
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        match self.pool.shared.submit(batch) {
            Ok(()) => {
                self.submitted_items += items;
                self.submitted_bytes += bytes;
            }
            Err(e) => {
                self.failed = Some(e);
                self.input = None;
            }
        }
    }
}

impl<A: Data, R: Data, I: Iterator<Item = A>> Iterator for IMapIter<'_, A, R, I> {
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.top_up();
        let mut st = self.sink.st.lock();
        loop {
            let got = if st.unordered {
                st.arrived.pop_front()
            } else {
                st.ordered.remove(&self.yielded)
            };
            if let Some(r) = got {
                self.yielded += 1;
                drop(st);
                self.top_up();
                return Some(r);
            }
            if self.yielded >= self.submitted_items && self.input.is_none() {
                return self.failed.take().map(Err);
            }
            self.sink.cv.wait(&mut st);
        }
    }
}

/// A pool of worker *threads* with the same API as [`Pool`]: for I/O-bound work, and to compare.
/// Tasks still travel as serialized calls, so the code moves between the two unchanged; there
/// is no `task_timeout` (a thread cannot be killed).
///
/// ```
/// fn shout(s: String) -> String { s.to_uppercase() }
/// let pool = multiproc_pool::ThreadPool::new(2).unwrap();
/// assert_eq!(pool.map(shout, vec!["a".to_string(), "b".to_string()]).unwrap(), ["A", "B"]);
/// ```
pub struct ThreadPool(Pool);

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ThreadPool").field(&self.0.size).finish()
    }
}

impl ThreadPool {
    /// A pool of `threads` worker threads.
    pub fn new(threads: usize) -> Result<ThreadPool, PoolError> {
        ThreadPool::builder()
            .processes(threads)
            .build()
            .map(ThreadPool)
    }

    /// Configure a thread pool (`task_timeout` is refused at `build`).
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            threads: true,
            ..Pool::builder()
        }
    }
}

impl std::ops::Deref for ThreadPool {
    type Target = Pool;
    fn deref(&self) -> &Pool {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
