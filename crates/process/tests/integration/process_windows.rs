//! Processes on Windows, with nothing but raw anonymous pipes between parent and child (no
//! `Connection`): handles a job carries, `TerminateProcess` mid-task, daemon children in the
//! parent's kill-on-close job, `parent_process()` seeing its parent end, the child marker's
//! checks, and how long a spawn takes.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::bounded::{run_bounded, within, JoinBounded, BOUND};
use multiproc_pickle::handles::{deserialize_handle, serialize_handle};
use multiproc_pickle::OsHandle;
use multiproc_process::{get_context, parent_process, Error, Process, StartMethod};
use serde::{Deserialize, Serialize};

/// One end of an anonymous pipe, as an argument of a task.
#[derive(Serialize, Deserialize)]
struct End(#[serde(serialize_with = "ser", deserialize_with = "de")] OsHandle);

fn ser<S: serde::Serializer>(h: &OsHandle, s: S) -> Result<S::Ok, S::Error> {
    serialize_handle(h, s)
}

fn de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<OsHandle, D::Error> {
    deserialize_handle(d)
}

impl End {
    fn file(self) -> std::fs::File {
        std::fs::File::from(self.0)
    }
}

/// An anonymous pipe: (read end, write end), neither inheritable.
fn raw_pipe() -> (End, End) {
    use std::os::windows::io::FromRawHandle;
    use windows_sys::Win32::System::Pipes::CreatePipe;
    let (mut r, mut w) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: CreatePipe writes two new handles into `r` and `w`; no security attributes.
    let ok = unsafe { CreatePipe(&mut r, &mut w, std::ptr::null(), 0) };
    assert_ne!(ok, 0, "CreatePipe: {}", std::io::Error::last_os_error());
    // SAFETY: both handles are new and ours.
    unsafe {
        (
            End(OsHandle::from_raw_handle(r as _)),
            End(OsHandle::from_raw_handle(w as _)),
        )
    }
}

/// Read the pipe to its end (every write end closed), bounded.
fn read_to_end(r: End) -> Vec<u8> {
    within(move || {
        let mut v = Vec::new();
        r.file().read_to_end(&mut v).unwrap();
        v
    })
}

/// Read `n` bytes, bounded.
fn read_n(r: &mut std::fs::File, n: usize) -> Vec<u8> {
    let mut f = r.try_clone().unwrap();
    within(move || {
        let mut v = vec![0; n];
        if let Err(e) = f.read_exact(&mut v) {
            panic!("reading {n} bytes: {e} (the writer ended first)");
        }
        v
    })
}

/// The exit code of a process ended by `terminate` or `kill` on Windows (CPython's).
const TERMINATED: i32 = -15;

fn write_and_exit((w, text): (End, String)) {
    w.file().write_all(text.as_bytes()).unwrap();
}

#[test]
fn a_pipe_end_passed_to_a_child_works_there() {
    let (r, w) = raw_pipe();
    let p = Process::new(write_and_exit, (w, "written by the child".to_string()));
    p.start().unwrap();
    // Our copy of the write end went with the arguments: end of file once the child is done.
    assert_eq!(read_to_end(r), b"written by the child");
    assert_eq!(p.join_bounded(), 0);
}

fn many_ends(ends: Vec<End>) {
    for (i, w) in ends.into_iter().enumerate() {
        w.file().write_all(&[i as u8]).unwrap();
    }
}

#[test]
fn many_handles_reach_a_child_each_as_itself() {
    let (readers, writers): (Vec<End>, Vec<End>) = (0..40).map(|_| raw_pipe()).unzip();
    let p = Process::new(many_ends, writers);
    p.start().unwrap();
    for (i, r) in readers.into_iter().enumerate() {
        assert_eq!(read_to_end(r), [i as u8], "pipe {i}");
    }
    assert_eq!(p.join_bounded(), 0);
}

fn too_many_ends(_: Vec<End>) {}

#[test]
fn too_many_handles_are_an_error_of_start() {
    let (_readers, writers): (Vec<End>, Vec<End>) = (0..254).map(|_| raw_pipe()).unzip();
    let p = Process::new(too_many_ends, writers);
    match p.start() {
        Err(Error::Start(e)) => assert!(e.to_string().contains("at most 253"), "{e}"),
        other => panic!("expected a start error, got {other:?}"),
    }
}

fn say_then_sleep((w, ms): (End, u64)) {
    let mut f = w.file();
    f.write_all(b"up").unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    let _ = f.write_all(b"finished");
}

#[test]
fn a_child_killed_mid_task_reports_cpythons_code() {
    for kill in [false, true] {
        let (r, w) = raw_pipe();
        let p = Process::new(say_then_sleep, (w, 60_000));
        p.start().unwrap();
        let mut r = r.file();
        assert_eq!(read_n(&mut r, 2), b"up");
        assert!(p.is_alive());
        assert_eq!(p.exitcode(), None);
        if kill {
            p.kill().unwrap();
        } else {
            p.terminate().unwrap();
        }
        let t = Instant::now();
        assert_eq!(p.join_bounded(), TERMINATED, "kill: {kill}");
        assert!(t.elapsed() < BOUND);
        assert_eq!(p.exitcode(), Some(TERMINATED));
        assert!(!p.is_alive());
        // ended: no effect, no error
        p.terminate().unwrap();
        p.kill().unwrap();
        let rest = within(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap();
            v
        });
        assert!(rest.is_empty(), "it never finished");
    }
}

