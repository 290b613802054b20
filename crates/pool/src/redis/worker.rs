//! A worker process of worker mode: reads the build's tasks stream through the consumer
//! group, runs each chunk, posts the reply to its driver's results stream; keeps its lease on
//! the entry it runs (owner-checked heartbeat), reclaims entries whose lease lapsed, skips the
//! entries of dead drivers, and registers itself in the workers set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_pickle::{decode, encode, Bytes, Call};
use parking_lot::Mutex;
use redis::{Connection, Value};
use serde::{Deserialize, Serialize};

use super::conn::{self, Entry};
use super::keys::{nonce, Keys, GROUP};
use super::scripts;
use super::sign::Signer;
use crate::sys;
use crate::worker::Reply;

/// What the supervisor hands each worker process (over its private bootstrap channel).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub url: String,
    pub cluster: String,
    pub lease_ms: u64,
    pub max_entry_bytes: usize,
    pub max_deliveries: u32,
    /// Set by the supervisor when the worker should finish its chunk and end.
    pub stop: multiproc_sync::Event,
    /// Tasks must be signed with it, and answers are.
    pub authkey: Option<Vec<u8>>,
}

/// How long a positive "this driver is alive" stays believed.
const DRIVER_CACHE: Duration = Duration::from_millis(200);

/// The entry a worker runs, for its heartbeat thread.
#[derive(Default)]
struct Beat {
    current: Mutex<Option<String>>,
    done: AtomicBool,
}

struct RedisWorker {
    args: WorkerArgs,
    keys: Keys,
    client: redis::Client,
    consumer: String,
    member: String,
    lease: Duration,
    alive: HashMap<String, Instant>,
    beat: Arc<Beat>,
    signer: Option<Signer>,
}

/// The entry point of a worker process (a multiproc child of the supervisor).
pub(crate) fn worker_process(args: WorkerArgs) {
    crate::worker::install_panic_hook();
    sys::crashes_end_the_process();
    sys::catch_termination();
    let signer = Signer::new(args.authkey.as_deref());
    let keys = match Keys::new(&args.cluster, signer.as_ref()) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("redis worker: {e}");
            return;
        }
    };
    let client = match conn::client(&args.url) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("redis worker: {e}");
            return;
        }
    };
    let consumer = format!(
        "{}|{}|{:08x}",
        sys::hostname(),
        std::process::id(),
        nonce() as u32
    );
    let member = format!("{}|{consumer}", keys.build);
    let lease = Duration::from_millis(args.lease_ms.max(30));
    let mut w = RedisWorker {
        args,
        keys,
        client,
        consumer,
        member,
        lease,
        alive: HashMap::new(),
        beat: Arc::new(Beat::default()),
        signer,
    };
    let hb = {
        let (client, keys, consumer, member, beat) = (
            w.client.clone(),
            w.keys.clone(),
            w.consumer.clone(),
            w.member.clone(),
            w.beat.clone(),
        );
        std::thread::Builder::new()
            .name("multiproc-redis-heartbeat".into())
            .spawn(move || heartbeat(&client, &keys, &consumer, &member, lease, &beat))
    };
    w.run();
    w.beat.done.store(true, Ordering::Release);
    if let Ok(h) = hb {
        let _ = h.join();
    }
}

/// Every lease/3: renew the registration (until 3 leases from now) and the lease of the
/// entry being run, if this worker still owns it. At the end, leave the workers set.
fn heartbeat(
    client: &redis::Client,
    keys: &Keys,
    consumer: &str,
    member: &str,
    lease: Duration,
    beat: &Beat,
) {
    let period = lease / 3;
    let mut c: Option<Connection> = None;
    let mut next = Instant::now();
    while !beat.done.load(Ordering::Acquire) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(5).min(period));
            continue;
        }
        next = Instant::now() + period;
        if c.is_none() {
            c = conn::connect(client).ok();
        }
        let Some(con) = c.as_mut() else { continue };
        let r = (|| -> redis::RedisResult<()> {
            scripts::register()
                .key(keys.workers())
                .arg(member)
                .arg(lease.as_millis() as u64 * 3)
                .invoke::<Value>(con)?;
            let current = beat.current.lock().clone();
            if let Some(id) = current {
                let owned: i64 = scripts::touch()
                    .key(keys.tasks())
                    .arg(GROUP)
                    .arg(consumer)
                    .arg(&id)
                    .invoke(con)?;
                if owned == 0 {
                    tracing::debug!("redis worker: lost the lease on {id}");
                }
            }
            Ok(())
        })();
        if let Err(e) = r {
            tracing::debug!("redis worker heartbeat: {e}");
            c = None;
        }
    }
    if let Some(con) = c.as_mut() {
        let _ = redis::cmd("ZREM")
            .arg(keys.workers())
            .arg(member)
            .query::<Value>(con);
    }
}

