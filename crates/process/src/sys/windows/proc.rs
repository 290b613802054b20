//! Child processes on Windows: spawn with `CreateProcessW`, the job and its handles over the
//! bootstrap pipe, exit codes as CPython reports them, `TerminateProcess`, and the job object
//! that keeps daemon children from outliving their parent.
//!
//! A spawned child is the current executable with the child marker as its first argument and
//! [`BOOTSTRAP_ENV`] naming its end of the bootstrap pipe, the one handle it inherits (with its
//! standard output and error, and the null device as standard input), through
//! `PROC_THREAD_ATTRIBUTE_HANDLE_LIST`: no other inheritable handle of ours reaches it. The
//! OS handles a job carries are not inherited: the parent duplicates each into the child
//! (`DuplicateHandle` with the child's process handle as target) and sends the values, with a
//! `SYNCHRONIZE` handle to itself (the child's [`ParentProcess`](crate::ParentProcess)), ahead
//! of the job's frame.

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    DuplicateHandle, GetHandleInformation, DUPLICATE_SAME_ACCESS, HANDLE, STILL_ACTIVE,
    WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{GetFileType, FILE_TYPE_PIPE};
use windows_sys::Win32::System::Console::{
    GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
    SetInformationJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::Threading::{
    CreateProcessW, DeleteProcThreadAttributeList, GetCurrentProcess, GetExitCodeProcess,
    InitializeProcThreadAttributeList, ResumeThread, TerminateProcess, UpdateProcThreadAttribute,
    WaitForSingleObject, CREATE_SUSPENDED, CREATE_UNICODE_ENVIRONMENT,
    EXTENDED_STARTUPINFO_PRESENT, INFINITE, LPPROC_THREAD_ATTRIBUTE_LIST, PROCESS_INFORMATION,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
    PROC_THREAD_ATTRIBUTE_JOB_LIST, STARTF_USESTDHANDLES, STARTUPINFOEXW,
};

use super::spawn_support::{self as support, cvt};

/// Environment variable naming the bootstrap pipe of a spawned child (a handle value).
pub(crate) const BOOTSTRAP_ENV: &str = "MULTIPROC_BOOTSTRAP";
/// Environment variable of a forkserver (there is none on Windows; a marked child that has it
/// is refused).
pub(crate) const FORKSERVER_ENV: &str = "MULTIPROC_FORKSERVER";
/// The argument a spawned child gets, so a binary that forgot `multiproc::init()` fails loudly
/// instead of running its `main` (or every test) again.
pub(crate) const CHILD_ARG: &str = "--multiproc-child";

/// The exit code `terminate`/`kill` give a process, as CPython's `popen_spawn_win32`
/// (`TERMINATE = 0x10000`); [`exit_code`] reports it as `-SIGTERM`, as CPython does.
const TERMINATE: u32 = 0x10000;
/// SIGTERM's number, the code a terminated process reports (negated).
const SIGTERM: i32 = 15;

/// How many more times `CreateProcessW` is tried when it reports a child that ended before
/// it started ([`born_dead`]).
const START_RETRIES: u32 = 4;

/// Whether `CreateProcessW` failed because the new process ended during its own start,
/// before its first instruction of our code: `ERROR_INTERNAL_ERROR`. Wine reports it so when
/// the new process does not reach the end of its initialization (seen under load, about once
/// in a few thousand starts); Windows does not give it for a start that failed for a reason
/// a new try would meet again (a missing file, a bad argument, no memory). Nothing of the
/// child ran, and the bootstrap pipe was not read, so starting it again is safe.
fn born_dead(e: &io::Error) -> bool {
    e.raw_os_error() == Some(windows_sys::Win32::Foundation::ERROR_INTERNAL_ERROR as i32)
}

/// Most handles a job may carry (the same bound as on Unix).
const MAX_JOB_HANDLES: usize = crate::process::MAX_HANDLES;

/// A handle value that fits no object of this process: the child never adopts it.
fn handle_value(text: &str) -> Option<usize> {
    // Only plain decimal digits (no sign, no spaces), and a multiple of 4: the low two bits
    // of a real handle are always clear (Windows ignores them, so "5" would name handle 4).
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<usize>().ok().filter(|v| v % 4 == 0)
}

/// The bootstrap pipe a parent named for this child in [`BOOTSTRAP_ENV`], checked: a
/// handle value that is open, none of this process's standard handles, and a pipe. Else why
/// not (the caller says it on stderr and stops). The handle stops being inheritable.
///
/// # Safety
/// The named handle must be owned by nobody else in this process (true of the one handle a
/// multiproc parent left its child).
pub(crate) unsafe fn adopt_named(text: &str) -> Result<OwnedHandle, String> {
    let v = handle_value(text).ok_or_else(|| "is not a handle number".to_string())?;
    let h = v as HANDLE;
    for (which, name) in [
        (STD_INPUT_HANDLE, "standard input"),
        (STD_OUTPUT_HANDLE, "standard output"),
        (STD_ERROR_HANDLE, "standard error"),
    ] {
        // SAFETY: reads one of this process's standard handle values.
        if unsafe { GetStdHandle(which) } == h {
            return Err(format!("is this process's {name}, not a bootstrap pipe"));
        }
    }
    let mut flags = 0u32;
    // SAFETY: asks for the flags of a handle value; fails harmlessly if none is open there.
    if h.is_null() || unsafe { GetHandleInformation(h, &mut flags) } == 0 {
        return Err("is not an open handle".to_string());
    }
    // SAFETY: the type of an open handle of this process.
    if unsafe { GetFileType(h) } != FILE_TYPE_PIPE {
        return Err("is not a pipe".to_string());
    }
    support::not_inheritable(h as RawHandle);
    // SAFETY: the caller guarantees nobody else owns it.
    Ok(unsafe { OwnedHandle::from_raw_handle(h as RawHandle) })
}

/// The job object of this process that holds its daemon children: killed when it closes,
/// which happens when this process ends, however it ends (only this process holds it).
fn daemon_job() -> io::Result<RawHandle> {
    static JOB: OnceLock<Result<usize, i32>> = OnceLock::new();
    let made = JOB.get_or_init(|| {
        // SAFETY: creates an unnamed job object with default (non-inheritable) security.
        let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if job.is_null() {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        // SAFETY: a zeroed limit structure is valid; only the flag below is set.
        let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        // SAFETY: sets the extended limits of the job we own from a structure of that size.
        let ok = unsafe {
            SetInformationJobObject(
                job,
                JobObjectExtendedLimitInformation,
                (&info as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
                std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            )
        };
        if ok == 0 {
            let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            // SAFETY: closes the job we just made (no process is in it).
            drop(unsafe { OwnedHandle::from_raw_handle(job as RawHandle) });
            return Err(e);
        }
        // Held (never closed) for the life of this process: its end is what kills the job.
        Ok(job as usize)
    });
    match made {
        Ok(job) => Ok(*job as RawHandle),
        Err(code) => Err(io::Error::from_raw_os_error(*code)),
    }
}

/// The environment block of a child: ours without either bootstrap variable, plus
/// `env_var=value`, sorted by name without regard to case (as Windows keeps it), as UTF-16.
fn environment_block(env_var: &str, value: &str) -> Vec<u16> {
    use std::os::windows::ffi::OsStrExt;
    let ours = |k: &std::ffi::OsStr| {
        k.to_str().is_some_and(|k| {
            k.eq_ignore_ascii_case(BOOTSTRAP_ENV) || k.eq_ignore_ascii_case(FORKSERVER_ENV)
        })
    };
    let mut vars: Vec<(std::ffi::OsString, std::ffi::OsString)> =
        std::env::vars_os().filter(|(k, _)| !ours(k)).collect();
    vars.push((env_var.into(), value.into()));
    vars.sort_by_key(|(k, _)| k.to_string_lossy().to_uppercase());
    let mut block = Vec::new();
    for (k, v) in vars {
        block.extend(k.encode_wide());
        block.push(u16::from(b'='));
        block.extend(v.encode_wide());
        block.push(0);
    }
    block.push(0);
    block
}

/// A started child: its pid and process handle.
pub(crate) struct Child {
    pub pid: u32,
    pub handle: OwnedHandle,
}

/// Start `exe` as a multiproc child that inherits `boot` (named in `env_var`), standard output
/// and error, and the null device as standard input; nothing else. A `daemon` child is born in
/// this process's kill-on-close job (`PROC_THREAD_ATTRIBUTE_JOB_LIST`), so it cannot outlive
/// this process, even one killed while `CreateProcessW` runs. Where that attribute is refused
/// (before Windows 10 1607) it is created suspended, assigned, resumed (a parent killed in
/// between leaves it suspended for good); if the job cannot take it, a warning says so and the
/// child's watch on its parent's handle is what ends it.
pub(crate) fn spawn_child(
    exe: &Path,
    env_var: &str,
    boot: &OwnedHandle,
    daemon: bool,
) -> io::Result<Child> {
    use std::os::windows::ffi::OsStrExt;
    let boot = support::inheritable_copy(boot.as_raw_handle())?;
    let stdin = support::null_input()?;
    let mut std_out = Vec::new();
    for which in [STD_OUTPUT_HANDLE, STD_ERROR_HANDLE] {
        // SAFETY: reads this process's standard handle.
        let h = unsafe { GetStdHandle(which) };
        // A process without one (a GUI program) gives its child none either.
        std_out.push(
            if h.is_null() || h == windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE {
                None
            } else {
                support::inheritable_copy(h as RawHandle).ok()
            },
        );
    }
    let mut list: Vec<HANDLE> = vec![boot.as_raw_handle() as HANDLE, stdin.as_raw_handle() as _];
    for h in std_out.iter().flatten() {
        let h = h.as_raw_handle() as HANDLE;
        if !list.contains(&h) {
            list.push(h);
        }
    }
    let raw_or_null = |h: &Option<OwnedHandle>| {
        h.as_ref()
            .map_or(std::ptr::null_mut(), |h| h.as_raw_handle() as HANDLE)
    };

    let exe_w: Vec<u16> = exe.as_os_str().encode_wide().chain([0]).collect();
    // The command line: the program, quoted (a Windows path holds no `"`), and the marker.
    let mut cmd: Vec<u16> = Vec::new();
    cmd.push(u16::from(b'"'));
    cmd.extend(exe.as_os_str().encode_wide());
    cmd.push(u16::from(b'"'));
    cmd.extend(format!(" {CHILD_ARG}").encode_utf16());
    cmd.push(0);
    let env = environment_block(env_var, &(boot.as_raw_handle() as usize).to_string());

    let mut size = 0usize;
    // SAFETY: asks for the size of a two-attribute list (fails with the size, by design).
    unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), 2, 0, &mut size) };
    let mut attrs = vec![0u64; size.div_ceil(8)];
    let attr_list = attrs.as_mut_ptr() as LPPROC_THREAD_ATTRIBUTE_LIST;
    // SAFETY: initialises the list in a buffer of at least `size` bytes, 8-aligned.
    cvt(unsafe { InitializeProcThreadAttributeList(attr_list, 2, 0, &mut size) })?;
    struct ListGuard(LPPROC_THREAD_ATTRIBUTE_LIST);
    impl Drop for ListGuard {
        fn drop(&mut self) {
            // SAFETY: the list was initialised and is deleted once.
            unsafe { DeleteProcThreadAttributeList(self.0) }
        }
    }
    let _guard = ListGuard(attr_list);
    // SAFETY: the handle list points into `list`, which outlives CreateProcessW below.
    cvt(unsafe {
        UpdateProcThreadAttribute(
            attr_list,
            0,
            PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
            list.as_ptr().cast(),
            list.len() * std::mem::size_of::<HANDLE>(),
            std::ptr::null_mut(),
            std::ptr::null(),
        )
    })?;
    // A daemon is born in the job: no moment where it runs (or waits) outside it.
    let jobs: Vec<HANDLE> = if daemon {
        daemon_job().map(|j| vec![j as HANDLE]).unwrap_or_default()
    } else {
        Vec::new()
    };
    // SAFETY: the job list points into `jobs`, which outlives CreateProcessW below.
    let born_in_job = !jobs.is_empty()
        && unsafe {
            UpdateProcThreadAttribute(
                attr_list,
                0,
                PROC_THREAD_ATTRIBUTE_JOB_LIST as usize,
                jobs.as_ptr().cast(),
                jobs.len() * std::mem::size_of::<HANDLE>(),
                std::ptr::null_mut(),
                std::ptr::null(),
            )
        } != 0;

    // SAFETY: a zeroed STARTUPINFOEXW is valid; the fields that matter are set below.
    let mut si: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
    si.StartupInfo.cb = std::mem::size_of::<STARTUPINFOEXW>() as u32;
    si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    si.StartupInfo.hStdInput = stdin.as_raw_handle() as HANDLE;
    si.StartupInfo.hStdOutput = raw_or_null(&std_out[0]);
    si.StartupInfo.hStdError = raw_or_null(&std_out[1]);
    si.lpAttributeList = attr_list;
    // SAFETY: a zeroed PROCESS_INFORMATION is a valid out-parameter.
    let mut pi: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    let assign_later = daemon && !born_in_job;
    let flags = CREATE_UNICODE_ENVIRONMENT
        | EXTENDED_STARTUPINFO_PRESENT
        | if assign_later { CREATE_SUSPENDED } else { 0 };
    let mut tries = 0;
    loop {
        // SAFETY: every pointer is to a NUL-terminated buffer or structure above that
        // outlives the call; the command line buffer is writable, as CreateProcessW requires.
        let created = cvt(unsafe {
            CreateProcessW(
                exe_w.as_ptr(),
                cmd.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                1,
                flags,
                env.as_ptr().cast(),
                std::ptr::null(),
                &si.StartupInfo,
                &mut pi,
            )
        });
        match created {
            Ok(()) => break,
            Err(e) if born_dead(&e) && tries < START_RETRIES => {
                tries += 1;
                tracing::warn!(
                    attempt = tries,
                    "the new child ended before it started ({e}): starting it again"
                );
                std::thread::sleep(Duration::from_millis(5 << tries));
            }
            Err(e) => return Err(e),
        }
    }
    // SAFETY: CreateProcessW gave us both handles; we own them now.
    let (process, thread) = unsafe {
        (
            OwnedHandle::from_raw_handle(pi.hProcess as RawHandle),
            OwnedHandle::from_raw_handle(pi.hThread as RawHandle),
        )
    };
    if assign_later {
        let assigned = daemon_job().and_then(|job| {
            // SAFETY: assigns the suspended child, whose handle we own, to our job.
            cvt(unsafe { AssignProcessToJobObject(job as HANDLE, pi.hProcess) })
        });
        if let Err(e) = assigned {
            // (e.g. this process is in a job that allows no nesting, before Windows 8) The
            // child's own watch on our handle still ends it when we end.
            tracing::warn!("a daemon child is not in its parent's job object: {e}");
        }
        // SAFETY: resumes the child's main thread, whose handle we own.
        if unsafe { ResumeThread(thread.as_raw_handle() as HANDLE) } == u32::MAX {
            let e = io::Error::last_os_error();
            // SAFETY: ends the suspended child we own, then waits for it to be gone.
            unsafe {
                TerminateProcess(pi.hProcess, 1);
                WaitForSingleObject(pi.hProcess, INFINITE);
            }
            return Err(e);
        }
    }
    drop(thread);
    Ok(Child {
        pid: pi.dwProcessId,
        handle: process,
    })
}

