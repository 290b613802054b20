//! The pool on Redis Streams, across real processes: a `redis-server` of the test's own on a
//! loopback port, workers that are this test binary in worker mode (`--multiproc-worker`).
//! Every test bounds its waits; leases are short so faults play out in seconds.

multiproc::test_support!();

#[path = "support/platform.rs"]
mod platform;
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
    let mut rc = server.conn();
    assert!(
        wait_until(BOUND, || registered(&mut rc, &c).len() >= jobs),
        "the workers did not register"
    );
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
    assert_eq!(
        pool.processes(),
        2,
        "discovered: the live workers of this build"
    );
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
        Pool::builder().authkey("k"),
        Pool::builder()
            .redis("redis://127.0.0.1:1", "x")
            .authkey(""),
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

/// `x * x` after 10 ms; the first run of item 5 writes its worker's pid to `path` and then
/// sleeps `hold_ms` (so the test can kill or stop that worker while it runs the item).
fn marked((x, path, hold_ms): (u64, String, u64)) -> u64 {
    if x == 5 {
        if let Ok(mut f) = std::fs::File::create_new(&path) {
            use std::io::Write;
            write!(f, "{}", std::process::id()).unwrap();
            drop(f);
            std::thread::sleep(Duration::from_millis(hold_ms));
        }
    }
    std::thread::sleep(Duration::from_millis(10));
    x * x
}

