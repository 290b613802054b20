//! Named segments across processes: the resource tracker on Unix; on Windows, blocks that live
//! while a handle is open.

use std::time::{Duration, Instant};

use crate::bounded::{JoinBounded, RecvBounded};
use multiproc_process::{pipe, Connection, Process, StartMethod};
use multiproc_shm::{SharedMemory, ShmError};

fn unique(tag: &str) -> String {
    format!("mpt_{tag}_{}", std::process::id())
}

/// Every start method of this platform (spawn only on Windows).
fn methods() -> &'static [StartMethod] {
    StartMethod::available()
}

/// What `join` reports for a child killed by [`Process::kill`] (see `values.rs`).
const KILLED: i32 = if cfg!(windows) { -15 } else { -9 };

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

/// On Unix the tracker unlinks the name; on Windows the section goes with its last handle.
#[test]
fn a_creator_killed_with_sigkill_leaves_no_segment_behind() {
    for &m in methods() {
        let name = unique(&format!("kill{}", m.name().len()));
        let (here, there) = pipe(true).unwrap();
        let p = Process::new(create_and_hang, (name.clone(), there)).start_method(m);
        p.start().unwrap();
        assert!(here.recv_bounded::<bool>());
        // attaching (and dropping) does not destroy it
        let a = SharedMemory::attach(&name).unwrap();
        assert_eq!(a.read(0, 6).unwrap(), b"orphan");
        assert!(!a.is_owner());
        drop(a);
        assert!(SharedMemory::attach(&name).is_ok(), "{m:?}");
        p.kill().unwrap();
        assert_eq!(p.join_bounded(), KILLED);
        assert!(
            gone_within(&name, Duration::from_secs(20)),
            "{m:?}: the tracker did not unlink {name}"
        );
    }
}

#[cfg(unix)]
fn sleep_long(_: ()) {
    std::thread::sleep(Duration::from_secs(600));
}