/// Duplicate `h` of this process into `child` (not inheritable there): the value it has there.
fn duplicate_into(
    child: BorrowedHandle<'_>,
    h: HANDLE,
    access: u32,
    same: bool,
) -> io::Result<u64> {
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: duplicates a handle of ours into the child, whose handle (with
    // PROCESS_DUP_HANDLE: we created it) we borrow.
    cvt(unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            h,
            child.as_raw_handle() as HANDLE,
            &mut out,
            access,
            0,
            if same { DUPLICATE_SAME_ACCESS } else { 0 },
        )
    })?;
    Ok(out as usize as u64)
}

/// Send the child its job: the handles it carries (duplicated into `child`) and a handle to
/// this process, then the job's frame (`header`, `payload`). The handles travel as values:
/// `[count: u32][parent: u64][count × u64]`, little-endian.
pub(crate) fn send_job(
    boot: BorrowedHandle<'_>,
    child: BorrowedHandle<'_>,
    handles: &[RawHandle],
    header: &[u8],
    payload: &[u8],
) -> io::Result<()> {
    let mut head = Vec::with_capacity(12 + 8 * handles.len());
    head.extend((handles.len() as u32).to_le_bytes());
    // SAFETY: GetCurrentProcess returns a pseudo handle; duplicating it gives a real one.
    let me = unsafe { GetCurrentProcess() };
    head.extend(
        duplicate_into(
            child,
            me,
            PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION,
            false,
        )?
        .to_le_bytes(),
    );
    for &h in handles {
        head.extend(duplicate_into(child, h as HANDLE, 0, true)?.to_le_bytes());
    }
    support::write_all(boot, &[&head, header, payload])
}

