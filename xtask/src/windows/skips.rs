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
        suite: "multiproc-sync/lib",
        test: "queue::ring::tests::a_full_ring_times_out_and_an_empty_one_too",
        reason: NO_QUEUE_SIDE_CHANNEL,
    },
    Skip {
        suite: "multiproc-sync/lib",
        test: "queue::ring::tests::a_large_item_goes_aside_when_the_ring_is_full_a_small_one_waits",
        reason: NO_QUEUE_SIDE_CHANNEL,
    },
    Skip {
        suite: "multiproc-sync/lib",
        test: "queue::ring::tests::a_scribbled_length_is_a_broken_queue_not_an_allocation",
        reason: NO_QUEUE_SIDE_CHANNEL,
    },
    Skip {
        suite: "multiproc-sync/lib",
        test: "queue::ring::tests::frames_wrap_skip_and_go_round_a_small_ring_many_times",
        reason: NO_QUEUE_SIDE_CHANNEL,
    },
    Skip {
        suite: "multiproc-sync/lib",
        test: "queue::ring::tests::items_larger_than_the_ring_go_by_the_side_channel_in_order",
        reason: NO_QUEUE_SIDE_CHANNEL,
    },
    Skip {
        suite: "multiproc-sync/lib",
        test: "queue::ring::tests::positions_and_counts_wrap_around_2_to_the_32",
        reason: NO_QUEUE_SIDE_CHANNEL,
    },
    Skip {
        suite: "multiproc-sync/lib",
        test: "queue::ring::tests::side_items_in_flight_are_bounded_by_the_socket_and_then_full",
        reason: NO_QUEUE_SIDE_CHANNEL,
    },
    Skip {
        suite: "multiproc-sync/lib",
        test: "queue::ring::tests::stale_side_items_are_dropped_and_taken_ones_skipped",
        reason: NO_QUEUE_SIDE_CHANNEL,
    },
    Skip {
        suite: "multiproc-manager/sync",
        test: "pool_tasks_put_on_a_managed_queue",
        reason: NO_QUEUE_SIDE_CHANNEL,
    },
    Skip {
        suite: "multiproc-manager/values",
        test: "a_pool_builds_a_dict_of_lists",
        reason: NO_QUEUE_SIDE_CHANNEL,
    },
    Skip {
        suite: "multiproc/errors",
        test: "no_error_repeats_its_cause",
        reason: NO_QUEUE_SIDE_CHANNEL,
    },
    Skip {
        suite: "multiproc/errors",
        test: "question_mark_works_on_every_crates_error",
        reason: NO_QUEUE_SIDE_CHANNEL,
    },
    Skip {
        suite: "multiproc/facade",
        test: "pool_reexports",
        reason: NO_QUEUE_SIDE_CHANNEL,
    },
    Skip {
        suite: "multiproc/facade",
        test: "sync_and_shm_reexports",
        reason: NO_QUEUE_SIDE_CHANNEL,
    },
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

/// Why the queue ring's unit tests do not run under Wine yet.
const NO_QUEUE_SIDE_CHANNEL: &str = "not Wine: a queue's side channel (large items, and the \
     ring's own set-up) is a Unix socket pair passing descriptors, and its Windows form is still \
     to come (issue 12); the queue integration suites are #[cfg(unix)] for the same reason, and \
     the tests of other crates that make a queue (a pool's channels are queues) wait for it too";
