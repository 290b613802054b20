//! A crash-resistant pool: one task segfaults, another calls `abort`, the rest finish. In
//! Python the same program hangs forever (the pool waits for results from dead workers).
//!
//! Run it with `cargo run -p multiproc-examples --bin crash_resistant`.

use multiproc::Pool;

fn risky(x: u32) -> u32 {
    match x {
        3 => {
            // A real segmentation fault, as a buggy native library would cause.
            let p = std::hint::black_box(std::ptr::null_mut::<u32>());
            // SAFETY: deliberately unsound: writing through a null pointer kills this worker
            // process with SIGSEGV; nothing else shares its memory.
            unsafe { p.write_volatile(x) };
            x
        }
        5 => std::process::abort(),
        _ => x * 10,
    }
}

#[multiproc::main]
fn main() -> Result<(), multiproc::PoolError> {
    let pool = Pool::new(2)?;
    let outcomes = pool.map_each(risky, 0..8, Some(1))?;
    for (x, r) in outcomes.iter().enumerate() {
        match r {
            Ok(v) => println!("risky({x}) = {v}"),
            Err(e) => println!("risky({x}) failed: {e}"),
        }
    }
    let ok = outcomes.iter().filter(|r| r.is_ok()).count();
    println!(
        "{ok} of {} tasks finished; the pool is still usable:",
        outcomes.len()
    );
    println!("map(risky, [1, 2]) = {:?}", pool.map(risky, [1, 2])?);
    Ok(())
}
