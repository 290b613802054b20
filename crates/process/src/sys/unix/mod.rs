//! Unix implementation of the platform layer (Linux first; macOS compiles and shares it).

pub(crate) mod forkserver;
pub(crate) mod proc;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use multiproc_pickle::scm;

/// Raw handle that `wait()` can poll.
pub(crate) type RawWait = RawFd;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; F_SETFD takes an int argument.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(())
}

/// A one-way pipe: (read end, write end), both close-on-exec. On Linux the kernel buffer is
/// raised to 1 MiB when allowed, which halves the wake-ups for big messages.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        // SAFETY: `fds` has room for the two descriptors pipe writes.
        cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
        set_cloexec(fds[0])?;
        set_cloexec(fds[1])?;
    }
    // SAFETY: pipe succeeded, so both descriptors are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(target_os = "linux")]
    // SAFETY: F_SETPIPE_SZ on a pipe we own; failure (over the per-user limit) is harmless.
    unsafe {
        libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
    Ok((r, w))
}

/// The kernel buffer of the sending end `fd`, in bytes: a pipe's capacity, or a socket's
/// send buffer as the kernel reports it. `None` if neither can be read.
pub(crate) fn send_buffer_size(fd: BorrowedFd<'_>) -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: F_GETPIPE_SZ on a descriptor we borrow; fails harmlessly on a non-pipe.
        let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) };
        if n > 0 {
            return Some(n as usize);
        }
    }
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt of an int-sized option into `v`, whose size `len` states.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (r == 0 && v > 0).then_some(v as usize)
}

/// A connected pair of Unix stream sockets, both close-on-exec.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let ty = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let ty = libc::SOCK_STREAM;
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) })?;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        set_cloexec(fds[0])?;
        set_cloexec(fds[1])?;
    }
    // SAFETY: socketpair succeeded, so both descriptors are open and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected pair of Unix datagram sockets, both close-on-exec (a pipe's side channel for
/// OS handles).
pub(crate) fn datagram_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let ty = libc::SOCK_DGRAM | libc::SOCK_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let ty = libc::SOCK_DGRAM;
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) })?;
    // SAFETY: socketpair succeeded, so both descriptors are open and ours.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        set_cloexec(fds[0])?;
        set_cloexec(fds[1])?;
    }
    Ok(pair)
}

