//! What the primitives' tests share: bounds, and children that cannot outlive a failed test.

use std::time::Duration;

use multiproc_process::{Connection, Process, StartMethod};

/// The start methods of this platform.
#[cfg(unix)]
pub const METHODS: [StartMethod; 3] = [
    StartMethod::Spawn,
    StartMethod::Fork,
    StartMethod::Forkserver,
];
/// The start methods of this platform.
#[cfg(windows)]
pub const METHODS: [StartMethod; 1] = [StartMethod::Spawn];

/// The quickest start method of this platform (for tests that start many children).
#[cfg(unix)]
pub const QUICK: StartMethod = StartMethod::Fork;
/// The quickest start method of this platform (for tests that start many children).
#[cfg(windows)]
pub const QUICK: StartMethod = StartMethod::Spawn;

/// The exit code of a child ended by [`Kid::kill`]: `-SIGKILL`, or on Windows `-SIGTERM`
/// (`kill` is `TerminateProcess` there, reported as CPython does).
pub const KILLED: i32 = if cfg!(windows) { -15 } else { -9 };

/// Generous bound for anything that should take milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A started child, killed and reaped when dropped if it still runs (so a failed assertion
/// does not leave it behind for the test binary to wait for at exit).
pub struct Kid(pub Process);

impl Kid {
    pub fn start(p: Process) -> Kid {
        p.start().unwrap();
        Kid(p)
    }

    /// Its exit code, waiting at most `PATIENCE` (then it is killed and the test fails).
    pub fn join(&self) -> i32 {
        match self.0.join_timeout(PATIENCE).unwrap() {
            Some(code) => code,
            None => panic!("the child did not finish in time"),
        }
    }

    /// Kill it and reap it; its pid.
    pub fn kill(&self) -> u32 {
        let pid = self.0.pid().expect("started");
        self.0.kill().unwrap();
        assert_eq!(self.join(), KILLED);
        pid
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if self.0.is_alive() {
            let _ = self.0.kill();
            let _ = self.0.join_timeout(PATIENCE);
        }
    }
}

/// What `conn` sends next, waiting at most `PATIENCE`.
pub fn recv_bounded<T: serde::de::DeserializeOwned>(conn: &Connection) -> T {
    assert!(conn.poll(Some(PATIENCE)).unwrap(), "no report in time");
    conn.recv().unwrap()
}

/// Wait until `count` is not 0, at most `PATIENCE` (the caller's assertion on the count says
/// whether it moved). The kill tests wait so before their last kill: on a loaded machine
/// every child may be killed before its first whole item otherwise.
pub fn wait_until_moved(count: &std::sync::atomic::AtomicU64) {
    let until = std::time::Instant::now() + PATIENCE;
    while count.load(std::sync::atomic::Ordering::Relaxed) == 0 && std::time::Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}
