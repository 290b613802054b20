//! The pool on Redis Streams: the same [`Pool`](crate::Pool) API, with workers on any host
//! (feature `redis`; Linux, macOS and Windows, drivers and workers alike).
//!
//! ```no_run
//! fn square(x: u64) -> u64 { x * x }
//!
//! #[multiproc::main]
//! fn main() {
//!     // Workers: this same binary, started on any machine as
//!     //     myapp --multiproc-worker redis://head:6379 --cluster prod -j 16
//!     let pool = multiproc::Pool::builder()
//!         .redis("redis://head:6379", "prod")
//!         .build()
//!         .unwrap();
//!     assert_eq!(pool.map(square, 0..1000u64).unwrap()[999], 998_001);
//! }
//! ```
//!
//! # How it works
//!
//! A *driver* (the pool in your program) adds one entry per chunk to the build's tasks stream
//! (`mp:{cluster}:{build}:tasks`, see `keys.rs` for every key); workers read it through one
//! consumer group, so each entry goes to one worker and stays in the group's pending-entries
//! list, with its delivery count, until the worker acknowledges it. A task is the function's
//! identity in the binary (the local pool's [`Call`](multiproc_pickle::Call)): the build's
//! fingerprint (ELF build-id based, the same for every copy of the file on any host) is part
//! of the stream's key, so workers of another build never see the task, and `Call::invoke`
//! checks it again.
//!
//! # Fault semantics
//!
//! | | this pool | Ray's `ray.util.multiprocessing.Pool` | CPython's `multiprocessing.Pool` |
//! |---|---|---|---|
//! | a worker dies mid-chunk | its chunk is reclaimed by another worker once its lease lapses, and runs again (at least once) | the task fails (at most once, by default) | the pool hangs: the result never comes |
//! | a chunk keeps killing workers | after `max_deliveries` (3) deliveries its items are run one per entry, and the one that kills gets [`PoolError::WorkerLost`](crate::PoolError::WorkerLost) | an error | hangs |
//! | a task panics | that item's [`PoolError::Panic`](crate::PoolError::Panic), not retried | the exception | the exception |
//! | duplicates | results reach the caller exactly once: a second answer to a sequence number is dropped | — | — |
//! | the driver dies | workers skip its leftover tasks once its liveness key expires | — | — |
//! | Redis restarts empty | the driver notices (its liveness key is gone) and submits what is missing again; workers make the group again | — | — |
//! | no workers | `build` waits `discover_timeout` for a live worker of this build, then [`PoolError::NoWorkers`](crate::PoolError::NoWorkers) (with the count for other builds) | waits | — |
//!
//! A worker holds a *lease* on the entry it runs: its heartbeat thread renews it every third
//! of a lease (`XCLAIM ... JUSTID`, only while the worker still owns the entry, checked in
//! the same script, so a worker that was stopped and lost its entry never takes it back). An
//! idle worker reclaims entries idle longer than a lease (`XAUTOCLAIM`), counting deliveries.
//! A worker posts its reply, acknowledges and deletes the entry in one script, and only while
//! it owns the entry.
//!
//! # Differences from the local pool, per call
//!
//! * `map`, `map_async`, `starmap`, `map_each`, `apply`, `apply_async` (with callbacks),
//!   chunk sizes: as locally; a chunk's results travel as one entry (at most
//!   `max_entry_bytes`, 64 MiB by default, both ways).
//! * `imap`, `imap_unordered`: the look-ahead is 16 chunks per worker (and 16 MiB), not 128:
//!   what is read ahead waits in Redis's memory.
//! * `processes` defaults to the live workers of this build (discovered through the workers
//!   set), and only sizes chunks; workers can come and go during a map.
//! * `close`, `join`: `join` waits for every submitted task's answer; `terminate` (and
//!   `Drop`) fails what is outstanding with `Terminated` and deletes this driver's entries;
//!   the workers are not stopped (they serve other drivers).
//! * Not available (an `InvalidArgument` from `build`): an initializer, `maxtasksperchild`,
//!   `task_timeout`, a start method, a thread pool; task arguments that own OS handles
//!   (pipes, locks, shared memory) are a `Serialization` error.
//!
//! # Security
//!
//! The URL passes through to the `redis` crate: `redis://user:password@host:6379/0` for
//! `AUTH` and ACL users, `rediss://` for TLS with the feature `redis-tls` (the system's TLS
//! library), on both sides (worker mode takes the same URL). Entry sizes are bounded on both
//! sides. A worker runs only functions of its own binary, named by offset and checked against
//! the build's fingerprint.
//!
//! Without an authkey, whoever can write the cluster's keys can make workers run any function
//! of that binary with arguments of their choosing, and give drivers results, as with any task
//! queue. With one ([`PoolBuilder::authkey`](crate::PoolBuilder::authkey) on the driver,
//! `MULTIPROC_REDIS_AUTHKEY` in worker mode's environment), every task and every answer is
//! signed (HMAC-SHA256 over its driver, sequence number and contents): a worker drops a task
//! that does not verify before decoding it, a driver drops such an answer (counted in
//! [`RedisStats::rejected`]), and workers with another key never read the pool's stream. Not
//! signed: the "lost" reports Redis itself writes (a forged one fails an item with
//! `WorkerLost`), liveness and registration keys. Give workers and drivers a Redis ACL user of
//! their own too, limited to `mp:{cluster}:*`.

