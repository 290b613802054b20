//! Process start-up: `init()`, the child's side of a start, and who-am-I queries.
//!
//! The parent sends the child one [`Job`] over a private socket (the *bootstrap socket*), with
//! the OS handles of the arguments attached. The child runs it and, on failure, sends back one
//! [`Report`] (bounded in size, so it always fits in the socket's buffer); the parent reads
//! reports as they come ([`Reports`]), also while it waits for the child to end. The parent
//! keeps its end open for the child's life, so the child's end hangs up exactly when the parent
//! is gone ([`ParentProcess::is_alive`]); a daemon child dies then.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use multiproc_pickle::{Call, OsHandle as OwnedFd};
use serde::{Deserialize, Serialize};

use crate::per_process::PerProcess;
use crate::sys::{self, proc};
use crate::{Error, StartMethod};

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
    /// The task panicked (each text at most [`MAX_PANIC_TEXT`] bytes).
    Panic { message: String, backtrace: String },
    /// The task was not run (different build, undecodable job, ...).
    Refused(String),
    /// The child ran the program's `main` instead of its task: that `main` does not call
    /// `init`.
    NotInitialized,
    /// A forkserver child's own word, just before `_exit`: the code it exits with. The only
    /// word left when the server died before it could report the child.
    Exiting(i32),
    /// Exit status of a forkserver child, from the forkserver, which reaped it.
    ExitStatus(i32),
}

/// Longest panic message (and backtrace, and refusal) a child reports, in bytes; a longer one
/// keeps its first and last halves with a note of how many bytes were cut between them. Bounded
/// so a child's whole report fits in the bootstrap socket's buffer: it never blocks on it.
pub(crate) const MAX_PANIC_TEXT: usize = 32 * 1024;

/// Largest report frame the parent accepts (a child's reports stay far below it).
const MAX_REPORT_FRAME: usize = 1 << 20;

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
    /// The child's end of its bootstrap channel, open for the child's life.
    #[cfg_attr(windows, allow(dead_code))] // (held only, there: reports go through a clone)
    boot: Arc<OwnedFd>,
    /// How this child sees its parent end (see [`ParentWatch`]).
    #[cfg_attr(unix, allow(dead_code))]
    parent: ParentWatch,
}

/// What tells a child that its parent has ended. On Unix, nothing beside the bootstrap socket
/// (its hang-up). On Windows a pipe tells only when read, so the parent hands the child a
/// `SYNCHRONIZE` handle to itself with the job: signalled when the parent process ends.
#[cfg(unix)]
pub(crate) type ParentWatch = ();
/// See the Unix version.
#[cfg(windows)]
pub(crate) type ParentWatch = OwnedFd;

/// Who this process is, once its job is read. A process forked by someone else keeps its
/// parent's identity (if it was not being written at the fork), as in Python.
static ME: PerProcess<Option<Arc<ChildCtx>>> =
    PerProcess::new(|parents| parents.and_then(|me| me.clone()));
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A new child's identity, and its default daemon flag (this process's own, as in Python).
pub(crate) fn next_identity() -> (Vec<u32>, bool) {
    let (mut id, daemon) = ME
        .lock()
        .as_ref()
        .map(|c| (c.info.identity.clone(), c.info.daemon))
        .unwrap_or_default();
    id.push(COUNTER.fetch_add(1, Ordering::Relaxed) + 1);
    (id, daemon)
}

/// Whether this process is a daemon child.
pub(crate) fn is_daemon() -> bool {
    ME.lock().as_ref().is_some_and(|c| c.info.daemon)
}

