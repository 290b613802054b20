//! The resource tracker: a tiny process that unlinks the named segments a creator still owned
//! when it died.
//!
//! On the first `SharedMemory::create` of a process we start it with a double `fork` (so it
//! is nobody's child to reap), keeping only the read end of a pipe (the write end stays here,
//! close-on-exec). Creating a segment writes `register name`, unlinking or persisting it writes
//! `forget name`: fixed 33-byte records, atomic on a pipe. When every write end is gone — this
//! process ended, however it ended — the tracker reads end of file, unlinks what is still
//! registered, and exits. A forked child closes its copy of the parent's write end at once (a
//! `pthread_atfork` handler), so its parent's tracker never waits for it; if it creates segments
//! it starts a tracker of its own. The tracker's state lives in a slot tagged with the pid that
//! made it: a forked child makes its own slot and never takes its parent's lock, which another
//! thread may have held at the instant of the fork (it would stay held for ever in the child).
//!
//! Between `fork` and its exit the tracker runs only async-signal-safe calls (`read`, `close`,
//! `dup2`, `open`, `shm_unlink`, `signal`, `_exit`) on memory allocated before the fork: it is
//! safe to start from a program with threads.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};

use parking_lot::Mutex;

/// `/` + at most 30 name bytes + NUL.
const NAME: usize = 32;
const RECORD: usize = 1 + NAME;
/// Segments one process can have registered at once; more are not tracked (and logged).
const SLOTS: usize = 4096;
const REGISTER: u8 = b'R';
const FORGET: u8 = b'F';

struct Tracker {
    pipe: Option<OwnedFd>,
    registered: usize,
}

/// One process's tracker (`None` until its first segment).
struct Slot {
    /// The process this slot serves: a forked child makes its own.
    pid: u32,
    tracker: Mutex<Option<Tracker>>,
}

/// This process's slot. Slots are never freed (a child leaves its parent's alone: its lock may
/// be held by a thread that does not exist in the child), so a loaded pointer stays valid.
static SLOT: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());

/// This process's tracker state, made on first use in each process.
fn slot() -> &'static Mutex<Option<Tracker>> {
    let me = super::getpid();
    let mut cur = SLOT.load(Ordering::Acquire);
    loop {
        // SAFETY: non-null slots come from `Box::into_raw` below and are never freed.
        if let Some(s) = unsafe { cur.as_ref() } {
            if s.pid == me {
                return &s.tracker;
            }
        }
        let fresh = Box::into_raw(Box::new(Slot {
            pid: me,
            tracker: Mutex::new(None),
        }));
        match SLOT.compare_exchange(cur, fresh, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: just installed; never freed.
            Ok(_) => return unsafe { &(*fresh).tracker },
            Err(now) => {
                // SAFETY: `fresh` was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                cur = now;
            }
        }
    }
}

/// The write end of this process's tracker pipe (-1: none), for the fork handler, which closes
/// it in every forked child and sets it to -1 there.
static PIPE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn close_in_child() {
    let fd = PIPE_FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: close is async-signal-safe; the descriptor is the child's copy of the write
        // end (see `send` for who owns it afterwards).
        unsafe { libc::close(fd) };
    }
}

/// Track `os_name` (`/name`) for this process.
pub(crate) fn register(os_name: &str) {
    send(REGISTER, os_name);
}

/// Stop tracking `os_name`: it was unlinked, or its owner gave it up.
pub(crate) fn forget(os_name: &str) {
    send(FORGET, os_name);
}

fn send(op: u8, os_name: &str) {
    let bytes = os_name.as_bytes();
    if bytes.len() >= NAME {
        return; // cannot happen: names are validated to 30 bytes
    }
    let mut g = slot().lock();
    if g.is_none() {
        if op == FORGET {
            return;
        }
        // The handler goes in before the pipe exists, so no child forked later keeps our write
        // end (which would delay our clean-up until that child ends). Not a `Once`: a child
        // forked while another thread ran it would wait for it for ever.
        static AT_FORK: AtomicBool = AtomicBool::new(false);
        if !AT_FORK.swap(true, Ordering::AcqRel) {
            // SAFETY: registers a handler that only swaps an atomic and closes a descriptor
            // (async-signal-safe).
            unsafe { libc::pthread_atfork(None, None, Some(close_in_child)) };
        }
        match start() {
            Ok(fd) => {
                PIPE_FD.store(fd.as_raw_fd(), Ordering::Relaxed);
                *g = Some(Tracker {
                    pipe: Some(fd),
                    registered: 0,
                })
            }
            Err(e) => {
                tracing::warn!("no resource tracker (segments of a killed creator will leak): {e}");
                *g = Some(Tracker {
                    pipe: None,
                    registered: 0,
                });
                return;
            }
        }
    }
    let t = g.as_mut().expect("set above");
    let Some(fd) = t.pipe.as_ref() else { return };
    if op == REGISTER {
        if t.registered >= SLOTS {
            tracing::warn!(
                name = os_name,
                "resource tracker full; not tracking this segment"
            );
            return;
        }
        t.registered += 1;
    } else {
        t.registered = t.registered.saturating_sub(1);
    }
    let mut rec = [0u8; RECORD];
    rec[0] = op;
    rec[1..1 + bytes.len()].copy_from_slice(bytes);
    // SAFETY: write of a 33-byte stack buffer to a pipe we own (atomic: below PIPE_BUF).
    let n = unsafe { libc::write(fd.as_raw_fd(), rec.as_ptr().cast(), RECORD) };
    if n != RECORD as isize {
        tracing::warn!(
            "resource tracker unreachable: {}",
            io::Error::last_os_error()
        );
    }
}

