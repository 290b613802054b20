//! A `SharedMemory` block written by one process and read by another that attaches by name,
//! as in Python's `multiprocessing.shared_memory` docs:
//!
//! ```python
//! shm_a = shared_memory.SharedMemory(create=True, size=10)
//! shm_a.buf[:4] = bytearray([22, 33, 44, 55])
//! shm_b = shared_memory.SharedMemory(shm_a.name)   # in another process
//! bytes(shm_b.buf[:5])  # b'\x16!,7\x00'
//! ```
//!
//! Names are compatible with CPython's: a Python process can attach to the name printed here.
//! The creator owns the block and removes it when done; if it were killed first, the resource
//! tracker would remove it.
//!
//! Run it with `cargo run -p multiproc-examples --bin shared_memory`.

use multiproc::shared_memory::SharedMemory;
use multiproc::Process;

/// The other process: attach by name, read, write back.
fn reader(name: String) {
    let shm = SharedMemory::attach(&name).expect("the block exists");
    let first = shm.read(0, 5).expect("in bounds");
    println!(
        "reader: attached to {name:?} ({} bytes), read {first:?}",
        shm.size()
    );
    shm.write(4, &[66]).expect("in bounds");
    // dropping an attached handle never removes the block
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shm = SharedMemory::create(None, 10)?;
    shm.write(0, &[22, 33, 44, 55])?;
    println!("creator: wrote [22, 33, 44, 55] into {:?}", shm.name());
    let p = Process::new(reader, shm.name().to_string());
    p.start()?;
    p.join()?;
    println!("creator: the reader left {:?}", shm.read(0, 5)?);
    let name = shm.name().to_string();
    drop(shm); // the creator unlinks
    println!(
        "creator: after drop, attach({name:?}) -> {:?}",
        SharedMemory::attach(&name).map(|_| ())
    );
    Ok(())
}
