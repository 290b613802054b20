//! A program that forgets `multiproc_process::init()`: starting a process is a typed error, and
//! a spawned child whose `main` does not call `init` fails loudly (its stderr names the fix, it
//! exits with 1, its parent gets `Error::ChildNotInitialized`) and never starts children.
//!
//! Not a test harness (its `main` would be the harness's): one `main` in three roles.
//! * No marker, no `NO_INIT_ROLE`: the test. It checks `start` without `init`, then runs
//!   itself as the parent below and reads that run's stderr.
//! * `NO_INIT_ROLE=parent`: a program whose `main` calls `init` on this path only; it starts
//!   children of itself.
//! * The child marker: such a child. Its `main` does not call `init`; it does what
//!   `NO_INIT_CHILD` says (start a process, or return).

#[path = "integration/bounded.rs"]
mod bounded;

use bounded::{run_bounded, BOUND};
use multiproc_process::{Error, Process, StartMethod};

const METHODS: [StartMethod; 3] = [
    StartMethod::Spawn,
    StartMethod::Fork,
    StartMethod::Forkserver,
];

fn unit(_: ()) {}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--multiproc-child") {
        return child_without_init();
    }
    match std::env::var("NO_INIT_ROLE").as_deref() {
        Ok("parent") => parent(),
        _ => test(),
    }
}

/// A child whose `main` forgot `init`, doing what a `main` does.
fn child_without_init() {
    // Before the fix, every such child started another one: cut that chain short.
    let depth: u32 = std::env::var("NO_INIT_DEPTH")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    if depth >= 2 {
        println!("a chain of children {depth} deep");
        return;
    }
    std::env::set_var("NO_INIT_DEPTH", (depth + 1).to_string());
    if std::env::var("NO_INIT_CHILD").as_deref() == Ok("start") {
        let p = Process::new(unit, ());
        let r = p.start();
        // Only reached if `start` returned: it must not.
        println!("a child without init started a process: {r:?}");
        if r.is_ok() {
            let _ = p.join_timeout(BOUND);
        }
    }
}

/// Start children of this program (its `main` does not call `init` on their path): each must
/// come back as `ChildNotInitialized` with exit code 1, never as a success.
fn parent() {
    multiproc_process::init();
    for what in ["start", "return"] {
        std::env::set_var("NO_INIT_CHILD", what);
        let p = Process::new(unit, ()).start_method(StartMethod::Spawn);
        p.start().unwrap();
        let got = p.join_timeout(BOUND);
        assert!(
            matches!(got, Err(Error::ChildNotInitialized)),
            "a child that {what}s: {got:?}"
        );
        assert_eq!(p.exitcode(), Some(1), "a child that {what}s");
        let msg = got.unwrap_err().to_string();
        assert!(msg.contains("#[multiproc::main]"), "{msg}");
    }
    // The forkserver is spawned too: one whose `main` forgot `init` never serves (it stops at
    // its first start with the same word on stderr), so the start fails instead of hanging.
    #[cfg(unix)]
    forkserver_without_init();
    println!("parent: ok");
}

#[cfg(unix)]
fn forkserver_without_init() {
    std::env::set_var("NO_INIT_CHILD", "start");
    let p = Process::new(unit, ()).start_method(StartMethod::Forkserver);
    let got = p.start();
    assert!(
        got.is_err(),
        "a forkserver without init started a child: {got:?}"
    );
}

fn test() {
    for method in METHODS {
        let p = Process::new(unit, ()).start_method(method);
        match p.start() {
            Err(e @ Error::NotInitialized) => {
                assert!(e.to_string().contains("#[multiproc::main]"), "{e}");
            }
            other => panic!("{method:?}: start without init gave {other:?}"),
        }
        // Nothing started: the process is still a fresh one.
        assert_eq!(p.pid(), None);
        assert!(matches!(p.join(), Err(Error::NotStarted)));
    }
    let mut me = std::process::Command::new(std::env::current_exe().unwrap());
    me.env("NO_INIT_ROLE", "parent")
        .env_remove("NO_INIT_CHILD")
        .env_remove("NO_INIT_DEPTH");
    let ran = run_bounded(&mut me, b"");
    assert!(
        ran.code == Some(0) && ran.stdout.contains("parent: ok"),
        "{ran:?}"
    );
    assert!(!ran.stdout.contains("started a process"), "{ran:?}");
    assert!(!ran.stdout.contains("chain"), "{ran:?}");
    let said = ran
        .stderr
        .matches("its main did not call multiproc::init() first")
        .count();
    // Two children, and (where there is one) the forkserver twice (its client tries a second
    // one).
    let expected = if cfg!(unix) { 4 } else { 2 };
    assert_eq!(said, expected, "each child says what is wrong: {ran:?}");
    assert!(ran.stderr.contains("#[multiproc::main]"), "{ran:?}");
    println!("no_init: ok");
}
