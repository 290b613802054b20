//! Items larger than a queue's ring: a producer may exit before they are read, nothing is lost
//! when producers or consumers are killed in the middle, and order is kept.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use multiproc_pickle::Bytes;
use multiproc_process::Process;
use multiproc_sync::{Event, Queue, QueueError};

use crate::queue_kills::Rng;

const MIB: usize = 1 << 20;

/// Children killed per test (fewer on Windows, where a start takes a spawn).
const KILLS: u64 = if cfg!(windows) { 20 } else { 150 };

/// `len` bytes, byte `j` being `seed + j % 251` (built by blocks: fast even unoptimized).
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    let block: Vec<u8> = (0..251u8).map(|k| seed.wrapping_add(k)).collect();
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let j = v.len() % 251;
        let n = (251 - j).min(len - v.len());
        v.extend_from_slice(&block[j..j + n]);
    }
    v
}

fn seed(tag: u64, i: u64) -> u8 {
    (tag.wrapping_mul(0x9e37_79b9) ^ i) as u8
}

/// An item `[tag: u64][i: u64][pattern...]` of `len` bytes, the pattern a function of the tag,
/// the index and the position: a torn, mixed or misplaced item shows.
fn item(tag: u64, i: u64, len: usize) -> Bytes {
    let mut v = pattern(seed(tag, i), len.max(16));
    v[..8].copy_from_slice(&tag.to_le_bytes());
    v[8..16].copy_from_slice(&i.to_le_bytes());
    Bytes(v)
}

/// The tag and index of an item, after checking that every byte is where `item` puts it.
fn check(b: &Bytes) -> (u64, u64) {
    assert!(b.0.len() >= 16, "an item of {} bytes", b.0.len());
    let tag = u64::from_le_bytes(b.0[..8].try_into().unwrap());
    let i = u64::from_le_bytes(b.0[8..16].try_into().unwrap());
    let expected = pattern(seed(tag, i), b.0.len());
    assert!(
        expected[16..] == b.0[16..],
        "item ({tag}, {i}) of {} bytes is torn",
        b.0.len()
    );
    (tag, i)
}

fn put_two_big_items_and_exit(q: Queue<Bytes>) {
    q.put(item(1, 0, 10 * MIB)).unwrap();
    q.put(item(1, 1, 100 * MIB)).unwrap();
}

#[test]
fn a_producer_of_items_larger_than_the_ring_exits_before_they_are_read() {
    for m in crate::support::METHODS {
        let q: Queue<Bytes> = Queue::new().unwrap(); // an 8 MiB ring
        let p = Process::new(put_two_big_items_and_exit, q.clone())
            .start_method(m)
            .daemon(true);
        p.start().unwrap();
        let code = p.join_timeout(Duration::from_secs(30)).unwrap();
        if code.is_none() {
            let _ = p.kill();
            let _ = p.join_timeout(Duration::from_secs(10));
            panic!("{m:?}: the producer is still alive, waiting for its items to be read");
        }
        assert_eq!(code, Some(0), "{m:?}");
        assert_eq!(q.len(), 2, "{m:?}");
        let a = q.get_timeout(Duration::from_secs(20)).unwrap();
        let b = q.get_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!((check(&a), a.0.len()), ((1, 0), 10 * MIB), "{m:?}");
        assert_eq!((check(&b), b.0.len()), ((1, 1), 100 * MIB), "{m:?}");
        assert!(q.is_empty());
    }
}

/// Bytes whose decoding, in a child process, takes a minute: a consumer that is killed is
/// certainly killed inside `get`.
struct Slow(Bytes);

impl serde::Serialize for Slow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Slow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = Bytes::deserialize(d)?;
        if multiproc_process::parent_process().is_some() {
            std::thread::sleep(Duration::from_secs(60));
        }
        Ok(Slow(b))
    }
}

fn get_slowly((q, started): (Queue<Slow>, Event)) {
    started.set();
    let _ = q.get_timeout(Duration::from_secs(60));
}

#[test]
fn a_consumer_killed_in_the_middle_of_a_big_get_leaves_the_item_for_the_next() {
    let q: Queue<Slow> = Queue::with_capacity(0, 1 << 20).unwrap(); // a 1 MiB ring
    let mut rng = Rng::new();
    // (in a thread: before the fix, a put larger than the ring waited for a reader)
    let putter = {
        let q = q.clone();
        std::thread::spawn(move || {
            q.put(Slow(item(7, 0, 3 * MIB))).map_err(|e| e.error)?;
            q.put(Slow(item(7, 1, 100))).map_err(|e| e.error)
        })
    };
    for _ in 0..20 {
        let started = Event::new().unwrap();
        let p = Process::new(get_slowly, (q.clone(), started.clone()))
            .start_method(crate::support::QUICK)
            .daemon(true);
        p.start().unwrap();
        assert!(started.wait_timeout(Duration::from_secs(20)));
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        p.kill().unwrap();
        assert_eq!(
            p.join_timeout(Duration::from_secs(20)).unwrap(),
            Some(crate::support::KILLED)
        );
    }
    let big = q.get_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!((check(&big.0), big.0 .0.len()), ((7, 0), 3 * MIB));
    let small = q.get_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(check(&small.0), (7, 1));
    assert!(putter.join().unwrap().is_ok());
    assert!(q.is_empty());
}

