//! What `cargo xtask test --windows` does not run under Wine, and why. Nothing else is left
//! out: every other test of the suites in [`super::CRATES`] runs, and the summary prints this
//! list with its reasons.
//!
//! An entry names a suite as `<package>/<target>` (`multiproc-process/integration`;
//! `<package>/lib` for the unit tests) and a test by its full libtest name
//! (`process::a_child_inherits_its_handles`, as `--list` prints it; it is matched exactly).
//! `test: "*"` leaves out the whole suite (for a suite without libtest's harness, which cannot
//! skip single tests). An entry that names no test of its suite fails the run, so the list
//! cannot go stale.
//!
//! A test belongs here only when it should pass on Windows but cannot under Wine (Wine is not
//! Windows: say which Wine behaviour stops it), or, for a while, when it waits for a named
//! piece of Windows work that has not landed (the reason says which). A test that cannot work
//! on Windows at all is `#[cfg(unix)]` in its suite instead.

/// One test (or suite) left out of the Wine run.
#[derive(Debug, Clone, Copy)]
pub struct Skip {
    /// `<package>/<target>`, or `<package>/lib`.
    pub suite: &'static str,
    /// The full test name, or `*` for the whole suite.
    pub test: &'static str,
    /// Why it cannot run under Wine.
    pub reason: &'static str,
}

/// The tests left out of the Wine run.
pub const SKIPS: &[Skip] = &[
    Skip {
        suite: "multiproc-process/integration",
        test: "listener::cpython_client_talks_to_our_listener",
        reason: NO_CPYTHON,
    },
    Skip {
        suite: "multiproc-process/integration",
        test: "listener::our_client_talks_to_a_cpython_listener",
        reason: NO_CPYTHON,
    },
    Skip {
        suite: "multiproc-process/integration",
        test: "listener::cpython_with_wrong_authkey_is_refused_on_both_sides",
        reason: NO_CPYTHON,
    },
];

/// Why the CPython interop tests do not run under Wine.
const NO_CPYTHON: &str = "runs CPython (`python3`) against our listener or client: the \
    throw-away Wine prefix has no Windows CPython, and a Windows program cannot start Linux's \
    python3";

/// The entries for `suite`.
pub fn for_suite<'a>(skips: &'a [Skip], suite: &'a str) -> impl Iterator<Item = &'a Skip> + 'a {
    skips.iter().filter(move |s| s.suite == suite)
}

/// Whether `skips` leaves out all of `suite`.
pub fn whole_suite<'a>(skips: &'a [Skip], suite: &str) -> Option<&'a Skip> {
    skips.iter().find(|s| s.suite == suite && s.test == "*")
}