impl RedisWorker {
    /// Whether to end: the supervisor asked, or this process got SIGTERM or SIGINT (Ctrl+C in
    /// the console reaches every worker too).
    fn stopping(&self) -> bool {
        sys::terminated() || self.args.stop.is_set()
    }

    fn run(&mut self) {
        let mut c: Option<Connection> = None;
        let mut backoff = Duration::from_millis(10);
        let mut next_reclaim = Instant::now();
        let block = (self.lease / 2).min(Duration::from_millis(200));
        // The reply to the last entry run, sent in one round trip with the next read.
        let mut reply: Option<redis::Cmd> = None;
        while !self.stopping() {
            let Some(con) = c.as_mut() else {
                match conn::connect(&self.client).and_then(|mut con| {
                    conn::ensure_group(&mut con, &self.keys.tasks())?;
                    scripts::load_all(&mut con)?;
                    Ok(con)
                }) {
                    Ok(con) => {
                        c = Some(con);
                        backoff = Duration::from_millis(10);
                    }
                    Err(e) => {
                        tracing::debug!("redis worker: connecting: {e}");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                    }
                }
                continue;
            };
            let step = (|| -> redis::RedisResult<()> {
                let mut entry = None;
                if Instant::now() >= next_reclaim {
                    if let Some(r) = reply.take() {
                        r.query::<Value>(con)?;
                    }
                    entry = self.reclaim(con)?;
                    next_reclaim = if entry.is_some() {
                        Instant::now()
                    } else {
                        Instant::now() + self.lease / 2
                    };
                }
                if entry.is_none() {
                    let mut read = redis::cmd("XREADGROUP");
                    read.arg("GROUP")
                        .arg(GROUP)
                        .arg(&self.consumer)
                        .arg("COUNT")
                        .arg(1)
                        .arg("BLOCK")
                        .arg(block.as_millis() as u64)
                        .arg("STREAMS")
                        .arg(self.keys.tasks())
                        .arg(">");
                    let v: Value = match reply.take() {
                        None => read.query(con)?,
                        Some(r) => {
                            let (posted, v): (i64, Value) =
                                redis::pipe().add_command(r).add_command(read).query(con)?;
                            if posted == 0 {
                                tracing::debug!(
                                    "redis worker: an entry was reclaimed by another worker"
                                );
                            }
                            v
                        }
                    };
                    entry = conn::read_reply(v).into_iter().next();
                }
                if let Some(e) = entry {
                    reply = self.run_entry(con, e)?;
                }
                Ok(())
            })();
            if let Err(e) = step {
                if conn::is_nogroup(&e) {
                    tracing::info!("redis worker: the tasks stream is gone (a Redis restart?)");
                } else {
                    tracing::debug!("redis worker: {e}");
                    std::thread::sleep(backoff);
                }
                c = None;
            }
        }
        if let (Some(r), Some(con)) = (reply, c.as_mut()) {
            let _ = r.query::<Value>(con);
        }
    }

    /// An entry whose lease lapsed, claimed for this worker (the script reports the ones
    /// delivered too often as lost instead).
    fn reclaim(&self, con: &mut Connection) -> redis::RedisResult<Option<Entry>> {
        let v: Value = scripts::reclaim()
            .key(self.keys.tasks())
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(self.lease.as_millis() as u64)
            .arg(self.args.max_deliveries)
            .arg(self.keys.results_prefix())
            .invoke(con)?;
        let Value::Array(mut parts) = v else {
            return Ok(None);
        };
        if parts.len() != 3 {
            return Ok(None);
        }
        parts.pop(); // the delivery count
        let e = Entry::parse(Value::Array(parts));
        if let Some(e) = &e {
            tracing::debug!("redis worker: reclaimed {}", e.id);
        }
        Ok(e)
    }

