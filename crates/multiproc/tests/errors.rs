//! One error type for everything: `?` on every crate's error in one function returning
//! `multiproc::Result`, source chains that say each thing once, and the operating system's
//! error (`EMFILE`) reaching the caller of `start`, `Pool::new` and `Queue::put`.

multiproc::test_support!();

#[path = "../../process/tests/integration/bounded.rs"]
mod bounded;

use std::error::Error as StdError;
use std::io;

use bounded::{within, BOUND};
#[cfg(unix)]
use bounded::{JoinBounded, RecvBounded};

use multiproc::connection::{Client, Listener};
use multiproc::pickle::SharedError;
use multiproc::shared_memory::SharedMemory;
use multiproc::{
    Connection, Error, Lock, PickleError, Pool, PoolError, Process, ProcessError, PutError, Queue,
    QueueError, ShmError, SyncError, Value,
};

fn square(x: u64) -> u64 {
    x * x
}

fn answer(conn: Connection) {
    conn.send(&42u64).unwrap();
}

/// Touches every crate and uses `?` on each of its errors: if one of them did not convert
/// into `multiproc::Error`, this would not compile.
fn every_crate() -> multiproc::Result<u64> {
    // process: Pipe, start, recv, join
    let (here, there) = multiproc::Pipe(true)?;
    let p = Process::new(answer, there);
    p.start()?;
    let mut sum: u64 = here.recv()?;
    sum += p.join()? as u64;
    // listener and client
    let listener = Listener::bind("127.0.0.1:0", None)?;
    let client = Client::connect(listener.address(), None)?;
    let server = listener.accept()?;
    client.send(&1u64)?;
    sum += server.recv::<u64>()?;
    // shared memory and values
    let shm = SharedMemory::create(None, 4096)?;
    shm.segment().write(0, &[2])?;
    sum += u64::from(shm.segment().read(0, 1)?[0]);
    let v = Value::new(3u64)?;
    sum += v.get();
    // locks
    let lock = Lock::new()?;
    assert!(lock.acquire().acquired());
    lock.release()?;
    // queues: put's error is a PutError<T>
    let q: Queue<u64> = Queue::new()?;
    q.put(4)?;
    sum += q.get_timeout(BOUND)?;
    // pools
    let pool = Pool::new(2)?;
    sum += pool.map(square, 0..4u64)?.iter().sum::<u64>();
    sum += pool.apply_async(square, 3)?.get_timeout(BOUND)?;
    // pickle
    let bytes = multiproc::pickle::encode(&5u64)?;
    sum += multiproc::pickle::decode::<u64>(&bytes)?;
    Ok(sum)
}

#[test]
fn question_mark_works_on_every_crates_error() {
    // 42 + 0 (exit code) + 1 + 2 + 3 + 4 + (0 + 1 + 4 + 9) + 9 + 5
    assert_eq!(within(every_crate).unwrap(), 80);
}

