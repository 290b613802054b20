//! The worker side: what runs in a pool process (or pool thread), and the one seam through which
//! the dispatcher starts workers. A worker is anything reachable through a [`Connection`] that
//! can put into the pool's inbox: it receives encoded [`Call`]s, one per chunk, on the
//! connection, and answers each with one [`Reply`] in the inbox (see `inbox`).

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Once};

use multiproc_pickle::handles::{HandleOwned, HandleRef};
use multiproc_pickle::{
    decode, decode_borrowed, decode_with_handles, encode, Bytes, Call, FnRef, OsHandle,
    PickleError, SharedError,
};
use multiproc_process::{Connection, Process, StartMethod};
use multiproc_sync::ByteQueue;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::control::{Control, Running};
use crate::inbox::{header, Kind, INLINE_MAX};
use crate::PoolError;

/// One item's outcome, as the worker reports it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome<R> {
    /// The result.
    Ok(R),
    /// The function panicked.
    Panic { message: String, backtrace: String },
    /// The result could not be encoded.
    Unserializable(String),
}

/// A worker's answer to one chunk: the encoded `Vec<Outcome<R>>`, or why the chunk could not run.
pub(crate) type Reply = Result<Bytes, String>;

thread_local! {
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
    /// In a worker: its control block and the number of the unit it runs (for `run_chunk`).
    static RUNNING: RefCell<Option<Running>> = const { RefCell::new(None) };
}

/// Install (once per process) a panic hook that records panics of pool tasks for the parent
/// instead of printing them; other panics go to the previous hook. The pool installs it in the
/// parent before starting workers, so forked workers inherit it (taking the hook lock in a
/// forked child could deadlock on a lock another parent thread held at the fork).
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_TASK.with(Cell::get) {
                return prev(info);
            }
            let msg = panic_text(info.payload());
            let at = info
                .location()
                .map(|l| format!("at {}:{}:{}\n", l.file(), l.line(), l.column()))
                .unwrap_or_default();
            let bt = std::backtrace::Backtrace::force_capture();
            LAST_PANIC.with(|l| *l.borrow_mut() = Some((msg, format!("{at}{bt}"))));
        }));
    });
}

/// A panic payload's message (`panic!` gives a `&str` or a `String`).
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".into())
}

/// What a worker sends back for a chunk (decoded by the pool): the plain results when every
/// item succeeded — the common case, compact on the wire — or one outcome per item.
#[derive(Debug, Deserialize)]
pub(crate) enum ChunkOut<R> {
    AllOk(Vec<R>),
    Mixed(Vec<Outcome<R>>),
}

/// The worker's borrowed twin of [`ChunkOut`], with the same encoding.
#[derive(Serialize)]
enum ChunkOutRef<'a, R> {
    AllOk(&'a [R]),
    Mixed(&'a [Outcome<R>]),
}

/// Run `f` on one item, catching a panic.
fn run_one<A, R>(f: fn(A) -> R, item: A) -> Outcome<R> {
    IN_TASK.with(|t| t.set(true));
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| f(item)));
    IN_TASK.with(|t| t.set(false));
    match r {
        Ok(v) => Outcome::Ok(v),
        Err(payload) => {
            let (message, backtrace) = LAST_PANIC
                .with(|l| l.borrow_mut().take())
                .unwrap_or_else(|| (panic_text(&*payload), String::new()));
            Outcome::Panic { message, backtrace }
        }
    }
}

