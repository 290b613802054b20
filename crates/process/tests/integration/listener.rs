//! Listener/Client: authentication, hostile peers, and interoperability with CPython.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::bounded::{AcceptBounded, JoinBounded, RecvBounded, ThreadJoinBounded};
use multiproc_process::{Address, Client, Error, Listener, Process};

fn python() -> Command {
    let mut c = Command::new("python3");
    c.stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    c
}

fn tcp_port(l: &Listener) -> u16 {
    match l.address() {
        Address::Tcp(a) => a.port(),
        other => panic!("not TCP: {other}"),
    }
}

#[test]
fn cpython_client_talks_to_our_listener() {
    let listener = Listener::bind("127.0.0.1:0", Some(b"secret")).unwrap();
    let port = tcp_port(&listener);
    let script = format!(
        "from multiprocessing.connection import Client\n\
         c = Client(('127.0.0.1', {port}), authkey=b'secret')\n\
         c.send_bytes(b'hello from python')\n\
         print(c.recv_bytes().decode())\n\
         c.close()\n"
    );
    let child = python()
        .args(["-c", &script])
        .spawn()
        .expect("python3 must be installed");
    let conn = listener.accept_bounded().unwrap();
    assert_eq!(conn.recv_bytes_bounded(), b"hello from python");
    conn.send_bytes(b"hello from rust").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello from rust"
    );
}

#[test]
fn our_client_talks_to_a_cpython_listener() {
    let script = "from multiprocessing.connection import Listener\n\
                  import sys\n\
                  with Listener(('127.0.0.1', 0), authkey=b'k3y') as l:\n\
                  \x20   print(l.address[1], flush=True)\n\
                  \x20   with l.accept() as c:\n\
                  \x20       m = c.recv_bytes()\n\
                  \x20       c.send_bytes(m[::-1])\n\
                  \x20       big = c.recv_bytes()\n\
                  \x20       c.send_bytes(len(big).to_bytes(8, 'big'))\n";
    let mut child = python()
        .args(["-c", script])
        .spawn()
        .expect("python3 must be installed");
    let mut line = String::new();
    {
        let out = child.stdout.as_mut().unwrap();
        let mut b = [0u8; 1];
        while out.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
            line.push(b[0] as char);
        }
    }
    let port: u16 = line.trim().parse().unwrap();
    let conn = Client::connect(format!("127.0.0.1:{port}"), Some(b"k3y")).unwrap();
    conn.send_bytes(b"abc").unwrap();
    assert_eq!(conn.recv_bytes_bounded(), b"cba");
    conn.send_bytes(&vec![7u8; 5 << 20]).unwrap();
    assert_eq!(conn.recv_bytes_bounded(), (5u64 << 20).to_be_bytes());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cpython_with_wrong_authkey_is_refused_on_both_sides() {
    let listener = Listener::bind("127.0.0.1:0", Some(b"right")).unwrap();
    let port = tcp_port(&listener);
    let script = format!(
        "from multiprocessing.connection import Client\n\
         from multiprocessing import AuthenticationError\n\
         try:\n\
         \x20   Client(('127.0.0.1', {port}), authkey=b'wrong')\n\
         \x20   print('connected')\n\
         except AuthenticationError as e:\n\
         \x20   print('refused')\n"
    );
    let child = python()
        .args(["-c", &script])
        .spawn()
        .expect("python3 must be installed");
    assert!(matches!(
        listener.accept_bounded(),
        Err(Error::Authentication(_))
    ));
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "refused",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn wrong_authkey_fails_on_both_sides_and_nothing_is_served() {
    let listener = Listener::bind("127.0.0.1:0", Some(b"right")).unwrap();
    let addr = listener.address();
    let t = std::thread::spawn(move || Client::connect(&addr, Some(b"wrong")).map(|_| ()));
    assert!(matches!(
        listener.accept_bounded(),
        Err(Error::Authentication(_))
    ));
    assert!(matches!(t.join_bounded(), Err(Error::Authentication(_))));
    // the listener still serves well-behaved clients
    let addr = listener.address();
    let t = std::thread::spawn(move || {
        Client::connect(&addr, Some(b"right"))
            .unwrap()
            .send(&5u8)
            .unwrap()
    });
    assert_eq!(listener.accept_bounded().unwrap().recv_bounded::<u8>(), 5);
    t.join_bounded();
}

#[test]
fn garbage_bytes_fail_that_connection_only() {
    for address in ["127.0.0.1:0".parse().unwrap(), local_address("garbage")] {
        let listener = Listener::bind(address, Some(b"key")).unwrap();
        let addr = listener.address();
        for garbage in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &[0xff, 0xff, 0xff, 0xfe],
            &[0, 0, 0, 3, 1, 2, 3],
        ] {
            let mut s = raw_connect(&addr);
            s.write_all(garbage).unwrap();
            let err = listener.accept_bounded().unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Authentication(_) | Error::Pickle(_) | Error::Eof | Error::Io(_)
                ),
                "{err:?}"
            );
        }
        let t = std::thread::spawn(move || {
            Client::connect(&addr, Some(b"key"))
                .unwrap()
                .send_bytes(b"ok")
                .unwrap()
        });
        assert_eq!(
            listener.accept_bounded().unwrap().recv_bytes_bounded(),
            b"ok"
        );
        t.join_bounded();
    }
}

