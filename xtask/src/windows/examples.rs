//! The seed examples under Wine, their output compared with the same example's on Linux.
//!
//! Both runs start in the repository root with the same arguments. What differs by nature is
//! normalised before the comparison, per example, by its [`Example::normalise`]: process ids,
//! ports and timings are masked, lines that are timings only (or Linux only, like the load
//! average) are dropped. Output whose order depends on which child ends first is compared as
//! a set: the lines of each paragraph (lines between blank lines) are sorted. Only standard
//! output is compared (a child's panic report goes to standard error), with both exit codes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::wine::Prefix;
use crate::{header, supervise, Res};

/// One example run and how its output is compared.
pub struct Example {
    /// The binary of `multiproc-examples`.
    pub bin: &'static str,
    pub args: &'static [&'static str],
    /// A line as compared, or `None` to leave it out of the comparison.
    pub normalise: fn(&str) -> Option<String>,
    /// Sort the lines of each paragraph: their order is the order children ended in.
    pub unordered: bool,
}

/// The examples compared under Wine: processes and pipes; pools; shared memory, locks, queues
/// and managers (their blocks below). Not the remote manager pair: two programs run by hand.
pub const EXAMPLES: &[Example] = &[
    Example {
        bin: "worker",
        args: &[],
        normalise: worker,
        unordered: false,
    },
    Example {
        bin: "pipe",
        args: &[],
        normalise: same,
        unordered: false,
    },
    Example {
        bin: "fibonacci",
        // Small numbers: a debug build, and only the values are compared.
        args: &["24", "25", "26", "27"],
        normalise: fibonacci,
        unordered: false,
    },
    Example {
        bin: "file_sizes",
        // Files of the repository (the same bytes on both sides) and one that is missing.
        args: &[
            "Cargo.toml",
            "README.md",
            "LICENSE-does-not-exist",
            "examples/pipe.rs",
        ],
        normalise: file_sizes,
        unordered: true,
    },
    Example {
        bin: "tour",
        // Every section but `start-methods`, which starts `fork` and `forkserver` children:
        // Windows has neither.
        args: &[
            "--sections",
            "exit-codes,connections,fibonacci,listener,wait,pool,shared-state,manager",
        ],
        normalise: tour,
        // Section 6 prints children in the order they end.
        unordered: true,
    },
    // ---- pools ----
    Example {
        bin: "pool_factorial",
        args: &[],
        normalise: same,
        unordered: false,
    },
    Example {
        bin: "apply_callback",
        args: &[],
        normalise: same,
        unordered: false,
    },
    Example {
        bin: "crash_resistant",
        args: &[],
        normalise: crash_resistant,
        unordered: false,
    },
    Example {
        bin: "sum_squares",
        // 10⁶ numbers, not 10⁷: a debug build.
        args: &["1000000"],
        normalise: sum_squares,
        unordered: false,
    },
    Example {
        bin: "image_batch",
        args: &[],
        normalise: same,
        unordered: false,
    },
    // ---- shared memory, locks, queues and managers ----
    Example {
        bin: "producer_consumer",
        args: &[],
        normalise: producer_consumer,
        unordered: false,
    },
    Example {
        bin: "lock_print",
        args: &[],
        normalise: same,
        // One line per child, in the order they take the lock.
        unordered: true,
    },
    Example {
        bin: "shared_counter",
        args: &[],
        normalise: shared_counter,
        unordered: false,
    },
    Example {
        bin: "fill_array",
        args: &[],
        normalise: same,
        unordered: false,
    },
    Example {
        bin: "shared_memory",
        args: &[],
        normalise: shared_memory,
        unordered: false,
    },
    Example {
        bin: "manager_dict",
        args: &[],
        normalise: manager_dict,
        unordered: false,
    },
    Example {
        bin: "manager_user_type",
        args: &[],
        normalise: manager_user_type,
        unordered: false,
    },
];

/// How long one run of an example may take.
const DEADLINE: Duration = Duration::from_secs(180);

fn same(line: &str) -> Option<String> {
    Some(line.to_string())
}

/// `parent process: 4242` and `process id: 4243` differ on every run. (`parent process:` of
/// the main line is the OS's parent on Unix, `None` elsewhere: the example says so.)
fn worker(line: &str) -> Option<String> {
    for key in ["parent process: ", "process id: "] {
        if line.starts_with(key) {
            return Some(format!("{key}<pid>"));
        }
    }
    Some(line.to_string())
}

