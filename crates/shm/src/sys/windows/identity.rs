//! Who a process is, in a way a recycled process id cannot fake: its id and its creation time.
//!
//! An identity is one `u64`, as on Unix: the process id in the low 32 bits and a tag of its
//! creation time (`GetProcessTimes`, in 100 ns units since 1601) in the high 32 bits: the low 32
//! bits of that time, or 1 where they are 0 (0 means "unknown" in an identity). A process that
//! gets a dead one's id was created later; its tag differs unless the two creations lie an
//! exact multiple of 2^32 × 100 ns (about 7 minutes) apart, to the 100 ns.

use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::sync::atomic::{AtomicU64, Ordering};

use windows_sys::Win32::Foundation::{GetLastError, ERROR_ACCESS_DENIED, FILETIME, WAIT_TIMEOUT};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentProcessId, GetProcessTimes, OpenProcess, WaitForSingleObject,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
};

/// This process's identity; 0 until computed (Windows has no `fork`: it never changes).
static ME: AtomicU64 = AtomicU64::new(0);

/// This process's identity. After the first call, one relaxed load: no system call.
#[inline]
pub(crate) fn me() -> u64 {
    match ME.load(Ordering::Relaxed) {
        0 => me_slow(),
        v => v,
    }
}

#[cold]
fn me_slow() -> u64 {
    // SAFETY: no preconditions.
    let pid = unsafe { GetCurrentProcessId() };
    // SAFETY: the pseudo handle of this process needs no closing.
    let tag = creation_tag(unsafe { GetCurrentProcess() }).unwrap_or(0);
    let v = (u64::from(tag) << 32) | u64::from(pid);
    ME.store(v, Ordering::Relaxed);
    v
}

/// The tag of the creation time of the process behind `h` (opened with at least
/// `PROCESS_QUERY_LIMITED_INFORMATION`); `None` if it cannot be read.
fn creation_tag(h: windows_sys::Win32::Foundation::HANDLE) -> Option<u32> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: a process handle with query rights and four valid out-buffers.
    let ok = unsafe { GetProcessTimes(h, &mut created, &mut exited, &mut kernel, &mut user) };
    (ok != 0).then(|| created.dwLowDateTime.max(1))
}

/// The process `pid`, opened to query and wait on; `Err(true)`: it exists but we may not
/// open it; `Err(false)`: there is no such process.
fn open(pid: u32) -> Result<OwnedHandle, bool> {
    // SAFETY: OpenProcess has no memory preconditions; the handle is not inheritable.
    let h = unsafe {
        OpenProcess(
            PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE,
            0,
            pid,
        )
    };
    if h.is_null() {
        // SAFETY: no preconditions.
        // (ERROR_INVALID_PARAMETER: no process has this id)
        return Err(unsafe { GetLastError() } == ERROR_ACCESS_DENIED);
    }
    // SAFETY: a fresh handle owned by us.
    Ok(unsafe { OwnedHandle::from_raw_handle(h) })
}

/// Whether the process with identity `id` still runs: a process with its id exists, has not
/// ended (a process that ended but whose handle someone still holds counts as gone, as a
/// zombie does on Unix), and (when the identity carries a tag) was created when it says.
pub(crate) fn alive(id: u64) -> bool {
    let pid = id as u32;
    let tag = (id >> 32) as u32;
    if pid == 0 {
        return false;
    }
    let h = match open(pid) {
        Ok(h) => h,
        Err(exists) => return exists,
    };
    // SAFETY: a process handle opened with SYNCHRONIZE; a zero timeout only polls.
    if unsafe { WaitForSingleObject(h.as_raw_handle(), 0) } != WAIT_TIMEOUT {
        return false;
    }
    tag == 0 || creation_tag(h.as_raw_handle()).is_none_or(|t| t == tag)
}

/// Whether a live process has the id `pid`. One that ended counts as gone even while a handle
/// to it is open (its parent's sentinel): unlike a Unix zombie, whose pid `kill(pid, 0)` still
/// finds, an ended Windows process cannot hold a lock, and its id is not reused while that
/// handle lives. (`try_lock` trusts a holder it found alive for a moment while its pid exists:
/// a holder killed and joined within that moment must not pass for alive.)
pub(crate) fn pid_exists(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match open(pid) {
        Ok(h) => {
            // SAFETY: a process handle we own, waited on without blocking.
            let state = unsafe { WaitForSingleObject(h.as_raw_handle(), 0) };
            state == WAIT_TIMEOUT
        }
        Err(exists) => exists,
    }
}
