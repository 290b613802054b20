//! `Condition`: a notification belongs to the waiters present when it was made, and a waiter
//! that died waiting counts for nothing.

use std::time::{Duration, Instant};

use multiproc_process::{pipe, Connection, Process, StartMethod};
use multiproc_shm::RawValue;
use multiproc_sync::{Condition, Semaphore};

use crate::support::{recv_bounded, Kid, METHODS, PATIENCE, QUICK};

/// Take the lock, say so, wait (the lock is released inside), report whether notified.
fn wait_and_report((c, ready, report, timeout): (Condition, Semaphore, Connection, u64)) {
    assert!(c.acquire_timeout(PATIENCE).acquired());
    ready.release(); // still holding the lock: the parent cannot notify before we wait
    let t = Instant::now();
    let notified = c.wait_timeout(Duration::from_millis(timeout)).unwrap();
    c.release().unwrap();
    report
        .send(&(notified, t.elapsed().as_millis() as u64))
        .unwrap();
}

/// Start a waiter under `m` and return once it waits (it released the lock).
fn start_waiter(c: &Condition, m: StartMethod, timeout_ms: u64) -> (Kid, Connection) {
    let ready = Semaphore::new(0).unwrap();
    let (here, there) = pipe(true).unwrap();
    let p = Kid::start(
        Process::new(
            wait_and_report,
            (c.clone(), ready.clone(), there, timeout_ms),
        )
        .start_method(m),
    );
    assert!(
        ready.acquire_timeout(PATIENCE),
        "{m:?}: the waiter did not start"
    );
    // it holds the lock until it waits
    assert!(c.acquire_timeout(PATIENCE).acquired());
    c.release().unwrap();
    (p, here)
}

#[test]
fn a_notification_is_not_taken_by_a_later_waiter() {
    for m in METHODS {
        let c = Condition::new().unwrap();
        let (p, report) = start_waiter(&c, m, 3000);
        assert!(c.acquire_timeout(PATIENCE).acquired());
        assert_eq!(c.notify(1), Ok(1), "{m:?}");
        // we wait after the notification: it is not ours
        assert_eq!(
            c.wait_timeout(Duration::from_millis(300)),
            Ok(false),
            "{m:?}: the notifier's own later wait took the notification"
        );
        c.release().unwrap();
        let (notified, took): (bool, u64) = recv_bounded(&report);
        assert!(
            notified,
            "{m:?}: the waiter present at notify was not notified"
        );
        assert!(
            took < 2500,
            "{m:?}: the notified waiter slept {took} ms, its timeout out"
        );
        assert_eq!(p.join(), 0, "{m:?}");
    }
}

fn wait_for_flag((c, flag, ready): (Condition, RawValue<u32>, Semaphore)) {
    assert!(c.acquire_timeout(PATIENCE).acquired());
    ready.release();
    assert!(c.wait_for(|| flag.get() == 1, None).unwrap());
    c.release().unwrap();
}

#[test]
fn wait_for_without_timeout_wakes_when_notified_before_a_later_wait() {
    for m in METHODS {
        let c = Condition::new().unwrap();
        let flag = RawValue::new(0u32).unwrap();
        let ready = Semaphore::new(0).unwrap();
        let p = Kid::start(
            Process::new(wait_for_flag, (c.clone(), flag.clone(), ready.clone())).start_method(m),
        );
        assert!(ready.acquire_timeout(PATIENCE));
        assert!(c.acquire_timeout(PATIENCE).acquired());
        flag.set(1);
        assert_eq!(c.notify(1), Ok(1), "{m:?}");
        assert_eq!(
            c.wait_timeout(Duration::from_millis(300)),
            Ok(false),
            "{m:?}"
        );
        c.release().unwrap();
        assert_eq!(p.join(), 0, "{m:?}: the notified waiter never woke");
    }
}

