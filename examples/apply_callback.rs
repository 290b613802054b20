//! `apply_async` with a callback (and an error callback), as in Python:
//!
//! ```python
//! results = []
//! def collect(r): results.append(r)
//! with Pool(4) as p:
//!     for i in range(10):
//!         p.apply_async(cube, (i,), callback=collect, error_callback=print)
//!     p.close(); p.join()
//! print(sorted(results))
//! ```
//!
//! Run it with `cargo run -p multiproc-examples --bin apply_callback`.

use std::sync::{Arc, Mutex};

use multiproc::Pool;

fn cube(x: i64) -> i64 {
    if x == 7 {
        panic!("7 is unlucky");
    }
    x * x * x
}

#[multiproc::main]
fn main() -> Result<(), multiproc::PoolError> {
    let results = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let pool = Pool::new(4)?;
    for i in 0..10 {
        let (ok, bad) = (results.clone(), errors.clone());
        // Callbacks run in this process, on the pool's result thread, as in Python; they get
        // the outcome, so the AsyncResult is not needed.
        let _ = pool.apply_async_with(
            cube,
            i,
            move |r| ok.lock().expect("not poisoned").push(*r),
            move |e| {
                bad.lock()
                    .expect("not poisoned")
                    .push(format!("task {i}: {e}"))
            },
        )?;
    }
    pool.close();
    pool.join()?;
    let mut results = results.lock().expect("not poisoned").clone();
    results.sort_unstable();
    println!("results: {results:?}");
    for e in errors.lock().expect("not poisoned").iter() {
        println!("error callback: {}", e.lines().next().unwrap_or_default());
    }
    Ok(())
}
