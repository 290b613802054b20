//! First checks of the manager across real processes.
// The manager runs on Unix today (Windows is still to come, with the process layer).
#![cfg(unix)]

use multiproc::managers::DictProxy;
use multiproc::{Manager, Process, StartMethod};

multiproc::test_support!();

#[path = "../../process/tests/integration/bounded.rs"]
mod bounded;
use bounded::JoinBounded;

fn bump(d: DictProxy<String, u64>) {
    for _ in 0..100 {
        d.add("n".into(), 1).unwrap();
    }
}

#[test]
fn four_processes_add_without_losing_an_update() {
    for method in [
        StartMethod::Spawn,
        StartMethod::Fork,
        StartMethod::Forkserver,
    ] {
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
