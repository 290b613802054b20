//! The pool on Redis Streams, across real processes: a `redis-server` of the test's own on a
//! loopback port, workers that are this test binary in worker mode (`--multiproc-worker`).
//! Every test bounds its waits; leases are short so faults play out in seconds.

#![cfg(unix)]

multiproc::test_support!();

mod redis_support;

use std::time::Duration;

use multiproc::{Pool, PoolError};
#[allow(unused_imports)]
use redis_support::{registered, tasks_key, wait_until, RedisServer, Workers};

const LEASE_MS: u64 = 300;
const BOUND: Duration = Duration::from_secs(60);

fn square(x: u64) -> u64 {
    x * x
}

fn add((a, b): (i64, i64)) -> i64 {
    a + b
}

fn fails_on_7(x: u32) -> u32 {
    if x == 7 {
        panic!("seven is not allowed");
    }
    x
}

/// A unique cluster name per test (tests share nothing, but keep names apart anyway).
fn cluster(name: &str) -> String {
    format!("t-{name}-{}", std::process::id())
}

/// A server, `jobs` workers of this build, and a pool on them (after they registered).
fn setup(name: &str, jobs: usize) -> Option<(RedisServer, Workers, Pool)> {
    let server = RedisServer::start()?;
    let c = cluster(name);
    let workers = Workers::start(&server.url(), &c, jobs, LEASE_MS);
    let pool = Pool::builder()
        .redis(server.url(), &c)
        .discover_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    Some((server, workers, pool))
}

#[test]
fn apply_map_starmap_and_imap_give_correct_results() {
    let Some((server, _workers, pool)) = setup("basic", 2) else {
        return;
    };
    assert!(pool.processes() >= 1);
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    let r = pool.apply_async(square, 3).unwrap();
    assert_eq!(r.get_timeout(BOUND).unwrap(), 9);
    let out = pool
        .map_async(square, 0..1000u64, Some(7))
        .unwrap()
        .get_timeout(BOUND)
        .unwrap();
    assert_eq!(out, (0..1000u64).map(square).collect::<Vec<_>>());
    let out = pool
        .starmap_async(add, vec![(1, 2), (3, 4), (-5, 5)], None)
        .unwrap()
        .get_timeout(BOUND)
        .unwrap();
    assert_eq!(out, [3, 7, 0]);
    let out: Vec<u64> = pool
        .imap(square, 0..200u64, 3)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(out, (0..200u64).map(square).collect::<Vec<_>>());
    let mut out: Vec<u64> = pool
        .imap_unordered(square, 0..200u64, 1)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    out.sort();
    assert_eq!(out, (0..200u64).map(square).collect::<Vec<_>>());
    // The pending-entries list is empty once everything is answered.
    let mut c = server.conn();
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(tasks_key(&cluster("basic")))
        .arg("workers")
        .query(&mut c)
        .unwrap();
    let redis::Value::Array(p) = pending else {
        panic!("{pending:?}")
    };
    assert_eq!(p[0], redis::Value::Int(0), "{p:?}");
}

#[test]
fn a_panic_is_that_items_error_and_not_retried() {
    let Some((_server, _workers, pool)) = setup("panic", 2) else {
        return;
    };
    let out = pool
        .map_async(fails_on_7, 0..20u32, Some(4))
        .unwrap()
        .get_timeout(BOUND);
    match out {
        Err(PoolError::Panic { message, .. }) => assert!(message.contains("seven"), "{message}"),
        other => panic!("{other:?}"),
    }
    let each = pool.map_each(fails_on_7, 0..20u32, Some(4)).unwrap();
    for (i, r) in each.iter().enumerate() {
        if i == 7 {
            assert!(matches!(r, Err(PoolError::Panic { .. })), "{r:?}");
        } else {
            assert_eq!(r.as_ref().unwrap(), &(i as u32));
        }
    }
    let stats = pool.redis_stats().unwrap();
    assert_eq!(stats.redelivered, 0, "{stats:?}");
    assert_eq!(stats.lost, 0, "{stats:?}");
}

#[test]
fn callbacks_close_join_and_terminate() {
    let Some((_server, _workers, pool)) = setup("life", 2) else {
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    let r = pool
        .apply_async_with(square, 5, move |v| tx.send(*v).unwrap(), |_| {})
        .unwrap();
    assert_eq!(r.get_timeout(BOUND).unwrap(), 25);
    assert_eq!(rx.recv_timeout(BOUND).unwrap(), 25);
    let m = pool
        .map_async_with(
            square,
            1..=4u64,
            None,
            move |v: &Vec<u64>| tx2.send(v.iter().sum()).unwrap(),
            |_| {},
        )
        .unwrap();
    assert_eq!(m.get_timeout(BOUND).unwrap(), [1, 4, 9, 16]);
    assert_eq!(rx.recv_timeout(BOUND).unwrap(), 30);
    assert!(matches!(pool.join(), Err(PoolError::StillRunning)));
    let last = pool.map_async(square, 0..100u64, Some(1)).unwrap();
    pool.close();
    assert!(matches!(pool.apply(square, 1), Err(PoolError::Closed)));
    pool.join().unwrap();
    assert!(last.ready(), "join returns after every answer");
    assert_eq!(last.get().unwrap().len(), 100);
    pool.terminate();
}

#[test]
fn no_workers_for_this_build_is_a_clear_error() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let t = std::time::Instant::now();
    let e = Pool::builder()
        .redis(server.url(), cluster("none"))
        .discover_timeout(Duration::from_millis(300))
        .build()
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(10));
    match &e {
        PoolError::NoWorkers { others, .. } => assert_eq!(*others, 0),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("no workers for this build"), "{e}");
}

#[test]
fn invalid_settings_are_errors() {
    for b in [
        Pool::builder().redis("redis://127.0.0.1:1", "a{b}"),
        Pool::builder()
            .redis("redis://127.0.0.1:1", "x")
            .maxtasksperchild(3),
        Pool::builder()
            .redis("redis://127.0.0.1:1", "x")
            .max_deliveries(0),
        Pool::builder().max_deliveries(2),
    ] {
        assert!(matches!(b.build(), Err(PoolError::InvalidArgument(_))));
    }
    // Nothing listens there: a start error, not a hang.
    let e = Pool::builder()
        .redis("redis://127.0.0.1:1", "x")
        .processes(1)
        .build()
        .unwrap_err();
    assert!(matches!(e, PoolError::Start(_)), "{e:?}");
}
