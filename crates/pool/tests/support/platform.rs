//! What the pool's suites do differently per platform: how a task makes its worker die (and the
//! exit code the pool then reports), killing a worker from outside, whether a process runs.
//!
//! Unix: signals, reported as −N. Windows: `TerminateProcess` with CPython's code (what
//! `Process::kill` gives, reported as `-SIGTERM` as CPython does), and the exceptions a crash
//! raises, reported as their NTSTATUS (negative as an `i32`).
#![allow(dead_code)] // (each suite uses some of it)

/// The exit code of a worker killed from outside or by [`kill_self`].
#[cfg(unix)]
pub const KILLED: i32 = -9;
/// The exit code of a worker killed from outside or by [`kill_self`].
#[cfg(windows)]
pub const KILLED: i32 = -15;

/// The exit code of a worker that called `std::process::abort`: `-SIGABRT`, or on Windows
/// `STATUS_STACK_BUFFER_OVERRUN` (Rust's `abort` is `__fastfail` there).
#[cfg(unix)]
pub const ABORTED: i32 = -6;
/// The exit code of a worker that called `std::process::abort`: `-SIGABRT`, or on Windows
/// `STATUS_STACK_BUFFER_OVERRUN` (Rust's `abort` is `__fastfail` there).
#[cfg(windows)]
pub const ABORTED: i32 = 0xC000_0409_u32 as i32;

/// The exit code of a worker that crashed on a bad pointer ([`segfault_self`]).
#[cfg(unix)]
pub const SEGFAULT: i32 = -11;
/// The exit code of a worker that crashed on a bad pointer ([`segfault_self`]).
#[cfg(windows)]
pub const SEGFAULT: i32 = 0xC000_0005_u32 as i32;

/// End this process at once, as the OOM killer would (`SIGKILL`; `TerminateProcess`).
pub fn kill_self() {
    #[cfg(unix)]
    // SAFETY: plain libc calls killing ourselves.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    #[cfg(windows)]
    // SAFETY: ends this process; the pseudo-handle of the current process needs no closing.
    unsafe {
        use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};
        TerminateProcess(GetCurrentProcess(), TERMINATE);
    }
}

/// Crash as a bad pointer would: `SIGSEGV`, or an access violation raised as the processor
/// raises it (nothing handles it: a pool worker ends with its code, see the pool's
/// `sys/windows.rs`).
pub fn segfault_self() {
    #[cfg(unix)]
    // SAFETY: a plain libc call raising SIGSEGV in ourselves.
    unsafe {
        libc::raise(libc::SIGSEGV);
    }
    #[cfg(windows)]
    // SAFETY: raises a non-continuable exception with no arguments; nothing handles it.
    unsafe {
        use windows_sys::Win32::Foundation::EXCEPTION_ACCESS_VIOLATION;
        /// (`winnt.h`: the exception cannot be continued)
        const EXCEPTION_NONCONTINUABLE: u32 = 1;
        // (the two arguments a processor's access violation carries: a write, at address 0)
        let args = [1usize, 0];
        windows_sys::Win32::System::Diagnostics::Debug::RaiseException(
            EXCEPTION_ACCESS_VIOLATION as u32,
            EXCEPTION_NONCONTINUABLE,
            args.len() as u32,
            args.as_ptr(),
        );
    }
}

/// Kill process `pid` (one of our workers) from outside.
pub fn kill(pid: u32) {
    #[cfg(unix)]
    // SAFETY: a plain libc call on a pid of our own pool worker.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    #[cfg(windows)]
    // SAFETY: opens the process (a handle we close here) only to terminate it.
    unsafe {
        use windows_sys::Win32::Foundation::CloseHandle;
        use windows_sys::Win32::System::Threading::{
            OpenProcess, TerminateProcess, PROCESS_TERMINATE,
        };
        let h = OpenProcess(PROCESS_TERMINATE, 0, pid);
        assert!(
            !h.is_null(),
            "cannot open worker {pid}: {}",
            std::io::Error::last_os_error()
        );
        TerminateProcess(h, TERMINATE);
        CloseHandle(h);
    }
}

