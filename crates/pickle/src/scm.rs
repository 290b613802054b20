//! Unix: descriptors passed over a Unix socket as `SCM_RIGHTS` ancillary data, the one place
//! the `sendmsg`/`recvmsg` control-message code of multiproc lives (the child bootstrap, the
//! forkserver, connections and the queue's side channel all use it).
//!
//! Receiving is strict: every descriptor the kernel installed is returned as an [`OwnedFd`]
//! (so dropping it closes it: none can leak), and a control buffer the kernel had to truncate
//! (more descriptors than [`MAX_FDS`], or no room in the descriptor table) is reported.
//!
//! ```
//! # #[cfg(unix)] {
//! use std::os::fd::AsFd;
//! use std::os::unix::net::UnixStream;
//! use multiproc::pickle::scm::{recv_with_fds, send_with_fds};
//!
//! let (a, b) = UnixStream::pair().unwrap();
//! let file = std::fs::File::open("/dev/null").unwrap();
//! assert_eq!(send_with_fds(a.as_fd(), &[b"hi"], &[file.as_fd()], false).unwrap(), 2);
//! let mut buf = [0u8; 8];
//! let got = recv_with_fds(b.as_fd(), &mut buf, false, false).unwrap();
//! assert_eq!((&buf[..got.len], got.fds.len(), got.truncated), (&b"hi"[..], 1, false));
//! # }
//! ```

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The most descriptors one message may carry (Linux's `SCM_MAX_FD`); a receive has room for
/// exactly this many.
pub const MAX_FDS: usize = 253;

/// Room for one control message of [`MAX_FDS`] descriptors, aligned for `cmsghdr`.
const CBUF_WORDS: usize = (MAX_FDS * 4 + 64).div_ceil(8);

/// What one [`recv_with_fds`] got.
#[derive(Debug)]
pub struct Received {
    /// Bytes received (0: end of file).
    pub len: usize,
    /// The descriptors that came with them, installed in this process, close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// The kernel could not deliver every descriptor attached (more than [`MAX_FDS`], or this
    /// process ran out of descriptors): some were dropped. `fds` holds those that arrived.
    pub truncated: bool,
}

#[cfg(not(target_os = "linux"))]
fn set_cloexec(fd: RawFd) {
    // SAFETY: F_SETFD on a descriptor this process owns.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
}

/// One `sendmsg` of `bufs` (in order) with `fds` attached as `SCM_RIGHTS` (when not empty, at
/// least one byte must go with them): returns the bytes sent, which may be fewer than all
/// (the descriptors then went with the first of them). Never raises `SIGPIPE`; `EINTR` is
/// retried; with `dontwait`, a full socket is an [`io::ErrorKind::WouldBlock`] error.
///
/// ```
/// # #[cfg(unix)] {
/// use std::os::fd::AsFd;
/// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
/// let n = multiproc::pickle::scm::send_with_fds(a.as_fd(), &[b"x", b"yz"], &[], false).unwrap();
/// assert_eq!(n, 3);
/// # }
/// ```
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    bufs: &[&[u8]],
    fds: &[BorrowedFd<'_>],
    dontwait: bool,
) -> io::Result<usize> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} descriptors in one message (at most {MAX_FDS})",
                fds.len()
            ),
        ));
    }
    let mut iov: Vec<libc::iovec> = bufs
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut _,
            iov_len: b.len(),
        })
        .collect();
    if !fds.is_empty() && iov.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptors need at least one byte of payload",
        ));
    }
    let mut cbuf = [0u64; CBUF_WORDS];
    // SAFETY: a zeroed msghdr is a valid starting value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    if !fds.is_empty() {
        let fd_bytes = (fds.len() * std::mem::size_of::<RawFd>()) as u32;
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(fd_bytes) } as usize;
        debug_assert!(space <= std::mem::size_of_val(&cbuf));
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` bytes of `cbuf`, room for one cmsg with `fds`.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes) as _;
            let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                std::ptr::write_unaligned(data.add(i), fd.as_raw_fd());
            }
        }
    }
    #[cfg(target_os = "linux")]
    let mut flags = libc::MSG_NOSIGNAL;
    #[cfg(not(target_os = "linux"))]
    let mut flags = 0;
    if dontwait {
        flags |= libc::MSG_DONTWAIT;
    }
    loop {
        // SAFETY: msg describes live buffers (iov into `bufs`, control into `cbuf`).
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One `recvmsg` into `buf`, with `peek` (`MSG_PEEK`: the message stays queued; its descriptors
/// are installed as duplicates) and `dontwait` (nothing there is an
/// [`io::ErrorKind::WouldBlock`] error). `EINTR` is retried.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    peek: bool,
    dontwait: bool,
) -> io::Result<Received> {
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and `recv_uninit` only
    // writes (initialized bytes) into it.
    let buf = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    recv_uninit(sock, buf, peek, dontwait)
}

/// [`recv_with_fds`] into `v`'s spare capacity (at most `max` bytes, reserving them first),
/// extending `v` by what arrived.
pub fn recv_into_spare(sock: BorrowedFd<'_>, v: &mut Vec<u8>, max: usize) -> io::Result<Received> {
    v.reserve(max);
    let spare = v.spare_capacity_mut();
    let len = spare.len().min(max);
    let got = recv_uninit(sock, &mut spare[..len], false, false)?;
    // SAFETY: the kernel initialized exactly `got.len` bytes after the old length.
    unsafe { v.set_len(v.len() + got.len) };
    Ok(got)
}

fn recv_uninit(
    sock: BorrowedFd<'_>,
    buf: &mut [MaybeUninit<u8>],
    peek: bool,
    dontwait: bool,
) -> io::Result<Received> {
    let mut cbuf = [0u64; CBUF_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is a valid starting value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    let mut flags = 0;
    #[cfg(target_os = "linux")]
    {
        flags |= libc::MSG_CMSG_CLOEXEC;
    }
    if peek {
        flags |= libc::MSG_PEEK;
    }
    if dontwait {
        flags |= libc::MSG_DONTWAIT;
    }
    let n = loop {
        // SAFETY: msg describes live buffers (iov into `buf`, control into `cbuf`).
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with well-formed cmsg headers (no more than
    // msg_controllen bytes); we walk them with the CMSG macros and read only SCM_RIGHTS
    // payloads as descriptors, each now ours.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    #[cfg(not(target_os = "linux"))]
                    set_cloexec(fd);
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Received {
        len: n,
        fds,
        truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    /// Whether `fd` is open on `/dev/null` (the device number `(1, 3)`); a descriptor that was
    /// closed is not, even when another test thread has opened a file under its number since.
    fn is_dev_null(fd: RawFd) -> bool {
        // SAFETY: a zeroed `stat` is a valid out-parameter; fstat on any number is safe.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
        ok && (st.st_mode & libc::S_IFMT) == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3)
    }

    #[test]
    fn a_full_message_of_descriptors_arrives_whole_and_closes() {
        let (a, b) = UnixStream::pair().unwrap();
        let files: Vec<std::fs::File> = (0..MAX_FDS)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let borrowed: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
        send_with_fds(a.as_fd(), &[b"x"], &borrowed, false).unwrap();
        let mut buf = [0u8; 4];
        let got = recv_with_fds(b.as_fd(), &mut buf, false, false).unwrap();
        assert_eq!((got.len, got.fds.len(), got.truncated), (1, MAX_FDS, false));
        let raw: Vec<RawFd> = got.fds.iter().map(|f| f.as_raw_fd()).collect();
        assert!(raw.iter().all(|&fd| is_dev_null(fd)));
        drop(got);
        // (not a count of open descriptors: other tests open and close files meanwhile)
        assert!(
            raw.iter().all(|&fd| !is_dev_null(fd)),
            "a received descriptor stayed open"
        );
        assert!(send_with_fds(a.as_fd(), &[b"x"], &[borrowed[0]; MAX_FDS + 1], false).is_err());
        assert!(send_with_fds(a.as_fd(), &[], &[borrowed[0]], false).is_err());
    }
}
