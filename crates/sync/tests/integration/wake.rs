//! Sleeping and waking across processes, the hostile cases: a holder killed while others
//! sleep on its lock, many processes on one lock, and wake-ups that must never be lost.

use std::time::{Duration, Instant};

use crate::bounded::{JoinBounded, ThreadJoinBounded, BOUND};
use crate::support::{Kid, METHODS};
use multiproc_process::Process;
use multiproc_shm::{LockResult, Segment};
use multiproc_sync::{Condition, Event, Lock, Semaphore};

fn hold_for_ever((lock, ready): (Lock, Event)) {
    let _g = lock.lock();
    ready.set();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn waiters_asleep_on_a_lock_whose_holder_is_killed_get_owner_died_once() {
    for m in METHODS {
        let lock = Lock::new().unwrap();
        let ready = Event::new().unwrap();
        let holder =
            Kid::start(Process::new(hold_for_ever, (lock.clone(), ready.clone())).start_method(m));
        assert!(ready.wait_timeout(BOUND), "{m:?}: the holder never held");
        // two waiters asleep in the lock (no timeout of their own but the test's bound)
        let sleepers: Vec<_> = (0..2)
            .map(|_| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    let r = lock.acquire_timeout(BOUND);
                    let at = Instant::now();
                    if r.acquired() {
                        std::thread::sleep(Duration::from_millis(5));
                        lock.release().unwrap();
                    }
                    (r, at)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let killed = Instant::now();
        holder.kill();
        let got: Vec<(LockResult, Instant)> =
            sleepers.into_iter().map(|h| h.join_bounded()).collect();
        let died = got
            .iter()
            .filter(|(r, _)| *r == LockResult::OwnerDied)
            .count();
        let acquired = got
            .iter()
            .filter(|(r, _)| *r == LockResult::Acquired)
            .count();
        assert_eq!((died, acquired), (1, 1), "{m:?}: {got:?}");
        // noticed within a bounded time (the waiters check the holder between slices of sleep)
        let first = got.iter().map(|(_, at)| *at).min().unwrap();
        assert!(
            first.duration_since(killed) < Duration::from_secs(5),
            "{m:?}: noticed after {:?}",
            first.duration_since(killed)
        );
        assert!(!lock.is_locked(), "{m:?}");
    }
}

/// Add 1 to the u64 at the start of `seg` `n` times under `lock`, with a plain read and write.
fn add_locked((lock, seg, n): (Lock, Segment, u64)) {
    let p = seg.as_ptr() as *mut u64;
    for _ in 0..n {
        let _g = lock.lock();
        // SAFETY: the segment is 8-byte aligned and at least 8 bytes; the lock serializes access.
        unsafe { p.write_volatile(p.read_volatile() + 1) };
    }
}

#[test]
fn many_processes_and_threads_on_one_lock_lose_no_update() {
    const KIDS: u64 = 4;
    const EACH: u64 = 20_000;
    let lock = Lock::new().unwrap();
    let seg = Segment::new(8).unwrap();
    let kids: Vec<Kid> = (0..KIDS)
        .map(|_| {
            Kid::start(Process::new(
                add_locked,
                (lock.clone(), seg.try_clone().unwrap(), EACH),
            ))
        })
        .collect();
    // and a thread of ours among them
    let ours = {
        let (lock, seg) = (lock.clone(), seg.try_clone().unwrap());
        std::thread::spawn(move || add_locked((lock, seg, EACH)))
    };
    for k in &kids {
        assert_eq!(k.0.join_bounded(), 0);
    }
    ours.join_bounded();
    let mut b = [0u8; 8];
    seg.read_into(0, &mut b).unwrap();
    assert_eq!(u64::from_ne_bytes(b), (KIDS + 1) * EACH);
    assert!(!lock.is_locked());
}

const ROUNDS: u32 = 2_000;

/// The other side of the ping-pong: take `ping`, give `pong`, `ROUNDS` times; exit 1 if a
/// wake-up does not come within the bound.
fn pong_semaphores((ping, pong): (Semaphore, Semaphore)) {
    for _ in 0..ROUNDS {
        if !ping.acquire_timeout(BOUND) {
            std::process::exit(1);
        }
        pong.release();
    }
}

#[test]
fn two_processes_ping_pong_through_semaphores_without_a_lost_wake_up() {
    let (ping, pong) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
    let kid = Kid::start(Process::new(pong_semaphores, (ping.clone(), pong.clone())));
    for i in 0..ROUNDS {
        ping.release();
        assert!(pong.acquire_timeout(BOUND), "round {i}: no pong");
    }
    assert_eq!(kid.0.join_bounded(), 0);
    assert_eq!((ping.value(), pong.value()), (0, 0));
}

/// The other side of the condition ping-pong: wait for an odd turn, make it even, notify.
fn pong_condition((c, seg): (Condition, Segment)) {
    let turn = seg.as_ptr() as *mut u32;
    for _ in 0..ROUNDS {
        assert!(c.acquire_timeout(BOUND).acquired());
        // SAFETY: 4-byte aligned, in the segment, read and written under the condition's lock.
        while unsafe { turn.read_volatile() } % 2 == 0 {
            if !c.wait_timeout(BOUND).unwrap() {
                std::process::exit(1);
            }
        }
        // SAFETY: as above.
        unsafe { turn.write_volatile(turn.read_volatile() + 1) };
        c.notify(1).unwrap();
        c.release().unwrap();
    }
}

#[test]
fn two_processes_ping_pong_through_a_condition_without_a_lost_wake_up() {
    let c = Condition::new().unwrap();
    let seg = Segment::new(8).unwrap();
    let turn = seg.as_ptr() as *mut u32;
    let kid = Kid::start(Process::new(
        pong_condition,
        (c.clone(), seg.try_clone().unwrap()),
    ));
    for i in 0..ROUNDS {
        assert!(c.acquire_timeout(BOUND).acquired());
        // SAFETY: as in `pong_condition`.
        unsafe { turn.write_volatile(turn.read_volatile() + 1) };
        c.notify(1).unwrap();
        // SAFETY: as above.
        while unsafe { turn.read_volatile() } % 2 == 1 {
            assert!(c.wait_timeout(BOUND).unwrap(), "round {i}: no pong");
        }
        c.release().unwrap();
    }
    assert_eq!(kid.0.join_bounded(), 0);
    // SAFETY: as above (the child is gone).
    assert_eq!(unsafe { turn.read_volatile() }, 2 * ROUNDS);
}
