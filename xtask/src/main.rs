//! Maintainer tasks for the multiproc workspace, run as `cargo xtask <task>`.
//!
//! * `cargo xtask ci`: formatting, the doc-path check (examples name `multiproc::` paths only),
//!   clippy (`-D warnings`), every test, the Windows suites and examples under Wine, docs
//!   (`-D warnings`), then `cargo check` for Windows (msvc) and macOS (both arches, warnings
//!   denied), then the published crates on the `rust-version` toolchain (installed with rustup
//!   if missing). Stops at the first failing step.
//! * `cargo xtask test --windows`: the test suites of `windows::CRATES` and the seed examples,
//!   built for `x86_64-pc-windows-gnu` and run under Wine (module `windows`).
//! * `cargo xtask check [--macos] [--windows]` (`cross` is the same): only the cross-target
//!   checks.
//! * `cargo xtask bench [--quick]`: our benchmarks, CPython's `multiprocessing` and the OS limits
//!   (`../shared/bench/`) on this machine, in one table (also written to
//!   `target/bench-report.txt`). `--windows`: `spawn_join` and `pipe_rtt` under Wine beside
//!   Linux's.
//!
//! Standard library only, so it builds in a moment.

mod cargo_json;
mod docpaths;
mod json;
mod msrv;
mod supervise;
mod windows;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// How long the test suite may run once built. Every blocking call in a test has its own bound,
/// so this is the backstop for a defect no bound covers: CI fails instead of stalling.
const TEST_DEADLINE: Duration = Duration::from_secs(20 * 60);

/// The Windows target `cargo xtask check` checks (the Wine runs use the GNU one).
const WINDOWS_CHECK_TARGETS: &[&str] = &["x86_64-pc-windows-msvc"];

/// The macOS targets `cargo xtask check` checks, warnings denied.
const MACOS_TARGETS: &[&str] = &["x86_64-apple-darwin", "aarch64-apple-darwin"];

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  ci              fmt --check, doc paths, clippy -D warnings, test, the Windows tests under
                  Wine, doc -D warnings, cross-target checks, MSRV check
  test --windows [--suites-only | --examples-only] [-p CRATE]... [--filter TEXT]...
                 [--skip SUITE:TEST]... [--timeout SECS] [-- LIBTEST-ARGS...]
                  the test suites of the crates in xtask/src/windows/mod.rs (CRATES) and
                  the seed examples, built for x86_64-pc-windows-gnu and run under Wine
                  (needs wine, wine64, gcc-mingw-w64-x86-64 and the rustup target; .ci/run
                  installs them).
                  -p, --filter: only those crates' suites, only the tests whose names
                  contain TEXT (no examples then); --skip: one more test to leave out, as
                  in xtask/src/windows/skips.rs; --timeout: per suite (default 300);
                  LIBTEST-ARGS go to every suite (e.g. --test-threads=1)
  check [--macos] [--windows]
                  cargo check --workspace --all-targets for x86_64-apple-darwin and
                  aarch64-apple-darwin (-D warnings) and x86_64-pc-windows-msvc; both if no
                  flag (`cross` is the same task)
  bench [--quick] our benchmarks vs CPython multiprocessing vs OS limits, one table
                  (needs ../shared/bench, python3 and cc; report in target/bench-report.txt)
  bench --windows [--quick]
                  spawn_join and pipe_rtt built for Windows and run under Wine, beside
                  Linux's (information only)";

/// A failed task: what to tell the user.
type Res<T = ()> = Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("ci") => no_more_args(&args).and_then(|()| ci()),
        Some("test") => parse_test(&args[1..]).and_then(|o| windows::test(&o)),
        Some("check" | "cross") => parse_check(&args[1..]).and_then(|(m, w)| check(m, w)),
        Some("bench") => {
            let rest = &args[1..];
            let quick = rest.iter().any(|a| a == "--quick");
            let on_windows = rest.iter().any(|a| a == "--windows");
            if let Some(a) = rest.iter().find(|a| *a != "--quick" && *a != "--windows") {
                Err(format!("unexpected argument {a:?}\n\n{USAGE}"))
            } else if on_windows {
                windows::bench(quick)
            } else {
                bench(quick)
            }
        }
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task {other:?}\n\n{USAGE}")),
        None => Err(USAGE.to_string()),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The arguments of `test`: `--windows` is required (the Linux tests are `cargo test`).
