//! Named segments and the resource tracker across processes.

use std::time::{Duration, Instant};

use multiproc_process::{pipe, Connection, Process, StartMethod};
use multiproc_shm::{SharedMemory, ShmError};

fn unique(tag: &str) -> String {
    format!("mpt_{tag}_{}", std::process::id())
}

/// Create `name`, say so, then wait to be killed.
fn create_and_hang((name, ready): (String, Connection)) {
    let s = SharedMemory::create(Some(&name), 4096).unwrap();
    s.write(0, b"orphan").unwrap();
    ready.send(&true).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

fn gone_within(name: &str, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if matches!(SharedMemory::attach(name), Err(ShmError::NotFound(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_creator_killed_with_sigkill_leaves_no_segment_behind() {
    for m in [
        StartMethod::Spawn,
        StartMethod::Fork,
        StartMethod::Forkserver,
    ] {
        let name = unique(&format!("kill{}", m.name().len()));
        let (here, there) = pipe(true).unwrap();
        let p = Process::new(create_and_hang, (name.clone(), there)).start_method(m);
        p.start().unwrap();
        assert!(here.recv::<bool>().unwrap());
        // attaching (and dropping) does not destroy it
        let a = SharedMemory::attach(&name).unwrap();
        assert_eq!(a.read(0, 6).unwrap(), b"orphan");
        assert!(!a.is_owner());
        drop(a);
        assert!(SharedMemory::attach(&name).is_ok(), "{m:?}");
        p.kill().unwrap();
        assert_eq!(p.join().unwrap(), -9);
        assert!(
            gone_within(&name, Duration::from_secs(20)),
            "{m:?}: the tracker did not unlink {name}"
        );
    }
}

fn create_and_persist(name: String) {
    let s = SharedMemory::create(Some(&name), 4096).unwrap();
    s.write(0, b"kept").unwrap();
    let _ = s.persist();
}

#[test]
fn a_persisted_segment_outlives_its_creator_and_is_not_tracked() {
    let name = unique("persist");
    let p = Process::new(create_and_persist, name.clone());
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    std::thread::sleep(Duration::from_millis(300)); // the tracker has seen end of file by now
    let s = SharedMemory::attach(&name).expect("still there");
    assert_eq!(s.read(0, 4).unwrap(), b"kept");
    s.unlink().unwrap();
    assert!(matches!(
        SharedMemory::attach(&name),
        Err(ShmError::NotFound(_))
    ));
}

fn attach_write_leave((name, text): (String, String)) {
    let s = SharedMemory::attach(&name).unwrap();
    s.write(0, text.as_bytes()).unwrap();
}

#[test]
fn a_child_attaches_by_name_under_every_start_method() {
    let name = unique("attach");
    let s = SharedMemory::create(Some(&name), 64).unwrap();
    for m in [
        StartMethod::Spawn,
        StartMethod::Fork,
        StartMethod::Forkserver,
    ] {
        let text = format!("hello from {}", m.name());
        let p = Process::new(attach_write_leave, (name.clone(), text.clone())).start_method(m);
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        assert_eq!(s.read(0, text.len()).unwrap(), text.as_bytes(), "{m:?}");
    }
    // the attachers are gone; the creator still owns it, and removes it when dropped
    assert!(s.is_owner());
    drop(s);
    assert!(matches!(
        SharedMemory::attach(&name),
        Err(ShmError::NotFound(_))
    ));
}
