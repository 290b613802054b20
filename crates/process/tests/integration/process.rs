//! Processes under every start method: exit codes, panics, signals, timeouts, handles.

use std::time::{Duration, Instant};

use crate::bounded::{JoinBounded, RecvBounded};
use multiproc_process::{
    active_children, current_process, parent_process, pipe, wait_timeout, Connection, Error,
    Process, StartMethod, Waitable,
};

/// Every start method of this platform (spawn, fork, forkserver on Unix; spawn on Windows).
fn methods() -> &'static [StartMethod] {
    StartMethod::available()
}

/// The exit code `terminate` gives: −SIGTERM (on Windows too, as in CPython).
const TERMINATED: i32 = -15;
/// The exit code `kill` gives: −SIGKILL; on Windows `kill` is `terminate`, as in CPython.
const KILLED: i32 = if cfg!(windows) { -15 } else { -9 };

fn exit_with(code: i32) {
    std::process::exit(code)
}

fn panicker(msg: String) {
    panic!("{msg}");
}

fn sleeper(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn echo_child(conn: Connection) {
    loop {
        match conn.recv_bytes() {
            Ok(m) => conn.send_bytes(&m).unwrap(),
            Err(Error::Eof) => return,
            Err(e) => panic!("{e}"),
        }
    }
}

fn sum_and_report((xs, conn): (Vec<i64>, Connection)) {
    let me = current_process();
    let parent = parent_process().expect("a child has a parent");
    conn.send(&(xs.iter().sum::<i64>(), me.name, parent.pid()))
        .unwrap();
}

#[test]
fn args_in_exit_code_out() {
    for &m in methods() {
        let (here, there) = pipe(true).unwrap();
        let p = Process::new(sum_and_report, (vec![1, 2, 3, 4], there))
            .start_method(m)
            .with_name("summer");
        p.start().unwrap();
        let (sum, name, ppid): (i64, String, u32) = here.recv_bounded();
        assert_eq!(
            (sum, name.as_str(), ppid),
            (10, "summer", std::process::id()),
            "{m:?}"
        );
        assert_eq!(p.join_bounded(), 0, "{m:?}");
        assert_eq!(p.exitcode(), Some(0));
    }
}

#[test]
fn panic_gives_one_and_the_message() {
    for &m in methods() {
        let p = Process::new(panicker, format!("boom under {m:?}")).start_method(m);
        p.start().unwrap();
        assert_eq!(p.join_bounded(), 1, "{m:?}");
        assert_eq!(
            p.panic_message().as_deref(),
            Some(format!("boom under {m:?}").as_str())
        );
        assert!(p.panic_backtrace().unwrap().contains("process.rs"));
    }
}

#[test]
fn exit_code_passes_through() {
    for &m in methods() {
        let p = Process::new(exit_with, 3).start_method(m);
        p.start().unwrap();
        assert_eq!(p.join_bounded(), 3, "{m:?}");
        assert_eq!(p.panic_message(), None);
    }
}

#[test]
fn terminate_and_kill_give_negative_signals() {
    for &m in methods() {
        let p = Process::new(sleeper, 60_000).start_method(m);
        p.start().unwrap();
        assert!(p.is_alive());
        p.terminate().unwrap();
        assert_eq!(p.join_bounded(), TERMINATED, "{m:?}");
        assert!(!p.is_alive());
        let p = Process::new(sleeper, 60_000).start_method(m);
        p.start().unwrap();
        p.kill().unwrap();
        assert_eq!(p.join_bounded(), KILLED, "{m:?}");
        // signalling an ended process is not an error
        p.kill().unwrap();
    }
}

#[test]
fn join_timeout_returns_while_child_runs() {
    for &m in methods() {
        let p = Process::new(sleeper, 60_000).start_method(m);
        assert!(!p.is_alive(), "not started yet");
        assert!(matches!(p.join(), Err(Error::NotStarted)));
        p.start().unwrap();
        let t = Instant::now();
        assert_eq!(p.join_timeout(Duration::from_millis(100)).unwrap(), None);
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert!(p.is_alive());
        assert!(active_children().iter().any(|c| c.pid() == p.pid()));
        assert!(matches!(p.close(), Err(Error::StillRunning)));
        p.kill().unwrap();
        p.join_bounded();
        assert!(!active_children().iter().any(|c| c.pid() == p.pid()));
        p.close().unwrap();
        assert!(matches!(p.join(), Err(Error::ProcessClosed)));
        assert!(matches!(p.start(), Err(Error::ProcessClosed)));
    }
}

#[test]
fn start_twice_is_an_error() {
    let p = Process::new(sleeper, 0);
    p.start().unwrap();
    assert!(matches!(p.start(), Err(Error::AlreadyStarted)));
    p.join_bounded();
}

#[test]
fn connection_passed_to_child_and_big_messages() {
    for &m in methods() {
        let (here, there) = pipe(true).unwrap();
        let p = Process::new(echo_child, there).start_method(m);
        p.start().unwrap();
        let big: Vec<u8> = (0..64usize << 20).map(|i| (i * 7 % 256) as u8).collect();
        let n = if m == StartMethod::Spawn { 2 } else { 1 };
        for _ in 0..n {
            here.send_bytes(&big).unwrap();
            assert!(here.recv_bytes_bounded() == big, "{m:?}");
        }
        here.send_bytes(b"small").unwrap();
        assert_eq!(here.recv_bytes_bounded(), b"small");
        drop(here);
        assert_eq!(p.join_bounded(), 0);
    }
}

fn send_then_exit(conn: Connection) {
    conn.send(&"bye").unwrap();
}

#[test]
fn eof_when_the_peer_exits() {
    for &m in methods() {
        let (here, there) = pipe(true).unwrap();
        let p = Process::new(send_then_exit, there).start_method(m);
        p.start().unwrap();
        assert_eq!(here.recv_bounded::<String>(), "bye");
        assert!(matches!(here.recv_bytes(), Err(Error::Eof)), "{m:?}");
        p.join_bounded();
    }
}

#[test]
fn wait_on_connections_and_sentinels() {
    let (here, there) = pipe(true).unwrap();
    let p = Process::new(send_then_exit, there).start_method(StartMethod::Spawn);
    let q = Process::new(sleeper, 300);
    let (_idle_a, idle_b) = pipe(true).unwrap();
    assert!(wait_timeout(&[&idle_b], Duration::from_millis(50))
        .unwrap()
        .is_empty());
    p.start().unwrap();
    q.start().unwrap();
    let ready = wait_timeout(&[&here, &idle_b], Duration::from_secs(30)).unwrap();
    assert_eq!(ready, [0]);
    let ready = wait_timeout(&[&q as &dyn Waitable], Duration::from_secs(30)).unwrap();
    assert_eq!(ready, [0]);
    assert!(!q.is_alive());
    assert!(
        q.sentinel().is_none(),
        "a reaped process has no sentinel left"
    );
    p.join_bounded();
}

fn check_parent_dies((conn, go): (Connection, Connection)) {
    let parent = parent_process().unwrap();
    conn.send(&parent.is_alive()).unwrap();
    go.send(&()).unwrap();
    let gone = parent.join_timeout(Duration::from_secs(20));
    conn.send(&gone).unwrap();
}

fn middle(conn: Connection) {
    // start a grandchild, let it look at us, then die without joining it
    let (wait_here, go) = pipe(true).unwrap();
    let p = Process::new(check_parent_dies, (conn, go));
    p.start().unwrap();
    wait_here.recv_bounded::<()>();
    p.kill_self_for_test();
}

trait KillSelf {
    fn kill_self_for_test(&self);
}

impl KillSelf for Process {
    /// End this process as `kill` would (no at-exit join runs).
    fn kill_self_for_test(&self) {
        #[cfg(unix)]
        {
            extern "C" {
                fn getpid() -> i32;
                fn kill(pid: i32, sig: i32) -> i32;
            }
            // SAFETY: plain libc calls; SIGKILL ourselves so no at-exit join runs.
            unsafe {
                kill(getpid(), 9);
            }
        }
        #[cfg(windows)]
        // SAFETY: ends this process with the code `kill` gives (CPython's TERMINATE).
        unsafe {
            use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};
            TerminateProcess(GetCurrentProcess(), 0x10000);
        }
    }
}

