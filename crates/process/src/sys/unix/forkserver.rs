//! The forkserver: a single-threaded helper, started by spawn (so it is a fresh process with no
//! threads), that forks children on request.
//!
//! Protocol on the command socket (a socketpair; the client keeps one end):
//! * request: 1 byte `F` with the child's bootstrap descriptor attached;
//! * reply: the child's pid (4 bytes, little endian) with a pidfd for it attached (on Linux; on
//!   macOS the pid alone: a kqueue cannot be sent, the client makes its own, see
//!   [`proc::pidfd_open`]).
//!
//! The forkserver reaps its children (it is their parent) and reports each exit status through
//! the `on_exit` callback, which writes it down the child's bootstrap socket to the real parent
//! (without blocking: a full socket must never stall the server for its other children).
//! It leaves when the command socket reaches end of file, i.e. when the client process is gone.
//!
//! The forkserver is the client's own (spawned) child: the client keeps a [`Server`] handle on it
//! (a pidfd), so a parent can tell that the server died (its children's exit statuses died with
//! it) and reaps a dead server instead of leaving it a zombie.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use super::proc;
use crate::per_process::PerProcess;

/// The client's handle on a forkserver process (our direct child).
pub(crate) struct Server {
    pid: u32,
    /// Readable once the server has ended.
    pidfd: OwnedFd,
}

impl Server {
    /// The descriptor that becomes readable when the server ends.
    pub(crate) fn wait_handle(&self) -> RawFd {
        self.pidfd.as_raw_fd()
    }

    /// Whether the server has ended.
    pub(crate) fn is_dead(&self) -> bool {
        super::poll_readable(&[self.pidfd.as_raw_fd()], Some(std::time::Duration::ZERO))
            .map_or(true, |r| r[0])
    }
}

struct Client {
    sock: OwnedFd,
    server: std::sync::Arc<Server>,
}

/// The connection to this process's forkserver. A forked child never shares its parent's: it
/// starts with none (dropping its copy of the parent's socket if that was not in use at the fork).
static CLIENT: PerProcess<Option<Client>> = PerProcess::new(|parents| {
    drop(parents.and_then(Option::take));
    None
});

/// Servers that stopped answering and were replaced, not yet reaped. A forked child starts with
/// none: its parent's servers are not its children.
static RETIRED: PerProcess<Vec<std::sync::Arc<Server>>> = PerProcess::new(|parents| {
    drop(parents.map(std::mem::take));
    Vec::new()
});

/// Reap every replaced forkserver that has ended (without blocking), so dead servers never
/// accumulate as zombies. Called on each forkserver start and when a child of a dead server is
/// collected.
pub(crate) fn reap_retired() {
    RETIRED.lock().retain(|s| !reap(s));
}

/// Reap `server` if it has ended; true once it is reaped (or is not ours to reap).
pub(crate) fn reap(server: &Server) -> bool {
    match proc::reap_pidfd(server.pidfd.as_fd(), server.pid) {
        Ok(Some(code)) => {
            tracing::debug!(pid = server.pid, code, "forkserver reaped");
            true
        }
        Ok(None) => false,
        // ECHILD: already reaped (by another collector) or not our child (a forked process)
        Err(_) => true,
    }
}

/// Ask the forkserver (started on first use) for a child running on `boot`; returns its pid, a
/// pidfd for it, and the server that is its parent.
pub(crate) fn start_child(
    exe: &std::path::Path,
    boot: &OwnedFd,
) -> io::Result<(u32, OwnedFd, std::sync::Arc<Server>)> {
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = (exe, boot);
        return Err(proc::unsupported());
    }
    #[allow(unreachable_code)]
    let mut guard = CLIENT.lock();
    reap_retired();
    for attempt in 0..2 {
        if guard.is_none() {
            *guard = Some(launch(exe)?);
        }
        let client = guard.as_ref().expect("launched above");
        let (sock, server) = (&client.sock, client.server.clone());
        let res = super::send_with_fds(sock.as_fd(), b"F", &[boot.as_raw_fd()]).and_then(|()| {
            let mut pid = [0u8; 4];
            #[cfg(not(target_os = "macos"))]
            let pidfd = super::recv_with_fds(sock.as_fd(), &mut pid, 1)?
                .pop()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "forkserver sent no pidfd")
                })?;
            #[cfg(target_os = "macos")]
            let pidfd = {
                if !super::recv_with_fds(sock.as_fd(), &mut pid, 0)?.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "forkserver sent descriptors",
                    ));
                }
                proc::pidfd_open(u32::from_le_bytes(pid))?
            };
            Ok((u32::from_le_bytes(pid), pidfd, server))
        });
        match res {
            Ok(r) => return Ok(r),
            Err(e) if attempt == 0 => {
                tracing::warn!("forkserver unreachable ({e}); starting a new one");
                if let Some(old) = guard.take() {
                    // Closing our end makes a live but confused server leave too.
                    drop(old.sock);
                    if !reap(&old.server) {
                        RETIRED.lock().push(old.server);
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns on its second attempt")
}

/// Forget the client connection (in a forked child, which must not share the parent's): the
/// first use of each in this process does it. The replaced servers are not the child's to reap
/// either.
pub(crate) fn forget_client() {
    drop(CLIENT.lock());
    drop(RETIRED.lock());
}

fn launch(exe: &std::path::Path) -> io::Result<Client> {
    let (ours, theirs) = super::socketpair()?;
    let pid = proc::spawn_exe(exe, proc::FORKSERVER_ENV, &theirs)?;
    let pidfd = match proc::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            // Without a handle we could never reap it: do it now.
            drop(ours);
            let _ = proc::waitpid(pid, true);
            return Err(e);
        }
    };
    tracing::debug!(pid, "forkserver started");
    Ok(Client {
        sock: ours,
        server: std::sync::Arc::new(Server { pid, pidfd }),
    })
}

static SIGCHLD_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigchld(_: libc::c_int) {
    let fd = SIGCHLD_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write is async-signal-safe; a full pipe (EAGAIN) already means "wake up".
        unsafe {
            libc::write(fd, b"c".as_ptr().cast(), 1);
        }
    }
}

