//! The driver: the [`Backend`] of a pool whose workers read a Redis stream. Units become
//! entries of the build's tasks stream; a reader thread reads this driver's results stream,
//! delivers each sequence number's first answer (later ones are duplicates of an
//! at-least-once execution and are dropped), keeps the driver's liveness key alive, and
//! re-submits what Redis lost (a restart without persistence, or a stall past the key's TTL).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc_pickle::{PickleError, SharedError};
use parking_lot::{Condvar, Mutex};
use redis::{Connection, Value};

use super::conn::{self, Entry};
use super::keys::{new_driver_id, Keys};
use super::sign::Signer;
use super::{scripts, RedisConfig, RedisStats};
use crate::backend::Backend;
use crate::scheduler::{RunState, Unit};
use crate::PoolError;

/// A unit on its way: in the tasks stream (or about to be), until its answer comes.
struct Pending {
    unit: Unit,
    /// Its entry in the tasks stream, once `XADD` said.
    entry: Option<String>,
    /// Whether the `XADD` went through (else the reader thread sends it again).
    sent: bool,
}

struct State {
    run: RunState,
    next_seq: u64,
    outstanding: HashMap<u64, Pending>,
    /// The reader thread has stopped and the keys are cleaned up.
    finished: bool,
}

#[derive(Default)]
struct Counters {
    submitted: AtomicU64,
    resubmitted: AtomicU64,
    redelivered: AtomicU64,
    duplicates: AtomicU64,
    lost: AtomicU64,
    recoveries: AtomicU64,
    rejected: AtomicU64,
}

struct Inner {
    cfg: RedisConfig,
    keys: Keys,
    id: String,
    signer: Option<Signer>,
    client: redis::Client,
    /// The connection `submit` writes on; `None` after an error, until the next submit.
    conn: Mutex<Option<Connection>>,
    st: Mutex<State>,
    /// Signalled when nothing is outstanding any more.
    idle: Condvar,
    stop: AtomicBool,
    /// Some unit's `XADD` failed: the reader thread sends the unsent ones again.
    dirty: AtomicBool,
    /// The reader connection's `CLIENT ID`, to unblock its `XREAD` at terminate (0: unknown).
    reader_id: AtomicU64,
    n: Counters,
}

/// The Redis Streams backend of a [`Pool`](crate::Pool).
pub(crate) struct Driver {
    inner: Arc<Inner>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

/// A [`PoolError::Start`] with a Redis error as its cause.
fn start_err(e: redis::RedisError) -> PoolError {
    PoolError::start(e)
}

fn encode_err(msg: String) -> PoolError {
    PoolError::Serialization(SharedError::new(PickleError::Encode(msg)))
}

impl Driver {
    /// Connect, announce this driver, find the workers; the number of workers to size chunks
    /// by (the `processes` asked for, or the live workers of this build).
    pub fn start(cfg: RedisConfig, processes: Option<usize>) -> Result<(Driver, usize), PoolError> {
        let signer = Signer::new(cfg.authkey.as_deref());
        let keys = Keys::new(&cfg.cluster, signer.as_ref())?;
        let client = conn::client(&cfg.url).map_err(start_err)?;
        let mut c = conn::connect(&client).map_err(start_err)?;
        let id = new_driver_id();
        conn::ensure_group(&mut c, &keys.tasks()).map_err(start_err)?;
        announce(&mut c, &keys, &id, cfg.driver_ttl).map_err(start_err)?;
        let size = match processes {
            Some(n) => n,
            None => discover(&mut c, &keys, &cfg)?,
        };
        let inner = Arc::new(Inner {
            cfg,
            keys,
            id,
            signer,
            client,
            conn: Mutex::new(Some(c)),
            st: Mutex::new(State {
                run: RunState::Running,
                next_seq: 0,
                outstanding: HashMap::new(),
                finished: false,
            }),
            idle: Condvar::new(),
            stop: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            reader_id: AtomicU64::new(0),
            n: Counters::default(),
        });
        let i2 = inner.clone();
        let reader = std::thread::Builder::new()
            .name("multiproc-redis".into())
            .spawn(move || i2.read_loop())
            .map_err(PoolError::start)?;
        tracing::debug!(driver = %inner.id, build = %inner.keys.build, size, "redis pool started");
        Ok((
            Driver {
                inner,
                reader: Mutex::new(Some(reader)),
            },
            size,
        ))
    }

