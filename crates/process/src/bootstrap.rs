//! Process start-up: `init()`, the child's side of a start, and who-am-I queries.
//!
//! The parent sends the child one [`Job`] over a private socket (the *bootstrap socket*), with
//! the OS handles of the arguments attached. The child runs it and, on failure, sends back one
//! [`Report`]. The parent keeps its end open for the child's life, so the child sees end of
//! file on its end exactly when the parent is gone ([`ParentProcess::is_alive`]).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use multiproc_pickle::{Call, OsHandle as OwnedFd};
use serde::{Deserialize, Serialize};

use crate::per_process::PerProcess;
use crate::sys::{self, proc};
use crate::{Connection, Error, StartMethod};

/// What a child needs to run its task.
#[derive(Serialize, Deserialize)]
pub(crate) struct Job {
    pub call: Call,
    pub name: String,
    pub daemon: bool,
    pub identity: Vec<u32>,
    pub method: StartMethod,
    pub parent_pid: u32,
    pub parent_name: String,
}

/// What the child (or the forkserver on its behalf) tells the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Report {
    /// The task panicked.
    Panic { message: String, backtrace: String },
    /// The task was not run (different build, undecodable job, ...).
    Refused(String),
    /// Exit code of a forkserver child (from the forkserver, which reaped it).
    Exit(i32),
}

/// Who the current process is, as in Python's `current_process()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// `"MainProcess"` in the main program, `"Process-N"` (or the name given) in a child.
    pub name: String,
    /// The OS process id.
    pub pid: u32,
    /// Whether this process was started as a daemon.
    pub daemon: bool,
    /// Position in the process tree: empty for the main process, `[2]` for the second child
    /// of the main process, `[2, 1]` for that child's first child.
    pub identity: Vec<u32>,
}

struct ChildCtx {
    info: ProcessInfo,
    parent_pid: u32,
    parent_name: String,
    boot: Arc<OwnedFd>,
}

/// Who this process is, once its job is read. A process forked by someone else keeps its
/// parent's identity (if it was not being written at the fork), as in Python.
static ME: PerProcess<Option<Arc<ChildCtx>>> =
    PerProcess::new(|parents| parents.and_then(|me| me.clone()));
static COUNTER: AtomicU32 = AtomicU32::new(0);

pub(crate) fn next_identity() -> Vec<u32> {
    let mut id = ME
        .lock()
        .as_ref()
        .map(|c| c.info.identity.clone())
        .unwrap_or_default();
    id.push(COUNTER.fetch_add(1, Ordering::Relaxed) + 1);
    id
}

/// The process this code runs in.
///
/// ```
/// let me = multiproc_process::current_process();
/// assert_eq!(me.pid, std::process::id());
/// assert_eq!(me.name, "MainProcess");
/// ```
pub fn current_process() -> ProcessInfo {
    match &*ME.lock() {
        Some(c) => c.info.clone(),
        None => ProcessInfo {
            name: "MainProcess".into(),
            pid: sys::getpid(),
            daemon: false,
            identity: Vec::new(),
        },
    }
}

/// The parent of a multiproc child, as seen from the child (Python's `parent_process()`).
#[derive(Clone)]
pub struct ParentProcess {
    ctx: Arc<ChildCtx>,
}

impl std::fmt::Debug for ParentProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParentProcess")
            .field("pid", &self.pid())
            .field("name", &self.name())
            .finish()
    }
}

impl ParentProcess {
    /// The parent's pid.
    pub fn pid(&self) -> u32 {
        self.ctx.parent_pid
    }

    /// The parent's name.
    pub fn name(&self) -> &str {
        &self.ctx.parent_name
    }

    /// Whether the parent still runs (it holds the other end of our bootstrap socket).
    pub fn is_alive(&self) -> bool {
        !self.join(Some(Duration::ZERO))
    }

    /// Wait until the parent has ended or `timeout` passes; true if it has ended.
    pub fn join(&self, timeout: Option<Duration>) -> bool {
        let raw = sys::raw(sys::borrow(&self.ctx.boot));
        sys::poll_readable(&[raw], timeout)
            .map(|r| r[0])
            .unwrap_or(true)
    }
}

impl crate::Waitable for ParentProcess {
    fn wait_handle(&self) -> Option<crate::RawWaitHandle> {
        Some(sys::raw(sys::borrow(&self.ctx.boot)))
    }
}