/// Run the forkserver on `sock` (never returns). `child_main` runs in each forked child with its
/// bootstrap descriptor; `on_exit` reports a reaped child's exit code on that descriptor.
pub(crate) fn serve(sock: OwnedFd, child_main: fn(OwnedFd) -> !, on_exit: fn(&OwnedFd, i32)) -> ! {
    proc::ignore_sigint();
    let (wake_r, wake_w) = match super::pipe() {
        Ok(p) => p,
        Err(_) => super::exit_now(70),
    };
    // SAFETY: making our own pipe end non-blocking.
    unsafe {
        libc::fcntl(wake_w.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
        libc::fcntl(wake_r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
    }
    SIGCHLD_PIPE.store(wake_w.as_raw_fd(), Ordering::Relaxed);
    // SAFETY: installing an async-signal-safe handler for SIGCHLD.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigchld as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut());
    }
    let mut children: HashMap<u32, OwnedFd> = HashMap::new();
    let fds: [RawFd; 2] = [sock.as_raw_fd(), wake_r.as_raw_fd()];
    loop {
        let ready = match super::poll_readable(&fds, None) {
            Ok(r) => r,
            Err(_) => super::exit_now(71),
        };
        if ready[1] {
            let mut sink = [0u8; 64];
            while matches!(super::read(wake_r.as_fd(), &mut sink), Ok(n) if n > 0) {}
            loop {
                let mut status = 0;
                // SAFETY: reaping any child without blocking.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if let Some(boot) = children.remove(&(pid as u32)) {
                    on_exit(&boot, proc::exit_code(status));
                }
            }
        }
        if ready[0] {
            let mut req = [0u8; 1];
            let boot = match super::recv_with_fds(sock.as_fd(), &mut req, 1) {
                Ok(mut f) if req == *b"F" && f.len() == 1 => f.pop().expect("one descriptor"),
                // end of file (the client is gone) or a malformed request: leave
                _ => super::exit_now(0),
            };
            let boot_raw = boot.as_raw_fd();
            let mut inherited: Vec<RawFd> = children.values().map(|f| f.as_raw_fd()).collect();
            inherited.extend([sock.as_raw_fd(), wake_r.as_raw_fd(), wake_w.as_raw_fd()]);
            let child = move || {
                SIGCHLD_PIPE.store(-1, Ordering::Relaxed);
                proc::default_signals();
                for fd in inherited {
                    super::close_raw(fd);
                }
                // SAFETY: the child's copy of the bootstrap descriptor is owned by it alone.
                child_main(unsafe { OwnedFd::from_raw_fd(boot_raw) })
            };
            // SAFETY: this process is single-threaded; the child ends the process itself.
            let forked = unsafe { proc::fork(child) };
            let reply = forked.and_then(|pid| {
                #[cfg(not(target_os = "macos"))]
                {
                    let pidfd = proc::pidfd_open(pid)?;
                    super::send_with_fds(sock.as_fd(), &pid.to_le_bytes(), &[pidfd.as_raw_fd()])?;
                }
                #[cfg(target_os = "macos")]
                super::send_with_fds(sock.as_fd(), &pid.to_le_bytes(), &[])?;
                Ok(pid)
            });
            match reply {
                Ok(pid) => {
                    children.insert(pid, boot);
                }
                Err(e) => {
                    tracing::error!("forkserver could not fork: {e}");
                    super::exit_now(72)
                }
            }
        }
    }
}

/// Send `data` on a socket in one call without blocking (and without SIGPIPE); an exit report
/// of the server must never wait for a reader. Sending less than all of it is an error.
pub(crate) fn send_nowait(sock: std::os::fd::BorrowedFd<'_>, data: &[u8]) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    #[cfg(not(target_os = "linux"))]
    let flags = libc::MSG_DONTWAIT;
    loop {
        // SAFETY: `data` is valid for `data.len()` bytes of reads.
        let n = unsafe { libc::send(sock.as_raw_fd(), data.as_ptr().cast(), data.len(), flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n as usize != data.len() {
            return Err(io::ErrorKind::WriteZero.into());
        }
        return Ok(());
    }
}
