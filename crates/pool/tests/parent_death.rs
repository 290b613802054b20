//! A pool's workers die with the process that owns the pool, even in the middle of a task.
//! (Unix only: the test kills processes with signals.)
#![cfg(unix)]

multiproc_process::test_support!();

use std::path::PathBuf;
use std::time::{Duration, Instant};

use multiproc_pool::Pool;
use multiproc_process::{Process, StartMethod};

/// A long task: say which worker runs it (in a file), then run for 30 s.
fn long_task(marker: PathBuf) -> u32 {
    let pid = std::process::id();
    std::fs::write(&marker, pid.to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(30));
    pid
}

/// The pool's owner: a pool of two, one long task, then wait to be killed.
fn own_a_pool((method, marker): (StartMethod, PathBuf)) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    let _running = pool.apply_async(long_task, marker);
    std::thread::sleep(Duration::from_secs(60));
}

/// Process `pid` is gone: reaped, a zombie, or its number reused by a process started later.
fn gone(pid: u32, started: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
            let fields: Vec<&str> = rest.split(' ').collect();
            // fields[0] is the state, fields[19] the start time
            fields[0] == "Z" || fields.get(19) != Some(&started)
        }
    }
}

fn start_time(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(19).unwrap().to_string()
}

#[test]
fn busy_workers_die_with_a_killed_pool_owner() {
    for &method in StartMethod::available() {
        let marker = std::env::temp_dir().join(format!(
            "multiproc-pool-owner-{}-{method:?}",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&marker);
        let owner = Process::new(own_a_pool, (method, marker.clone()));
        owner.start().unwrap();
        let t = Instant::now();
        let worker = loop {
            if let Some(pid) = std::fs::read_to_string(&marker)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
            {
                break pid;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{method:?}: no task ran"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let started = start_time(worker);
        owner.kill().unwrap();
        assert_eq!(
            owner.join_timeout(Duration::from_secs(30)).unwrap(),
            Some(-9)
        );
        let t = Instant::now();
        while !gone(worker, &started) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{method:?}: the busy worker {worker} outlived its pool's owner"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(&marker);
    }
}