/// What a child receives ahead of its job's frame: the handles of its job and the handle to
/// its parent (see [`send_job`]).
pub(crate) fn recv_job_handles(
    boot: BorrowedHandle<'_>,
) -> io::Result<(Vec<OwnedHandle>, OwnedHandle)> {
    let mut count = [0u8; 4];
    support::read_exact(boot, &mut count)?;
    let count = u32::from_le_bytes(count) as usize;
    if count > MAX_JOB_HANDLES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a job announced {count} handles (at most {MAX_JOB_HANDLES})"),
        ));
    }
    let mut values = vec![0u8; 8 * (count + 1)];
    support::read_exact(boot, &mut values)?;
    let mut owned = values.chunks_exact(8).map(|c| {
        let v = u64::from_le_bytes(c.try_into().expect("8 bytes")) as usize;
        // SAFETY: our parent duplicated each of these into this process for us alone.
        unsafe { OwnedHandle::from_raw_handle(v as RawHandle) }
    });
    let parent = owned.next().expect("the parent's handle comes first");
    Ok((owned.collect(), parent))
}

/// Wait until the process (or any waitable object) `h` is signalled, at most `timeout`
/// (`None`: forever); true if it is.
pub(crate) fn wait_signalled(h: RawHandle, timeout: Option<Duration>) -> io::Result<bool> {
    let ms = match timeout {
        None => INFINITE,
        // Rounded up, so a short wait never becomes a spin; below INFINITE.
        Some(t) => t
            .as_nanos()
            .div_ceil(1_000_000)
            .min(u128::from(INFINITE - 1)) as u32,
    };
    // SAFETY: waits on a handle the caller holds open.
    match unsafe { WaitForSingleObject(h as HANDLE, ms) } {
        WAIT_OBJECT_0 => Ok(true),
        WAIT_TIMEOUT => Ok(false),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Python's exit code of an ended process: its exit code, with CPython's `TERMINATE`
/// (0x10000, what [`terminate`] gives) as `-SIGTERM`. Other codes are the exit code's 32 bits
/// as an `i32`, as Rust's `ExitStatus::code` reports them (an NTSTATUS such as
/// `0xC0000005` is negative).
pub(crate) fn exit_code(process: BorrowedHandle<'_>) -> io::Result<i32> {
    let mut code = 0u32;
    // SAFETY: reads the exit code of a process whose handle we borrow.
    cvt(unsafe { GetExitCodeProcess(process.as_raw_handle() as HANDLE, &mut code) })?;
    Ok(if code == TERMINATE {
        -SIGTERM
    } else {
        code as i32
    })
}

/// End `process` with [`TERMINATE`] (CPython's `terminate()` and `kill()` on Windows). A
/// process that has already ended is not an error.
pub(crate) fn terminate(process: BorrowedHandle<'_>) -> io::Result<()> {
    let h = process.as_raw_handle() as HANDLE;
    // SAFETY: terminates a process whose handle (with PROCESS_TERMINATE) we borrow.
    if unsafe { TerminateProcess(h, TERMINATE) } != 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // Access is denied once the process is gone (as CPython checks): not an error then.
    let mut code = 0u32;
    // SAFETY: reads the exit code of the same process.
    if unsafe { GetExitCodeProcess(h, &mut code) } != 0 && code != STILL_ACTIVE as u32 {
        return Ok(());
    }
    Err(e)
}

/// A daemon child's own watch on its parent, beside the job object that kills it: a small
/// thread that ends this process as soon as the parent process ends (a parent whose job could
/// not hold the child, say because this process is in a job that forbids nesting).
pub(crate) fn die_with_parent(parent: RawHandle) -> io::Result<()> {
    let raw = parent as usize;
    std::thread::Builder::new()
        .name("multiproc-parent-watch".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            // The handle lives as long as the process (the bootstrap context holds it).
            if wait_signalled(raw as RawHandle, None).unwrap_or(false) {
                // SAFETY: ends this process at once, as SIGKILL does on Unix.
                unsafe { TerminateProcess(GetCurrentProcess(), 1) };
            }
        })?;
    Ok(())
}