/// The process this code runs in.
///
/// ```
/// let me = multiproc::current_process();
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

    /// Whether the parent still runs (it holds the other end of our bootstrap socket, which
    /// hangs up when the parent is gone; on Windows, a handle to the parent process, which is
    /// signalled when it ends).
    pub fn is_alive(&self) -> bool {
        !self.join_timeout(Duration::ZERO)
    }

    /// [`join_timeout`](Self::join_timeout) with no bound: waits as long as it takes.
    pub fn join(&self) -> bool {
        self.join_within(None)
    }

    /// Wait until the parent has ended or `timeout` passes; true if it has ended.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_within(Some(timeout))
    }

    /// `join` (`None`) or `join_timeout` (`Some`).
    pub(crate) fn join_within(&self, timeout: Option<Duration>) -> bool {
        #[cfg(unix)]
        {
            let raw = sys::raw(sys::borrow(&self.ctx.boot));
            sys::poll_for(&[(raw, sys::Readiness::HungUp)], timeout)
                .map(|r| r[0])
                .unwrap_or(true)
        }
        #[cfg(windows)]
        {
            let raw = sys::raw(sys::borrow(&self.ctx.parent));
            proc::wait_signalled(raw, timeout).unwrap_or(true)
        }
    }
}

impl crate::Waitable for ParentProcess {
    /// Unix: the child's end of the bootstrap socket (ready when it hangs up). Windows: a
    /// handle to the parent process (signalled when it ends).
    fn wait_handle(&self) -> Option<crate::RawWaitHandle> {
        #[cfg(unix)]
        let h = &self.ctx.boot;
        #[cfg(windows)]
        let h = &self.ctx.parent;
        Some(sys::raw(sys::borrow(h)))
    }

    // (a daemon's end reads end of file from the start: see sys::proc::die_with_parent; a
    // process handle on Windows is simply signalled)
    fn ready_on_hang_up_only(&self) -> bool {
        cfg!(unix)
    }
}

/// The parent of this process, if it is a multiproc child.
///
/// ```
/// assert!(multiproc::parent_process().is_none()); // the doc test is a main process
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
/// Starting a process needs it, with every start method: without it `start` (and
/// `Pool::new`) is [`Error::NotInitialized`]. A spawned child whose `main` does not call it
/// never starts children of its own: at its first `start`, or at its exit, it prints the fix on
/// stderr and exits with 1, and its parent's `join` is [`Error::ChildNotInitialized`].
///
/// A process counts as a multiproc child only when its first argument is multiproc's child
/// marker *and* a bootstrap variable (`MULTIPROC_BOOTSTRAP`, `MULTIPROC_FORKSERVER`) names a
/// Unix stream socket; a marked process whose variable names anything else (a standard stream,
/// a closed descriptor, a file) says why on stderr and exits with 1. Without the marker the
/// variables are ignored (and removed, so they never reach this program's children) and `main`
/// runs. On Windows the variable names a pipe handle the child inherited (there is no
/// forkserver: a marked process with `MULTIPROC_FORKSERVER` stops), and `init` runs before
/// `main` from the C runtime's initializers too (`test_support!`).
///
/// ```
/// multiproc::init();
/// multiproc::init(); // idempotent
/// ```
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Before any thread exists: forked children inherit the hook and never have to take
        // the panic-hook lock themselves (another thread of the parent may hold it at the
        // moment of the fork, and then it stays locked forever in the child).
        install_panic_hook();
        INITIALIZED.store(true, Ordering::Release);
        // Both are always removed: children of this process must not see them (they get their
        // own), nor may a stray one reach a program this one runs.
        let boot = take_env(proc::BOOTSTRAP_ENV);
        let server = take_env(proc::FORKSERVER_ENV);
        if started_as_child() {
            if let Some(v) = boot {
                let fd = adopt_or_stop(proc::BOOTSTRAP_ENV, &v);
                // `init` may run before Rust's runtime set-up (from `test_support!`): make a
                // write to a closed pipe an error, not a fatal signal, as in any Rust `main`.
                sys::ignore_sigpipe();
                child_main(fd)
            }
            if let Some(v) = server {
                #[cfg(unix)]
                {
                    let fd = adopt_or_stop(proc::FORKSERVER_ENV, &v);
                    sys::ignore_sigpipe();
                    sys::forkserver::serve(fd, forkserver_child, report_exit)
                }
                #[cfg(windows)]
                stop_as_child(
                    proc::FORKSERVER_ENV,
                    &v,
                    "names a forkserver, and Windows has none".into(),
                )
            }
        } else if boot.is_some() || server.is_some() {
            // Not started by multiproc (no marker in argv): a variable left in the environment
            // by someone else. This is a plain program; it runs `main`.
            tracing::debug!("ignoring a multiproc bootstrap variable without the child marker");
        }
        sys::at_exit(at_exit);
    });
}

