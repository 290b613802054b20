//! Integration tests of multiproc-pool: real worker processes, crashing, hanging and panicking.
//! (How a worker is killed or crashes differs per platform: `support/platform.rs`.)

multiproc_process::test_support!();

#[path = "../../process/tests/integration/bounded.rs"]
mod bounded;
#[path = "support/platform.rs"]
mod platform;

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bounded::BOUND;
use multiproc_pool::{Pool, PoolError, ThreadPool};
use multiproc_process::StartMethod;
use platform::{ABORTED, KILLED, SEGFAULT};

fn square(x: u64) -> u64 {
    x * x
}

fn fail_on_13(x: u32) -> u32 {
    if x == 13 {
        panic!("unlucky {x}");
    }
    x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn pid_of(_: u32) -> u32 {
    std::process::id()
}

static INIT_RUNS: AtomicUsize = AtomicUsize::new(0);

fn init_worker(tag: String) {
    assert_eq!(tag, "hello");
    INIT_RUNS.fetch_add(1, Ordering::SeqCst);
}

fn init_count(_: u32) -> (u32, usize) {
    std::thread::sleep(Duration::from_millis(5));
    (std::process::id(), INIT_RUNS.load(Ordering::SeqCst))
}

fn crash(x: u32) -> u32 {
    match x {
        // (as an OOM kill)
        7 => platform::kill_self(),
        8 => std::process::abort(),
        _ => {}
    }
    x
}

struct NoSer;
impl serde::Serialize for NoSer {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("NoSer cannot be serialized"))
    }
}
impl<'de> serde::Deserialize<'de> for NoSer {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(NoSer)
    }
}

fn make_noser(x: u32) -> Result<u32, NoSerWrap> {
    if x == 2 {
        Err(NoSerWrap(NoSer))
    } else {
        Ok(x)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct NoSerWrap(NoSer);

impl std::fmt::Debug for NoSerWrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoSerWrap")
    }
}

#[test]
fn mapping_calls_equal_a_sequential_map() {
    let pool = Pool::new(2).unwrap();
    for n in [0u64, 1, 10, 100_000] {
        let expect: Vec<u64> = (0..n).map(square).collect();
        assert_eq!(pool.map(square, 0..n).unwrap(), expect, "map n={n}");
        for cs in [1usize, 3, 1000] {
            if n == 100_000 && cs < 1000 {
                continue;
            }
            assert_eq!(
                pool.map_chunked(square, 0..n, cs).unwrap(),
                expect,
                "n={n} cs={cs}"
            );
            assert_eq!(
                pool.map_async(square, 0..n, Some(cs))
                    .unwrap()
                    .get_timeout(BOUND)
                    .unwrap(),
                expect
            );
            let ordered: Vec<u64> = pool
                .imap(square, 0..n, cs)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(ordered, expect, "imap n={n} cs={cs}");
            let mut unordered: Vec<u64> = pool
                .imap_unordered(square, 0..n, cs)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            unordered.sort_unstable();
            let mut sorted = expect.clone();
            sorted.sort_unstable();
            assert_eq!(unordered, sorted, "imap_unordered n={n} cs={cs}");
        }
        assert_eq!(pool.starmap(square, 0..n).unwrap(), expect);
    }
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
}

/// An iterator whose exact size hint is wrong (a bug the pool must survive, not trust).
struct Liar {
    left: u64,
    claims: usize,
}

impl Iterator for Liar {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        self.left = self.left.checked_sub(1)?;
        Some(self.left)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.claims, Some(self.claims))
    }
}

#[test]
fn an_input_that_lies_about_its_length_is_mapped_whole() {
    let pool = Pool::new(2).unwrap();
    for (has, claims) in [(5, 1000), (1000, 5), (0, 7), (7, 0)] {
        let got = pool.map(square, Liar { left: has, claims }).unwrap();
        let want: Vec<u64> = (0..has).rev().map(square).collect();
        assert_eq!(got, want, "{has} items claiming {claims}");
    }
}