#[test]
fn a_waiter_killed_inside_wait_is_not_counted() {
    for m in METHODS {
        let c = Condition::new().unwrap();
        let (p, _report) = start_waiter(&c, m, 600_000);
        p.kill();
        assert!(c.acquire_timeout(PATIENCE).acquired());
        assert_eq!(c.notify(1), Ok(0), "{m:?}: a dead waiter was notified");
        // nobody notified the next waiter
        assert_eq!(
            c.wait_timeout(Duration::from_millis(100)),
            Ok(false),
            "{m:?}"
        );
        c.release().unwrap();

        // a dead waiter older than a live one: the live one gets the notification
        let (dead, _r) = start_waiter(&c, m, 600_000);
        let (live, report) = start_waiter(&c, m, 10_000);
        dead.kill();
        assert!(c.acquire_timeout(PATIENCE).acquired());
        assert_eq!(c.notify(1), Ok(1), "{m:?}");
        c.release().unwrap();
        let (notified, took): (bool, u64) = recv_bounded(&report);
        assert!(notified && took < 8000, "{m:?}: {notified} after {took} ms");
        assert_eq!(live.join(), 0);
    }
}

fn wait_forever((c, ready): (Condition, Semaphore)) {
    assert!(c.acquire_timeout(PATIENCE).acquired());
    ready.release();
    let _ = c.wait_timeout(Duration::from_secs(600));
}

#[test]
fn waiters_killed_at_any_moment_leave_nothing_behind() {
    let c = Condition::new().unwrap();
    let ready = Semaphore::new(0).unwrap();
    for i in 0..40u64 {
        let p =
            Kid::start(Process::new(wait_forever, (c.clone(), ready.clone())).start_method(QUICK));
        if i % 2 == 0 {
            // somewhere between start and waiting
            std::thread::sleep(Duration::from_micros(200 * (i % 7)));
        } else {
            assert!(ready.acquire_timeout(PATIENCE));
        }
        p.kill();
    }
    // a waiter killed holding the lock hands it over
    let _ = c.acquire_timeout(PATIENCE);
    assert_eq!(c.notify_all(), Ok(0), "dead waiters were counted");
    assert_eq!(c.wait_timeout(Duration::from_millis(50)), Ok(false));
    c.release().unwrap();
    // and the live still get theirs
    let (p, report) = start_waiter(&c, QUICK, 10_000);
    assert!(c.acquire_timeout(PATIENCE).acquired());
    assert_eq!(c.notify_all(), Ok(1));
    c.release().unwrap();
    let (notified, _): (bool, u64) = recv_bounded(&report);
    assert!(notified);
    assert_eq!(p.join(), 0);
}

#[test]
fn threads_notified_oldest_first_and_timeouts_give_their_place_back() {
    let c = Condition::new().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut hs = Vec::new();
    for i in 0..3u32 {
        let (c2, tx) = (c.clone(), tx.clone());
        hs.push(std::thread::spawn(move || {
            assert!(c2.acquire_timeout(PATIENCE).acquired());
            tx.send((i, None)).unwrap();
            // waiter 1 times out early: a notification must not be spent on it
            let t = if i == 1 { 50 } else { 10_000 };
            let n = c2.wait_timeout(Duration::from_millis(t)).unwrap();
            c2.release().unwrap();
            tx.send((i, Some(n))).unwrap();
        }));
        assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), (i, None));
        // the lock is free once it waits
        assert!(c.acquire_timeout(PATIENCE).acquired());
        c.release().unwrap();
    }
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), (1, Some(false)));
    assert!(c.acquire_timeout(PATIENCE).acquired());
    assert_eq!(c.notify(1), Ok(1));
    c.release().unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), (0, Some(true)));
    assert!(c.acquire_timeout(PATIENCE).acquired());
    assert_eq!(c.notify(5), Ok(1));
    c.release().unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), (2, Some(true)));
    for h in hs {
        h.join().unwrap();
    }
}