/// Set by [`init`]. Starting a process needs it (see [`check_can_start`]).
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Whether this process was started by multiproc: its first argument is the child marker.
fn started_as_child() -> bool {
    let mut args = std::env::args_os();
    if args.len() == 0 {
        // Before `main` where the C library does not hand constructors the arguments (musl),
        // std has none yet: ask the kernel.
        return std::fs::read("/proc/self/cmdline")
            .is_ok_and(|c| c.split(|&b| b == 0).nth(1) == Some(proc::CHILD_ARG.as_bytes()));
    }
    args.nth(1).is_some_and(|a| a == proc::CHILD_ARG)
}

/// Marker and variable: this process was started by multiproc (and `init` has not taken the
/// variable yet).
fn started_by_multiproc() -> bool {
    let env = |var| std::env::var_os(var).is_some();
    (env(proc::BOOTSTRAP_ENV) || env(proc::FORKSERVER_ENV)) && started_as_child()
}

fn take_env(var: &str) -> Option<std::ffi::OsString> {
    let v = std::env::var_os(var)?;
    std::env::remove_var(var);
    Some(v)
}

/// The descriptor a parent named in `var`, or the end of this process with a word on stderr
/// saying why (a variable that names no bootstrap socket: set by hand, or a stray copy).
fn adopt_or_stop(var: &str, value: &std::ffi::OsStr) -> OwnedFd {
    let why = match value.to_str() {
        // SAFETY: a socket (pipe) the parent named for this process alone (checked to be one).
        Some(text) => match unsafe { adopt_named(text) } {
            Ok(fd) => return fd,
            Err(why) => why,
        },
        None => format!("is not a {}", HANDLE_WORD),
    };
    stop_as_child(var, value, why)
}

/// Unix calls what the bootstrap variable names a descriptor; Windows, a handle.
const HANDLE_WORD: &str = if cfg!(windows) {
    "handle number"
} else {
    "descriptor number"
};

/// The handle `text` (a bootstrap variable's value) names, checked to be a bootstrap channel.
///
/// # Safety
/// As `sys::adopt_named`: nobody else in this process may own it.
unsafe fn adopt_named(text: &str) -> Result<OwnedFd, String> {
    // SAFETY: forwarded from the caller.
    #[cfg(unix)]
    return unsafe { sys::adopt_named(text) };
    // SAFETY: forwarded from the caller.
    #[cfg(windows)]
    return unsafe { proc::adopt_named(text) };
}

/// A marked child whose bootstrap variable `var` cannot be used: say why on stderr and stop.
fn stop_as_child(var: &str, value: &std::ffi::OsStr, why: String) -> ! {
    let shown = value.to_string_lossy();
    eprintln!(
        "multiproc: this process was started as a multiproc child ({}), but {var}={shown:?} {why}, \
         so it cannot get its task; stopping. (Run the program without {} to run its main.)",
        proc::CHILD_ARG,
        proc::CHILD_ARG,
    );
    sys::exit_now(1)
}

/// What a process must do before it can start children: `Ok` once [`init`] has run. Without it
/// a spawned child would run `main` instead of its task: [`Error::NotInitialized`] says how to
/// fix that. In a process that *is* such a child (started by multiproc, whose `main` did not
/// call `init`), this never returns: it tells its parent and stderr, and exits with 1, so the
/// mistake can never start a chain of children.
pub(crate) fn check_can_start() -> Result<(), Error> {
    if INITIALIZED.load(Ordering::Acquire) {
        return Ok(());
    }
    if started_by_multiproc() {
        uninitialized_child()
    }
    Err(Error::NotInitialized)
}

