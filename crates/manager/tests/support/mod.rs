//! What the manager's suites share beyond the process suite's bounds: killing a process known
//! only by its pid (a manager's server child, whose `Process` the `Manager` keeps).

/// Kill the process `pid` at once, as a crash would (`SIGKILL`; on Windows `TerminateProcess`,
/// which no code of the process sees either).
pub fn kill_pid(pid: u32) {
    #[cfg(unix)]
    {
        // SAFETY: kill(2) on a pid this test started; no memory is involved.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill {pid}: {}", std::io::Error::last_os_error());
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::Foundation::CloseHandle;
        use windows_sys::Win32::System::Threading::{
            OpenProcess, TerminateProcess, PROCESS_TERMINATE,
        };
        // SAFETY: OpenProcess takes no pointers; the handle it returns is checked, used once
        // and closed here.
        unsafe {
            let h = OpenProcess(PROCESS_TERMINATE, 0, pid);
            assert!(
                !h.is_null(),
                "OpenProcess({pid}): {}",
                std::io::Error::last_os_error()
            );
            let ok = TerminateProcess(h, 1);
            let err = std::io::Error::last_os_error();
            CloseHandle(h);
            assert!(ok != 0, "TerminateProcess({pid}): {err}");
        }
    }
}
