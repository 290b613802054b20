//! Starting, signalling and reaping child processes.
//!
//! Every child gets a descriptor that becomes readable once the process has ended, whoever
//! reaps it: the process's `sentinel`, waited on with `poll` beside sockets and pipes.
//! * Linux (≥ 5.3): a pidfd, also the target of signals, so a signal can never reach a recycled
//!   pid.
//! * macOS: a kqueue holding one `EVFILT_PROC`/`NOTE_EXIT` event for the pid (see
//!   [`pidfd_open`]); signals go by pid, and only while that event has not fired.
//!
//! Other Unixes report `Unsupported`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// Environment variable naming the bootstrap descriptor of a spawned child.
pub(crate) const BOOTSTRAP_ENV: &str = "MULTIPROC_BOOTSTRAP";
/// Environment variable naming the command socket of a forkserver.
pub(crate) const FORKSERVER_ENV: &str = "MULTIPROC_FORKSERVER";
/// The argument a spawned child gets, so a binary that forgot `multiproc::init()` fails loudly
/// (unknown argument) instead of running its `main` (or every test) again.
pub(crate) const CHILD_ARG: &str = "--multiproc-child";

pub(crate) fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "starting processes is implemented on Linux and macOS only",
    )
}

/// Exec `exe` with `fd` inherited and named in `env_var`, and standard input on `/dev/null`;
/// returns the pid.
///
/// With `posix_spawn` (a `vfork`-style clone on Linux: no copy of our page tables, however big
/// this process is), so a start costs about what starting `/bin/true` does. The descriptor
/// reaches the child by a `dup2` file action onto a fixed number (3, or 4 if `fd` is 3): the
/// duplicate is not close-on-exec, while `fd` itself and everything else of ours stays
/// close-on-exec. Signal mask and `SIGPIPE` are reset in the child, as `std::process` does. A
/// child never shares its parent's input (as in Python): its standard input is `/dev/null`.
/// Neither bootstrap variable of ours passes through, only the one set here.
///
/// On macOS also `POSIX_SPAWN_CLOEXEC_DEFAULT` (Apple's posix_spawnattr_setflags(3)): only the
/// descriptors the file actions name reach the child, so one that some library opened without
/// close-on-exec cannot leak into it (and, say, keep a pipe of ours from reaching end of file);
/// standard output and error, when open, are named with
/// `posix_spawn_file_actions_addinherit_np` (posix_spawn_file_actions_addclose(3)).
pub(crate) fn spawn_exe(exe: &Path, env_var: &str, fd: &OwnedFd) -> io::Result<u32> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    let raw = fd.as_raw_fd();
    let target: libc::c_int = if raw == 3 { 4 } else { 3 };
    let nul = |e| io::Error::new(io::ErrorKind::InvalidInput, e);
    let path = CString::new(exe.as_os_str().as_bytes()).map_err(nul)?;
    let arg = CString::new(CHILD_ARG).map_err(nul)?;
    let argv = [path.as_ptr(), arg.as_ptr(), std::ptr::null()];
    let mut env: Vec<CString> = Vec::new();
    for (k, v) in std::env::vars_os() {
        if k.as_bytes() == BOOTSTRAP_ENV.as_bytes() || k.as_bytes() == FORKSERVER_ENV.as_bytes() {
            continue;
        }
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        if let Ok(c) = CString::new(kv) {
            env.push(c);
        }
    }
    env.push(CString::new(format!("{env_var}={target}")).map_err(nul)?);
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());

    // SAFETY: plain libc calls on zero-initialised, then initialised, spawn structures that
    // live until the end of this function; every pointer passed points into the CStrings and
    // vectors above, which outlive the posix_spawn call.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        let r = libc::posix_spawn_file_actions_init(&mut actions);
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        let r = libc::posix_spawnattr_init(&mut attr);
        if r != 0 {
            libc::posix_spawn_file_actions_destroy(&mut actions);
            return Err(io::Error::from_raw_os_error(r));
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        let mut r = libc::posix_spawn_file_actions_adddup2(&mut actions, raw, target);
        if r == 0 {
            r = libc::posix_spawn_file_actions_addopen(
                &mut actions,
                0,
                c"/dev/null".as_ptr(),
                libc::O_RDONLY,
                0,
            );
        }
        #[cfg(target_os = "macos")]
        for out in [1, 2] {
            // (only if open: inheriting a closed number would fail the spawn)
            if r == 0 && libc::fcntl(out, libc::F_GETFD) != -1 {
                r = posix_spawn_file_actions_addinherit_np(&mut actions, out);
            }
        }
        if r == 0 {
            r = libc::posix_spawnattr_setsigmask(&mut attr, &empty);
        }
        if r == 0 {
            r = libc::posix_spawnattr_setsigdefault(&mut attr, &pipe);
        }
        #[cfg(target_os = "macos")]
        let only_named = libc::POSIX_SPAWN_CLOEXEC_DEFAULT;
        #[cfg(not(target_os = "macos"))]
        let only_named = 0;
        if r == 0 {
            r = libc::posix_spawnattr_setflags(
                &mut attr,
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF | only_named)
                    as libc::c_short,
            );
        }
        let mut pid: libc::pid_t = 0;
        if r == 0 {
            r = libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                &actions,
                &attr,
                argv.as_ptr() as *const *mut libc::c_char,
                envp.as_ptr() as *const *mut libc::c_char,
            );
        }
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(pid as u32)
    }
}