/// Run `f` over a chunk, each item isolated: a panic or an unencodable result fails that item
/// only. Returns the encoded [`ChunkOut`]: encoded whole in one pass, and item by item only
/// when some result cannot be encoded (to tell which).
pub(crate) fn run_chunk<A: DeserializeOwned, R: Serialize>(
    (f, items): (FnRef, Vec<A>),
) -> Result<Bytes, String> {
    // SAFETY: this function only runs through `Call::invoke`, whose contract (a trusted caller
    // of the same build, fingerprint-checked) guarantees `f` was made from a `fn(A) -> R`.
    let f: fn(A) -> R = unsafe { f.resolve() };
    let n = items.len();
    let mut oks: Vec<R> = Vec::with_capacity(n);
    let mut mixed: Option<Vec<Outcome<R>>> = None;
    // (which item runs goes to the control block, for the pool to read if this process dies)
    let running = RUNNING.with(|r| r.borrow().as_ref().map(|r| (r.control.clone(), r.message)));
    for (i, item) in items.into_iter().enumerate() {
        if let Some((c, m)) = &running {
            c.mark(*m, i as u32);
        }
        match (&mut mixed, run_one(f, item)) {
            (None, Outcome::Ok(v)) => oks.push(v),
            (None, failed) => {
                let mut m: Vec<Outcome<R>> = oks.drain(..).map(Outcome::Ok).collect();
                m.push(failed);
                mixed = Some(m);
            }
            (Some(m), o) => m.push(o),
        }
    }
    if let Some((c, m)) = &running {
        c.mark(*m, n as u32);
    }
    let outcomes = match mixed {
        None => match encode(&ChunkOutRef::AllOk(&oks)) {
            Ok(b) => return Ok(Bytes(b)),
            // Some result cannot be encoded: find which, one by one.
            Err(_) => oks.into_iter().map(Outcome::Ok).collect(),
        },
        Some(m) => m,
    };
    if let Ok(b) = encode(&ChunkOutRef::Mixed(&outcomes)) {
        return Ok(Bytes(b));
    }
    let outcomes: Vec<Outcome<R>> = outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Ok(v) => match encode(&v) {
                Ok(_) => Outcome::Ok(v),
                Err(e) => Outcome::Unserializable(e.to_string()),
            },
            other => other,
        })
        .collect();
    encode(&ChunkOutRef::Mixed(&outcomes))
        .map(Bytes)
        .map_err(|e| e.to_string())
}

/// An encoded chunk (or initializer) and the OS handles its arguments own (duplicates, kept
/// by the pool until the unit is answered: a unit sent again after a worker died, or taken
/// back, still has them).
pub(crate) type Encoded = (Vec<u8>, Vec<OsHandle>);

/// The most OS handles one message can carry (`SCM_RIGHTS`).
const MAX_HANDLES: usize = 253;

/// Package a chunk of `f` applied to `items` (encoded from the slice: it arrives as the
/// `Vec<A>` that `run_chunk` takes), with the OS handles the items own.
pub(crate) fn chunk_call<A, R>(f: fn(A) -> R, items: &[A]) -> Result<Encoded, PoolError>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    encode_chunk::<A, R>(FnRef::of(f), items)
}

fn encode_chunk<A, R>(f: FnRef, items: &[A]) -> Result<Encoded, PoolError>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    let (call, handles) = Call::new_encoding_as(run_chunk::<A, R>, &(f, items))?;
    // Debug builds: fail here, not in the worker, for an argument type postcard cannot decode
    // (items that own OS handles are not checked: decoding them here would take the handles).
    // The bytes checked are the ones sent: encoding the items a second time would have effects
    // for values whose encoding has some (a manager's proxy takes a travelling reference that
    // no one would claim).
    #[cfg(debug_assertions)]
    if handles.is_empty() {
        multiproc_pickle::check_round_trip::<(FnRef, Vec<A>)>(call.args())?;
    }
    if handles.len() > MAX_HANDLES {
        return Err(PoolError::Serialization(SharedError::new(
            PickleError::Encode(format!(
            "a chunk of pool tasks owns {} OS handles, at most {MAX_HANDLES} can travel with it: \
             use a smaller chunksize",
            handles.len()
        )),
        )));
    }
    Ok((encode(&call)?, handles))
}

/// Duplicates of `handles` (for a decode, which consumes them).
pub(crate) fn duplicate(handles: &[OsHandle]) -> Result<Vec<OsHandle>, PoolError> {
    handles
        .iter()
        .map(|h| h.try_clone())
        .collect::<std::io::Result<_>>()
        .map_err(|e| PoolError::Serialization(SharedError::new(PickleError::Io(e))))
}

