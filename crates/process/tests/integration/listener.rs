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
    let listener = Listener::bind("127.0.0.1:0", Some(b"key")).unwrap();
    let port = tcp_port(&listener);
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0xff, 0xff, 0xff, 0xfe],
        &[0, 0, 0, 3, 1, 2, 3],
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
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
    let addr = listener.address();
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

#[test]
fn silent_peer_times_out_instead_of_blocking_accept() {
    let mut listener = Listener::bind("127.0.0.1:0", Some(b"key")).unwrap();
    listener.set_auth_timeout(Some(Duration::from_millis(200)));
    let port = tcp_port(&listener);
    let _silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // the silent peer never answers the challenge
    assert!(matches!(listener.accept_bounded(), Err(Error::Io(_))));
}

fn unix_client((path, n): (String, u32)) {
    let c = Client::connect(Address::Unix(path.into()), Some(b"unix-key")).unwrap();
    c.send(&(n * 2)).unwrap();
}

#[test]
fn unix_socket_listener_across_processes() {
    let path = std::env::temp_dir().join(format!("multiproc-test-{}.sock", std::process::id()));
    let listener = Listener::bind(Address::Unix(path.clone()), Some(b"unix-key")).unwrap();
    let p = Process::new(unix_client, (path.to_string_lossy().into_owned(), 21));
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

fn temp_socket_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("multiproc-test-{tag}-{}.sock", std::process::id()))
}

#[test]
fn silent_and_dripping_peers_do_not_delay_an_honest_client() {
    let tcp: Address = "127.0.0.1:0".parse().unwrap();
    let unix = Address::Unix(temp_socket_path("stall"));
    for address in [tcp, unix] {
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
    for address in [
        "127.0.0.1:0".parse().unwrap(),
        Address::Unix(temp_socket_path("drip")),
    ] {
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
    let mut listener = Listener::bind("127.0.0.1:0", Some(b"key")).unwrap();
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

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

/// A server process: receives a hostile, deeply nested value, then a sane one, and reports.
fn deep_value_receiver((path, key): (String, Vec<u8>)) {
    let c = Client::connect(Address::Unix(path.into()), Some(&key)).unwrap();
    let hostile = c.recv::<Tree>();
    let sane = c.recv::<Tree>();
    c.send(&(format!("{hostile:?}"), sane.is_ok())).unwrap();
}

#[test]
fn a_deeply_nested_message_does_not_kill_the_receiving_process() {
    let path = temp_socket_path("deep");
    let listener = Listener::bind(Address::Unix(path.clone()), Some(b"k")).unwrap();
    let p = Process::new(
        deep_value_receiver,
        (path.to_string_lossy().into_owned(), b"k".to_vec()),
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

fn ready_then_sleep(c: multiproc_process::Connection) {
    c.send(&()).unwrap();
    std::thread::sleep(Duration::from_secs(3));
}

/// A forked child does not keep its parent's listening socket, nor the sockets of handshakes
/// under way: once the parent drops the listener, the port is free again although the child
/// lives on.
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
    let p = Process::new(unix_client, (name.clone(), 5));
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
    let p = Process::new(unix_client, (rel.clone(), 8));
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