    fn stop_reader(&self) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.unblock_reader();
        if let Some(h) = self.reader.lock().take() {
            let _ = h.join();
        }
    }

    /// Stop the reader and remove this driver's keys and leftover entries (best effort: with
    /// Redis gone, workers skip the entries once the liveness key expires).
    fn finish(&self, leftover: Vec<String>) {
        self.stop_reader();
        let mut st = self.inner.st.lock();
        if st.finished {
            return;
        }
        st.finished = true;
        drop(st);
        let i = &self.inner;
        let cleanup = || -> redis::RedisResult<()> {
            let mut c = i
                .client
                .get_connection_with_timeout(Duration::from_millis(500))?;
            c.set_read_timeout(Some(Duration::from_secs(1)))?;
            let mut p = redis::pipe();
            p.cmd("DEL").arg(i.keys.driver(&i.id)).ignore();
            p.cmd("DEL").arg(i.keys.results(&i.id)).ignore();
            for chunk in leftover.chunks(512) {
                p.cmd("XDEL").arg(i.keys.tasks()).arg(chunk).ignore();
            }
            p.query::<()>(&mut c)
        };
        if let Err(e) = cleanup() {
            tracing::debug!("redis pool cleanup: {e}");
        }
    }
}

/// Create this driver's results stream (a first entry without a sequence number, which the
/// reader skips) and its liveness key.
fn announce(c: &mut Connection, keys: &Keys, id: &str, ttl: Duration) -> redis::RedisResult<()> {
    redis::pipe()
        .cmd("XADD")
        .arg(keys.results(id))
        .arg("*")
        .arg("hello")
        .arg(id)
        .ignore()
        .cmd("SET")
        .arg(keys.driver(id))
        .arg(1)
        .arg("PX")
        .arg(ttl.as_millis() as u64)
        .ignore()
        .query(c)
}

/// The live workers of this build and of other builds.
pub(crate) fn live_workers(c: &mut Connection, keys: &Keys) -> redis::RedisResult<(usize, usize)> {
    let members: Vec<String> = scripts::live().key(keys.workers()).invoke(c)?;
    let ours = members
        .iter()
        .filter(|m| m.split('|').next() == Some(keys.build.as_str()))
        .count();
    Ok((ours, members.len() - ours))
}

