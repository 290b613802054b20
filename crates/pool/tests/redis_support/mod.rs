//! The Redis test fixture: a `redis-server` of our own on a free loopback port, without
//! persistence, killed on drop; and workers that are this test binary in worker mode.
//!
//! Without `redis-server` on the `PATH` the tests print a notice and pass, except under
//! `CI=true`, where they fail (CI installs it).

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `cmd`'s process dies with the thread that starts it (Linux), so a test binary killed
/// mid-test leaves no server or workers behind.
fn die_with_us(cmd: &mut Command) -> &mut Command {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec the closure only calls prctl, async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    cmd
}

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

impl RedisServer {
    /// A fresh server, or `None` (with a notice) when `redis-server` is not installed and
    /// this is not CI.
    pub fn start() -> Option<RedisServer> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
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
        let dir = std::env::temp_dir();
        let child = die_with_us(&mut Command::new("redis-server"))
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING in 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
            return false;
        };
        redis::cmd("PING").query::<String>(&mut c).is_ok()
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

    /// SIGKILL the server (its data is gone: no persistence).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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
        Workers::start_with(exe, url, cluster, jobs, lease_ms, &[])
    }

    pub fn start_with(
        exe: &std::path::Path,
        url: &str,
        cluster: &str,
        jobs: usize,
        lease_ms: u64,
        extra: &[&str],
    ) -> Workers {
        let child = die_with_us(&mut Command::new(exe))
            .args(["--multiproc-worker", url, "--cluster", cluster])
            .args(["-j", &jobs.to_string(), "--lease-ms", &lease_ms.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start worker mode");
        Workers { child: Some(child) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, then wait (bounded) for the supervisor to exit; its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: signalling our own child, which we have not reaped.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
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

/// The live workers registered in `cluster`'s set: `(build, pid)`.
pub fn registered(c: &mut redis::Connection, cluster: &str) -> Vec<(String, u32)> {
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("mp:{{{cluster}}}:workers"))
        .arg(0)
        .arg(-1)
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
