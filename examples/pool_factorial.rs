//! `Pool(4).map` of factorial over 1..=100: the first example most `Pool` users meet.
//!
//! ```python
//! from multiprocessing import Pool
//! import math
//!
//! if __name__ == '__main__':
//!     with Pool(4) as p:
//!         results = p.map(math.factorial, range(1, 101))
//!     print(f"completed {len(results)} computations")
//! ```
//!
//! Run it with `cargo run -p multiproc-examples --bin pool_factorial`.

use multiproc::Pool;

/// `n!` in decimal. The factorials grow past every machine integer (100! has 158 digits), so
/// they are computed on base-10⁹ limbs, least significant first.
fn factorial(n: u32) -> String {
    const BASE: u64 = 1_000_000_000;
    let mut limbs: Vec<u64> = vec![1];
    for k in 2..=u64::from(n) {
        let mut carry = 0;
        for limb in limbs.iter_mut() {
            let v = *limb * k + carry;
            *limb = v % BASE;
            carry = v / BASE;
        }
        while carry > 0 {
            limbs.push(carry % BASE);
            carry /= BASE;
        }
    }
    let mut out = limbs.last().expect("at least one limb").to_string();
    for limb in limbs.iter().rev().skip(1) {
        out.push_str(&format!("{limb:09}"));
    }
    out
}

#[multiproc::main]
fn main() -> Result<(), multiproc::PoolError> {
    let pool = Pool::new(4)?;
    let results = pool.map(factorial, 1..=100)?;
    println!("20! = {}", results[19]);
    println!("100! has {} digits", results[99].len());
    println!("completed {} computations", results.len());
    Ok(())
}