/// A spawned child whose `main` did not call [`init`] reached a start, or the end of `main`:
/// say so on stderr and to the parent, and end with 1.
fn uninitialized_child() -> ! {
    // (once: the exit handlers run it again when this exit runs them)
    static SAID: AtomicBool = AtomicBool::new(false);
    if SAID.swap(true, Ordering::SeqCst) {
        sys::exit_now(1)
    }
    eprintln!(
        "multiproc: this process was started to run a task, but its main did not call \
         multiproc::init() first, so it ran main instead. Put #[multiproc::main] on main, or call \
         multiproc::init() as its first line (in a test binary: multiproc::test_support!()).",
    );
    if let Some(v) = take_env(proc::BOOTSTRAP_ENV) {
        if let Some(fd) = v.to_str().and_then(|t| {
            // SAFETY: the socket our parent named for us (checked to be one); nobody in this
            // process adopted it, since init never ran.
            unsafe { adopt_named(t) }.ok()
        }) {
            report(&fd, &Report::NotInitialized);
        }
    }
    sys::exit_now(1)
}

/// At the exit of a spawned child whose `main` never called [`init`] (it returned, or called
/// `exit`): the task never ran, so this must not look like success.
extern "C" fn exit_without_init() {
    if !INITIALIZED.load(Ordering::Acquire) {
        uninitialized_child()
    }
}

/// Runs before `main` (from the executable's constructors, where the platform has them): a
/// process started by multiproc (marker and variable) arranges to fail loudly at exit if its
/// `main` never calls [`init`].
extern "C" fn watch_for_missing_init() {
    if started_by_multiproc() {
        sys::at_exit(exit_without_init);
    }
}

crate::__before_main!(WATCH_FOR_MISSING_INIT, watch_for_missing_init);

extern "C" fn at_exit() {
    // Never unwind into C.
    let _ = std::panic::catch_unwind(crate::process::shutdown_children);
}

/// Set in a forkserver child: it tells the parent its exit code itself before it ends, in case
/// the forkserver (its real parent, which reports its exit status) dies first.
static REPORT_EXIT: AtomicBool = AtomicBool::new(false);

/// Entry of a child forked by the forkserver: it reads its job from the socket.
#[cfg(unix)]
fn forkserver_child(boot: OwnedFd) -> ! {
    REPORT_EXIT.store(true, Ordering::Relaxed);
    child_main_after_fork(boot, None)
}

/// End the child with `code`, telling the parent first if the forkserver started us.
fn leave(boot: &OwnedFd, code: i32) -> ! {
    if REPORT_EXIT.load(Ordering::Relaxed) {
        report(boot, &Report::Exiting(code));
    }
    sys::exit_now(code)
}

/// A forkserver child's task called `exit(status)`: say so before the process ends (this runs
/// after the other exit handlers, which join our own children).
#[cfg(unix)]
extern "C" fn report_exit_status(status: i32, _: *mut std::ffi::c_void) {
    if !REPORT_EXIT.load(Ordering::Relaxed) {
        return; // a child forked from a forkserver child inherits the handler, not the duty
    }
    let boot = ME
        .try_lock()
        .and_then(|me| me.as_ref().map(|c| c.boot.clone()));
    if let Some(boot) = boot {
        report(&boot, &Report::Exiting(status & 0xff));
    }
}

/// Entry of a forked child. The fork start method hands over the job it already holds (encoded
/// job and inherited handles); a forkserver child reads it from the socket like a spawned one.
#[cfg(unix)]
pub(crate) fn child_main_after_fork(
    boot: OwnedFd,
    job: Option<(Vec<u8>, Vec<multiproc_pickle::OsHandle>)>,
) -> ! {
    crate::process::forget_inherited_children();
    sys::neutralize_inherited();
    sys::forkserver::forget_client();
    COUNTER.store(0, Ordering::Relaxed);
    if job.is_some() {
        // Started by the fork method (perhaps from a forkserver child): our parent reaps us.
        REPORT_EXIT.store(false, Ordering::Relaxed);
        // Never the parent's input, as in Python (a spawned child gets `/dev/null` from
        // `spawn_exe`, a forkserver child from its server, which was spawned).
        if let Err(e) = sys::stdin_from_devnull() {
            tracing::warn!("a forked child could not put its stdin on /dev/null: {e}");
        }
    }
    match job {
        Some((bytes, handles)) => match multiproc_pickle::decode::<Job>(&bytes) {
            Ok(job) => run_job(boot, job, handles, ()),
            Err(e) => refuse(&boot, format!("cannot read the task from the parent: {e}")),
        },
        None => child_main(boot),
    }
}

