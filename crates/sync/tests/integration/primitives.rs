//! Locks, semaphores, conditions, events and barriers across processes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bounded::{JoinBounded, RecvBounded, ThreadJoinBounded, BOUND};
use multiproc_process::{pipe, Connection, Process};
use multiproc_shm::{LockResult, Segment};
use multiproc_sync::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, SyncError,
};

use crate::support::METHODS;

fn run(p: &Process) {
    p.start().unwrap();
}

fn joined(p: &Process) -> i32 {
    p.join_bounded()
}

/// Add 1 to the u64 at the start of `seg`, `n` times, each under `lock`, with a plain
/// (non-atomic) read and write: any lost update shows.
fn add_locked((lock, seg, n): (Lock, Segment, u64)) {
    let p = seg.as_ptr() as *mut u64;
    for _ in 0..n {
        let _g = lock.lock();
        // SAFETY: the segment is 8-byte aligned and at least 8 bytes; the lock serializes access.
        unsafe { p.write_volatile(p.read_volatile() + 1) };
    }
}

#[test]
fn two_processes_times_100_000_locked_increments_are_exact() {
    let lock = Lock::new().unwrap();
    let seg = Segment::new(8).unwrap();
    let ps: Vec<Process> = (0..2)
        .map(|_| {
            Process::new(
                add_locked,
                (lock.clone(), seg.try_clone().unwrap(), 100_000),
            )
        })
        .collect();
    ps.iter().for_each(run);
    assert!(ps.iter().all(|p| joined(p) == 0));
    let mut b = [0u8; 8];
    seg.read_into(0, &mut b).unwrap();
    assert_eq!(u64::from_ne_bytes(b), 200_000);
}

fn hold_lock_forever((lock, ready): (Lock, Event)) {
    let _g = lock.lock();
    ready.set();
    std::thread::sleep(Duration::from_secs(600));
}

