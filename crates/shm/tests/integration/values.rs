//! RawValue, RawArray, Value and Array across processes.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::bounded::JoinBounded;
use multiproc_process::{Process, StartMethod};
use multiproc_shm::{Array, RawArray, RawValue, SharedMutex, ShmError, Value};

/// Every start method of this platform (spawn only on Windows).
fn methods() -> &'static [StartMethod] {
    StartMethod::available()
}

/// Two start methods to run side by side: spawn with a second method where there is one.
fn two_methods() -> [StartMethod; 2] {
    let all = methods();
    [all[0], *all.last().expect("spawn is always available")]
}

/// What `join` reports for a child killed by [`Process::kill`]: `-SIGKILL` on Unix; on
/// Windows `TerminateProcess`'s code, which CPython reports as `-SIGTERM`.
const KILLED: i32 = if cfg!(windows) { -15 } else { -9 };

/// Generous bound for anything that should take milliseconds.
const PATIENCE: Duration = Duration::from_secs(20);

fn run(p: &Process) -> i32 {
    p.start().unwrap();
    p.join_bounded()
}

/// Wait until `flag` holds `want`; false after `PATIENCE`.
fn wait_for(flag: &RawValue<u32>, want: u32) -> bool {
    let t = Instant::now();
    while flag.atomic().load(Ordering::Acquire) != want {
        if t.elapsed() > PATIENCE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

type Everything = (Value<i64>, Array<u32>, RawValue<u64>, RawArray<f64>);

fn write_everything((v, a, rv, ra): Everything) {
    v.set(-42);
    for (i, x) in a.lock().iter_mut().enumerate() {
        *x = i as u32 * 3;
    }
    rv.set(0xdead_beef);
    ra.copy_from_slice(&[0.5, 1.5]).unwrap();
}

#[test]
fn child_writes_parent_reads_every_method() {
    for &m in methods() {
        let v = Value::new(0i64).unwrap();
        let a = Array::<u32>::new(5).unwrap();
        let rv = RawValue::new(1u64).unwrap();
        let ra = RawArray::<f64>::new(2).unwrap();
        let p = Process::new(
            write_everything,
            (v.clone(), a.clone(), rv.clone(), ra.clone()),
        )
        .start_method(m);
        assert_eq!(run(&p), 0, "{m:?}");
        assert_eq!(v.get(), -42, "{m:?}");
        assert_eq!(a.to_vec(), [0, 3, 6, 9, 12], "{m:?}");
        assert_eq!(rv.get(), 0xdead_beef, "{m:?}");
        assert_eq!(ra.to_vec(), [0.5, 1.5], "{m:?}");
        assert!(!v.get_lock().is_locked() && !a.get_lock().is_locked());
    }
}

fn add_locked((v, n): (Value<i64>, u32)) {
    for _ in 0..n {
        *v.lock() += 1;
    }
}

#[test]
fn locked_increments_are_exact() {
    #[cfg(unix)]
    let pairs = [
        [StartMethod::Spawn, StartMethod::Forkserver],
        [StartMethod::Fork, StartMethod::Fork],
    ];
    #[cfg(not(unix))]
    let pairs = [two_methods()];
    for pair in pairs {
        let v = Value::new(0i64).unwrap();
        let ps: Vec<_> = pair
            .iter()
            .map(|&m| Process::new(add_locked, (v.clone(), 100_000)).start_method(m))
            .collect();
        for p in &ps {
            p.start().unwrap();
        }
        for p in &ps {
            assert_eq!(p.join_bounded(), 0, "{pair:?}");
        }
        assert_eq!(v.get(), 200_000, "{pair:?}");
    }
}

fn add_atomic((v, a, n): (RawValue<u64>, RawArray<u32>, u32)) {
    for i in 0..n {
        v.atomic().fetch_add(1, Ordering::Relaxed);
        a.atomic((i % 4) as usize)
            .unwrap()
            .fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn raw_atomic_increments_are_exact() {
    let v = RawValue::new(0u64).unwrap();
    let a = RawArray::<u32>::new(4).unwrap();
    let ps: Vec<_> = two_methods()
        .into_iter()
        .map(|m| Process::new(add_atomic, (v.clone(), a.clone(), 100_000)).start_method(m))
        .collect();
    for p in &ps {
        p.start().unwrap();
    }
    for p in &ps {
        assert_eq!(p.join_bounded(), 0);
    }
    assert_eq!(v.get(), 200_000);
    assert_eq!(a.to_vec(), [50_000; 4]);
}

/// Take the lock, scribble, say so, and hang on to it until killed.
fn hold_forever((v, flag): (Value<i64>, RawValue<u32>)) {
    let mut g = v.lock();
    *g = 42;
    flag.atomic().store(1, Ordering::Release);
    std::thread::sleep(Duration::from_secs(600));
    drop(g);
}

/// The blocking side: a waiter checks the holder between timed sleeps, so this needs a futex
/// whose timed wait reports its timeouts (the sleeping fallback reports every return as a
/// wake-up, and the holder is then checked only at the deadline).
#[test]
fn killed_holder_gives_owner_died() {
    for &m in methods() {
        let v = Value::new(0i64).unwrap();
        let flag = RawValue::new(0u32).unwrap();
        let p = Process::new(hold_forever, (v.clone(), flag.clone())).start_method(m);
        p.start().unwrap();
        assert!(wait_for(&flag, 1), "{m:?}: the child never took the lock");
        assert!(v.try_lock().is_none(), "{m:?}: held by the child");
        let pid = p.pid().unwrap();
        assert_eq!(v.get_lock().owner(), Some(pid), "{m:?}");
        p.kill().unwrap();
        let t = Instant::now();
        let g = v
            .lock_timeout(PATIENCE)
            .unwrap_or_else(|| panic!("{m:?}: the dead holder's lock was never taken over"));
        assert!(t.elapsed() < PATIENCE, "{m:?}");
        assert!(g.owner_died(), "{m:?}");
        assert_eq!(*g, 42, "{m:?}: what the holder wrote stays");
        drop(g);
        assert!(!v.lock().owner_died(), "{m:?}: reported once");
        assert_eq!(p.join_bounded(), KILLED, "{m:?}");
    }
}

/// The non-blocking side of owner-died detection, which needs no wake-up: once the killed
/// holder has ended, `try_lock` sees it is gone (its identity, pid and start time, is not
/// alive) and takes the lock over.
#[test]
fn try_lock_takes_over_from_a_killed_holder() {
    for &m in methods() {
        let v = Value::new(0i64).unwrap();
        let flag = RawValue::new(0u32).unwrap();
        let p = Process::new(hold_forever, (v.clone(), flag.clone())).start_method(m);
        p.start().unwrap();
        assert!(wait_for(&flag, 1), "{m:?}: the child never took the lock");
        assert!(v.try_lock().is_none(), "{m:?}: held by the child");
        p.kill().unwrap();
        assert_eq!(p.join_bounded(), KILLED, "{m:?}");
        let g = v.try_lock().expect("the dead holder's lock is free");
        assert!(g.owner_died(), "{m:?}");
        assert_eq!(*g, 42, "{m:?}");
        drop(g);
        assert!(!v.try_lock().unwrap().owner_died(), "{m:?}: reported once");
    }
}

fn check_indices((a, ra): (Array<u8>, RawArray<u8>)) {
    assert!(matches!(
        a.get(3),
        Err(ShmError::IndexOutOfRange { index: 3, len: 3 })
    ));
    assert!(matches!(
        a.set(usize::MAX, 1),
        Err(ShmError::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        ra.set(4, 1),
        Err(ShmError::IndexOutOfRange { index: 4, len: 4 })
    ));
    assert!(matches!(
        ra.copy_from_slice(&[1, 2, 3]),
        Err(ShmError::LengthMismatch {
            expected: 4,
            got: 3
        })
    ));
    a.set(2, 7).unwrap();
    ra.set(3, 8).unwrap();
}

#[test]
fn index_errors_in_a_child() {
    let a = Array::<u8>::new(3).unwrap();
    let ra = RawArray::<u8>::new(4).unwrap();
    let p = Process::new(check_indices, (a.clone(), ra.clone()));
    assert_eq!(run(&p), 0, "{:?}", p.panic_message());
    assert_eq!(a.to_vec(), [0, 0, 7]);
    assert_eq!(ra.to_vec(), [0, 0, 0, 8]);
    assert!(a.get(3).is_err() && ra.get(4).is_err());
}

/// Hold `a`'s lock until the parent says go, then write both values.
fn hold_a_then_write((a, b, flag): (Value<i64>, Value<i64>, RawValue<u32>)) {
    let mut g = a.lock();
    flag.atomic().store(1, Ordering::Release);
    assert!(wait_for(&flag, 2), "the parent never said go");
    *g = 1;
    drop(g);
    b.set(2);
}

#[test]
fn user_lock_shared_by_two_values() {
    for &m in methods() {
        let lock = SharedMutex::new().unwrap();
        let a = Value::with_lock(0i64, lock.clone()).unwrap();
        let b = Value::with_lock(0i64, lock.clone()).unwrap();
        let flag = RawValue::new(0u32).unwrap();
        let p =
            Process::new(hold_a_then_write, (a.clone(), b.clone(), flag.clone())).start_method(m);
        p.start().unwrap();
        assert!(wait_for(&flag, 1), "{m:?}");
        // the child holds `a`, so `b` and the lock itself are taken too
        assert!(lock.is_locked(), "{m:?}");
        assert!(b.try_lock().is_none(), "{m:?}");
        assert!(b.lock_timeout(Duration::from_millis(30)).is_none(), "{m:?}");
        flag.atomic().store(2, Ordering::Release);
        assert_eq!(p.join_bounded(), 0, "{m:?}: {:?}", p.panic_message());
        assert_eq!((a.get(), b.get()), (1, 2), "{m:?}");
        assert!(!lock.is_locked(), "{m:?}");
    }
}

fn fill_ones(a: Array<u8>) {
    a.lock().fill(1);
}

#[test]
fn a_big_array_is_filled_in_place() {
    let a = Array::<u8>::new(16 << 20).unwrap();
    let p = Process::new(fill_ones, a.clone()).start_method(two_methods()[1]);
    assert_eq!(run(&p), 0);
    let g = a.lock();
    assert!(g.iter().all(|&x| x == 1));
    assert_eq!(g.len(), 16 << 20);
}