/// The parent of this process, if it is a multiproc child.
///
/// ```
/// assert!(multiproc_process::parent_process().is_none()); // the doc test is a main process
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    ME.lock()
        .as_ref()
        .map(|ctx| ParentProcess { ctx: ctx.clone() })
}

/// Make this binary multiproc-aware. Call it first thing in `main` (or put
/// `#[multiproc::main]` on `main`, or `multiproc::test_support!()` in a test binary).
///
/// In a process started by multiproc it runs the task it was started for and exits; it never
/// returns there, so code before `init()` is the only code of `main` a child runs. In the main
/// program it arranges for children to be joined at exit (daemon children are terminated first)
/// and returns. Calling it again does nothing.
///
/// ```
/// multiproc_process::init();
/// multiproc_process::init(); // idempotent
/// ```
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Before any thread exists: forked children inherit the hook and never have to take
        // the panic-hook lock themselves (another thread of the parent may hold it at the
        // moment of the fork, and then it stays locked forever in the child).
        install_panic_hook();
        if let Some(fd) = take_env_fd(proc::BOOTSTRAP_ENV) {
            // `init` may run before Rust's runtime set-up (from `test_support!`): make a write
            // to a closed pipe an error, not a fatal signal, as in any Rust `main`.
            sys::ignore_sigpipe();
            child_main(fd)
        }
        if let Some(fd) = take_env_fd(proc::FORKSERVER_ENV) {
            sys::ignore_sigpipe();
            sys::forkserver::serve(fd, forkserver_child, report_exit)
        }
        sys::at_exit(at_exit);
    });
}

fn take_env_fd(var: &str) -> Option<OwnedFd> {
    let v = std::env::var_os(var)?;
    // Children of this process must not see it (they get their own).
    std::env::remove_var(var);
    // SAFETY: the parent put this handle in our table for us alone and named it here.
    unsafe { sys::adopt_named(v.to_str()?) }
}

extern "C" fn at_exit() {
    // Never unwind into C.
    let _ = std::panic::catch_unwind(crate::process::shutdown_children);
}

/// Entry of a forked child (fork start method, or a forkserver child).
/// Entry of a child forked by the forkserver: it reads its job from the socket.
fn forkserver_child(boot: OwnedFd) -> ! {
    child_main_after_fork(boot, None)
}

/// Entry of a forked child. The fork start method hands over the job it already holds (encoded
/// job and inherited handles); a forkserver child reads it from the socket like a spawned one.
pub(crate) fn child_main_after_fork(
    boot: OwnedFd,
    job: Option<(Vec<u8>, Vec<multiproc_pickle::OsHandle>)>,
) -> ! {
    crate::process::forget_inherited_children();
    sys::neutralize_inherited();
    sys::forkserver::forget_client();
    COUNTER.store(0, Ordering::Relaxed);
    match job {
        Some((bytes, handles)) => match multiproc_pickle::decode::<Job>(&bytes) {
            Ok(job) => run_job(boot, job, handles),
            Err(e) => refuse(&boot, format!("cannot read the task from the parent: {e}")),
        },
        None => child_main(boot),
    }
}

fn refuse(boot: &OwnedFd, msg: String) -> ! {
    tracing::error!("multiproc child: {msg}");
    report(boot, &Report::Refused(msg));
    sys::exit_now(1)
}

fn report(boot: &OwnedFd, r: &Report) {
    if let Ok(bytes) = multiproc_pickle::encode(r) {
        let (h, n) = multiproc_pickle::frame::encode_header(bytes.len());
        let _ = sys::write_all_vectored(sys::borrow(boot), &[&h[..n], &bytes]);
    }
}

fn report_exit(boot: &OwnedFd, code: i32) {
    report(boot, &Report::Exit(code));
}

fn read_job(boot: &OwnedFd) -> Result<(Job, Vec<multiproc_pickle::OsHandle>), Error> {
    let mut prefix = [0u8; 4];
    let handles = sys::recv_with_fds(sys::borrow(boot), &mut prefix, crate::process::MAX_HANDLES)?;
    let n = match multiproc_pickle::frame::parse_prefix(prefix)? {
        multiproc_pickle::frame::Prefix::Len(n) => n as usize,
        multiproc_pickle::frame::Prefix::Long => {
            return Err(multiproc_pickle::PickleError::BadFrame("job over 2 GiB".into()).into())
        }
    };
    let mut payload = Vec::with_capacity(n);
    while payload.len() < n {
        let want = n - payload.len();
        if sys::read_into_spare(sys::borrow(boot), &mut payload, want)? == 0 {
            return Err(Error::Eof);
        }
    }
    Ok((multiproc_pickle::decode(&payload)?, handles))
}