/// The messages of `e` and its sources, outermost first.
fn chain(e: &(dyn StdError + 'static)) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = Some(e);
    while let Some(link) = cur {
        out.push(link.to_string());
        cur = link.source();
    }
    out
}

/// No message of the chain holds the message of the link after it (its cause's text): printing
/// the chain (as `anyhow`'s `{:#}` or a `main` returning an error does) says each thing once.
fn assert_says_each_thing_once(e: &(dyn StdError + 'static)) {
    let links = chain(e);
    for pair in links.windows(2) {
        assert!(
            !pair[0].contains(&pair[1]),
            "{:?} repeats its cause {:?} (chain {links:?})",
            pair[0],
            pair[1]
        );
    }
}

/// The raw OS error of a full descriptor (handle) table.
#[cfg(unix)]
const EMFILE: i32 = libc::EMFILE;
/// The raw OS error of a full descriptor (handle) table: `ERROR_TOO_MANY_OPEN_FILES`.
#[cfg(windows)]
const EMFILE: i32 = 4;

fn emfile() -> io::Error {
    io::Error::from_raw_os_error(EMFILE)
}

#[test]
fn no_error_repeats_its_cause() {
    // a real refused connection, and a real refused handle
    let refused = {
        let l = Listener::bind("127.0.0.1:0", None).unwrap();
        let addr = l.address();
        drop(l);
        Client::connect(addr, None).unwrap_err()
    };
    assert!(refused.io_error().is_some(), "{refused:?}");
    let (a, _b) = multiproc::Pipe(true).unwrap();
    let outside = multiproc::pickle::encode(&a).unwrap_err();
    assert!(matches!(outside, PickleError::HandleOutsideTransfer));
    let q: Queue<u64> = Queue::with_maxsize(1).unwrap();
    q.put(1).unwrap();
    let full: PutError<u64> = q.try_put(2).unwrap_err();

    let errors: Vec<Error> = vec![
        refused.into(),
        outside.into(),
        ProcessError::Io(emfile()).into(),
        ProcessError::Pickle(PickleError::Io(emfile())).into(),
        PickleError::Io(emfile()).into(),
        ShmError::Io(emfile()).into(),
        SyncError::from(ShmError::Io(emfile())).into(),
        QueueError::system("create a queue item", emfile()).into(),
        QueueError::from(ShmError::Io(emfile())).into(),
        QueueError::Encode(SharedError::new(PickleError::Io(emfile()))).into(),
        QueueError::Decode(SharedError::new(PickleError::Decode("x".into()))).into(),
        full.into(),
        PoolError::from(PickleError::Io(emfile())).into(),
        PoolError::Start(SharedError::any(ProcessError::Io(emfile()))).into(),
        PoolError::Start(SharedError::any(QueueError::system("map", emfile()))).into(),
        PoolError::WorkerDied { exitcode: -9 }.into(),
    ];
    for e in &errors {
        assert_says_each_thing_once(e);
        if matches!(
            e,
            Error::Queue(QueueError::Full) | Error::Pool(PoolError::WorkerDied { .. })
        ) {
            assert!(e.io_error().is_none());
            continue;
        }
        if e.find::<PickleError>()
            .is_some_and(|p| p.io_error().is_none())
        {
            continue;
        }
        // every error built on an io::Error gives it back, and its text is in the chain once
        let io = e
            .io_error()
            .unwrap_or_else(|| panic!("no io::Error in {e:?}"));
        let text = io.to_string();
        let printed = chain(e).join(": ");
        assert_eq!(printed.matches(&text).count(), 1, "{printed:?}");
    }
}

#[test]
fn a_cause_is_found_by_type_through_the_layers() {
    let e = Error::from(PoolError::Start(SharedError::any(ProcessError::Pickle(
        PickleError::Io(emfile()),
    ))));
    assert_eq!(
        e.io_kind(),
        Some(io::Error::from_raw_os_error(EMFILE).kind())
    );
    assert!(matches!(e.find::<PickleError>(), Some(PickleError::Io(_))));
    assert!(matches!(
        e.find::<ProcessError>(),
        Some(ProcessError::Pickle(_))
    ));
    assert!(matches!(e, Error::Pool(PoolError::Start(_))));
    // the crates' own accessors agree
    let Error::Pool(pool_error) = &e else {
        unreachable!()
    };
    assert_eq!(
        pool_error.io_error().and_then(io::Error::raw_os_error),
        Some(EMFILE)
    );
}

/// What one operation under a full descriptor table returned: its name, the raw OS error the
/// caller can reach, and the messages of its chain.
#[cfg(unix)]
type Outcome = (String, Option<i32>, Vec<String>);

#[cfg(unix)]
fn nothing(_: Connection) {}

/// Opens `/dev/null` until the descriptor table is full.
#[cfg(unix)]
fn full(filler: &mut Vec<std::fs::File>) {
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => filler.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                return;
            }
        }
    }
}

