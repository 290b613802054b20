//! The manager's queues and synchronization objects across real processes, with every start
//! method: producers and consumers, pool tasks, a lock whose holder is killed, a waiter killed
//! while it waits, a server killed under a waiting client.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use multiproc::managers::{
    BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, DictProxy, EventProxy, JoinableQueueProxy,
    LockProxy, QueueProxy, RLockProxy, SemaphoreProxy, ServerError,
};
use multiproc::{LockResult, Manager, ManagerError, Pool, Process, StartMethod};

multiproc::test_support!();

#[path = "../../process/tests/integration/bounded.rs"]
mod bounded;
use bounded::{within, JoinBounded, BOUND};

mod support;
use support::kill_pid;

/// The start methods of this platform (spawn only on Windows).
fn methods() -> impl Iterator<Item = StartMethod> {
    StartMethod::available().iter().copied()
}

fn manager(method: StartMethod) -> Manager {
    Manager::builder().start_method(method).start().unwrap()
}

fn server_error(e: ManagerError) -> ServerError {
    match e {
        ManagerError::Server(s) => s,
        e => panic!("expected a refusal of the server, got {e:?}"),
    }
}

fn produce((q, from): (QueueProxy<u32>, u32)) {
    for i in from..from + 50 {
        q.put_timeout(i, BOUND).unwrap();
    }
}

fn consume((q, out): (QueueProxy<u32>, QueueProxy<u64>)) {
    let sum: u64 = (0..50)
        .map(|_| u64::from(q.get_timeout(BOUND).unwrap()))
        .sum();
    out.put(sum).unwrap();
}

#[test]
fn a_bounded_queue_carries_every_item_from_producers_to_consumers() {
    for method in methods() {
        let m = manager(method);
        // small, so that producers wait for room on the server
        let q = m.queue_with_maxsize::<u32>(4).unwrap();
        let out = m.queue::<u64>().unwrap();
        let producers: Vec<Process> = [0, 1000]
            .into_iter()
            .map(|from| Process::new(produce, (q.clone(), from)).start_method(method))
            .collect();
        let consumer = Process::new(consume, (q.clone(), out.clone())).start_method(method);
        for p in producers.iter().chain([&consumer]) {
            p.start().unwrap();
        }
        // the parent consumes the other 50
        let mine: Vec<u32> = (0..50).map(|_| q.get_timeout(BOUND).unwrap()).collect();
        for p in producers.iter().chain([&consumer]) {
            assert_eq!(p.join_bounded(), 0, "{method:?}");
        }
        let theirs = out.get_timeout(BOUND).unwrap();
        let all: u64 = (0..50u64).chain(1000..1050).sum();
        assert_eq!(
            mine.iter().map(|&i| u64::from(i)).sum::<u64>() + theirs,
            all,
            "{method:?}"
        );
        assert_eq!(
            mine.iter().collect::<BTreeSet<_>>().len(),
            50,
            "no duplicates"
        );
        assert!(q.is_empty().unwrap());
        assert_eq!(server_error(q.try_get().unwrap_err()), ServerError::Empty);
        m.shutdown().unwrap();
    }
}

fn square((q, i): (QueueProxy<u64>, u64)) -> u64 {
    q.put(i * i).unwrap();
    i
}

#[test]
fn pool_tasks_put_on_a_managed_queue() {
    for method in methods() {
        let m = manager(method);
        let q = m.queue::<u64>().unwrap();
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .build()
            .unwrap();
        let tasks: Vec<(QueueProxy<u64>, u64)> = (0..20).map(|i| (q.clone(), i)).collect();
        let done = within(move || {
            let r = pool.map(square, tasks).unwrap();
            pool.close();
            pool.join().unwrap();
            r
        });
        assert_eq!(done, (0..20).collect::<Vec<_>>());
        let mut got: Vec<u64> = (0..20).map(|_| q.get_timeout(BOUND).unwrap()).collect();
        got.sort_unstable();
        assert_eq!(
            got,
            (0..20u64).map(|i| i * i).collect::<Vec<_>>(),
            "{method:?}"
        );
        assert_eq!(q.len().unwrap(), 0);
        m.shutdown().unwrap();
    }
}

