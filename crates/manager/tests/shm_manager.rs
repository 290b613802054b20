//! `SharedMemoryManager`: the server owns the blocks and unlinks them when it stops, even when
//! its clients were killed.

use multiproc::managers::SharedMemoryManager;
use multiproc::shm::{Item, ShareableList, SharedMemory};
use multiproc::{Connection, Manager, Process, StartMethod};

multiproc::test_support!();

#[path = "../../process/tests/integration/bounded.rs"]
mod bounded;
use bounded::JoinBounded;

fn write_and_hang(args: (SharedMemory, ShareableList)) {
    let (m, l) = args;
    m.write(0, b"from child").unwrap();
    l.set(0, Item::Int(99)).unwrap();
    std::thread::sleep(bounded::BOUND);
}

#[test]
fn blocks_outlive_their_handles_and_go_with_the_server() {
    let smm = SharedMemoryManager::start().unwrap();
    let m = smm.shared_memory(100).unwrap();
    assert!(m.size() >= 100);
    let l = smm
        .shareable_list(&[Item::from(1), "two".into(), ().into()])
        .unwrap();
    let names = [m.name().to_string(), l.shm().name().to_string()];
    let mut tracked = smm.block_names().unwrap();
    tracked.sort();
    let mut want = names.to_vec();
    want.sort();
    assert_eq!(tracked, want);
    drop(m);
    drop(l);
    assert!(SharedMemory::attach(&names[0]).is_ok());
    assert_eq!(
        ShareableList::attach(&names[1]).unwrap().get(1).unwrap(),
        "two".into()
    );
    smm.shutdown().unwrap();
    for n in &names {
        assert!(
            SharedMemory::attach(n).is_err(),
            "{n} survived the shutdown"
        );
    }
}

#[test]
fn blocks_are_unlinked_at_shutdown_after_every_client_was_killed() {
    for &method in StartMethod::available() {
        let smm =
            SharedMemoryManager::start_with(multiproc::Manager::builder().start_method(method))
                .unwrap();
        let mut names = Vec::new();
        let mut ps = Vec::new();
        for _ in 0..2 {
            let m = smm.shared_memory(32).unwrap();
            let l = smm.shareable_list(&[Item::Int(0)]).unwrap();
            names.push(m.name().to_string());
            names.push(l.shm().name().to_string());
            let p = Process::new(write_and_hang, (m, l)).start_method(method);
            p.start().unwrap();
            ps.push((
                p,
                names[names.len() - 2].clone(),
                names[names.len() - 1].clone(),
            ));
        }
        for (p, mem, list) in &ps {
            // wait (bounded) until the child wrote, then kill it
            let deadline = std::time::Instant::now() + bounded::BOUND;
            loop {
                let m = SharedMemory::attach(mem).unwrap();
                let l = ShareableList::attach(list).unwrap();
                if m.read(0, 10).unwrap() == b"from child" && l.get(0).unwrap() == Item::Int(99) {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the child never wrote"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            p.kill().unwrap();
            assert_ne!(p.join_bounded(), 0);
        }
        smm.shutdown().unwrap();
        for n in &names {
            assert!(SharedMemory::attach(n).is_err(), "{method:?}: {n} survived");
        }
    }
}

/// Connect to the server, make a block and a list, report their names, hang.
fn connect_make_and_hang(args: (String, Vec<u8>, Connection)) {
    let (addr, key, report) = args;
    let smm =
        SharedMemoryManager::from_manager(Manager::connect(addr.as_str(), &key).unwrap()).unwrap();
    let m = smm.shared_memory(64).unwrap();
    let l = smm.shareable_list(&["x".into()]).unwrap();
    report
        .send(&(m.name().to_string(), l.shm().name().to_string()))
        .unwrap();
    std::thread::sleep(bounded::BOUND);
}

#[test]
fn blocks_made_by_clients_that_were_killed_are_unlinked_at_shutdown() {
    let served = Manager::serve("127.0.0.1:0", b"shm key").unwrap();
    let addr = served.address().to_string();
    let mut names = Vec::new();
    for &method in StartMethod::available() {
        let (rx, tx) = multiproc::pipe(false).unwrap();
        let p = Process::new(
            connect_make_and_hang,
            (addr.clone(), b"shm key".to_vec(), tx),
        )
        .start_method(method);
        p.start().unwrap();
        let (m, l): (String, String) = bounded::RecvBounded::recv_bounded(&rx);
        p.kill().unwrap();
        assert_ne!(p.join_bounded(), 0);
        // the client is gone; its blocks are not
        assert!(SharedMemory::attach(&m).is_ok(), "{method:?}");
        assert_eq!(
            ShareableList::attach(&l).unwrap().get(0).unwrap(),
            "x".into()
        );
        names.extend([m, l]);
    }
    served.shutdown().unwrap();
    for n in &names {
        assert!(
            SharedMemory::attach(n).is_err(),
            "{n} survived the shutdown"
        );
    }
}