fn hold_rlock_forever((lock, ready): (RLock, Event)) {
    let _a = lock.lock();
    let _b = lock.lock();
    ready.set();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_holder_killed_hands_the_lock_over_as_owner_died() {
    let lock = Lock::new().unwrap();
    let ready = Event::new().unwrap();
    let p = Process::new(hold_lock_forever, (lock.clone(), ready.clone()));
    run(&p);
    assert!(ready.wait_timeout(Duration::from_secs(20)));
    assert_eq!(lock.try_acquire(), LockResult::TimedOut);
    p.kill().unwrap();
    assert_eq!(joined(&p), crate::support::KILLED);
    let t = Instant::now();
    assert_eq!(
        lock.acquire_timeout(Duration::from_secs(5)),
        LockResult::OwnerDied
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    lock.release().unwrap();

    let rlock = RLock::new().unwrap();
    let ready = Event::new().unwrap();
    let p = Process::new(hold_rlock_forever, (rlock.clone(), ready.clone()));
    run(&p);
    assert!(ready.wait_timeout(Duration::from_secs(20)));
    assert_eq!(rlock.try_acquire(), LockResult::TimedOut);
    p.kill().unwrap();
    joined(&p);
    assert_eq!(
        rlock.acquire_timeout(Duration::from_secs(5)),
        LockResult::OwnerDied
    );
    // ours now, at depth 1
    rlock.release().unwrap();
    assert_eq!(rlock.release(), Err(SyncError::NotOwner));
}

fn take_two_then_wait((sem, ready, go): (Semaphore, Event, Event)) {
    assert!(sem.acquire_timeout(BOUND) && sem.acquire_timeout(BOUND));
    ready.set();
    assert!(go.wait_timeout(Duration::from_secs(20)));
    sem.release();
}

#[test]
fn semaphore_counts_and_times_out_neither_early_nor_much_late() {
    let sem = Semaphore::new(2).unwrap();
    let (ready, go) = (Event::new().unwrap(), Event::new().unwrap());
    let p = Process::new(take_two_then_wait, (sem.clone(), ready.clone(), go.clone()));
    run(&p);
    assert!(ready.wait_timeout(Duration::from_secs(20)));
    assert_eq!(sem.value(), 0);
    let t = Instant::now();
    assert!(!sem.acquire_timeout(Duration::from_millis(200)));
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "returned early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "returned late: {waited:?}");
    go.set();
    assert!(sem.acquire_timeout(Duration::from_secs(20)));
    assert_eq!(joined(&p), 0);

    let b = BoundedSemaphore::new(1).unwrap();
    assert_eq!(b.release(), Err(SyncError::TooManyReleases));
    assert!(b.acquire_timeout(BOUND));
    b.release().unwrap();
    assert_eq!(b.value(), 1);
}

static RAN_ACTION: AtomicBool = AtomicBool::new(false);

fn mark_action() {
    RAN_ACTION.store(true, Ordering::SeqCst);
}

fn barrier_party((b, report): (Barrier, Connection)) {
    let r = b.wait_timeout(Duration::from_secs(20));
    report
        .send(&(r.ok(), RAN_ACTION.load(Ordering::SeqCst)))
        .unwrap();
}

#[test]
fn five_party_barrier_across_processes_with_abort_and_reset() {
    let b = Barrier::new(5).unwrap().with_action(mark_action);
    let mut kids = Vec::new();
    for _ in 0..4 {
        let (here, there) = pipe(true).unwrap();
        let p = Process::new(barrier_party, (b.clone(), there));
        run(&p);
        kids.push((p, here));
    }
    let mine = b.wait_timeout(Duration::from_secs(20)).unwrap();
    let mut indices = vec![mine];
    let mut actions = usize::from(RAN_ACTION.load(Ordering::SeqCst));
    for (p, conn) in &kids {
        let (idx, ran): (Option<u32>, bool) = conn.recv_bounded();
        indices.push(idx.expect("the barrier tripped"));
        actions += usize::from(ran);
        assert_eq!(joined(p), 0);
    }
    indices.sort_unstable();
    assert_eq!(indices, [0, 1, 2, 3, 4]);
    assert_eq!(actions, 1, "the action runs once, in one process");

    // abort: a waiting child is released with BrokenBarrier
    let b = Barrier::new(3).unwrap();
    let (here, there) = pipe(true).unwrap();
    let p = Process::new(barrier_party, (b.clone(), there));
    run(&p);
    let t = Instant::now();
    while b.n_waiting() < 1 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    b.abort();
    let (idx, _): (Option<u32>, bool) = here.recv_bounded();
    assert_eq!(idx, None);
    assert!(b.broken());
    assert_eq!(b.wait_timeout(BOUND), Err(SyncError::BrokenBarrier));
    joined(&p);

    // reset: usable again
    b.reset();
    assert!(!b.broken());
    let b2 = Barrier::new(2).unwrap();
    let (here, there) = pipe(true).unwrap();
    let p = Process::new(barrier_party, (b2.clone(), there));
    run(&p);
    assert!(b2.wait_timeout(Duration::from_secs(20)).is_ok());
    let (idx, _): (Option<u32>, bool) = here.recv_bounded();
    assert!(idx.is_some());
    joined(&p);
}

fn cond_waiter((c, ready, report): (Condition, Semaphore, Connection)) {
    assert!(c.acquire_timeout(BOUND).acquired());
    ready.release(); // still holding the lock: the parent cannot notify before we wait
    let notified = c.wait_timeout(Duration::from_millis(1500)).unwrap();
    c.release().unwrap();
    report.send(&notified).unwrap();
}

#[test]
fn condition_notify_n_wakes_exactly_n() {
    let c = Condition::new().unwrap();
    let ready = Semaphore::new(0).unwrap();
    let mut kids = Vec::new();
    for _ in 0..4 {
        let (here, there) = pipe(true).unwrap();
        let p = Process::new(cond_waiter, (c.clone(), ready.clone(), there));
        run(&p);
        kids.push((p, here));
    }
    for _ in 0..4 {
        assert!(ready.acquire_timeout(Duration::from_secs(20)));
    }
    assert!(c.acquire_timeout(BOUND).acquired());
    assert_eq!(c.notify(2), Ok(2));
    c.release().unwrap();
    let mut woken = 0;
    for (p, conn) in &kids {
        woken += usize::from(conn.recv_bounded::<bool>());
        assert_eq!(joined(p), 0);
    }
    assert_eq!(woken, 2);
    assert_eq!(c.notify(1), Err(SyncError::NotOwner));
}

fn event_waiter((e, report): (Event, Connection)) {
    report
        .send(&e.wait_timeout(Duration::from_secs(20)))
        .unwrap();
}

#[test]
fn event_across_processes() {
    let e = Event::new().unwrap();
    let (here, there) = pipe(true).unwrap();
    let p = Process::new(event_waiter, (e.clone(), there));
    run(&p);
    std::thread::sleep(Duration::from_millis(50));
    e.set();
    assert!(here.recv_bounded::<bool>());
    assert_eq!(joined(&p), 0);
}

type All = (
    Lock,
    RLock,
    Semaphore,
    BoundedSemaphore,
    Event,
    Condition,
    Barrier,
);

fn use_everything((lock, rlock, sem, bsem, event, cond, barrier): All) {
    lock.release().unwrap(); // the parent locked it: any process may release
    let _r = rlock.lock();
    sem.release();
    assert!(bsem.acquire_timeout(BOUND));
    event.set();
    assert!(cond.acquire_timeout(BOUND).acquired());
    cond.notify_all().unwrap();
    cond.release().unwrap();
    barrier.wait_timeout(Duration::from_secs(20)).unwrap();
}

#[test]
fn every_primitive_reaches_a_child_under_every_start_method() {
    for m in METHODS {
        let all: All = (
            Lock::new().unwrap(),
            RLock::new().unwrap(),
            Semaphore::new(0).unwrap(),
            BoundedSemaphore::new(1).unwrap(),
            Event::new().unwrap(),
            Condition::new().unwrap(),
            Barrier::new(2).unwrap(),
        );
        assert_eq!(all.0.acquire_timeout(BOUND), LockResult::Acquired);
        let p = Process::new(use_everything, all.clone()).start_method(m);
        run(&p);
        all.6.wait_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(joined(&p), 0, "{m:?}");
        assert!(!all.0.is_locked(), "{m:?}");
        assert!(all.2.try_acquire(), "{m:?}");
        assert_eq!(all.3.value(), 0, "{m:?}");
        assert!(all.4.is_set(), "{m:?}");
    }
}

#[test]
fn an_rlock_released_by_another_thread_is_an_error() {
    let r = Arc::new(RLock::new().unwrap());
    assert_eq!(r.acquire_timeout(BOUND), LockResult::Acquired);
    let r2 = r.clone();
    let other = std::thread::spawn(move || r2.release()).join_bounded();
    assert_eq!(other, Err(SyncError::NotOwner));
    r.release().unwrap();
}
