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
        Ok(Pool::from_parts(shared, dispatcher, n))
    }
}
