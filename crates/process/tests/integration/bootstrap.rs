//! The start path: which processes count as children (bootstrap variables and the child
//! marker), what a child inherits from its parent (daemon flag, start method, stdin), how a
//! child's panic is named, the warning for forking a threaded parent, and the build check.
//!
//! Several tests run this very test binary again as a program of its own (with `run_self`):
//! to give it a hostile environment, to give it a standard input, to read its stderr, or to
//! get a process with nothing forked yet. What such a run executes is an `#[ignore]`d *probe*
//! test, named on its command line.

use std::io::Read;
use std::process::Command;
#[cfg(unix)]
use std::sync::Mutex;

use crate::bounded::{run_bounded, JoinBounded, Ran, RecvBounded, BOUND};
use multiproc_process::{
    current_process, get_context, get_start_method, pipe, Connection, Error, Process, StartMethod,
};

/// Every start method of this platform (spawn, fork, forkserver on Unix; spawn on Windows).
fn methods() -> &'static [StartMethod] {
    StartMethod::available()
}

/// The marker a multiproc child gets as its first argument.
#[cfg(unix)]
const MARKER: &str = "--multiproc-child";

/// Run this test binary with `args` and `env` (and `input` on its stdin), without the
/// bootstrap variables of this process's own environment.
fn run_self(args: &[&str], env: &[(&str, &str)], input: &[u8]) -> Ran {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(args)
        .env_remove("MULTIPROC_BOOTSTRAP")
        .env_remove("MULTIPROC_FORKSERVER")
        .envs(env.iter().copied());
    run_bounded(&mut cmd, input)
}

/// Run the `#[ignore]`d probe test `name` of this binary in a program of its own.
fn run_probe(name: &str, env: &[(&str, &str)], input: &[u8]) -> Ran {
    let path = format!("bootstrap::{name}");
    let ran = run_self(
        &[
            "--ignored",
            "--exact",
            &path,
            "--nocapture",
            "--test-threads=1",
        ],
        env,
        input,
    );
    assert!(
        ran.code == Some(0) && ran.stdout.contains("1 passed"),
        "probe {name} failed: {ran:?}"
    );
    ran
}

#[cfg(unix)]
extern "C" {
    fn dup2(old: i32, new: i32) -> i32;
    fn fcntl(fd: i32, cmd: i32, ...) -> i32;
}

/// `fcntl`'s "set descriptor flags" (Linux and the BSDs alike).
#[cfg(unix)]
const F_SETFD: i32 = 2;

