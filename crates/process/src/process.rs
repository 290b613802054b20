//! `Process`: the parent's handle on a child, as in `multiprocessing.Process`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_pickle::{Call, OsHandle, PickleError};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bootstrap::{self, Job, Report, Reports};
use crate::per_process::PerProcess;
use crate::sys::{self, forkserver, proc};
use crate::{Error, StartMethod, Waitable};

/// Most OS handles one child's arguments may carry (Linux's `SCM_MAX_FD`).
pub(crate) const MAX_HANDLES: usize = 253;

/// The exit code of a forkserver child whose status nobody knows: its server died before it
/// could report it, and the child did not say (a signal killed it). As in CPython.
const UNKNOWN_EXIT_CODE: i32 = 255;

/// On Windows, how long `join` waits on the process between two reads of its reports.
#[cfg(windows)]
const REPORT_SLICE: Duration = Duration::from_millis(50);

/// How long collecting a forkserver child waits for its server's report before it settles for
/// the child's own word (the server reaps and reports within milliseconds).
const SERVER_REPORT_WAIT: Duration = Duration::from_secs(5);

type Packer = Box<dyn FnOnce() -> Result<(Call, Vec<OsHandle>), PickleError> + Send>;

struct Running {
    pid: u32,
    /// Readable once the process has ended; signals go through it (never to a recycled pid).
    pidfd: Arc<OsHandle>,
    /// Parent's end of the bootstrap socket, where reports arrive.
    reports: Reports,
    /// The forkserver that is the child's real parent (`None`: we are).
    server: Option<Arc<forkserver::Server>>,
}

enum State {
    Created(Packer),
    Starting,
    Running(Running),
    Done {
        pid: u32,
        code: i32,
        report: Option<Report>,
    },
    Closed,
}

struct Inner {
    name: Mutex<Option<String>>,
    daemon: AtomicBool,
    method: Mutex<Option<StartMethod>>,
    executable: Mutex<Option<PathBuf>>,
    identity: Vec<u32>,
    state: Mutex<State>,
}

/// A task running (or to run) in another process: Python's `multiprocessing.Process`.
///
/// The target is a plain `fn` (or a non-capturing closure) taking one serde argument (use a
/// tuple for several). The argument may contain [`Connection`](crate::Connection)s and other multiproc handles:
/// they reach the child with every start method.
///
/// Exit codes follow Python: 0 when the target returns, 1 when it panics (the message is kept,
/// see [`panic_message`](Self::panic_message)), `n` on `std::process::exit(n)`, `-N` when a
/// signal `N` killed it. A forkserver child's code comes from the forkserver, which reaps it;
/// if the forkserver died first, from the child itself, and when neither could tell (a signal
/// killed the child after its server died, or `exit(n)` where the C library cannot report the
/// status to an exit handler) it is 255, as in CPython. On Windows (spawn only) the code is the
/// process's exit code, and a process ended by [`terminate`](Self::terminate) or
/// [`kill`](Self::kill) gives −15, as in CPython.
///
/// A [daemon](Self::daemon) child dies with its parent; any other child keeps running when
/// its parent dies, as in Python (it can notice with
/// [`parent_process()`](crate::parent_process)`.is_alive()`).
///
/// ```
/// use multiproc::Process;
///
/// fn greet((name, times): (String, u32)) {
///     for _ in 0..times {
///         println!("hello {name}");
///     }
/// }
///
/// multiproc::init(); // first thing in main
/// let p = Process::new(greet, ("bob".to_string(), 2)).with_name("greeter");
/// p.start().unwrap();
/// assert_eq!(p.join().unwrap(), 0);
/// ```
#[derive(Clone)]
pub struct Process {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &*self.inner.state.lock() {
            State::Created(_) => "initial".to_string(),
            State::Starting => "starting".to_string(),
            State::Running(r) => format!("started pid={}", r.pid),
            State::Done { code, .. } => format!("stopped exitcode={code}"),
            State::Closed => "closed".to_string(),
        };
        write!(
            f,
            "<Process name={:?} {state}{}>",
            self.name(),
            if self.is_daemon() { " daemon" } else { "" }
        )
    }
}

