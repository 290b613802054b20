//! Queues whose producers and consumers are SIGKILLed at random points, hundreds of times:
//! the counts (`qsize`, free slots, unfinished tasks) must stay those of what was published
//! and taken.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_process::Process;
use multiproc_sync::{Event, JoinableQueue, QueueError};

const MAXSIZE: u32 = 16;
/// Kills per test: a kill lands between two of the stores that matter only now and then
/// (fewer on Windows, where every start is a spawn, about 50 times slower than a fork).
const KILLS: usize = if cfg!(windows) { 40 } else { 1500 };

/// A small xorshift generator: random kill points without a dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(t | 1)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

type Args = (JoinableQueue<u64>, Event);

fn put_for_ever((q, started): Args) {
    started.set();
    let mut i = 0u64;
    loop {
        // (bounded: the test kills us long before)
        let _ = q.put_timeout(i, Duration::from_secs(30));
        i += 1;
    }
}

fn get_for_ever((q, started): Args) {
    started.set();
    loop {
        let _ = q.get_timeout(Duration::from_secs(30));
    }
}

/// Start `f(q)` from the forkserver (fast, so hundreds of kills take seconds, and the child is
/// forked from a single-threaded process: never with another test thread's lock held), let it
/// run a random moment (0 to 1 ms) after it started, SIGKILL it and reap it. Children are
/// daemons: a failed test does not leave the binary waiting for them at exit.
///
/// Before that moment, it waits (at most 20 s) until `moved` is not 0: the tests pass their
/// item count for the last kill only, so items flowed at least once even on a machine so
/// loaded that every other child was killed before its first whole put or get.
fn kill_at_random(f: fn(Args), q: &JoinableQueue<u64>, rng: &mut Rng, moved: Option<&AtomicU64>) {
    let started = Event::new().unwrap();
    let p = Process::new(f, (q.clone(), started.clone()))
        .start_method(crate::support::QUICK)
        .daemon(true);
    p.start().unwrap();
    if !started.wait_timeout(Duration::from_secs(20)) {
        not_started(&p);
    }
    if let Some(moved) = moved {
        crate::support::wait_until_moved(moved);
    }
    std::thread::sleep(Duration::from_micros(rng.below(1000)));
    p.kill().unwrap();
    let code = p.join_timeout(Duration::from_secs(20)).unwrap();
    assert!(code.is_some(), "a killed child did not end");
}

/// A child that did not start its task in time (seen once in about twenty whole-suite runs):
/// fail, saying what became of it: the machine's load average; where the kernel tells, where
/// the child was stuck (state, wait channel, system call and its arguments, descriptors); then
/// whether it lived, its exit code after a kill and its panic message.
fn not_started(p: &Process) -> ! {
    let pid = p.pid().expect("started");
    // (a machine swamped by other processes starves a child for that long too)
    let load = std::fs::read_to_string("/proc/loadavg");
    let mut at = format!("\n  load average: {}", load.unwrap_or_default().trim());
    for f in ["stat", "wchan", "syscall"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/{f}"));
        at.push_str(&format!(
            "\n  {f}: {}",
            text.unwrap_or_else(|e| e.to_string()).trim()
        ));
    }
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            let to = std::fs::read_link(e.path()).map(|t| t.display().to_string());
            at.push_str(&format!(
                "\n  fd {:?} -> {}",
                e.file_name(),
                to.unwrap_or_default()
            ));
        }
    }
    let alive = p.is_alive();
    let _ = p.kill();
    let code = p.join_timeout(Duration::from_secs(20));
    panic!(
        "{p:?} did not start its task within 20 s (alive then: {alive:?}; exit code after a kill: \
         {code:?}; panic message: {:?}); where it was:{at}",
        p.panic_message()
    );
}

/// A thread that takes items (and marks each done) until told to stop, counting them in
/// `taken`; how many it took.
fn draining_thread(
    q: &JoinableQueue<u64>,
    stop: &Arc<AtomicBool>,
    taken: &Arc<AtomicU64>,
) -> std::thread::JoinHandle<u64> {
    let (q, stop, taken) = (q.clone(), stop.clone(), taken.clone());
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if q.get_timeout(Duration::from_millis(5)).is_ok() {
                q.task_done().unwrap();
                taken.fetch_add(1, Ordering::Relaxed);
            }
        }
        taken.load(Ordering::Relaxed)
    })
}

/// `join`, bounded: a helper thread so a hang fails the test instead of stalling it.
fn join_within(q: &JoinableQueue<u64>, t: Duration) -> bool {
    let q = q.clone();
    let h = std::thread::spawn(move || q.join());
    let deadline = Instant::now() + t;
    while !h.is_finished() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    h.join().unwrap()
}

