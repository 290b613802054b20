//! Running one test binary under Wine: its skip entries applied, its counts read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::libtest;
use super::skips::{self, Skip};
use super::wine::Prefix;
use crate::{header, supervise, Res};

/// How long `--list` may take.
const LIST_DEADLINE: Duration = Duration::from_secs(120);

/// A test binary built for Windows.
#[derive(Debug, Clone)]
pub struct Suite {
    /// `<package>/<target>`, `<package>/lib` for the unit tests.
    pub name: String,
    /// `None`: it did not build.
    pub exe: Option<PathBuf>,
    /// Built with libtest's harness (`harness = false` programs are their own `main`).
    pub harness: bool,
    /// Where cargo would run it: the package's directory.
    pub dir: PathBuf,
}

/// What a suite's run gave.
#[derive(Debug, Default)]
pub struct SuiteRun {
    pub name: String,
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
    /// Left out by the skip list.
    pub skipped: Vec<Skip>,
    /// The names of the failed tests.
    pub failures: Vec<String>,
    /// What failed tests printed, by name (libtest's failure blocks).
    pub outputs: Vec<(String, String)>,
    /// What went wrong besides failed tests: did not build, timed out, crashed, a stale skip
    /// entry. Any problem fails the run.
    pub problems: Vec<String>,
    /// Worth saying, not a failure (how it was counted, a child killed after the end).
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

impl SuiteRun {
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.problems.is_empty()
    }
}

/// What to run of each suite.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Substrings of test names: only the tests whose names contain one run (all if empty).
    pub filters: Vec<String>,
    /// Passed on to every libtest run (`--test-threads=1`, `--nocapture`, ...).
    pub libtest_args: Vec<String>,
    /// Per suite, `--list` apart.
    pub deadline: Duration,
}

/// Run `suite` under Wine with the entries of `skip_list` for it left out.
pub fn run(prefix: &Prefix, suite: &Suite, skip_list: &[Skip], sel: &Selection) -> Res<SuiteRun> {
    let mut r = SuiteRun {
        name: suite.name.clone(),
        ..SuiteRun::default()
    };
    let Some(exe) = &suite.exe else {
        r.problems
            .push("did not build (the compiler's errors are above)".into());
        return Ok(r);
    };
    if let Some(s) = skips::whole_suite(skip_list, &suite.name) {
        r.skipped.push(*s);
        return Ok(r);
    }
    let mine: Vec<Skip> = skips::for_suite(skip_list, &suite.name).copied().collect();
    if !suite.harness {
        return run_harnessless(prefix, suite, exe, &mine, sel, r);
    }

    let mut args: Vec<String> = vec!["--exact".into()];
    if !mine.is_empty() || !sel.filters.is_empty() {
        let names = match list(prefix, suite, exe) {
            Ok(names) => names,
            Err(e) => {
                r.problems.push(e);
                return Ok(r);
            }
        };
        for s in &mine {
            if names.iter().any(|n| n == s.test) {
                r.skipped.push(*s);
            } else {
                r.problems.push(format!(
                    "skip entry {:?} names no test of this suite (xtask/src/windows/skips.rs)",
                    s.test
                ));
            }
        }
        if sel.filters.is_empty() {
            for s in &r.skipped {
                args.extend(["--skip".to_string(), s.test.to_string()]);
            }
        } else {
            // libtest cannot match skips exactly and filters by substring in one run: pick
            // the names here and pass them exactly.
            let chosen: Vec<&String> = names
                .iter()
                .filter(|n| sel.filters.iter().any(|f| n.contains(f.as_str())))
                .filter(|n| !r.skipped.iter().any(|s| s.test == n.as_str()))
                .collect();
            r.skipped
                .retain(|s| sel.filters.iter().any(|f| s.test.contains(f.as_str())));
            if chosen.is_empty() {
                r.notes.push("no test matches the filters".into());
                return Ok(r);
            }
            args.extend(chosen.into_iter().cloned());
        }
    }
    args.extend(sel.libtest_args.iter().cloned());

    header(&format!("{} under Wine", suite.name));
    let mut c = prefix.wine(exe);
    c.args(&args).current_dir(&suite.dir);
    let o = supervise::run(c, sel.deadline, true)?;
    r.elapsed = o.elapsed;
    if o.timed_out() {
        prefix.kill_all()?;
    }
    let report = libtest::parse_run(&o.stdout);
    if o.timed_out() {
        // libtest names a test when it ends: those it had not named were still running.
        if let Ok(names) = list(prefix, suite, exe) {
            let running: Vec<&String> = names
                .iter()
                .filter(|n| !report.ok.contains(n) && !report.failed.contains(n))
                .filter(|n| !r.skipped.iter().any(|s| s.test == n.as_str()))
                .filter(|n| {
                    sel.filters.is_empty() || sel.filters.iter().any(|f| n.contains(f.as_str()))
                })
                .collect();
            r.failures.extend(
                running
                    .iter()
                    .map(|n| format!("{n} (still running at the deadline)")),
            );
        }
    }
    if o.left_children {
        r.notes.push(format!(
            "a process it started still held its output {} s after it ended, and was killed",
            supervise::DRAIN_GRACE.as_secs()
        ));
    }
    r.failures.splice(0..0, report.failed.iter().cloned());
    r.outputs = report.outputs;
    match report.result {
        Some(c) => {
            (r.passed, r.failed, r.ignored) = (c.passed, c.failed, c.ignored);
            if !o.success() && c.failed == 0 {
                r.problems.push(format!(
                    "all its tests passed, but it ended with {}",
                    o.describe(sel.deadline)
                ));
            }
        }
        None => {
            r.passed = report.ok.len();
            r.failed = report.failed.len();
            let running = report.running.unwrap_or(0);
            r.problems.push(format!(
                "{} before its summary ({} of {running} tests reported)",
                o.describe(sel.deadline),
                r.passed + r.failed
            ));
        }
    }
    Ok(r)
}

