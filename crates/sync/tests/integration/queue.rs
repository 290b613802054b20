//! Queues between processes.

use std::time::{Duration, Instant};

use crate::bounded::{within, JoinBounded, BOUND};
use multiproc_pickle::Bytes;
use multiproc_process::Process;
use multiproc_sync::{Event, JoinableQueue, Queue, QueueError, SimpleQueue};

const STOP: u64 = u64::MAX;
const PER_PRODUCER: u64 = 500_000;

fn produce((q, id): (Queue<u64>, u64)) {
    for i in 0..PER_PRODUCER {
        q.put(id << 32 | i).unwrap();
    }
}

/// Take items until STOP; report (count, sum, whether each producer's items came in order).
fn consume((q, out): (Queue<u64>, Queue<(u64, u64, bool)>)) {
    let (mut count, mut sum, mut ordered) = (0u64, 0u64, true);
    let mut last = [None::<u64>; 2];
    loop {
        let v = q.get_timeout(BOUND).unwrap();
        if v == STOP {
            break;
        }
        let (id, i) = ((v >> 32) as usize, v & 0xffff_ffff);
        if last[id].is_some_and(|l| l >= i) {
            ordered = false;
        }
        last[id] = Some(i);
        count += 1;
        sum = sum.wrapping_add(v);
    }
    out.put((count, sum, ordered)).unwrap();
}

#[test]
fn a_million_items_from_two_producers_to_two_consumers_none_lost_or_duplicated() {
    let q: Queue<u64> = Queue::new().unwrap();
    let out: Queue<(u64, u64, bool)> = Queue::new().unwrap();
    let consumers: Vec<Process> = (0..2)
        .map(|_| Process::new(consume, (q.clone(), out.clone())))
        .collect();
    let producers: Vec<Process> = (0..2)
        .map(|id| Process::new(produce, (q.clone(), id)))
        .collect();
    for p in consumers.iter().chain(&producers) {
        p.start().unwrap();
    }
    for p in &producers {
        assert_eq!(p.join_bounded(), 0);
    }
    q.put(STOP).unwrap();
    q.put(STOP).unwrap();
    let (mut count, mut sum) = (0, 0u64);
    for p in &consumers {
        let (c, s, ordered) = out.get_timeout(Duration::from_secs(120)).unwrap();
        assert!(ordered, "per-producer FIFO");
        count += c;
        sum = sum.wrapping_add(s);
        let _ = p;
    }
    for p in &consumers {
        assert_eq!(p.join_bounded(), 0);
    }
    let expected: u64 = (0..2u64)
        .flat_map(|id| (0..PER_PRODUCER).map(move |i| id << 32 | i))
        .fold(0u64, u64::wrapping_add);
    assert_eq!(count, 2 * PER_PRODUCER);
    assert_eq!(sum, expected);
    assert!(q.is_empty());
}

#[test]
fn maxsize_blocks_and_full_empty_time_out_neither_early_nor_much_late() {
    let q: Queue<u32> = Queue::with_maxsize(2).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert!(q.is_full());
    let t = Instant::now();
    let e = q.put_timeout(3, Duration::from_millis(150)).unwrap_err();
    let waited = t.elapsed();
    assert_eq!((e.error, e.value), (QueueError::Full, 3));
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(q.get_timeout(BOUND).unwrap(), 1);
    q.put_timeout(3, Duration::from_secs(5)).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(
        (q.get_timeout(BOUND).unwrap(), q.get_timeout(BOUND).unwrap()),
        (2, 3)
    );
    let t = Instant::now();
    assert_eq!(
        q.get_timeout(Duration::from_millis(150)),
        Err(QueueError::Empty)
    );
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(q.try_get(), Err(QueueError::Empty));
}

