//! `wait()`: block until any of several connections or processes is ready.

use std::time::Duration;

use crate::{sys, Error};

/// The raw OS handle `wait()` polls (`RawFd` on Unix, `RawHandle` on Windows).
#[cfg(unix)]
pub type RawWaitHandle = std::os::fd::RawFd;
/// The raw OS handle `wait()` polls (`RawFd` on Unix, `RawHandle` on Windows).
#[cfg(windows)]
pub type RawWaitHandle = std::os::windows::io::RawHandle;

/// Something [`wait`] can wait for: a [`Connection`](crate::Connection) is ready when a message
/// (or end of file) can be received, a [`Process`](crate::Process) when it has ended.
pub trait Waitable {
    /// Ready without asking the OS (e.g. a message already buffered).
    fn ready_now(&self) -> bool {
        false
    }
    /// The handle that becomes readable when the object is ready; `None` once closed. On
    /// Windows it may also be any waitable object (a process handle, an event): ready when
    /// signaled. Any number of handles may be waited on at once, on every platform.
    fn wait_handle(&self) -> Option<RawWaitHandle>;
    /// The object is ready only when the other end of its handle hangs up, not when the handle
    /// is readable (default `false`). A [`ParentProcess`](crate::ParentProcess) is: its handle
    /// is the child's end of the bootstrap socket, which a daemon child shuts for reading, so
    /// that it reads end of file while the parent lives.
    fn ready_on_hang_up_only(&self) -> bool {
        false
    }
}

/// Wait until at least one object is ready (as long as it takes; see [`wait_timeout`]);
/// returns the indices of **every** ready object, in order, like
/// `multiprocessing.connection.wait`.
/// A closed object counts as ready, so a loop over `wait` never blocks on it forever.
///
/// When some objects are ready without asking the OS (a message already read ahead, a process
/// already reaped), the others are still polled, with a zero timeout: a loop that serves what
/// `wait` returns never starves an object behind one that is always ready.
///
/// ```
/// use std::time::Duration;
/// use multiproc::connection::{wait, wait_timeout};
/// use multiproc::pipe;
/// let (a, b) = pipe(true).unwrap();
/// let (c, d) = pipe(true).unwrap();
/// assert!(wait_timeout(&[&b, &d], Duration::from_millis(5)).unwrap().is_empty());
/// c.send_bytes(b"x").unwrap();
/// assert_eq!(wait(&[&b, &d]).unwrap(), [1]);
/// a.send_bytes(b"y").unwrap();
/// assert_eq!(wait(&[&b, &d]).unwrap(), [0, 1]);
/// ```
pub fn wait(objects: &[&dyn Waitable]) -> Result<Vec<usize>, Error> {
    wait_within(objects, None)
}

/// [`wait`], for at most `timeout`: an empty list if nothing became ready in that time.
///
/// ```
/// use std::time::Duration;
/// let (_a, b) = multiproc::pipe(true).unwrap();
/// let ready = multiproc::connection::wait_timeout(&[&b], Duration::from_millis(5)).unwrap();
/// assert!(ready.is_empty());
/// ```
pub fn wait_timeout(objects: &[&dyn Waitable], timeout: Duration) -> Result<Vec<usize>, Error> {
    wait_within(objects, Some(timeout))
}

