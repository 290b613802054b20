//! Who a process is, in a way a recycled pid cannot fake: its pid and its start time.
//!
//! An identity is one `u64`: the pid in the low 32 bits and, on Linux, the low 32 bits of the
//! process's start time (field 22 of `/proc/<pid>/stat`, in clock ticks since boot) in the high
//! 32 bits (on macOS the low 32 bits of its start time in microseconds, from `proc_pidinfo`).
//! A process that gets a dead one's pid started later, so its start time differs (pids wrap
//! only after `pid_max` creations, which take far longer than one tick). A start time of 0
//! (unknown: no `/proc`, or another Unix) leaves the pid alone to decide.
//!
//! Everything here runs in a forked child of a multi-threaded parent too: the files are read
//! with `open`/`read` into stack buffers, no allocation, no lock.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// This process's identity; 0 until computed (and again in a forked child).
static ME: AtomicU64 = AtomicU64::new(0);
/// Whether the `fork` handler that clears `ME` is registered: 0 no, 1 under way, 2 yes.
static AT_FORK: AtomicU8 = AtomicU8::new(0);

/// This process's identity (pid in the low half, start time in the high half). After the
/// first call, one relaxed load: no system call.
#[inline]
pub(crate) fn me() -> u64 {
    match ME.load(Ordering::Relaxed) {
        0 => me_slow(),
        v => v,
    }
}

#[cold]
fn me_slow() -> u64 {
    extern "C" fn forget() {
        ME.store(0, Ordering::Relaxed);
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let v = (u64::from(start_tag(None).unwrap_or(0)) << 32) | u64::from(pid);
    // Cache only once the handler that clears the cache in forked children is in place (a
    // thread that finds the registration under way elsewhere returns the value uncached).
    match AT_FORK.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // SAFETY: registers a handler that only stores to an atomic (async-signal-safe).
            unsafe { libc::pthread_atfork(None, None, Some(forget)) };
            AT_FORK.store(2, Ordering::Release);
            ME.store(v, Ordering::Relaxed);
        }
        Err(2) => ME.store(v, Ordering::Relaxed),
        Err(_) => {}
    }
    v
}

/// Whether the process with identity `id` still runs: it exists, is not a zombie, and (when
/// the identity carries a start time) started when the identity says.
pub(crate) fn alive(id: u64) -> bool {
    let pid = id as u32;
    let tag = (id >> 32) as u32;
    if pid == 0 {
        return false;
    }
    match stat(Some(pid)) {
        Stat::Gone => false,
        Stat::Found { state, start } => {
            !matches!(state, b'Z' | b'X' | b'x') && (tag == 0 || start as u32 == tag)
        }
        Stat::Unknown => super::pid_exists(pid),
    }
}

/// The low 32 bits of the start time of `pid` (`None`: this process); `None` if unknown.
fn start_tag(pid: Option<u32>) -> Option<u32> {
    match stat(pid) {
        Stat::Found { start, .. } => Some(start as u32),
        _ => None,
    }
}

/// What `/proc/<pid>/stat` (on macOS `proc_pidinfo`) says.
#[cfg_attr(not(any(target_os = "linux", target_os = "macos")), allow(dead_code))] // only Linux and macOS are asked
enum Stat {
    /// No such process.
    Gone,
    /// Its state letter (field 3) and start time (field 22).
    Found { state: u8, start: u64 },
    /// No `/proc` to ask, or a line we cannot read.
    Unknown,
}