/// Producer `id` puts `n` items, cycling through small, ring-sized and larger-than-ring ones.
fn put_mixed((q, id, n): (Queue<Bytes>, u64, u64)) {
    const SIZES: [usize; 5] = [16, 300 << 10, 40, 1 << 20, 3 << 20];
    for i in 0..n {
        q.put(item(id, i, SIZES[(i + id) as usize % SIZES.len()]))
            .unwrap();
    }
}

#[test]
fn big_and_small_items_from_several_producers_keep_fifo_order() {
    let q: Queue<Bytes> = Queue::with_capacity(0, 1 << 20).unwrap(); // a 1 MiB ring
    let n = 40;
    let ps: Vec<Process> = crate::support::METHODS
        .into_iter()
        .cycle()
        .take(3)
        .enumerate()
        .map(|(id, m)| Process::new(put_mixed, (q.clone(), id as u64, n)).start_method(m))
        .collect();
    for p in &ps {
        p.start().unwrap();
    }
    let mut next = [0u64; 3];
    for _ in 0..3 * n {
        let b = q.get_timeout(Duration::from_secs(30)).unwrap();
        let (id, i) = check(&b);
        assert_eq!(i, next[id as usize], "producer {id} out of order");
        next[id as usize] += 1;
    }
    for p in &ps {
        assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
    }
    assert!(q.is_empty());
}

/// Put items larger than the ring, numbered from 0, for ever (until killed).
fn put_big_for_ever((q, tag, started): (Queue<Bytes>, u64, Event)) {
    started.set();
    for i in 0.. {
        let _ = q.put_timeout(item(tag, i, 100 << 10), Duration::from_secs(30));
    }
}

fn get_for_ever((q, started): (Queue<Bytes>, Event)) {
    started.set();
    loop {
        let _ = q.get_timeout(Duration::from_secs(30));
    }
}

#[test]
fn producers_killed_while_putting_big_items_leave_no_torn_or_stray_item() {
    let q: Queue<Bytes> = Queue::with_capacity(0, 64 << 10).unwrap(); // a 64 KiB ring
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let reader = {
        let (q, stop, seen) = (q.clone(), stop.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut last: Option<(u64, u64)> = None;
            loop {
                match q.get_timeout(Duration::from_millis(5)) {
                    Ok(b) => {
                        let (tag, i) = check(&b);
                        if let Some((lt, li)) = last {
                            assert!(tag > lt || (tag == lt && i == li + 1), "order");
                        }
                        last = Some((tag, i));
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(QueueError::Empty) if stop.load(Ordering::Relaxed) => {
                        return seen.load(Ordering::Relaxed)
                    }
                    Err(QueueError::Empty) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        })
    };
    let mut rng = Rng::new();
    for tag in 0..KILLS {
        let started = Event::new().unwrap();
        let p = Process::new(put_big_for_ever, (q.clone(), tag, started.clone()))
            .start_method(crate::support::QUICK)
            .daemon(true);
        p.start().unwrap();
        // (killed while it puts: a start takes longer than the window on Windows)
        assert!(started.wait_timeout(Duration::from_secs(20)));
        if tag == KILLS - 1 {
            // Items must have flowed for the kills to have met puts in the middle; a loaded
            // machine may kill every producer before its first whole item, so the last one
            // lives until one was read (at most 20 s) and then dies at a random point.
            crate::support::wait_until_moved(&seen);
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        p.kill().unwrap();
        assert!(p.join_timeout(Duration::from_secs(20)).unwrap().is_some());
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0, "no item was read in 20 s");
    assert!(q.is_empty());
    q.put(item(1000, 0, 200 << 10)).unwrap();
    q.put(item(1000, 1, 10)).unwrap();
    assert_eq!(
        check(&q.get_timeout(Duration::from_secs(5)).unwrap()),
        (1000, 0)
    );
    assert_eq!(
        check(&q.get_timeout(Duration::from_secs(5)).unwrap()),
        (1000, 1)
    );
}

#[test]
fn consumers_killed_while_getting_big_items_leave_the_rest_whole_and_in_order() {
    let q: Queue<Bytes> = Queue::with_capacity(0, 64 << 10).unwrap(); // a 64 KiB ring
    let stop = Arc::new(AtomicBool::new(false));
    let put = Arc::new(AtomicU64::new(0));
    let writer = {
        let (q, stop, put) = (q.clone(), stop.clone(), put.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if q.put_timeout(item(5, i, 100 << 10), Duration::from_millis(5))
                    .is_ok()
                {
                    i += 1;
                    put.store(i, Ordering::Relaxed);
                }
            }
            i
        })
    };
    let mut rng = Rng::new();
    for n in 0..KILLS {
        let started = Event::new().unwrap();
        let p = Process::new(get_for_ever, (q.clone(), started.clone()))
            .start_method(crate::support::QUICK)
            .daemon(true);
        p.start().unwrap();
        assert!(started.wait_timeout(Duration::from_secs(20)));
        if n == KILLS - 1 {
            // (as for the producers: the last consumer lives until a whole item went through)
            crate::support::wait_until_moved(&put);
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        p.kill().unwrap();
        assert!(p.join_timeout(Duration::from_secs(20)).unwrap().is_some());
    }
    stop.store(true, Ordering::Relaxed);
    let put = writer.join().unwrap();
    // what is left comes whole and in order
    let mut last = None;
    while let Ok(b) = q.try_get() {
        let (tag, i) = check(&b);
        assert_eq!(tag, 5);
        assert!(last.is_none_or(|l| i > l), "order");
        last = Some(i);
    }
    assert!(put > 0, "no item was put in 20 s");
    assert!(q.is_empty());
}
