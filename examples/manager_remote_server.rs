//! A manager server on a TCP port, for clients on other machines (Python's
//! `BaseManager(address=('', 50000), authkey=b'abc').get_server().serve_forever()`). It holds
//! whatever its clients make (dicts of any serde types: the server needs none of the program's
//! types) and runs until a client asks it to shut down; `manager_remote_client` is such a
//! client. The key is the `MANAGER_KEY` environment variable (a default for the example).
//!
//! Run it with `cargo run -p multiproc-examples --bin manager_remote_server -- 127.0.0.1:50000`
//! and then, elsewhere, `cargo run -p multiproc-examples --bin manager_remote_client --
//! 127.0.0.1:50000`. Listen on `0.0.0.0:50000` to be reached from other hosts (the key then
//! guards it: choose a long random one).

use multiproc::Manager;

/// The example's default key (use your own: `MANAGER_KEY=...`).
const DEFAULT_KEY: &str = "multiproc example key";

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50000".into());
    let key = std::env::var("MANAGER_KEY").unwrap_or_else(|_| DEFAULT_KEY.into());
    Manager::serve_forever(address.as_str(), key.as_bytes(), |bound| {
        println!(
            "manager server listening on {bound}, pid {}",
            std::process::id()
        );
    })?;
    println!("a client asked the server to shut down: stopped");
    Ok(())
}