#[test]
fn an_error_propagates_and_the_others_complete() {
    let pool = Pool::new(2).unwrap();
    match pool.map(fail_on_13, 0..20) {
        Err(PoolError::Panic { message, backtrace }) => {
            assert_eq!(message, "unlucky 13");
            assert!(backtrace.contains("integration.rs"), "{backtrace}");
        }
        other => panic!("{other:?}"),
    }
    let each = pool.map_each(fail_on_13, 0..20, Some(1)).unwrap();
    assert_eq!(each.iter().filter(|r| r.is_err()).count(), 1);
    assert_eq!(*each[12].as_ref().unwrap(), 12);
    // the worker survived the panic: the pool goes on
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

#[test]
fn input_iterator_panic_propagates_to_the_caller() {
    let pool = Pool::new(1).unwrap();
    let input = (0..10u64).map(|x| if x == 5 { panic!("bad input") } else { x });
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.imap(square, input, 1)
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    }));
    assert!(caught.is_err());
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
}

/// A result twice the size of the argument, different from it: what crosses must be whole.
fn grow(v: Vec<u8>) -> Vec<u8> {
    v.iter().rev().chain(v.iter()).map(|b| b ^ 0x5a).collect()
}

#[test]
fn large_arguments_and_results_cross_whole() {
    // sizes around every threshold: replies inline in the shared inbox, on the worker's pipe
    // (over 64 KiB), and larger than the whole inbox (1 MiB) and a pipe's buffer
    let sizes = [0usize, 100, 40_000, 70_000, 600_000, 3 << 20, 5];
    let inputs: Vec<Vec<u8>> = sizes
        .iter()
        .map(|&n| (0..n).map(|i| (i * 7 + n) as u8).collect())
        .collect();
    let want: Vec<Vec<u8>> = inputs.iter().cloned().map(grow).collect();
    let pool = Pool::new(2).unwrap();
    assert!(pool.map_chunked(grow, inputs.clone(), 1).unwrap() == want);
    let mut got: Vec<Vec<u8>> = pool
        .imap_unordered(grow, inputs.clone(), 1)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    got.sort_by_key(Vec::len);
    let mut sorted = want.clone();
    sorted.sort_by_key(Vec::len);
    assert!(got == sorted);
    let threads = ThreadPool::new(2).unwrap();
    assert!(threads.map_chunked(grow, inputs, 2).unwrap() == want);
}

#[test]
fn a_worker_killed_while_idle_is_reaped_and_replaced_without_work() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    let victim = pool.pids()[1];
    platform::kill(victim);
    let t = Instant::now();
    while pool.pids().contains(&victim) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let pids = pool.pids();
    assert!(!pids.contains(&victim), "the dead worker was not replaced");
    assert_eq!(pids.len(), 2);
    assert!(!process_exists(victim), "the dead worker was not reaped");
    assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);
}

#[test]
fn a_worker_killed_while_idle_is_replaced_when_work_comes() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(square, 0..10u64).unwrap().len(), 10);
    let victim = pool.pids()[0];
    platform::kill(victim);
    std::thread::sleep(Duration::from_millis(50));
    let want: Vec<u64> = (0..1000u64).map(square).collect();
    assert_eq!(pool.map_chunked(square, 0..1000u64, 3).unwrap(), want);
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    assert!(!pool.pids().contains(&victim));
}

#[test]
fn many_workers_replying_at_once_lose_nothing() {
    // every reply of every worker goes through the one inbox: threads of one process and
    // processes contend for it
    let want: Vec<u64> = (0..10_000u64).map(square).collect();
    let threads = ThreadPool::new(8).unwrap();
    assert_eq!(threads.map_chunked(square, 0..10_000u64, 1).unwrap(), want);
    let procs = Pool::new(6).unwrap();
    let mut got: Vec<u64> = procs
        .imap_unordered(square, 0..10_000u64, 1)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn imap_reads_its_input_lazily() {
    let pool = Pool::new(2).unwrap();
    let pulled = Cell::new(0usize);
    let input = (0u64..).inspect(|_| pulled.set(pulled.get() + 1));
    let first: Vec<u64> = pool
        .imap(square, input, 2)
        .unwrap()
        .take(10)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, (0..10).map(square).collect::<Vec<_>>());
    // (an endless input: reading it whole would never return; the look-ahead is at most 128
    // chunks per worker)
    assert!(
        pulled.get() <= 10 + 2 * 128 * 2,
        "read {} items ahead of 10 consumed",
        pulled.get()
    );
}

fn byte_len(b: multiproc_pickle::Bytes) -> usize {
    b.0.len()
}