/// Only the `fib(n) = value` lines: the others are the load average and timings.
fn fibonacci(line: &str) -> Option<String> {
    line.starts_with("fib(").then(|| line.to_string())
}

/// A crashed worker's exit code is the platform's: `-11` (`SIGSEGV`) on Linux, `-1073741819`
/// (`0xC0000005`, an access violation) on Windows; an abort's `-6` or `-1073740791`.
fn crash_resistant(line: &str) -> Option<String> {
    match line.split_once("(exit code ") {
        Some((head, _)) => Some(format!("{head}(exit code <the platform's>)")),
        None => Some(line.to_string()),
    }
}

/// Only what was computed: the timings, the speed-up (and whether it was above the bound, by
/// noise) and the load average (Linux only) are left out.
fn sum_squares(line: &str) -> Option<String> {
    (line.starts_with("job: ") || line.starts_with("sum = ")).then(|| line.to_string())
}

/// The reason a file cannot be read is the OS's own sentence.
fn file_sizes(line: &str) -> Option<String> {
    match line.split_once(": cannot read (") {
        Some((path, _)) => Some(format!("{path}: cannot read (<the OS's reason>)")),
        None => Some(line.to_string()),
    }
}

/// The tour: pids, the port, timings and speed-ups masked; the load average and the list of
/// children still running (which depends on how fast they start) left out. Runs of spaces
/// inside a line count as one: the tour pads figures to a width (`{:>8}`), so how many spaces
/// precede a masked figure depends on its digits.
fn tour(line: &str) -> Option<String> {
    tour_masked(line).map(|l| collapse_spaces(&l))
}

/// `line` with each run of spaces after its indentation made one space.
fn collapse_spaces(line: &str) -> String {
    let body = line.trim_start_matches(' ');
    let mut out = line[..line.len() - body.len()].to_string();
    let mut last_space = false;
    for c in body.chars() {
        if c != ' ' || !last_space {
            out.push(c);
        }
        last_space = c == ' ';
    }
    out
}

fn tour_masked(line: &str) -> Option<String> {
    if line.starts_with("load average") {
        return None;
    }
    if let Some((head, _)) = line.split_once("listening on ") {
        return Some(format!("{head}listening on <address>"));
    }
    if line.contains("active_children() = [\"") {
        return None;
    }
    if let Some((head, list)) = line.split_once(" yielded [") {
        // imap_unordered: the values in the order their tasks finished
        if let Some((list, tail)) = list.split_once(']') {
            let mut values: Vec<&str> = list.split(", ").collect();
            values.sort_unstable();
            return Some(format!("{head} yielded {{{}}}{tail}", values.join(", ")));
        }
    }
    if let Some((head, rest)) = line.split_once("died (exit code ") {
        // `abort` ends a process with SIGABRT (-6) on Unix, with __fastfail's
        // STATUS_STACK_BUFFER_OVERRUN (0xC0000409) on Windows
        if let Some((_, tail)) = rest.split_once(')') {
            return Some(format!("{head}died (exit code <abort's>){tail}"));
        }
    }
    Some(mask_measures(&mask_after(
        &mask_after(line, "127.0.0.1:"),
        "pid ",
    )))
}