/// Create `name`, fork a child that lives on and never touches shared memory, report the
/// child's pid, then wait to be killed.
#[cfg(unix)]
fn create_fork_and_hang((name, ready): (String, Connection)) {
    let s = SharedMemory::create(Some(&name), 4096).unwrap();
    s.write(0, b"orphan").unwrap();
    let child = Process::new(sleep_long, ()).start_method(StartMethod::Fork);
    child.start().unwrap();
    ready.send(&child.pid().unwrap()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[cfg(unix)] // fork
#[test]
fn a_forked_child_living_on_does_not_delay_the_clean_up_of_its_killed_parent() {
    let name = unique("forkedlives");
    let (here, there) = pipe(true).unwrap();
    let p = Process::new(create_fork_and_hang, (name.clone(), there));
    p.start().unwrap();
    let child: u32 = here.recv_bounded();
    p.kill().unwrap();
    assert_eq!(p.join_bounded(), -9);
    let gone = gone_within(&name, Duration::from_secs(10));
    // SAFETY: a plain kill of the grandchild we were told about (orphaned now).
    unsafe { libc::kill(child as i32, libc::SIGKILL) };
    assert!(
        gone,
        "the tracker waited for the forked child holding a copy of its pipe"
    );
}

fn create_and_persist(name: String) {
    let s = SharedMemory::create(Some(&name), 4096).unwrap();
    s.write(0, b"kept").unwrap();
    let _ = s.persist();
}

#[cfg(unix)] // on Windows a block goes with its last handle: see the next test
#[test]
fn a_persisted_segment_outlives_its_creator_and_is_not_tracked() {
    let name = unique("persist");
    let p = Process::new(create_and_persist, name.clone());
    p.start().unwrap();
    assert_eq!(p.join_bounded(), 0);
    std::thread::sleep(Duration::from_millis(300)); // the tracker has seen end of file by now
    let s = SharedMemory::attach(&name).expect("still there");
    assert_eq!(s.read(0, 4).unwrap(), b"kept");
    s.unlink().unwrap();
    assert!(matches!(
        SharedMemory::attach(&name),
        Err(ShmError::NotFound(_))
    ));
}

/// Windows has no names that outlive their holders: a block (even persisted) lives while a
/// handle is open, in any process, and goes with the last; `unlink` is a no-op.
#[cfg(windows)]
#[test]
fn a_block_lives_while_a_handle_is_open_and_goes_after() {
    // the creator ends holding the only handle: the block goes with it
    let name = unique("gone");
    let p = Process::new(create_and_persist, name.clone());
    p.start().unwrap();
    assert_eq!(p.join_bounded(), 0);
    assert!(matches!(
        SharedMemory::attach(&name),
        Err(ShmError::NotFound(_))
    ));

    // a handle held here keeps the block of a creator that ended (and was killed)
    let name = unique("kept");
    let (here, there) = pipe(true).unwrap();
    let p = Process::new(create_and_hang, (name.clone(), there));
    p.start().unwrap();
    assert!(here.recv_bounded::<bool>());
    let a = SharedMemory::attach(&name).unwrap();
    p.kill().unwrap();
    assert_eq!(p.join_bounded(), KILLED);
    assert_eq!(a.read(0, 6).unwrap(), b"orphan");
    let b = SharedMemory::attach(&name).expect("a handle is open");
    assert_eq!(b.read(0, 6).unwrap(), b"orphan");
    // unlink does nothing here: the block stays while the handles do
    b.unlink().unwrap();
    b.unlink().unwrap();
    assert!(SharedMemory::attach(&name).is_ok());
    drop((a, b));
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
    for &m in methods() {
        let text = format!("hello from {}", m.name());
        let p = Process::new(attach_write_leave, (name.clone(), text.clone())).start_method(m);
        p.start().unwrap();
        assert_eq!(p.join_bounded(), 0);
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

fn bump_list(sl: multiproc_shm::ShareableList) {
    let multiproc_shm::Item::Int(n) = sl.get(0).unwrap() else {
        panic!("item 0 is not an int")
    };
    sl.set(0, (n + 1).into()).unwrap();
    sl.set(-1, "from the child".into()).unwrap();
}

#[test]
fn shareable_list_round_trip_across_processes() {
    use multiproc_shm::{Item, ShareableList};
    for &m in methods() {
        let sl =
            ShareableList::new(None, &[Item::Int(41), Item::None, "x".repeat(20).into()]).unwrap();
        let p = Process::new(bump_list, ShareableList::attach(sl.shm().name()).unwrap())
            .start_method(m);
        p.start().unwrap();
        assert_eq!(p.join_bounded(), 0, "{m:?}");
        assert_eq!(
            sl.to_vec().unwrap(),
            [Item::Int(42), Item::None, "from the child".into()],
            "{m:?}"
        );
    }
}

#[cfg(unix)]
fn python3(script: &str) -> Option<String> {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Python's own tracker (3.11) would unlink a block it merely attached to: unregister it.
#[cfg(unix)]
const PY_PRELUDE: &str = "from multiprocessing import shared_memory, resource_tracker\n";

#[cfg(unix)] // a CPython for Windows is not at hand (the one here is the host's)
#[test]
fn shareable_list_interoperates_with_cpython() {
    use multiproc_shm::{Item, ShareableList};
    // Rust creates, Python reads and writes.
    let sl = ShareableList::new(
        Some(&unique("slrs")),
        &[
            Item::Int(7),
            Item::Float(1.5),
            Item::Bool(true),
            Item::None,
            "héllo".into(),
            Item::Bytes(b"raw".to_vec()),
        ],
    )
    .unwrap();
    let script = format!(
        "{PY_PRELUDE}sl = shared_memory.ShareableList(name={name:?})\n\
         resource_tracker.unregister(sl.shm._name, 'shared_memory')\n\
         print(list(sl))\n\
         sl[0] = 99; sl[4] = 'hi'; sl[3] = 2.25\n",
        name = sl.shm().name()
    );
    let Some(seen) = python3(&script) else {
        eprintln!("python3 not found: skipping the CPython half");
        return;
    };
    assert_eq!(seen, "[7, 1.5, True, None, 'héllo', b'raw']");
    assert_eq!(sl.get(0).unwrap(), Item::Int(99));
    assert_eq!(sl.get(4).unwrap(), Item::Str("hi".into()));
    assert_eq!(sl.get(3).unwrap(), Item::Float(2.25));

    // Python creates (and leaves it behind), Rust reads and writes.
    let name = unique("slpy");
    let script = format!(
        "{PY_PRELUDE}sl = shared_memory.ShareableList([1, -2.5, False, None, 'py text', b'\\x01\\x02'], name={name:?})\n\
         resource_tracker.unregister(sl.shm._name, 'shared_memory')\n\
         print(sl.format)\n"
    );
    let fmt = python3(&script).expect("python3 ran above");
    let theirs = ShareableList::attach(&name).unwrap();
    assert_eq!(theirs.format_string().unwrap(), fmt);
    assert_eq!(
        theirs.to_vec().unwrap(),
        [
            Item::Int(1),
            Item::Float(-2.5),
            Item::Bool(false),
            Item::None,
            "py text".into(),
            Item::Bytes(vec![1, 2]),
        ]
    );
    theirs.set(1, Item::Int(5)).unwrap();
    let script = format!(
        "{PY_PRELUDE}sl = shared_memory.ShareableList(name={name:?})\n\
         resource_tracker.unregister(sl.shm._name, 'shared_memory')\n\
         print(sl[1]); sl.shm.unlink()\n"
    );
    assert_eq!(python3(&script).expect("python3 ran above"), "5");
}

/// CPython on Linux creates names `create` would refuse as not portable (long, with spaces
/// or `:`): `attach` takes them, as the OS does.
#[cfg(target_os = "linux")]
#[test]
fn attach_takes_a_name_cpython_created_with_spaces_colons_and_40_characters() {
    let mut name = format!("py made: {} ", std::process::id());
    while name.len() < 40 {
        name.push('x');
    }
    assert_eq!(name.len(), 40);
    let script = format!(
        "{PY_PRELUDE}s = shared_memory.SharedMemory(name={name:?}, create=True, size=64)\n\
         resource_tracker.unregister(s._name, 'shared_memory')\n\
         s.buf[:5] = b'hello'\n\
         print(s.name)\n"
    );
    let Some(made) = python3(&script) else {
        eprintln!("python3 not found: skipping");
        return;
    };
    assert_eq!(made, name);
    let attached = SharedMemory::attach(&name);
    // whatever happens, the segment does not outlive the test
    let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
    let shm = attached.unwrap();
    assert_eq!(shm.name(), name);
    assert_eq!(shm.read(0, 5).unwrap(), b"hello");
}

/// A block named as CPython names them on Windows (`wnsm_` and 8 hex digits, its
/// `_make_filename`) is created, and attached by that name from a child; random names take
/// this platform's form (CPython's on Windows).
#[test]
fn a_cpython_style_name_is_accepted_and_random_names_take_the_platform_form() {
    let name = format!("wnsm_{:08x}", std::process::id().rotate_left(13));
    let s = SharedMemory::create(Some(&name), 100).unwrap();
    assert_eq!(s.name(), name);
    let text = "written by a child that attached by a wnsm_ name".to_string();
    let p = Process::new(attach_write_leave, (name.clone(), text.clone()));
    p.start().unwrap();
    assert_eq!(p.join_bounded(), 0, "{:?}", p.panic_message());
    assert_eq!(s.read(0, text.len()).unwrap(), text.as_bytes());

    let r = SharedMemory::create(None, 10).unwrap();
    let (prefix, digits) = if cfg!(windows) {
        ("wnsm_", 8)
    } else {
        ("mp_", 12)
    };
    let hex = r
        .name()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{}", r.name()));
    assert_eq!(hex.len(), digits, "{}", r.name());
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{}", r.name());
    // a leading '/' (the POSIX form) reaches the same block
    let again = SharedMemory::attach(&format!("/{}", r.name())).unwrap();
    r.write(3, b"z").unwrap();
    assert_eq!(again.read(3, 1).unwrap(), b"z");
}

/// Every way of naming a block wrongly gives its typed error.
fn check_bad_names(_: ()) {
    let invalid = |e: Option<ShmError>| matches!(e, Some(ShmError::InvalidName(..)));
    for bad in ["", "/", "a/b", "x\0y"] {
        assert!(invalid(SharedMemory::attach(bad).err()), "{bad:?}");
    }
    assert!(invalid(
        SharedMemory::attach(&"x".repeat(multiproc_shm::MAX_ATTACH_NAME_LEN + 1)).err()
    ));
    for bad in ["bad name", "a\\b", "Local\\x", "é", &"x".repeat(31)] {
        assert!(
            invalid(SharedMemory::create(Some(bad), 10).err()),
            "{bad:?}"
        );
    }
    assert!(matches!(
        SharedMemory::attach(&unique("nosuch")),
        Err(ShmError::NotFound(_))
    ));
    assert!(matches!(
        SharedMemory::create(None, 0),
        Err(ShmError::InvalidSize(0))
    ));
    let s = SharedMemory::create(None, 10).unwrap();
    assert!(matches!(
        SharedMemory::create(Some(s.name()), 10),
        Err(ShmError::Exists(_))
    ));
    // a name in an object directory that does not exist: the OS refuses it on Windows; on
    // Unix it is a plain name no block has
    let e = SharedMemory::attach("no such directory\\x").err();
    if cfg!(windows) {
        assert!(invalid(e));
    } else {
        assert!(matches!(e, Some(ShmError::NotFound(_))));
    }
}

#[test]
fn bad_names_give_typed_errors_here_and_in_a_child() {
    check_bad_names(());
    let p = Process::new(check_bad_names, ());
    p.start().unwrap();
    assert_eq!(p.join_bounded(), 0, "{:?}", p.panic_message());
}
