//! Bounds for the blocking calls of the integration tests: a defect fails a test instead of
//! stalling the suite. Shared by the test binaries of `process`, `shm`, `sync` and `pool` (they
//! include this file by path), so every bound is the same.
#![allow(dead_code)] // each binary uses a part

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc_process::{Connection, Process};
use serde::de::DeserializeOwned;

/// How long any one blocking call of a test may take: generous for a loaded 2-core machine,
/// but finite.
pub const BOUND: Duration = Duration::from_secs(60);

/// `Process::join`, bounded.
pub trait JoinBounded {
    /// `join()`, failing the test if the child runs past [`BOUND`] (it is killed first, so it
    /// cannot outlive the test).
    fn join_bounded(&self) -> i32;
}

impl JoinBounded for Process {
    fn join_bounded(&self) -> i32 {
        match self.join_timeout(BOUND).unwrap() {
            Some(code) => code,
            None => {
                let _ = self.kill();
                let _ = self.join_timeout(BOUND);
                panic!("{self:?} did not end within {BOUND:?}");
            }
        }
    }
}

/// `Connection::recv`, bounded.
pub trait RecvBounded {
    /// `recv()`, failing the test if nothing arrives within [`BOUND`].
    fn recv_bounded<T: DeserializeOwned>(&self) -> T;
    /// `recv_bytes()`, failing the test if nothing arrives within [`BOUND`].
    fn recv_bytes_bounded(&self) -> Vec<u8>;
}

impl RecvBounded for Connection {
    fn recv_bounded<T: DeserializeOwned>(&self) -> T {
        assert!(
            self.poll(Some(BOUND)).unwrap(),
            "nothing received within {BOUND:?}"
        );
        self.recv().unwrap()
    }

    fn recv_bytes_bounded(&self) -> Vec<u8> {
        assert!(
            self.poll(Some(BOUND)).unwrap(),
            "nothing received within {BOUND:?}"
        );
        self.recv_bytes().unwrap()
    }
}

/// `JoinHandle::join`, bounded.
pub trait ThreadJoinBounded<T> {
    /// `join().unwrap()`, failing the test if the thread runs past [`BOUND`].
    fn join_bounded(self) -> T;
}

impl<T> ThreadJoinBounded<T> for JoinHandle<T> {
    fn join_bounded(self) -> T {
        let t = Instant::now();
        while !self.is_finished() {
            assert!(t.elapsed() < BOUND, "a thread did not end within {BOUND:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
        self.join().unwrap()
    }
}

/// Run `f` on another thread and return its result, failing the test if it takes longer than
/// [`BOUND`] (for a call that has no timeout of its own, such as a wait with `None`).
pub fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join_bounded()
}

/// `Listener::accept`, bounded.
pub trait AcceptBounded {
    /// `accept()`, failing the test if no connection (or failed handshake) comes within
    /// [`BOUND`].
    fn accept_bounded(&self) -> Result<Connection, multiproc_process::Error>;
}

impl AcceptBounded for multiproc_process::Listener {
    fn accept_bounded(&self) -> Result<Connection, multiproc_process::Error> {
        match self.accept_timeout(BOUND) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => panic!("no connection within {BOUND:?}"),
            Err(e) => Err(e),
        }
    }
}

/// What [`run_bounded`] saw of a program: its exit code (`None`: a signal ended it) and output.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Run `cmd` to its end with `input` on its standard input (then closed), collecting its output;
/// fails the test (after killing it) if it runs past [`BOUND`].
pub fn run_bounded(cmd: &mut std::process::Command, input: &[u8]) -> Ran {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input); // the program may exit without reading it
    });
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not end within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    writer.join_bounded();
    Ran {
        code: status.code(),
        stdout: out.join_bounded(),
        stderr: err.join_bounded(),
    }
}