/// The queue is empty and every one of its `MAXSIZE` slots takes an item.
fn check_empty_and_every_slot_usable(q: &JoinableQueue<u64>) {
    assert_eq!(q.len(), 0, "qsize of an empty queue");
    assert!(q.is_empty());
    assert!(!q.is_full());
    assert_eq!(q.try_get(), Err(QueueError::Empty));
    for i in 0..MAXSIZE as u64 {
        if let Err(e) = q.try_put(i) {
            panic!("slot {i} of {MAXSIZE} refused: {:?}", e.error);
        }
    }
    assert!(q.is_full());
    assert_eq!(q.len(), MAXSIZE as usize);
    assert_eq!(q.try_put(99).map_err(|e| e.error), Err(QueueError::Full));
    for i in 0..MAXSIZE as u64 {
        assert_eq!(q.try_get(), Ok(i));
        q.task_done().unwrap();
    }
    assert!(q.is_empty());
}

#[test]
fn producers_killed_inside_put_leave_exact_counts() {
    let q: JoinableQueue<u64> = JoinableQueue::with_maxsize(MAXSIZE).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let taken = Arc::new(AtomicU64::new(0));
    let drain = draining_thread(&q, &stop, &taken);
    let mut rng = Rng::new();
    for k in 0..KILLS {
        let last = (k == KILLS - 1).then_some(&*taken);
        kill_at_random(put_for_ever, &q, &mut rng, last);
    }
    stop.store(true, Ordering::Relaxed);
    let taken = drain.join().unwrap();
    while q.try_get().is_ok() {
        q.task_done().unwrap();
    }
    assert!(taken > 0, "the producers put nothing");
    // every item published was taken and marked done: nothing is unfinished
    assert!(
        join_within(&q, Duration::from_secs(10)),
        "join() did not return"
    );
    assert_eq!(q.task_done(), Err(QueueError::TooManyTaskDone));
    check_empty_and_every_slot_usable(&q);
    assert!(join_within(&q, Duration::from_secs(10)));
}

#[test]
fn consumers_killed_inside_get_leave_exact_counts() {
    let q: JoinableQueue<u64> = JoinableQueue::with_maxsize(MAXSIZE).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let producer = {
        let (q, stop, got) = (q.clone(), stop.clone(), got.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if q.put_timeout(n, Duration::from_millis(5)).is_ok() {
                    n += 1;
                    // (once the ring is full, a put that succeeds follows a child's get)
                    if n > u64::from(MAXSIZE) {
                        got.store(n - u64::from(MAXSIZE), Ordering::Relaxed);
                    }
                }
            }
            n
        })
    };
    let mut rng = Rng::new();
    for k in 0..KILLS {
        let last = (k == KILLS - 1).then_some(&*got);
        kill_at_random(get_for_ever, &q, &mut rng, last);
    }
    stop.store(true, Ordering::Relaxed);
    let put = producer.join().unwrap();
    let mut last = None;
    while let Ok(x) = q.try_get() {
        assert!(last.is_none_or(|l| l < x), "FIFO");
        last = Some(x);
    }
    assert!(put > 0);
    check_empty_and_every_slot_usable(&q);
    // The killed consumers never marked anything done: exactly `put` tasks are unfinished.
    for i in 0..put {
        if q.task_done().is_err() {
            panic!("only {i} of {put} tasks were unfinished");
        }
    }
    assert_eq!(q.task_done(), Err(QueueError::TooManyTaskDone));
    assert!(
        join_within(&q, Duration::from_secs(10)),
        "join() did not return"
    );
}

fn get_and_mark_done_for_ever((q, started): Args) {
    started.set();
    loop {
        if q.get_timeout(Duration::from_secs(30)).is_ok() {
            let _ = q.task_done();
        }
    }
}

#[test]
fn producers_and_consumers_killed_together_leave_a_usable_queue() {
    let q: JoinableQueue<u64> = JoinableQueue::with_maxsize(MAXSIZE).unwrap();
    let mut rng = Rng::new();
    let mut consumer_kills = 0u64;
    for _ in 0..KILLS / 3 {
        // a producer and a consumer at work together, killed at random moments
        let mut ps = Vec::new();
        for f in [put_for_ever, get_and_mark_done_for_ever] {
            let started = Event::new().unwrap();
            let p = Process::new(f, (q.clone(), started.clone()))
                .start_method(crate::support::QUICK)
                .daemon(true);
            p.start().unwrap();
            if !started.wait_timeout(Duration::from_secs(20)) {
                not_started(&p);
            }
            ps.push(p);
        }
        if rng.below(2) == 0 {
            ps.swap(0, 1);
        }
        for p in &ps {
            std::thread::sleep(Duration::from_micros(rng.below(700)));
            p.kill().unwrap();
        }
        for p in &ps {
            let code = p.join_timeout(Duration::from_secs(20)).unwrap();
            assert!(code.is_some(), "a killed child did not end");
        }
        consumer_kills += 1;
    }
    while q.try_get().is_ok() {
        q.task_done().unwrap();
    }
    check_empty_and_every_slot_usable(&q);
    // Each killed consumer may have taken one item it never marked done (killed between its
    // `get` and its `task_done`), no more.
    let mut unfinished = 0;
    while q.task_done().is_ok() {
        unfinished += 1;
    }
    assert!(
        unfinished <= consumer_kills,
        "{unfinished} unfinished tasks after {consumer_kills} consumer kills"
    );
    assert!(
        join_within(&q, Duration::from_secs(10)),
        "join() did not return"
    );
}