/// `wait` (`None`) or `wait_timeout` (`Some`).
fn wait_within(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>, Error> {
    let mut ready: Vec<usize> = Vec::new();
    let mut handles = Vec::with_capacity(objects.len());
    for (i, o) in objects.iter().enumerate() {
        match o.wait_handle() {
            _ if o.ready_now() => ready.push(i),
            None => ready.push(i),
            Some(h) => {
                let when = if o.ready_on_hang_up_only() {
                    sys::Readiness::HungUp
                } else {
                    sys::Readiness::Readable
                };
                handles.push((i, (h, when)));
            }
        }
    }
    if handles.is_empty() {
        return Ok(ready);
    }
    // Something is ready already: only look at the rest, never block on them.
    let timeout = if ready.is_empty() {
        timeout
    } else {
        Some(Duration::ZERO)
    };
    let raw: Vec<(sys::RawWait, sys::Readiness)> = handles.iter().map(|&(_, h)| h).collect();
    let flags = sys::poll_for(&raw, timeout)?;
    ready.extend(
        handles
            .iter()
            .zip(flags)
            .filter(|(_, f)| *f)
            .map(|(&(i, _), _)| i),
    );
    ready.sort_unstable();
    Ok(ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{pipe, Client, Connection, Listener};
    use std::time::Instant;

    /// Many more objects than one `WaitForMultipleObjects` (64) or CPython's `wait` (63) takes.
    const MANY: usize = 200;

    fn many_pipes() -> (Vec<Connection>, Vec<Connection>) {
        (0..MANY).map(|_| pipe(false).unwrap()).unzip()
    }

    #[test]
    fn wait_finds_the_only_ready_one_among_many() {
        let (rx, tx) = many_pipes();
        let objs: Vec<&dyn Waitable> = rx.iter().map(|c| c as &dyn Waitable).collect();
        tx[MANY - 1].send(&1u8).unwrap();
        assert_eq!(
            wait_timeout(&objs, Duration::from_secs(30)).unwrap(),
            [MANY - 1]
        );
        // one in the middle (another batch), while waiting
        assert_eq!(rx[MANY - 1].recv::<u8>().unwrap(), 1);
        let t = std::thread::spawn({
            let tx = tx;
            move || {
                std::thread::sleep(Duration::from_millis(100));
                tx[150].send(&2u8).unwrap();
                tx
            }
        });
        assert_eq!(wait_timeout(&objs, Duration::from_secs(30)).unwrap(), [150]);
        let _tx = t.join().unwrap();
    }

    #[test]
    fn wait_on_many_with_none_ready_times_out_at_its_bound() {
        let (rx, _tx) = many_pipes();
        let objs: Vec<&dyn Waitable> = rx.iter().map(|c| c as &dyn Waitable).collect();
        let start = Instant::now();
        assert!(wait_timeout(&objs, Duration::from_millis(300))
            .unwrap()
            .is_empty());
        let took = start.elapsed();
        // never early; the upper bound only catches a wait that ignores its timeout
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(20),
            "{took:?}"
        );
    }

    /// A TCP connection among pipes: readable when its peer sends, end of file when it closes.
    #[test]
    fn wait_over_sockets_and_pipes() {
        let listener = Listener::bind("127.0.0.1:0", None).unwrap();
        let addr = listener.address();
        let client = std::thread::spawn(move || Client::connect(&addr, None).unwrap());
        let served = listener.accept().unwrap();
        let client = client.join().unwrap();
        let (rx, tx) = many_pipes();
        let mut objs: Vec<&dyn Waitable> = rx.iter().map(|c| c as &dyn Waitable).collect();
        objs.insert(70, &served);
        assert!(wait_timeout(&objs, Duration::from_millis(50))
            .unwrap()
            .is_empty());
        client.send_bytes(b"over tcp").unwrap();
        assert_eq!(wait_timeout(&objs, Duration::from_secs(30)).unwrap(), [70]);
        assert_eq!(served.recv_bytes().unwrap(), b"over tcp");
        tx[3].send(&0u8).unwrap();
        drop(client);
        assert_eq!(
            wait_timeout(&objs, Duration::from_secs(30)).unwrap(),
            [3, 70]
        );
        assert!(matches!(served.recv_bytes(), Err(Error::Eof)));
    }

    /// Several threads waiting on the same connections at once all see it become ready.
    #[test]
    fn threads_waiting_on_the_same_connection_all_wake() {
        let (a, b) = pipe(true).unwrap();
        let b = std::sync::Arc::new(b);
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || wait_timeout(&[&*b], Duration::from_secs(30)))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        a.send(&1u8).unwrap();
        for w in waiters {
            assert_eq!(w.join().unwrap().unwrap(), [0]);
        }
        assert_eq!(b.recv::<u8>().unwrap(), 1);
    }

    /// Windows: any waitable object (here events; a process handle is one) among the rest.
    #[cfg(windows)]
    #[test]
    fn wait_over_many_objects() {
        use std::os::windows::io::AsRawHandle;
        use windows_sys::Win32::System::Threading::SetEvent;
        struct Event(std::os::windows::io::OwnedHandle);
        impl Waitable for Event {
            fn wait_handle(&self) -> Option<RawWaitHandle> {
                Some(self.0.as_raw_handle())
            }
        }
        let events: Vec<Event> = (0..MANY)
            .map(|_| Event(sys::pipe::new_event().unwrap()))
            .collect();
        let (rx, _tx) = many_pipes();
        let mut objs: Vec<&dyn Waitable> = events.iter().map(|e| e as &dyn Waitable).collect();
        objs.extend(rx.iter().map(|c| c as &dyn Waitable));
        assert!(wait_timeout(&objs, Duration::from_millis(50))
            .unwrap()
            .is_empty());
        let raw = events[130].0.as_raw_handle() as usize;
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: the event stays open until the thread is joined.
            unsafe { SetEvent(raw as _) };
        });
        assert_eq!(wait_timeout(&objs, Duration::from_secs(30)).unwrap(), [130]);
        t.join().unwrap();
    }
}