/// Wait (up to the discovery timeout) for a live worker of this build; their number, once it
/// has stayed the same for a moment (workers of one supervisor register within milliseconds
/// of each other).
fn discover(c: &mut Connection, keys: &Keys, cfg: &RedisConfig) -> Result<usize, PoolError> {
    const SETTLE: Duration = Duration::from_millis(200);
    let deadline = Instant::now() + cfg.discover_timeout;
    let mut seen: Option<(usize, Instant)> = None;
    loop {
        let (ours, others) = live_workers(c, keys).map_err(start_err)?;
        match seen {
            Some((n, since))
                if n == ours && (since.elapsed() >= SETTLE || Instant::now() >= deadline) =>
            {
                return Ok(n)
            }
            Some((n, _)) if n == ours => {}
            _ if ours > 0 => seen = Some((ours, Instant::now())),
            _ => seen = None,
        }
        if seen.is_none() && Instant::now() >= deadline {
            return Err(PoolError::NoWorkers {
                cluster: cfg.cluster.clone(),
                build: keys.build.clone(),
                others,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Inner {
    /// Give sequence numbers to `units`, keep them, and `XADD` them in one round trip. Units of
    /// a closed pool are accepted when `internal` (the parts of a split chunk).
    fn submit(&self, units: Vec<Unit>, internal: bool) -> Result<(), PoolError> {
        for u in &units {
            if !u.handles.is_empty() {
                return Err(encode_err(
                    "task arguments that own OS handles (pipes, locks, shared memory) cannot \
                     travel to the workers of a Redis pool"
                        .into(),
                ));
            }
            if u.payload.len() > self.cfg.max_entry_bytes {
                return Err(encode_err(format!(
                    "a chunk of {} bytes is over the Redis pool's entry limit of {} bytes: use a \
                     smaller chunksize or raise max_entry_bytes",
                    u.payload.len(),
                    self.cfg.max_entry_bytes
                )));
            }
        }
        let mut pipe = redis::pipe();
        let mut seqs = Vec::with_capacity(units.len());
        {
            let mut st = self.st.lock();
            match st.run {
                RunState::Running => {}
                RunState::Closed if internal => {}
                RunState::Closed => return Err(PoolError::Closed),
                RunState::Terminated => return Err(PoolError::Terminated),
            }
            for unit in units {
                let seq = st.next_seq;
                st.next_seq += 1;
                self.add_cmd(&mut pipe, seq, &unit.payload);
                seqs.push(seq);
                st.outstanding.insert(
                    seq,
                    Pending {
                        unit,
                        entry: None,
                        sent: false,
                    },
                );
            }
        }
        self.n
            .submitted
            .fetch_add(seqs.len() as u64, Ordering::Relaxed);
        self.send(&pipe, &seqs);
        Ok(())
    }

    fn add_cmd(&self, pipe: &mut redis::Pipeline, seq: u64, payload: &[u8]) {
        pipe.cmd("XADD")
            .arg(self.keys.tasks())
            .arg("*")
            .arg("d")
            .arg(&self.id)
            .arg("s")
            .arg(seq)
            .arg("m")
            .arg(self.cfg.max_deliveries)
            .arg("c")
            .arg(payload);
        if let Some(s) = &self.signer {
            pipe.arg("h")
                .arg(s.sign_task(&self.id, seq, self.cfg.max_deliveries as u64, payload));
        }
    }

    /// Send a pipeline of `XADD`s and note the entries; on failure leave the units unsent
    /// for the reader thread.
    fn send(&self, pipe: &redis::Pipeline, seqs: &[u64]) {
        let mut c = self.conn.lock();
        let reply = (|| {
            if c.is_none() {
                *c = Some(conn::connect(&self.client)?);
            }
            pipe.query::<Vec<Value>>(c.as_mut().expect("connected just above"))
        })();
        match reply {
            Ok(ids) => {
                drop(c);
                let mut st = self.st.lock();
                for (seq, id) in seqs.iter().zip(&ids) {
                    if let Some(p) = st.outstanding.get_mut(seq) {
                        p.entry = conn::text(id).map(str::to_string);
                        p.sent = true;
                    }
                }
            }
            Err(e) => {
                *c = None;
                tracing::warn!("redis pool: cannot submit ({e}); retrying when Redis is back");
                self.dirty.store(true, Ordering::Release);
                self.unblock_reader();
            }
        }
    }

    /// Send again every unit whose `XADD` did not go through.
    fn resubmit_unsent(&self) {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut pipe = redis::pipe();
        let mut seqs = Vec::new();
        {
            let st = self.st.lock();
            let mut unsent: Vec<(&u64, &Pending)> =
                st.outstanding.iter().filter(|(_, p)| !p.sent).collect();
            unsent.sort_by_key(|(s, _)| **s);
            for (seq, p) in unsent {
                self.add_cmd(&mut pipe, *seq, &p.unit.payload);
                seqs.push(*seq);
            }
        }
        if seqs.is_empty() {
            return;
        }
        tracing::info!("redis pool: submitting {} units again", seqs.len());
        self.n
            .resubmitted
            .fetch_add(seqs.len() as u64, Ordering::Relaxed);
        self.send(&pipe, &seqs);
    }

    /// Wake the reader out of its blocking `XREAD` (after a failed submit, at terminate).
    fn unblock_reader(&self) {
        let id = self.reader_id.load(Ordering::Acquire);
        if id == 0 {
            return;
        }
        let unblock = || -> redis::RedisResult<()> {
            let mut c = self
                .client
                .get_connection_with_timeout(Duration::from_millis(500))?;
            c.set_read_timeout(Some(Duration::from_secs(1)))?;
            redis::cmd("CLIENT")
                .arg("UNBLOCK")
                .arg(id)
                .query::<Value>(&mut c)
                .map(drop)
        };
        let _ = unblock();
    }

    /// Redis lost this driver's keys (a restart without persistence, or the driver stalled
    /// past its TTL and workers dropped its tasks as orphans): make them again and send every
    /// outstanding unit again (answers already on their way are dropped as duplicates).
    fn recover(&self, c: &mut Connection) -> redis::RedisResult<()> {
        tracing::warn!(driver = %self.id, "redis pool: the driver's keys are gone; re-submitting");
        self.n.recoveries.fetch_add(1, Ordering::Relaxed);
        conn::ensure_group(c, &self.keys.tasks())?;
        announce(c, &self.keys, &self.id, self.cfg.driver_ttl)?;
        let mut st = self.st.lock();
        for p in st.outstanding.values_mut() {
            p.sent = false;
        }
        drop(st);
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Renew the liveness key; recover when it was gone.
    fn refresh(&self, c: &mut Connection) -> redis::RedisResult<()> {
        let old: Value = redis::cmd("SET")
            .arg(self.keys.driver(&self.id))
            .arg(1)
            .arg("PX")
            .arg(self.cfg.driver_ttl.as_millis() as u64)
            .arg("GET")
            .query(c)?;
        if old == Value::Nil {
            self.recover(c)?;
        }
        Ok(())
    }

    /// The reader thread.
    fn read_loop(&self) {
        let results = self.keys.results(&self.id);
        let block =
            (self.cfg.driver_ttl / 3).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut c: Option<Connection> = None;
        let mut last = "0-0".to_string();
        let mut next_refresh = Instant::now() + block;
        let mut backoff = Duration::from_millis(10);
        let mut since_trim = 0usize;
        // Answers read at once: at most 512 MiB of entries of the largest size allowed.
        let read_count = ((512usize << 20) / self.cfg.max_entry_bytes.max(1)).clamp(8, 1024);
        while !self.stop.load(Ordering::Acquire) {
            let Some(con) = c.as_mut() else {
                match conn::connect(&self.client).and_then(|mut con| {
                    let id: u64 = redis::cmd("CLIENT").arg("ID").query(&mut con)?;
                    self.reader_id.store(id, Ordering::Release);
                    self.refresh(&mut con)?;
                    Ok(con)
                }) {
                    Ok(con) => {
                        c = Some(con);
                        backoff = Duration::from_millis(10);
                        next_refresh = Instant::now() + block;
                    }
                    Err(e) => {
                        tracing::debug!("redis pool: reconnecting: {e}");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                    }
                }
                continue;
            };
            let step = (|| -> redis::RedisResult<()> {
                if Instant::now() >= next_refresh {
                    let before = self.n.recoveries.load(Ordering::Relaxed);
                    self.refresh(con)?;
                    if self.n.recoveries.load(Ordering::Relaxed) != before {
                        last = "0-0".into();
                    }
                    next_refresh = Instant::now() + block;
                }
                self.resubmit_unsent();
                let v: Value = redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(read_count)
                    .arg("BLOCK")
                    .arg(block.as_millis() as u64)
                    .arg("STREAMS")
                    .arg(&results)
                    .arg(&last)
                    .query(con)?;
                let entries = conn::read_reply(v);
                since_trim += entries.len();
                let mut woken: Vec<Arc<dyn crate::result::Sink>> = Vec::new();
                for e in entries {
                    last.clone_from(&e.id);
                    self.handle(e, &mut woken);
                }
                for s in woken {
                    s.wake();
                }
                if self.st.lock().outstanding.is_empty() {
                    self.idle.notify_all();
                }
                if since_trim >= 1024 {
                    since_trim = 0;
                    redis::cmd("XTRIM")
                        .arg(&results)
                        .arg("MINID")
                        .arg(&last)
                        .query::<Value>(con)?;
                }
                Ok(())
            })();
            if let Err(e) = step {
                if !self.stop.load(Ordering::Acquire) {
                    tracing::debug!("redis pool: reader: {e}");
                }
                c = None;
            }
        }
    }

    /// One entry of the results stream.
    fn handle(&self, mut e: Entry, woken: &mut Vec<Arc<dyn crate::result::Sink>>) {
        let Some(seq) = e.number("s") else {
            return; // the first entry, or not ours
        };
        let deliveries = e.number("n").unwrap_or(1);
        let lost = e.field("k") == Some(b"l");
        // (a "lost" report comes from the reclaim script, inside Redis, which has no key)
        if let (Some(s), false) = (&self.signer, lost) {
            let (r, h) = (e.field("r").unwrap_or_default(), e.field("h"));
            if !s.verify_reply(&self.id, seq, r, h.unwrap_or_default()) {
                self.n.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "redis pool: dropping an answer to {seq} whose signature does not verify"
                );
                return;
            }
        }
        let Some(p) = self.st.lock().outstanding.remove(&seq) else {
            self.n.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if deliveries > 1 {
            self.n.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        let unit = p.unit;
        if !lost {
            let reply = e.take("r").unwrap_or_default();
            unit.sink
                .deliver_quiet(unit.first, unit.n, Ok(reply.as_slice()));
            if !woken.iter().any(|s| Arc::ptr_eq(s, &unit.sink)) {
                woken.push(unit.sink.clone());
            }
            return;
        }
        self.n.lost.fetch_add(1, Ordering::Relaxed);
        let error = PoolError::WorkerLost {
            deliveries: deliveries.min(u32::MAX as u64) as u32,
        };
        if unit.n > 1 && !unit.retried {
            // One item of the chunk kills its workers: run each item on its own, so only that
            // one fails.
            let ranges: Vec<(usize, usize)> = (0..unit.n).map(|i| (i, 1)).collect();
            match (unit.split)(&unit.payload, &[], &ranges) {
                Ok(parts) => {
                    let units = parts
                        .into_iter()
                        .enumerate()
                        .map(|(i, (payload, handles))| Unit {
                            first: unit.first + i,
                            n: 1,
                            payload,
                            handles,
                            sink: unit.sink.clone(),
                            split: unit.split,
                            retried: true,
                        })
                        .collect();
                    if self.submit(units, true).is_ok() {
                        return;
                    }
                }
                Err(e) => {
                    unit.sink.deliver(unit.first, unit.n, Err(e));
                    return;
                }
            }
        }
        unit.sink.deliver(unit.first, unit.n, Err(error));
    }
}

impl Backend for Driver {
    fn submit(&self, units: Vec<Unit>) -> Result<(), PoolError> {
        self.inner.submit(units, false)
    }

    fn run_state(&self) -> RunState {
        self.inner.st.lock().run
    }

    fn close(&self) {
        let mut st = self.inner.st.lock();
        if st.run == RunState::Running {
            st.run = RunState::Closed;
        }
    }

    fn terminate(&self) {
        let (failed, leftover) = {
            let mut st = self.inner.st.lock();
            st.run = RunState::Terminated;
            let failed: Vec<Pending> = st.outstanding.drain().map(|(_, p)| p).collect();
            let leftover = failed.iter().filter_map(|p| p.entry.clone()).collect();
            (failed, leftover)
        };
        for p in failed {
            p.unit
                .sink
                .deliver(p.unit.first, p.unit.n, Err(PoolError::Terminated));
        }
        self.inner.idle.notify_all();
        self.finish(leftover);
    }

    fn join(&self) {
        let mut st = self.inner.st.lock();
        while st.run == RunState::Closed && !st.outstanding.is_empty() {
            self.inner.idle.wait(&mut st);
        }
        drop(st);
        self.finish(Vec::new());
    }

    fn imap_window(&self, workers: usize) -> usize {
        workers * super::IMAP_CHUNKS_PER_WORKER
    }

    fn redis_stats(&self) -> Option<RedisStats> {
        let n = &self.inner.n;
        Some(RedisStats {
            submitted: n.submitted.load(Ordering::Relaxed),
            resubmitted: n.resubmitted.load(Ordering::Relaxed),
            redelivered: n.redelivered.load(Ordering::Relaxed),
            duplicates: n.duplicates.load(Ordering::Relaxed),
            lost: n.lost.load(Ordering::Relaxed),
            recoveries: n.recoveries.load(Ordering::Relaxed),
            rejected: n.rejected.load(Ordering::Relaxed),
        })
    }
}