#[test]
fn imap_of_large_items_keeps_every_worker_busy_within_a_byte_budget() {
    let pool = Pool::new(2).unwrap();
    let pulled = Cell::new(0usize);
    let big = 9 << 20;
    let input = (0..100).map(|_| {
        pulled.set(pulled.get() + 1);
        multiproc_pickle::Bytes(vec![7u8; big])
    });
    let mut it = pool.imap(byte_len, input, 1).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), big);
    // two chunks per worker are read ahead whatever their size; beyond that, ~16 MiB
    assert!(
        (4..=5).contains(&pulled.get()),
        "read {} items of 9 MiB for one consumed",
        pulled.get()
    );
    assert_eq!(it.map(Result::unwrap).filter(|&n| n == big).count(), 99);
}

#[test]
fn get_with_timeout_then_success_and_callbacks() {
    let pool = Pool::new(1).unwrap();
    let r = pool.apply_async(sleep_ms, 300).unwrap();
    assert!(!r.ready());
    assert_eq!(r.successful(), None);
    assert!(matches!(
        r.get_timeout(Duration::from_millis(10)),
        Err(PoolError::Timeout)
    ));
    assert!(!r.wait_timeout(Duration::from_millis(1)));
    assert_eq!(r.get_timeout(BOUND).unwrap(), 300);
    assert_eq!(r.successful(), Some(true));

    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s1, s2) = (seen.clone(), seen.clone());
    let ok = pool
        .apply_async_with(
            square,
            5,
            move |v| s1.lock().unwrap().push(format!("ok {v}")),
            |_| {},
        )
        .unwrap();
    let bad = pool
        .apply_async_with(
            fail_on_13,
            13,
            |_| {},
            move |e| s2.lock().unwrap().push(format!("err {e}")),
        )
        .unwrap();
    assert_eq!(ok.get_timeout(BOUND).unwrap(), 25);
    assert!(bad.get_timeout(BOUND).is_err());
    assert_eq!(bad.successful(), Some(false));
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, ["err task panicked: unlucky 13", "ok 25"]);

    // map_async's callbacks: all results in order, or the first error
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s1, s2, s3) = (seen.clone(), seen.clone(), seen.clone());
    let all = pool
        .map_async_with(
            square,
            1..=4u64,
            Some(1),
            move |v: &Vec<u64>| s1.lock().unwrap().push(format!("ok {v:?}")),
            move |e| s2.lock().unwrap().push(format!("never {e}")),
        )
        .unwrap();
    let failing = pool
        .map_async_with(
            fail_on_13,
            10..=14u32,
            Some(2),
            |_| {},
            move |e| s3.lock().unwrap().push(format!("err {e}")),
        )
        .unwrap();
    assert_eq!(all.get_timeout(BOUND).unwrap(), [1, 4, 9, 16]);
    assert!(failing.get_timeout(BOUND).is_err());
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, ["err task panicked: unlucky 13", "ok [1, 4, 9, 16]"]);
}

#[test]
fn initializer_runs_once_per_worker() {
    let pool = Pool::builder()
        .processes(2)
        .initializer(init_worker, "hello".to_string())
        .build()
        .unwrap();
    let out = pool.map_chunked(init_count, 0..40, 1).unwrap();
    assert!(out.iter().all(|&(_, runs)| runs == 1), "{out:?}");
    let pids: std::collections::BTreeSet<u32> = out.iter().map(|&(p, _)| p).collect();
    assert!(!pids.is_empty() && pids.len() <= 2);
}

#[test]
fn maxtasksperchild_replaces_workers_and_loses_nothing() {
    let pool = Pool::builder()
        .processes(2)
        .maxtasksperchild(3)
        .build()
        .unwrap();
    let pids = pool.map_chunked(pid_of, 0..30, 1).unwrap();
    assert_eq!(pids.len(), 30);
    let distinct: std::collections::BTreeSet<u32> = pids.iter().copied().collect();
    assert!(
        distinct.len() >= 10,
        "30 tasks at 3 per worker need at least 10 workers, saw {}",
        distinct.len()
    );
}

#[test]
fn dying_workers_fail_only_their_task() {
    let pool = Pool::new(2).unwrap();
    let out = pool.map_each(crash, 0..12, Some(1)).unwrap();
    for (i, r) in out.iter().enumerate() {
        match i {
            7 => assert_eq!(*r, Err(PoolError::WorkerDied { exitcode: KILLED })),
            8 => assert_eq!(*r, Err(PoolError::WorkerDied { exitcode: ABORTED })),
            _ => assert_eq!(*r, Ok(i as u32)),
        }
    }
    assert_eq!(
        pool.map(square, 0..10).unwrap().len(),
        10,
        "the pool stays usable"
    );
}

