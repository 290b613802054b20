//! Run a program under a deadline, capturing its standard output (and echoing it as it comes),
//! and kill it with every process it started when the deadline passes.
//!
//! The program gets a process group of its own, so the whole group can be killed: Wine starts a
//! Windows program's children as Unix processes of that group (reparented to init, but still in
//! the group). Whatever escaped the group is the caller's to kill (`wineserver -k` for Wine).

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{cmd, describe};

/// How long the output may stay open after the program ended: a child it left behind holds
/// the pipe; past this it is killed with its group and the output ends there.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// What a supervised run gave.
#[derive(Debug)]
pub struct Outcome {
    /// The exit status, `None` if the deadline passed and the program was killed.
    pub status: Option<ExitStatus>,
    /// Its standard output (lossily UTF-8, `\r` removed before each `\n`).
    pub stdout: String,
    /// How long it ran.
    pub elapsed: Duration,
    /// A child of the program still held its standard output [`DRAIN_GRACE`] after it ended
    /// (and was killed).
    pub left_children: bool,
}

impl Outcome {
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// "exit code 3", "killed after 300 s", ...
    pub fn describe(&self, deadline: Duration) -> String {
        match self.status {
            None => format!("timed out: killed after {} s", deadline.as_secs()),
            Some(s) => match s.code() {
                Some(c) => format!("exit code {c}"),
                None => s.to_string(),
            },
        }
    }
}

/// Kill the process group `pgid` (the program and every process it started that kept it).
fn kill_group(pgid: u32) {
    #[cfg(unix)]
    {
        let _ = cmd("kill", &["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
    }
    #[cfg(not(unix))]
    let _ = pgid;
}

/// Run `c` until it ends or `deadline` passes; `echo` prints each output line as it arrives.
/// Standard input is `/dev/null`, standard error is inherited.
pub fn run(mut c: Command, deadline: Duration, echo: bool) -> Result<Outcome, String> {
    let what = describe(&c);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    c.stdin(Stdio::null()).stdout(Stdio::piped());
    let start = Instant::now();
    let mut child = c
        .spawn()
        .map_err(|e| format!("could not run `{what}`: {e}"))?;
    let pgid = child.id();
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let mut out = String::new();
    let mut push = |line: Vec<u8>| {
        let mut text = String::from_utf8_lossy(&line).into_owned();
        if text.ends_with("\r\n") {
            text.truncate(text.len() - 2);
            text.push('\n');
        }
        if echo {
            print!("{text}");
        }
        out.push_str(&text);
    };
    let mut status = None;
    let mut ended_at = Instant::now();
    let mut closed = false;
    let mut left_children = false;
    loop {
        if closed {
            std::thread::sleep(Duration::from_millis(50));
        } else {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => closed = true,
            }
        }
        if status.is_none() {
            status = child.try_wait().map_err(|e| e.to_string())?;
            ended_at = Instant::now();
        }
        match status {
            Some(_) if closed => break,
            Some(_) if ended_at.elapsed() > DRAIN_GRACE => {
                left_children = true;
                break;
            }
            None if start.elapsed() > deadline => break,
            _ => {}
        }
    }
    if status.is_none() || left_children {
        kill_group(pgid);
        let _ = child.kill();
        let _ = child.wait();
    }
    let elapsed = start.elapsed();
    // What the group wrote before it was killed. A writer outside the group (the caller kills
    // those) may hold the pipe open: read for a moment only, and leave the reader thread be.
    let drain_until = Instant::now() + Duration::from_secs(2);
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        push(line);
        if Instant::now() > drain_until {
            break;
        }
    }
    drop(rx);
    if reader.is_finished() {
        let _ = reader.join();
    }
    Ok(Outcome {
        status,
        stdout: out,
        elapsed,
        left_children,
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn output_and_status_are_captured() {
        let c = cmd("sh", &["-c", "echo one; printf 'two\\r\\n'; exit 3"]);
        let o = run(c, Duration::from_secs(30), false).unwrap();
        assert_eq!(o.stdout, "one\ntwo\n");
        assert_eq!(o.status.and_then(|s| s.code()), Some(3));
        assert!(!o.timed_out() && !o.success() && !o.left_children);
    }

    #[test]
    fn a_program_past_its_deadline_is_killed_with_its_group() {
        // The background sleep holds the output pipe: only a group kill ends it.
        let c = cmd("sh", &["-c", "echo started; sleep 60 & sleep 60"]);
        let t = Instant::now();
        let o = run(c, Duration::from_millis(500), false).unwrap();
        assert!(o.timed_out());
        assert_eq!(o.stdout, "started\n");
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        assert!(o.describe(Duration::from_secs(5)).contains("timed out"));
    }

    #[test]
    fn a_child_left_holding_the_output_is_killed_after_the_grace() {
        let c = cmd("sh", &["-c", "sleep 60 & echo done"]);
        let t = Instant::now();
        let o = run(c, Duration::from_secs(120), false).unwrap();
        assert!(o.success() && o.left_children);
        assert_eq!(o.stdout, "done\n");
        assert!(t.elapsed() < DRAIN_GRACE + Duration::from_secs(10));
    }
}
