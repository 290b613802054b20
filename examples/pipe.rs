//! A pipe between a parent and its child: the `Pipe` example of Python's `multiprocessing` docs.
//!
//! ```python
//! from multiprocessing import Process, Pipe
//!
//! def f(conn):
//!     conn.send([42, None, 'hello'])
//!     conn.close()
//!
//! if __name__ == '__main__':
//!     parent_conn, child_conn = Pipe()
//!     p = Process(target=f, args=(child_conn,))
//!     p.start()
//!     print(parent_conn.recv())   # prints "[42, None, 'hello']"
//!     p.join()
//! ```
//!
//! Python lists may mix types; in Rust the message is a serde value, here a tuple
//! `(i32, Option<i32>, String)`, printed the way Python prints the list.
//!
//! Run it with `cargo run -p multiproc-examples --bin pipe`.

use multiproc::{Connection, Pipe, Process};

/// What travels through the pipe: Python's `[42, None, 'hello']`.
type Message = (i32, Option<i32>, String);

/// The child: send one message, then close its end.
fn f(conn: Connection) {
    let msg: Message = (42, None, "hello".to_string());
    conn.send(&msg).expect("the parent holds the other end");
    conn.close();
}

/// Format the message as Python's `print` shows the list.
fn python_repr((n, maybe, s): &Message) -> String {
    let maybe = match maybe {
        Some(v) => v.to_string(),
        None => "None".to_string(),
    };
    format!("[{n}, {maybe}, '{s}']")
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let (parent_conn, child_conn) = Pipe(true)?;
    let p = Process::new(f, child_conn);
    p.start()?;
    let msg: Message = parent_conn.recv()?;
    println!("{}", python_repr(&msg));
    p.join()?;
    Ok(())
}