/// `line` with the number after each `key` replaced by `#`.
fn mask_after(line: &str, key: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(key) {
        out.push_str(&rest[..i + key.len()]);
        rest = &rest[i + key.len()..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push('#');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// `line` with each measured quantity (a number followed by ` ms`, ` µs`, ` s` or `x`, like
/// `12.5 ms` or `1.57x`) replaced by `#` and its unit.
fn mask_measures(line: &str) -> String {
    const UNITS: [&str; 4] = [" ms", " µs", " s", "x"];
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        let len = from.len()
            - from
                .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
                .len();
        let (number, after) = from.split_at(len);
        let unit = UNITS.iter().find(|u| {
            after
                .strip_prefix(**u)
                .is_some_and(|t| !t.starts_with(|c: char| c.is_alphanumeric()))
        });
        // A digit glued to a word before it (`fib-33`, `nap-30ms`) is a name, not a measure.
        let in_word = before.ends_with(|c: char| c.is_alphanumeric() || c == '-');
        match unit {
            Some(_) if !in_word => out.push('#'),
            _ => out.push_str(number),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

// ---- the normalisations of the shared-memory, lock, queue and manager examples ----

/// How the items split between the consumers, and who reports first, depends on who ran
/// when: each consumer's line is masked to the same line (the total, on its own line, is
/// compared).
fn producer_consumer(line: &str) -> Option<String> {
    if line.starts_with("consumer-") && line.contains(": got ") {
        return Some("consumer-#: got # items, sum #".into());
    }
    Some(line.to_string())
}

/// Without a lock the count is whatever the race left (both figures masked); with one it
/// must be exact.
fn shared_counter(line: &str) -> Option<String> {
    if line.starts_with("RawValue, no lock:") {
        return Some("RawValue, no lock: # of 40000 (# updates lost)".into());
    }
    Some(line.to_string())
}

/// A block's name is random and its form the platform's (`mp_…` on Unix, `wnsm_…` on
/// Windows, as CPython names them); its size as attached is the size asked for on Linux and
/// that size rounded up to the page on Windows (a view's size, as CPython reports it there),
/// so sizes are compared rounded up to 4 KiB.
fn shared_memory(line: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find('"') {
        let Some(len) = rest[i + 1..].find('"') else {
            break;
        };
        out.push_str(&rest[..i]);
        out.push_str("\"<name>\"");
        rest = &rest[i + len + 2..];
    }
    out.push_str(rest);
    if let Some((head, tail)) = out.split_once(" bytes)") {
        if let Some(open) = head.rfind('(') {
            if let Ok(n) = head[open + 1..].parse::<u64>() {
                return Some(format!(
                    "{}({} bytes, as a whole page){tail}",
                    &head[..open],
                    n.div_ceil(4096) * 4096
                ));
            }
        }
    }
    Some(out)
}

/// The server's pid.
fn manager_dict(line: &str) -> Option<String> {
    Some(mask_after(line, "pid "))
}

/// How many bolts each worker took depends on who ran when (the total and what is left do
/// not).
fn manager_user_type(line: &str) -> Option<String> {
    if line.starts_with("worker ") {
        return Some(mask_after(line, " took "));
    }
    Some(line.to_string())
}

/// The output as compared: normalised, and sorted within paragraphs if `unordered`.
pub fn comparable(example: &Example, stdout: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut paragraph: Vec<String> = Vec::new();
    let flush = |p: &mut Vec<String>, out: &mut Vec<String>| {
        if example.unordered {
            p.sort();
        }
        out.append(p);
    };
    for line in stdout.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            flush(&mut paragraph, &mut out);
            out.push(String::new());
        } else if let Some(l) = (example.normalise)(line) {
            paragraph.push(l);
        }
    }
    flush(&mut paragraph, &mut out);
    out
}

/// An example's executables: Linux's and Windows'.
pub struct Exes {
    pub linux: PathBuf,
    pub windows: PathBuf,
}

/// What one comparison gave.
pub struct ExampleRun {
    pub bin: &'static str,
    /// `None`: same output, both succeeded; else what differed.
    pub problem: Option<String>,
    pub wine_time: Duration,
}

/// Run `example` on Linux and under Wine and compare.
pub fn run(prefix: &Prefix, example: &Example, exes: &Exes) -> Res<ExampleRun> {
    let root = crate::root();
    let shown = std::iter::once(example.bin)
        .chain(example.args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    header(&format!("example {shown}: on Linux"));
    let mut c = std::process::Command::new(&exes.linux);
    c.args(example.args).current_dir(&root);
    let linux = supervise::run(c, DEADLINE, true)?;
    header(&format!("example {shown}: under Wine"));
    let mut c = prefix.wine(&exes.windows);
    c.args(example.args).current_dir(&root);
    let wine = supervise::run(c, DEADLINE, true)?;
    if wine.timed_out() {
        prefix.kill_all()?;
    }
    let mut r = ExampleRun {
        bin: example.bin,
        problem: None,
        wine_time: wine.elapsed,
    };
    if !linux.success() {
        r.problem = Some(format!("failed on Linux ({})", linux.describe(DEADLINE)));
        return Ok(r);
    }
    if !wine.success() {
        r.problem = Some(format!("failed under Wine ({})", wine.describe(DEADLINE)));
        return Ok(r);
    }
    let (a, b) = (
        comparable(example, &linux.stdout),
        comparable(example, &wine.stdout),
    );
    if a != b {
        r.problem = Some(difference(&a, &b));
    }
    Ok(r)
}

/// The first lines that differ, and both outputs as compared.
fn difference(linux: &[String], wine: &[String]) -> String {
    let at = linux
        .iter()
        .zip(wine)
        .position(|(a, b)| a != b)
        .unwrap_or(linux.len().min(wine.len()));
    let show = |v: &[String]| {
        v.iter()
            .map(|l| format!("      | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "output differs at compared line {}:\n    Linux: {:?}\n    Wine:  {:?}\n    Linux, as \
         compared:\n{}\n    Wine, as compared:\n{}",
        at + 1,
        linux.get(at).map_or("(end)", String::as_str),
        wine.get(at).map_or("(end)", String::as_str),
        show(linux),
        show(wine)
    )
}

/// The example binaries' paths of a build, by name.
pub fn exe_of<'a>(artifacts: &'a [crate::cargo_json::Artifact], bin: &str) -> Option<&'a Path> {
    artifacts
        .iter()
        .find(|a| a.package == "multiproc-examples" && a.kind == "bin" && a.target == bin)
        .map(|a| a.exe.as_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(bin: &str) -> &'static Example {
        EXAMPLES.iter().find(|e| e.bin == bin).unwrap()
    }

    #[test]
    fn measures_pids_and_ports_are_masked_and_names_kept() {
        assert_eq!(
            tour("   10000 round trips in 665.0 ms: 66.5 µs per send + recv"),
            Some("   10000 round trips in # ms: # µs per send + recv".into())
        );
        assert_eq!(
            tour("   wait() -> nap-30ms  ended after  38.6 ms, exitcode 7"),
            Some("   wait() -> nap-30ms ended after # ms, exitcode 7".into())
        );
        // Padded to a width: the padding is not compared.
        assert_eq!(
            tour("   wait() -> nap-30ms  ended after 230.5 ms, exitcode 7"),
            tour("   wait() -> nap-30ms  ended after   38.6 ms, exitcode 7"),
        );
        assert_eq!(
            tour("   4 processes, starts included: 302.7 ms; one after another: 476.3 ms (1.57x with 2 CPUs)"),
            Some("   4 processes, starts included: # ms; one after another: # ms (#x with 2 CPUs)".into())
        );
        assert_eq!(
            tour("   fib(33) = 3524578   from 'fib-33'"),
            Some("   fib(33) = 3524578 from 'fib-33'".into())
        );
        assert_eq!(
            tour("MainProcess (pid 10834), cpu_count() = 2"),
            Some("MainProcess (pid #), cpu_count() = 2".into())
        );
        assert_eq!(
            tour("   listening on 127.0.0.1:41123"),
            Some("   listening on <address>".into())
        );
        assert_eq!(tour("load average now: 4.63 (other programs)"), None);
        assert_eq!(
            tour("tour done in 1695.9 ms"),
            Some("tour done in # ms".into())
        );
    }

    #[test]
    fn paragraphs_of_unordered_examples_compare_as_sets() {
        let a = "x\n\n   wait() -> b ended after 1.0 ms\n   wait() -> a ended after 2.0 ms\n";
        let b = "x\n\n   wait() -> a ended after 9.0 ms\n   wait() -> b ended after 3.0 ms\n";
        let tour = example("tour");
        assert_eq!(comparable(tour, a), comparable(tour, b));
        // ... but a different value is a difference.
        let c = "x\n\n   wait() -> a ended after 9.0 ms\n   wait() -> c ended after 3.0 ms\n";
        assert_ne!(comparable(tour, a), comparable(tour, c));
        // The ordered ones keep their order.
        let pipe = example("pipe");
        assert_ne!(comparable(pipe, "1\n2\n"), comparable(pipe, "2\n1\n"));
    }

    #[test]
    fn the_other_examples_normalise_what_differs_by_nature() {
        let w = example("worker");
        assert_eq!(
            comparable(w, "main line\nparent process: 1\nprocess id: 2\n"),
            comparable(w, "main line\nparent process: None\nprocess id: 77\n")
        );
        let f = example("fibonacci");
        assert_eq!(
            comparable(f, "load average: 1\nfib(24) = 46368\none after: 0.1 s\n"),
            ["fib(24) = 46368"]
        );
        let s = example("file_sizes");
        assert_eq!(
            comparable(s, "b: 1 bytes\nx: cannot read (No such file or directory (os error 2))\n"),
            comparable(s, "x: cannot read (The system cannot find the file specified. (os error 2))\nb: 1 bytes\n")
        );
        assert_ne!(comparable(s, "b: 1 bytes\n"), comparable(s, "b: 2 bytes\n"));
        let c = example("crash_resistant");
        assert_eq!(
            comparable(
                c,
                "risky(3) failed: the worker running this task died (exit code -11)\n"
            ),
            comparable(
                c,
                "risky(3) failed: the worker running this task died (exit code -1073741819)\n"
            )
        );
        assert_ne!(
            comparable(c, "risky(3) = 30\n"),
            comparable(
                c,
                "risky(3) failed: the worker running this task died (exit code -11)\n"
            )
        );
        let q = example("sum_squares");
        assert_eq!(
            comparable(q, "job: x\nload average before the run: 7.46\nsum = 5\none process: 1.2 s\nmeasured speed-up: 2.10x on 2 cores (...; above it is timing noise)\n"),
            ["job: x", "sum = 5"]
        );
        assert_ne!(comparable(q, "sum = 5\n"), comparable(q, "sum = 6\n"));
    }

    #[test]
    fn the_shared_memory_and_manager_examples_mask_names_sizes_pids_and_races() {
        let m = example("shared_memory");
        assert_eq!(
            comparable(
                m,
                "reader: attached to \"mp_7a0c\" (10 bytes), read [22]\nx(\"mp_7a0c\") -> Err(NotFound(\"mp_7a0c\"))\n"
            ),
            comparable(
                m,
                "reader: attached to \"wnsm_7f89\" (4096 bytes), read [22]\nx(\"wnsm_7f89\") -> Err(NotFound(\"wnsm_7f89\"))\n"
            ),
        );
        assert_ne!(
            comparable(m, "attached to \"a\" (10 bytes), read [22]\n"),
            comparable(m, "attached to \"a\" (8192 bytes), read [22]\n"),
        );
        assert_ne!(
            comparable(m, "read [22, 33]\n"),
            comparable(m, "read [22, 34]\n")
        );
        let c = example("shared_counter");
        assert_eq!(
            comparable(
                c,
                "RawValue, no lock:  11220 of 40000 (28780 updates lost)\n"
            ),
            comparable(c, "RawValue, no lock:  40000 of 40000 (0 updates lost)\n"),
        );
        assert_ne!(
            comparable(c, "Value::lock():      40000 of 40000 (0 updates lost)\n"),
            comparable(c, "Value::lock():      39999 of 40000 (1 updates lost)\n"),
        );
        let d = example("manager_dict");
        assert_eq!(
            comparable(d, "manager server started, pid 14450\n"),
            comparable(d, "manager server started, pid 408\n")
        );
        let u = example("manager_user_type");
        assert_eq!(
            comparable(u, "worker 0 took 999 bolts, then found only 1 left\n"),
            comparable(u, "worker 0 took 0 bolts, then found only 1 left\n")
        );
        assert_ne!(
            comparable(u, "worker 0 took 9 bolts, then found only 1 left\n"),
            comparable(u, "worker 0 took 9 bolts, then found only 2 left\n")
        );
        assert_eq!(
            tour("   imap_unordered(fragile, [4, 5, 6]) yielded [16, 36, 25] (completion order)"),
            tour("   imap_unordered(fragile, [4, 5, 6]) yielded [36, 25, 16] (completion order)"),
        );
        assert_ne!(
            tour("   imap_unordered(fragile, [4, 5, 6]) yielded [16, 36, 25] (completion order)"),
            tour("   imap_unordered(fragile, [4, 5, 6]) yielded [16, 36] (completion order)"),
        );
        assert_eq!(
            tour("   fragile(3) failed: the worker running this task died (exit code -6) (Python's Pool would hang here)"),
            tour("   fragile(3) failed: the worker running this task died (exit code -1073740791) (Python's Pool would hang here)"),
        );
        let p = example("producer_consumer");
        assert_eq!(
            comparable(p, "producer: put 9\nconsumer-0: got 4 items, sum 1\nconsumer-1: got 5 items, sum 2\nall: 9\n"),
            comparable(p, "producer: put 9\nconsumer-1: got 7 items, sum 2\nconsumer-0: got 2 items, sum 1\nall: 9\n"),
        );
        assert_ne!(
            comparable(p, "all consumers: 100000 items\n"),
            comparable(p, "all consumers: 99999 items\n"),
        );
        assert_eq!(
            tour("   a client on 127.0.0.1:40223 connected with the key; a wrong key: refused (could not connect to the manager at 127.0.0.1:40223)"),
            Some("   a client on 127.0.0.1:# connected with the key; a wrong key: refused (could not connect to the manager at 127.0.0.1:#)".into())
        );
    }
}
