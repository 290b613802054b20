//! Barrier parties started with the fork method while other threads of the test binary start
//! processes and print, as the other tests of a busy test binary do. A party used to hang (once
//! in about twenty runs of the whole binary) after `abort()`. The barrier was not at fault: the
//! party returned from `wait` and hung on its way out, in `exit_now`'s flush of stdout, on Rust's
//! stdout lock, which the harness's thread (printing a test's result) held at the instant of the
//! fork, and which therefore stayed held for ever in the child. The identity lock (taken by
//! `Process::new` and `current_process()` in other threads) and the children registry could hang
//! a party the same way, at its start and at its exit.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bounded::{JoinBounded, ThreadJoinBounded, BOUND};
use multiproc_process::{pipe, Connection, Process, StartMethod};
use multiproc_sync::Barrier;

fn party((b, report): (Barrier, Connection)) {
    let r = b.wait_timeout(BOUND);
    report.send(&r.ok()).unwrap();
}

fn nothing(_: ()) {}

/// What the other tests of a busy binary do at the same time: start, join and name processes,
/// and print (the harness reports results on stdout).
fn busy(stop: Arc<AtomicBool>, which: u32) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match which {
                0 => {
                    let p = Process::new(nothing, ());
                    p.start().unwrap();
                    assert_eq!(p.join_bounded(), 0);
                }
                1 => {
                    let _ = multiproc_process::current_process();
                    let _ = multiproc_process::active_children();
                }
                _ => {
                    let _ = std::io::stdout().lock().flush();
                }
            }
        }
    })
}

#[test]
fn forked_barrier_parties_beside_busy_threads_all_exit_after_abort() {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..3).map(|w| busy(stop.clone(), w)).collect();
    for round in 0..40 {
        let b = Barrier::new(3).unwrap();
        let parties: Vec<(Process, Connection)> = (0..2)
            .map(|_| {
                let (here, there) = pipe(true).unwrap();
                let p = Process::new(party, (b.clone(), there)).start_method(StartMethod::Fork);
                p.start().unwrap();
                (p, here)
            })
            .collect();
        let t = Instant::now();
        while b.n_waiting() < 2 && t.elapsed() < BOUND {
            std::thread::sleep(Duration::from_millis(1));
        }
        b.abort();
        for (p, here) in &parties {
            assert_eq!(p.join_bounded(), 0, "round {round}");
            assert!(here.poll(Some(Duration::ZERO)).unwrap());
            assert_eq!(here.recv::<Option<u32>>().unwrap(), None);
        }
    }
    stop.store(true, Ordering::Relaxed);
    threads
        .into_iter()
        .for_each(ThreadJoinBounded::join_bounded);
}