fn work_off(q: JoinableQueueProxy<u32>) {
    for _ in 0..10 {
        q.get_timeout(BOUND).unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn joinable_queue_join_returns_once_every_task_is_done() {
    for method in methods() {
        let m = manager(method);
        let q = m.joinable_queue::<u32>().unwrap();
        for i in 0..10 {
            q.put(i).unwrap();
        }
        assert!(!q.join_timeout(Duration::from_millis(50)).unwrap());
        let p = Process::new(work_off, q.clone()).start_method(method);
        p.start().unwrap();
        assert!(q.join_timeout(BOUND).unwrap(), "{method:?}");
        assert_eq!(p.join_bounded(), 0);
        assert!(q.is_empty().unwrap());
        assert_eq!(
            server_error(q.task_done().unwrap_err()),
            ServerError::NotHeld("task_done() called more times than there were items".into())
        );
        m.shutdown().unwrap();
    }
}

fn hold_and_hang((lock, held): (LockProxy, EventProxy)) {
    assert_eq!(lock.acquire().unwrap(), LockResult::Acquired);
    held.set().unwrap();
    std::thread::sleep(BOUND);
}

fn hold_rlock_and_hang((lock, held): (RLockProxy, EventProxy)) {
    let _a = lock.lock().unwrap();
    let _b = lock.lock().unwrap();
    held.set().unwrap();
    std::thread::sleep(BOUND);
}

fn hold_permit_and_hang((s, held): (BoundedSemaphoreProxy, EventProxy)) {
    assert!(s.acquire().unwrap());
    held.set().unwrap();
    std::thread::sleep(BOUND);
}

fn kill(p: &Process) {
    p.kill().unwrap();
    assert_ne!(p.join_bounded(), 0);
}

#[test]
fn a_lock_whose_holder_is_killed_goes_to_the_next_acquirer_who_learns_it() {
    for method in methods() {
        let m = manager(method);
        let lock = m.lock().unwrap();
        let held = m.event().unwrap();
        let p = Process::new(hold_and_hang, (lock.clone(), held.clone())).start_method(method);
        p.start().unwrap();
        assert!(held.wait_timeout(BOUND).unwrap());
        assert_eq!(lock.try_acquire().unwrap(), LockResult::TimedOut);
        kill(&p);
        assert_eq!(
            lock.acquire_timeout(BOUND).unwrap(),
            LockResult::OwnerDied,
            "{method:?}"
        );
        lock.release().unwrap();
        // told once: the next holder finds it clean
        let g = lock.lock_timeout(BOUND).unwrap().unwrap();
        assert!(!g.owner_died());
        drop(g);
        assert!(!lock.is_locked().unwrap());

        let rlock = m.rlock().unwrap();
        let held = m.event().unwrap();
        let p =
            Process::new(hold_rlock_and_hang, (rlock.clone(), held.clone())).start_method(method);
        p.start().unwrap();
        assert!(held.wait_timeout(BOUND).unwrap());
        assert_eq!(rlock.try_acquire().unwrap(), LockResult::TimedOut);
        kill(&p);
        let g = rlock.lock_timeout(BOUND).unwrap().unwrap();
        assert!(g.owner_died(), "{method:?}");
        assert!(rlock.is_owned().unwrap());
        drop(g);
        assert!(
            !rlock.is_locked().unwrap(),
            "both levels of the dead holder went"
        );

        let s = m.bounded_semaphore(1).unwrap();
        let held = m.event().unwrap();
        let p = Process::new(hold_permit_and_hang, (s.clone(), held.clone())).start_method(method);
        p.start().unwrap();
        assert!(held.wait_timeout(BOUND).unwrap());
        assert!(!s.try_acquire().unwrap());
        kill(&p);
        assert!(s.acquire_timeout(BOUND).unwrap(), "{method:?}");
        assert_eq!(s.recovered().unwrap(), 1);
        s.release().unwrap();
        assert_eq!(s.value().unwrap(), 1);
        m.shutdown().unwrap();
    }
}

fn get_forever((q, asking): (QueueProxy<String>, EventProxy)) {
    asking.set().unwrap();
    let got = q.get();
    panic!("the get should never end: {got:?}");
}

#[test]
fn a_get_whose_process_is_killed_while_it_waits_takes_nothing() {
    for method in methods() {
        let m = manager(method);
        let q = m.queue::<String>().unwrap();
        let asking = m.event().unwrap();
        let p = Process::new(get_forever, (q.clone(), asking.clone())).start_method(method);
        p.start().unwrap();
        assert!(asking.wait_timeout(BOUND).unwrap());
        // let its get reach the server (if it has not yet, it takes nothing either)
        std::thread::sleep(Duration::from_millis(200));
        kill(&p);
        // at once: the dead waiter is still asleep on the server when the item comes
        q.put("for the living".into()).unwrap();
        assert_eq!(
            q.get_timeout(BOUND).unwrap(),
            "for the living",
            "{method:?}"
        );
        m.shutdown().unwrap();
    }
}

fn wait_notified((cond, ready): (ConditionProxy, EventProxy)) {
    assert!(cond.acquire().unwrap().acquired());
    ready.set().unwrap();
    // the lock is let go while waiting: the parent takes it and notifies
    assert!(cond.wait_timeout(BOUND).unwrap(), "not notified");
    // and taken back
    cond.notify_all().unwrap();
    cond.release().unwrap();
}

#[test]
fn a_condition_notifies_a_waiter_in_another_process() {
    for method in methods() {
        let m = manager(method);
        let lock = m.lock().unwrap();
        let conds = [
            m.condition().unwrap(),
            m.condition_with(lock.clone()).unwrap(),
        ];
        for cond in conds {
            let ready = m.event().unwrap();
            let p = Process::new(wait_notified, (cond.clone(), ready.clone())).start_method(method);
            p.start().unwrap();
            assert!(ready.wait_timeout(BOUND).unwrap());
            // the child holds the lock until its wait lets it go
            assert!(cond.acquire_timeout(BOUND).unwrap().acquired());
            assert_eq!(cond.notify(1).unwrap(), 1, "{method:?}");
            cond.release().unwrap();
            assert_eq!(p.join_bounded(), 0, "{method:?}");
        }
        // the given lock is the condition's
        let cond = m.condition_with(lock.clone()).unwrap();
        assert_eq!(
            server_error(cond.notify(1).unwrap_err()),
            ServerError::NotHeld("cannot notify on a condition without holding its lock".into())
        );
        assert!(lock.acquire().unwrap().acquired());
        assert_eq!(cond.notify(1).unwrap(), 0);
        assert!(!cond.wait_timeout(Duration::from_millis(10)).unwrap());
        assert!(lock.is_locked().unwrap(), "a wait takes the lock back");
        cond.release().unwrap();
        m.shutdown().unwrap();
    }
}

fn meet((b, go, out): (BarrierProxy, EventProxy, QueueProxy<u32>)) {
    assert!(go.wait_timeout(BOUND).unwrap());
    out.put(b.wait_timeout(BOUND).unwrap()).unwrap();
}

#[test]
fn an_event_and_a_barrier_bring_processes_together() {
    for method in methods() {
        let m = manager(method);
        let b = m.barrier(4).unwrap();
        let go = m.event().unwrap();
        let out = m.queue::<u32>().unwrap();
        let ps: Vec<Process> = (0..3)
            .map(|_| Process::new(meet, (b.clone(), go.clone(), out.clone())).start_method(method))
            .collect();
        for p in &ps {
            p.start().unwrap();
        }
        go.set().unwrap();
        let mine = b.wait_timeout(BOUND).unwrap();
        for p in &ps {
            assert_eq!(p.join_bounded(), 0, "{method:?}");
        }
        let mut all: Vec<u32> = (0..3).map(|_| out.get_timeout(BOUND).unwrap()).collect();
        all.push(mine);
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3], "{method:?}");
        assert_eq!(b.n_waiting().unwrap(), 0);
        assert!(!b.broken().unwrap());
        m.shutdown().unwrap();
    }
}

