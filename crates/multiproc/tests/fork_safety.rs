//! A forked child takes no lock its parent's other threads share: children are forked while
//! other threads hammer every lock of multiproc's that a child reaches (the resource tracker,
//! the process registries, the identity, the executable, the forkserver client, Rust's stdout
//! and stderr),
//! and every child must finish. A lock held at the instant of a fork stays held for ever in the
//! child, so before the fix children hung (and the bounded join below failed).
#![cfg(target_os = "linux")]

multiproc::test_support!();

#[path = "../../process/tests/integration/bounded.rs"]
mod bounded;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bounded::{JoinBounded, ThreadJoinBounded, BOUND};
use multiproc::shared_memory::SharedMemory;
use multiproc::{Connection, Process, StartMethod};

/// Threads that each run `f` in a loop until dropped.
struct Hammers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
}

impl Hammers {
    fn new() -> Hammers {
        Hammers {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }

    fn spawn(&mut self, f: fn(u64)) {
        let stop = self.stop.clone();
        self.threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                f(n);
                n += 1;
            }
            n
        }));
    }

    /// Stop every thread; how many rounds each ran.
    fn stop(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .drain(..)
            .map(ThreadJoinBounded::join_bounded)
            .collect()
    }
}

fn segment_name(tag: &str, n: u64) -> String {
    format!("fs{tag}{}_{n}", std::process::id())
}

/// Everything a child's task can reach that sits behind a process-wide lock.
fn touch_everything(n: u64) {
    let me = multiproc::current_process();
    assert_ne!(me.name, "MainProcess");
    assert!(multiproc::active_children().is_empty());
    let (a, b) = multiproc::pipe(true).unwrap();
    a.send(&n).unwrap();
    assert!(b.poll(Some(BOUND)).unwrap());
    assert_eq!(b.recv::<u64>().unwrap(), n);
    let seg = SharedMemory::create(Some(&segment_name("c", n)), 64).unwrap();
    drop(seg);
    multiproc::set_executable(std::env::current_exe().unwrap());
    let _ = multiproc::get_start_method();
    println!("child {n} done"); // and its exit flushes stdout
}

fn hammer_identity(_: u64) {
    let _ = multiproc::current_process();
}

fn hammer_children(_: u64) {
    let _ = multiproc::active_children();
}

/// Keeps 100 pipes open (a long registry of connection descriptors) and adds and removes
/// duplicates of them (as passing a connection to a child does): mostly registry work, few
/// system calls.
fn hammer_connections(n: u64) {
    thread_local! {
        static LIVE: Vec<(Connection, Connection)> =
            (0..100).map(|_| multiproc::pipe(true).unwrap()).collect();
    }
    LIVE.with(|live| {
        let conn = &live[n as usize % live.len()].0;
        let (bytes, handles) = multiproc::pickle::encode_with_handles(conn).unwrap();
        let twin: Connection = multiproc::pickle::decode_with_handles(&bytes, handles).unwrap();
        drop(twin);
    });
}

fn hammer_tracker(n: u64) {
    drop(SharedMemory::create(Some(&segment_name("p", n)), 64).unwrap());
}

fn hammer_executable(_: u64) {
    multiproc::set_executable(std::env::current_exe().unwrap());
}

fn hammer_stdout(_: u64) {
    let _ = std::io::stdout().lock().flush();
}

fn hammer_stderr(_: u64) {
    let _ = std::io::stderr().lock().flush();
}

/// Fork `task(i)` for each `i`, one at a time; each child must end with 0 within [`BOUND`].
fn fork_each(count: u64, task: fn(u64)) {
    for i in 0..count {
        let p = Process::new(task, i).start_method(StartMethod::Fork);
        p.start().unwrap();
        assert_eq!(p.join_bounded(), 0, "forked child {i}");
    }
}

#[test]
fn children_forked_while_threads_hammer_every_lock_all_finish() {
    let mut h = Hammers::new();
    h.spawn(hammer_identity);
    h.spawn(hammer_children);
    h.spawn(hammer_connections);
    h.spawn(hammer_tracker);
    h.spawn(hammer_executable);
    h.spawn(hammer_stdout);
    h.spawn(hammer_stderr);
    fork_each(200, touch_everything);
    let rounds = h.stop();
    assert!(
        rounds.iter().all(|&n| n > 0),
        "every hammer ran: {rounds:?}"
    );
}

fn noop(_: u64) {}

/// A forked child that starts a forkserver child of its own needs the forkserver client.
fn start_via_forkserver(n: u64) {
    let p = Process::new(noop, n).start_method(StartMethod::Forkserver);
    p.start().unwrap();
    assert_eq!(p.join_bounded(), 0);
}

fn hammer_forkserver(n: u64) {
    start_via_forkserver(n);
}

#[test]
fn children_forked_while_a_thread_uses_the_forkserver_all_finish() {
    let mut h = Hammers::new();
    h.spawn(hammer_forkserver);
    fork_each(20, start_via_forkserver);
    let rounds = h.stop();
    assert!(rounds[0] > 0, "the forkserver was used");
}