/// Re-encodes ranges `(first, n)` of the items of an encoded chunk (with the handles it owns),
/// each as a chunk of its own (after a worker died running it: the pool's side knows only
/// bytes, this knows the types).
pub(crate) type Resplit =
    fn(&[u8], &[OsHandle], &[(usize, usize)]) -> Result<Vec<Encoded>, PoolError>;

/// The [`Resplit`] of chunks of `fn(A) -> R`.
pub(crate) fn resplit<A, R>(
    payload: &[u8],
    handles: &[OsHandle],
    ranges: &[(usize, usize)],
) -> Result<Vec<Encoded>, PoolError>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    let call: Call = decode(payload)?;
    let (f, items): (FnRef, Vec<A>) = if handles.is_empty() {
        decode(call.args())?
    } else {
        decode_with_handles(call.args(), duplicate(handles)?)?
    };
    ranges
        .iter()
        .map(|&(first, n)| {
            let part = items
                .get(first..first + n)
                .ok_or(PoolError::InvalidArgument("a chunk's range is outside it"))?;
            encode_chunk::<A, R>(f, part)
        })
        .collect()
}

/// A chunk's results as the pool keeps them.
pub(crate) enum Chunk<R> {
    /// Every item succeeded.
    Ok(Vec<R>),
    /// One outcome per item.
    Each(Vec<Result<R, PoolError>>),
}

impl<R> Chunk<R> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Chunk::Ok(v) => v.len(),
            Chunk::Each(v) => v.len(),
        }
    }

    /// One error for each of `n` items.
    pub(crate) fn failed(n: usize, e: &PoolError) -> Chunk<R> {
        Chunk::Each((0..n).map(|_| Err(e.clone())).collect())
    }

    /// Per-item results.
    pub(crate) fn into_results(self) -> Vec<Result<R, PoolError>> {
        match self {
            Chunk::Ok(v) => v.into_iter().map(Ok).collect(),
            Chunk::Each(v) => v,
        }
    }
}

/// Decode a worker's reply.
pub(crate) fn decode_reply<R: DeserializeOwned>(reply: &[u8]) -> Result<Chunk<R>, PoolError> {
    // (the two envelopes are read in place: only the results themselves are decoded)
    let reply: Result<&[u8], String> = decode_borrowed(reply)?;
    let chunk: Result<&[u8], String> =
        decode_borrowed(reply.map_err(PoolError::WorkerSerialization)?)?;
    let out: ChunkOut<R> = decode(chunk.map_err(PoolError::WorkerSerialization)?)?;
    Ok(match out {
        ChunkOut::AllOk(v) => Chunk::Ok(v),
        ChunkOut::Mixed(outcomes) => Chunk::Each(
            outcomes
                .into_iter()
                .map(|o| match o {
                    Outcome::Ok(v) => Ok(v),
                    Outcome::Panic { message, backtrace } => {
                        Err(PoolError::Panic { message, backtrace })
                    }
                    Outcome::Unserializable(e) => Err(PoolError::WorkerSerialization(e)),
                })
                .collect(),
        ),
    })
}