#[test]
fn units_queued_behind_a_dying_task_are_run_elsewhere() {
    // One worker holds several small units at once (pipelining): when it dies on one, those
    // queued behind it never started and must run on its replacement, not fail.
    let pool = Pool::new(1).unwrap();
    let out = pool.map_each(crash, 0..20, Some(1)).unwrap();
    for (i, r) in out.iter().enumerate() {
        match i {
            7 => assert_eq!(*r, Err(PoolError::WorkerDied { exitcode: KILLED })),
            8 => assert_eq!(*r, Err(PoolError::WorkerDied { exitcode: ABORTED })),
            _ => assert_eq!(*r, Ok(i as u32)),
        }
    }
}

#[test]
fn a_timeout_on_one_worker_spares_the_units_queued_behind() {
    let pool = Pool::builder()
        .processes(1)
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let out = pool
        .map_each(sleep_ms, [10, 1_000_000, 20, 30], Some(1))
        .unwrap();
    assert_eq!(out, [Ok(10), Err(PoolError::TaskTimeout), Ok(20), Ok(30)]);
}

#[test]
fn a_task_that_never_returns_times_out() {
    let pool = Pool::builder()
        .processes(2)
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let out = pool
        .map_each(sleep_ms, [10, 1_000_000, 20], Some(1))
        .unwrap();
    assert_eq!(out[0], Ok(10));
    assert_eq!(out[1], Err(PoolError::TaskTimeout));
    assert_eq!(out[2], Ok(20));
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
}

#[test]
fn unserializable_result_fails_that_task_only() {
    let pool = Pool::new(1).unwrap();
    let out = pool.map_each(make_noser, 0..4, Some(1)).unwrap();
    assert!(
        matches!(out[2], Err(PoolError::WorkerSerialization(_))),
        "{:?}",
        out[2]
    );
    assert!(matches!(out[1], Ok(Ok(1))));
}

#[test]
fn terminate_is_prompt_and_leaves_no_children() {
    let pool = Pool::new(2).unwrap();
    let pids = pool.pids();
    assert_eq!(pids.len(), 2);
    let r = pool.map_async(sleep_ms, vec![60_000; 4], Some(1)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    pool.terminate();
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(r.get_timeout(BOUND), Err(PoolError::Terminated));
    assert!(matches!(pool.apply(square, 1), Err(PoolError::Terminated)));
    let live = multiproc_process::active_children();
    assert!(
        !live
            .iter()
            .any(|p| p.pid().is_some_and(|pid| pids.contains(&pid))),
        "{live:?}"
    );
    for pid in pids {
        assert!(!process_exists(pid), "worker {pid} still exists");
    }
}

fn process_exists(pid: u32) -> bool {
    platform::running(pid)
}

#[test]
fn close_then_join_and_invalid_arguments() {
    let pool = Pool::new(2).unwrap();
    let r = pool.map_async(square, 0..100, None).unwrap();
    assert!(matches!(pool.join(), Err(PoolError::StillRunning)));
    pool.close();
    assert!(matches!(pool.apply(square, 1), Err(PoolError::Closed)));
    pool.join().unwrap();
    assert_eq!(
        r.get_timeout(BOUND).unwrap().len(),
        100,
        "queued work finishes after close"
    );
    assert!(matches!(Pool::new(0), Err(PoolError::InvalidArgument(_))));
    assert!(matches!(
        Pool::builder().maxtasksperchild(0).build(),
        Err(PoolError::InvalidArgument(_))
    ));
    // (a thread pool has no task_timeout to misuse: its builder does not offer one)
    assert!(matches!(
        ThreadPool::builder().threads(0).build(),
        Err(PoolError::InvalidArgument(_))
    ));
    let p = Pool::new(1).unwrap();
    assert!(matches!(
        p.map_chunked(square, 0..3, 0),
        Err(PoolError::InvalidArgument(_))
    ));
}

#[test]
fn every_start_method() {
    for &m in StartMethod::available() {
        let pool = Pool::builder()
            .processes(2)
            .start_method(m)
            .build()
            .unwrap();
        assert_eq!(
            pool.map(square, 0..50).unwrap(),
            (0..50).map(square).collect::<Vec<_>>(),
            "{m:?}"
        );
        assert_eq!(
            pool.map_each(crash, [7, 1], Some(1)).unwrap()[1],
            Ok(1),
            "{m:?}"
        );
    }
}

#[test]
fn progress_is_reported() {
    let pool = Pool::new(2).unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c2 = calls.clone();
    let out = pool
        .map_with_progress(square, 0..40, Some(4), move |done, total| {
            c2.lock().unwrap().push((done, total))
        })
        .unwrap();
    assert_eq!(out.len(), 40);
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 10);
    assert_eq!(*calls.last().unwrap(), (40, 40));
}