/// The children this process started. A forked child starts with none: the parent's are
/// dropped (closing its copies of their descriptors, so their parent-death detection still
/// works) when they were not locked at the fork, and left alone otherwise.
static CHILDREN: PerProcess<Vec<Process>> = PerProcess::new(|parents| {
    drop(parents.map(std::mem::take));
    Vec::new()
});

impl Process {
    /// A process that will run `target(args)` once [started](Self::start).
    #[must_use = "a process does nothing until `start` is called"]
    pub fn new<A>(target: fn(A), args: A) -> Process
    where
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        let pack: Packer = Box::new(move || Call::new(target, &args));
        // As in Python, a process gets its identity (and default name) when it is created, and
        // its daemon flag from the process creating it.
        let (identity, daemon) = bootstrap::next_identity();
        let tail: Vec<String> = identity.iter().map(u32::to_string).collect();
        Process {
            inner: Arc::new(Inner {
                name: Mutex::new(Some(format!("Process-{}", tail.join(":")))),
                identity,
                daemon: AtomicBool::new(daemon),
                method: Mutex::new(None),
                executable: Mutex::new(None),
                state: Mutex::new(State::Created(pack)),
            }),
        }
    }

    /// Name the process (default `Process-N`). Visible to the child as
    /// [`current_process().name`](crate::current_process). (`with_`: [`name`](Self::name) is the
    /// getter, as `std::thread::Thread::name`; std puts the setter on a separate `Builder`.)
    #[must_use = "the setting is on the process returned; the one given is consumed"]
    pub fn with_name(self, name: impl Into<String>) -> Self {
        *self.inner.name.lock() = Some(name.into());
        self
    }

    /// The default is the creating process's flag, as in Python: `false` in the main program,
    /// `true` in a daemon child (a daemon cannot start a non-daemon child:
    /// [`Error::DaemonWithNonDaemonChild`]).
    ///
    /// Daemon processes are terminated, not waited for, when the main program exits, and die
    /// (SIGKILL) as soon as their parent process ends in any other way, even killed: a daemon
    /// (a pool worker, say) never outlives its parent, even in the middle of a long task.
    /// It learns of its parent's end from the bootstrap socket, whose other end only the
    /// parent holds, so it does not matter which of the parent's threads started it. On
    /// Windows a daemon is in its parent's job object, which kills it when the parent ends.
    #[must_use = "the setting is on the process returned; the one given is consumed"]
    pub fn daemon(self, daemon: bool) -> Self {
        self.inner.daemon.store(daemon, Ordering::Relaxed);
        self
    }

    /// Start this process with `method` instead of the global one.
    #[must_use = "the setting is on the process returned; the one given is consumed"]
    pub fn start_method(self, method: StartMethod) -> Self {
        *self.inner.method.lock() = Some(method);
        self
    }

    /// Spawn this process from `path` instead of the current executable (must be the same
    /// build; another build refuses the task and [`join`](Self::join) reports
    /// [`Error::Refused`]).
    #[must_use = "the setting is on the process returned; the one given is consumed"]
    pub fn executable(self, path: impl Into<PathBuf>) -> Self {
        *self.inner.executable.lock() = Some(path.into());
        self
    }

    /// The process's name (`Process-N` until started, if none was given).
    #[doc(alias = "get_name")]
    pub fn name(&self) -> String {
        self.inner
            .name
            .lock()
            .clone()
            .unwrap_or_else(|| "Process".into())
    }

    /// Whether the process is a daemon.
    #[doc(alias = "daemon")]
    pub fn is_daemon(&self) -> bool {
        self.inner.daemon.load(Ordering::Relaxed)
    }

    /// Start the child. Serializing the arguments happens here, so an argument that cannot be
    /// serialized is an error now, in the caller ([`Error::Pickle`]; also when a handle in
    /// the arguments cannot be duplicated, e.g. for want of descriptors). A failure of the
    /// operating system is [`Error::Start`], with the `io::Error` as its source.
    ///
    /// [`init`](crate::init) must have run in this process, whatever the start method
    /// ([`Error::NotInitialized`]); a daemon process can only start daemon children
    /// ([`Error::DaemonWithNonDaemonChild`]). In both cases the process stays unstarted.
    pub fn start(&self) -> Result<(), Error> {
        bootstrap::check_can_start()?;
        if !self.is_daemon() && bootstrap::is_daemon() {
            return Err(Error::DaemonWithNonDaemonChild);
        }
        let pack = {
            let mut st = self.inner.state.lock();
            match std::mem::replace(&mut *st, State::Starting) {
                State::Created(p) => p,
                other => {
                    let err = if matches!(other, State::Closed) {
                        Error::ProcessClosed
                    } else {
                        Error::AlreadyStarted
                    };
                    *st = other;
                    return Err(err);
                }
            }
        };
        match self.launch(pack) {
            Ok(running) => {
                *self.inner.state.lock() = State::Running(running);
                // Reap children that ended unobserved (as Python does on every start), so a
                // program that never joins does not accumulate them.
                let known: Vec<Process> = CHILDREN.lock().clone();
                for p in known {
                    let _ = p.collect();
                }
                CHILDREN.lock().push(self.clone());
                Ok(())
            }
            Err(e) => {
                *self.inner.state.lock() = State::Closed;
                Err(match e {
                    Error::Io(io) => Error::Start(io),
                    other => other,
                })
            }
        }
    }

    fn launch(&self, pack: Packer) -> Result<Running, Error> {
        #[cfg_attr(windows, allow(unused_mut))] // (moved into a forked child on Unix)
        let (call, mut handles) = pack()?;
        if handles.len() > MAX_HANDLES {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("a child's arguments may carry at most {MAX_HANDLES} OS handles"),
            )));
        }
        let method = self
            .inner
            .method
            .lock()
            .unwrap_or_else(crate::get_start_method);
        if !StartMethod::available().contains(&method) {
            return Err(Error::StartMethodUnavailable(method));
        }
        let identity = self.inner.identity.clone();
        let name = self.name();
        let me = crate::current_process();
        let job = Job {
            call,
            name,
            daemon: self.is_daemon(),
            identity,
            method,
            parent_pid: me.pid,
            parent_name: me.name,
        };
        #[cfg_attr(windows, allow(unused_mut))]
        let mut payload = multiproc_pickle::encode(&job)?;
        if payload.len() > i32::MAX as usize {
            return Err(PickleError::TooLarge {
                size: payload.len() as u64,
                max: i32::MAX as u64,
            }
            .into());
        }
        #[cfg(unix)]
        if cfg!(not(any(target_os = "linux", target_os = "macos"))) {
            // Checked before anything starts, so no child is left behind unreaped.
            return Err(Error::Io(proc::unsupported()));
        }
        let exe = match (method, self.inner.executable.lock().clone()) {
            (_, Some(p)) => p,
            (StartMethod::Fork, None) => PathBuf::new(), // a fork runs no executable
            (_, None) => crate::context::executable()?,
        };
        #[cfg(unix)]
        let (ours, theirs) = sys::socketpair()?;
        #[cfg(windows)]
        let (ours, theirs) = sys::spawn_support::boot_pair()?;
        let ours_id = sys::file_id(sys::borrow(&ours))?;
        let (pid, pidfd, server) = match method {
            #[cfg(windows)]
            StartMethod::Spawn => {
                let child =
                    proc::spawn_child(&exe, proc::BOOTSTRAP_ENV, &theirs, self.is_daemon())?;
                (child.pid, child.handle, None)
            }
            #[cfg(windows)]
            StartMethod::Fork | StartMethod::Forkserver => {
                return Err(Error::StartMethodUnavailable(method))
            }
            #[cfg(unix)]
            StartMethod::Spawn => {
                let pid = proc::spawn_exe(&exe, proc::BOOTSTRAP_ENV, &theirs)?;
                (pid, proc::pidfd_for_new_child(pid)?, None)
            }
            #[cfg(unix)]
            StartMethod::Fork => {
                let ours_raw = sys::raw(sys::borrow(&ours));
                let theirs_raw = sys::raw(sys::borrow(&theirs));
                // A forked child already holds the job and the handles (its copies of our
                // descriptors): nothing needs to cross the socket.
                let job = std::mem::take(&mut payload);
                let inherited = std::mem::take(&mut handles);
                let child = move || {
                    sys::close_raw(ours_raw);
                    // SAFETY: the child's copy of `theirs` belongs to the child alone.
                    let boot = unsafe { sys::adopt(theirs_raw) };
                    bootstrap::child_main_after_fork(boot, Some((job, inherited)))
                };
                warn_if_threaded();
                // SAFETY: documented hazard of the fork method; the child only runs the job and
                // ends the process (child_main_after_fork never returns).
                let pid = unsafe { proc::fork(child)? };
                (pid, proc::pidfd_for_new_child(pid)?, None)
            }
            #[cfg(unix)]
            StartMethod::Forkserver => {
                let (pid, pidfd, server) = forkserver::start_child(&exe, &theirs)?;
                (pid, pidfd, Some(server))
            }
        };
        drop(theirs);
        // (a number closed behind our back and reused by another thread's socket would take
        // this child's job to another child: say so loudly instead; never seen, looked for)
        if sys::file_id(sys::borrow(&ours)).ok() != Some(ours_id) {
            bootstrap::descriptor_replaced("its job", pid);
        }
        let sent = if method == StartMethod::Fork {
            Ok(())
        } else {
            let (h, hn) = multiproc_pickle::frame::encode_header(payload.len());
            let raw: Vec<_> = handles.iter().map(|h| sys::raw(sys::borrow(h))).collect();
            #[cfg(unix)]
            let sent = sys::send_with_fds(sys::borrow(&ours), &h[..hn], &raw)
                .and_then(|()| sys::write_all_vectored(sys::borrow(&ours), &[&payload]));
            // (the handles are duplicated into the child, whose process handle this is)
            #[cfg(windows)]
            let sent = proc::send_job(
                sys::borrow(&ours),
                sys::borrow(&pidfd),
                &raw,
                &h[..hn],
                &payload,
            );
            sent
        };
        if let Err(e) = sent {
            // The child died before taking its job (it reports why on stderr); its exit code
            // will tell. Not an error of `start`, as in Python.
            tracing::debug!(pid, "could not deliver the job: {e}");
        }
        drop(handles);
        let reports = Reports::new(ours, ours_id, pid)?;
        tracing::debug!(pid, ?method, "started child");
        Ok(Running {
            pid,
            pidfd: Arc::new(pidfd),
            reports,
            server,
        })
    }

    /// Reap the child if it has ended (non-blocking). Returns the exit code if known.
    fn collect(&self) -> Result<Option<i32>, Error> {
        let mut st = self.inner.state.lock();
        let r = match &mut *st {
            State::Created(_) | State::Starting => return Err(Error::NotStarted),
            State::Closed => return Err(Error::ProcessClosed),
            State::Done { code, .. } => return Ok(Some(*code)),
            State::Running(r) => r,
        };
        // One poll looks at both: has the child ended, has it reported something.
        let pidfd = sys::raw(sys::borrow(&r.pidfd));
        #[cfg(windows)]
        let ended = {
            r.reports.drain();
            proc::wait_signalled(pidfd, Some(Duration::ZERO))?
        };
        #[cfg(unix)]
        let ended = match r.reports.handle() {
            Some(boot) => {
                let ready = sys::poll_readable(
                    &[pidfd, sys::raw(sys::borrow(&boot))],
                    Some(Duration::ZERO),
                )?;
                if ready[1] {
                    r.reports.drain();
                }
                ready[0]
            }
            None => sys::poll_readable(&[pidfd], Some(Duration::ZERO))?[0],
        };
        if !ended {
            return Ok(None);
        }
        let code = match &r.server {
            Some(server) => forkserver_exit_code(&mut r.reports, server),
            None => {
                #[cfg(unix)]
                let code = proc::waitpid(r.pid, true)?.unwrap_or(-libc_sigkill());
                #[cfg(windows)]
                let code = proc::exit_code(sys::borrow(&r.pidfd))?;
                // Everything the child wrote is in the socket now.
                r.reports.drain();
                code
            }
        };
        let pid = r.pid;
        let report = r.reports.failure.take();
        *st = State::Done { pid, code, report };
        drop(st);
        CHILDREN
            .lock()
            .retain(|p| !Arc::ptr_eq(&p.inner, &self.inner));
        Ok(Some(code))
    }

    fn pidfd(&self) -> Result<Option<Arc<OsHandle>>, Error> {
        Ok(self.handles()?.map(|(pidfd, _)| pidfd))
    }

    /// The running child's pidfd and, while reports may still come, its bootstrap socket.
    #[allow(clippy::type_complexity)]
    fn handles(&self) -> Result<Option<(Arc<OsHandle>, Option<Arc<OsHandle>>)>, Error> {
        match &*self.inner.state.lock() {
            State::Created(_) | State::Starting => Err(Error::NotStarted),
            State::Closed => Err(Error::ProcessClosed),
            State::Done { .. } => Ok(None),
            State::Running(r) => Ok(Some((r.pidfd.clone(), r.reports.handle()))),
        }
    }

    /// Why the child did not run its task, if it said so.
    fn refused(&self) -> Option<Error> {
        match &*self.inner.state.lock() {
            State::Done {
                report: Some(Report::Refused(m)),
                ..
            } => Some(Error::Refused(m.clone())),
            State::Done {
                report: Some(Report::NotInitialized),
                ..
            } => Some(Error::ChildNotInitialized),
            _ => None,
        }
    }

    /// Wait for the process to end and return its exit code. A child that refused its task
    /// (e.g. a different build) is [`Error::Refused`]; one that ran the program's `main`
    /// instead, because `main` does not call [`init`](crate::init), is
    /// [`Error::ChildNotInitialized`].
    pub fn join(&self) -> Result<i32, Error> {
        match self.join_within(None)? {
            Some(code) => Ok(code),
            None => unreachable!("join without timeout returns only when the child ended"),
        }
    }

    /// [`join`](Self::join), waiting at most `timeout`: `Ok(None)` if the child is still
    /// running then.
    ///
    /// While it waits it reads what the child reports (a panic message, say), so a child
    /// never waits for its parent to read it.
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>, Error> {
        self.join_within(Some(timeout))
    }

    /// `join` (`None`) or `join_timeout` (`Some`).
    pub(crate) fn join_within(&self, timeout: Option<Duration>) -> Result<Option<i32>, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let Some((pidfd, boot)) = self.handles()? else {
                break;
            };
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            #[cfg(unix)]
            let ready = {
                let mut raw = vec![sys::raw(sys::borrow(&pidfd))];
                raw.extend(boot.iter().map(|b| sys::raw(sys::borrow(b))));
                sys::poll_readable(&raw, left)?
            };
            // A pipe cannot be waited on beside a process: wait on the process in slices and
            // read the reports between them (they fit in the pipe, so the child never waits
            // for that; this only keeps them from piling up).
            #[cfg(windows)]
            let ready = {
                drop(boot);
                let slice = left.map_or(REPORT_SLICE, |l| l.min(REPORT_SLICE));
                let ended = proc::wait_signalled(sys::raw(sys::borrow(&pidfd)), Some(slice))?;
                // (not ended: collect only to read the reports, unless the time is up)
                [ended || deadline.is_none_or(|d| Instant::now() < d)]
            };
            if ready.iter().any(|&r| r) {
                // Reads the reports, and reaps the child if it has ended.
                self.collect()?;
            } else if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
        if let Some(e) = self.refused() {
            return Err(e);
        }
        self.collect()
    }

    /// Whether the process has been started and has not ended.
    pub fn is_alive(&self) -> bool {
        matches!(self.collect(), Ok(None))
    }

    /// The exit code, once the process has ended (`None` before start or while running).
    pub fn exitcode(&self) -> Option<i32> {
        self.collect().ok().flatten()
    }

    /// The child's pid, once started.
    #[doc(alias = "ident")]
    pub fn pid(&self) -> Option<u32> {
        match &*self.inner.state.lock() {
            State::Running(r) => Some(r.pid),
            State::Done { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// A handle that becomes readable when the process ends (for [`wait`](crate::wait)): a
    /// pidfd on Linux, a kqueue watching the pid's exit on macOS, the process handle on
    /// Windows.
    pub fn sentinel(&self) -> Option<crate::RawWaitHandle> {
        self.wait_handle()
    }

    /// The panic message, if the target panicked (exit code 1). A message over 32 KiB keeps
    /// its first and last 16 KiB with `[... N bytes cut ...]` between them (the backtrace
    /// likewise), so that reporting it never blocks the child.
    pub fn panic_message(&self) -> Option<String> {
        let _ = self.collect();
        match &*self.inner.state.lock() {
            State::Done {
                report: Some(Report::Panic { message, .. }),
                ..
            } => Some(message.clone()),
            _ => None,
        }
    }

    /// Where the target panicked and, if `RUST_BACKTRACE` was set in the child, its backtrace.
    pub fn panic_backtrace(&self) -> Option<String> {
        let _ = self.collect();
        match &*self.inner.state.lock() {
            State::Done {
                report: Some(Report::Panic { backtrace, .. }),
                ..
            } => Some(backtrace.clone()),
            _ => None,
        }
    }

    #[cfg(unix)]
    fn signal(&self, sig: i32) -> Result<(), Error> {
        if let (Some(pidfd), Some(pid)) = (self.pidfd()?, self.pid()) {
            proc::send_signal(sys::borrow(&pidfd), pid, sig)?;
        }
        Ok(())
    }

    /// Ask the process to stop (SIGTERM); its exit code becomes −15. No effect once ended.
    ///
    /// On Windows, as in CPython, `TerminateProcess` with exit code `0x10000`, which the exit
    /// code reports as −15 too (the process gets no chance to clean up).
    pub fn terminate(&self) -> Result<(), Error> {
        #[cfg(unix)]
        return self.signal(proc::SIGTERM);
        #[cfg(windows)]
        return self.terminate_process();
    }

    /// Stop the process now (SIGKILL); its exit code becomes −9. No effect once ended.
    ///
    /// On Windows this is [`terminate`](Self::terminate), as in CPython: the exit code is −15.
    pub fn kill(&self) -> Result<(), Error> {
        #[cfg(unix)]
        return self.signal(proc::SIGKILL);
        #[cfg(windows)]
        return self.terminate_process();
    }

    #[cfg(windows)]
    fn terminate_process(&self) -> Result<(), Error> {
        if let Some(handle) = self.pidfd()? {
            proc::terminate(sys::borrow(&handle))?;
        }
        Ok(())
    }

    /// Release the OS resources of an ended process. Closing a running one is
    /// [`Error::StillRunning`]; later calls on a closed process are [`Error::ProcessClosed`].
    pub fn close(&self) -> Result<(), Error> {
        match self.collect() {
            Ok(None) => return Err(Error::StillRunning),
            Err(Error::NotStarted) | Ok(Some(_)) | Err(Error::ProcessClosed) => {}
            Err(e) => return Err(e),
        }
        *self.inner.state.lock() = State::Closed;
        Ok(())
    }
}

impl Waitable for Process {
    fn wait_handle(&self) -> Option<crate::RawWaitHandle> {
        match self.pidfd() {
            Ok(Some(fd)) => Some(sys::raw(sys::borrow(&fd))),
            _ => None,
        }
    }
}

#[cfg(unix)]
/// Forking a parent with other threads: say so once per process (as Python 3.12 warns), with
/// the count. One read of `/proc/self/task` (on macOS one `proc_pidinfo`) per fork until it has
/// warned, none after.
fn warn_if_threaded() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if WARNED.load(Ordering::Relaxed) {
        return;
    }
    if let Some(threads) = sys::thread_count().filter(|&n| n > 1) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                threads,
                "forking a process that has {threads} threads: only the forking thread exists in \
                 the child, and a lock another thread holds stays locked there for ever; use the \
                 forkserver or spawn start method (see StartMethod::Fork for what a forked child \
                 may touch)"
            );
        }
    }
}

