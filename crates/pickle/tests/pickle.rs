//! Integration tests of multiproc-pickle: values, frames and function identity across a real
//! process boundary (this test binary re-executes itself as the child).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use multiproc_pickle::{decode, encode, frame, Bytes, Call, PickleError};
use serde::{Deserialize, Serialize};

const CHILD_ENV: &str = "MULTIPROC_PICKLE_TEST_CHILD";
/// Set in a copier child: the path to copy this executable to (see [`make_other_build`]).
const COPY_ENV: &str = "MULTIPROC_PICKLE_TEST_COPY_TO";

/// Every child this test starts must end within this; a hang fails the test.
const BOUND: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u64,
    name: String,
    weights: Vec<f64>,
    #[serde(with = "multiproc_pickle::bytes")]
    blob: Vec<u8>,
    nested: Option<Box<Job>>,
}

fn score(job: Job) -> (u64, f64, usize) {
    (
        job.id,
        job.weights.iter().sum(),
        job.blob.len() + job.nested.map_or(0, |n| n.blob.len()),
    )
}

/// Child side: read one `Call` from stdin, run it, write the encoded result to the file named
/// by the environment variable (the test harness owns stdout).
fn run_child_if_asked() {
    if let Some(to) = std::env::var_os(COPY_ENV) {
        let copy = Path::new(&to);
        // Another build: a byte of the build-id changed, or for a binary without one, a byte
        // more at the end (its file's hash is its fingerprint then): a copy of the same build
        // is the same build, whatever its modification time.
        let mut bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        if let Some(id) = multiproc_pickle::build_id() {
            let at = bytes
                .windows(id.len())
                .position(|w| w == id)
                .expect("the build-id is in the file");
            bytes[at] ^= 0xff;
        } else {
            bytes.push(0);
        }
        std::fs::write(copy, &bytes).unwrap();
        let f = std::fs::File::options().write(true).open(copy).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(12345))
            .unwrap();
        std::process::exit(0);
    }
    let Some(out_path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).unwrap();
    let call: Call = decode(&input).unwrap();
    // SAFETY: the call comes from our parent, the same test binary (the fingerprint is checked).
    let out = match unsafe { call.invoke(Vec::new()) } {
        Ok(out) => out,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(3)
        }
    };
    std::fs::write(out_path, out).unwrap();
    std::process::exit(0);
}

fn run_in_child(call: &Call, exe: &std::path::Path, test: &str) -> (std::process::Output, Vec<u8>) {
    let out_path = std::env::temp_dir().join(format!(
        "multiproc-pickle-out-{}-{test}",
        std::process::id()
    ));
    let mut child = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &out_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&encode(call).unwrap())
        .unwrap();
    let out = wait_bounded(child);
    let result = std::fs::read(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    (out, result)
}

/// `child.wait_with_output()`, but a child still running after [`BOUND`] is killed and fails
/// the test.
fn wait_bounded(mut child: Child) -> Output {
    fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    }
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a child did not end within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // The pipes reach end of file once the child (their only writer) has ended.
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A copy of this executable at `copy` with another build-id (or another byte at its end):
/// another build to the fingerprint.
///
/// The copy is written by a short-lived child process (this binary again, in its copier role),
/// never by this process: a write descriptor open here would be inherited by any child another
/// test thread forks meanwhile, and held by it until its `exec`, so executing the copy at that
/// moment would fail with "Text file busy" (`ETXTBSY`). Once the copier has exited, no process
/// holds a write descriptor to the copy.
fn make_other_build(copy: &Path, test: &str) {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1"])
        .env(COPY_ENV, copy)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child);
    assert!(
        out.status.success(),
        "copier failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn function_identity_across_processes() {
    run_child_if_asked();
    let job = Job {
        id: 7,
        name: "seven".into(),
        weights: vec![0.5, 1.5],
        blob: vec![9; 1000],
        nested: Some(Box::new(Job {
            id: 8,
            name: "x".into(),
            weights: vec![],
            blob: vec![1; 24],
            nested: None,
        })),
    };
    let (call, handles) = Call::new(score, &job).unwrap();
    assert!(handles.is_empty());
    let (out, result) = run_in_child(
        &call,
        &std::env::current_exe().unwrap(),
        "function_identity_across_processes",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        decode::<(u64, f64, usize)>(&result).unwrap(),
        (7, 2.0, 1024)
    );
}

#[test]
fn another_build_refuses_the_call() {
    run_child_if_asked();
    let dir = std::env::temp_dir().join(format!("multiproc-pickle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("other-build");
    make_other_build(&copy, "another_build_refuses_the_call");
    let (call, _) = Call::new(
        score,
        &Job {
            id: 1,
            name: String::new(),
            weights: vec![],
            blob: vec![],
            nested: None,
        },
    )
    .unwrap();
    let (out, _) = run_in_child(&call, &copy, "another_build_refuses_the_call");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fingerprint mismatch"));
}

/// The copy of [`another_build_refuses_the_call`], made and run again and again while other
/// threads start processes: it must run every time (with the copy written in this process, an
/// `exec` failed with "Text file busy" whenever one of those children was between its fork and
/// its `exec`).
#[test]
fn a_copy_made_while_other_threads_spawn_always_runs() {
    run_child_if_asked();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spawners: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let child = Command::new(std::env::current_exe().unwrap())
                        .args(["--list", "--exact", "no test has this name"])
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap();
                    assert!(wait_bounded(child).status.success());
                }
            })
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("multiproc-pickle-busy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (call, _) = Call::new(
        score,
        &Job {
            id: 2,
            name: String::new(),
            weights: vec![],
            blob: vec![],
            nested: None,
        },
    )
    .unwrap();
    let test = "a_copy_made_while_other_threads_spawn_always_runs";
    for i in 0..30 {
        let copy = dir.join(format!("other-build-{i}"));
        make_other_build(&copy, test);
        let (out, _) = run_in_child(&call, &copy, test);
        std::fs::remove_file(&copy).unwrap();
        assert_eq!(
            out.status.code(),
            Some(3),
            "run {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in spawners {
        let t = Instant::now();
        while !s.is_finished() {
            assert!(t.elapsed() < BOUND, "a spawner did not stop");
            std::thread::sleep(Duration::from_millis(2));
        }
        s.join().unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bytes_fast_path_is_compact_and_equivalent() {
    run_child_if_asked();
    let v: Vec<u8> = (0..=255).collect();
    let slow = encode(&v).unwrap();
    let fast = encode(&Bytes(v.clone())).unwrap();
    // Same wire format: postcard writes a varint length then the bytes in both cases.
    assert_eq!(slow, fast);
    assert_eq!(decode::<Bytes>(&slow).unwrap().0, v);
    assert_eq!(decode::<Vec<u8>>(&fast).unwrap(), v);
}

#[test]
fn malformed_input_is_a_typed_error() {
    run_child_if_asked();
    assert!(matches!(
        decode::<Job>(&[1, 2, 3]),
        Err(PickleError::Decode(_))
    ));
    assert!(matches!(
        decode::<Call>(&[0xff; 40]),
        Err(PickleError::Decode(_))
    ));
    assert!(matches!(
        frame::parse_prefix([0xfe, 0, 0, 0]),
        Err(PickleError::BadFrame(_))
    ));
    assert!(matches!(
        frame::check_size(u64::MAX, frame::DEFAULT_MAX_MESSAGE),
        Err(PickleError::TooLarge { .. })
    ));
    // a Vec length far beyond the input must not allocate it
    assert!(decode::<Vec<u64>>(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
}