fn exit_with(code: i32) {
    std::process::exit(code)
}

#[test]
fn exit_codes_pass_through_whole() {
    // (0x10000 is CPython's TERMINATE: it reads as -15 there too)
    for (code, seen) in [
        (0, 0),
        (7, 7),
        (255, 255),
        (256, 256),
        (-3, -3),
        (0x10000, -15),
    ] {
        let p = Process::new(exit_with, code);
        p.start().unwrap();
        assert_eq!(p.join_bounded(), seen, "exit({code})");
    }
}

/// Start a child (a daemon or not) that says "up" and sleeps `ms` before it says "finished",
/// then wait to be killed.
fn start_and_wait_to_be_killed((w, daemon, ms, told): (End, bool, u64, End)) {
    let p = Process::new(say_then_sleep, (w, ms)).daemon(daemon);
    p.start().unwrap();
    told.file().write_all(b"started").unwrap();
    std::thread::sleep(Duration::from_secs(60));
    drop(p);
}

#[test]
fn a_daemon_child_dies_when_its_parent_is_killed_others_live_on() {
    for daemon in [true, false] {
        let (r, w) = raw_pipe();
        let (told_r, told_w) = raw_pipe();
        let ms = if daemon { 60_000 } else { 500 };
        let p = Process::new(start_and_wait_to_be_killed, (w, daemon, ms, told_w));
        p.start().unwrap();
        assert_eq!(read_to_end_or(told_r, 7), b"started", "daemon: {daemon}");
        let mut r = r.file();
        assert_eq!(read_n(&mut r, 2), b"up", "daemon: {daemon}");
        p.kill().unwrap();
        assert_eq!(p.join_bounded(), TERMINATED, "daemon: {daemon}");
        let t = std::time::Instant::now();
        let rest = within(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap();
            v
        });
        eprintln!(
            "daemon: {daemon}: the child's pipe ended {:?} after its parent",
            t.elapsed()
        );
        if daemon {
            // Killed with its parent (the job closed): end of file, without "finished".
            assert_eq!(rest, b"", "the daemon outlived its parent");
        } else {
            assert_eq!(rest, b"finished", "a non-daemon child lives on");
        }
    }
}

/// Read `n` bytes of `r` (the rest may never come).
fn read_to_end_or(r: End, n: usize) -> Vec<u8> {
    let mut f = r.file();
    read_n(&mut f, n)
}

/// A grandchild: is the parent alive, then has it ended within 30 s.
fn watch_parent((w, go): (End, End)) {
    let parent = parent_process().expect("a child has a parent");
    let mut w = w.file();
    w.write_all(&[parent.is_alive() as u8]).unwrap();
    go.file().write_all(b"g").unwrap();
    let gone = parent.join_timeout(Duration::from_secs(30));
    w.write_all(&[gone as u8, parent.is_alive() as u8]).unwrap();
}

/// Start a grandchild that watches us, wait until it looked, then die without a word.
fn middle(w: End) {
    let (go_r, go_w) = raw_pipe();
    let p = Process::new(watch_parent, (w, go_w));
    p.start().unwrap();
    let mut go = go_r.file();
    let mut b = [0u8];
    go.read_exact(&mut b).unwrap();
    // SAFETY: ends this process at once, without its at-exit join.
    unsafe {
        windows_sys::Win32::System::Threading::TerminateProcess(
            windows_sys::Win32::System::Threading::GetCurrentProcess(),
            9,
        )
    };
}