/// Read what is available (at least one byte, or 0 at end of file).
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` writable bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Write all of `bufs`, in order, with as few `writev` calls as the kernel allows (waiting for
/// room on a descriptor in non-blocking mode).
pub(crate) fn write_all_vectored(fd: BorrowedFd<'_>, bufs: &[&[u8]]) -> io::Result<()> {
    const EMPTY: libc::iovec = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    // The common case (header + payload) stays on the stack.
    let mut small = [EMPTY; 4];
    let mut large = Vec::new();
    let iov: &mut [libc::iovec] = if bufs.len() <= small.len() {
        &mut small[..]
    } else {
        large.resize(bufs.len(), EMPTY);
        &mut large[..]
    };
    let mut len = 0;
    for b in bufs.iter().filter(|b| !b.is_empty()) {
        iov[len] = libc::iovec {
            iov_base: b.as_ptr() as *mut _,
            iov_len: b.len(),
        };
        len += 1;
    }
    let iov = &mut iov[..len];
    let mut first = 0;
    while first < iov.len() {
        let cnt = (iov.len() - first).min(1024) as libc::c_int;
        // SAFETY: every iovec points into a live slice of `bufs` (advanced below within bounds).
        let n = unsafe { libc::writev(fd.as_raw_fd(), iov[first..].as_ptr(), cnt) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                // A descriptor in non-blocking mode (its file may be shared with a process
                // that set it so): wait for room rather than leave a message half sent.
                io::ErrorKind::WouldBlock => {
                    poll_ready(&[(fd.as_raw_fd(), true)], None)?;
                    continue;
                }
                _ => return Err(e),
            }
        }
        let mut n = n as usize;
        while n > 0 {
            let v = &mut iov[first];
            if n >= v.iov_len {
                n -= v.iov_len;
                first += 1;
            } else {
                // SAFETY: n < iov_len, so the advanced pointer stays inside the same slice.
                v.iov_base = unsafe { (v.iov_base as *mut u8).add(n) }.cast();
                v.iov_len -= n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// Wait until some of `fds` are readable (or hung up, or errored); returns a flag per fd.
/// `None` waits forever; a zero timeout only checks.
pub(crate) fn poll_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    poll(&mut pfds, timeout)
}

/// Wait until some of `fds` are ready: each `(fd, write)` for reading, or for writing when
/// `write` is set (a hang-up or an error counts as ready); returns a flag per fd. `None` waits
/// forever; a zero timeout only checks.
pub(crate) fn poll_ready(
    fds: &[(RawFd, bool)],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, write)| libc::pollfd {
            fd,
            events: if write { libc::POLLOUT } else { libc::POLLIN },
            revents: 0,
        })
        .collect();
    poll(&mut pfds, timeout)
}

/// The events that make a descriptor ready for [`poll_for`]: readable (data or end of file),
/// or only hung up (the peer closed its end; data waiting does not count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    Readable,
    HungUp,
}

/// Wait until some of `fds` are ready, each as its [`Readiness`] says (an error counts as
/// ready); returns a flag per fd. `None` waits forever; a zero timeout only checks.
///
/// `HungUp` asks the kernel for no event at all: `poll` still reports `POLLHUP` (on a Unix
/// stream socket: both directions shut, which the peer's close does) and `POLLERR`. So a socket
/// that reads end of file only because this side shut its own reading (see
/// [`proc::die_with_parent`]) is not hung up. Elsewhere than on Linux, where the hang-up report
/// of sockets varies, `HungUp` is readability (end of file), as it was.
pub(crate) fn poll_for(
    fds: &[(RawFd, Readiness)],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let hung_up = if cfg!(target_os = "linux") {
        0
    } else {
        libc::POLLIN
    };
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, r)| libc::pollfd {
            fd,
            events: match r {
                Readiness::Readable => libc::POLLIN,
                Readiness::HungUp => hung_up,
            },
            revents: 0,
        })
        .collect();
    poll(&mut pfds, timeout)
}

/// `poll` until something in `pfds` is ready or the timeout passes (retrying on `EINTR`, never
/// returning early); a flag per entry.
fn poll(pfds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // round up so we never return before the deadline
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structs.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 && deadline.is_some_and(|d| Instant::now() < d) {
            continue;
        }
        return Ok(pfds.iter().map(|p| p.revents != 0).collect());
    }
}

/// Send `data` (at least one byte) with `fds` attached as `SCM_RIGHTS`, all of it.
pub(crate) fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    // SAFETY: the caller's descriptors stay open for this call.
    let fds: Vec<BorrowedFd<'_>> = fds
        .iter()
        .map(|&f| unsafe { BorrowedFd::borrow_raw(f) })
        .collect();
    send_all_with_fds(sock, &[data], &fds)
}

/// Send all of `bufs`, in order, with `fds` attached to the first bytes (`SCM_RIGHTS`).
pub(crate) fn send_all_with_fds(
    sock: BorrowedFd<'_>,
    bufs: &[&[u8]],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let mut sent = scm::send_with_fds(sock, bufs, fds, false)?;
    while sent < total {
        // the descriptors went with the first bytes; send the rest plainly
        let mut skip = sent;
        let rest: Vec<&[u8]> = bufs
            .iter()
            .filter_map(|b| {
                if skip >= b.len() {
                    skip -= b.len();
                    None
                } else {
                    let r = &b[skip..];
                    skip = 0;
                    Some(r)
                }
            })
            .collect();
        sent += scm::send_with_fds(sock, &rest, &[], false)?;
    }
    Ok(())
}

/// Receive exactly `buf.len()` bytes and the descriptors attached to them (close-on-exec), at
/// most `max_fds` of them (more, or a truncated control buffer, is an error; every descriptor
/// received is closed then).
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<Vec<OwnedFd>> {
    let mut fds = Vec::new();
    let mut got = 0;
    while got < buf.len() {
        let r = scm::recv_with_fds(sock, &mut buf[got..], false, false)?;
        if r.len == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += r.len;
        fds.extend(r.fds);
        if r.truncated || fds.len() > max_fds {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "too many descriptors attached",
            ));
        }
    }
    Ok(fds)
}

/// Whether `fd` is a socket (that can carry descriptors if it is a Unix one).
pub(crate) fn is_unix_socket(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: a zeroed sockaddr_storage is a valid buffer for getsockname.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of_val(&addr) as libc::socklen_t;
    // SAFETY: getsockname into `addr`, whose size `len` states.
    let r = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    r == 0 && addr.ss_family as libc::c_int == libc::AF_UNIX
}

/// Read what is available into `v`'s spare capacity (at most `max` bytes), with the
/// descriptors that came along (a Unix socket).
pub(crate) fn recv_into_spare(
    fd: BorrowedFd<'_>,
    v: &mut Vec<u8>,
    max: usize,
) -> io::Result<scm::Received> {
    scm::recv_into_spare(fd, v, max)
}

/// The raw number of a handle, for `wait()` and the bootstrap environment variable.
pub(crate) fn raw(fd: BorrowedFd<'_>) -> RawWait {
    fd.as_raw_fd()
}

/// Adopt the descriptor named by its number in `text` (the value of a bootstrap variable), once
/// it is known to be what a parent leaves there: a Unix stream socket, never a standard stream.
/// `Err` says why it is not (and nothing is adopted then).
///
/// # Safety
/// A descriptor that passes the checks must be owned by nobody else in this process.
pub(crate) unsafe fn adopt_named(text: &str) -> Result<OwnedFd, String> {
    let fd: RawFd = text
        .parse()
        .map_err(|_| "is not a descriptor number".to_string())?;
    if (0..=2).contains(&fd) {
        return Err(format!(
            "names standard {}, never a bootstrap socket",
            ["input", "output", "error"][fd as usize]
        ));
    }
    if fd < 0 {
        return Err("is not a descriptor number".into());
    }
    // SAFETY: fstat writes into a zeroed stat buffer; any number is a valid argument.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err("is not an open descriptor".into());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err("is not a socket".into());
    }
    let opt = |name: libc::c_int| -> Option<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes one int into `v`, whose size `len` gives.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (r == 0).then_some(v)
    };
    if opt(libc::SO_TYPE) != Some(libc::SOCK_STREAM) {
        return Err("is not a stream socket".into());
    }
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    if opt(libc::SO_DOMAIN) != Some(libc::AF_UNIX) {
        return Err("is not a Unix-domain socket".into());
    }
    // SAFETY: checked above to be an open socket of the kind a parent leaves; the caller
    // guarantees that nobody else owns it.
    Ok(unsafe { adopt(fd) })
}

/// Point standard input at `/dev/null` (a child never reads its parent's input, as in Python).
pub(crate) fn stdin_from_devnull() -> io::Result<()> {
    // SAFETY: open of a constant NUL-terminated path.
    let fd = cvt(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    if fd != 0 {
        // SAFETY: dup2 of our new descriptor onto 0 (which loses close-on-exec, as stdin should),
        // then close of the original, which nothing else knows.
        let r = unsafe { libc::dup2(fd, 0) };
        // SAFETY: see above.
        unsafe { libc::close(fd) };
        cvt(r)?;
    }
    Ok(())
}

/// How many threads this process has (`None` where it cannot tell): the entries of
/// `/proc/self/task`, one `getdents` for a few threads; on macOS `pti_threadnum` of
/// `proc_pidinfo(PROC_PIDTASKINFO)` (libproc.h).
pub(crate) fn thread_count() -> Option<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        std::fs::read_dir("/proc/self/task").ok().map(|d| d.count())
    }
    #[cfg(target_os = "macos")]
    {
        // SAFETY: a zeroed proc_taskinfo (integers only) is a valid out-buffer.
        let mut info: libc::proc_taskinfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::proc_taskinfo>() as libc::c_int;
        // SAFETY: proc_pidinfo on our own pid writes at most `size` bytes into `info`.
        let n = unsafe {
            libc::proc_pidinfo(
                libc::getpid(),
                libc::PROC_PIDTASKINFO,
                0,
                (&mut info as *mut libc::proc_taskinfo).cast(),
                size,
            )
        };
        if n != size {
            return None;
        }
        usize::try_from(info.pti_threadnum).ok()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
    {
        None
    }
}

/// Adopt a descriptor named by number.
///
/// # Safety
/// `fd` must be open and owned by nobody else in this process.
pub(crate) unsafe fn adopt(fd: RawFd) -> OwnedFd {
    let _ = set_cloexec(fd);
    // SAFETY: the caller guarantees ownership.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Logical CPUs this process may run on (affinity mask and cgroup quota respected).
pub(crate) fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// This process's id.
pub(crate) fn getpid() -> u32 {
    std::process::id()
}

/// Leave the process now: flush Rust's stdout, then `_exit` (no atexit handlers, no destructors).
pub(crate) fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// Register `f` to run when the process exits normally (return from main or `exit`).
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain function with the signature atexit expects.
    unsafe {
        libc::atexit(f);
    }
}

/// Borrow an owned handle.
pub(crate) fn borrow(h: &OwnedFd) -> BorrowedFd<'_> {
    use std::os::fd::AsFd;
    h.as_fd()
}

/// Read up to `max` bytes into `v`'s spare capacity (growing it if needed); returns the count.
pub(crate) fn read_into_spare(
    fd: BorrowedFd<'_>,
    v: &mut Vec<u8>,
    max: usize,
) -> io::Result<usize> {
    v.reserve(max);
    let spare = v.spare_capacity_mut();
    let len = spare.len().min(max);
    loop {
        // SAFETY: `spare` is valid for `len` bytes of writes; read initializes what it reports.
        let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), len) };
        if n >= 0 {
            // SAFETY: the kernel initialized exactly `n` bytes after the old length.
            unsafe { v.set_len(v.len() + n as usize) };
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Switch a descriptor to non-blocking mode.
/// What open file `fd` names (device and inode): the same number naming another file later
/// means it was closed behind its owner's back and reused.
pub(crate) fn file_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    // SAFETY: fstat writes into a zeroed stat buffer; `fd` is a borrowed open descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we borrow.
    unsafe {
        let fl = cvt(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
        cvt(libc::fcntl(
            fd.as_raw_fd(),
            libc::F_SETFL,
            fl | libc::O_NONBLOCK,
        ))?;
    }
    Ok(())
}

/// Close a raw descriptor (in a freshly forked child, for descriptors it must not keep).
pub(crate) fn close_raw(fd: RawFd) {
    // SAFETY: the caller names a descriptor of this process that nothing else will use.
    unsafe {
        libc::close(fd);
    }
}

/// Descriptors of live connections. A forked child inherits every descriptor of its parent,
/// including the parent's ends of its pipes, and would then never see end of file on its own
/// ends; `neutralize_inherited` fixes that in the child.
///
/// A set of descriptor numbers, one bit each, in chunks of 2^16 numbers made on first use and
/// never freed: lock-free, so a child forked while another thread was adding or removing a
/// descriptor reads it without waiting for a lock nobody would release.
static INHERITABLE: [AtomicPtr<FdChunk>; FD_CHUNKS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; FD_CHUNKS];
const FD_CHUNK_BITS: usize = 1 << 16;
/// Chunks for every non-negative `c_int` (2^31 numbers).
const FD_CHUNKS: usize = 1 << 15;
struct FdChunk([AtomicU64; FD_CHUNK_BITS / 64]);
/// One more than the highest chunk ever made: `neutralize_inherited` looks no further, so a
/// forked child reads one chunk, not the whole 256 KiB table of chunk pointers (whose untouched
/// pages would each cost it a page fault).
static FD_CHUNKS_USED: AtomicUsize = AtomicUsize::new(0);

/// The word and bit of `fd` in its chunk, and the chunk (made if `create`).
fn fd_bit(fd: RawFd, create: bool) -> Option<(&'static AtomicU64, u64)> {
    let n = usize::try_from(fd).ok()?;
    let cell = &INHERITABLE[n / FD_CHUNK_BITS];
    let mut chunk = cell.load(Ordering::Acquire);
    if chunk.is_null() {
        if !create {
            return None;
        }
        // (before the chunk is published, so a child that finds a bit set also finds its chunk
        // below the mark)
        FD_CHUNKS_USED.fetch_max(n / FD_CHUNK_BITS + 1, Ordering::AcqRel);
        let fresh = Box::into_raw(Box::new(FdChunk(std::array::from_fn(|_| {
            AtomicU64::new(0)
        }))));
        chunk = match cell.compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(theirs) => {
                // SAFETY: `fresh` was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                theirs
            }
        };
    }
    // SAFETY: chunks come from `Box::into_raw` above and are never freed.
    let chunk = unsafe { &*chunk };
    let i = n % FD_CHUNK_BITS;
    Some((&chunk.0[i / 64], 1 << (i % 64)))
}

pub(crate) fn track_inheritable(fd: BorrowedFd<'_>) {
    if let Some((word, bit)) = fd_bit(fd.as_raw_fd(), true) {
        word.fetch_or(bit, Ordering::AcqRel);
    }
}

/// [`track_inheritable`] or [`untrack_inheritable`], as `yes` says.
pub(crate) fn set_inheritable_tracked(fd: BorrowedFd<'_>, yes: bool) {
    if yes {
        track_inheritable(fd);
    } else {
        untrack_inheritable(fd);
    }
}

pub(crate) fn untrack_inheritable(fd: BorrowedFd<'_>) {
    if let Some((word, bit)) = fd_bit(fd.as_raw_fd(), false) {
        word.fetch_and(!bit, Ordering::AcqRel);
    }
}

/// In a freshly forked child: point every inherited connection descriptor at a dead pipe. The
/// numbers stay taken (so a stale `Connection` in the child's memory can never reach a file
/// opened later under the same number), but the parent's pipes and sockets are released.
/// Connections the child needs arrive as its arguments, as new descriptors.
pub(crate) fn neutralize_inherited() {
    let Ok((dead_r, dead_w)) = pipe() else { return };
    drop(dead_w);
    let used = FD_CHUNKS_USED.load(Ordering::Acquire);
    for (c, cell) in INHERITABLE.iter().enumerate().take(used) {
        // SAFETY: chunks come from `Box::into_raw` in `fd_bit` and are never freed.
        let Some(chunk) = (unsafe { cell.load(Ordering::Acquire).as_ref() }) else {
            continue;
        };
        for (w, word) in chunk.0.iter().enumerate() {
            let mut bits = word.swap(0, Ordering::AcqRel);
            while bits != 0 {
                let fd = (c * FD_CHUNK_BITS + w * 64 + bits.trailing_zeros() as usize) as RawFd;
                bits &= bits - 1;
                // SAFETY: dup2 onto a descriptor number this process already owns (keeps it
                // taken).
                unsafe {
                    libc::dup2(dead_r.as_raw_fd(), fd);
                }
                let _ = set_cloexec(fd);
            }
        }
    }
}

/// Make writes to a closed pipe fail with `EPIPE` instead of killing the process.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}