fn parse_test(args: &[String]) -> Res<windows::Opts> {
    let mut o = windows::Opts::default();
    let mut on_windows = false;
    let mut it = args.iter();
    let bad = |a: &str| Err(format!("unexpected argument {a:?}\n\n{USAGE}"));
    while let Some(a) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs {what}\n\n{USAGE}"))
        };
        match a.as_str() {
            "--windows" => on_windows = true,
            "--suites-only" => o.examples = false,
            "--examples-only" => o.suites = false,
            "-p" | "--package" => o.crates.push(value("a crate name")?),
            "--filter" => o.selection.filters.push(value("a part of a test name")?),
            "--skip" => o
                .extra_skips
                .push(windows::skip_from_arg(&value("SUITE:TEST")?)?),
            "--timeout" => {
                let v = value("a number of seconds")?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("--timeout {v:?}: not a number of seconds"))?;
                o.selection.deadline = Duration::from_secs(secs);
            }
            "--" => {
                o.selection.libtest_args.extend(it.by_ref().cloned());
            }
            other => return bad(other),
        }
    }
    if !on_windows {
        return Err(format!(
            "`cargo xtask test` runs the Windows tests under Wine and needs --windows (the \
             Linux tests are `cargo test`)\n\n{USAGE}"
        ));
    }
    if !o.suites && !o.examples {
        return Err("--suites-only and --examples-only exclude each other".into());
    }
    if !o.crates.is_empty() || !o.selection.filters.is_empty() {
        // A crate or test filter narrows the suites: the examples are a part of their own.
        o.examples = false;
    }
    Ok(o)
}

/// The arguments of `check`: (macOS, Windows); both if neither is named.
fn parse_check(args: &[String]) -> Res<(bool, bool)> {
    let (mut macos, mut win) = (false, false);
    for a in args {
        match a.as_str() {
            "--macos" => macos = true,
            "--windows" => win = true,
            other => return Err(format!("unexpected argument {other:?}\n\n{USAGE}")),
        }
    }
    Ok(if macos || win {
        (macos, win)
    } else {
        (true, true)
    })
}

fn no_more_args(args: &[String]) -> Res {
    if args.len() > 1 {
        return Err(format!("unexpected arguments {:?}\n\n{USAGE}", &args[1..]));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// paths and commands

/// The workspace root: the parent of this crate's directory.
fn root() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    dir.parent().map(Path::to_path_buf).unwrap_or(dir)
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, relative to the root, or `<root>/target`).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => root().join(d),
        _ => root().join("target"),
    }
}

/// The cargo that runs us (`$CARGO`), else `cargo` from `PATH`.
fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// A command run in the workspace root.
fn cmd(program: impl Into<OsString>, args: &[&str]) -> Command {
    let mut c = Command::new(program.into());
    c.args(args).current_dir(root());
    c
}

fn cargo_cmd(args: &[&str]) -> Command {
    cmd(cargo(), args)
}

fn describe(c: &Command) -> String {
    let mut s = String::new();
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            let _ = write!(s, "{}={:?} ", k.to_string_lossy(), v.to_string_lossy());
        }
    }
    let prog = Path::new(c.get_program());
    // `$CARGO` is an absolute path: show its name only.
    s.push_str(
        &prog
            .file_name()
            .unwrap_or(prog.as_os_str())
            .to_string_lossy(),
    );
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run `c` with inherited output; an error if it cannot start or does not succeed.
fn run(mut c: Command) -> Res {
    let what = describe(&c);
    let status = c
        .status()
        .map_err(|e| format!("could not run `{what}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{what}` failed ({status})"))
    }
}