/// The loop every worker runs: initializer, then chunks until the pool hangs up. Chunks come
/// on the worker's pipe; replies go to the pool's inbox (the pipe only for a large one).
fn serve(conn: &Connection, init: Option<Init>, inbox: &ByteQueue, id: u64, control: Control) {
    install_panic_hook();
    if let Some(init) = init {
        match decode::<Call>(&init.call) {
            Ok(call) => {
                // SAFETY: the initializer comes from our parent pool over a private pipe.
                if let Err(e) = unsafe { call.invoke(init.handles) } {
                    tracing::error!("pool initializer failed: {e}");
                }
            }
            Err(e) => tracing::error!("undecodable pool initializer: {e}"),
        }
    }
    // Each reply goes out at once, before the next unit starts: when a worker dies, the unit
    // at the front of its lane is the one it was running, unless it had not claimed it yet
    // (the pool relies on that, and reads the control block to tell).
    // (`recv_bytes` looks for the next task for a moment before it blocks, so a pool fed task
    // after task does not pay a wake-up per task.) The pipe's end of file tells the worker to
    // leave, also when the pool process died.
    // Units are numbered as they arrive; one the pool took back (see `control`) is skipped.
    let mut next: u32 = 0;
    RUNNING.with(|r| {
        *r.borrow_mut() = Some(Running {
            control: control.clone(),
            message: 0,
        })
    });
    // (a unit whose arguments own OS handles brings them; one taken back closes them here)
    while let Ok((bytes, handles)) = conn.recv_bytes_with_handles() {
        let m = next;
        next = next.wrapping_add(1);
        if !control.claim(m) {
            continue;
        }
        RUNNING.with(|r| {
            if let Some(r) = r.borrow_mut().as_mut() {
                r.message = m;
            }
        });
        let reply: Reply = match decode::<Call>(&bytes) {
            // SAFETY: chunks come from our parent pool over a private pipe.
            Ok(call) => unsafe { call.invoke(handles) }
                .map(Bytes)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let Ok(out) = encode(&reply) else { break };
        let sent = if out.len() <= INLINE_MAX {
            inbox
                .put_parts(&[&header(Kind::Reply, id), &out])
                .map_err(|e| e.to_string())
        } else {
            // (marker first: the dispatcher reads the pipe once it sees it)
            inbox
                .put_parts(&[&header(Kind::OnPipe, id)])
                .map_err(|e| e.to_string())
                .and_then(|()| conn.send_bytes(&out).map_err(|e| e.to_string()))
        };
        if let Err(e) = sent {
            tracing::debug!("pool worker cannot reply: {e}");
            break;
        }
    }
}

/// The pool's initializer: the encoded call and the OS handles its arguments own. The pool
/// keeps it (handles included) to start every worker, also those that replace dead ones; each
/// start gets duplicates, moved with the process-start transfer (every start method).
pub(crate) struct Init {
    pub call: Vec<u8>,
    pub handles: Vec<OsHandle>,
}

impl Init {
    /// A copy for one worker (duplicated handles).
    fn for_worker(&self) -> Result<Init, PoolError> {
        Ok(Init {
            call: self.call.clone(),
            handles: duplicate(&self.handles)?,
        })
    }
}

/// Bytes that serialize as `Bytes` does (one `serialize_bytes`), borrowed.
struct BytesRef<'a>(&'a [u8]);

impl Serialize for BytesRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl Serialize for Init {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let handles: Vec<HandleRef<'_, OsHandle>> = self.handles.iter().map(HandleRef).collect();
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&BytesRef(&self.call))?;
        t.serialize_element(&handles)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Init {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (call, handles) = <(Bytes, Vec<HandleOwned>)>::deserialize(d)?;
        Ok(Init {
            call: call.0,
            handles: handles.into_iter().map(|h| h.0).collect(),
        })
    }
}

/// What a worker process gets: its pipe, the initializer, the inbox, its id, its control
/// block.
type WorkerArgs = (Connection, Option<Init>, ByteQueue, u64, Control);

/// Entry of a pool worker process.
fn process_worker((conn, init, inbox, id, control): WorkerArgs) {
    crate::sys::crashes_end_the_process();
    serve(&conn, init, &inbox, id, control);
}

/// How a worker runs: the one seam between the dispatcher and where work happens. Local
/// processes and threads today; remote engines later implement the same four operations.
pub(crate) enum WorkerKind {
    Process(Option<StartMethod>),
    Thread,
}

pub(crate) enum Handle {
    Process(Process),
    Thread(Option<std::thread::JoinHandle<()>>),
}

/// How a worker is stopped.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stop {
    /// Killed at once (a thread is only hung up on).
    Kill,
    /// Hung up on: it leaves after its current unit.
    Retire,
}

/// A running worker, as the dispatcher sees it.
pub(crate) struct Worker {
    /// Unique in the pool: tells its inbox messages from those of the worker it replaced.
    pub id: u64,
    pub conn: Arc<Connection>,
    pub control: Control,
    pub handle: Handle,
}