fn marker_path(name: &str) -> String {
    let p = std::env::temp_dir().join(format!("mp-redis-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p.to_string_lossy().into_owned()
}

/// The pid written to `path`, once it is there.
fn marked_pid(path: &str) -> u32 {
    let mut pid = 0;
    assert!(
        wait_until(BOUND, || {
            pid = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            pid > 0
        }),
        "item 5 never started"
    );
    pid
}

fn pending_count(c: &mut redis::Connection, cluster_name: &str) -> i64 {
    let v: redis::Value = redis::cmd("XPENDING")
        .arg(tasks_key(cluster_name))
        .arg("workers")
        .query(c)
        .unwrap();
    match v {
        redis::Value::Array(p) => match p[0] {
            redis::Value::Int(n) => n,
            _ => panic!("{p:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_worker_killed_mid_map_loses_nothing() {
    let Some((server, _workers, pool)) = setup("kill", 2) else {
        return;
    };
    let path = marker_path("kill");
    let items: Vec<(u64, String, u64)> = (0..40).map(|x| (x, path.clone(), 30_000)).collect();
    let r = pool.map_async(marked, items, Some(1)).unwrap();
    platform::kill(marked_pid(&path));
    let out = r.get_timeout(BOUND).unwrap();
    assert_eq!(out, (0..40u64).map(square).collect::<Vec<_>>());
    let stats = pool.redis_stats().unwrap();
    assert!(stats.redelivered >= 1, "{stats:?}");
    assert_eq!(stats.lost, 0, "{stats:?}");
    let mut c = server.conn();
    assert_eq!(pending_count(&mut c, &cluster("kill")), 0);
    let len: i64 = redis::cmd("XLEN")
        .arg(tasks_key(&cluster("kill")))
        .query(&mut c)
        .unwrap();
    assert_eq!(len, 0, "answered entries are deleted");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_worker_stopped_past_its_lease_then_resumed_gives_no_extra_result() {
    let Some((server, _workers, pool)) = setup("stop", 2) else {
        return;
    };
    let path = marker_path("stop");
    let items: Vec<(u64, String, u64)> = (0..30).map(|x| (x, path.clone(), 1_000)).collect();
    let out: Vec<u64> = std::thread::scope(|scope| {
        let h = scope.spawn(|| pool.map_each(marked, items, Some(1)).unwrap());
        let pid = marked_pid(&path);
        platform::suspend(pid);
        std::thread::sleep(Duration::from_millis(LEASE_MS * 4));
        platform::resume(pid);
        h.join().unwrap().into_iter().map(Result::unwrap).collect()
    });
    assert_eq!(
        out,
        (0..30u64).map(square).collect::<Vec<_>>(),
        "exactly N results"
    );
    // The resumed worker finishes item 5 late: it posts nothing (it lost the entry), or its
    // answer is dropped as a duplicate.
    std::thread::sleep(Duration::from_millis(1_500));
    let stats = pool.redis_stats().unwrap();
    assert!(stats.redelivered >= 1, "{stats:?}");
    let mut c = server.conn();
    assert_eq!(pending_count(&mut c, &cluster("stop")), 0);
    assert_eq!(pool.apply(square, 4).unwrap(), 16, "the pool goes on");
    let _ = std::fs::remove_file(&path);
}

fn poison(x: u32) -> u32 {
    if x == 3 {
        std::process::abort();
    }
    x + 1
}

#[test]
fn a_poison_task_is_worker_lost_after_max_deliveries_and_the_rest_is_fine() {
    let Some((server, _workers, pool)) = setup("poison", 2) else {
        return;
    };
    let each = pool.map_each(poison, 0..12u32, Some(4)).unwrap();
    for (i, r) in each.iter().enumerate() {
        if i == 3 {
            assert_eq!(r, &Err(PoolError::WorkerLost { deliveries: 3 }));
        } else {
            assert_eq!(r, &Ok(i as u32 + 1), "item {i}");
        }
    }
    let stats = pool.redis_stats().unwrap();
    assert_eq!(stats.lost, 2, "the chunk, then item 3 alone: {stats:?}");
    let mut c = server.conn();
    assert_eq!(pending_count(&mut c, &cluster("poison")), 0);
    assert_eq!(
        pool.apply(poison, 1).unwrap(),
        2,
        "the workers were restarted"
    );
}

#[test]
fn a_malformed_entry_is_dropped_and_workers_go_on() {
    let Some((server, _workers, pool)) = setup("malformed", 1) else {
        return;
    };
    let mut c = server.conn();
    let key = tasks_key(&cluster("malformed"));
    for fields in [
        vec![("x", b"y".to_vec())],
        vec![
            ("d", b"zz".to_vec()),
            ("s", b"1".to_vec()),
            ("c", b"junk".to_vec()),
        ],
        vec![
            ("d", b"00ff".to_vec()),
            ("s", b"no".to_vec()),
            ("c", vec![0xff; 64]),
        ],
    ] {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&key).arg("*");
        for (k, v) in fields {
            cmd.arg(k).arg(v);
        }
        cmd.query::<String>(&mut c).unwrap();
    }
    assert_eq!(pool.apply(square, 9).unwrap(), 81);
    assert!(wait_until(BOUND, || {
        redis::cmd("XLEN").arg(&key).query::<i64>(&mut c).unwrap() == 0
    }));
}

/// A task that leaves a file behind: `dir/i`.
fn touch((dir, i): (String, u32)) {
    std::fs::write(format!("{dir}/{i}"), b"ran").unwrap();
}

/// A driver in a child process: submits 20 `touch` tasks nobody runs yet, says so, and waits
/// to be killed.
fn orphan_driver((url, cluster_name, dir): (String, String, String)) {
    let pool = Pool::builder()
        .redis(url, cluster_name)
        .processes(1)
        .driver_ttl(Duration::from_millis(300))
        .build()
        .unwrap();
    let items: Vec<(String, u32)> = (0..20).map(|i| (dir.clone(), i)).collect();
    let _r = pool.map_async(touch, items, Some(1)).unwrap();
    std::fs::write(format!("{dir}/submitted"), b"").unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn an_orphaned_pools_tasks_are_skipped() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let c = cluster("orphan");
    let dir = std::env::temp_dir().join(format!("mp-redis-orphan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_string_lossy().into_owned();
    let p = multiproc::Process::new(orphan_driver, (server.url(), c.clone(), d.clone()));
    p.start().unwrap();
    assert!(wait_until(BOUND, || dir.join("submitted").exists()));
    p.kill().unwrap();
    p.join().unwrap();
    let mut rc = server.conn();
    let key = tasks_key(&c);
    assert_eq!(
        redis::cmd("XLEN").arg(&key).query::<i64>(&mut rc).unwrap(),
        20
    );
    // Past the dead driver's TTL, workers come and skip its tasks.
    std::thread::sleep(Duration::from_millis(600));
    let _workers = Workers::start(&server.url(), &c, 2, LEASE_MS);
    assert!(wait_until(BOUND, || {
        redis::cmd("XLEN").arg(&key).query::<i64>(&mut rc).unwrap() == 0
    }));
    let ran: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "submitted")
        .collect();
    assert!(ran.is_empty(), "tasks of a dead driver ran: {ran:?}");
    assert_eq!(pending_count(&mut rc, &c), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn imap_never_reads_more_than_its_window_ahead() {
    let Some((server, _workers, pool)) = setup("window", 2) else {
        return;
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let pulled = Arc::new(AtomicUsize::new(0));
    let p2 = pulled.clone();
    let input = (0u64..).inspect(move |_| {
        p2.fetch_add(1, Ordering::SeqCst);
    });
    // 2 workers, 16 chunks each: at most 32 chunks of 1 item read ahead (and one being read).
    let window = 2 * 16 + 1;
    let mut c = server.conn();
    let key = tasks_key(&cluster("window"));
    let mut it = pool.imap(square, input, 1).unwrap();
    for yielded in 1..=300u64 {
        assert_eq!(it.next().unwrap().unwrap(), (yielded - 1) * (yielded - 1));
        let ahead = pulled.load(Ordering::SeqCst) as u64 - yielded;
        assert!(ahead <= window, "{ahead} items read ahead after {yielded}");
        if yielded % 50 == 0 {
            let len: i64 = redis::cmd("XLEN").arg(&key).query(&mut c).unwrap();
            assert!(len as u64 <= window, "{len} entries in the stream");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A copy of this test binary whose build-id differs (or, without one, with a byte more at its
/// end, which its file's hash sees): another build, same code.
fn other_build() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut bytes = std::fs::read(&exe).unwrap();
    match multiproc::pickle::build_id() {
        Some(id) => {
            let at = bytes
                .windows(id.len())
                .position(|w| w == id)
                .expect("the build-id is in the file");
            for b in &mut bytes[at..at + id.len()] {
                *b ^= 0x5a;
            }
        }
        None => bytes.push(0),
    }
    let out = std::env::temp_dir().join(format!(
        "mp-redis-other-build-{}{}",
        std::process::id(),
        std::env::consts::EXE_SUFFIX
    ));
    std::fs::write(&out, bytes).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    out
}

#[test]
fn a_worker_of_another_build_gets_nothing() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let c = cluster("build");
    let exe = other_build();
    let _theirs = Workers::start_exe(&exe, &server.url(), &c, 1, LEASE_MS);
    let mut rc = server.conn();
    assert!(wait_until(BOUND, || registered(&mut rc, &c).len() == 1));
    let (build, _) = registered(&mut rc, &c)[0].clone();
    assert_ne!(build, format!("{:016x}", multiproc::pickle::fingerprint()));
    // Discovery: none of ours, one of another build.
    let e = Pool::builder()
        .redis(server.url(), &c)
        .discover_timeout(Duration::from_millis(300))
        .build()
        .unwrap_err();
    assert!(matches!(e, PoolError::NoWorkers { others: 1, .. }), "{e:?}");
    assert!(e.to_string().contains("1 for another build"), "{e}");
    // A task submitted anyway waits, unseen by the other build's worker.
    let pool = Pool::builder()
        .redis(server.url(), &c)
        .processes(1)
        .build()
        .unwrap();
    let r = pool.apply_async(square, 6).unwrap();
    assert!(matches!(
        r.get_timeout(Duration::from_millis(800)),
        Err(PoolError::Timeout)
    ));
    assert_eq!(pending_count(&mut rc, &c), 0, "no worker read it");
    let ours = Workers::start(&server.url(), &c, 1, LEASE_MS);
    assert_eq!(r.get_timeout(BOUND).unwrap(), 36);
    drop(ours);
    let _ = std::fs::remove_file(&exe);
}

#[test]
fn redis_killed_and_restarted_mid_map_the_map_completes() {
    let Some((mut server, _workers, pool)) = setup("restart", 2) else {
        return;
    };
    let path = marker_path("restart");
    let items: Vec<(u64, String, u64)> = (0..60).map(|x| (x, path.clone(), 0)).collect();
    let r = pool.map_async(marked, items, Some(1)).unwrap();
    let _ = marked_pid(&path);
    server.kill();
    std::thread::sleep(Duration::from_millis(300));
    server.restart();
    let out = r.get_timeout(BOUND).unwrap();
    assert_eq!(out, (0..60u64).map(square).collect::<Vec<_>>());
    let stats = pool.redis_stats().unwrap();
    assert!(stats.recoveries >= 1, "{stats:?}");
    assert!(stats.resubmitted >= 1, "{stats:?}");
    assert_eq!(pool.apply(square, 11).unwrap(), 121);
    let _ = std::fs::remove_file(&path);
}

fn big(n: usize) -> Vec<u8> {
    vec![7; n]
}

fn holds_lock(_: multiproc::Lock) -> u8 {
    1
}

#[test]
fn entry_sizes_are_bounded_both_ways_and_handles_do_not_travel() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let c = cluster("sizes");
    let exe = std::env::current_exe().unwrap();
    let _w = Workers::start_with(
        &exe,
        &server.url(),
        &c,
        1,
        LEASE_MS,
        &["--max-entry-bytes", "4096"],
        &[],
    );
    let pool = Pool::builder()
        .redis(server.url(), &c)
        .max_entry_bytes(2048)
        .discover_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // A chunk over the driver's limit is refused before it is sent.
    let e = pool
        .apply(square, 0)
        .map(|_| ())
        .and_then(|()| pool.map_chunked(big, vec![1usize; 3000], 3000).map(|_| ()));
    assert!(matches!(e, Err(PoolError::Serialization(_))), "{e:?}");
    // Results over the worker's limit fail their chunk, the worker goes on.
    match pool.apply(big, 10_000) {
        Err(PoolError::WorkerSerialization(why)) => {
            assert!(why.contains("over the entry limit"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(big, 100).unwrap().len(), 100);
    // OS handles cannot go to another host.
    let lock = multiproc::Lock::new().unwrap();
    assert!(matches!(
        pool.apply(holds_lock, lock),
        Err(PoolError::Serialization(_))
    ));
}

/// `rediss://` end to end (feature `redis-tls`; not part of CI, which builds without it): a
/// TLS-only `redis-server` with a throw-away self-signed certificate (made with `openssl`),
/// driver and workers over TLS (`#insecure`: the certificate is not in any trust store).
#[cfg(feature = "redis-tls")]
#[test]
fn tls_end_to_end() {
    use std::process::{Command, Stdio};
    let dir = std::env::temp_dir().join(format!("mp-redis-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .current_dir(&dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("NOTICE: openssl cannot make a certificate; skipping the TLS test");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args(["--tls-cert-file", "cert.pem", "--tls-key-file", "key.pem"])
        .args(["--tls-ca-cert-file", "cert.pem", "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("rediss://127.0.0.1:{port}/#insecure");
    let c = cluster("tls");
    let _w = Workers::start(&url, &c, 1, LEASE_MS);
    let pool = Pool::builder()
        .redis(&url, &c)
        .discover_timeout(Duration::from_secs(20))
        .build();
    let out = pool.and_then(|p| p.map(square, 0..50u64));
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.unwrap(), (0..50u64).map(square).collect::<Vec<_>>());
}

#[test]
fn worker_mode_restarts_a_killed_worker_and_leaves_on_sigterm() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let c = cluster("supervise");
    let mut workers = Workers::start(&server.url(), &c, 2, LEASE_MS);
    let mut rc = server.conn();
    assert!(wait_until(BOUND, || registered(&mut rc, &c).len() == 2));
    let (_, victim) = registered(&mut rc, &c)[0].clone();
    platform::kill(victim);
    // A replacement registers (the victim's registration expires after 3 leases).
    assert!(wait_until(BOUND, || {
        let live = registered(&mut rc, &c);
        live.len() == 2 && live.iter().all(|(_, pid)| *pid != victim)
    }));
    let status = workers.stop().unwrap();
    // (Wine cannot send Ctrl+Break without a console: the supervisor is killed there, and its
    // workers end with it, their registrations lapsing after 3 leases)
    if workers.asked {
        assert!(status.success(), "{status:?}");
    }
    assert!(
        wait_until(Duration::from_secs(5), || registered(&mut rc, &c)
            .is_empty()),
        "workers leave the set on SIGTERM"
    );
}

#[test]
fn worker_mode_refuses_bad_arguments_with_usage() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--multiproc-worker", "redis://127.0.0.1:1", "-j", "0"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("-j must be at least 1") && err.contains("usage:"),
        "{err}"
    );
}

/// The one key matching `pattern` (a test's own cluster has one of each kind).
fn only_key(c: &mut redis::Connection, pattern: &str) -> String {
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(c).unwrap();
    assert_eq!(keys.len(), 1, "{pattern}: {keys:?}");
    keys.into_iter().next().unwrap()
}

/// A stream entry's fields, in order.
type Fields = Vec<(String, Vec<u8>)>;

/// The entries of `stream`: `(id, fields)`.
fn entries(c: &mut redis::Connection, stream: &str) -> Vec<(String, Fields)> {
    let v: Vec<(String, Fields)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(c)
        .unwrap();
    v
}

fn xadd(c: &mut redis::Connection, stream: &str, fields: &[(String, Vec<u8>)]) {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (k, v) in fields {
        cmd.arg(k).arg(v.as_slice());
    }
    cmd.query::<String>(c).unwrap();
}

#[test]
fn with_an_authkey_forged_tasks_never_run_and_forged_answers_never_count() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let c = cluster("signed");
    const KEY: &str = "correct horse battery staple";
    let dir = std::env::temp_dir().join(format!("mp-redis-signed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_string_lossy().into_owned();
    // No worker yet: the task waits in the stream, where this test can forge copies of it.
    let pool = Pool::builder()
        .redis(server.url(), &c)
        .authkey(KEY)
        .processes(1)
        .build()
        .unwrap();
    let r = pool.apply_async(touch, (d.clone(), 1)).unwrap();
    let mut rc = server.conn();
    let tasks = only_key(&mut rc, &format!("mp:{{{c}}}:*:tasks"));
    assert!(
        tasks.contains('-'),
        "the key id is part of the build: {tasks}"
    );
    let results = only_key(&mut rc, &format!("mp:{{{c}}}:*:results:*"));
    let mut all = entries(&mut rc, &tasks);
    assert_eq!(all.len(), 1);
    let (id, real) = all.remove(0);
    assert!(
        real.iter().any(|(k, v)| k == "h" && v.len() == 32),
        "{real:?}"
    );
    let _: i64 = redis::cmd("XDEL")
        .arg(&tasks)
        .arg(&id)
        .query(&mut rc)
        .unwrap();
    // Forgeries: the signature changed by a bit, the signature dropped, and the real
    // signature on another sequence number.
    let mut flipped = real.clone();
    for (k, v) in &mut flipped {
        if k == "h" {
            v[0] ^= 1;
        }
    }
    let unsigned: Vec<_> = real.iter().filter(|(k, _)| k != "h").cloned().collect();
    let mut moved = real.clone();
    for (k, v) in &mut moved {
        if k == "s" {
            *v = b"1".to_vec();
        }
    }
    for f in [&flipped, &unsigned, &moved] {
        xadd(&mut rc, &tasks, f);
    }
    // A forged answer to sequence number 0, before any worker runs it.
    xadd(
        &mut rc,
        &results,
        &[
            ("s".into(), b"0".to_vec()),
            ("k".into(), b"r".to_vec()),
            ("n".into(), b"1".to_vec()),
            ("r".into(), b"forged".to_vec()),
            ("h".into(), vec![0; 32]),
        ],
    );
    // Workers with the key drop the forged tasks (and post nothing); workers without one
    // read another stream.
    let _unkeyed = Workers::start(&server.url(), &c, 1, LEASE_MS);
    let _keyed = Workers::start_with(
        &std::env::current_exe().unwrap(),
        &server.url(),
        &c,
        1,
        LEASE_MS,
        &[],
        &[("MULTIPROC_REDIS_AUTHKEY", KEY)],
    );
    assert!(wait_until(BOUND, || registered(&mut rc, &c).len() == 2));
    assert!(wait_until(BOUND, || {
        redis::cmd("XLEN")
            .arg(&tasks)
            .query::<i64>(&mut rc)
            .unwrap()
            == 0
    }));
    assert!(
        matches!(
            r.get_timeout(Duration::from_millis(300)),
            Err(PoolError::Timeout)
        ),
        "no answer from a forgery"
    );
    assert!(
        !dir.join("1").exists(),
        "a forged task ran (or the real one, deleted above)"
    );
    assert_eq!(pool.redis_stats().unwrap().rejected, 1);
    // The real entry, signed, runs.
    xadd(&mut rc, &tasks, &real);
    r.get_timeout(BOUND).unwrap();
    assert!(dir.join("1").exists());
    assert_eq!(
        pool.apply_async(square, 9)
            .unwrap()
            .get_timeout(BOUND)
            .unwrap(),
        81
    );
    // Discovery sees the unkeyed worker as another: a pool with a third key finds none.
    let e = Pool::builder()
        .redis(server.url(), &c)
        .authkey("another key")
        .discover_timeout(Duration::from_millis(300))
        .build()
        .unwrap_err();
    assert!(matches!(e, PoolError::NoWorkers { others: 2, .. }), "{e:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
