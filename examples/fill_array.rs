//! A child fills a shared array of floats with squares; the parent prints them. Python's
//! version:
//!
//! ```python
//! from multiprocessing import Process, Array
//!
//! def squares(arr):
//!     with arr.get_lock():
//!         for i in range(len(arr)):
//!             arr[i] = i * i
//!
//! if __name__ == '__main__':
//!     arr = Array('d', 10)
//!     p = Process(target=squares, args=(arr,))
//!     p.start()
//!     p.join()
//!     print(arr[:])
//! ```
//!
//! Run it with `cargo run -p multiproc-examples --bin fill_array`.

use multiproc::Process;
use multiproc_shm::Array;

/// Runs in the child: the guard derefs to `&mut [f64]`, straight into the shared memory.
fn squares(arr: Array<f64>) {
    let mut guard = arr.lock();
    for (i, x) in guard.iter_mut().enumerate() {
        *x = (i * i) as f64;
    }
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arr = Array::<f64>::new(10)?; // zero-filled
    let p = Process::new(squares, arr.clone());
    p.start()?;
    p.join()?;
    println!("{:?}", arr.to_vec());
    Ok(())
}