mod conn;
pub(crate) mod driver;
mod keys;
mod scripts;
mod sign;
mod supervisor;
mod worker;

use std::time::Duration;

pub(crate) use driver::Driver;

/// Deliveries of one entry before its items are given up as [`WorkerLost`](crate::PoolError::WorkerLost).
pub(crate) const DEFAULT_MAX_DELIVERIES: u32 = 3;
/// A worker's lease on the entry it runs (worker mode's `--lease-ms`).
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// The largest entry (a chunk or its results) either side accepts.
pub(crate) const DEFAULT_MAX_ENTRY_BYTES: usize = 64 << 20;
/// How long a driver's liveness key lives without renewal.
pub(crate) const DEFAULT_DRIVER_TTL: Duration = Duration::from_secs(10);
/// How long `build` waits for a live worker of this build.
pub(crate) const DEFAULT_DISCOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// The chunks an `imap` reads ahead per worker.
pub(crate) const IMAP_CHUNKS_PER_WORKER: usize = 16;

/// A Redis pool's settings (kept by the builder).
#[derive(Debug, Clone)]
pub(crate) struct RedisConfig {
    pub url: String,
    pub cluster: String,
    pub max_deliveries: u32,
    pub driver_ttl: Duration,
    pub discover_timeout: Duration,
    pub max_entry_bytes: usize,
    /// Sign entries with this key (see `sign.rs`).
    pub authkey: Option<Vec<u8>>,
}

impl RedisConfig {
    pub(crate) fn new(url: String, cluster: String) -> RedisConfig {
        RedisConfig {
            url,
            cluster,
            max_deliveries: DEFAULT_MAX_DELIVERIES,
            driver_ttl: DEFAULT_DRIVER_TTL,
            discover_timeout: DEFAULT_DISCOVER_TIMEOUT,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            authkey: None,
        }
    }
}

/// What a Redis pool's driver counted so far ([`Pool::redis_stats`](crate::Pool::redis_stats)).
///
/// ```
/// let s = multiproc::pool::RedisStats::default();
/// assert_eq!(s.duplicates, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Chunks added to the tasks stream (the parts of split chunks included).
    pub submitted: u64,
    /// Chunks added again (after Redis lost them, or a submission failed).
    pub resubmitted: u64,
    /// Answers to chunks that had been delivered more than once (a worker died or stalled).
    pub redelivered: u64,
    /// Answers dropped because their chunk was answered already.
    pub duplicates: u64,
    /// Chunks given up after `max_deliveries` deliveries.
    pub lost: u64,
    /// Times the driver found its keys gone and submitted everything outstanding again.
    pub recoveries: u64,
    /// Answers dropped because their signature did not verify (a pool with an authkey).
    pub rejected: u64,
}

/// Worker mode: when the first argument is `--multiproc-worker`, run this binary as a
/// supervisor of Redis pool workers and exit (it never returns then); otherwise return at
/// once. `multiproc::init()` (and so `#[multiproc::main]` and `multiproc::test_support!()`)
/// calls it.
///
/// `myapp --multiproc-worker redis://HOST:PORT [--cluster NAME] [-j N] [--lease-ms MS]
/// [--max-deliveries N] [--max-entry-bytes N]`: `-j` worker processes (default: the CPU
/// count) serve the cluster's tasks of this build; a worker that ends is restarted; SIGTERM
/// or SIGINT (on Windows: Ctrl+C, Ctrl+Break, the console closing) lets each finish its chunk
/// (at most a lease), then the supervisor exits with 0.
/// Every worker of a cluster should use the same lease (default 10 s): an idle worker
/// reclaims entries idle longer than its own. With `MULTIPROC_REDIS_AUTHKEY` in the
/// environment, the workers serve only pools with that [`authkey`](crate::PoolBuilder::authkey).
///
/// ```
/// multiproc::pool::redis_worker_mode(); // not in worker mode: returns
/// ```
pub fn worker_mode() {
    supervisor::run_if_flagged();
}