#[test]
fn child_learns_parent_died() {
    let (here, there) = pipe(true).unwrap();
    let p = Process::new(middle, there);
    p.start().unwrap();
    assert!(here.recv_bounded::<bool>(), "the parent is alive at first");
    assert_eq!(p.join_bounded(), KILLED);
    assert!(
        here.recv_bounded::<bool>(),
        "the grandchild saw its parent die"
    );
}

fn unit(_: ()) {}

#[test]
fn current_process_names_and_identity() {
    let me = current_process();
    assert_eq!(me.name, "MainProcess");
    assert!(parent_process().is_none());
    let p = Process::new(unit, ());
    p.start().unwrap();
    assert!(p.name().starts_with("Process-"));
    p.join_bounded();
}

fn sleep_then_send((ms, conn): (u64, Connection)) {
    std::thread::sleep(Duration::from_millis(ms));
    let _ = conn.send(&"finished");
}

fn start_grandchildren((daemon_conn, worker_conn): (Connection, Connection)) {
    Process::new(sleep_then_send, (60_000, daemon_conn))
        .daemon(true)
        .start()
        .unwrap();
    Process::new(sleep_then_send, (200, worker_conn))
        .start()
        .unwrap();
    // return without joining: at exit the daemon is terminated and the worker joined
}

