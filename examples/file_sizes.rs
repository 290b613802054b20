//! A process per file: each child reads one file and reports its size back to the parent.
//!
//! ```python
//! import os, sys
//! from multiprocessing import Process, Pipe
//! from multiprocessing.connection import wait
//!
//! def measure(path, conn):
//!     with open(path, 'rb') as f:
//!         conn.send((path, len(f.read())))
//!
//! if __name__ == '__main__':
//!     paths = sys.argv[1:] or sorted(p for p in os.listdir('.') if os.path.isfile(p))
//!     readers = []
//!     for path in paths:
//!         here, there = Pipe(duplex=False)
//!         Process(target=measure, args=(path, there)).start()
//!         there.close()
//!         readers.append(here)
//!     while readers:
//!         for r in wait(readers):
//!             try:
//!                 path, size = r.recv()
//!                 print(f'{path}: {size} bytes')
//!             except EOFError:
//!                 readers.remove(r)
//! ```
//!
//! Results are printed as they arrive (so the order may change from run to run).
//! Run it with `cargo run -p multiproc-examples --bin file_sizes` from the repository root
//! (every file of the current directory), or name files: `-- Cargo.toml README.md`.

use std::io::Read;

use multiproc::connection::{wait, Waitable};
use multiproc::{Connection, Process};

/// At most this many files when none are named (one process each).
const DEFAULT_LIMIT: usize = 32;

/// The child: read the whole file and report its size, or why it could not.
fn measure((path, conn): (String, Connection)) {
    let size = std::fs::File::open(&path)
        .and_then(|mut f| {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            Ok(buf.len() as u64)
        })
        .map_err(|e| e.to_string());
    conn.send(&(path, size))
        .expect("the parent holds the other end");
}

/// The regular files of the current directory, sorted by name.
fn files_here() -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(".")? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    if names.len() > DEFAULT_LIMIT {
        eprintln!(
            "{} files here; measuring the first {DEFAULT_LIMIT}",
            names.len()
        );
        names.truncate(DEFAULT_LIMIT);
    }
    Ok(names)
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        paths = files_here()?;
    }

    let mut children = Vec::new();
    let mut readers = Vec::new();
    for path in paths {
        let (here, there) = multiproc::pipe(false)?;
        let p = Process::new(measure, (path, there));
        p.start()?;
        children.push(p);
        readers.push(here);
    }

    let (mut total, mut count) = (0u64, 0usize);
    while !readers.is_empty() {
        let mut ready = {
            let objects: Vec<&dyn Waitable> = readers.iter().map(|r| r as &dyn Waitable).collect();
            wait(&objects)?
        };
        ready.sort_unstable();
        // Remove from the back so the indices of the others stay valid.
        for &i in ready.iter().rev() {
            match readers[i].recv::<(String, Result<u64, String>)>() {
                Ok((path, Ok(size))) => {
                    println!("{path}: {size} bytes");
                    total += size;
                    count += 1;
                }
                Ok((path, Err(why))) => println!("{path}: cannot read ({why})"),
                // End of file: that child is done.
                Err(multiproc::ProcessError::Eof) => {
                    readers.swap_remove(i);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    for p in &children {
        p.join()?;
    }
    println!(
        "{count} files, {total} bytes, measured by {} processes",
        children.len()
    );
    Ok(())
}
