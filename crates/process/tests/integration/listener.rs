//! Listener/Client: authentication, hostile peers, and interoperability with CPython.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::bounded::{JoinBounded, RecvBounded, ThreadJoinBounded};
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
    let conn = listener.accept().unwrap();
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
    assert!(matches!(listener.accept(), Err(Error::Authentication(_))));
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
    assert!(matches!(listener.accept(), Err(Error::Authentication(_))));
    assert!(matches!(t.join_bounded(), Err(Error::Authentication(_))));
    // the listener still serves well-behaved clients
    let addr = listener.address();
    let t = std::thread::spawn(move || {
        Client::connect(&addr, Some(b"right"))
            .unwrap()
            .send(&5u8)
            .unwrap()
    });
    assert_eq!(listener.accept().unwrap().recv_bounded::<u8>(), 5);
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
        let err = listener.accept().unwrap_err();
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
    assert_eq!(listener.accept().unwrap().recv_bytes_bounded(), b"ok");
    t.join_bounded();
}

#[test]
fn silent_peer_times_out_instead_of_blocking_accept() {
    let mut listener = Listener::bind("127.0.0.1:0", Some(b"key")).unwrap();
    listener.set_auth_timeout(Some(Duration::from_millis(200)));
    let port = tcp_port(&listener);
    let _silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // the silent peer never answers the challenge
    assert!(matches!(listener.accept(), Err(Error::Io(_))));
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
    let conn = listener.accept().unwrap();
    assert_eq!(conn.recv_bounded::<u32>(), 42);
    assert_eq!(p.join_bounded(), 0);
    drop(listener);
    assert!(!path.exists(), "the listener removes its socket file");
}