#[test]
fn at_exit_daemons_are_terminated_and_others_joined() {
    for &m in methods() {
        let (daemon_here, daemon_there) = pipe(true).unwrap();
        let (worker_here, worker_there) = pipe(true).unwrap();
        let p = Process::new(start_grandchildren, (daemon_there, worker_there)).start_method(m);
        p.start().unwrap();
        assert_eq!(p.join_bounded(), 0, "{m:?}");
        // the non-daemon grandchild was joined before its parent exited: its message is there
        assert!(
            worker_here.poll(Some(Duration::ZERO)).unwrap(),
            "{m:?}: worker not joined"
        );
        assert_eq!(worker_here.recv_bounded::<String>(), "finished");
        // the daemon grandchild was terminated: its end of the pipe closed without a message
        assert!(
            daemon_here.poll(Some(Duration::from_secs(10))).unwrap(),
            "{m:?}: daemon still running"
        );
        assert!(
            matches!(daemon_here.recv::<String>(), Err(Error::Eof)),
            "{m:?}"
        );
    }
}

#[test]
fn unserializable_argument_fails_at_start() {
    let (a, _b) = pipe(true).unwrap();
    // a Connection inside a value sent through a connection that cannot carry it is refused
    // (a one-way pipe), and says why...
    let (_y, x) = pipe(false).unwrap();
    assert!(matches!(x.send(&a), Err(Error::HandlesNotCarried(_))));
    // ...and an argument that cannot be serialized is an error of `start`, in the caller
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Bad(#[serde(serialize_with = "fail")] u8);
    fn fail<S: serde::Serializer>(_: &u8, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("not today"))
    }
    fn takes_bad(_: Bad) {}
    let p = Process::new(takes_bad, Bad(1));
    assert!(matches!(p.start(), Err(Error::Pickle(_))));
}

#[test]
fn wait_returns_every_ready_object_not_only_the_buffered_ones() {
    // `b` reads ahead: two messages arrive in one read, one is left in its buffer.
    let (a, b) = pipe(true).unwrap();
    let (c, d) = pipe(true).unwrap();
    a.send_bytes(b"one").unwrap();
    a.send_bytes(b"two").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"one");
    c.send_bytes(b"three").unwrap();
    let t = Duration::from_secs(10);
    assert_eq!(wait_timeout(&[&b, &d], t).unwrap(), [0, 1]);
    assert_eq!(wait_timeout(&[&d, &b], t).unwrap(), [0, 1]);
    // A reaped process (ready without asking the OS) beside a readable pipe.
    let p = Process::new(unit, ());
    p.start().unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
    assert_eq!(wait_timeout(&[&p as &dyn Waitable, &d], t).unwrap(), [0, 1]);
    assert_eq!(b.recv_bytes().unwrap(), b"two");
    assert_eq!(d.recv_bytes().unwrap(), b"three");
    assert!(wait_timeout(&[&b, &d], Duration::from_millis(20))
        .unwrap()
        .is_empty());
}

