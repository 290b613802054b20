//! [`PoolBuilder`]: a pool's settings, and starting it.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_pickle::{encode, Call};
use multiproc_process::StartMethod;
use parking_lot::Mutex;

use crate::dispatcher::Dispatcher;
use crate::inbox;
use crate::pool::{Data, Pool};
use crate::scheduler::{Lane, RunState, Shared, State};
use crate::worker::{Crew, Init, Worker, WorkerKind};
use crate::PoolError;

/// What the dispatcher needs to start and watch workers.
pub(crate) struct Config {
    pub kind: WorkerKind,
    pub init: Option<Init>,
    pub maxtasks: Option<usize>,
    pub task_timeout: Option<Duration>,
}

/// Configures a [`Pool`] (a [`ThreadPool`](crate::ThreadPool) has its own builder): Python's `Pool(processes, initializer,
/// initargs, maxtasksperchild, context)` plus a per-task timeout.
///
/// ```
/// use std::time::Duration;
/// fn setup(tag: String) { /* runs once in each worker */ let _ = tag; }
/// fn square(x: u64) -> u64 { x * x }
/// multiproc::init(); // first thing in main: without it, `build` is an error
/// let pool = multiproc::Pool::builder()
///     .processes(4)
///     .initializer(setup, "ready".to_string())
///     .maxtasksperchild(100)
///     .task_timeout(Duration::from_secs(30))
///     .build()
///     .unwrap();
/// assert_eq!(pool.map(square, 1..=3u64).unwrap(), [1, 4, 9]);
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder {
    pub(crate) processes: Option<usize>,
    pub(crate) init: Option<Result<Init, PoolError>>,
    pub(crate) maxtasks: Option<usize>,
    pub(crate) method: Option<StartMethod>,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) threads: bool,
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<crate::redis::RedisConfig>,
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

    /// Run `f(args)` once in each worker before its first task. `args` may own OS handles
    /// (a `Lock`, a `Value`, a `Queue`): every worker gets them, replacements too, on every
    /// platform.
    pub fn initializer<A: Data>(mut self, f: fn(A), args: A) -> Self {
        self.init = Some(Call::new(f, &args).map_err(PoolError::from).and_then(
            |(call, handles)| {
                Ok(Init {
                    call: encode(&call)?,
                    handles,
                })
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
    /// with [`PoolError::TaskTimeout`]. (A [`ThreadPool`](crate::ThreadPool) has none: a thread
    /// cannot be killed.)
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Start the workers.
    pub fn build(self) -> Result<Pool, PoolError> {
        #[cfg(feature = "redis")]
        if let Some(cfg) = self.redis.clone() {
            return self.build_redis(cfg);
        }
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
        // (if a start fails, or the dispatcher thread cannot start, the crew's drop kills and
        // reaps the workers started so far: no zombies)
        let mut workers = Crew(Vec::with_capacity(n));
        for id in 0..n as u64 {
            workers.0.push(Worker::start(
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
                lanes: workers
                    .0
                    .iter()
                    .map(|w| Lane::new(w.conn.clone(), w.control.clone()))
                    .collect(),
            }),
            inbox,
            wake_pending: AtomicBool::new(false),
            idle_sleep: AtomicBool::new(false),
            pids: Mutex::new(workers.0.iter().filter_map(|w| w.pid()).collect()),
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
                    workers: std::mem::take(&mut workers.0),
                    next_id: n as u64,
                    to_wake: Vec::new(),
                    last_check: Instant::now(),
                    retry_at: vec![None; n],
                }
                .run()
            })
            .map_err(PoolError::start)?;
        let engine = crate::backend::Local {
            shared,
            dispatcher: parking_lot::Mutex::new(Some(dispatcher)),
        };
        Ok(Pool::from_parts(Box::new(engine), n))
    }
}

/// The Redis backend's settings (feature `redis`, Unix).
#[cfg(feature = "redis")]
impl PoolBuilder {
    /// Run the pool's tasks on the workers of `cluster` on the Redis server at `url` (Redis
    /// 6.2 or later): this same binary, started on any host as
    /// `myapp --multiproc-worker URL --cluster CLUSTER -j N`. The whole API works as locally,
    /// with the differences and the fault semantics described under
    /// [`redis_worker_mode`](crate::redis_worker_mode)'s module, `multiproc::pool` (at least
    /// once execution, results exactly once). `processes`, if given, sizes chunks; by default
    /// `build` waits up to [`discover_timeout`](Self::discover_timeout) for live workers of
    /// this build and counts them.
    ///
    /// ```no_run
    /// fn square(x: u64) -> u64 { x * x }
    /// multiproc::init(); // first thing in main: it also runs worker mode
    /// let pool = multiproc::Pool::builder()
    ///     .redis("redis://127.0.0.1:6379", "prod")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.apply(square, 7).unwrap(), 49);
    /// ```
    pub fn redis(mut self, url: impl Into<String>, cluster: impl Into<String>) -> Self {
        let old = self.redis.take();
        let mut cfg = crate::redis::RedisConfig::new(url.into(), cluster.into());
        if let Some(old) = old {
            cfg.max_deliveries = old.max_deliveries;
            cfg.driver_ttl = old.driver_ttl;
            cfg.discover_timeout = old.discover_timeout;
            cfg.max_entry_bytes = old.max_entry_bytes;
            cfg.authkey = old.authkey;
        }
        self.redis = Some(cfg);
        self
    }

    fn redis_cfg(&mut self) -> &mut crate::redis::RedisConfig {
        self.redis
            .get_or_insert_with(|| crate::redis::RedisConfig::new(String::new(), String::new()))
    }

    /// A Redis pool: deliveries of a chunk (to workers that died or stalled past their lease)
    /// before its items are run one by one and the one that still kills its workers fails
    /// with [`PoolError::WorkerLost`] (default 3).
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.redis_cfg().max_deliveries = n;
        self
    }

    /// A Redis pool: how long the driver's liveness key lives without renewal (default
    /// 10 s, renewed every third of it). Once it expires, workers skip this pool's tasks; a
    /// driver that finds it gone submits what is outstanding again.
    pub fn driver_ttl(mut self, ttl: Duration) -> Self {
        self.redis_cfg().driver_ttl = ttl;
        self
    }

    /// A Redis pool without [`processes`](Self::processes): how long `build` waits for a live
    /// worker of this build before [`PoolError::NoWorkers`] (default 10 s).
    pub fn discover_timeout(mut self, timeout: Duration) -> Self {
        self.redis_cfg().discover_timeout = timeout;
        self
    }

    /// A Redis pool: the largest chunk, encoded, that may be submitted (default 64 MiB).
    pub fn max_entry_bytes(mut self, n: usize) -> Self {
        self.redis_cfg().max_entry_bytes = n;
        self
    }

    /// A Redis pool: sign every entry with `key` (HMAC-SHA256), and accept only answers
    /// signed with it. Its workers need the same key in `MULTIPROC_REDIS_AUTHKEY`; workers
    /// with another key, or none, never see this pool's tasks (they count as others in
    /// [`PoolError::NoWorkers`]). With it, whoever can write the cluster's Redis keys but
    /// has not the key can neither make a worker run a task nor give the pool a result.
    ///
    /// ```no_run
    /// let key = std::env::var("MULTIPROC_REDIS_AUTHKEY").unwrap();
    /// let pool = multiproc::Pool::builder()
    ///     .redis("redis://head:6379", "prod")
    ///     .authkey(key)
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> Self {
        self.redis_cfg().authkey = Some(key.as_ref().to_vec());
        self
    }

    fn build_redis(self, cfg: crate::redis::RedisConfig) -> Result<Pool, PoolError> {
        if cfg.url.is_empty() {
            return Err(PoolError::InvalidArgument(
                "max_deliveries, driver_ttl, discover_timeout, max_entry_bytes and authkey are settings of a Redis pool: call redis(url, cluster)",
            ));
        }
        let unsupported = if self.threads {
            Some("a thread pool cannot run on Redis")
        } else if self.init.is_some() {
            Some("a Redis pool has no initializer: its workers start on their own")
        } else if self.maxtasks.is_some() {
            Some("a Redis pool has no maxtasksperchild")
        } else if self.task_timeout.is_some() {
            Some("a Redis pool has no task_timeout")
        } else if self.method.is_some() {
            Some("a Redis pool's workers are started by worker mode, not by a start method")
        } else if self.processes == Some(0) {
            Some("the number of processes must be at least 1")
        } else if cfg.max_deliveries == 0 {
            Some("max_deliveries must be at least 1")
        } else if cfg.driver_ttl < Duration::from_millis(30) {
            Some("driver_ttl must be at least 30 ms")
        } else if cfg.authkey.as_ref().is_some_and(Vec::is_empty) {
            Some("an authkey must not be empty")
        } else {
            None
        };
        if let Some(why) = unsupported {
            return Err(PoolError::InvalidArgument(why));
        }
        crate::worker::install_panic_hook();
        let (driver, size) = crate::redis::Driver::start(cfg, self.processes)?;
        Ok(Pool::from_parts(Box::new(driver), size.max(1)))
    }
}