// ---- scheduling: work goes to idle workers first ----

#[test]
fn lone_tasks_go_to_idle_workers_first() {
    // Four `apply_async` of a 500 ms nap on four workers run side by side: each lone unit goes
    // to an idle worker instead of queueing behind the first one (which took 2 s).
    let pool = Pool::new(4).unwrap();
    pool.map_chunked(square, 0..8, 1).unwrap(); // every worker up
    let t = Instant::now();
    let rs: Vec<_> = (0..4)
        .map(|_| pool.apply_async(sleep_ms, 500).unwrap())
        .collect();
    for r in rs {
        assert_eq!(r.get_timeout(Duration::from_secs(30)).unwrap(), 500);
    }
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(900),
        "4 naps of 500 ms on 4 workers took {took:?}"
    );
}

#[test]
fn a_short_task_after_a_long_one_does_not_wait_for_it() {
    let pool = Pool::new(2).unwrap();
    pool.map_chunked(square, 0..4, 1).unwrap();
    let long = pool.apply_async(sleep_ms, 3000).unwrap();
    let t = Instant::now();
    let short = pool.apply_async(sleep_ms, 10).unwrap();
    assert_eq!(short.get_timeout(Duration::from_secs(30)).unwrap(), 10);
    let took = t.elapsed();
    assert!(!long.ready(), "the long task should still run");
    assert!(
        took < Duration::from_millis(1500),
        "a 10 ms task behind a 3 s one took {took:?}"
    );
    assert_eq!(long.get_timeout(Duration::from_secs(30)).unwrap(), 3000);
}

#[test]
fn units_queued_behind_a_long_task_are_taken_back_by_an_idle_worker() {
    // A 3 s task, then twenty 20 ms ones, chunksize 1, on two workers: the first worker gets
    // a few short units pipelined behind the long one before anyone knows it is long. Once
    // the other worker has nothing left, it takes them back: every short task is done long
    // before the long one.
    let pool = Pool::new(2).unwrap();
    pool.map_chunked(square, 0..4, 1).unwrap();
    let mut items = vec![3000u64];
    items.extend(std::iter::repeat_n(20, 20));
    let t = Instant::now();
    let mut order = Vec::new();
    for r in pool.imap_unordered(sleep_ms, items, 1).unwrap() {
        order.push((r.unwrap(), t.elapsed()));
    }
    assert_eq!(order.len(), 21);
    let (last, _) = order[20];
    assert_eq!(last, 3000, "the long task finishes last: {order:?}");
    let (_, short_done) = order[19];
    assert!(
        short_done < Duration::from_millis(2000),
        "the short tasks should not wait for the long one: {order:?}"
    );
}

// ---- a crash costs its task, not its chunk ----

fn segfault_at_12345(x: u32) -> u32 {
    if x == 12_345 {
        platform::segfault_self();
    }
    x
}

/// Two killers close together (one chunk of the default size holds both).
fn kill_at_12345_and_abort_at_12400(x: u32) -> u32 {
    match x {
        12_345 => platform::kill_self(),
        12_400 => std::process::abort(),
        _ => {}
    }
    x
}

#[test]
fn a_crash_in_a_default_chunk_fails_only_its_item() {
    // 20 000 items on 2 workers: default chunks of 2 500. Before, the whole chunk failed.
    let pool = Pool::new(2).unwrap();
    let out = pool.map_each(segfault_at_12345, 0..20_000, None).unwrap();
    assert_eq!(out.len(), 20_000);
    for (i, r) in out.iter().enumerate() {
        match i {
            12_345 => assert_eq!(*r, Err(PoolError::WorkerDied { exitcode: SEGFAULT })),
            _ => assert_eq!(*r, Ok(i as u32), "item {i}"),
        }
    }
    // `map` reports that one error; the pool goes on
    assert_eq!(
        pool.map(segfault_at_12345, 12_000..13_000),
        Err(PoolError::WorkerDied { exitcode: SEGFAULT })
    );
    assert_eq!(
        pool.map(square, 0..1000).unwrap(),
        (0..1000u64).map(square).collect::<Vec<_>>()
    );
}