fn huge_panic(len: usize) {
    let middle = "x".repeat(len);
    panic!("HEAD{middle}TAIL");
}

#[test]
fn a_huge_panic_message_never_hangs_join() {
    // Far over a socket's buffer (about 210 KB): the child's report used to block its exit
    // while the parent read reports only after the exit.
    for &m in methods() {
        let p = Process::new(huge_panic, 512 << 10).start_method(m);
        p.start().unwrap();
        assert_eq!(
            p.join_timeout(Duration::from_secs(60)).unwrap(),
            Some(1),
            "{m:?}: join hung on a big panic message"
        );
        let msg = p.panic_message().expect("the message is reported");
        assert!(msg.starts_with("HEADxxx"), "{m:?}: head kept");
        assert!(msg.ends_with("xxxTAIL"), "{m:?}: tail kept");
        assert!(msg.contains(" bytes cut ...]"), "{m:?}: the cut is said");
        assert!(msg.len() < 64 * 1024, "{m:?}: {} bytes", msg.len());
    }
}

fn assert_big_vectors_equal(n: usize) {
    let a: Vec<u64> = (0..n as u64).collect();
    let mut b = a.clone();
    b[n / 2] = 0;
    assert_eq!(a, b);
}

#[test]
fn a_failed_assert_on_big_vectors_is_reported() {
    for &m in methods() {
        let p = Process::new(assert_big_vectors_equal, 30_000).start_method(m);
        p.start().unwrap();
        assert_eq!(
            p.join_timeout(Duration::from_secs(60)).unwrap(),
            Some(1),
            "{m:?}"
        );
        let msg = p.panic_message().unwrap();
        assert!(msg.starts_with("assertion `left == right` failed"), "{m:?}");
        assert!(msg.contains("bytes cut"), "{m:?}");
    }
}

#[cfg(unix)]
extern "C" {
    fn getppid() -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Say who our parent is (for a forkserver child: the forkserver), wait for the go, then end
/// the way `how` says.
#[cfg(unix)] // the forkserver
fn tell_parent_then_end((conn, how): (Connection, i32)) {
    // SAFETY: getppid has no preconditions.
    conn.send(&unsafe { getppid() }).unwrap();
    assert!(conn.poll(Some(Duration::from_secs(30))).unwrap());
    let _ = conn.recv::<()>();
    std::thread::sleep(Duration::from_millis(300));
    match how {
        0 => {}
        // SAFETY: signalling ourselves.
        -9 => unsafe {
            kill(std::process::id() as i32, 9);
        },
        n => std::process::exit(n),
    }
}

/// Zombie children of this process among `pids`.
#[cfg(unix)] // the forkserver
fn zombies_among(pids: &[i32]) -> Vec<i32> {
    let me = std::process::id().to_string();
    pids.iter()
        .copied()
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'
            let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
            let mut f = rest.split(' ');
            let (state, ppid) = (f.next(), f.next());
            state == Some("Z") && ppid == Some(me.as_str())
        })
        .collect()
}

/// In a process of its own (so no other test loses its forkserver): `rounds` times, kill the
/// forkserver while its child runs, and collect what `join` said. Returns the codes, the dead
/// servers left as zombies, and the exit code of one more forkserver child afterwards.
#[cfg(unix)] // the forkserver
fn kill_forkservers((out, rounds, how): (Connection, usize, i32)) {
    let mut codes = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..rounds {
        let (here, there) = pipe(true).unwrap();
        let p =
            Process::new(tell_parent_then_end, (there, how)).start_method(StartMethod::Forkserver);
        p.start().unwrap();
        assert!(here.poll(Some(Duration::from_secs(30))).unwrap());
        let server: i32 = here.recv().unwrap();
        assert_ne!(
            server,
            std::process::id() as i32,
            "the forkserver is the parent"
        );
        // SAFETY: plain libc call on a pid that is our own child (the forkserver).
        assert_eq!(unsafe { kill(server, 9) }, 0);
        here.send(&()).unwrap();
        codes.push(p.join_timeout(Duration::from_secs(30)).unwrap());
        servers.push(server);
    }
    let zombies = zombies_among(&servers);
    let next = Process::new(exit_with, 7).start_method(StartMethod::Forkserver);
    next.start().unwrap();
    let next_code = next.join_timeout(Duration::from_secs(30)).unwrap();
    out.send(&(codes, zombies, next_code)).unwrap();
}

