//! The Redis test fixture: a `redis-server` of our own on a free loopback port, without
//! persistence, killed on drop; and workers that are this test binary in worker mode.
//!
//! The server is `redis-server` on the `PATH`, or the program `REDIS_SERVER` names (the Wine
//! harness names the Linux one: a Windows test under Wine can start it but not wait for it or
//! kill it, so the fixture stops it with `SHUTDOWN NOSAVE` there). Without one the tests print
//! a notice and pass, except under `CI=true`, where they fail (CI installs it).

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod server;

use server::{answers_within, die_with_us, server_command};

/// A `redis-server` child.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The server program: `REDIS_SERVER`, or `redis-server` (found on the `PATH`).
fn program() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

impl RedisServer {
    /// A fresh server, or `None` (with a notice) when `redis-server` is not installed and
    /// this is not CI.
    pub fn start() -> Option<RedisServer> {
        let named = std::env::var_os("REDIS_SERVER").is_some();
        let found = if cfg!(windows) && named {
            // (under Wine the Linux program starts, but its exit status cannot be read)
            std::path::Path::new(&program()).is_file()
        } else {
            Command::new(program())
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !found {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("redis-server is not installed (CI must install it: see .ci/run)");
            }
            eprintln!("NOTICE: redis-server is not installed; skipping this Redis test");
            return None;
        }
        let mut s = RedisServer {
            child: None,
            port: free_port(),
        };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let child = server_command(&program(), self.port)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        assert!(
            answers_within(self.port, Duration::from_secs(10)),
            "redis-server did not answer PING in 10 s"
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A connection for the test's own looks at Redis.
    pub fn conn(&self) -> redis::Connection {
        let c = redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c
    }

    /// SIGKILL the server (its data is gone: no persistence). On Windows, `SHUTDOWN NOSAVE`
    /// (the same for its clients: every connection drops, the data is gone), then wait until
    /// its port is free.
    pub fn kill(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        #[cfg(windows)]
        {
            if let Ok(mut con) = redis::Client::open(self.url())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            {
                let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").query::<()>(&mut con);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                assert!(
                    Instant::now() < deadline,
                    "redis-server did not stop in 10 s"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Start it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A worker-mode supervisor: `exe --multiproc-worker URL --cluster C -j N --lease-ms L`.
pub struct Workers {
    child: Option<Child>,
    /// Whether [`stop`](Self::stop) could ask the supervisor to stop (SIGTERM, Ctrl+Break)
    /// rather than kill it: Wine cannot send console events without a console.
    pub asked: bool,
}

impl Workers {
    pub fn start(url: &str, cluster: &str, jobs: usize, lease_ms: u64) -> Workers {
        Workers::start_exe(
            &std::env::current_exe().unwrap(),
            url,
            cluster,
            jobs,
            lease_ms,
        )
    }

    pub fn start_exe(
        exe: &std::path::Path,
        url: &str,
        cluster: &str,
        jobs: usize,
        lease_ms: u64,
    ) -> Workers {
        Workers::start_with(exe, url, cluster, jobs, lease_ms, &[], &[])
    }

    pub fn start_with(
        exe: &std::path::Path,
        url: &str,
        cluster: &str,
        jobs: usize,
        lease_ms: u64,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Workers {
        let mut cmd = Command::new(exe);
        #[cfg(windows)]
        {
            use std::os::windows::process::CommandExt;
            // (its own process group, so that Ctrl+Break can be sent to it alone)
            cmd.creation_flags(windows_sys::Win32::System::Threading::CREATE_NEW_PROCESS_GROUP);
        }
        let child = die_with_us(&mut cmd)
            .args(["--multiproc-worker", url, "--cluster", cluster])
            .args(["-j", &jobs.to_string(), "--lease-ms", &lease_ms.to_string()])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start worker mode");
        Workers {
            child: Some(child),
            asked: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM (on Windows Ctrl+Break, or a kill where that cannot be sent), then wait
    /// (bounded) for the supervisor to exit; its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        #[cfg(unix)]
        // SAFETY: signalling our own child, which we have not reaped.
        let asked = unsafe { libc::kill(c.id() as i32, libc::SIGTERM) == 0 };
        #[cfg(windows)]
        // SAFETY: a plain call sending Ctrl+Break to the child's own process group.
        let asked = unsafe {
            use windows_sys::Win32::System::Console::{GenerateConsoleCtrlEvent, CTRL_BREAK_EVENT};
            GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, c.id()) != 0
        };
        self.asked = asked;
        if !asked {
            let _ = c.kill();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The live workers registered in `cluster`'s set (expiry after the server's now): `(build,
/// pid)`. (A worker killed with its supervisor stays in the set, expired, until another
/// registers.)
pub fn registered(c: &mut redis::Connection, cluster: &str) -> Vec<(String, u32)> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(c).unwrap();
    let now_ms = secs * 1000 + micros / 1000;
    let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(format!("mp:{{{cluster}}}:workers"))
        .arg(format!("({now_ms}"))
        .arg("+inf")
        .query(c)
        .unwrap();
    members
        .iter()
        .filter_map(|m| {
            let parts: Vec<&str> = m.split('|').collect();
            Some((parts.first()?.to_string(), parts.get(2)?.parse().ok()?))
        })
        .collect()
}

/// Wait (at most `within`) until `cond` holds.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// The tasks stream of `cluster` for this build.
pub fn tasks_key(cluster: &str) -> String {
    format!(
        "mp:{{{cluster}}}:{:016x}:tasks",
        multiproc::pickle::fingerprint()
    )
}