/// Runs `op` with no descriptor free, then one, two, ... until it succeeds (at most 64), so it
/// fails at each of the descriptors it needs in turn; returns every failure.
#[cfg(unix)]
fn under_limit(
    name: &str,
    filler: &mut Vec<std::fs::File>,
    mut op: impl FnMut() -> multiproc::Result<()>,
) -> Vec<Outcome> {
    let mut failures = Vec::new();
    for free in 0..64 {
        full(filler); // (what a failed attempt dropped freed descriptors)
        assert!(
            filler.len() >= free,
            "{name}: only {} fillers",
            filler.len()
        );
        filler.truncate(filler.len() - free);
        match op() {
            Ok(()) => {
                assert!(!failures.is_empty(), "{name} never failed");
                return failures;
            }
            Err(e) => failures.push((
                format!("{name} with {free} free"),
                e.io_error().and_then(io::Error::raw_os_error),
                chain(&e),
            )),
        }
    }
    panic!("{name} failed with up to 64 free descriptors: {failures:?}");
}

/// Runs in a child of the test, so the descriptor limit is its own: fills the descriptor table
/// (the soft limit lowered to 64 above the highest open descriptor, every free one filled),
/// then, with 0, 1, 2, ... descriptors free, starts a process with a `Connection` argument,
/// starts a pool, puts an item too big for its queue's ring (it needs a memory file of its
/// own), encodes a handle for a transfer; reports every failure over a connection opened before.
#[cfg(unix)]
fn starved(report: Connection) {
    let (keep, _keep_peer) = multiproc::Pipe(true).unwrap();
    let q: Queue<Vec<u8>> = Queue::with_capacity(0, 4096).unwrap();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|d| d.ok()?.file_name().to_str()?.parse::<libc::rlim_t>().ok())
        .max()
        .unwrap();
    // Room for 64 fillers above the highest descriptor: `under_limit` frees up to 64 of them,
    // which the holes below it alone may not provide.
    let low = libc::rlimit {
        rlim_cur: (highest + 1 + 64).min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we pass.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    let mut filler = Vec::new();
    full(&mut filler);
    let mut outcomes = under_limit("start", &mut filler, || {
        let (arg, _peer) = multiproc::Pipe(true)?;
        let p = Process::new(nothing, arg);
        p.start()?;
        p.join_bounded();
        Ok(())
    });
    outcomes.extend(under_limit("Pool::new", &mut filler, || {
        Pool::new(1)?;
        Ok(())
    }));
    outcomes.extend(under_limit("put", &mut filler, || {
        Ok(q.put(vec![1u8; 64 << 10])?)
    }));
    outcomes.extend(under_limit("encode_with_handles", &mut filler, || {
        multiproc::pickle::encode_with_handles(&keep)?;
        Ok(())
    }));
    drop(filler);
    // SAFETY: setrlimit reads the struct we pass.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    report.send(&outcomes).unwrap();
}

// Windows has no descriptor limit a process can lower (its handle table grows until memory
// runs out), so this runs on Unix only.
#[cfg(unix)]
#[test]
fn the_os_error_of_a_full_descriptor_table_reaches_the_caller() {
    let (here, there) = multiproc::Pipe(true).unwrap();
    let p = Process::new(starved, there);
    p.start().unwrap();
    let outcomes: Vec<Outcome> = here.recv_bounded();
    assert_eq!(p.join_bounded(), 0);
    let text = emfile().to_string(); // "Too many open files (os error 24)"
    assert!(text.contains("Too many open files"), "{text}");
    for (op, raw, links) in &outcomes {
        assert_eq!(*raw, Some(libc::EMFILE), "{op}: {links:?}");
        let printed = links.join(": ");
        assert_eq!(
            printed.matches("Too many open files").count(),
            1,
            "{op}: {printed}"
        );
        assert!(
            !printed.contains("Serde Serialization Error"),
            "{op}: {printed}"
        );
    }
    for op in ["start ", "Pool::new ", "put ", "encode_with_handles "] {
        assert!(outcomes.iter().any(|(o, ..)| o.starts_with(op)), "{op}");
    }
}
