//! `cargo xtask test --windows`: the test suites of [`CRATES`] and the seed examples built for
//! `x86_64-pc-windows-gnu` and run under Wine on Linux, in a throw-away `WINEPREFIX`.
//!
//! 1. Build (`cargo build --tests --keep-going --message-format=json`, the mingw linker set
//!    for the child cargo only): each test binary's path from cargo's messages; a target that
//!    does not compile is a failed suite, the others still run.
//! 2. The `ProcessPrng` shim (`wine.rs`) is compiled and put beside every executable.
//! 3. A temporary prefix is made once (`wineboot -i`), shared by all runs, and removed at the
//!    end with its wineserver.
//! 4. Each suite runs under `wine` (libtest's own threads) within a deadline; past it, its
//!    Unix process group and every process of the prefix are killed and it counts as failed.
//!    Tests of the skip list (`skips.rs`) are left out by name with `--exact --skip`.
//! 5. The examples of `examples.rs` run on Linux and under Wine, their output compared.
//! 6. A summary: per suite passed, failed, ignored and skipped (with the reasons), per example
//!    the verdict. Any failure fails the task.

mod bench;
mod examples;
mod libtest;
mod skips;
mod suites;
mod wine;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cargo_json::{self, Artifact, Package};
use crate::{cargo_cmd, header, Res};
pub use skips::Skip;
use suites::{Selection, Suite, SuiteRun};

pub use bench::bench;

/// The crates whose test suites (unit tests and integration tests) run under Wine. Part 2 of
/// the Windows work added the pool, the manager and the facade here.
pub const CRATES: &[&str] = &[
    "multiproc-pickle",
    "multiproc-process",
    "multiproc-shm",
    "multiproc-sync",
    "multiproc-pool",
    "multiproc-manager",
    "multiproc",
];

/// How long one suite may run under Wine, unless `--timeout` says otherwise. A backstop: the
/// tests' own bounds (60 s for a child) fail a hang well before it; the slowest suite takes
/// well under a minute under Wine.
pub const SUITE_DEADLINE: Duration = Duration::from_secs(300);

/// What `cargo xtask test --windows` runs.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Of [`CRATES`]; all of them if empty.
    pub crates: Vec<String>,
    pub suites: bool,
    pub examples: bool,
    pub selection: Selection,
    /// Skips for this run only (`--skip SUITE:TEST`), besides [`skips::SKIPS`].
    pub extra_skips: Vec<Skip>,
}

/// A `--skip SUITE:TEST` of the command line, as a skip entry.
pub fn skip_from_arg(arg: &str) -> Res<Skip> {
    let (suite, test) = arg
        .split_once(':')
        .filter(|(s, t)| s.contains('/') && !t.is_empty())
        .ok_or_else(|| format!("--skip {arg:?}: expected SUITE:TEST, like multiproc-pickle/lib:codec::tests::roundtrip_and_trailing"))?;
    // The entries of the list are `'static`; these few live as long as the task anyway.
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    Ok(Skip {
        suite: leak(suite),
        test: leak(test),
        reason: "--skip on the command line",
    })
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            crates: Vec::new(),
            suites: true,
            examples: true,
            selection: Selection {
                filters: Vec::new(),
                libtest_args: Vec::new(),
                deadline: SUITE_DEADLINE,
            },
            extra_skips: Vec::new(),
        }
    }
}

/// `cargo build ... --target x86_64-pc-windows-gnu` (or for the host) with the JSON messages.
fn build(args: &[&str], windows: bool, packages: &[Package]) -> Res<cargo_json::Built> {
    let mut all = vec!["build", "--message-format=json"];
    if windows {
        all.extend(["--target", wine::TARGET]);
    }
    all.extend(args);
    let mut c = cargo_cmd(&all);
    if windows {
        c.env(wine::LINKER_ENV, wine::MINGW_GCC);
    }
    header(&crate::describe(&c));
    cargo_json::build(c, packages)
}

