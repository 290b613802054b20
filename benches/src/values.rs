//! The shared-value workloads: `value_contended` and `array_fill` — the same as
//! `python_baseline.py`'s, with its sizes.

use std::time::Instant;

use multiproc::{Process, StartMethod};
use multiproc_shm::{Array, Value};

use crate::{report, Opts, Res};

/// Processes incrementing the shared value, as in Python's baseline.
const PROCS: usize = 2;

/// Python's `add_many`: `n` increments, each under the value's lock.
fn add_many((v, n): (Value<i64>, usize)) {
    for _ in 0..n {
        *v.lock() += 1;
    }
}

/// Python's `fill_array`: fill the whole array with 1s.
fn fill_array(a: Array<u8>) {
    a.lock().fill(1);
}

pub(crate) fn run(opts: &Opts) -> Res {
    let q = if opts.quick { 10 } else { 1 };

    if opts.want("value_contended") {
        let n = 50_000 / q;
        let v = Value::new(0i64)?;
        let ps: Vec<_> = (0..PROCS)
            .map(|_| Process::new(add_many, (v.clone(), n)).start_method(StartMethod::Spawn))
            .collect();
        let t = Instant::now();
        for p in &ps {
            p.start()?;
        }
        for p in &ps {
            let code = p.join()?;
            if code != 0 {
                return Err(format!("value_contended: a child exited with {code}").into());
            }
        }
        let t = t.elapsed();
        let ok = v.get() == (PROCS * n) as i64;
        report(
            "value_contended",
            (PROCS * n) as f64 / t.as_secs_f64(),
            &format!("locked increments/s ({PROCS} procs, correct={ok})"),
        );
    }

    if opts.want("array_fill") {
        let size = (256 << 20) / q;
        let a = Array::<u8>::new(size)?;
        let p = Process::new(fill_array, a.clone()).start_method(StartMethod::Spawn);
        let t = Instant::now();
        p.start()?;
        let code = p.join()?;
        let t = t.elapsed();
        if code != 0 {
            return Err(format!("array_fill: the child exited with {code}").into());
        }
        let ok = a.get(0)? == 1 && a.get(size - 1)? == 1;
        report(
            "array_fill",
            size as f64 / t.as_secs_f64() / 1e6,
            &format!(
                "MB/s (child fills shared Array, incl. start; pages backed at creation, as CPython's are zero-filled; ok={ok})"
            ),
        );
    }
    Ok(())
}
