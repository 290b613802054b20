//! A type of this program living on a manager's server (Python's `BaseManager.register`): an
//! `Inventory` of stock by item, whose `take` method fails, with its own typed error, when
//! there is not enough. Four worker processes take from it until it runs out; the program
//! prints what each got and checks that nothing was taken twice or lost. Python's version:
//!
//! ```python
//! from multiprocessing import Process
//! from multiprocessing.managers import BaseManager
//!
//! class Inventory:
//!     def __init__(self, stock): self.stock = dict(stock)
//!     def take(self, item, n):
//!         if self.stock.get(item, 0) < n: raise ValueError(f'only {self.stock.get(item, 0)}')
//!         self.stock[item] -= n
//!         return self.stock[item]
//!     def left(self): return dict(self.stock)
//!
//! class MyManager(BaseManager): pass
//! MyManager.register('Inventory', Inventory)
//!
//! def work(inv, got):
//!     n = 0
//!     while True:
//!         try: inv.take('bolts', 3); n += 3
//!         except ValueError: break
//!     got.put(n)
//! ```
//!
//! Run it with `cargo run -p multiproc-examples --bin manager_user_type`.

use std::collections::BTreeMap;

use multiproc::managers::{CallError, Managed, Method, Methods, UserProxy};
use multiproc::serde::{Deserialize, Serialize};
use multiproc::{Manager, Process};

/// Stock by item.
struct Inventory {
    stock: BTreeMap<String, u32>,
}

/// `take` asked for more than there is.
#[derive(Debug, Serialize, Deserialize)]
#[serde(crate = "multiproc::serde")]
struct NotEnough {
    item: String,
    left: u32,
    wanted: u32,
}

impl Inventory {
    /// Take `n` of an item; returns what is left.
    const TAKE: Method<Inventory, (String, u32), u32, NotEnough> = Method::new("take");
    /// The stock now.
    const LEFT: Method<Inventory, (), BTreeMap<String, u32>> = Method::new("left");
}

impl Managed for Inventory {
    const NAME: &'static str = "Inventory";
    type Init = BTreeMap<String, u32>;

    fn new(stock: BTreeMap<String, u32>) -> Inventory {
        Inventory { stock }
    }

    fn methods(m: &mut Methods<Inventory>) {
        m.fallible(Inventory::TAKE, |inv, (item, wanted)| {
            let left = inv.stock.get(&item).copied().unwrap_or(0);
            if left < wanted {
                return Err(NotEnough { item, left, wanted });
            }
            inv.stock.insert(item, left - wanted);
            Ok(left - wanted)
        });
        m.method(Inventory::LEFT, |inv, ()| inv.stock.clone());
    }
}

const BOLTS: u32 = 1000;
const WORKERS: usize = 4;
const PER_TAKE: u32 = 3;

/// Take bolts until there are not enough; report how many were taken.
fn work(args: (UserProxy<Inventory>, multiproc::Connection)) {
    let (inv, report) = args;
    let mut got = 0;
    loop {
        match inv.call_or_err(Inventory::TAKE, &("bolts".to_string(), PER_TAKE)) {
            Ok(_) => got += PER_TAKE,
            Err(CallError::Method(NotEnough { left, .. })) => {
                report.send(&(got, left)).expect("the parent is there");
                return;
            }
            Err(e) => panic!("the manager failed: {e}"),
        }
    }
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let m = Manager::builder().register::<Inventory>().start()?;
    let inv = m.make::<Inventory>(&BTreeMap::from([
        ("bolts".to_string(), BOLTS),
        ("nuts".to_string(), 10),
    ]))?;
    let mut ps = Vec::new();
    let mut reports = Vec::new();
    for _ in 0..WORKERS {
        let (rx, tx) = multiproc::pipe(false)?;
        let p = Process::new(work, (inv.clone(), tx));
        p.start()?;
        ps.push(p);
        reports.push(rx);
    }
    let mut total = 0;
    for (i, (p, rx)) in ps.iter().zip(&reports).enumerate() {
        let (got, left): (u32, u32) = rx.recv()?;
        println!("worker {i} took {got} bolts, then found only {left} left");
        total += got;
        if p.join()? != 0 {
            return Err(format!("worker {i} failed").into());
        }
    }
    let left = inv.call(Inventory::LEFT, &())?;
    println!("left on the server: {left:?}");
    if total + left["bolts"] != BOLTS || left["bolts"] >= PER_TAKE || left["nuts"] != 10 {
        return Err(format!("{total} taken and {left:?} left do not add up to {BOLTS}").into());
    }
    println!("{total} bolts taken in {PER_TAKE}s by {WORKERS} processes: none twice, none lost");
    m.shutdown()?;
    Ok(())
}
