//! Starting a `redis-server` of our own and waiting for it: the part of the Redis fixture the
//! benchmarks share (`benches/src/redis.rs` includes this file by path), so it needs nothing
//! but std and libc.

use std::process::Command;
use std::time::{Duration, Instant};

/// `cmd`'s process dies with the thread that starts it (Linux), so a test binary or bench
/// killed mid-run leaves no server or workers behind.
pub fn die_with_us(cmd: &mut Command) -> &mut Command {
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

/// `program` (a `redis-server`) serving `port` on the loopback, without persistence, dying
/// with us.
pub fn server_command(program: &str, port: u16) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"]);
    if cfg!(unix) {
        // (nothing is written without persistence; under Wine a Windows path would not do
        // for the Linux server, which keeps the directory it starts in)
        cmd.arg("--dir").arg(std::env::temp_dir());
    }
    die_with_us(&mut cmd);
    cmd
}

/// Whether a `PING` on `port` is answered (RESP by hand: the benchmarks have no client).
pub fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// Whether the server on `port` answers a `PING` within `within` (asked every 10 ms).
pub fn answers_within(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ping(port) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