/// The names of the suite's tests (`--list`); the error is the run's problem.
fn list(prefix: &Prefix, suite: &Suite, exe: &Path) -> Res<Vec<String>> {
    header(&format!("{}: --list", suite.name));
    let mut c = prefix.wine(exe);
    c.arg("--list").current_dir(&suite.dir);
    let o = supervise::run(c, LIST_DEADLINE, false)?;
    if o.timed_out() {
        prefix.kill_all()?;
    }
    if !o.success() {
        return Err(format!("--list failed ({})", o.describe(LIST_DEADLINE)));
    }
    Ok(libtest::parse_list(&o.stdout))
}

/// A `harness = false` test: a program whose exit status is its one result.
fn run_harnessless(
    prefix: &Prefix,
    suite: &Suite,
    exe: &Path,
    mine: &[Skip],
    sel: &Selection,
    mut r: SuiteRun,
) -> Res<SuiteRun> {
    for s in mine {
        r.problems.push(format!(
            "skip entry {:?}: this suite has no libtest harness, so only `*` (all of it) can be \
             skipped",
            s.test
        ));
    }
    if !sel.filters.is_empty() {
        r.notes
            .push("not run: filters were given and it has no libtest harness".into());
        return Ok(r);
    }
    header(&format!("{} under Wine (no libtest harness)", suite.name));
    let mut c = prefix.wine(exe);
    c.current_dir(&suite.dir);
    let o = supervise::run(c, sel.deadline, true)?;
    r.elapsed = o.elapsed;
    if o.timed_out() {
        prefix.kill_all()?;
    }
    r.notes
        .push("no libtest harness: one test, passed if it exits with 0".into());
    if o.success() {
        r.passed = 1;
    } else {
        r.failed = 1;
        r.failures
            .push(format!("(the program: {})", o.describe(sel.deadline)));
    }
    Ok(r)
}
