//! Reading what a libtest binary prints: its test list (`--list`) and its run.

/// The counts of one run, from its `test result:` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
    pub filtered_out: usize,
}

/// What the output of one run says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// From the `running N tests` line: the output is libtest's.
    pub running: Option<usize>,
    /// From the `test result:` line; `None` if the run ended before it (a crash, a deadline).
    pub result: Option<Counts>,
    /// `test NAME ... ok` lines (counted when no result line came).
    pub ok: Vec<String>,
    /// `test NAME ... FAILED` lines.
    pub failed: Vec<String>,
    /// What each failed test printed (libtest's `---- NAME stdout ----` blocks), in order.
    pub outputs: Vec<(String, String)>,
}

/// The test a `---- NAME stdout ----` (or `stderr`) line opens the output of.
fn output_header(line: &str) -> Option<&str> {
    let inner = line.strip_prefix("---- ")?.strip_suffix(" ----")?;
    let (name, stream) = inner.rsplit_once(' ')?;
    matches!(stream, "stdout" | "stderr").then_some(name)
}

/// `N word` in a `;`-separated part of a result line.
fn count(part: &str, word: &str) -> Option<usize> {
    let part = part.trim();
    let n = part.strip_suffix(word)?.trim();
    n.parse().ok()
}

/// Parse `test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 2 filtered out; finished
/// in 0.1s`.
pub fn parse_result_line(line: &str) -> Option<Counts> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_verdict, rest) = rest.split_once(". ")?;
    let mut c = Counts::default();
    let mut seen = 0;
    for part in rest.split(';') {
        if let Some(n) = count(part, "passed") {
            c.passed = n;
            seen += 1;
        } else if let Some(n) = count(part, "failed") {
            c.failed = n;
            seen += 1;
        } else if let Some(n) = count(part, "ignored") {
            c.ignored = n;
            seen += 1;
        } else if let Some(n) = count(part, "filtered out") {
            c.filtered_out = n;
        }
    }
    (seen == 3).then_some(c)
}

/// Read a run's output. Lines not libtest's (a test's own prints with `--nocapture`, a child's)
/// are passed over.
pub fn parse_run(output: &str) -> Report {
    let mut r = Report::default();
    // the failed test whose output block is being read
    let mut block: Option<(String, String)> = None;
    for line in output.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(name) = output_header(line) {
            r.outputs.extend(block.take());
            block = Some((name.to_string(), String::new()));
            continue;
        }
        if let Some((_, text)) = &mut block {
            // the blocks end with the second `failures:` line (the list of names)
            if line == "failures:" || line.starts_with("test result: ") {
                r.outputs.extend(block.take());
            } else {
                text.push_str(line);
                text.push('\n');
                continue;
            }
        }
        if let Some(c) = parse_result_line(line) {
            r.result = Some(c);
        } else if let Some(n) = line
            .strip_prefix("running ")
            .and_then(|l| l.strip_suffix(" tests").or_else(|| l.strip_suffix(" test")))
            .and_then(|n| n.trim().parse().ok())
        {
            r.running.get_or_insert(n);
        } else if let Some(rest) = line.strip_prefix("test ") {
            if let Some(name) = rest.strip_suffix(" ... ok") {
                r.ok.push(name.to_string());
            } else if let Some(name) = rest.strip_suffix(" ... FAILED") {
                r.failed.push(name.to_string());
            }
        }
    }
    r.outputs.extend(block);
    r
}

/// What to show of a failed test's output: from its first panic on (a child's panic before
/// the test's own is kept), without backtrace frames, blank runs folded, at most `max_lines`
/// lines of at most 300 characters each.
pub fn excerpt(text: &str, max_lines: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains("panicked at"))
        .unwrap_or(0);
    let mut out: Vec<String> = Vec::new();
    let mut in_backtrace = false;
    for l in &lines[start..] {
        if l.starts_with("stack backtrace:") {
            in_backtrace = true;
            out.push("(backtrace left out)".into());
            continue;
        }
        if in_backtrace {
            // frames are indented; the first unindented line ends them
            if l.starts_with(' ') || l.starts_with("note: Some details") {
                continue;
            }
            in_backtrace = false;
        }
        if l.trim().is_empty() && out.last().is_none_or(|p| p.trim().is_empty()) {
            continue;
        }
        let mut l = l.to_string();
        if l.len() > 300 {
            let cut = (0..=300)
                .rev()
                .find(|&i| l.is_char_boundary(i))
                .unwrap_or(0);
            l.truncate(cut);
            l.push_str(" [...]");
        }
        out.push(l);
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    if out.len() > max_lines {
        let left = out.len() - max_lines;
        out.truncate(max_lines);
        out.push(format!("[... {left} more lines]"));
    }
    out
}