#[cfg(unix)] // the forkserver
fn run_forkserver_killer(rounds: usize, how: i32) -> (Vec<Option<i32>>, Vec<i32>, Option<i32>) {
    let (here, there) = pipe(true).unwrap();
    let p = Process::new(kill_forkservers, (there, rounds, how)).start_method(StartMethod::Spawn);
    p.start().unwrap();
    assert!(
        here.poll(Some(Duration::from_secs(120))).unwrap(),
        "the forkserver killer did not finish"
    );
    let r = here.recv().unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
    r
}

#[test]
#[cfg(unix)] // the forkserver
fn a_dead_forkserver_does_not_lie_about_its_children() {
    let (codes, zombies, next) = run_forkserver_killer(20, 0);
    assert_eq!(codes, vec![Some(0); 20], "the child's real exit code");
    assert!(
        zombies.is_empty(),
        "dead forkservers left as zombies: {zombies:?}"
    );
    assert_eq!(next, Some(7), "the next forkserver child works");
}

#[test]
#[cfg(unix)] // the forkserver
fn a_dead_forkservers_child_that_exits_or_is_killed() {
    // `exit(n)`: the child says n itself (glibc tells an exit handler the status).
    let (codes, zombies, next) = run_forkserver_killer(3, 5);
    if cfg!(target_env = "gnu") {
        assert_eq!(codes, vec![Some(5); 3]);
    } else {
        assert_eq!(codes, vec![Some(255); 3]);
    }
    assert!(zombies.is_empty(), "{zombies:?}");
    assert_eq!(next, Some(7));
    // Killed by a signal once its server is dead: nobody knows, and join says so (255).
    let (codes, zombies, _) = run_forkserver_killer(3, -9);
    assert_eq!(codes, vec![Some(255); 3]);
    assert!(zombies.is_empty(), "{zombies:?}");
}

fn tell_pid_then_sleep((conn, ms): (Connection, u64)) {
    conn.send(&std::process::id()).unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    let _ = conn.send(&"finished");
}