/// The test binaries of `crates`, in the order of `CRATES` (unit tests first).
fn build_suites(crates: &[&str], packages: &[Package]) -> Res<Vec<Suite>> {
    let mut args = vec!["--tests", "--keep-going"];
    for c in crates {
        args.extend(["-p", c]);
    }
    let built = build(&args, true, packages)?;
    let mut out = Vec::new();
    for name in crates {
        let p = packages
            .iter()
            .find(|p| p.name == *name)
            .ok_or_else(|| format!("no package {name} in the workspace"))?;
        let manifest = std::fs::read_to_string(&p.manifest_path)
            .map_err(|e| format!("{}: {e}", p.manifest_path.display()))?;
        let harnessless = cargo_json::harnessless_tests(&manifest);
        let dir = p
            .manifest_path
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(crate::root);
        for t in p.targets.iter().filter(|t| t.test) {
            let (suite, kind) = match t.kind.as_str() {
                "lib" => (format!("{name}/lib"), "lib"),
                "test" => (format!("{name}/{}", t.name), "test"),
                _ => continue,
            };
            let exe = built
                .artifacts
                .iter()
                .find(|a: &&Artifact| a.package == *name && a.kind == kind && a.target == t.name)
                .map(|a| a.exe.clone());
            let failed = built
                .failed
                .iter()
                .any(|(pk, tg)| pk == name && *tg == t.name);
            out.push(Suite {
                name: suite,
                exe: if failed { None } else { exe },
                harness: !(kind == "test" && harnessless.contains(&t.name)),
                dir: dir.clone(),
            });
        }
    }
    Ok(out)
}

/// `cargo xtask test --windows`.
pub fn test(opts: &Opts) -> Res {
    let t0 = Instant::now();
    wine::preflight()?;
    let crates: Vec<&str> = if opts.crates.is_empty() {
        CRATES.to_vec()
    } else {
        for c in &opts.crates {
            if !CRATES.contains(&c.as_str()) {
                return Err(format!(
                    "{c} is not among the crates tested under Wine ({})",
                    CRATES.join(", ")
                ));
            }
        }
        opts.crates.iter().map(String::as_str).collect()
    };
    let packages = cargo_json::metadata()?;

    let suites = if opts.suites {
        build_suites(&crates, &packages)?
    } else {
        Vec::new()
    };
    let mut example_exes = Vec::new();
    if opts.examples {
        let mut args = vec!["-p", "multiproc-examples"];
        for e in examples::EXAMPLES {
            args.extend(["--bin", e.bin]);
        }
        let linux = build(&args, false, &packages)?;
        let windows = build(&args, true, &packages)?;
        for e in examples::EXAMPLES {
            let exes = match (
                examples::exe_of(&linux.artifacts, e.bin),
                examples::exe_of(&windows.artifacts, e.bin),
            ) {
                (Some(l), Some(w)) => Some(examples::Exes {
                    linux: l.to_path_buf(),
                    windows: w.to_path_buf(),
                }),
                _ => None,
            };
            example_exes.push((e, exes));
        }
    }
    let build_time = t0.elapsed();

    let shim = wine::build_shim(&crate::target_dir())?;
    for exe in suites.iter().filter_map(|s| s.exe.as_ref()).chain(
        example_exes
            .iter()
            .filter_map(|(_, x)| x.as_ref().map(|x| &x.windows)),
    ) {
        wine::place_shim(&shim, exe)?;
    }

    let t1 = Instant::now();
    let prefix = wine::Prefix::create(&shim)?;
    let skip_list: Vec<Skip> = skips::SKIPS
        .iter()
        .chain(&opts.extra_skips)
        .copied()
        .collect();
    let mut runs = Vec::new();
    for s in &suites {
        runs.push(suites::run(&prefix, s, &skip_list, &opts.selection)?);
    }
    let mut example_runs = Vec::new();
    for (e, exes) in &example_exes {
        example_runs.push(match exes {
            Some(x) => examples::run(&prefix, e, x)?,
            None => examples::ExampleRun {
                bin: e.bin,
                problem: Some("did not build (the compiler's errors are above)".into()),
                wine_time: Duration::ZERO,
            },
        });
    }
    let boot = prefix.boot_time;
    drop(prefix);
    let wine_time = t1.elapsed();

    let (text, failures) = summary(&runs, &example_runs);
    println!("\n{text}");
    println!(
        "{} under Wine ({}): {:.0} s (prefix {:.0} s), builds {:.0} s",
        wine::TARGET,
        wine::version(),
        wine_time.as_secs_f64(),
        boot.as_secs_f64(),
        build_time.as_secs_f64()
    );
    if failures > 0 {
        // Last, so that the end of a long log (often all a CI page keeps) says why.
        print!("{}", why_they_failed(&runs));
        return Err(format!(
            "{failures} suite(s) or example(s) failed under Wine (see the summary above)"
        ));
    }
    println!("xtask: the Windows tests passed under Wine");
    Ok(())
}