#[cfg(unix)]
fn libc_sigkill() -> i32 {
    proc::SIGKILL
}

/// The exit code of a forkserver child that has ended. The server reaped it and reports its
/// status on the child's bootstrap socket; if the server died first, the child's own word
/// (sent just before `_exit`) stands in, or [`UNKNOWN_EXIT_CODE`] without one. A dead server
/// is reaped here, so it never lingers as a zombie.
fn forkserver_exit_code(reports: &mut Reports, server: &forkserver::Server) -> i32 {
    let deadline = Instant::now() + SERVER_REPORT_WAIT;
    let server_dead = loop {
        // Looked at before reading: whatever a dead server said is in the socket already.
        let dead = server.is_dead();
        reports.drain();
        if reports.status.is_some() || dead {
            break dead;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::warn!("the forkserver did not report a child's exit status");
            break false;
        }
        let _ = match reports.handle() {
            Some(boot) => sys::poll_readable(
                &[sys::raw(sys::borrow(&boot)), server.wait_handle()],
                Some(left),
            ),
            // The server closed its copy without a word: it is dying; wait for it, to reap it.
            None => sys::poll_readable(&[server.wait_handle()], Some(left)),
        };
    };
    if server_dead {
        forkserver::reap(server);
        forkserver::reap_retired();
    }
    reports
        .status
        .or(reports.exiting)
        .unwrap_or(UNKNOWN_EXIT_CODE)
}