#[test]
fn silent_peer_times_out_instead_of_blocking_accept() {
    for address in ["127.0.0.1:0".parse().unwrap(), local_address("silent")] {
        let mut listener = Listener::bind(address, Some(b"key")).unwrap();
        listener.set_auth_timeout(Some(Duration::from_millis(200)));
        let _silent = raw_connect(&listener.address());
        // the silent peer never answers the challenge
        assert!(matches!(listener.accept_bounded(), Err(Error::Io(_))));
    }
}

/// A child that connects to `address` (as it parses) and sends twice `n`.
fn local_client((address, n): (String, u32)) {
    let c = Client::connect(address.as_str(), Some(b"unix-key")).unwrap();
    c.send(&(n * 2)).unwrap();
}

/// The local kind of address of this platform: a Unix socket path, or a Windows named pipe.
fn local_address(tag: &str) -> Address {
    #[cfg(unix)]
    {
        Address::Unix(temp_socket_path(tag))
    }
    #[cfg(windows)]
    {
        let _ = tag;
        Address::arbitrary_pipe()
    }
}

/// A named-pipe listener served by a child process, as the Unix-socket one is.
#[cfg(windows)]
#[test]
fn named_pipe_listener_across_processes() {
    let listener = Listener::bind(Address::arbitrary_pipe(), Some(b"unix-key")).unwrap();
    let p = Process::new(local_client, (listener.address().to_string(), 21));
    p.start().unwrap();
    let conn = listener.accept_bounded().unwrap();
    assert_eq!(conn.recv_bounded::<u32>(), 42);
    assert_eq!(p.join_bounded(), 0);
}

#[cfg(unix)]
#[test]
fn unix_socket_listener_across_processes() {
    let path = std::env::temp_dir().join(format!("multiproc-test-{}.sock", std::process::id()));
    let listener = Listener::bind(Address::Unix(path.clone()), Some(b"unix-key")).unwrap();
    let p = Process::new(local_client, (path.to_string_lossy().into_owned(), 21));
    p.start().unwrap();
    let conn = listener.accept_bounded().unwrap();
    assert_eq!(conn.recv_bounded::<u32>(), 42);
    assert_eq!(p.join_bounded(), 0);
    drop(listener);
    assert!(!path.exists(), "the listener removes its socket file");
}

/// A raw peer: a socket that speaks no protocol unless the test makes it.
trait RawPeer: Read + Write + Send {
    fn try_clone_peer(&self) -> Box<dyn RawPeer>;
    fn set_read_timeout_peer(&self, t: Duration);
}

impl RawPeer for TcpStream {
    fn try_clone_peer(&self) -> Box<dyn RawPeer> {
        Box::new(self.try_clone().unwrap())
    }
    fn set_read_timeout_peer(&self, t: Duration) {
        self.set_read_timeout(Some(t)).unwrap();
    }
}

