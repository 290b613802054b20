//! A pool's workers die with the process that owns the pool, even in the middle of a task.
//! (Unix: the owner is `SIGKILL`ed; Windows: `TerminateProcess`, and its workers, daemons, go
//! with its kill-on-close job.)

multiproc_process::test_support!();

#[path = "support/platform.rs"]
mod platform;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use multiproc_pool::Pool;
use multiproc_process::{Process, StartMethod};

/// A long task: say which worker runs it (in a file), then run for 30 s.
fn long_task(marker: PathBuf) -> u32 {
    let pid = std::process::id();
    std::fs::write(&marker, pid.to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(30));
    pid
}

/// The pool's owner: a pool of two, one long task, then wait to be killed.
fn own_a_pool((method, marker): (StartMethod, PathBuf)) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    let _running = pool.apply_async(long_task, marker);
    std::thread::sleep(Duration::from_secs(60));
}

/// A process that may end, watched so that the reuse of its pid cannot fool us.
#[cfg(unix)]
struct Watched {
    pid: u32,
    /// Its start time (`/proc/<pid>/stat`, field 22).
    started: String,
}

#[cfg(unix)]
impl Watched {
    fn new(pid: u32) -> Watched {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let started = rest.split(' ').nth(19).unwrap().to_string();
        Watched { pid, started }
    }

    /// Gone: reaped, a zombie, or its number reused by a process started later.
    fn gone(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Err(_) => true,
            Ok(stat) => {
                let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
                let fields: Vec<&str> = rest.split(' ').collect();
                // fields[0] is the state, fields[19] the start time
                fields[0] == "Z" || fields.get(19) != Some(&self.started.as_str())
            }
        }
    }
}

/// A process that may end, watched through a handle (which a reused pid cannot fool).
#[cfg(windows)]
struct Watched(std::os::windows::io::OwnedHandle);

#[cfg(windows)]
impl Watched {
    fn new(pid: u32) -> Watched {
        use std::os::windows::io::FromRawHandle;
        use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_SYNCHRONIZE};
        // SAFETY: opens a process by id; the handle, if any, is ours.
        let h = unsafe { OpenProcess(PROCESS_SYNCHRONIZE, 0, pid) };
        assert!(
            !h.is_null(),
            "cannot open worker {pid}: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a new handle we own.
        Watched(unsafe { std::os::windows::io::OwnedHandle::from_raw_handle(h) })
    }

    /// Gone: the process ended.
    fn gone(&self) -> bool {
        use std::os::windows::io::AsRawHandle;
        use windows_sys::Win32::Foundation::WAIT_OBJECT_0;
        use windows_sys::Win32::System::Threading::WaitForSingleObject;
        // SAFETY: looks at a process handle we hold open.
        unsafe { WaitForSingleObject(self.0.as_raw_handle(), 0) == WAIT_OBJECT_0 }
    }
}

#[test]
fn busy_workers_die_with_a_killed_pool_owner() {
    for &method in StartMethod::available() {
        let marker = std::env::temp_dir().join(format!(
            "multiproc-pool-owner-{}-{method:?}",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&marker);
        let owner = Process::new(own_a_pool, (method, marker.clone()));
        owner.start().unwrap();
        let t = Instant::now();
        let worker = loop {
            if let Some(pid) = std::fs::read_to_string(&marker)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
            {
                break pid;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{method:?}: no task ran"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let watched = Watched::new(worker);
        owner.kill().unwrap();
        assert_eq!(
            owner.join_timeout(Duration::from_secs(30)).unwrap(),
            Some(platform::KILLED)
        );
        let t = Instant::now();
        while !watched.gone() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{method:?}: the busy worker {worker} outlived its pool's owner"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(&marker);
    }
}
