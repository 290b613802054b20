//! First checks of the manager across real processes.

use multiproc::connection::Address;
use multiproc::managers::{DictProxy, ManagerError};
use multiproc::{Connection, Manager, Process, ProcessError, StartMethod};

multiproc::test_support!();

#[path = "../../process/tests/integration/bounded.rs"]
mod bounded;
use bounded::{JoinBounded, RecvBounded};

fn bump(d: DictProxy<String, u64>) {
    for _ in 0..100 {
        d.add("n".into(), 1).unwrap();
    }
}

#[test]
fn four_processes_add_without_losing_an_update() {
    for &method in StartMethod::available() {
        let m = Manager::builder().start_method(method).start().unwrap();
        let d = m.dict::<String, u64>().unwrap();
        let ps: Vec<Process> = (0..4)
            .map(|_| Process::new(bump, d.clone()).start_method(method))
            .collect();
        for p in &ps {
            p.start().unwrap();
        }
        for p in &ps {
            assert_eq!(p.join_bounded(), 0);
        }
        assert_eq!(d.get("n").unwrap(), Some(400), "{method:?}");
        m.shutdown().unwrap();
    }
}

fn nested_child(d: DictProxy<String, DictProxy<String, u32>>) {
    let inner = d.get("inner").unwrap().unwrap();
    inner.set("from child".into(), 7).unwrap();
}

#[test]
fn nested_proxies_are_the_same_object_everywhere() {
    let m = Manager::start().unwrap();
    let outer = m.dict::<String, DictProxy<String, u32>>().unwrap();
    outer.set("inner".into(), m.dict().unwrap()).unwrap();
    assert_eq!(m.object_count().unwrap(), 2);
    let p = Process::new(nested_child, outer.clone());
    p.start().unwrap();
    assert_eq!(p.join_bounded(), 0);
    let inner = outer.get("inner").unwrap().unwrap();
    assert_eq!(inner.get("from child").unwrap(), Some(7));
    drop(inner);
    outer.clear().unwrap();
    assert_eq!(m.object_count().unwrap(), 1);
    drop(outer);
    assert_eq!(m.object_count().unwrap(), 0);
}

fn connect_by_name((address, key, back): (String, Vec<u8>, Connection)) {
    let m = Manager::connect(address.as_str(), &key).unwrap();
    let d = m.dict::<String, u32>().unwrap();
    d.set("pid".into(), std::process::id()).unwrap();
    back.send(&d).unwrap();
}

#[test]
fn a_started_server_listens_on_a_local_address_that_other_processes_connect_to_by_name() {
    let m = Manager::start().unwrap();
    // a Unix socket (abstract on Linux), a named pipe on Windows: local clients only
    match m.address() {
        #[cfg(unix)]
        Address::Unix(_) => {}
        #[cfg(windows)]
        Address::Pipe(name) if name.starts_with(r"\\.\pipe\multiproc-manager-") => {}
        other => panic!("a started manager listens on {other}"),
    }
    // its text (a Unix socket's path as it is, with its leading NUL if abstract: CPython's
    // string) is an address again: a process that knows only it and the key connects
    let address = match m.address() {
        Address::Unix(path) => path.to_str().unwrap().to_string(),
        other => other.to_string(),
    };
    assert_eq!(&address.parse::<Address>().unwrap(), m.address());
    for &method in StartMethod::available() {
        let (mine, theirs) = multiproc::pipe(false).unwrap();
        let p = Process::new(
            connect_by_name,
            (address.clone(), m.authkey().to_vec(), theirs),
        )
        .start_method(method);
        p.start().unwrap();
        let d: DictProxy<String, u32> = mine.recv_bounded();
        let pid = p.pid().unwrap();
        assert_eq!(p.join_bounded(), 0, "{method:?}");
        assert_eq!(d.get("pid").unwrap(), Some(pid), "{method:?}");
    }
    // the wrong key is refused there too
    match Manager::connect(address.as_str(), b"not the key") {
        Err(ManagerError::Connect {
            source: ProcessError::Authentication(_),
            ..
        }) => {}
        other => panic!("a wrong key gave {other:?}"),
    }
    // and a second server cannot take the address while the first holds it
    let second = Manager::builder()
        .address(address.as_str())
        .unwrap()
        .start();
    assert!(second.is_err(), "{second:?}");
    let d = m.dict::<u8, u8>().unwrap();
    d.set(1, 1).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(1));
}