#[test]
fn two_killers_in_one_chunk_fail_only_themselves() {
    for chunk in [None, Some(20_000), Some(60)] {
        let pool = Pool::new(2).unwrap();
        let out = pool
            .map_each(kill_at_12345_and_abort_at_12400, 0..20_000, chunk)
            .unwrap();
        for (i, r) in out.iter().enumerate() {
            match i {
                12_345 => assert_eq!(*r, Err(PoolError::WorkerDied { exitcode: KILLED })),
                12_400 => assert_eq!(*r, Err(PoolError::WorkerDied { exitcode: ABORTED })),
                _ => assert_eq!(*r, Ok(i as u32), "item {i}, chunks {chunk:?}"),
            }
        }
        assert_eq!(
            pool.map(square, 0..100).unwrap().len(),
            100,
            "the pool goes on"
        );
    }
}

#[test]
fn imap_of_a_chunk_with_a_crash_yields_every_other_result() {
    let pool = Pool::new(2).unwrap();
    let out: Vec<Result<u32, PoolError>> = pool
        .imap(segfault_at_12345, 12_000..13_000, 500)
        .unwrap()
        .collect();
    assert_eq!(out.len(), 1000);
    for (i, r) in (12_000..).zip(&out) {
        match i {
            12_345 => assert_eq!(*r, Err(PoolError::WorkerDied { exitcode: SEGFAULT })),
            _ => assert_eq!(*r, Ok(i)),
        }
    }
}

// ---- a pool whose start fails leaves no zombies ----

/// The pids of this process's children (from `/proc`, zombies included).
#[cfg(unix)]
fn children_of_self() -> Vec<u32> {
    let me = std::process::id();
    let mut kids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me) {
            kids.push(pid);
        }
    }
    kids
}