/// Run `c` as `run` does, but kill it (and every process it started) if it is still running
/// after `deadline`.
fn run_with_deadline(mut c: Command, deadline: Duration) -> Res {
    let what = describe(&c);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let mut child = c
        .spawn()
        .map_err(|e| format!("could not run `{what}`: {e}"))?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return if status.success() {
                Ok(())
            } else {
                Err(format!("`{what}` failed ({status})"))
            };
        }
        if start.elapsed() > deadline {
            // The whole process group: cargo, the test binary and the children it started.
            #[cfg(unix)]
            let _ = cmd("kill", &["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "`{what}` was still running after {} s and was killed (a hung test: the last \
                 `Running` line above names its binary)",
                deadline.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Run `c`, capturing its standard output (standard error goes to ours).
fn output(mut c: Command) -> Res<String> {
    let what = describe(&c);
    let out = c
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run `{what}`: {e}"))?;
    if !out.status.success() {
        return Err(format!("`{what}` failed ({})", out.status));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("`{what}` printed non-UTF-8 output"))
}

fn header(title: &str) {
    println!("\n==> {title}");
}

/// Print a header for `c` and run it.
fn step(c: Command) -> Res {
    header(&describe(&c));
    run(c)
}

// ---------------------------------------------------------------------------------------------
// ci and cross

fn ci() -> Res {
    step(cargo_cmd(&["fmt", "--all", "--", "--check"]))?;
    header("doc examples use facade paths");
    docpaths::check(&root())?;
    step(cargo_cmd(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    step(cargo_cmd(&["test", "--workspace", "--no-run"]))?;
    let tests = cargo_cmd(&["test", "--workspace"]);
    header(&describe(&tests));
    run_with_deadline(tests, TEST_DEADLINE)?;
    windows::test(&windows::Opts::default())?;
    let mut doc = cargo_cmd(&["doc", "--workspace", "--no-deps"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    step(doc)?;
    check(true, true)?;
    msrv::check(&root())?;
    println!("\nxtask: ci passed");
    Ok(())
}

/// `cargo check --workspace --all-targets` for the macOS targets (warnings denied) and the
/// Windows (msvc) one, each as asked.
fn check(macos: bool, win: bool) -> Res {
    let mut targets = Vec::new();
    if win {
        targets.extend(WINDOWS_CHECK_TARGETS);
    }
    if macos {
        targets.extend(MACOS_TARGETS);
    }
    ensure_targets(&targets)?;
    for t in targets {
        let mut c = cargo_cmd(&["check", "--workspace", "--all-targets", "--target", t]);
        if MACOS_TARGETS.contains(&t) {
            // Code only macOS compiles has no clippy run of its own: deny its warnings here.
            // (With `--target`, RUSTFLAGS reach the target's crates only, not build scripts,
            // and dependencies from crates.io have their lints capped by cargo.)
            let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
            if !flags.is_empty() {
                flags.push(' ');
            }
            flags.push_str("-D warnings");
            c.env("RUSTFLAGS", flags);
        }
        step(c)?;
    }
    Ok(())
}

/// `rustup target add` the targets `rustup target list --installed` lacks.
fn ensure_targets(targets: &[&str]) -> Res {
    let installed = output(cmd("rustup", &["target", "list", "--installed"]))?;
    let missing: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut args = vec!["target", "add"];
    args.extend(&missing);
    step(cmd("rustup", &args))
}

// ---------------------------------------------------------------------------------------------
// bench

/// One `NAME\tVALUE\tUNIT` line.
#[derive(Debug, Clone)]
struct Figure {
    value: f64,
    unit: String,
}

type Figures = HashMap<String, Figure>;

fn parse_figures(text: &str) -> Figures {
    let mut out = Figures::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(name), Some(value), unit) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if let Ok(value) = value.trim().parse::<f64>() {
            let unit = unit.unwrap_or("").trim().to_string();
            out.insert(name.trim().to_string(), Figure { value, unit });
        }
    }
    out
}

/// Seconds per unit for a time unit (`ms/process`, `us/round trip`, ...), `None` for a rate.
fn time_scale(unit: &str) -> Option<f64> {
    let head = unit.split(['/', ' ']).next().unwrap_or("");
    match head {
        "s" => Some(1.0),
        "ms" => Some(1e-3),
        "us" | "µs" => Some(1e-6),
        "ns" => Some(1e-9),
        _ => None,
    }
}

/// The short form of a unit: up to its first parenthesis (`us/round trip (64 B)` → `us/round
/// trip`).
fn short_unit(unit: &str) -> &str {
    unit.split(" (").next().unwrap_or(unit).trim()
}

/// How many times better `ours` is than `other`: `other/ours` for times, `ours/other` for rates.
/// `None` if the units cannot be compared.
fn better(ours: &Figure, other: &Figure) -> Option<f64> {
    if ours.value <= 0.0 || other.value <= 0.0 {
        return None;
    }
    match (time_scale(&ours.unit), time_scale(&other.unit)) {
        (Some(a), Some(b)) => Some((other.value * b) / (ours.value * a)),
        (None, None) if short_unit(&ours.unit) == short_unit(&other.unit) => {
            Some(ours.value / other.value)
        }
        _ => None,
    }
}

/// A goal a row is annotated with.
#[derive(Clone, Copy)]
enum Target {
    /// `speedup vs Python` at least this.
    Speedup(f64),
    /// `fraction of limit` at least this.
    Fraction(f64),
    /// Our own figure at least this (a ratio we measure ourselves, like a speed-up).
    AtLeast(f64),
}

struct Row {
    label: &'static str,
    ours: &'static str,
    /// Which Python run (by start method) and which figure of it.
    python: Option<(&'static str, &'static str)>,
    limit: Option<&'static str>,
    targets: &'static [Target],
}

const ROWS: &[Row] = &[
    Row {
        label: "spawn_join (spawn)",
        ours: "spawn_join",
        python: Some(("spawn", "spawn_join")),
        limit: Some("spawn_join_exec"),
        targets: &[Target::Speedup(40.0)],
    },
    Row {
        label: "spawn_join (fork)",
        ours: "spawn_join_fork",
        python: Some(("fork", "spawn_join")),
        limit: Some("spawn_join_fork"),
        targets: &[Target::Fraction(0.5)],
    },
    Row {
        label: "spawn_join (forkserver)",
        ours: "spawn_join_forkserver",
        python: Some(("forkserver", "spawn_join")),
        limit: Some("spawn_join_fork"),
        targets: &[Target::Fraction(0.25)],
    },
    Row {
        label: "pipe_rtt",
        ours: "pipe_rtt",
        python: Some(("spawn", "pipe_rtt")),
        limit: Some("pipe_rtt"),
        targets: &[Target::Fraction(0.77), Target::Speedup(2.5)],
    },
    Row {
        label: "pipe_bw",
        ours: "pipe_bw",
        python: Some(("spawn", "pipe_bw")),
        limit: Some("pipe_bw"),
        targets: &[Target::Speedup(4.0)],
    },
    Row {
        label: "pipe_bw (limit: 1 MiB pipe)",
        ours: "pipe_bw",
        python: Some(("spawn", "pipe_bw")),
        limit: Some("pipe_bw_1m"),
        targets: &[],
    },
    Row {
        label: "pool_start (spawn)",
        ours: "pool_start",
        python: Some(("spawn", "pool_start")),
        limit: None,
        targets: &[Target::Speedup(20.0)],
    },
    Row {
        label: "apply_async_rtt",
        ours: "apply_async_rtt",
        python: Some(("spawn", "apply_async_rtt")),
        limit: None,
        targets: &[Target::Speedup(10.0)],
    },
    Row {
        label: "map_chunk1 (20k tasks)",
        ours: "map_chunk1",
        python: Some(("spawn", "map_chunk1")),
        limit: None,
        targets: &[Target::Speedup(10.0)],
    },
    Row {
        label: "imap_unordered (20k tasks)",
        ours: "imap_unordered",
        python: Some(("spawn", "imap_unordered")),
        limit: None,
        targets: &[Target::Speedup(10.0)],
    },
    Row {
        label: "map_tiny (200k tasks)",
        ours: "map_tiny",
        python: Some(("spawn", "map_tiny")),
        limit: None,
        targets: &[Target::Speedup(5.0)],
    },
    Row {
        label: "map_cpu_speedup (16 tasks, 2 workers)",
        ours: "map_cpu_speedup",
        python: Some(("spawn", "map_cpu_speedup")),
        limit: None,
        targets: &[Target::AtLeast(1.9)],
    },
    Row {
        label: "lock_uncontended",
        ours: "lock_uncontended",
        python: Some(("spawn", "lock_uncontended")),
        limit: Some("lock_uncontended"),
        targets: &[Target::Fraction(1.0 / 3.0), Target::Speedup(10.0)],
    },
    Row {
        label: "value_contended (2 procs)",
        ours: "value_contended",
        python: Some(("spawn", "value_contended")),
        limit: Some("value_contended"),
        targets: &[Target::Speedup(20.0)],
    },
    Row {
        label: "queue_small",
        ours: "queue_small",
        python: Some(("spawn", "queue_small")),
        limit: Some("queue_small"),
        targets: &[Target::Speedup(20.0)],
    },
    Row {
        label: "queue_big (4 MiB)",
        ours: "queue_big",
        python: Some(("spawn", "queue_big")),
        limit: None,
        targets: &[Target::Speedup(4.0)],
    },
    Row {
        label: "array_fill (limit: shm_fill)",
        ours: "array_fill",
        python: Some(("spawn", "array_fill")),
        limit: Some("shm_fill"),
        targets: &[Target::Fraction(0.8)],
    },
    Row {
        label: "shm_fill",
        ours: "shm_fill",
        python: Some(("spawn", "shm_fill")),
        limit: Some("shm_fill"),
        targets: &[Target::Fraction(0.8)],
    },
    Row {
        label: "manager_dict",
        ours: "manager_dict",
        python: Some(("spawn", "manager_dict")),
        limit: None,
        targets: &[Target::Speedup(20.0)],
    },
    Row {
        label: "manager_remote (TCP)",
        ours: "manager_remote",
        python: Some(("spawn", "manager_remote")),
        limit: None,
        targets: &[Target::Speedup(5.0)],
    },
    Row {
        label: "encode_vec_u8 (4 MiB)",
        ours: "encode_vec_u8",
        python: None,
        limit: None,
        targets: &[],
    },
    Row {
        label: "encode_bytes (4 MiB)",
        ours: "encode_bytes",
        python: None,
        limit: None,
        targets: &[],
    },
];

/// Our pool workloads next to procspawn's pool on the same ones: (label, ours, procspawn's).
const VS_PROCSPAWN: &[(&str, &str, &str)] = &[
    ("pool_start", "pool_start", "procspawn_pool_start"),
    (
        "apply_async_rtt",
        "apply_async_rtt",
        "procspawn_apply_async_rtt",
    ),
    ("map_chunk1", "map_chunk1", "procspawn_map_chunk1"),
];

/// The pool on Redis Streams beside the local pool, same run: (label, the Redis figure, the
/// local figure, the goal for the Redis figure: at most this for a time, at least for a rate).
const VS_REDIS: &[(&str, &str, &str, f64)] = &[
    (
        "apply rtt (p50)",
        "redis_apply_rtt",
        "apply_async_rtt",
        150.0,
    ),
    (
        "apply rtt signed",
        "redis_apply_rtt_signed",
        "apply_async_rtt",
        150.0,
    ),
    ("map_chunk1", "redis_map_chunk1", "map_chunk1", 10_000.0),
    ("map_tiny", "redis_map_tiny", "map_tiny", 1_000_000.0),
];

/// The shared benchmark directory: `<root>/../shared/bench`.
fn shared_bench_dir() -> Res<PathBuf> {
    let root = root();
    let dir = root.parent().unwrap_or(&root).join("shared").join("bench");
    for f in ["python_baseline.py", "limits.c"] {
        if !dir.join(f).is_file() {
            return Err(format!(
                "{} not found: `cargo xtask bench` needs the shared benchmark directory \
                 `shared/bench/` (python_baseline.py, limits.c) next to the repository root",
                dir.join(f).display()
            ));
        }
    }
    Ok(dir)
}

fn bench(quick: bool) -> Res {
    let shared = shared_bench_dir()?;
    let q: &[&str] = if quick { &["--quick"] } else { &[] };
    let mut raw = String::new();

    header(&format!(
        "ours: cargo run --release -p multiproc-benches -- {}",
        q.join(" ")
    ));
    let mut args = vec!["run", "--release", "-p", "multiproc-benches", "--"];
    args.extend(q);
    let text = output(cargo_cmd(&args))?;
    print!("{text}");
    let _ = writeln!(raw, "## ours\n{text}");
    let ours = parse_figures(&text);

    let script = shared.join("python_baseline.py");
    let script = script.to_string_lossy();
    let mut python: HashMap<&str, Figures> = HashMap::new();
    for (method, only) in [
        (
            "spawn",
            "spawn_join,pipe_rtt,pipe_bw,pool_start,map_tiny,map_chunk1,imap_unordered,\
             apply_async_rtt,map_cpu,queue_small,queue_big,lock_uncontended,value_contended,\
             array_fill,shm_fill,manager_dict,manager_remote",
        ),
        ("fork", "spawn_join"),
        ("forkserver", "spawn_join"),
    ] {
        let mut args = vec![&*script, "--start-method", method, "--only", only];
        args.extend(q);
        let c = cmd("python3", &args);
        header(&format!(
            "CPython: python3 ../shared/bench/python_baseline.py --start-method {method} --only {only} {}",
            q.join(" ")
        ));
        match output(c) {
            Ok(text) => {
                print!("{text}");
                let _ = writeln!(raw, "## CPython ({method})\n{text}");
                python.insert(method, parse_figures(&text));
            }
            Err(e) => eprintln!("xtask: warning: no CPython figures for {method}: {e}"),
        }
    }

    let limits = match run_limits(&shared) {
        Ok(text) => {
            let _ = writeln!(raw, "## limits\n{text}");
            parse_figures(&text)
        }
        Err(e) => {
            eprintln!("xtask: warning: no OS limits: {e}");
            Figures::new()
        }
    };

    let table = render_table(&ours, &python, &limits, quick);
    println!("\n{table}");
    let report = target_dir().join("bench-report.txt");
    let contents = format!("{table}\n\nRaw output (NAME\tVALUE\tUNIT):\n\n{raw}");
    std::fs::create_dir_all(target_dir())
        .and_then(|()| std::fs::write(&report, contents))
        .map_err(|e| format!("could not write {}: {e}", report.display()))?;
    println!("(written to {})", report.display());
    Ok(())
}

/// Compile `limits.c` into the target directory and run it.
fn run_limits(shared: &Path) -> Res<String> {
    let exe = target_dir().join("limits");
    std::fs::create_dir_all(target_dir()).map_err(|e| e.to_string())?;
    header("limits: cc -O2 -o target/limits ../shared/bench/limits.c && target/limits");
    let src = shared.join("limits.c");
    let mut cc = Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()));
    cc.arg("-O2").arg("-o").arg(&exe).arg(&src);
    run(cc)?;
    let text = output(Command::new(&exe))?;
    print!("{text}");
    Ok(text)
}

fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn render_table(
    ours: &Figures,
    python: &HashMap<&str, Figures>,
    limits: &Figures,
    quick: bool,
) -> String {
    let dash = || "-".to_string();
    let mut rows: Vec<[String; 8]> = vec![[
        "workload".into(),
        "unit".into(),
        "ours".into(),
        "Python".into(),
        "limit".into(),
        "speedup vs Python".into(),
        "fraction of limit".into(),
        "target".into(),
    ]];
    let mut misses = 0;
    for row in ROWS {
        let Some(o) = ours.get(row.ours) else {
            continue;
        };
        let py = row
            .python
            .and_then(|(method, name)| python.get(method)?.get(name));
        let lim = row.limit.and_then(|name| limits.get(name));
        let speedup = py.and_then(|p| better(o, p));
        let fraction = lim.and_then(|l| better(o, l));
        let mut target: Vec<String> = row
            .targets
            .iter()
            .map(|t| {
                let (what, got, want) = match *t {
                    Target::Speedup(want) => ("vs Python", speedup, want),
                    Target::Fraction(want) => ("of limit", fraction, want),
                    Target::AtLeast(want) => ("", Some(o.value), want),
                };
                let verdict = match got {
                    Some(g) if g >= want => "pass",
                    Some(_) => {
                        misses += 1;
                        "MISS"
                    }
                    None => "n/a",
                };
                match t {
                    Target::Speedup(_) => format!("{verdict} (>={want}x {what})"),
                    Target::Fraction(_) => format!("{verdict} (>={want:.2} {what})"),
                    Target::AtLeast(_) => format!("{verdict} (>={want})"),
                }
            })
            .collect();
        if row.ours == "encode_bytes" {
            if let Some(v) = ours.get("encode_vec_u8") {
                if let Some(x) = better(o, v) {
                    target.push(format!("{x:.1}x encode_vec_u8"));
                }
            }
        }
        rows.push([
            row.label.to_string(),
            short_unit(&o.unit).to_string(),
            fmt_value(o.value),
            py.map(|p| fmt_value(p.value)).unwrap_or_else(dash),
            lim.map(|l| fmt_value(l.value)).unwrap_or_else(dash),
            speedup.map(|s| format!("{s:.2}x")).unwrap_or_else(dash),
            fraction.map(|f| format!("{f:.2}")).unwrap_or_else(dash),
            if target.is_empty() {
                dash()
            } else {
                target.join(", ")
            },
        ]);
    }

    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "multiproc vs CPython multiprocessing vs OS limits{} (same machine, one run)",
        if quick { " (--quick)" } else { "" }
    );
    out.push_str(
        "  speedup vs Python: how many times faster ours is (>1: we are faster);\n\
         \x20   time units: Python/ours, rates (MB/s): ours/Python\n\
         \x20 fraction of limit: share of the OS limit we reach (1.0 = at the limit);\n\
         \x20   time units: limit/ours, rates: ours/limit\n\
         \x20 limits: limits.c (spawn: posix_spawn /bin/true + wait; fork, forkserver: fork+exit+wait)\n\
         \x20 forkserver: ours is warm (its launch is timed apart); CPython's includes the launch\n\
         \x20 pipe_*: ours starts timing once the echo child answered; CPython's times from\n\
         \x20   p.start(), so its figure includes the child's start-up spread over the round trips\n\
         \x20 array_fill: both back the array's pages when it is created (CPython zero-fills it),\n\
         \x20   outside the timing; the shm_fill limit allocates them in the child, so >1 is possible\n\n",
    );
    for (i, r) in rows.iter().enumerate() {
        let mut line = String::new();
        for (j, (c, w)) in r.iter().zip(widths).enumerate() {
            let pad = w - c.chars().count();
            // text columns left-aligned, figures right-aligned
            if j < 2 || j == 7 {
                line.push_str(c);
                if j != 7 {
                    line.push_str(&" ".repeat(pad));
                }
            } else {
                line.push_str(&" ".repeat(pad));
                line.push_str(c);
            }
            if j != 7 {
                line.push_str("  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if i == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * 7;
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    if let Some(f) = ours.get("forkserver_first_start") {
        let _ = writeln!(
            out,
            "\nforkserver first start (launch + first child + join): {} ms",
            fmt_value(f.value)
        );
    }
    let mut vs = String::new();
    for (label, mine, theirs) in VS_PROCSPAWN {
        if let (Some(o), Some(p)) = (ours.get(*mine), ours.get(*theirs)) {
            let x = better(o, p).map_or_else(dash, |x| format!("{x:.2}x"));
            let _ = writeln!(
                vs,
                "  {label:<16} ours {:>10}  procspawn {:>10}  {}  -> ours {x}",
                fmt_value(o.value),
                fmt_value(p.value),
                short_unit(&o.unit),
            );
        }
    }
    if !vs.is_empty() {
        let _ = write!(out, "\nvs procspawn's process pool (same run):\n{vs}");
    }
    let mut vs = String::new();
    for (label, remote, local, goal) in VS_REDIS {
        let Some(r) = ours.get(*remote) else {
            continue;
        };
        let is_time = time_scale(&r.unit).is_some();
        let met = if is_time {
            r.value <= *goal
        } else {
            r.value >= *goal
        };
        if !met {
            misses += 1;
        }
        let local = ours.get(*local).map_or_else(dash, |l| fmt_value(l.value));
        let _ = writeln!(
            vs,
            "  {label:<16} redis {:>10}  local {:>10}  {}  {} ({}{})",
            fmt_value(r.value),
            local,
            short_unit(&r.unit),
            if met { "pass" } else { "MISS" },
            if is_time { "<=" } else { ">=" },
            fmt_value(*goal),
        );
    }
    if let (Some(ping), Some(apply)) = (ours.get("redis_ping_rtt"), ours.get("redis_apply_rtt")) {
        // (a task crosses the server at least twice: driver to worker, worker to driver)
        let _ = writeln!(
            vs,
            "  {:<16} redis {:>10}  {}  (a PING, interleaved with the round trips: apply = {:.1} x PING)",
            "ping rtt (p50)",
            fmt_value(ping.value),
            short_unit(&ping.unit),
            apply.value / ping.value.max(f64::MIN_POSITIVE),
        );
    }
    if !vs.is_empty() {
        let _ = write!(
            out,
            "\nthe pool on Redis Streams (2 workers, loopback) beside the local pool (same run):\n{vs}"
        );
    }
    let _ = write!(
        out,
        "{}",
        if misses == 0 {
            "\nall targets met".to_string()
        } else {
            format!("\n{misses} target(s) missed")
        }
    );
    out
}

#[cfg(all(test, unix))]
mod deadline_tests {
    use super::*;

    #[test]
    fn a_command_past_its_deadline_is_killed_with_its_children() {
        // A shell whose child outlives it unless the whole group is killed.
        let c = cmd("sh", &["-c", "sleep 60 & sleep 60"]);
        let t = Instant::now();
        let err = run_with_deadline(c, Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("was killed"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_command_within_its_deadline_reports_its_status() {
        assert!(run_with_deadline(cmd("true", &[]), Duration::from_secs(30)).is_ok());
        assert!(run_with_deadline(cmd("false", &[]), Duration::from_secs(30)).is_err());
    }
}

#[cfg(test)]
mod redis_rows {
    use super::*;

    #[test]
    fn the_redis_rows_sit_beside_the_local_ones_with_their_goals() {
        let ours = parse_figures(
            "apply_async_rtt\t4.0\tus/round trip\nredis_apply_rtt\t120\tus/round trip (p50)\n\
             map_chunk1\t300000\ttasks/s (chunksize=1)\nredis_map_chunk1\t9000\ttasks/s (chunksize=1)\n",
        );
        let t = render_table(&ours, &HashMap::new(), &Figures::new(), false);
        let apply = t.lines().find(|l| l.contains("apply rtt (p50)")).unwrap();
        assert!(
            apply.contains("redis") && apply.contains("local") && apply.contains("pass"),
            "{t}"
        );
        let chunk1 = t.lines().find(|l| l.contains("  map_chunk1 ")).unwrap();
        assert!(chunk1.contains("MISS"), "{t}");
        assert!(!t.contains("  map_tiny "), "no figure, no row: {t}");
    }
}
