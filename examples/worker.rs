//! A worker process started and joined: the first example of Python's `multiprocessing` docs.
//!
//! ```python
//! from multiprocessing import Process, parent_process
//! import os
//!
//! def info(title):
//!     print(title)
//!     print('module name:', __name__)
//!     print('parent process:', os.getppid())
//!     print('process id:', os.getpid())
//!
//! def f(name):
//!     info('function f')
//!     print('hello', name)
//!
//! if __name__ == '__main__':
//!     info('main line')
//!     p = Process(target=f, args=('bob',))
//!     p.start()
//!     p.join()
//! ```
//!
//! Run it with `cargo run -p multiproc-examples --bin worker`.

use multiproc::Process;

/// Who is running this code: Python's `info(title)`.
fn info(title: &str) {
    let me = multiproc::current_process();
    println!("{title}");
    println!("module name: {}", module_path!());
    println!("process name: {}", me.name);
    println!("parent process: {}", parent_pid());
    println!("process id: {}", me.pid);
}

/// The parent's pid: the multiproc parent in a child (even when the forkserver is the OS
/// parent), the OS parent (the shell, or cargo) in the main process.
fn parent_pid() -> String {
    match multiproc::parent_process() {
        Some(parent) => parent.pid().to_string(),
        None => os_parent_pid(),
    }
}

#[cfg(unix)]
fn os_parent_pid() -> String {
    std::os::unix::process::parent_id().to_string()
}

#[cfg(not(unix))]
fn os_parent_pid() -> String {
    "None".to_string()
}

/// The target: a plain `fn` taking one serde argument.
fn f(name: String) {
    info("function f");
    println!("hello {name}");
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    info("main line");
    let p = Process::new(f, "bob".to_string());
    p.start()?;
    p.join()?;
    Ok(())
}