fn refuse(boot: &OwnedFd, msg: String) -> ! {
    tracing::error!("multiproc child: {msg}");
    report(boot, &Report::Refused(clip(msg, MAX_PANIC_TEXT)));
    leave(boot, 1)
}

fn report(boot: &OwnedFd, r: &Report) {
    // A daemon child's parent watch must not fire on our own write (see die_with_parent).
    #[cfg(unix)]
    if DAEMON_WATCH.load(Ordering::Relaxed) {
        proc::stop_dying_with_parent(sys::borrow(boot));
    }
    if let Ok(bytes) = multiproc_pickle::encode(r) {
        let (h, n) = multiproc_pickle::frame::encode_header(bytes.len());
        let _ = boot_write(boot, &[&h[..n], &bytes]);
    }
}

/// Write whole buffers to a bootstrap channel (blocking).
fn boot_write(boot: &OwnedFd, bufs: &[&[u8]]) -> std::io::Result<()> {
    #[cfg(unix)]
    return sys::write_all_vectored(sys::borrow(boot), bufs);
    #[cfg(windows)]
    return sys::spawn_support::write_all(sys::borrow(boot), bufs);
}

/// Read at most `max` bytes from a bootstrap channel into `v`'s spare room; 0 at end of file.
/// The child's read of its job (its end blocks); on Unix also the parent's drain of reports
/// (its end is non-blocking: `WouldBlock` when nothing is there; Windows peeks instead, see
/// [`Reports::drain`]).
fn boot_read(boot: &OwnedFd, v: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
    #[cfg(unix)]
    return sys::read_into_spare(sys::borrow(boot), v, max);
    #[cfg(windows)]
    return sys::spawn_support::read_some(sys::borrow(boot), v, max);
}

/// The forkserver reports a reaped child's exit status to the child's parent. Never blocking:
/// the server serves every other child too.
#[cfg(unix)]
fn report_exit(boot: &OwnedFd, code: i32) {
    if let Ok(bytes) = multiproc_pickle::encode(&Report::ExitStatus(code)) {
        let (h, n) = multiproc_pickle::frame::encode_header(bytes.len());
        let frame = [&h[..n], &bytes[..]].concat();
        if let Err(e) = sys::forkserver::send_nowait(sys::borrow(boot), &frame) {
            tracing::warn!("forkserver could not report an exit status ({code}): {e}");
        }
    }
}

/// Set once a daemon child arranged to die with its parent.
#[cfg_attr(windows, allow(dead_code))]
static DAEMON_WATCH: AtomicBool = AtomicBool::new(false);

/// Cut `text` to at most about `max` bytes, keeping its head and its tail.
fn clip(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut head = max / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - max / 2;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n[... {} bytes cut ...]\n{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

/// A job as the child receives it: the job, the handles it carries, and its parent watch.
type Received = (Job, Vec<multiproc_pickle::OsHandle>, ParentWatch);

fn read_job(boot: &OwnedFd) -> Result<Received, Error> {
    let mut prefix = [0u8; 4];
    #[cfg(unix)]
    let (handles, parent) = (
        sys::recv_with_fds(sys::borrow(boot), &mut prefix, crate::process::MAX_HANDLES)?,
        (),
    );
    #[cfg(windows)]
    let (handles, parent) = {
        let (handles, parent) = proc::recv_job_handles(sys::borrow(boot)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::Eof
            } else {
                Error::Io(e)
            }
        })?;
        match sys::spawn_support::read_exact(sys::borrow(boot), &mut prefix) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(Error::Eof),
            other => other?,
        }
        (handles, parent)
    };
    let n = match multiproc_pickle::frame::parse_prefix(prefix)? {
        multiproc_pickle::frame::Prefix::Len(n) => n as usize,
        multiproc_pickle::frame::Prefix::Long => {
            return Err(multiproc_pickle::PickleError::BadFrame("job over 2 GiB".into()).into())
        }
    };
    let mut payload = Vec::with_capacity(n);
    while payload.len() < n {
        let want = n - payload.len();
        if boot_read(boot, &mut payload, want)? == 0 {
            return Err(Error::Eof);
        }
    }
    Ok((multiproc_pickle::decode(&payload)?, handles, parent))
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
                // Name the process first, as Python prints `Process Process-3:` above a child's
                // traceback (`try_lock`: a panic while this process holds its own lock must
                // still print).
                let name = ME
                    .try_lock()
                    .and_then(|me| me.as_ref().map(|c| c.info.name.clone()));
                if let Some(name) = name {
                    eprintln!("Process {name}:");
                }
            }
            default_hook(info);
        }));
    });
}