#[cfg(target_os = "macos")]
extern "C" {
    /// `<spawn.h>`, macOS 10.7 and later: keep `fd` open in a child spawned with
    /// `POSIX_SPAWN_CLOEXEC_DEFAULT`.
    fn posix_spawn_file_actions_addinherit_np(
        actions: *mut libc::posix_spawn_file_actions_t,
        fd: libc::c_int,
    ) -> libc::c_int;
}

/// Fork; the child runs `child` (which never returns), the parent gets the pid.
///
/// # Safety
/// In a multi-threaded parent the child may only rely on what survives `fork` (see the
/// start-method docs); `child` must end the process itself.
pub(crate) unsafe fn fork(child: impl FnOnce()) -> io::Result<u32> {
    // Rust's stdout and stderr locks are held across the fork, so the child gets them unheld:
    // it flushes both before it exits, and another thread printing at the instant of the fork
    // would otherwise hold them for ever there.
    let (out, err) = (std::io::stdout().lock(), std::io::stderr().lock());
    // SAFETY: fork has no preconditions; the caller accepts the multi-threading caveats.
    let pid = unsafe { libc::fork() };
    drop((err, out));
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            child();
            super::exit_now(1)
        }
        pid => Ok(pid as u32),
    }
}

/// A descriptor that refers to process `pid` (race-free signals, pollable for exit).
#[cfg(target_os = "linux")]
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned a new descriptor (close-on-exec by default) that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A descriptor that becomes readable when process `pid` ends: a kqueue (close-on-exec) with
/// one `EVFILT_PROC` event for `NOTE_EXIT` on the pid, never drained, so once the process has
/// exited the kqueue stays readable (for `poll` as for `kevent`) for as long as it is open.
///
/// Following Apple's kqueue(2): `EV_RECEIPT` returns the outcome of the registration in the
/// event itself (`EV_ERROR`, with the error in `data`, 0 for success). xnu's `filt_procattach`
/// refuses (`ESRCH`) a process that no longer exists or is already exiting, and a knote
/// attached before the exit sees it, so no exit is missed between the start and the
/// registration. A process already gone makes the kqueue readable at once (an `EVFILT_USER`
/// event triggered on registration), so a waiter sees it ended. For our own child we also ask
/// `waitid(WNOWAIT)` after registering: one that is already a zombie triggers it too.
///
/// (A kqueue is not inherited by `fork` and cannot be sent over a socket, unlike a pidfd: a
/// forkserver sends only the pid and its client calls this.)
#[cfg(target_os = "macos")]
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: kqueue takes no arguments and returns a new descriptor or -1.
    let raw = super::cvt(unsafe { libc::kqueue() })?;
    // SAFETY: a fresh descriptor that we own.
    let kq = unsafe { OwnedFd::from_raw_fd(raw) };
    super::set_cloexec(raw)?;
    let exit = kevent_change(
        pid as libc::uintptr_t,
        libc::EVFILT_PROC,
        libc::EV_ADD | libc::EV_RECEIPT,
        libc::NOTE_EXIT,
    );
    let mut gone = match register(&kq, &[exit])? {
        0 => false,
        libc::ESRCH => true,
        e => return Err(io::Error::from_raw_os_error(e)),
    };
    if !gone {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on a pid with a valid out-pointer; WNOWAIT leaves the child waitable.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // (ECHILD: not our child, a forkserver's: the registration alone tells)
        gone = r == 0 && info.si_pid != 0;
    }
    if gone {
        let add = kevent_change(0, libc::EVFILT_USER, libc::EV_ADD | libc::EV_RECEIPT, 0);
        let fire = kevent_change(0, libc::EVFILT_USER, libc::EV_RECEIPT, libc::NOTE_TRIGGER);
        match register(&kq, &[add, fire])? {
            0 => {}
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
    Ok(kq)
}

/// One change for `kevent`.
#[cfg(target_os = "macos")]
fn kevent_change(ident: libc::uintptr_t, filter: i16, flags: u16, fflags: u32) -> libc::kevent {
    libc::kevent {
        ident,
        filter,
        flags,
        fflags,
        data: 0,
        udata: std::ptr::null_mut(),
    }
}

/// Apply `changes` (each with `EV_RECEIPT`) to `kq` without taking any pending event: the first
/// error of a change (0 if none).
#[cfg(target_os = "macos")]
fn register(kq: &OwnedFd, changes: &[libc::kevent]) -> io::Result<i32> {
    let mut out: Vec<libc::kevent> = changes.to_vec();
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: `changes` and `out` hold `changes.len()` events each; a zero timeout.
        let n = unsafe {
            libc::kevent(
                kq.as_raw_fd(),
                changes.as_ptr(),
                changes.len() as libc::c_int,
                out.as_mut_ptr(),
                out.len() as libc::c_int,
                &zero,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // (with EV_RECEIPT every change comes back, flagged EV_ERROR, its error in `data`)
        return Ok(out[..n as usize]
            .iter()
            .filter(|e| e.flags & libc::EV_ERROR != 0)
            .map(|e| e.data as i32)
            .find(|&e| e != 0)
            .unwrap_or(0));
    }
}

/// Whether the process behind `pidfd` has ended (its descriptor is readable).
#[cfg(target_os = "macos")]
fn ended(pidfd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(super::poll_readable(&[pidfd.as_raw_fd()], Some(std::time::Duration::ZERO))?[0])
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub(crate) fn pidfd_open(_pid: u32) -> io::Result<OwnedFd> {
    Err(unsupported())
}

/// A pidfd for `pid`, our child that was just started and is not reaped yet. If none can be had
/// (say the descriptor table is full), the child is killed and reaped at once, so a failed
/// start leaves no zombie behind; signalling it by pid is safe because an unreaped child's pid
/// cannot have been reused.
pub(crate) fn pidfd_for_new_child(pid: u32) -> io::Result<OwnedFd> {
    pidfd_open(pid).inspect_err(|_| {
        // SAFETY: kill of our own child, not yet reaped (so `pid` is still that child).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
        let _ = waitpid(pid, true);
    })
}

/// Send `sig` to the process behind `pidfd`, `pid`. A process that already ended is not an
/// error.
///
/// On macOS by pid, only while the exit event of `pidfd` has not fired: an ended process is
/// left alone, since its pid may be another process's once it is reaped. (A process that ends
/// between that look and the signal, and is reaped and its pid reused in that instant, could
/// receive it: macOS has no pidfd to close that window.)
pub(crate) fn send_signal(pidfd: BorrowedFd<'_>, pid: u32, sig: i32) -> io::Result<()> {
    #[cfg(target_os = "macos")]
    {
        if ended(pidfd)? {
            return Ok(());
        }
        // SAFETY: kill takes a pid and a signal number.
        if unsafe { libc::kill(pid as libc::pid_t, sig) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(e);
            }
        }
        Ok(())
    }
    #[cfg(target_os = "linux")]
    {
        let _ = pid;
        // SAFETY: pidfd_send_signal with a valid pidfd, a signal number, no siginfo, no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(e);
            }
        }
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = (pidfd, pid, sig);
        Err(unsupported())
    }
}

