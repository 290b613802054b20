//! Process identities across processes: what owner-died detection keys on.

use crate::bounded::{JoinBounded, RecvBounded};
use multiproc_process::{pipe, Connection, Process};
use multiproc_shm::ProcessId;

/// Send this process's identity, then wait for the word to end.
fn report_and_wait(c: Connection) {
    c.send(&ProcessId::current().to_bits()).unwrap();
    let _ = c.recv::<bool>();
}

#[test]
fn a_child_is_alive_until_it_ends_and_then_never_again() {
    let (here, there) = pipe(true).unwrap();
    let p = Process::new(report_and_wait, there);
    p.start().unwrap();
    let id = ProcessId::from_bits(here.recv_bounded::<u64>()).expect("a pid");
    assert_eq!(Some(id.pid()), p.pid());
    assert_ne!(id, ProcessId::current());
    assert!(id.is_alive());
    here.send(&true).unwrap();
    assert_eq!(p.join_bounded(), 0);
    // (the parent still holds a handle to the ended child on Windows, or its exit status on
    // Unix: the pid is not reused yet, and the process still does not count as alive)
    assert!(!id.is_alive());
    drop(p);
    assert!(!id.is_alive());
}

#[test]
fn a_process_with_our_pid_but_another_start_time_is_not_us() {
    let me = ProcessId::current();
    assert!(me.is_alive());
    assert_ne!(me.to_bits() >> 32, 0, "the start time is known here");
    let other = ProcessId::from_bits(me.to_bits() ^ (1 << 40)).unwrap();
    assert_eq!(other.pid(), me.pid());
    assert!(!other.is_alive(), "a reused pid passed for the process");
}