fn child_main(boot: OwnedFd) -> ! {
    match read_job(&boot) {
        Ok((job, handles, parent)) => run_job(boot, job, handles, parent),
        Err(Error::Eof) => leave(&boot, 1), // the parent went away before sending the job
        Err(e) => refuse(&boot, format!("cannot read the task from the parent: {e}")),
    }
}

fn run_job(
    boot: OwnedFd,
    job: Job,
    handles: Vec<multiproc_pickle::OsHandle>,
    parent: ParentWatch,
) -> ! {
    #[cfg(unix)]
    if REPORT_EXIT.load(Ordering::Relaxed) {
        // Registered first, so it runs last, after our children were joined.
        proc::at_exit_with_status(report_exit_status);
    }
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
        parent,
    }));
    if let Err(e) = job.call.check_build() {
        let msg = e.to_string();
        tracing::error!("multiproc child {}: refusing to run: {msg}", job.name);
        report(&boot, &Report::Refused(clip(msg, MAX_PANIC_TEXT)));
        leave(&boot, 1)
    }
    if job.daemon {
        #[cfg(unix)]
        die_with_parent(&boot);
        #[cfg(windows)]
        die_with_parent_process();
    }
    // As in Python, a child's default start method is the one it was started with, so its own
    // children start the same way unless told otherwise.
    crate::context::adopt_start_method(job.method);
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
            report(&boot, &Report::Refused(clip(msg, MAX_PANIC_TEXT)));
            1
        }
        Err(_) => {
            let (message, backtrace) = PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| ("unknown panic".into(), String::new()));
            let message = clip(message, MAX_PANIC_TEXT);
            let backtrace = clip(backtrace, MAX_PANIC_TEXT);
            report(&boot, &Report::Panic { message, backtrace });
            1
        }
    };
    crate::process::shutdown_children();
    leave(&boot, code)
}

/// A daemon child dies as soon as its parent process is gone, however the parent ended.
#[cfg(unix)]
fn die_with_parent(boot: &OwnedFd) {
    match proc::die_with_parent(sys::borrow(boot)) {
        Ok(()) => DAEMON_WATCH.store(true, Ordering::Relaxed),
        Err(e) => tracing::warn!("a daemon child cannot watch its parent: {e}"),
    }
    // The parent may have died before the watch was set up: then its end is closed already.
    let raw = sys::raw(sys::borrow(boot));
    if sys::poll_for(&[(raw, sys::Readiness::HungUp)], Some(Duration::ZERO)).is_ok_and(|r| r[0]) {
        sys::exit_now(1)
    }
}

/// A daemon child dies as soon as its parent process is gone, however the parent ended: it is
/// in its parent's kill-on-close job already (see `sys::proc::spawn_child`); a thread watching
/// the parent's handle covers a parent whose job could not take it.
#[cfg(windows)]
fn die_with_parent_process() {
    let parent = ME.lock().as_ref().map(|c| sys::raw(sys::borrow(&c.parent)));
    let Some(parent) = parent else { return };
    if let Err(e) = proc::die_with_parent(parent) {
        tracing::warn!("a daemon child cannot watch its parent: {e}");
    }
    // The parent may have died before the watch was set up.
    if proc::wait_signalled(parent, Some(Duration::ZERO)).unwrap_or(false) {
        sys::exit_now(1)
    }
}