/// The test names of a `--list` output (`NAME: test` lines; benchmarks are not run).
pub fn parse_list(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_parse() {
        let c = parse_result_line(
            "test result: FAILED. 3 passed; 1 failed; 2 ignored; 0 measured; 4 filtered out; \
             finished in 0.24s",
        )
        .unwrap();
        assert_eq!(
            c,
            Counts {
                passed: 3,
                failed: 1,
                ignored: 2,
                filtered_out: 4
            }
        );
        assert_eq!(parse_result_line("test result: ok."), None);
        assert_eq!(parse_result_line("test foo ... ok"), None);
        assert_eq!(
            parse_result_line("test result: ok. x passed; 0 failed; 0 ignored"),
            None
        );
    }

    #[test]
    fn a_run_is_read_with_its_failures_and_without_foreign_lines() {
        let out = "\nrunning 3 tests\nhello from a child\ntest a::b ... ok\n\
                   test a::c ... FAILED\ntest a::d ... ignored, needs a network\n\nfailures:\n\n\
                   test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered \
                   out; finished in 1.00s\n";
        let r = parse_run(out);
        assert_eq!(r.running, Some(3));
        assert_eq!(r.ok, ["a::b"]);
        assert_eq!(r.failed, ["a::c"]);
        assert_eq!(
            r.result.map(|c| (c.passed, c.failed, c.ignored)),
            Some((1, 1, 1))
        );
    }

    #[test]
    fn failed_tests_keep_what_they_printed() {
        let out = "\nrunning 2 tests\ntest a::c ... FAILED\ntest a::d ... FAILED\n\nfailures:\n\n\
                   ---- a::c stdout ----\nchild says hi\n\nthread 'a::c' panicked at x.rs:1:2:\n\
                   it broke\nstack backtrace:\n   0: f\n             at g.rs:1\nnote: Some details \
                   are omitted\n\n---- a::d stdout ----\r\nthread 'a::d' panicked at y.rs:3:4:\r\n\
                   no\r\n\n\nfailures:\n    a::c\n    a::d\n\ntest result: FAILED. 0 passed; 2 \
                   failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s\n";
        let r = parse_run(out);
        assert_eq!(r.failed, ["a::c", "a::d"]);
        assert_eq!(r.result.map(|c| c.failed), Some(2));
        let names: Vec<&str> = r.outputs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a::c", "a::d"]);
        assert_eq!(
            excerpt(&r.outputs[0].1, 10),
            [
                "thread 'a::c' panicked at x.rs:1:2:",
                "it broke",
                "(backtrace left out)"
            ]
        );
        assert_eq!(
            excerpt(&r.outputs[1].1, 1),
            ["thread 'a::d' panicked at y.rs:3:4:", "[... 1 more lines]"]
        );
        // a run killed inside a block keeps what came
        let cut = parse_run("---- z stdout ----\nthread 'z' panicked at q.rs:1:1:\nhalf");
        assert_eq!(cut.outputs.len(), 1);
        assert!(cut.outputs[0].1.ends_with("half\n"));
    }

    #[test]
    fn a_run_cut_short_has_no_result() {
        let r = parse_run("\nrunning 1 test\ntest x ... ok\n");
        assert_eq!(r.running, Some(1));
        assert_eq!(r.result, None);
        assert_eq!(r.ok, ["x"]);
        assert_eq!(parse_run("a program of its own\n").running, None);
    }

    #[test]
    fn lists_parse() {
        let out = "a::b: test\nc: test\nd: bench\n\n2 tests, 1 benchmark\n";
        assert_eq!(parse_list(out), ["a::b", "c"]);
    }
}