#[test]
fn a_closed_queue_refuses_puts_and_drains_then_refuses_gets() {
    let q: Queue<u8> = Queue::new().unwrap();
    q.put(1).unwrap();
    q.close();
    assert!(q.is_closed());
    assert_eq!(q.put(2).unwrap_err().error, QueueError::Closed);
    assert_eq!(q.get_timeout(BOUND).unwrap(), 1);
    assert_eq!(q.get(), Err(QueueError::Closed));
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

#[test]
fn an_unserializable_value_fails_at_put_in_the_caller() {
    let q: Queue<NoSer> = Queue::new().unwrap();
    let e = q.put(NoSer).unwrap_err();
    assert!(matches!(e.error, QueueError::Encode(_)), "{:?}", e.error);
    assert!(q.is_empty());
}

#[test]
fn a_value_owning_handles_is_refused_at_put_with_a_reason() {
    let q: Queue<Queue<u8>> = Queue::new().unwrap();
    let e = q.put(Queue::new().unwrap()).unwrap_err();
    assert!(
        matches!(e.error, QueueError::CarriesHandles),
        "{:?}",
        e.error
    );
    assert!(e.error.to_string().contains("Connection"));
    let e = q.put_ref(&Queue::new().unwrap()).unwrap_err();
    assert!(matches!(e, QueueError::CarriesHandles), "{e:?}");
    assert!(q.is_empty());
}

fn put_and_leave((q, n): (Queue<u32>, u32)) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

#[test]
fn a_producer_exits_before_anyone_reads_and_nothing_is_lost() {
    let q: Queue<u32> = Queue::new().unwrap();
    let p = Process::new(put_and_leave, (q.clone(), 10_000));
    p.start().unwrap();
    assert_eq!(p.join_bounded(), 0, "no waiting for a consumer");
    assert_eq!(q.len(), 10_000);
    for i in 0..10_000 {
        assert_eq!(q.try_get().unwrap(), i);
    }
}

fn work_and_mark_done(q: JoinableQueue<u32>) {
    while let Ok(x) = q.get_timeout(Duration::from_secs(20)) {
        if x == u32::MAX {
            q.task_done().unwrap();
            break;
        }
        q.task_done().unwrap();
    }
}

#[test]
fn joinable_queue_join_across_processes() {
    let q: JoinableQueue<u32> = JoinableQueue::new().unwrap();
    for i in 0..100 {
        q.put(i).unwrap();
    }
    q.put(u32::MAX).unwrap();
    let p = Process::new(work_and_mark_done, q.clone());
    p.start().unwrap();
    assert!(q.join_timeout(Duration::from_secs(60)));
    assert_eq!(p.join_bounded(), 0);
    assert_eq!(q.task_done(), Err(QueueError::TooManyTaskDone));
}

fn checksum(b: &[u8]) -> u64 {
    b.iter().enumerate().fold(0u64, |acc, (i, &x)| {
        acc.wrapping_mul(31).wrapping_add(x as u64 ^ i as u64)
    })
}

fn echo_checksums((inq, outq, n): (Queue<Bytes>, Queue<(usize, u64)>, usize)) {
    for _ in 0..n {
        let b = inq.get_timeout(BOUND).unwrap();
        outq.put((b.0.len(), checksum(&b.0))).unwrap();
    }
}

#[test]
fn big_messages_and_messages_larger_than_the_ring_arrive_intact() {
    let inq: Queue<Bytes> = Queue::with_capacity(0, 1 << 20).unwrap(); // 1 MiB ring
    let outq: Queue<(usize, u64)> = Queue::new().unwrap();
    let sizes = [0usize, 100, (1 << 20) - 100, 4 << 20, 9 << 20];
    let p = Process::new(echo_checksums, (inq.clone(), outq.clone(), sizes.len()));
    p.start().unwrap();
    for &n in &sizes {
        let msg: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        let sum = checksum(&msg);
        inq.put(Bytes(msg)).unwrap();
        assert_eq!(outq.get_timeout(Duration::from_secs(60)).unwrap(), (n, sum));
    }
    assert_eq!(p.join_bounded(), 0);
}

fn reply_doubled((q, r): (Queue<u32>, SimpleQueue<u32>)) {
    let x = q.get_timeout(BOUND).unwrap();
    r.put(x * 2).unwrap();
}

#[test]
fn queues_reach_a_child_under_every_start_method() {
    for m in crate::support::METHODS {
        let q: Queue<u32> = Queue::new().unwrap();
        let r: SimpleQueue<u32> = SimpleQueue::new().unwrap();
        let p = Process::new(reply_doubled, (q.clone(), r.clone())).start_method(m);
        p.start().unwrap();
        q.put(21).unwrap();
        let r2 = r.clone();
        assert_eq!(within(move || r2.get().unwrap()), 42, "{m:?}");
        assert_eq!(p.join_bounded(), 0, "{m:?}");
    }
}

fn wait_for_an_item((q, ready): (Queue<u32>, Event)) {
    ready.set();
    let _ = q.get(); // blocks, holding the consumers' lock, until killed
}

#[test]
fn a_consumer_killed_while_waiting_does_not_hang_the_others() {
    let q: Queue<u32> = Queue::new().unwrap();
    let ready = Event::new().unwrap();
    let p = Process::new(wait_for_an_item, (q.clone(), ready.clone()));
    p.start().unwrap();
    assert!(ready.wait_timeout(Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(50));
    p.kill().unwrap();
    assert_eq!(p.join_bounded(), crate::support::KILLED);
    q.put(5).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(10)), Ok(5));
}