/// Run this binary as a multiproc child (the marker) with `var=value`, with descriptor `fd`
/// (if any) at number `at`. It must stop at once with 1 and say why, naming the variable.
/// (Windows: see `process_windows`.)
#[cfg(unix)]
fn refused_as_child(var: &str, value: &str, fd: Option<(std::os::fd::RawFd, i32)>) -> Ran {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg(MARKER)
        .env_remove("MULTIPROC_BOOTSTRAP")
        .env_remove("MULTIPROC_FORKSERVER")
        .env(var, value);
    if let Some((fd, at)) = fd {
        // SAFETY: the closure only calls dup2 and fcntl, which are async-signal-safe, on
        // descriptors this process holds open until the command has run.
        unsafe {
            cmd.pre_exec(move || {
                // (dup2 onto itself would leave close-on-exec set: the child would find the
                // number closed, which happened whenever the descriptor already had it)
                let r = if fd == at {
                    fcntl(fd, F_SETFD, 0)
                } else {
                    dup2(fd, at)
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let ran = run_bounded(&mut cmd, b"");
    assert_eq!(ran.code, Some(1), "{var}={value}: {ran:?}");
    assert!(
        ran.stderr.contains(&format!("{var}=\"{value}\"")) && ran.stderr.contains("stopping"),
        "{var}={value}: {ran:?}"
    );
    assert!(
        ran.stdout.is_empty(),
        "{var}={value}: wrote to stdout: {ran:?}"
    );
    assert!(
        !ran.stderr.contains("running"),
        "{var}={value}: ran main: {ran:?}"
    );
    ran
}

#[test]
#[cfg(unix)] // descriptors (Windows: `process_windows`)
fn a_child_with_a_bad_bootstrap_variable_says_why_it_stops() {
    for (value, why) in [
        ("-1", "is not a descriptor number"),
        ("abc", "is not a descriptor number"),
        ("", "is not a descriptor number"),
        ("0", "standard input"),
        ("1", "standard output"),
        ("2", "standard error"),
        ("99", "is not an open descriptor"),
    ] {
        let ran = refused_as_child("MULTIPROC_BOOTSTRAP", value, None);
        assert!(ran.stderr.contains(why), "{value}: {ran:?}");
    }
    for value in ["7", "-3", "1"] {
        refused_as_child("MULTIPROC_FORKSERVER", value, None);
    }
}

#[test]
#[cfg(unix)] // descriptors and sockets (Windows: `process_windows`)
fn a_child_whose_bootstrap_descriptor_is_no_stream_socket_stops() {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    let ran = refused_as_child("MULTIPROC_BOOTSTRAP", "5", Some((file.as_raw_fd(), 5)));
    assert!(ran.stderr.contains("is not a socket"), "{ran:?}");
    let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let ran = refused_as_child("MULTIPROC_BOOTSTRAP", "6", Some((a.as_raw_fd(), 6)));
    assert!(ran.stderr.contains("is not a stream socket"), "{ran:?}");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ran = refused_as_child("MULTIPROC_FORKSERVER", "7", Some((tcp.as_raw_fd(), 7)));
    assert!(
        ran.stderr.contains("is not a Unix-domain socket"),
        "{ran:?}"
    );
}

/// Probe: run with stray bootstrap variables and no marker. This is a plain program: `main`
/// (the test harness) runs, and the variables are gone from its environment and its children's.
#[test]
#[ignore = "a probe, run by a_stray_bootstrap_variable_without_the_marker_is_ignored"]
fn stray_variable_probe() {
    assert_eq!(std::env::var_os("MULTIPROC_BOOTSTRAP"), None);
    assert_eq!(std::env::var_os("MULTIPROC_FORKSERVER"), None);
    #[cfg(unix)]
    {
        let out = Command::new("sh")
            .args([
                "-c",
                "echo ${MULTIPROC_BOOTSTRAP-none},${MULTIPROC_FORKSERVER-none}",
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "none,none");
    }
    #[cfg(windows)]
    {
        // `set PREFIX` lists the variables whose names start with it.
        let out = Command::new("cmd")
            .args(["/c", "set", "MULTIPROC_"])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&out.stdout).to_uppercase();
        assert!(!listed.contains("MULTIPROC_BOOTSTRAP="), "{listed}");
        assert!(!listed.contains("MULTIPROC_FORKSERVER="), "{listed}");
    }
    let p = Process::new(unit, ());
    p.start().unwrap();
    assert_eq!(p.join_bounded(), 0);
}

#[test]
fn a_stray_bootstrap_variable_without_the_marker_is_ignored() {
    for (boot, server) in [("3", "4"), ("1", "0"), ("-1", "x")] {
        run_probe(
            "stray_variable_probe",
            &[
                ("MULTIPROC_BOOTSTRAP", boot),
                ("MULTIPROC_FORKSERVER", server),
            ],
            b"",
        );
    }
}

fn unit(_: ()) {}

/// In a daemon child: what a new process defaults to, whether a non-daemon child is refused,
/// and whether a default (daemon) child runs.
fn daemon_makes_children(conn: Connection) {
    let inherited = Process::new(unit, ()).is_daemon();
    let refused = matches!(
        Process::new(unit, ()).daemon(false).start(),
        Err(Error::DaemonWithNonDaemonChild)
    );
    let p = Process::new(unit, ());
    p.start().unwrap();
    let code = p.join_bounded();
    conn.send(&(current_process().daemon, inherited, refused, code))
        .unwrap();
}

#[test]
fn a_daemons_children_are_daemons_and_never_outlive_it() {
    for &method in methods() {
        let (here, there) = pipe(true).unwrap();
        let p = Process::new(daemon_makes_children, there)
            .daemon(true)
            .start_method(method);
        p.start().unwrap();
        assert_eq!(
            here.recv_bounded::<(bool, bool, bool, i32)>(),
            (true, true, true, 0),
            "{method:?}"
        );
        assert_eq!(p.join_bounded(), 0);
    }
    // The main program's children are not daemons unless asked.
    assert!(!Process::new(unit, ()).is_daemon());
}

fn tell_method(conn: Connection) {
    conn.send(&get_start_method().name().to_string()).unwrap();
}

/// A child's default start method is its own: it says so, and so does the grandchild it
/// starts without naming a method.
fn start_default_grandchild(conn: Connection) {
    conn.send(&get_start_method().name().to_string()).unwrap();
    let g = Process::new(tell_method, conn);
    g.start().unwrap();
    assert_eq!(g.join_bounded(), 0);
}

#[test]
fn a_child_adopts_its_start_method_as_its_default() {
    for &method in methods() {
        let (here, there) = pipe(true).unwrap();
        let p = get_context(method)
            .unwrap()
            .process(start_default_grandchild, there);
        p.start().unwrap();
        assert_eq!(here.recv_bounded::<String>(), method.name(), "child");
        assert_eq!(here.recv_bounded::<String>(), method.name(), "grandchild");
        assert_eq!(p.join_bounded(), 0);
    }
}

fn read_stdin(conn: Connection) {
    let mut got = Vec::new();
    std::io::stdin().read_to_end(&mut got).unwrap();
    conn.send(&got).unwrap();
}

/// Probe: its stdin holds a line; its children (every method) read nothing from theirs, and
/// the line is still there for it afterwards.
#[test]
#[ignore = "a probe, run by children_never_read_their_parents_stdin"]
fn stdin_probe() {
    for &method in methods() {
        let (here, there) = pipe(true).unwrap();
        let p = Process::new(read_stdin, there).start_method(method);
        p.start().unwrap();
        assert_eq!(here.recv_bounded::<Vec<u8>>(), b"", "{method:?}");
        assert_eq!(p.join_bounded(), 0);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    assert_eq!(line, "the parent's input\n");
}

#[test]
fn children_never_read_their_parents_stdin() {
    run_probe("stdin_probe", &[], b"the parent's input\n");
}

fn panic_here(msg: String) {
    panic!("{msg}");
}

/// Probe: named children panic under every method; their messages reach the parent unchanged.
#[test]
#[ignore = "a probe, run by a_childs_panic_names_the_process"]
fn panic_probe() {
    for &method in methods() {
        let p = Process::new(panic_here, format!("boom in {}", method.name()))
            .with_name(format!("Worker-{}", method.name()))
            .start_method(method);
        p.start().unwrap();
        assert_eq!(p.join_bounded(), 1);
        assert_eq!(
            p.panic_message().as_deref(),
            Some(format!("boom in {}", method.name()).as_str())
        );
    }
}

#[test]
fn a_childs_panic_names_the_process() {
    let ran = run_probe("panic_probe", &[], b"");
    for &method in methods() {
        let name = format!("Process Worker-{}:\n", method.name());
        let at = ran
            .stderr
            .find(&name)
            .unwrap_or_else(|| panic!("{name:?}: {ran:?}"));
        let after = &ran.stderr[at + name.len()..];
        let first = after.lines().find(|l| !l.is_empty()).unwrap_or_default();
        assert!(
            first.contains("panicked"),
            "{name:?} then {first:?}: {ran:?}"
        );
        assert!(
            after.contains(&format!("boom in {}", method.name())),
            "{ran:?}"
        );
    }
}

/// Captures warnings' fields, as text.
#[cfg(unix)]
struct Capture(Mutex<Vec<String>>);

#[cfg(unix)]
struct Fields(String);

#[cfg(unix)]
impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0 += &format!("{}={:?} ", field.name(), value);
    }
}

#[cfg(unix)]
impl tracing::Subscriber for Capture {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        *meta.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut f = Fields(String::new());
        event.record(&mut f);
        self.0.lock().unwrap().push(f.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Probe: a spawn start warns of nothing; forking with three more threads warns once, with
/// the thread count, however often it forks.
#[test]
#[cfg(unix)] // fork
#[ignore = "a probe, run by forking_a_threaded_parent_warns_once"]
fn fork_warning_probe() {
    static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));
    struct Global;
    impl tracing::Subscriber for Global {
        fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
            CAPTURE.enabled(m)
        }
        fn new_span(&self, a: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            CAPTURE.new_span(a)
        }
        fn record(&self, i: &tracing::span::Id, r: &tracing::span::Record<'_>) {
            CAPTURE.record(i, r)
        }
        fn record_follows_from(&self, a: &tracing::span::Id, b: &tracing::span::Id) {
            CAPTURE.record_follows_from(a, b)
        }
        fn event(&self, e: &tracing::Event<'_>) {
            CAPTURE.event(e)
        }
        fn enter(&self, i: &tracing::span::Id) {
            CAPTURE.enter(i)
        }
        fn exit(&self, i: &tracing::span::Id) {
            CAPTURE.exit(i)
        }
    }
    tracing::subscriber::set_global_default(Global).unwrap();
    let p = Process::new(unit, ());
    p.start().unwrap();
    assert_eq!(p.join_bounded(), 0);
    assert_eq!(
        *CAPTURE.0.lock().unwrap(),
        Vec::<String>::new(),
        "spawn warned"
    );
    let (stop, wait) = std::sync::mpsc::channel::<()>();
    let wait = std::sync::Arc::new(Mutex::new(wait));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let wait = wait.clone();
            std::thread::spawn(move || {
                let _ = wait.lock().unwrap().recv_timeout(BOUND);
            })
        })
        .collect();
    for _ in 0..3 {
        let p = Process::new(unit, ()).start_method(StartMethod::Fork);
        p.start().unwrap();
        assert_eq!(p.join_bounded(), 0);
    }
    drop(stop);
    for t in threads {
        t.join().unwrap();
    }
    let got = CAPTURE.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let threads: usize = got[0]
        .split_whitespace()
        .find_map(|f| f.strip_prefix("threads="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no thread count in {got:?}"));
    assert!(threads >= 4, "{got:?}");
    assert!(
        got[0].contains("forkserver"),
        "the warning names the way out: {got:?}"
    );
}

#[test]
#[cfg(unix)] // fork
fn forking_a_threaded_parent_warns_once() {
    run_probe("fork_warning_probe", &[], b"");
}

/// Write a copy of this executable to `to`: with `other_build`, another build to the
/// fingerprint (a byte of its build-id changed, or another modification time where the binary
/// has no build-id); otherwise the same build with another modification time. Run in a child
/// of its own: a write descriptor open in the test process would be inherited by any child
/// another test forks meanwhile, until its `exec`, and executing the copy then fails with
/// "Text file busy".
fn write_copy((to, other_build): (std::path::PathBuf, bool)) {
    let mut bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    if let (true, Some(id)) = (other_build, multiproc_pickle::build_id()) {
        let at = bytes
            .windows(id.len())
            .position(|w| w == id)
            .expect("the build-id is in the file");
        bytes[at] ^= 0xff;
    }
    std::fs::write(&to, &bytes).unwrap();
    let f = std::fs::File::options().write(true).open(&to).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
}

/// A copy of this binary (see [`write_copy`]), in a directory of its own; on Windows beside
/// the original, where it finds the same DLLs (Windows looks for them in the executable's
/// directory first).
fn copy_of_this_binary(name: &str, other_build: bool) -> std::path::PathBuf {
    #[cfg(unix)]
    let copy = {
        let dir = std::env::temp_dir().join(format!("multiproc-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    };
    #[cfg(windows)]
    let copy = std::env::current_exe()
        .unwrap()
        .with_file_name(format!("multiproc-{name}-{}.exe", std::process::id()));
    let writer = Process::new(write_copy, (copy.clone(), other_build));
    writer.start().unwrap();
    assert_eq!(writer.join_bounded(), 0);
    copy
}

/// Remove what [`copy_of_this_binary`] made.
fn remove_copy(copy: &std::path::Path) {
    #[cfg(unix)]
    std::fs::remove_dir_all(copy.parent().unwrap()).unwrap();
    #[cfg(windows)]
    std::fs::remove_file(copy).unwrap();
}

#[test]
fn other_build_refuses() {
    let copy = copy_of_this_binary("other-build", true);
    let p = Process::new(unit, ()).executable(&copy);
    p.start().unwrap();
    match p.join_timeout(BOUND) {
        Err(Error::Refused(why)) => assert!(why.contains("fingerprint"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(p.exitcode(), Some(1));
    remove_copy(&copy);
}

/// A copy of the binary is the same build when it has a build-id (a copied file gets a new
/// modification time, and on another host any): it runs the task. Without a build-id the
/// fingerprint can only go by size and time, and refuses it.
#[test]
fn a_copy_of_the_same_build_runs_its_task() {
    let copy = copy_of_this_binary("same-build", false);
    let p = Process::new(unit, ()).executable(&copy);
    p.start().unwrap();
    let got = p.join_timeout(BOUND);
    if multiproc_pickle::build_id().is_some() {
        assert!(matches!(got, Ok(Some(0))), "{got:?}");
    } else {
        assert!(matches!(got, Err(Error::Refused(_))), "{got:?}");
    }
    remove_copy(&copy);
}