#[test]
fn a_child_sees_its_parent_alive_then_gone() {
    let (r, w) = raw_pipe();
    let p = Process::new(middle, w);
    p.start().unwrap();
    assert_eq!(p.join_bounded(), 9);
    // (alive at first; then ended, and no longer alive)
    assert_eq!(read_to_end(r), [1, 1, 0]);
}

fn unit(_: ()) {}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn a_child_inherits_no_handle_it_was_not_given() {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Foundation::{SetHandleInformation, HANDLE_FLAG_INHERIT};
    // An inheritable write end, as another library might leave one: if the child inherited
    // it, the read end would see no end of file while the child lives.
    let (r, w) = raw_pipe();
    // SAFETY: sets a flag of a handle we own.
    let ok = unsafe {
        SetHandleInformation(
            w.0.as_raw_handle() as _,
            HANDLE_FLAG_INHERIT,
            HANDLE_FLAG_INHERIT,
        )
    };
    assert_ne!(ok, 0);
    let p = Process::new(sleep_ms, 2 * BOUND.as_millis() as u64);
    p.start().unwrap();
    drop(w);
    let eof = std::thread::spawn(move || {
        let mut v = Vec::new();
        r.file().read_to_end(&mut v).unwrap();
    });
    let t = Instant::now();
    while !eof.is_finished() && t.elapsed() < BOUND {
        std::thread::sleep(Duration::from_millis(5));
    }
    let leaked = !eof.is_finished();
    assert!(p.is_alive(), "the child ended early");
    p.kill().unwrap();
    assert_eq!(p.join_bounded(), TERMINATED);
    eof.join().unwrap();
    assert!(
        !leaked,
        "the child inherited a handle outside its handle list"
    );
}

/// A daemon child that starts a daemon of its own (in its own job, inside ours) and waits for
/// it.
fn daemon_starts_daemon(w: End) {
    let p = Process::new(write_and_exit, (w, "from the grandchild".to_string()));
    assert!(p.is_daemon(), "a daemon's child is a daemon");
    p.start().unwrap();
    assert_eq!(p.join_bounded(), 0);
}

#[test]
fn a_daemons_daemon_child_runs_in_a_nested_job() {
    let (r, w) = raw_pipe();
    let p = Process::new(daemon_starts_daemon, w).daemon(true);
    p.start().unwrap();
    assert_eq!(read_to_end(r), b"from the grandchild");
    assert_eq!(p.join_bounded(), 0);
}

fn checksum((w, data): (End, Vec<u8>)) {
    let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
    w.file()
        .write_all(format!("{} {sum}", data.len()).as_bytes())
        .unwrap();
}

#[test]
fn a_job_far_larger_than_the_pipe_streams_to_the_child() {
    let data: Vec<u8> = (0..16usize << 20).map(|i| (i * 7 % 251) as u8).collect();
    let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
    let (r, w) = raw_pipe();
    let p = Process::new(checksum, (w, data));
    p.start().unwrap();
    assert_eq!(
        read_to_end(r),
        format!("{} {sum}", 16usize << 20).as_bytes()
    );
    assert_eq!(p.join_bounded(), 0);
}

#[test]
fn only_spawn_exists_on_windows() {
    assert_eq!(StartMethod::available(), &[StartMethod::Spawn]);
    assert_eq!(multiproc_process::get_start_method(), StartMethod::Spawn);
    for m in [StartMethod::Fork, StartMethod::Forkserver] {
        assert!(matches!(
            get_context(m),
            Err(Error::StartMethodUnavailable(x)) if x == m
        ));
        assert!(matches!(
            multiproc_process::set_start_method(m),
            Err(Error::StartMethodUnavailable(_))
        ));
        let p = Process::new(unit, ()).start_method(m);
        assert!(matches!(p.start(), Err(Error::StartMethodUnavailable(x)) if x == m));
        assert_eq!(p.pid(), None);
    }
}