/// Put `n` messages `[id][i][filler...]`, each given in three parts.
fn put_parts((q, id, n): (multiproc_sync::ByteQueue, u8, u32)) {
    for i in 0..n {
        let filler = vec![id; (i % 300) as usize];
        q.put_parts(&[&[id], &i.to_le_bytes(), &filler]).unwrap();
    }
}

#[test]
fn byte_queue_messages_in_parts_cross_processes_whole_and_in_order() {
    let q = multiproc_sync::ByteQueue::with_capacity(16 << 10).unwrap();
    let n = 20_000u32;
    let ps: Vec<Process> = crate::support::METHODS
        .into_iter()
        .cycle()
        .take(2)
        .enumerate()
        .map(|(id, m)| Process::new(put_parts, (q.clone(), id as u8, n)).start_method(m))
        .collect();
    for p in &ps {
        p.start().unwrap();
    }
    let mut next = [0u32; 2];
    for _ in 0..2 * n {
        let (id, i) = q
            .get_with(Some(Duration::from_secs(20)), |m| {
                let id = m[0];
                let i = u32::from_le_bytes(m[1..5].try_into().unwrap());
                assert_eq!(m.len(), 5 + (i % 300) as usize);
                assert!(m[5..].iter().all(|&b| b == id), "a torn message");
                (id as usize, i)
            })
            .unwrap();
        assert_eq!(i, next[id], "producer {id} out of order");
        next[id] += 1;
    }
    for p in &ps {
        assert_eq!(p.join_bounded(), 0);
    }
    assert_eq!(q.len(), 0);
    let t = Instant::now();
    assert_eq!(
        q.get_with_sleeping(Some(Duration::from_millis(30)), |m| m.len()),
        Err(QueueError::Empty)
    );
    assert!(t.elapsed() >= Duration::from_millis(30));
    q.close();
    assert_eq!(q.try_get_with(|m| m.len()), Err(QueueError::Closed));
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
#[serde(untagged)]
enum Untagged {
    Num(u32),
    Text(String),
}

/// A message postcard cannot decode fails at `put`, naming the attribute, in debug builds
/// (it used to be put, then fail in the process that took it).
#[cfg(debug_assertions)]
#[test]
fn an_untagged_enum_is_refused_at_put_not_at_get() {
    let q: Queue<Untagged> = Queue::new().unwrap();
    let err = q.put(Untagged::Text("x".into())).unwrap_err();
    assert!(
        matches!(&err.error, QueueError::Encode(m) if m.to_string().contains("untagged")),
        "{}",
        err.error
    );
    assert!(
        matches!(err.value, Untagged::Text(_)),
        "the value is given back"
    );
    assert!(q.is_empty(), "nothing was put");
    assert!(q.put_ref(&Untagged::Num(1)).is_err());
}