/// The children started by this process that are still running; finished ones are reaped.
///
/// ```
/// assert!(multiproc::active_children().is_empty());
/// ```
pub fn active_children() -> Vec<Process> {
    let all: Vec<Process> = CHILDREN.lock().clone();
    all.into_iter().filter(|p| p.is_alive()).collect()
}

/// At exit: terminate daemon children, then join every child.
pub(crate) fn shutdown_children() {
    let all: Vec<Process> = CHILDREN.lock().clone();
    for p in all.iter().filter(|p| p.is_daemon()) {
        let _ = p.terminate();
    }
    for p in &all {
        let _ = p.join();
    }
}

/// In a forked child: the parent's children are not ours. Dropping them closes our copies of
/// their descriptors (so, e.g., their parent-death detection still works); the first use of the
/// registry in this process does it.
#[cfg(unix)]
pub(crate) fn forget_inherited_children() {
    drop(CHILDREN.lock());
}

/// Logical CPUs this process may use: the affinity mask and cgroup CPU quota are honoured
/// (Python's `os.process_cpu_count`), so a pool sized by it does not oversubscribe a container.
///
/// ```
/// assert!(multiproc::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    sys::cpu_count()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::{pipe, Connection};

    /// Generous bound for what takes milliseconds.
    const PATIENCE: Duration = Duration::from_secs(20);

    /// Say "up", then answer each "ping" with what this child sees of its parent (alive,
    /// and `wait` not ready on it), until anything else arrives.
    fn answer_pings(conn: Connection) {
        conn.send(&"up").unwrap();
        while conn.poll(Some(Duration::from_secs(60))).unwrap_or(false) {
            match conn.recv::<String>().as_deref() {
                Ok("ping") => {
                    let parent = crate::parent_process().expect("a child has a parent");
                    let waited = crate::wait_timeout(&[&parent], Duration::ZERO);
                    let seen = (parent.is_alive(), waited.map(|r| r.is_empty()).ok());
                    conn.send(&seen).unwrap();
                }
                _ => return,
            }
        }
    }

    /// The parent's end of `p`'s bootstrap socket.
    fn parent_end(p: &Process) -> Arc<OsHandle> {
        match &*p.inner.state.lock() {
            State::Running(r) => r.reports.handle().expect("the child's end is open"),
            _ => panic!("the child is not running"),
        }
    }

    /// Start a daemon child with every start method, let it come up, do `poke` to the parent's
    /// end of its bootstrap socket, then check that it lives on and still sees its parent
    /// alive; `poke` says what it returned, to be checked after.
    fn poke_a_live_daemon(what: &str, poke: fn(libc::c_int) -> std::io::Result<()>) {
        for &m in StartMethod::available() {
            let (here, there) = pipe(true).unwrap();
            let p = Process::new(answer_pings, there)
                .start_method(m)
                .daemon(true);
            p.start().unwrap();
            assert!(here.poll(Some(PATIENCE)).unwrap(), "{m:?}: never up");
            assert_eq!(here.recv::<String>().unwrap(), "up", "{m:?}");
            let poked = poke(parent_end(&p).as_raw_fd());
            here.send(&"ping").unwrap();
            assert!(here.poll(Some(PATIENCE)).unwrap(), "{m:?}: no answer");
            match here.recv::<(bool, Option<bool>)>() {
                Ok(seen) => assert_eq!(seen, (true, Some(true)), "{m:?}: (alive, not ready)"),
                Err(e) => panic!(
                    "{m:?}: the daemon died of {what} by its live parent ({e}; exit code {:?})",
                    p.join_timeout(PATIENCE)
                ),
            }
            if let Err(e) = poked {
                panic!("{m:?}: {what}: {e}");
            }
            here.send(&"stop").unwrap();
            assert_eq!(p.join_timeout(PATIENCE).unwrap(), Some(0), "{m:?}");
        }
    }

    /// A byte written into the parent's end of a daemon child's bootstrap socket after the
    /// job (a descriptor confused for another, say) is refused by the kernel and does not
    /// reach the child, whose parent watch must fire on its parent's death only: it lives on
    /// and still sees its parent alive. Before, the byte arrived and the watch (SIGKILL on any
    /// wake-up of the socket) killed the child at once.
    #[test]
    fn a_stray_write_into_the_parents_end_neither_arrives_nor_kills_a_daemon() {
        poke_a_live_daemon("a stray byte", |fd| {
            // SAFETY: send of one byte from a live buffer on a socket we hold.
            let sent = unsafe {
                libc::send(
                    fd,
                    b"x".as_ptr().cast(),
                    1,
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            let why = std::io::Error::last_os_error();
            match (sent, why.raw_os_error()) {
                (-1, Some(libc::EPIPE)) => Ok(()),
                _ => Err(std::io::Error::other(format!(
                    "the byte was not refused with EPIPE ({sent}, {why})"
                ))),
            }
        });
    }

    /// A wake-up of a daemon's end of its bootstrap socket with nothing to read and a live
    /// parent (here the parent shuts its writing; the late wake-up of the write that carried
    /// the job, once the child has read it and armed its watch, is another) must not kill the
    /// daemon. Before, the watch was SIGKILL raised by the kernel on any wake-up: this killed
    /// the daemon at once, and the late wake-up killed a forkserver daemon before its task
    /// about once in twenty runs of the sync tests.
    #[test]
    fn a_wake_up_of_the_bootstrap_socket_without_a_hang_up_does_not_kill_a_daemon() {
        poke_a_live_daemon("a shutdown of writing", |fd| {
            // SAFETY: shutdown of a socket we hold.
            if unsafe { libc::shutdown(fd, libc::SHUT_WR) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}