thread_local! {
    static PANIC: std::cell::RefCell<Option<(String, String)>> = const { std::cell::RefCell::new(None) };
}

/// Set in a child once its task runs: from then on the panic hook records panics (message and
/// backtrace) for the report to the parent, then prints them as usual.
static IN_JOB: AtomicBool = AtomicBool::new(false);

/// Install (once per process, inherited by forked children) the hook that records a task's
/// panic; in a process that is not running a task it only calls the previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_JOB.load(Ordering::Acquire) {
                let payload = info.payload();
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "Box<dyn Any>".into());
                let at = info
                    .location()
                    .map(|l| format!("at {}:{}:{}\n", l.file(), l.line(), l.column()))
                    .unwrap_or_default();
                let bt = std::backtrace::Backtrace::capture();
                PANIC.with(|p| *p.borrow_mut() = Some((msg, format!("{at}{bt}"))));
            }
            default_hook(info);
        }));
    });
}

fn child_main(boot: OwnedFd) -> ! {
    match read_job(&boot) {
        Ok((job, handles)) => run_job(boot, job, handles),
        Err(Error::Eof) => sys::exit_now(1), // the parent went away before sending the job
        Err(e) => refuse(&boot, format!("cannot read the task from the parent: {e}")),
    }
}

fn run_job(boot: OwnedFd, job: Job, handles: Vec<multiproc_pickle::OsHandle>) -> ! {
    // Our own children are joined when the task calls `std::process::exit` too.
    sys::at_exit(at_exit);
    let boot = Arc::new(boot);
    *ME.lock() = Some(Arc::new(ChildCtx {
        info: ProcessInfo {
            name: job.name.clone(),
            pid: sys::getpid(),
            daemon: job.daemon,
            identity: job.identity.clone(),
        },
        parent_pid: job.parent_pid,
        parent_name: job.parent_name.clone(),
        boot: boot.clone(),
    }));
    if let Err(e) = job.call.check_build() {
        let msg = e.to_string();
        tracing::error!("multiproc child {}: refusing to run: {msg}", job.name);
        report(&boot, &Report::Refused(msg));
        sys::exit_now(1)
    }
    install_panic_hook();
    IN_JOB.store(true, Ordering::Release);
    // SAFETY: the job came from our parent over a private socket, and its build was checked.
    let outcome =
        std::panic::catch_unwind(AssertUnwindSafe(|| unsafe { job.call.invoke(handles) }));
    let code = match outcome {
        Ok(Ok(_)) => 0,
        Ok(Err(e)) => {
            let msg = format!("cannot run the task: {e}");
            tracing::error!("multiproc child {}: {msg}", job.name);
            report(&boot, &Report::Refused(msg));
            1
        }
        Err(_) => {
            let (message, backtrace) = PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| ("unknown panic".into(), String::new()));
            report(&boot, &Report::Panic { message, backtrace });
            1
        }
    };
    crate::process::shutdown_children();
    sys::exit_now(code)
}

/// Read what a child reported on the parent's end of its bootstrap socket. With `until_exit`,
/// block until the forkserver's exit report (returned as its code).
pub(crate) fn read_reports(conn: &Connection, until_exit: bool) -> (Option<Report>, Option<i32>) {
    let mut failure = None;
    loop {
        match conn.recv_bytes() {
            Ok(bytes) => match multiproc_pickle::decode::<Report>(&bytes) {
                Ok(Report::Exit(code)) => return (failure, Some(code)),
                Ok(r) => failure = Some(r),
                Err(e) => {
                    tracing::warn!("undecodable report from a child: {e}");
                    return (failure, None);
                }
            },
            Err(e) if e.is_would_block() && !until_exit => return (failure, None),
            Err(e) if e.is_would_block() => {
                let _ = conn.poll(Some(Duration::from_millis(100)));
            }
            Err(_) => return (failure, None),
        }
    }
}
