//! A producer and two consumers around a `Queue`, stopped by a sentinel per consumer: the
//! textbook pipeline.
//!
//! ```python
//! def producer(q, n):
//!     for i in range(n):
//!         q.put(i * i)
//!     for _ in range(CONSUMERS):
//!         q.put(None)           # the stop signal
//!
//! def consumer(q, results, name):
//!     total = 0
//!     while (item := q.get()) is not None:
//!         total += item
//!     results.put((name, total))
//! ```
//!
//! The producer exits as soon as it has put everything, while the consumers still work:
//! items live in shared memory, not in a feeder thread of the producer.
//!
//! Run it with `cargo run -p multiproc-examples --bin producer_consumer`.

use multiproc::{Process, Queue};

const CONSUMERS: usize = 2;
const ITEMS: u64 = 100_000;

fn producer((q, n): (Queue<Option<u64>>, u64)) {
    for i in 0..n {
        q.put(Some(i * i)).expect("the queue is open");
    }
    for _ in 0..CONSUMERS {
        q.put(None).expect("the queue is open"); // the stop signal
    }
    println!("producer: put {n} items and {CONSUMERS} stop signals; leaving");
}

/// What a consumer reports: its name, how many items it took, their sum.
type Report = (String, u64, u64);

fn consumer((q, results, name): (Queue<Option<u64>>, Queue<Report>, String)) {
    let (mut count, mut total) = (0u64, 0u64);
    while let Ok(Some(item)) = q.get() {
        count += 1;
        total += item;
    }
    results
        .put((name, count, total))
        .expect("the results queue is open");
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q: Queue<Option<u64>> = Queue::with_maxsize(1000)?;
    let results: Queue<Report> = Queue::new()?;
    let consumers: Vec<Process> = (0..CONSUMERS)
        .map(|k| {
            Process::new(
                consumer,
                (q.clone(), results.clone(), format!("consumer-{k}")),
            )
            .with_name(format!("consumer-{k}"))
        })
        .collect();
    for c in &consumers {
        c.start()?;
    }
    let p = Process::new(producer, (q.clone(), ITEMS)).with_name("producer");
    p.start()?;
    p.join()?;
    let mut grand = (0, 0);
    for _ in 0..CONSUMERS {
        let (name, count, total) = results.get()?;
        println!("{name}: got {count} items, sum {total}");
        grand = (grand.0 + count, grand.1 + total);
    }
    for c in &consumers {
        c.join()?;
    }
    let expected: u64 = (0..ITEMS).map(|i| i * i).sum();
    println!(
        "all consumers: {} items, sum {} (expected {ITEMS} and {expected})",
        grand.0, grand.1
    );
    Ok(())
}
