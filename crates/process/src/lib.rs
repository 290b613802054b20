//! Processes, pipes and listeners for multiproc: Python's `multiprocessing.Process`,
//! `Pipe`, `connection.Listener`/`Client` and `connection.wait`, in Rust.
//!
//! * [`Process`] runs a plain `fn` with serde arguments in another process, started with
//!   [`StartMethod::Spawn`] (default), [`Fork`](StartMethod::Fork) or
//!   [`Forkserver`](StartMethod::Forkserver).
//! * [`pipe`] gives two [`Connection`]s; [`Listener`]/[`Client`] connect unrelated processes
//!   over Unix sockets, Windows named pipes or TCP, authenticated with an authkey (compatible
//!   with CPython).
//! * [`wait`] blocks on several connections and processes at once.
//!
//! A binary that starts processes calls [`init`] first thing in `main` (or uses
//! `#[multiproc::main]`); a test binary adds one line, [`test_support!`].
//!
//! ```no_run
//! use multiproc::{pipe, Connection, Process};
//!
//! fn worker(conn: Connection) {
//!     let n: u64 = conn.recv().unwrap();
//!     conn.send(&(n * n)).unwrap();
//! }
//!
//! fn main() {
//!     multiproc::init();
//!     let (here, there) = pipe(true).unwrap();
//!     let p = Process::new(worker, there);
//!     p.start().unwrap();
//!     here.send(&12u64).unwrap();
//!     assert_eq!(here.recv::<u64>().unwrap(), 144);
//!     assert_eq!(p.join().unwrap(), 0);
//! }
//! ```

#![warn(missing_debug_implementations)]

mod auth;
mod bootstrap;
mod connection;
mod context;
mod error;
mod handshake;
mod listener;
mod per_process;
mod process;
mod sys;
mod wait;

pub use bootstrap::{current_process, init, parent_process, ParentProcess, ProcessInfo};
pub use connection::{pipe, Connection};
pub use context::{
    get_context, get_start_method, set_executable, set_start_method, Context, StartMethod,
};
pub use error::Error;
pub use listener::{Address, Client, Listener, ToAddress};
pub use process::{active_children, cpu_count, Process};
pub use wait::{wait, wait_timeout, RawWaitHandle, Waitable};

/// Let a test binary (or any binary without a multiproc-aware `main`) start child processes:
/// one line at the top level of the crate. It runs [`init`] before `main` (and before the test
/// harness), so a spawned child runs its task instead of the tests.
///
/// ```no_run
/// // at the top of tests/my_test.rs
/// multiproc::test_support!();
/// ```
#[macro_export]
macro_rules! test_support {
    () => {
        $crate::__before_main!(__MULTIPROC_TEST_SUPPORT, $crate::init);
    };
}

/// Not API (the expansion of `test_support!`, here and in the facade): a static `$name` in
/// the executable's constructors (where the platform has them) that calls `$f` before `main`.
#[doc(hidden)]
#[macro_export]
macro_rules! __before_main {
    ($name:ident, $f:path) => {
        #[used]
        #[cfg_attr(
            any(target_os = "linux", target_os = "android", target_os = "freebsd"),
            unsafe(link_section = ".init_array")
        )]
        #[cfg_attr(
            target_vendor = "apple",
            unsafe(link_section = "__DATA,__mod_init_func")
        )]
        #[cfg_attr(windows, unsafe(link_section = ".CRT$XCU"))]
        static $name: extern "C" fn() = {
            extern "C" fn __multiproc_before_main() {
                $f();
            }
            __multiproc_before_main
        };
    };
}

// The unit tests start children of their own binary (see `process::tests`).
#[cfg(test)]
test_support!();