#[cfg(unix)]
fn set_nofile(soft: libc::rlim_t, hard: libc::rlim_t) {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we pass.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// Runs in a child of the test (so the descriptor limit and the children are its own): starts
/// a pool of 6 under a descriptor limit raised one by one, so that starts fail at every worker
/// in turn, and checks after each failure that no worker started before the failing one is
/// left, alive or zombie, not even the child of the failing start (a `Process` whose start
/// fails after its child exists kills and reaps it).
/// (Unix: a descriptor limit, and zombies; Windows has neither.)
#[cfg(unix)]
fn start_fails_partway(_: ()) {
    drop(Pool::new(1).unwrap()); // whatever helpers a pool starts once are up now
    let known = children_of_self();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let mut failures = 0;
    for extra in 0..500 {
        let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as libc::rlim_t;
        set_nofile(open + extra, lim.rlim_max);
        let started = Pool::builder().processes(6).build();
        set_nofile(lim.rlim_cur, lim.rlim_max);
        match started {
            Err(_) => {
                failures += 1;
                let left: Vec<u32> = children_of_self()
                    .into_iter()
                    .filter(|p| !known.contains(p))
                    .collect();
                assert!(left.is_empty(), "limit +{extra}: workers left: {left:?}");
            }
            Ok(pool) => {
                drop(pool);
                assert!(failures > 6, "only {failures} failed starts");
                return;
            }
        }
    }
    panic!("no pool started under any limit");
}

#[cfg(unix)]
#[test]
fn a_pool_whose_start_fails_leaves_no_zombies() {
    let p = multiproc_process::Process::new(start_fails_partway, ());
    p.start().unwrap();
    let code = p.join_timeout(Duration::from_secs(120)).unwrap();
    if code.is_none() {
        let _ = p.kill();
        let _ = p.join_timeout(Duration::from_secs(10));
    }
    assert_eq!(code, Some(0), "the child's checks failed (see its stderr)");
}

/// A 5 ms task (long enough that a worker holds few of them at once: the rest wait in the
/// pool's queue), that kills its worker on 7.
#[cfg(unix)]
fn nap_or_die_at_7(x: u32) -> u32 {
    if x == 7 {
        platform::kill_self();
    }
    std::thread::sleep(Duration::from_millis(5));
    x
}

/// Runs in a child of the test (so the descriptor limit is its own): a pool of 2 maps with no
/// descriptor to spare, and one task kills its worker, whose replacement cannot start (no pipe):
/// the other worker runs everything else, only the killer fails. (The pool used to fail every
/// queued task with the start's error.) Once descriptors are back, the replacement starts.
#[cfg(unix)]
fn a_failed_replacement_leaves_the_work_to_the_others(_: ()) {
    let pool = Pool::new(2).unwrap();
    // (both workers up, and their units' times measured)
    pool.map_chunked(nap_or_die_at_7, 10..30, 1).unwrap();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as libc::rlim_t;
    set_nofile(open.saturating_sub(1), lim.rlim_max);
    let out = pool.map_each(nap_or_die_at_7, 0..40, Some(1));
    set_nofile(lim.rlim_cur, lim.rlim_max);
    let out = out.unwrap();
    for (i, r) in out.iter().enumerate() {
        match i {
            7 => assert_eq!(*r, Err(PoolError::WorkerDied { exitcode: KILLED })),
            _ => assert_eq!(*r, Ok(i as u32), "item {i}"),
        }
    }
    let before = pool.pids();
    let t = Instant::now();
    while pool.pids() == before {
        assert!(
            t.elapsed() < BOUND,
            "the worker was not replaced: {before:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(pool.pids().len(), 2);
    assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);

    // With no worker left, what is queued fails with the start's error instead of waiting.
    let pool = Pool::new(1).unwrap();
    pool.map_chunked(nap_or_die_at_7, 10..20, 1).unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as libc::rlim_t;
    set_nofile(open.saturating_sub(1), lim.rlim_max);
    let out = pool.map_each(nap_or_die_at_7, 0..20, Some(1));
    set_nofile(lim.rlim_cur, lim.rlim_max);
    let out = out.unwrap();
    assert_eq!(out[..7], (0..7).map(Ok).collect::<Vec<_>>());
    assert_eq!(out[7], Err(PoolError::WorkerDied { exitcode: KILLED }));
    for r in &out[8..] {
        assert!(
            matches!(r, Err(e @ PoolError::Start(_)) if e.io_error().and_then(std::io::Error::raw_os_error) == Some(libc::EMFILE)),
            "{r:?}"
        );
    }
    assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);
}

#[cfg(unix)]
#[test]
fn a_worker_that_cannot_be_replaced_leaves_its_work_to_the_others() {
    let p = multiproc_process::Process::new(a_failed_replacement_leaves_the_work_to_the_others, ());
    p.start().unwrap();
    let code = p.join_timeout(Duration::from_secs(120)).unwrap();
    if code.is_none() {
        let _ = p.kill();
        let _ = p.join_timeout(Duration::from_secs(10));
    }
    assert_eq!(code, Some(0), "the child's checks failed (see its stderr)");
}

fn my_name(_: u32) -> String {
    multiproc_process::current_process().name
}

/// Workers are named as Python's (`SpawnPoolWorker-N`): `PoolWorker-N`, N the process's own
/// number, so no two workers of a program share a name.
#[test]
fn workers_are_named_pool_workers() {
    let pool = Pool::new(2).unwrap();
    let mut names = pool.map_chunked(my_name, 0..8u32, 1).unwrap();
    names.sort();
    names.dedup();
    assert!(!names.is_empty());
    for n in &names {
        let number = n
            .strip_prefix("PoolWorker-")
            .unwrap_or_else(|| panic!("{n}"));
        assert!(number.parse::<u32>().is_ok(), "{n}");
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind")]
enum Tagged {
    Job { n: u32 },
}

fn tagged_n(t: Tagged) -> u32 {
    let Tagged::Job { n } = t;
    n
}

/// An argument type postcard cannot decode (internally tagged) fails in the caller of `map`,
/// naming the attribute, in debug builds; it used to fail in the worker.
#[cfg(debug_assertions)]
#[test]
fn map_refuses_an_argument_the_worker_could_not_decode() {
    let pool = Pool::new(1).unwrap();
    let err = pool.map(tagged_n, vec![Tagged::Job { n: 1 }]).unwrap_err();
    assert!(
        matches!(&err, PoolError::Serialization(m) if m.to_string().contains("tag")),
        "{err}"
    );
    assert_eq!(pool.map(square, vec![3]).unwrap(), [9], "the pool goes on");
}