/// Whether process `pid` still runs (on Unix: exists, so a zombie counts: reaping is what is
/// checked; Windows has no zombies, a process that ended is gone).
pub fn running(pid: u32) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only asks whether the process exists; reaped workers do not.
        unsafe { libc::kill(pid as i32, 0) == 0 }
    }
    #[cfg(windows)]
    // SAFETY: opens the process (a handle we close here) only to look whether it ended.
    unsafe {
        use windows_sys::Win32::Foundation::{CloseHandle, WAIT_TIMEOUT};
        use windows_sys::Win32::System::Threading::{
            OpenProcess, WaitForSingleObject, PROCESS_SYNCHRONIZE,
        };
        let h = OpenProcess(PROCESS_SYNCHRONIZE, 0, pid);
        if h.is_null() {
            return false;
        }
        let alive = WaitForSingleObject(h, 0) == WAIT_TIMEOUT;
        CloseHandle(h);
        alive
    }
}

/// Stop process `pid` where it is, every thread (SIGSTOP; on Windows each thread suspended),
/// until [`resume`].
pub fn suspend(pid: u32) {
    #[cfg(unix)]
    // SAFETY: a plain libc call on a pid of our own worker.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    #[cfg(windows)]
    each_thread(pid, |t| {
        // SAFETY: a thread handle opened with THREAD_SUSPEND_RESUME.
        unsafe { windows_sys::Win32::System::Threading::SuspendThread(t) }
    });
}

/// Let a [`suspend`]ed process go on (SIGCONT; on Windows each thread resumed).
pub fn resume(pid: u32) {
    #[cfg(unix)]
    // SAFETY: a plain libc call on a pid of our own worker.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGCONT) }, 0);
    #[cfg(windows)]
    each_thread(pid, |t| {
        // SAFETY: a thread handle opened with THREAD_SUSPEND_RESUME.
        unsafe { windows_sys::Win32::System::Threading::ResumeThread(t) }
    });
}

/// Call `f` on each thread of process `pid` (opened to suspend or resume it); at least one.
#[cfg(windows)]
fn each_thread(pid: u32, f: impl Fn(windows_sys::Win32::Foundation::HANDLE) -> u32) {
    use windows_sys::Win32::Foundation::{CloseHandle, INVALID_HANDLE_VALUE};
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
    };
    use windows_sys::Win32::System::Threading::{OpenThread, THREAD_SUSPEND_RESUME};
    // SAFETY: a snapshot of every thread of the system (a handle closed below).
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    assert_ne!(
        snap,
        INVALID_HANDLE_VALUE,
        "{}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a zeroed THREADENTRY32 with its size set is what Thread32First asks for.
    let mut e: THREADENTRY32 = unsafe { std::mem::zeroed() };
    e.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
    let mut n = 0;
    // SAFETY: walks the snapshot with a valid entry; each thread opened is closed.
    unsafe {
        let mut more = Thread32First(snap, &mut e) != 0;
        while more {
            if e.th32OwnerProcessID == pid {
                let t = OpenThread(THREAD_SUSPEND_RESUME, 0, e.th32ThreadID);
                if !t.is_null() {
                    assert_ne!(f(t), u32::MAX, "{}", std::io::Error::last_os_error());
                    CloseHandle(t);
                    n += 1;
                }
            }
            more = Thread32Next(snap, &mut e) != 0;
        }
        CloseHandle(snap);
    }
    assert!(n > 0, "no thread of process {pid}");
}

/// CPython's exit code for `terminate` on Windows (`TERMINATE`), reported as `-SIGTERM`.
#[cfg(windows)]
const TERMINATE: u32 = 0x10000;