fn signal(s: SemaphoreProxy) {
    for _ in 0..5 {
        s.release().unwrap();
    }
}

#[test]
fn a_semaphore_signals_across_processes() {
    for method in methods() {
        let m = manager(method);
        let s = m.semaphore(0).unwrap();
        let p = Process::new(signal, s.clone()).start_method(method);
        p.start().unwrap();
        for _ in 0..5 {
            assert!(s.acquire_timeout(BOUND).unwrap(), "{method:?}");
        }
        assert_eq!(p.join_bounded(), 0);
        assert!(!s.try_acquire().unwrap());
        m.shutdown().unwrap();
    }
}

fn wait_at_barrier((b, asking): (BarrierProxy, EventProxy)) {
    asking.set().unwrap();
    let _ = b.wait();
    std::thread::sleep(BOUND);
}

#[test]
fn a_barrier_waiter_killed_breaks_the_barrier() {
    let m = Manager::start().unwrap();
    let b = m.barrier(3).unwrap();
    let asking = m.event().unwrap();
    let p = Process::new(wait_at_barrier, (b.clone(), asking.clone()));
    p.start().unwrap();
    assert!(asking.wait_timeout(BOUND).unwrap());
    let t0 = Instant::now();
    while b.n_waiting().unwrap() == 0 {
        assert!(t0.elapsed() < BOUND);
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(&p);
    let e = b.wait_timeout(BOUND).unwrap_err();
    assert_eq!(server_error(e), ServerError::BrokenBarrier);
    b.reset().unwrap();
    assert!(!b.broken().unwrap());
}

#[test]
fn timeouts_and_misuse_are_typed_errors() {
    let m = Manager::start().unwrap();
    let q = m.queue_with_maxsize::<u8>(1).unwrap();
    assert_eq!(
        server_error(q.get_timeout(Duration::from_millis(20)).unwrap_err()),
        ServerError::Empty
    );
    q.put(1).unwrap();
    assert!(q.is_full().unwrap());
    assert_eq!(server_error(q.try_put(2).unwrap_err()), ServerError::Full);
    assert_eq!(
        server_error(q.put_timeout(2, Duration::from_millis(20)).unwrap_err()),
        ServerError::Full
    );
    assert_eq!(q.get().unwrap(), 1);

    let lock = m.lock().unwrap();
    assert!(matches!(
        server_error(lock.release().unwrap_err()),
        ServerError::NotHeld(_)
    ));
    let g = lock.lock().unwrap();
    assert_eq!(
        lock.acquire_timeout(Duration::from_millis(20)).unwrap(),
        LockResult::TimedOut
    );
    drop(g);

    // an RLock belongs to its thread
    let rlock = m.rlock().unwrap();
    assert!(rlock.acquire().unwrap().acquired());
    let other = rlock.clone();
    let (r, t) = within(move || {
        (
            other.release().map_err(server_error),
            other.acquire_timeout(Duration::from_millis(20)).unwrap(),
        )
    });
    assert!(matches!(r, Err(ServerError::NotHeld(_))));
    assert_eq!(t, LockResult::TimedOut);
    rlock.release().unwrap();

    let cond = m.condition().unwrap();
    assert!(matches!(
        server_error(cond.wait_timeout(Duration::from_millis(1)).unwrap_err()),
        ServerError::NotHeld(_)
    ));
    let s = m.bounded_semaphore(1).unwrap();
    assert!(matches!(
        server_error(s.release().unwrap_err()),
        ServerError::NotHeld(_)
    ));
    let plain = m.semaphore(0).unwrap();
    assert!(!plain.acquire_timeout(Duration::from_millis(20)).unwrap());
    assert!(matches!(
        server_error(m.barrier(0).unwrap_err()),
        ServerError::Malformed(_)
    ));
    let e = m.event().unwrap();
    assert!(!e.wait_timeout(Duration::from_millis(20)).unwrap());

    // a lock of another server cannot be a condition's
    let other = Manager::start().unwrap();
    assert!(m.condition_with(other.lock().unwrap()).is_err());
}

fn set_inner(q: QueueProxy<DictProxy<String, u32>>) {
    let d = q.get_timeout(BOUND).unwrap();
    d.set("child".into(), 9).unwrap();
}

#[test]
fn proxies_travel_through_a_queue_and_stay_alive_in_it() {
    let m = Manager::start().unwrap();
    let q = m.queue::<DictProxy<String, u32>>().unwrap();
    let d = m.dict::<String, u32>().unwrap();
    q.put(d.clone()).unwrap();
    q.put(m.dict().unwrap()).unwrap(); // only the queue holds this one
    assert_eq!(m.object_count().unwrap(), 3);
    let p = Process::new(set_inner, q.clone());
    p.start().unwrap();
    assert_eq!(p.join_bounded(), 0);
    assert_eq!(d.get("child").unwrap(), Some(9));
    // the second dict is alive in the queue, and comes out whole
    let second = q.get_timeout(BOUND).unwrap();
    second.set("x".into(), 1).unwrap();
    drop(second);
    assert_eq!(m.object_count().unwrap(), 2);
    q.put(m.dict().unwrap()).unwrap();
    drop(q); // a dropped queue releases what it held
    drop(d);
    assert_eq!(m.object_count().unwrap(), 0);
}

#[test]
fn a_server_killed_under_a_waiting_get_fails_it_within_a_second() {
    for method in methods() {
        let m = manager(method);
        let q = m.queue::<u8>().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let r = q.get();
            let _ = tx.send((r, Instant::now()));
        });
        // let the get reach the server
        std::thread::sleep(Duration::from_millis(200));
        let killed = Instant::now();
        kill_pid(m.server_pid());
        let (r, at) = rx.recv_timeout(BOUND).expect("the get did not end");
        assert!(
            matches!(r, Err(ManagerError::ServerGone(_))),
            "{method:?}: {r:?}"
        );
        assert!(
            at.duration_since(killed) < Duration::from_secs(1),
            "{method:?}: the get failed only after {:?}",
            at.duration_since(killed)
        );
        waiter.join().unwrap();
        drop(m);
    }
}

#[test]
fn a_waiting_get_ends_when_an_in_process_server_shuts_down() {
    let m = Manager::serve("127.0.0.1:0", b"key").unwrap();
    let q = m.queue::<u8>().unwrap();
    let q2 = q.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(q.get());
    });
    std::thread::sleep(Duration::from_millis(200));
    m.shutdown().unwrap();
    let r = rx.recv_timeout(BOUND).expect("the get did not end");
    assert!(
        matches!(
            r,
            Err(ManagerError::Server(ServerError::ShuttingDown)) | Err(ManagerError::ServerGone(_))
        ),
        "{r:?}"
    );
    // calls made after the shutdown, several at once so that all but one must open a
    // connection of their own, say the server is gone or going (not that a connection
    // failed): a connection the in-process server still holds answers "shutting down"
    let late: Vec<_> = (0..4)
        .map(|_| {
            let q = q2.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(q.get());
            });
            rx
        })
        .collect();
    for rx in late {
        let r = rx.recv_timeout(BOUND).expect("a late get did not end");
        assert!(
            matches!(
                r,
                Err(ManagerError::Server(ServerError::ShuttingDown))
                    | Err(ManagerError::ServerGone(_))
            ),
            "a get after the shutdown: {r:?}"
        );
    }
}