#[cfg(target_os = "linux")]
fn stat(pid: Option<u32>) -> Stat {
    // "/proc/" + up to 10 digits + "/stat" + NUL
    let mut path = [0u8; 32];
    let mut n = 0;
    for &b in b"/proc/" {
        path[n] = b;
        n += 1;
    }
    match pid {
        None => {
            for &b in b"self" {
                path[n] = b;
                n += 1;
            }
        }
        Some(p) => {
            let mut digits = [0u8; 10];
            let mut k = 0;
            let mut p = p;
            loop {
                digits[k] = b'0' + (p % 10) as u8;
                k += 1;
                p /= 10;
                if p == 0 {
                    break;
                }
            }
            while k > 0 {
                k -= 1;
                path[n] = digits[k];
                n += 1;
            }
        }
    }
    for &b in b"/stat" {
        path[n] = b;
        n += 1;
    }
    // (path[n] is the NUL already)
    // SAFETY: open with a NUL-terminated path in a live buffer.
    let fd = unsafe {
        libc::open(
            path.as_ptr() as *const libc::c_char,
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ESRCH) => Stat::Gone,
            _ => Stat::Unknown,
        };
    }
    // The fields up to 22 take at most 25 + 20 * 21 bytes (a comm of 15 bytes, numbers of at
    // most 20 digits): 512 bytes hold them.
    let mut buf = [0u8; 512];
    let mut len = 0;
    while len < buf.len() {
        // SAFETY: read into the unfilled, live part of `buf` from a descriptor we own.
        let r = unsafe {
            libc::read(
                fd,
                buf[len..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - len,
            )
        };
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if r <= 0 {
            break;
        }
        len += r as usize;
    }
    // SAFETY: closes the descriptor opened above, once.
    unsafe { libc::close(fd) };
    if len == 0 {
        // (the process ended between open and read)
        return Stat::Gone;
    }
    parse(&buf[..len]).map_or(Stat::Unknown, |(state, start)| Stat::Found { state, start })
}

/// macOS: `proc_pidinfo(PROC_PIDTBSDINFO)` (libproc.h; one system call, no allocation). Its
/// `pbi_status` is `SZOMB` for a zombie (reported as `Z`, as Linux's state letter), and the
/// start time is `pbi_start_tvsec`/`pbi_start_tvusec`, taken in microseconds (its low 32 bits
/// are the tag, as Linux's clock ticks are there). No such process is `ESRCH`; any other
/// refusal (say a sandbox) leaves the pid alone to decide.
#[cfg(target_os = "macos")]
fn stat(pid: Option<u32>) -> Stat {
    // SAFETY: getpid has no preconditions.
    let pid = pid.unwrap_or_else(|| unsafe { libc::getpid() } as u32);
    // SAFETY: a zeroed proc_bsdinfo (integers only) is a valid out-buffer.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: proc_pidinfo writes at most `size` bytes into `info`.
    let n = unsafe {
        libc::proc_pidinfo(
            pid as libc::c_int,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    if n != size {
        let errno = std::io::Error::last_os_error().raw_os_error();
        return if n <= 0 && errno == Some(libc::ESRCH) {
            Stat::Gone
        } else {
            Stat::Unknown
        };
    }
    let state = if info.pbi_status == libc::SZOMB {
        b'Z'
    } else {
        b'R'
    };
    let start = info
        .pbi_start_tvsec
        .wrapping_mul(1_000_000)
        .wrapping_add(info.pbi_start_tvusec);
    Stat::Found { state, start }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn stat(_pid: Option<u32>) -> Stat {
    Stat::Unknown
}

/// The state letter and start time of a `/proc/<pid>/stat` line: "pid (comm) S f4 ... f22 ...".
/// The command name may hold anything, so the fields start after its last `)`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse(line: &[u8]) -> Option<(u8, u64)> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let mut fields = line[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    // fields 4..=21 lie between the state (3) and the start time (22)
    let start = fields.nth(18)?;
    let mut v: u64 = 0;
    for &d in start {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((state, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_a_hostile_name() {
        let line = b"4242 (a) b (c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20\n";
        assert_eq!(parse(line), Some((b'R', 777)));
        assert_eq!(parse(b"12 (x) S 1 2"), None);
        assert_eq!(parse(b"no parenthesis"), None);
    }

    #[cfg(any(target_os = "linux", target_os = "macos"))]
    #[test]
    fn identity_is_pid_and_start_time() {
        let id = me();
        assert_eq!(id as u32, std::process::id());
        assert_ne!(id >> 32, 0, "a start time was read");
        assert!(alive(id));
        // the same pid with another start time is somebody else
        assert!(!alive(id ^ (1 << 40)));
        // a pid above the kernel's limit (2^22 on Linux, 99999 on macOS) cannot exist
        assert!(!alive((1 << 22) + 5));
    }
}