/// Run this binary as a multiproc child (the marker) with `var=value`: it must stop at once
/// with 1 and say why, naming the variable.
fn refused_as_child(var: &str, value: &str) -> crate::bounded::Ran {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.arg("--multiproc-child")
        .env_remove("MULTIPROC_BOOTSTRAP")
        .env_remove("MULTIPROC_FORKSERVER")
        .env(var, value);
    let ran = run_bounded(&mut cmd, b"");
    assert_eq!(ran.code, Some(1), "{var}={value}: {ran:?}");
    assert!(
        ran.stderr.contains(&format!("{var}=\"{value}\"")) && ran.stderr.contains("stopping"),
        "{var}={value}: {ran:?}"
    );
    assert!(ran.stdout.is_empty(), "{var}={value}: {ran:?}");
    ran
}

#[test]
fn a_child_with_a_bad_bootstrap_handle_says_why_it_stops() {
    for (value, why) in [
        ("-1", "is not a handle number"),
        ("abc", "is not a handle number"),
        ("", "is not a handle number"),
        ("+8", "is not a handle number"),
        ("6", "is not a handle number"), // not a multiple of 4
        ("0", "is not an open handle"),
        ("4000000", "is not an open handle"),
    ] {
        let ran = refused_as_child("MULTIPROC_BOOTSTRAP", value);
        assert!(ran.stderr.contains(why), "{value}: {ran:?}");
    }
    let ran = refused_as_child("MULTIPROC_FORKSERVER", "8");
    assert!(ran.stderr.contains("Windows has none"), "{ran:?}");
}

#[test]
fn a_child_whose_bootstrap_handle_is_no_pipe_stops() {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Foundation::{SetHandleInformation, HANDLE_FLAG_INHERIT};
    // An inheritable file handle: the child gets it at the same value.
    let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    let h = file.as_raw_handle();
    // SAFETY: sets a flag of a handle we own.
    let ok = unsafe { SetHandleInformation(h as _, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT) };
    assert_ne!(ok, 0);
    let ran = refused_as_child("MULTIPROC_BOOTSTRAP", &(h as usize).to_string());
    drop(file);
    assert!(ran.stderr.contains("is not a pipe"), "{ran:?}");
}

/// Start daemon children (each sleeping a minute) one after another, as fast as they start;
/// say "s" after the first, then go on until killed.
fn spawn_daemons_until_killed(told: End) {
    let mut told = Some(told.file());
    let mut kids = Vec::new();
    loop {
        let p = Process::new(sleep_ms, 60_000).daemon(true);
        p.start().unwrap();
        kids.push(p);
        if let Some(mut t) = told.take() {
            t.write_all(b"s").unwrap();
        }
    }
}

/// The processes whose parent is `pid` (a Toolhelp snapshot).
fn children_of(pid: u32) -> Vec<u32> {
    use windows_sys::Win32::Foundation::{CloseHandle, INVALID_HANDLE_VALUE};
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W,
        TH32CS_SNAPPROCESS,
    };
    // SAFETY: a snapshot of every process of the system (a handle closed below).
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    assert_ne!(
        snap,
        INVALID_HANDLE_VALUE,
        "{}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a zeroed PROCESSENTRY32W with its size set is what Process32FirstW asks for.
    let mut e: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    e.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
    let mut out = Vec::new();
    // SAFETY: walks the snapshot with a valid entry, then closes it.
    unsafe {
        let mut more = Process32FirstW(snap, &mut e) != 0;
        while more {
            if e.th32ParentProcessID == pid {
                out.push(e.th32ProcessID);
            }
            more = Process32NextW(snap, &mut e) != 0;
        }
        CloseHandle(snap);
    }
    out
}

/// A parent killed while it starts daemon children, at any point of a start (between creating
/// the child and putting it in the job, too): none of them outlives it, not even one left
/// suspended.
#[test]
fn a_parent_killed_mid_start_leaves_no_daemon_child_behind() {
    for delay_ms in [0u64, 3, 7, 15, 30] {
        let (told_r, told_w) = raw_pipe();
        let p = Process::new(spawn_daemons_until_killed, told_w);
        p.start().unwrap();
        let pid = p.pid().unwrap();
        assert_eq!(read_to_end_or(told_r, 1), b"s");
        std::thread::sleep(Duration::from_millis(delay_ms));
        p.kill().unwrap();
        assert_eq!(p.join_bounded(), TERMINATED);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = children_of(pid);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "daemon children {left:?} outlived their parent {pid} (killed {delay_ms} ms in)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
