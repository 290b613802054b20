//! The manager workloads: `manager_dict` (a child sets and gets small values of a managed dict
//! through its proxy, timed in the child) and `manager_remote` (the same from a client that
//! connected over loopback TCP with a key) — `python_baseline.py`'s, with its sizes.

use std::time::Instant;

use multiproc::managers::DictProxy;
use multiproc::{Manager, Process, StartMethod};

use crate::{report, Opts, Res};

/// Python's `dict_client`: `n` times `d[i % 1000] = i` then `d[i % 1000]`; sends the seconds
/// it took.
fn dict_client((d, n, out): (DictProxy<u64, u64>, u64, multiproc::Connection)) {
    let t = Instant::now();
    for i in 0..n {
        d.set(i % 1000, i).expect("set");
        let got = d.get(&(i % 1000)).expect("get");
        assert_eq!(got, Some(i));
    }
    out.send(&t.elapsed().as_secs_f64()).expect("report");
}

/// Python's `remote_client`: connects with the key, then as `dict_client`.
fn remote_client((address, key, n, out): (String, Vec<u8>, u64, multiproc::Connection)) {
    let m = Manager::connect(address.as_str(), &key).expect("connect");
    let d: DictProxy<u64, u64> = m.dict().expect("dict");
    dict_client((d, n, out));
}

pub(crate) fn run(opts: &Opts) -> Res {
    let q = if opts.quick { 10 } else { 1 };
    if opts.want("manager_dict") {
        let n = 5_000 / q;
        let m = Manager::start()?;
        let d = m.dict::<u64, u64>()?;
        let (here, there) = multiproc::Pipe(false)?;
        let p = Process::new(dict_client, (d, n, there)).start_method(StartMethod::Spawn);
        p.start()?;
        let t: f64 = here.recv()?;
        p.join()?;
        report(
            "manager_dict",
            2.0 * n as f64 / t,
            "proxy ops/s (set+get from a child, timed in the child)",
        );
    }
    if opts.want("manager_remote") {
        let n = 5_000 / q;
        let key = b"bench-key".to_vec();
        let m = Manager::serve("127.0.0.1:0", &key)?;
        let (here, there) = multiproc::Pipe(false)?;
        let p = Process::new(remote_client, (m.address().to_string(), key, n, there))
            .start_method(StartMethod::Spawn);
        p.start()?;
        let t: f64 = here.recv()?;
        p.join()?;
        report(
            "manager_remote",
            2.0 * n as f64 / t,
            "proxy ops/s (set+get over loopback TCP from a connected client)",
        );
    }
    Ok(())
}