/// Start the tracker; the write end of its pipe.
fn start() -> io::Result<OwnedFd> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe into a two-element array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned these two descriptors; we own them.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on our descriptor: the write end must not reach exec'd children.
    if unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Everything the tracker needs, allocated before the fork.
    let mut table: Vec<[u8; NAME]> = vec![[0u8; NAME]; SLOTS];
    let (rfd, wfd) = (r.as_raw_fd(), w.as_raw_fd());
    // SAFETY: fork; the child below runs only async-signal-safe calls and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the child of a fork: async-signal-safe calls only, then _exit.
        unsafe {
            if bare_fork() != 0 {
                libc::_exit(0); // the intermediate child: the tracker is orphaned, not ours
            }
            serve(rfd, wfd, &mut table)
        }
    }
    // Reap the intermediate child (it exits at once).
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    drop(r);
    drop(table);
    Ok(w)
}

/// `fork` without the `pthread_atfork` handlers (in a child of a multi-threaded process they
/// could wait for locks no thread will release).
///
/// # Safety
/// As `fork`.
unsafe fn bare_fork() -> libc::pid_t {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: clone with only SIGCHLD is a plain fork; no handler runs.
        unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) as libc::pid_t }
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: as the caller's contract.
        unsafe { libc::fork() }
    }
}

/// The tracker's life.
///
/// # Safety
/// Only in the child of a fork; `table` was allocated before it.
unsafe fn serve(rfd: libc::c_int, wfd: libc::c_int, table: &mut [[u8; NAME]]) -> ! {
    // SAFETY: async-signal-safe calls only, on descriptors of this process and on memory we
    // own (the whole body).
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::close(wfd);
        // Hold nothing else of the parent's: its pipes and sockets must see their peers go.
        let keep = if rfd == 3 { 3 } else { libc::dup2(rfd, 3) };
        if keep != 3 {
            libc::_exit(1);
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
        }
        close_from(4);
        let mut rec = [0u8; RECORD];
        loop {
            let mut got = 0;
            while got < RECORD {
                let n = libc::read(3, rec.as_mut_ptr().add(got).cast(), RECORD - got);
                if n > 0 {
                    got += n as usize;
                } else if n < 0 && *errno() == libc::EINTR {
                    continue;
                } else {
                    // End of file (or an error): our creators are gone.
                    for name in table.iter().filter(|n| n[0] != 0) {
                        libc::shm_unlink(name.as_ptr().cast());
                    }
                    libc::_exit(0);
                }
            }
            let name = &rec[1..];
            match rec[0] {
                REGISTER => {
                    if let Some(slot) = table.iter_mut().find(|s| s[0] == 0) {
                        slot.copy_from_slice(name);
                    }
                }
                FORGET => {
                    if let Some(slot) = table.iter_mut().find(|s| &s[..] == name) {
                        slot[0] = 0;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Close every descriptor from `first` up (async-signal-safe).
///
/// # Safety
/// Only where nothing else uses those descriptors (the tracker child).
unsafe fn close_from(first: libc::c_int) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: close_range takes plain integers; on success everything is closed.
        if unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                libc::c_uint::MAX,
                0,
            )
        } == 0
        {
            return;
        }
    }
    for fd in first..4096 {
        // SAFETY: closing descriptors of this (tracker) process; errors are ignored.
        unsafe { libc::close(fd) };
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
unsafe fn errno() -> *mut libc::c_int {
    // SAFETY: the thread's errno location.
    unsafe { libc::__errno_location() }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
unsafe fn errno() -> *mut libc::c_int {
    // SAFETY: the thread's errno location.
    unsafe { libc::__error() }
}