    fn drop_entry(&self, con: &mut Connection, id: &str) -> redis::RedisResult<()> {
        redis::pipe()
            .cmd("XACK")
            .arg(self.keys.tasks())
            .arg(GROUP)
            .arg(id)
            .ignore()
            .cmd("XDEL")
            .arg(self.keys.tasks())
            .arg(id)
            .ignore()
            .query(con)
    }

    fn driver_alive(&mut self, con: &mut Connection, driver: &str) -> redis::RedisResult<bool> {
        if let Some(t) = self.alive.get(driver) {
            if t.elapsed() < DRIVER_CACHE {
                return Ok(true);
            }
        }
        let n: i64 = redis::cmd("EXISTS")
            .arg(self.keys.driver(driver))
            .query(con)?;
        if n > 0 {
            if self.alive.len() > 1024 {
                self.alive.retain(|_, t| t.elapsed() < DRIVER_CACHE);
            }
            self.alive.insert(driver.to_string(), Instant::now());
        } else {
            self.alive.remove(driver);
        }
        Ok(n > 0)
    }

    /// Run one entry (or drop it); the command that posts its reply, to send next.
    fn run_entry(
        &mut self,
        con: &mut Connection,
        mut e: Entry,
    ) -> redis::RedisResult<Option<redis::Cmd>> {
        let driver = e
            .text("d")
            .filter(|d| !d.is_empty() && d.len() <= 32 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_string);
        let seq = e.number("s");
        let payload = e.take("c");
        let (Some(driver), Some(seq), Some(payload)) = (driver, seq, payload) else {
            tracing::warn!("redis worker: dropping malformed entry {}", e.id);
            return self.drop_entry(con, &e.id).map(|()| None);
        };
        if let Some(s) = &self.signer {
            let max = e.number("m").unwrap_or(u64::MAX);
            let h = e.field("h").unwrap_or_default();
            if !s.verify_task(&driver, seq, max, &payload, h) {
                tracing::warn!(
                    "redis worker: dropping entry {}: its signature does not verify",
                    e.id
                );
                return self.drop_entry(con, &e.id).map(|()| None);
            }
        }
        if !self.driver_alive(con, &driver)? {
            tracing::debug!(
                "redis worker: skipping {} of the dead driver {driver}",
                e.id
            );
            return self.drop_entry(con, &e.id).map(|()| None);
        }
        let reply: Reply = if payload.len() > self.args.max_entry_bytes {
            Err(format!(
                "the task's entry has {} bytes, over this worker's limit of {}",
                payload.len(),
                self.args.max_entry_bytes
            ))
        } else {
            *self.beat.current.lock() = Some(e.id.clone());
            let r = match decode::<Call>(&payload) {
                // SAFETY: the call names a function of this very build (the stream's key
                // names the build, and `invoke` checks the fingerprint again). Whoever can
                // write the cluster's keys can make this worker run any function of its
                // binary: the Redis server's AUTH/ACL and TLS guard that (see the module docs).
                Ok(call) => unsafe { call.invoke(Vec::new()) }
                    .map(Bytes)
                    .map_err(|e| e.to_string()),
                Err(err) => Err(err.to_string()),
            };
            *self.beat.current.lock() = None;
            r
        };
        let fail = |why: String| encode(&Reply::Err(why)).unwrap_or_default();
        let out = match encode(&reply) {
            Ok(out) if out.len() > self.args.max_entry_bytes => fail(format!(
                "the chunk's results have {} bytes, over the entry limit of {}: use a smaller \
                 chunksize",
                out.len(),
                self.args.max_entry_bytes
            )),
            Ok(out) => out,
            Err(err) => fail(format!("cannot encode the reply: {err}")),
        };
        let mut cmd = scripts::evalsha(
            scripts::complete(),
            &[&self.keys.tasks(), &self.keys.results(&driver)],
        );
        let h = self
            .signer
            .as_ref()
            .map(|s| s.sign_reply(&driver, seq, &out))
            .unwrap_or_default();
        cmd.arg(GROUP)
            .arg(&self.consumer)
            .arg(&e.id)
            .arg(seq)
            .arg(out)
            .arg(h);
        Ok(Some(cmd))
    }
}
