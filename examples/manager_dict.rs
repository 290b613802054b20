//! A dict on a manager's server, updated by four worker processes: each adds 1 to a shared
//! count a thousand times (`add` is one atomic step on the server, so no update is lost,
//! unlike Python's `d[k] += 1` through a proxy) and records its own total under its name. The
//! program prints the dict and checks the count is exact. Python's version:
//!
//! ```python
//! from multiprocessing import Manager, Process, Lock
//!
//! def work(d, lock, name):
//!     for _ in range(1000):
//!         with lock:                  # without it, d['count'] += 1 loses updates
//!             d['count'] += 1
//!     d[name] = 1000
//!
//! if __name__ == '__main__':
//!     with Manager() as m:
//!         d, lock = m.dict(count=0), m.Lock()
//!         ps = [Process(target=work, args=(d, lock, f'worker-{i}')) for i in range(4)]
//!         for p in ps: p.start()
//!         for p in ps: p.join()
//!         print(dict(d))
//! ```
//!
//! Run it with `cargo run -p multiproc-examples --bin manager_dict`.

use multiproc::managers::DictProxy;
use multiproc::{Manager, Process};

const WORKERS: u64 = 4;
const ADDS: u64 = 1000;

fn work(args: (DictProxy<String, u64>, u64)) {
    let (d, i) = args;
    for _ in 0..ADDS {
        d.add("count".into(), 1).expect("the manager is there");
    }
    d.set(format!("worker-{i}"), ADDS)
        .expect("the manager is there");
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let m = Manager::start()?;
    println!("manager server started, pid {}", m.server_pid());
    let d = m.dict_from([("count".to_string(), 0u64)])?;
    let ps: Vec<Process> = (0..WORKERS)
        .map(|i| Process::new(work, (d.clone(), i)))
        .collect();
    for p in &ps {
        p.start()?;
    }
    for p in &ps {
        let code = p.join()?;
        if code != 0 {
            return Err(format!("{p:?} exited with {code}").into());
        }
    }
    let mut items = d.items()?;
    items.sort();
    for (k, v) in &items {
        println!("{k:>9} = {v}");
    }
    let count = d.get("count")?.unwrap_or(0);
    let want = WORKERS * ADDS;
    if count != want || d.len()? != 1 + WORKERS as usize {
        return Err(format!("count {count}, expected {want}").into());
    }
    println!("{WORKERS} workers, {want} adds: the count is exact");
    m.shutdown()?;
    Ok(())
}
