//! Starting, signalling and reaping child processes.
//!
//! Every child gets a pidfd (Linux ≥ 5.3): it is the process's `sentinel` (readable once the
//! process has ended, whoever reaps it) and the target of signals, so a signal can never reach a
//! recycled pid. Other Unixes report `Unsupported` until the cross-platform work lands.

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
        "starting processes is implemented on Linux only so far",
    )
}

/// Exec `exe` with `fd` inherited and named in `env_var`; returns the pid.
///
/// With `posix_spawn` (a `vfork`-style clone on Linux: no copy of our page tables, however big
/// this process is), so a start costs about what starting `/bin/true` does. The descriptor
/// reaches the child by a `dup2` file action onto a fixed number (3, or 4 if `fd` is 3): the
/// duplicate is not close-on-exec, while `fd` itself and everything else of ours stays
/// close-on-exec. Signal mask and `SIGPIPE` are reset in the child, as `std::process` does.
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
        if k.as_bytes() == env_var.as_bytes() {
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
            r = libc::posix_spawnattr_setsigmask(&mut attr, &empty);
        }
        if r == 0 {
            r = libc::posix_spawnattr_setsigdefault(&mut attr, &pipe);
        }
        if r == 0 {
            r = libc::posix_spawnattr_setflags(
                &mut attr,
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
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

#[cfg(not(target_os = "linux"))]
pub(crate) fn pidfd_open(_pid: u32) -> io::Result<OwnedFd> {
    Err(unsupported())
}

/// Send `sig` to the process behind `pidfd`. A process that already ended is not an error.
pub(crate) fn send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
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
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (pidfd, sig);
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
