//! `#[mp::main(crate = "mp")]` in a crate whose `Cargo.toml` renames the facade to `mp`
//! (and has no `multiproc` to fall back on): the attribute's `init()` call must find the
//! facade under its new name, so a child started with each start method runs its task.
//!
//! Its message and shared-value types derive serde and bytemuck through the facade's
//! re-exports (`mp::serde`, `mp::bytemuck`): the crate depends on nothing else.
//!
//! `harness = false`: this `main` is the test, as it is a user's program.

use std::process::ExitCode;
use std::time::Duration;

use mp::bytemuck::{Pod, Zeroable};
use mp::serde::{Deserialize, Serialize};
use mp::{Connection, StartMethod, Value};

/// A message type derived through the facade's serde: this crate has no serde of its own.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(crate = "mp::serde")]
struct Ask {
    n: u64,
    tag: String,
}

/// A shared value's element derived through the facade's bytemuck.
#[derive(Clone, Copy, Pod, Zeroable, Debug, PartialEq)]
#[bytemuck(crate = "mp::bytemuck")]
#[repr(C)]
struct Tally {
    asked: u32,
    answered: u32,
}

fn square((conn, tally): (Connection, Value<Tally>)) {
    let ask: Ask = conn.recv().expect("the parent sends a question");
    tally.lock().answered += 1;
    conn.send(&(ask.n * ask.n, ask.tag))
        .expect("the parent is listening");
}

fn one(method: StartMethod) -> Result<(), String> {
    let ctx = mp::get_context(method).map_err(|e| e.to_string())?;
    let (here, there) = ctx.pipe(true).map_err(|e| e.to_string())?;
    let tally = Value::new(Tally {
        asked: 1,
        answered: 0,
    })
    .map_err(|e| e.to_string())?;
    let p = ctx.process(square, (there, tally.clone()));
    p.start().map_err(|e| e.to_string())?;
    let ask = Ask {
        n: 9,
        tag: method.name().into(),
    };
    here.send(&ask).map_err(|e| e.to_string())?;
    if !here
        .poll(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?
    {
        let _ = p.kill();
        return Err("no answer from the child within 60 s".into());
    }
    let (got, tag): (u64, String) = here.recv().map_err(|e| e.to_string())?;
    let code = p
        .join_timeout(Duration::from_secs(60))
        .map_err(|e| e.to_string())?;
    let t = tally.get();
    match (got, code, t) {
        (
            81,
            Some(0),
            Tally {
                asked: 1,
                answered: 1,
            },
        ) if tag == method.name() => Ok(()),
        other => Err(format!(
            "child answered/exited/tallied {other:?} with tag {tag:?}, \
             wanted (81, Some(0), 1 of 1) with {:?}",
            method.name()
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
    let status = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {status}. {passed} passed; {failed} failed; 0 ignored; 0 measured; \
         0 filtered out"
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