/// A raw named-pipe client (a plain synchronous file handle); reads wait until data or end of
/// file, so a test reads from it only once the listener has closed its end.
#[cfg(windows)]
impl RawPeer for std::fs::File {
    fn try_clone_peer(&self) -> Box<dyn RawPeer> {
        Box::new(self.try_clone().unwrap())
    }
    fn set_read_timeout_peer(&self, _t: Duration) {}
}

#[cfg(unix)]
impl RawPeer for std::os::unix::net::UnixStream {
    fn try_clone_peer(&self) -> Box<dyn RawPeer> {
        Box::new(self.try_clone().unwrap())
    }
    fn set_read_timeout_peer(&self, t: Duration) {
        self.set_read_timeout(Some(t)).unwrap();
    }
}

fn raw_connect(addr: &Address) -> Box<dyn RawPeer> {
    match addr {
        Address::Tcp(a) => Box::new(TcpStream::connect(a).unwrap()),
        #[cfg(unix)]
        Address::Unix(p) => Box::new(std::os::unix::net::UnixStream::connect(p).unwrap()),
        #[cfg(not(unix))]
        Address::Unix(_) => panic!("Unix sockets need Unix"),
        #[cfg(windows)]
        Address::Pipe(name) => Box::new(raw_pipe_client(name)),
        #[cfg(not(windows))]
        Address::Pipe(_) => panic!("named pipes need Windows"),
    }
}

/// A peer that starts a plausible answer (a header announcing 100 bytes) and then sends one
/// byte every `every`, until stopped or its connection is closed.
fn drip(
    mut peer: Box<dyn RawPeer>,
    every: Duration,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        if peer.write_all(&[0, 0, 0, 100]).is_err() {
            return;
        }
        for _ in 0..1000 {
            match stopped.recv_timeout(every) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            if peer.write_all(b"x").is_err() {
                return;
            }
        }
    });
    (stop, t)
}

#[cfg(unix)]
fn temp_socket_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("multiproc-test-{tag}-{}.sock", std::process::id()))
}

#[test]
fn silent_and_dripping_peers_do_not_delay_an_honest_client() {
    let tcp: Address = "127.0.0.1:0".parse().unwrap();
    for address in [tcp, local_address("stall")] {
        // every hostile peer below may hold its handshake for the default 20 s
        let listener = Listener::bind(address, Some(b"key")).unwrap();
        let addr = listener.address();
        let _silent: Vec<_> = (0..5).map(|_| raw_connect(&addr)).collect();
        let (stop, dripper) = drip(raw_connect(&addr), Duration::from_millis(500));
        // the listener takes all six; none of them finishes
        assert!(listener
            .accept_timeout(Duration::from_millis(300))
            .unwrap()
            .is_none());

        let (tx, rx) = std::sync::mpsc::channel();
        let client = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let r = Client::connect(&addr, Some(b"key")).and_then(|c| c.send_bytes(b"honest"));
            tx.send((r, start.elapsed())).unwrap();
        });
        let conn = listener
            .accept_timeout(Duration::from_secs(10))
            .unwrap()
            .expect("the honest client is served while the others stall");
        assert!(conn.poll(Some(Duration::from_secs(10))).unwrap());
        assert_eq!(conn.recv_bytes().unwrap(), b"honest");
        let (r, took) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        r.unwrap();
        // typically a millisecond; the bound is generous for a loaded machine, and far below
        // the 20 s that any stalled peer could hold the listener for
        assert!(took < Duration::from_secs(2), "served after {took:?}");
        client.join_bounded();
        stop.send(()).unwrap();
        dripper.join_bounded();
    }
}

#[test]
fn a_dripping_peer_is_dropped_at_its_handshake_deadline() {
    for address in ["127.0.0.1:0".parse().unwrap(), local_address("drip")] {
        let mut listener = Listener::bind(address, Some(b"key")).unwrap();
        listener.set_auth_timeout(Some(Duration::from_secs(1)));
        let peer = raw_connect(&listener.address());
        let watch = peer.try_clone_peer();
        // one byte every 100 ms would finish its 100-byte answer after 10 s
        let (stop, dripper) = drip(peer, Duration::from_millis(100));
        let start = std::time::Instant::now();
        let r = listener.accept_timeout(Duration::from_secs(15));
        let took = start.elapsed();
        assert!(
            matches!(&r, Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut),
            "{r:?}"
        );
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "dropped after {took:?}, deadline 1 s"
        );
        // the peer sees its connection closed (after our challenge)
        let mut watch = watch;
        watch.set_read_timeout_peer(Duration::from_secs(5));
        let mut seen = Vec::new();
        match watch.read_to_end(&mut seen) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}"),
        }
        stop.send(()).ok();
        dripper.join_bounded();
    }
}