impl Worker {
    pub fn start(
        kind: &WorkerKind,
        init: Option<&Init>,
        inbox: &ByteQueue,
        id: u64,
    ) -> Result<Worker, PoolError> {
        let init = init.map(Init::for_worker).transpose()?;
        let (ours, theirs) = multiproc_process::pipe(true).map_err(PoolError::start)?;
        let control = Control::new()?;
        let handle = match kind {
            WorkerKind::Process(method) => {
                let args: WorkerArgs = (theirs, init, inbox.clone(), id, control.clone());
                let p = Process::new(process_worker, args).daemon(true);
                // Python's `SpawnPoolWorker-N`: the process's own number, under the pool's name
                // (what its panics and `current_process().name` show).
                let number = p.name().trim_start_matches("Process-").to_string();
                let mut p = p.with_name(format!("PoolWorker-{number}"));
                if let Some(m) = method {
                    p = p.start_method(*m);
                }
                p.start().map_err(|e| match e {
                    multiproc_process::Error::NotInitialized => PoolError::NotInitialized,
                    e => PoolError::start(e),
                })?;
                Handle::Process(p)
            }
            WorkerKind::Thread => {
                let inbox = inbox.clone();
                let c = control.clone();
                let h = std::thread::Builder::new()
                    .name("multiproc-threadpool-worker".into())
                    .spawn(move || serve(&theirs, init, &inbox, id, c))
                    .map_err(PoolError::start)?;
                Handle::Thread(Some(h))
            }
        };
        Ok(Worker {
            id,
            conn: Arc::new(ours),
            control,
            handle,
        })
    }

    /// Kill (processes) and reap; returns the exit code (0 for threads).
    pub fn kill(&mut self) -> i32 {
        self.stop(Stop::Kill);
        self.reap(Stop::Kill)
    }

    /// Ask the worker to leave (end of file on its pipe) and reap it.
    pub fn retire(&mut self) -> i32 {
        self.stop(Stop::Retire);
        self.reap(Stop::Retire)
    }

    /// The first half of [`kill`](Self::kill) or [`retire`](Self::retire), which does not
    /// wait: to stop many workers at once, then [`reap`](Self::reap) them.
    pub fn stop(&self, how: Stop) {
        self.conn.close();
        if let (Stop::Kill, Handle::Process(p)) = (how, &self.handle) {
            let _ = p.kill();
        }
    }

    /// The second half: wait for the worker to end; its exit code (0 for threads). A thread
    /// cannot be killed: a killed one leaves after its task and is not waited for.
    pub fn reap(&mut self, how: Stop) -> i32 {
        match (&mut self.handle, how) {
            (Handle::Process(p), Stop::Kill) => p.join().unwrap_or(-9),
            (Handle::Process(p), Stop::Retire) => p.join().unwrap_or(-1),
            (Handle::Thread(h), Stop::Kill) => {
                drop(h.take());
                0
            }
            (Handle::Thread(h), Stop::Retire) => {
                if let Some(h) = h.take() {
                    let _ = h.join();
                }
                0
            }
        }
    }

    /// Whether the worker has ended, and its exit code (processes only).
    pub fn ended(&self) -> Option<i32> {
        match &self.handle {
            Handle::Process(p) => {
                if p.is_alive() {
                    None
                } else {
                    p.exitcode()
                }
            }
            Handle::Thread(_) => None,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match &self.handle {
            Handle::Process(p) => p.pid(),
            Handle::Thread(_) => None,
        }
    }
}

/// Workers started together that nobody watches yet: dropped, they are killed and reaped
/// (all signalled first, then all waited for, so they die in parallel).
pub(crate) struct Crew(pub Vec<Worker>);

impl Drop for Crew {
    fn drop(&mut self) {
        for w in &self.0 {
            w.stop(Stop::Kill);
        }
        for w in &mut self.0 {
            w.reap(Stop::Kill);
        }
    }
}