/// The parent's end of a child's bootstrap socket (non-blocking) and what arrived on it.
///
/// Reports are read as they arrive, whenever the parent looks at the child (`join`, `is_alive`,
/// ...), and once more when it has ended, so a child never waits on its report for a parent
/// that would only read it after the child's exit.
pub(crate) struct Reports {
    /// What the socket was when made (device, inode), and the child's pid: see `Drop`.
    id: (u64, u64),
    pid: u32,
    fd: Arc<OwnedFd>,
    buf: Vec<u8>,
    eof: bool,
    /// The task's failure (panic or refusal), if one was reported.
    pub failure: Option<Report>,
    /// The code a forkserver child said it exits with.
    pub exiting: Option<i32>,
    /// The exit status the forkserver reported for its child.
    pub status: Option<i32>,
}

impl Reports {
    /// `id`: what [`sys::file_id`] said of `fd` when it was made; `pid`: the child's.
    pub(crate) fn new(fd: OwnedFd, id: (u64, u64), pid: u32) -> Result<Reports, Error> {
        // (on Windows the end stays blocking: `drain` reads only what a peek found there)
        #[cfg(unix)]
        sys::set_nonblocking(sys::borrow(&fd))?;
        // A forked sibling must not keep our end open (see sys::neutralize_inherited).
        sys::track_inheritable(sys::borrow(&fd));
        Ok(Reports {
            id,
            pid,
            fd: Arc::new(fd),
            buf: Vec::new(),
            eof: false,
            failure: None,
            exiting: None,
            status: None,
        })
    }

    /// The socket, while more may come on it (`None` after end of file).
    pub(crate) fn handle(&self) -> Option<Arc<OwnedFd>> {
        (!self.eof).then(|| self.fd.clone())
    }

    /// Read every report available now, without blocking.
    pub(crate) fn drain(&mut self) {
        const CHUNK: usize = 64 * 1024;
        while !self.eof {
            #[cfg(unix)]
            let got = boot_read(&self.fd, &mut self.buf, CHUNK);
            #[cfg(windows)]
            let got =
                sys::spawn_support::read_available(sys::borrow(&self.fd), &mut self.buf, CHUNK);
            match got {
                Ok(0) => self.eof = true,
                Ok(_) => self.parse(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!("bootstrap socket: {e}");
                    self.eof = true;
                }
            }
        }
    }

    fn parse(&mut self) {
        use multiproc_pickle::frame::{parse_prefix, Prefix};
        let mut at = 0;
        while self.buf.len() - at >= 4 {
            let prefix: [u8; 4] = self.buf[at..at + 4].try_into().expect("4 bytes");
            let n = match parse_prefix(prefix) {
                Ok(Prefix::Len(n)) if (n as usize) <= MAX_REPORT_FRAME => n as usize,
                _ => {
                    tracing::warn!("malformed report from a child; ignoring the rest");
                    self.eof = true;
                    self.buf = Vec::new();
                    return;
                }
            };
            if self.buf.len() - at - 4 < n {
                break;
            }
            match multiproc_pickle::decode::<Report>(&self.buf[at + 4..at + 4 + n]) {
                Ok(Report::Exiting(code)) => self.exiting = Some(code),
                Ok(Report::ExitStatus(code)) => self.status = Some(code),
                Ok(r) => self.failure = Some(r),
                Err(e) => tracing::warn!("undecodable report from a child: {e}"),
            }
            at += 4 + n;
        }
        self.buf.drain(..at);
    }
}

impl Drop for Reports {
    fn drop(&mut self) {
        if Arc::strong_count(&self.fd) == 1
            && sys::file_id(sys::borrow(&self.fd)).ok() != Some(self.id)
        {
            descriptor_replaced("the end of its bootstrap socket", self.pid);
        }
        sys::untrack_inheritable(sys::borrow(&self.fd));
    }
}

/// A parent's descriptor for the child `pid` names another file than the one it was made as:
/// some code closed the number behind its owner's back and it was reused. Using or closing it
/// would reach someone else's socket (another child's job, another child's end of file), so
/// this is said loudly, on stderr as well (a test's output shows it), where it is found.
pub(crate) fn descriptor_replaced(what: &str, pid: u32) {
    tracing::error!(
        pid,
        "a descriptor was closed behind its owner's back: {what}"
    );
    eprintln!(
        "multiproc: BUG: the descriptor for {what} of child {pid} was closed behind its owner's          back and now names another file (a double close in this process)"
    );
}