#[test]
fn handshakes_under_way_survive_a_pause_between_accepts() {
    let mut listener = Listener::bind("127.0.0.1:0", Some(b"key")).unwrap();
    listener.set_auth_timeout(Some(Duration::from_millis(300)));
    let addr = listener.address();
    let clients: Vec<_> = (0..4u8)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                Client::connect(&addr, Some(b"key")).and_then(|c| c.send(&i).map(|()| c))
            })
        })
        .collect();
    let mut got = Vec::new();
    for _ in 0..4 {
        let c = listener
            .accept_timeout(Duration::from_secs(10))
            .unwrap()
            .expect("served");
        assert!(c.poll(Some(Duration::from_secs(10))).unwrap());
        got.push(c.recv::<u8>().unwrap());
        // not accepting for longer than the deadline: the handshakes still under way wait
        std::thread::sleep(Duration::from_millis(500));
    }
    got.sort();
    assert_eq!(got, [0, 1, 2, 3]);
    for c in clients {
        c.join_bounded().unwrap();
    }
}

#[test]
fn too_many_pending_handshakes_drop_the_oldest() {
    for address in ["127.0.0.1:0".parse().unwrap(), local_address("oldest")] {
        let mut listener = Listener::bind(address, Some(b"key")).unwrap();
        listener.set_max_pending(2);
        let addr = listener.address();
        let mut oldest = raw_connect(&addr);
        let _others: Vec<_> = (0..2).map(|_| raw_connect(&addr)).collect();
        let r = listener.accept_timeout(Duration::from_secs(10));
        assert!(
            matches!(&r, Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionAborted),
            "{r:?}"
        );
        oldest.set_read_timeout_peer(Duration::from_secs(5));
        let mut seen = Vec::new();
        oldest.read_to_end(&mut seen).unwrap();
        assert!(
            seen.starts_with(&[0, 0, 0, 59]),
            "our challenge, then end of file"
        );
        // an honest client is still served: it drops the oldest silent peer in turn, never itself
        let t = std::thread::spawn(move || {
            Client::connect(&addr, Some(b"key"))
                .and_then(|c| c.send_bytes(b"ok"))
                .is_ok()
        });
        let c = loop {
            match listener.accept_timeout(Duration::from_secs(10)) {
                Ok(c) => break c.expect("served"),
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionAborted => {}
                Err(e) => panic!("{e:?}"),
            }
        };
        assert!(c.poll(Some(Duration::from_secs(10))).unwrap());
        assert_eq!(c.recv_bytes().unwrap(), b"ok");
        assert!(t.join_bounded());
    }
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

/// A server process: receives a hostile, deeply nested value, then a sane one, and reports.
fn deep_value_receiver((address, key): (String, Vec<u8>)) {
    let c = Client::connect(address.as_str(), Some(&key)).unwrap();
    let hostile = c.recv::<Tree>();
    let sane = c.recv::<Tree>();
    c.send(&(format!("{hostile:?}"), sane.is_ok())).unwrap();
}

#[test]
fn a_deeply_nested_message_does_not_kill_the_receiving_process() {
    let listener = Listener::bind(local_address("deep"), Some(b"k")).unwrap();
    // (as text: `unix:<path>` or the pipe's name, which parse back as the same address)
    let p = Process::new(
        deep_value_receiver,
        (listener.address().to_string(), b"k".to_vec()),
    );
    p.start().unwrap();
    let conn = listener
        .accept_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("the child connects");
    // 100 000 levels of `Node`, then a `Leaf`: 100 KB that once overflowed the stack
    let mut deep = vec![1u8; 100_000];
    deep.push(0);
    conn.send_bytes(&deep).unwrap();
    conn.send(&Tree::Node(Box::new(Tree::Leaf))).unwrap();
    assert!(conn.poll(Some(Duration::from_secs(30))).unwrap());
    let (hostile, sane): (String, bool) = conn.recv().unwrap();
    assert!(hostile.contains("TooDeep"), "{hostile}");
    assert!(sane);
    assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
}

#[cfg(unix)]
fn ready_then_sleep(c: multiproc_process::Connection) {
    c.send(&()).unwrap();
    std::thread::sleep(Duration::from_secs(3));
}

/// A forked child does not keep its parent's listening socket, nor the sockets of handshakes
/// under way: once the parent drops the listener, the port is free again although the child
/// lives on.
#[cfg(unix)]
#[test]
fn a_forked_child_does_not_keep_the_listeners_sockets() {
    let l = Listener::bind("127.0.0.1:0", Some(b"k")).unwrap();
    let port = tcp_port(&l);
    // a handshake under way when the child is forked
    let _peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(l
        .accept_timeout(Duration::from_millis(50))
        .unwrap()
        .is_none());
    let ctx = multiproc_process::get_context(multiproc_process::StartMethod::Fork).unwrap();
    let (here, there) = multiproc_process::pipe(true).unwrap();
    let child = ctx.process(ready_then_sleep, there);
    child.start().unwrap();
    // the child runs its task only after it has dealt with what it inherited
    here.recv_bounded::<()>();
    drop(l);
    // Before the fix the child held the listening socket: bind failed with EADDRINUSE.
    let again = std::net::TcpListener::bind(("127.0.0.1", port));
    child.kill().unwrap();
    child.join_bounded();
    again.unwrap();
}

/// CPython's `Client` reaching our listener at `address` (a str, as Python writes it).
#[cfg(unix)]
fn cpython_client_sends(address_literal: &str) -> std::process::Child {
    let script = format!(
        "from multiprocessing.connection import Client\n\
         c = Client({address_literal}, authkey=b'unix-key')\n\
         c.send_bytes(b'py over unix')\n\
         c.close()\n"
    );
    python()
        .args(["-c", &script])
        .spawn()
        .expect("python3 must be installed")
}

/// A Linux abstract address (`"\0name"`, no file) works as in CPython: across our processes
/// and with a CPython client.
#[cfg(target_os = "linux")]
#[test]
fn abstract_unix_address_across_processes_and_with_cpython() {
    let name = format!("\0multiproc-test-abstract-{}", std::process::id());
    let address: Address = name.parse().unwrap();
    assert_eq!(address, Address::Unix(name.clone().into()));
    assert_eq!(
        address.to_string(),
        format!("unix:@multiproc-test-abstract-{}", std::process::id())
    );
    let listener = Listener::bind(name.as_str(), Some(b"unix-key")).unwrap();
    assert_eq!(listener.address(), address);
    let p = Process::new(local_client, (name.clone(), 5));
    p.start().unwrap();
    let conn = listener.accept_bounded().unwrap();
    assert_eq!(conn.recv_bounded::<u32>(), 10);
    assert_eq!(p.join_bounded(), 0);

    let child = cpython_client_sends(&format!(
        "'\\0multiproc-test-abstract-{}'",
        std::process::id()
    ));
    let conn = listener.accept_bounded().unwrap();
    assert_eq!(conn.recv_bytes_bounded(), b"py over unix");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(listener);
    // the name is free again once the socket is closed
    drop(Listener::bind(name.as_str(), None).unwrap());
}

/// A relative file name (no '/', no ':') is a Unix socket in the current directory, as CPython
/// takes any string; the listener removes its file on drop.
#[cfg(unix)]
#[test]
fn relative_unix_path_across_processes_and_with_cpython() {
    let rel = format!("multiproc-test-rel-{}.sock", std::process::id());
    let address: Address = rel.parse().unwrap();
    assert_eq!(address, Address::Unix(rel.clone().into()));
    let listener = Listener::bind(rel.as_str(), Some(b"unix-key")).unwrap();
    assert!(std::path::Path::new(&rel).exists());
    let p = Process::new(local_client, (rel.clone(), 8));
    p.start().unwrap();
    let conn = listener.accept_bounded().unwrap();
    assert_eq!(conn.recv_bounded::<u32>(), 16);
    assert_eq!(p.join_bounded(), 0);

    let child = cpython_client_sends(&format!("{rel:?}"));
    let conn = listener.accept_bounded().unwrap();
    assert_eq!(conn.recv_bytes_bounded(), b"py over unix");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(listener);
    assert!(
        !std::path::Path::new(&rel).exists(),
        "the listener removes its socket file"
    );
}

#[derive(serde::Serialize)]
struct Sparse {
    id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// A struct that skips a field when serializing cannot be decoded by the receiver: in debug
/// builds `send` refuses it, naming the attribute, and sends nothing.
#[cfg(debug_assertions)]
#[test]
fn send_refuses_a_skipped_field_at_the_sender() {
    let (a, b) = multiproc_process::pipe(true).unwrap();
    let err = a.send(&Sparse { id: 1, note: None }).unwrap_err();
    assert!(err.to_string().contains("skip_serializing_if"), "{err}");
    a.send(&Sparse {
        id: 2,
        note: Some("kept".into()),
    })
    .unwrap();
    assert_eq!(
        b.recv_bounded::<(u32, Option<String>)>(),
        (2, Some("kept".into()))
    );
}

/// A raw client of the named pipe `name` (a synchronous file handle), waiting (bounded) while
/// every instance is taken, as a real client does.
#[cfg(windows)]
fn raw_pipe_client(name: &str) -> std::fs::File {
    const ERROR_PIPE_BUSY: i32 = 231;
    let start = std::time::Instant::now();
    loop {
        match std::fs::File::options().read(true).write(true).open(name) {
            Ok(f) => return f,
            Err(e)
                if e.raw_os_error() == Some(ERROR_PIPE_BUSY)
                    && start.elapsed() < crate::bounded::BOUND =>
            {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

/// A raw peer on `address` that sends `bytes` and closes, and the connection the listener
/// (no authkey) made of it.
fn raw_peer_sends(address: Address, bytes: &'static [u8]) -> multiproc_process::Connection {
    let listener = Listener::bind(address, None).unwrap();
    let addr = listener.address();
    let t = std::thread::spawn(move || {
        let mut peer = raw_connect(&addr);
        peer.write_all(bytes).unwrap();
        // (closed here, on return)
    });
    let conn = listener.accept_bounded().unwrap();
    t.join_bounded();
    conn
}

/// A peer that closes in the middle of a frame: end of file, typed, not a hang; over TCP and
/// over this platform's local kind of address.
#[test]
fn a_peer_closing_mid_frame_is_end_of_file() {
    for address in ["127.0.0.1:0".parse().unwrap(), local_address("midframe")] {
        // announces 100 bytes, sends 10
        let conn = raw_peer_sends(address, b"\0\0\0\x64ten bytes!");
        let r = crate::bounded::within(move || conn.recv_bytes());
        assert!(matches!(r, Err(Error::Eof)), "{r:?}");
    }
}

/// A length header beyond the limit is refused before anything is read or reserved.
#[test]
fn an_oversized_length_header_is_refused() {
    for address in ["127.0.0.1:0".parse().unwrap(), local_address("oversized")] {
        // 2 GiB - 1 announced; the default limit is 1 GiB
        let conn = raw_peer_sends(address, b"\x7f\xff\xff\xffxyz");
        let r = crate::bounded::within(move || conn.recv_bytes());
        assert!(
            matches!(
                r,
                Err(Error::Pickle(
                    multiproc_pickle::PickleError::TooLarge { .. }
                ))
            ),
            "{r:?}"
        );
    }
}

/// Named pipes: a listener with an authkey serves many clients at once (more than the
/// instances it keeps waiting), each authenticated.
#[cfg(windows)]
#[test]
fn named_pipe_listener_serves_many_clients() {
    let listener = Listener::bind(Address::arbitrary_pipe(), Some(b"pipe-key")).unwrap();
    assert!(matches!(listener.address(), Address::Pipe(_)));
    let addr = listener.address();
    let clients: Vec<_> = (0..12u32)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let c = Client::connect(&addr, Some(b"pipe-key"))?;
                c.send(&i)?;
                c.recv::<u32>()
            })
        })
        .collect();
    let mut got = Vec::new();
    for _ in 0..12 {
        let c = listener.accept_bounded().unwrap();
        let i = c.recv_bounded::<u32>();
        c.send(&(i + 100)).unwrap();
        got.push(i);
    }
    got.sort();
    assert_eq!(got, (0..12).collect::<Vec<_>>());
    for (i, t) in clients.into_iter().enumerate() {
        assert_eq!(t.join_bounded().unwrap(), i as u32 + 100);
    }
}

/// A wrong key over a named pipe fails on both sides, whichever side holds it, and the
/// listener goes on serving.
#[cfg(windows)]
#[test]
fn wrong_authkey_over_a_named_pipe_fails_on_both_sides() {
    for (ours, theirs) in [(&b"right"[..], &b"wrong"[..]), (b"wrong", b"right")] {
        let listener = Listener::bind(Address::arbitrary_pipe(), Some(ours)).unwrap();
        let addr = listener.address();
        let key = theirs.to_vec();
        let t = std::thread::spawn(move || Client::connect(&addr, Some(&key)).map(|_| ()));
        assert!(matches!(
            listener.accept_bounded(),
            Err(Error::Authentication(_))
        ));
        assert!(matches!(t.join_bounded(), Err(Error::Authentication(_))));
        let addr = listener.address();
        let key = ours.to_vec();
        let t = std::thread::spawn(move || {
            Client::connect(&addr, Some(&key))
                .and_then(|c| c.send_bytes(b"served"))
                .is_ok()
        });
        assert_eq!(
            listener.accept_bounded().unwrap().recv_bytes_bounded(),
            b"served"
        );
        assert!(t.join_bounded());
    }
}

/// A client of a pipe nobody listens on gets a `NotFound` error that names it, at once.
#[cfg(windows)]
#[test]
fn a_client_of_a_missing_named_pipe_gets_a_clear_error() {
    let addr = Address::arbitrary_pipe();
    let name = addr.to_string();
    let r = crate::bounded::within(move || Client::connect(&addr, Some(b"k")).map(|_| ()));
    match r {
        Err(Error::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
            assert!(e.to_string().contains(&name), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // and a listener that is gone is missing too
    let l = Listener::bind(Address::arbitrary_pipe(), None).unwrap();
    let addr = l.address();
    drop(l);
    assert!(
        matches!(Client::connect(&addr, None), Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound)
    );
}

/// Two listeners cannot share a pipe name.
#[cfg(windows)]
#[test]
fn binding_a_named_pipe_twice_is_refused() {
    let l = Listener::bind(Address::arbitrary_pipe(), None).unwrap();
    match Listener::bind(l.address(), None) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}"),
        other => panic!("{other:?}"),
    }
}

/// Clients that connect while nobody accepts wait for their turn (none sees the pipe
/// missing), and each is served once `accept` runs again.
#[cfg(windows)]
#[test]
fn named_pipe_clients_wait_between_accepts() {
    let listener = Listener::bind(Address::arbitrary_pipe(), None).unwrap();
    let addr = listener.address();
    let first = {
        let addr = addr.clone();
        std::thread::spawn(move || Client::connect(&addr, None).and_then(|c| c.send(&0u8)))
    };
    let c = listener.accept_bounded().unwrap();
    assert_eq!(c.recv_bounded::<u8>(), 0);
    first.join_bounded().unwrap();
    // nobody accepts now; more clients than waiting instances connect
    let later: Vec<_> = (1..=10u8)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || Client::connect(&addr, None).and_then(|c| c.send(&i)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut got: Vec<u8> = (0..10)
        .map(|_| listener.accept_bounded().unwrap().recv_bounded::<u8>())
        .collect();
    got.sort();
    assert_eq!(got, (1..=10).collect::<Vec<_>>());
    for t in later {
        t.join_bounded().unwrap();
    }
}