/// Start a child with `method` (a daemon or not) that tells its pid and sleeps `ms`, from a
/// thread that ends at once, then wait to be killed.
fn start_and_wait_for_death((conn, method, daemon, ms): (Connection, StartMethod, bool, u64)) {
    let child = std::thread::spawn(move || {
        let p = Process::new(tell_pid_then_sleep, (conn, ms))
            .start_method(method)
            .daemon(daemon);
        p.start().unwrap();
        p
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_secs(60));
    drop(child);
}

#[test]
fn daemon_children_die_with_a_killed_parent_others_live_on() {
    for &m in methods() {
        let (here, there) = pipe(true).unwrap();
        let p = Process::new(start_and_wait_for_death, (there, m, true, 30_000));
        p.start().unwrap();
        assert!(here.poll(Some(Duration::from_secs(30))).unwrap(), "{m:?}");
        let _daemon_pid: u32 = here.recv().unwrap();
        // The thread that started the daemon has ended: the daemon lives on with its parent.
        assert!(
            !here.poll(Some(Duration::from_millis(300))).unwrap(),
            "{m:?}: the daemon died with the thread that started it"
        );
        p.kill().unwrap();
        assert_eq!(
            p.join_timeout(Duration::from_secs(30)).unwrap(),
            Some(KILLED)
        );
        // The daemon (the only other holder of `there`) dies: end of file, no message.
        assert!(
            here.poll(Some(Duration::from_secs(10))).unwrap(),
            "{m:?}: the daemon outlived its parent"
        );
        assert!(matches!(here.recv::<String>(), Err(Error::Eof)), "{m:?}");

        // A non-daemon child keeps running and finishes its task, as in Python.
        let (here, there) = pipe(true).unwrap();
        let p = Process::new(start_and_wait_for_death, (there, m, false, 500));
        p.start().unwrap();
        assert!(here.poll(Some(Duration::from_secs(30))).unwrap(), "{m:?}");
        let _pid: u32 = here.recv().unwrap();
        p.kill().unwrap();
        assert_eq!(
            p.join_timeout(Duration::from_secs(30)).unwrap(),
            Some(KILLED)
        );
        assert!(here.poll(Some(Duration::from_secs(30))).unwrap(), "{m:?}");
        assert_eq!(here.recv::<String>().unwrap(), "finished", "{m:?}");
    }
}

/// In a running child: take a connection, then a raw descriptor, over the connection it was
/// started with, and use both.
fn take_handles_while_running(conn: Connection) {
    use std::io::Write;
    let other: Connection = conn.recv_bounded();
    other.send(&"over the received connection").unwrap();
    let mut file = std::fs::File::from(conn.recv_handle().unwrap());
    file.write_all(b"written by the child").unwrap();
    drop(file);
    conn.send(&"done").unwrap();
}

#[test]
fn connections_and_descriptors_reach_a_running_child() {
    use std::io::{Read, Seek};
    #[cfg(unix)]
    use std::os::fd::AsFd;
    #[cfg(windows)]
    use std::os::windows::io::AsHandle;
    for &m in methods() {
        let (here, there) = pipe(true).unwrap();
        let p = Process::new(take_handles_while_running, there).start_method(m);
        p.start().unwrap();
        // (started first: these cross the open connection, not the process-start transfer)
        let (x, y) = pipe(true).unwrap();
        here.send(&x).unwrap();
        drop(x);
        assert_eq!(
            y.recv_bounded::<String>(),
            "over the received connection",
            "{m:?}"
        );
        let path =
            std::env::temp_dir().join(format!("mp-fd-transfer-{}-{m:?}", std::process::id()));
        let mut file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        #[cfg(unix)]
        std::fs::remove_file(&path).unwrap();
        #[cfg(unix)]
        here.send_handle(file.as_fd()).unwrap();
        #[cfg(windows)]
        here.send_handle(file.as_handle()).unwrap();
        assert_eq!(here.recv_bounded::<String>(), "done", "{m:?}");
        let mut text = String::new();
        file.rewind().unwrap();
        file.read_to_string(&mut text).unwrap();
        #[cfg(windows)]
        {
            drop(file);
            std::fs::remove_file(&path).unwrap();
        }
        assert_eq!(text, "written by the child", "{m:?}");
        assert_eq!(p.join_bounded(), 0, "{m:?}");
    }
}

/// Not a test of speed: prints what a spawn and join of a child doing nothing costs here.
#[test]
fn spawn_join_time_is_printed() {
    let n = 10;
    let t = Instant::now();
    for _ in 0..n {
        let p = Process::new(unit, ());
        p.start().unwrap();
        assert_eq!(p.join_bounded(), 0);
    }
    let each = t.elapsed() / n;
    let t = Instant::now();
    let p = Process::new(unit, ()).daemon(true);
    p.start().unwrap();
    assert_eq!(p.join_bounded(), 0);
    eprintln!(
        "spawn+join of a child doing nothing: {each:?} each ({n} runs); a daemon: {:?}",
        t.elapsed()
    );
}

#[test]
fn a_missing_executable_is_an_error_of_start() {
    let nowhere = std::env::temp_dir()
        .join(format!("multiproc-nowhere-{}", std::process::id()))
        .join(if cfg!(windows) { "none.exe" } else { "none" });
    let p = Process::new(unit, ()).executable(&nowhere);
    match p.start() {
        Err(Error::Start(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}"),
        other => panic!("expected a start error, got {other:?}"),
    }
    assert_eq!(p.pid(), None);
    assert!(matches!(p.join(), Err(Error::ProcessClosed)));
    assert!(!active_children().iter().any(|c| c.name() == p.name()));
}
