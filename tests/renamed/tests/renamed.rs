//! `#[mp::main(crate = "mp")]` in a crate whose `Cargo.toml` renames the facade to `mp`
//! (and has no `multiproc` to fall back on): the attribute's `init()` call must find the
//! facade under its new name, so a child started with each start method runs its task.
//!
//! `harness = false`: this `main` is the test, as it is a user's program.

use std::process::ExitCode;
use std::time::Duration;

use mp::{Connection, StartMethod};

fn square(conn: Connection) {
    let n: u64 = conn.recv().expect("the parent sends a number");
    conn.send(&(n * n)).expect("the parent is listening");
}

fn one(method: StartMethod) -> Result<(), String> {
    let ctx = mp::get_context(method).map_err(|e| e.to_string())?;
    let (here, there) = ctx.pipe(true).map_err(|e| e.to_string())?;
    let p = ctx.process(square, there);
    p.start().map_err(|e| e.to_string())?;
    here.send(&9u64).map_err(|e| e.to_string())?;
    if !here
        .poll(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?
    {
        let _ = p.kill();
        return Err("no answer from the child within 60 s".into());
    }
    let got: u64 = here.recv().map_err(|e| e.to_string())?;
    let code = p
        .join_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    match (got, code) {
        (81, Some(0)) => Ok(()),
        other => Err(format!(
            "child answered/exited {other:?}, wanted (81, Some(0))"
        )),
    }
}

#[mp::main(crate = "mp")]
fn main() -> ExitCode {
    let mut failed = 0;
    for &method in StartMethod::available() {
        match one(method) {
            Ok(()) => println!("test renamed_facade_{} ... ok", method.name()),
            Err(e) => {
                failed += 1;
                println!("test renamed_facade_{} ... FAILED: {e}", method.name());
            }
        }
    }
    let passed = StartMethod::available().len() - failed;
    println!("\ntest result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out", if failed == 0 { "ok" } else { "FAILED" });
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
