//! Start methods and contexts, as in `multiprocessing.get_context`.

use std::path::PathBuf;
use std::str::FromStr;

use std::sync::atomic::{AtomicU8, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::per_process::PerProcess;
use crate::{Connection, Error, Process};

/// How a child process comes to life.
///
/// * `Spawn` (the default everywhere): re-execute the current binary, which runs the task
///   instead of `main` (see [`init`](crate::init)). Safe in a multi-threaded parent.
/// * `Fork` (Unix): copy the parent. Fastest, but only the forking thread exists in the child:
///   a lock another thread held at that moment stays locked forever there, and what it was
///   writing stays half written. `start` logs a warning (through `tracing`, once per process,
///   with the thread count) when it forks a parent that has other threads, as Python 3.12
///   does. What a forked child of a multi-threaded parent may touch:
///   - multiproc itself: its state is fork-safe (processes, connections and the arguments
///     the task received, queues, locks, shared memory, pools started in the child);
///   - memory, and the allocator (glibc resets its locks at `fork`);
///   - `println!`/`eprintln!` (Rust's stdout and stderr locks are held across the fork);
///   - `tracing` macros on their default path (a subscriber's own locks are the subscriber's);
///   - **not**: any other `Mutex`, `RwLock`, `OnceLock` being initialised, channel or runtime
///     (a tokio runtime, a thread pool) that another thread of the parent uses: it may be held
///     for ever in the child, and those threads do not exist there. Do not use a runtime the
///     parent built; build a new one in the child if needed.
///
///   Prefer `Forkserver` (or `Spawn`) once the parent has threads: a `Pool` has one (its
///   dispatcher), so do an async runtime and most libraries that do I/O.
/// * `Forkserver` (Unix): a single-threaded helper, spawned on first use, forks children on
///   request. Near-fork start-up without fork's thread hazards.
///
/// ```
/// use multiproc::StartMethod;
/// assert_eq!("fork".parse::<StartMethod>().unwrap(), StartMethod::Fork);
/// assert_eq!(StartMethod::Forkserver.name(), "forkserver");
/// assert!(StartMethod::available().contains(&StartMethod::Spawn));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StartMethod {
    /// Re-execute the current binary.
    Spawn,
    /// `fork()` the current process.
    Fork,
    /// Ask a single-threaded fork server.
    Forkserver,
}

impl StartMethod {
    /// Python's name for the method.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Spawn => "spawn",
            StartMethod::Fork => "fork",
            StartMethod::Forkserver => "forkserver",
        }
    }

    /// The methods this platform offers (Python's `get_all_start_methods`).
    #[doc(alias = "get_all_start_methods")]
    pub fn available() -> &'static [StartMethod] {
        if cfg!(unix) {
            &[
                StartMethod::Spawn,
                StartMethod::Fork,
                StartMethod::Forkserver,
            ]
        } else {
            &[StartMethod::Spawn]
        }
    }
}

impl FromStr for StartMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "spawn" => Ok(StartMethod::Spawn),
            "fork" => Ok(StartMethod::Fork),
            "forkserver" => Ok(StartMethod::Forkserver),
            _ => Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("unknown start method {s:?}"),
            ))),
        }
    }
}

/// The global start method: 0 until set, then 1 + its position in `StartMethod` (lock-free,
/// so a forked child never waits for it).
static METHOD: AtomicU8 = AtomicU8::new(0);
static EXECUTABLE: PerProcess<Option<PathBuf>> =
    PerProcess::new(|parents| parents.and_then(|p| p.clone()));

const METHODS: [StartMethod; 3] = [
    StartMethod::Spawn,
    StartMethod::Fork,
    StartMethod::Forkserver,
];

/// Choose the start method for processes that do not name one. Like Python, a second call is an
/// error ([`Error::StartMethodAlreadySet`]); contexts are the way to mix methods.
///
/// ```
/// use multiproc::{set_start_method, get_start_method, StartMethod};
/// set_start_method(StartMethod::Forkserver).unwrap();
/// assert_eq!(get_start_method(), StartMethod::Forkserver);
/// assert!(set_start_method(StartMethod::Spawn).is_err());
/// ```
pub fn set_start_method(method: StartMethod) -> Result<(), Error> {
    if !StartMethod::available().contains(&method) {
        return Err(Error::StartMethodUnavailable(method));
    }
    let code = METHODS
        .iter()
        .position(|&m| m == method)
        .expect("every method is listed") as u8
        + 1;
    METHOD
        .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
        .map(drop)
        .map_err(|_| Error::StartMethodAlreadySet)
}

/// In a child: make the method it was started with its default (Python's child does
/// `set_start_method(method, force=True)`), so its own children start the same way.
pub(crate) fn adopt_start_method(method: StartMethod) {
    let code = METHODS
        .iter()
        .position(|&m| m == method)
        .expect("every method is listed") as u8
        + 1;
    METHOD.store(code, Ordering::Release);
}

/// The start method used by processes that do not name one: spawn unless set, and in a child
/// the method it was started with (as in Python), so a forked child's children are forked too.
///
/// ```
/// use multiproc::{get_start_method, StartMethod};
/// assert_eq!(get_start_method(), StartMethod::Spawn); // nothing set in this main program
/// ```
pub fn get_start_method() -> StartMethod {
    match METHOD.load(Ordering::Acquire) {
        0 => StartMethod::Spawn,
        code => METHODS[usize::from(code) - 1],
    }
}

/// Use `path` instead of the current executable for spawned children (Python's
/// `set_executable`). It must be a build of the same program that calls `multiproc::init()`;
/// a different build refuses to run tasks.
pub fn set_executable(path: impl Into<PathBuf>) {
    *EXECUTABLE.lock() = Some(path.into());
}

pub(crate) fn executable() -> std::io::Result<PathBuf> {
    match &*EXECUTABLE.lock() {
        Some(p) => Ok(p.clone()),
        None => std::env::current_exe(),
    }
}

/// A start method bound to the objects it creates, like Python's `get_context(method)`.
///
/// ```
/// use multiproc::{get_context, StartMethod};
/// fn hello(name: String) { println!("hello {name}"); }
/// multiproc::init(); // first thing in main
/// let ctx = get_context(StartMethod::Fork).unwrap();
/// let p = ctx.process(hello, "bob".to_string());
/// p.start().unwrap();
/// assert_eq!(p.join().unwrap(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

/// A [`Context`] for `method`, or an error if this platform lacks it.
pub fn get_context(method: StartMethod) -> Result<Context, Error> {
    if StartMethod::available().contains(&method) {
        Ok(Context { method })
    } else {
        Err(Error::StartMethodUnavailable(method))
    }
}

impl Context {
    /// The context's start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process that will start with this context's method.
    #[doc(alias = "Process")]
    pub fn process<A>(&self, target: fn(A), args: A) -> Process
    where
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        Process::new(target, args).start_method(self.method)
    }

    /// A pipe (the same for every start method; here for symmetry with Python's contexts).
    #[doc(alias = "Pipe")]
    pub fn pipe(&self, duplex: bool) -> Result<(Connection, Connection), Error> {
        crate::pipe(duplex)
    }
}