/// How many lines of each failed test's output the end of the run repeats.
const WHY_LINES: usize = 25;

/// Each failed test's name and the end of what it printed (its panic message), for the very
/// end of the output.
fn why_they_failed(runs: &[SuiteRun]) -> String {
    let mut out = String::new();
    for r in runs {
        for (name, text) in &r.outputs {
            let _ = writeln!(out, "\nwhy {}: {name} failed under Wine:", r.name);
            for l in libtest::excerpt(text, WHY_LINES) {
                let _ = writeln!(out, "  | {l}");
            }
        }
    }
    out
}

/// The summary table, and how many suites and examples failed.
fn summary(runs: &[SuiteRun], examples: &[examples::ExampleRun]) -> (String, usize) {
    let mut out = String::new();
    let mut failures = 0;
    if !runs.is_empty() {
        let w = runs.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
        let _ = writeln!(
            out,
            "Windows test suites under Wine\n{:<w$}  {:>6}  {:>6}  {:>7}  {:>7}  {:>7}  verdict",
            "suite", "passed", "failed", "ignored", "skipped", "time"
        );
        let mut total = [0usize; 4];
        for r in runs {
            let verdict = if r.ok() {
                "ok"
            } else {
                failures += 1;
                "FAILED"
            };
            let _ = writeln!(
                out,
                "{:<w$}  {:>6}  {:>6}  {:>7}  {:>7}  {:>6.1}s  {verdict}",
                r.name,
                r.passed,
                r.failed,
                r.ignored,
                r.skipped.len(),
                r.elapsed.as_secs_f64()
            );
            for p in &r.problems {
                let _ = writeln!(out, "{:<w$}    problem: {p}", "");
            }
            for n in &r.notes {
                let _ = writeln!(out, "{:<w$}    note: {n}", "");
            }
            for (t, n) in total
                .iter_mut()
                .zip([r.passed, r.failed, r.ignored, r.skipped.len()])
            {
                *t += n;
            }
        }
        let _ = writeln!(
            out,
            "{:<w$}  {:>6}  {:>6}  {:>7}  {:>7}",
            "total", total[0], total[1], total[2], total[3]
        );
        let failed: Vec<String> = runs
            .iter()
            .flat_map(|r| r.failures.iter().map(move |f| format!("  {}: {f}", r.name)))
            .collect();
        if !failed.is_empty() {
            let _ = writeln!(out, "\nfailed tests:\n{}", failed.join("\n"));
        }
        let skipped: Vec<String> = runs
            .iter()
            .flat_map(|r| {
                r.skipped
                    .iter()
                    .map(|s| format!("  {} {}: {}", s.suite, s.test, s.reason))
            })
            .collect();
        let _ = writeln!(
            out,
            "\nskipped under Wine (xtask/src/windows/skips.rs):{}",
            if skipped.is_empty() {
                " none".to_string()
            } else {
                format!("\n{}", skipped.join("\n"))
            }
        );
    }
    if !examples.is_empty() {
        let w = examples
            .iter()
            .map(|e| e.bin.len())
            .max()
            .unwrap_or(0)
            .max(12);
        let _ = writeln!(
            out,
            "\nexamples under Wine, output compared with Linux's (xtask/src/windows/examples.rs)"
        );
        for e in examples {
            match &e.problem {
                None => {
                    let _ = writeln!(
                        out,
                        "  {:<w$} same output  ({:.1} s under Wine)",
                        e.bin,
                        e.wine_time.as_secs_f64()
                    );
                }
                Some(p) => {
                    failures += 1;
                    let _ = writeln!(out, "  {:<w$} FAILED: {p}", e.bin);
                }
            }
        }
    }
    (out, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite(name: &str) -> SuiteRun {
        SuiteRun {
            name: name.into(),
            passed: 3,
            ..SuiteRun::default()
        }
    }

    #[test]
    fn a_failed_test_a_problem_or_a_differing_example_fails_the_run() {
        let ok = suite("a/lib");
        let mut failed = suite("a/integration");
        failed.failed = 1;
        failed.failures.push("x::y".into());
        let mut timed_out = suite("b/lib");
        timed_out
            .problems
            .push("timed out: killed after 5 s before its summary".into());
        let (text, n) = summary(&[ok], &[]);
        assert_eq!(n, 0, "{text}");
        let (text, n) = summary(&[suite("a/lib"), failed, timed_out], &[]);
        assert_eq!(n, 2, "{text}");
        assert!(text.contains("a/integration: x::y") && text.contains("timed out"));
        let differs = examples::ExampleRun {
            bin: "pipe",
            problem: Some("output differs".into()),
            wine_time: Duration::ZERO,
        };
        let (text, n) = summary(&[], &[differs]);
        assert_eq!(n, 1);
        assert!(
            text.lines().any(
                |l| l.trim_start().starts_with("pipe") && l.ends_with("FAILED: output differs")
            ),
            "{text}"
        );
    }

    #[test]
    fn the_end_of_the_output_says_why_each_test_failed() {
        let mut r = suite("a/integration");
        r.failed = 1;
        r.failures.push("x::y".into());
        r.outputs.push((
            "x::y".into(),
            "noise\nthread 'x::y' panicked at t.rs:1:1:\nthe count was 3, not 4\n".into(),
        ));
        let text = why_they_failed(&[suite("a/lib"), r]);
        assert_eq!(
            text,
            "\nwhy a/integration: x::y failed under Wine:\n  | thread 'x::y' panicked at \
             t.rs:1:1:\n  | the count was 3, not 4\n"
        );
    }

    #[test]
    fn skips_print_with_their_reasons() {
        let mut r = suite("multiproc-process/integration");
        r.skipped.push(Skip {
            suite: "multiproc-process/integration",
            test: "listener::x",
            reason: "Wine lacks y",
        });
        let (text, n) = summary(&[r], &[]);
        assert_eq!(n, 0);
        assert!(text.contains("multiproc-process/integration listener::x: Wine lacks y"));
    }

    #[test]
    fn skip_arguments_parse() {
        let s = skip_from_arg("multiproc-pickle/lib:codec::tests::x").unwrap();
        assert_eq!(
            (s.suite, s.test),
            ("multiproc-pickle/lib", "codec::tests::x")
        );
        assert!(skip_from_arg("codec::tests::x").is_err());
        assert!(skip_from_arg("multiproc-pickle/lib:").is_err());
    }

    #[test]
    fn every_skip_entry_names_a_suite_of_the_crates() {
        for s in skips::SKIPS {
            let (krate, _) = s.suite.split_once('/').unwrap();
            assert!(CRATES.contains(&krate), "{s:?}");
            assert!(!s.test.is_empty() && !s.reason.is_empty(), "{s:?}");
        }
    }
}