/// SIGTERM and SIGKILL, by name.
pub(crate) const SIGTERM: i32 = libc::SIGTERM;
/// See [`SIGTERM`].
pub(crate) const SIGKILL: i32 = libc::SIGKILL;

/// Python's exit code for a wait status: the exit status, or −N for signal N.
pub(crate) fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        -libc::WTERMSIG(status)
    } else {
        status
    }
}

/// Reap our direct child `pid`: `Ok(None)` while it runs (if `block` is false).
pub(crate) fn waitpid(pid: u32, block: bool) -> io::Result<Option<i32>> {
    let mut status = 0;
    loop {
        let flags = if block { 0 } else { libc::WNOHANG };
        // SAFETY: waitpid on a pid with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, flags) };
        if r == 0 {
            return Ok(None);
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(Some(exit_code(status)));
    }
}

/// Ignore SIGINT in this process (the forkserver does, as CPython's does).
pub(crate) fn ignore_sigint() {
    // SAFETY: setting a signal disposition to SIG_IGN.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

/// Restore default dispositions for what the forkserver changed (in its children).
pub(crate) fn default_signals() {
    // SAFETY: setting dispositions to SIG_DFL.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
}

/// Reap the process behind `pidfd`, `pid`, if it has ended (it must be our child): `Ok(None)`
/// while it runs. On Linux with the pidfd, so a recycled pid can never be reaped by mistake; on
/// macOS by pid, only once the exit event of `pidfd` has fired (until it is reaped, the pid is
/// still that child's).
#[cfg(target_os = "macos")]
pub(crate) fn reap_pidfd(pidfd: BorrowedFd<'_>, pid: u32) -> io::Result<Option<i32>> {
    if !ended(pidfd)? {
        return Ok(None);
    }
    waitpid(pid, false)
}

/// See the macOS version.
#[cfg(target_os = "linux")]
pub(crate) fn reap_pidfd(pidfd: BorrowedFd<'_>, _pid: u32) -> io::Result<Option<i32>> {
    loop {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on a pidfd we borrow, with a valid out-pointer.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled the SIGCHLD fields (or left them zero when nothing ended).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        let code = if info.si_code == libc::CLD_EXITED {
            status
        } else {
            -status
        };
        return Ok(Some(code));
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub(crate) fn reap_pidfd(_pidfd: BorrowedFd<'_>, _pid: u32) -> io::Result<Option<i32>> {
    Err(unsupported())
}

/// Make this process die (SIGKILL) as soon as the peer of `boot`, the parent's end of our
/// bootstrap socket, is closed: the parent process ended, however it ended, whichever of its
/// threads started us. Call it once the job is read whole (nothing more is read from `boot`);
/// check [`super::Readiness::HungUp`] on `boot` afterwards to catch a parent that died before.
///
/// On Linux the kernel tells us, with no thread of ours: the socket is put in async mode
/// (`O_ASYNC`, this process as owner) and the kernel raises [`watch_signal`] whenever something
/// wakes the socket. A wake-up is not a death: the write that carried our job wakes the socket
/// once more *after* its bytes were queued, so on a busy machine that late wake-up can come
/// after we read the job and armed the watch (a SIGKILL raised by the kernel itself killed a
/// daemon about once in 3000 forkserver starts that way, before its task); a write space event
/// after a full write of ours, or the parent shutting its writing, wake it too. So the signal
/// runs a handler that looks at the socket and ends the process (SIGKILL) only if it hung up.
/// First our end stops receiving (`shutdown(SHUT_RD)`): the kernel refuses whatever is written
/// to the parent's end from then on (`EPIPE` for the writer) instead of queueing it here, and
/// the parent's going is the socket's hang-up alone (`POLLHUP`: both directions shut, which the
/// peer's close does), never its readability (it reads end of file from now on).
/// Elsewhere a small thread waits for end of file on the socket.
///
/// The handler is installed for the whole process, with `SA_RESTART`: a task that installs its
/// own for [`watch_signal`], or blocks it in every thread, disables the watch.
#[cfg(target_os = "linux")]
pub(crate) fn die_with_parent(boot: BorrowedFd<'_>) -> io::Result<()> {
    use std::sync::atomic::Ordering;
    // <linux/fcntl.h>, the same on every architecture; not in the libc crate for glibc.
    const F_SETSIG: libc::c_int = 10;
    const F_SETOWN_EX: libc::c_int = 15;
    const F_OWNER_PID: libc::c_int = 1;
    #[repr(C)]
    struct FOwnerEx {
        kind: libc::c_int,
        pid: libc::pid_t,
    }
    let fd = boot.as_raw_fd();
    // A process (not thread) owner: the signal reaches us whichever thread is left.
    let owner = FOwnerEx {
        kind: F_OWNER_PID,
        pid: std::process::id() as libc::pid_t,
    };
    WATCHED.store(fd, Ordering::Release);
    // SAFETY: shutdown of a socket we borrow; a handler that only makes async-signal-safe
    // calls (see `on_watch_signal`); fcntl on the socket: F_SETOWN_EX reads one f_owner_ex,
    // F_SETSIG and F_SETFL take an int.
    unsafe {
        super::cvt(libc::shutdown(fd, libc::SHUT_RD))?;
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_watch_signal as WatchHandler as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        super::cvt(libc::sigaction(watch_signal(), &sa, std::ptr::null_mut()))?;
        super::cvt(libc::fcntl(fd, F_SETOWN_EX, &owner as *const FOwnerEx))?;
        super::cvt(libc::fcntl(fd, F_SETSIG, watch_signal()))?;
        let fl = super::cvt(libc::fcntl(fd, libc::F_GETFL))?;
        super::cvt(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_ASYNC))?;
    }
    Ok(())
}

/// The real-time signal the kernel raises on a wake-up of a daemon's bootstrap socket (see
/// [`die_with_parent`]): `SIGRTMAX - 3`, clear of the low real-time signals the C library and
/// most programs take first.
#[cfg(target_os = "linux")]
pub(crate) fn watch_signal() -> libc::c_int {
    libc::SIGRTMAX() - 3
}

/// The descriptor the watch looks at (-1: none).
#[cfg(target_os = "linux")]
static WATCHED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

#[cfg(target_os = "linux")]
type WatchHandler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// A wake-up of the watched socket: end the process if its peer hung up, else ignore it. Only
/// async-signal-safe calls (`poll`, `kill`, `getpid`); errno is saved and restored.
#[cfg(target_os = "linux")]
extern "C" fn on_watch_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let fd = WATCHED.load(std::sync::atomic::Ordering::Acquire);
    if fd < 0 {
        return;
    }
    // SAFETY: errno is this thread's; poll of one pollfd on the stack; kill of ourselves.
    unsafe {
        let errno = *libc::__errno_location();
        // No event asked: only POLLHUP (and POLLERR, POLLNVAL) can be reported; a closed
        // number (POLLNVAL) is not a dead parent.
        let mut p = libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        };
        if libc::poll(&mut p, 1, 0) == 1 && p.revents & libc::POLLHUP != 0 {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        *libc::__errno_location() = errno;
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn die_with_parent(boot: BorrowedFd<'_>) -> io::Result<()> {
    let raw = boot.as_raw_fd();
    std::thread::Builder::new()
        .name("multiproc-parent-watch".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            // The descriptor lives as long as the process (the bootstrap context holds it).
            if super::poll_readable(&[raw], None).is_ok() {
                // SAFETY: signalling ourselves.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
        })?;
    Ok(())
}

/// Undo [`die_with_parent`] before the child writes to its bootstrap socket.
pub(crate) fn stop_dying_with_parent(boot: BorrowedFd<'_>) {
    #[cfg(target_os = "linux")]
    // SAFETY: F_GETFL/F_SETFL on a descriptor we borrow.
    unsafe {
        let fd = boot.as_raw_fd();
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 && fl & libc::O_ASYNC != 0 {
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_ASYNC);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = boot; // the watcher thread only fires on end of file, which a write cannot cause
}

/// Run `f(status)` when the process calls `exit(status)` (after handlers registered later).
/// Returns false where the C library cannot tell the status to a handler (glibc's `on_exit`).
pub(crate) fn at_exit_with_status(f: extern "C" fn(i32, *mut std::ffi::c_void)) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn on_exit(
                f: extern "C" fn(libc::c_int, *mut libc::c_void),
                arg: *mut libc::c_void,
            ) -> libc::c_int;
        }
        // SAFETY: registering a plain function; the argument is unused.
        unsafe { on_exit(f, std::ptr::null_mut()) == 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = f;
        false
    }
}

#[cfg(all(test, target_os = "macos"))]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    /// Poll `fd` until readable, at most 10 s; whether it became readable.
    fn readable_within(fd: BorrowedFd<'_>) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if ended(fd).unwrap() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn the_exit_watch_becomes_readable_when_the_child_exits_and_stays_so() {
        let (r, w) = super::super::pipe().unwrap();
        let rfd = r.as_raw_fd();
        // SAFETY: the child only waits for its pipe and exits.
        let pid = unsafe {
            fork(move || {
                let mut b = [0u8; 1];
                // SAFETY: reading one byte into a stack buffer from our copy of the pipe.
                libc::read(rfd, b.as_mut_ptr().cast(), 1);
                super::super::exit_now(3)
            })
        }
        .unwrap();
        drop(r);
        let watch = pidfd_for_new_child(pid).unwrap();
        assert!(!ended(watch.as_fd()).unwrap(), "still running");
        // a signal that cannot hurt reaches it while it runs
        send_signal(watch.as_fd(), pid, 0).unwrap();
        assert_eq!(reap_pidfd(watch.as_fd(), pid).unwrap(), None);
        drop(w);
        assert!(readable_within(watch.as_fd()));
        assert!(ended(watch.as_fd()).unwrap(), "stays readable");
        assert_eq!(waitpid(pid, true).unwrap(), Some(3));
        // ended: never signalled by pid again (the pid may be another process's now)
        send_signal(watch.as_fd(), pid, SIGKILL).unwrap();
    }

    #[test]
    fn a_watch_on_a_process_already_gone_is_readable_at_once() {
        // SAFETY: the child exits at once.
        let pid = unsafe { fork(|| super::super::exit_now(0)) }.unwrap();
        assert_eq!(waitpid(pid, true).unwrap(), Some(0));
        let watch = pidfd_open(pid).unwrap();
        assert!(ended(watch.as_fd()).unwrap());
        // a zombie child (exited, not reaped) too
        // SAFETY: as above.
        let pid = unsafe { fork(|| super::super::exit_now(4)) }.unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let watch = pidfd_open(pid).unwrap();
        assert!(readable_within(watch.as_fd()));
        // (the exit event may come a moment before the child is a zombie to reap)
        let end = Instant::now() + Duration::from_secs(10);
        let code = loop {
            match reap_pidfd(watch.as_fd(), pid).unwrap() {
                Some(code) => break code,
                None if Instant::now() < end => std::thread::sleep(Duration::from_millis(5)),
                None => panic!("never reaped"),
            }
        };
        assert_eq!(code, 4);
    }
}
