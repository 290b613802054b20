//! How one connection's requests and replies travel: over its socket, or, for a client on the
//! same machine (a Unix socket, which carries descriptors), through two rings of shared memory
//! the client makes and hands over right after `Hello`. A round trip through the rings costs
//! no system call while both sides are busy (each spins a moment before it sleeps), where one
//! through a socket costs four and two wake-ups. On Windows a connection (a named pipe, or
//! TCP) cannot carry handles, so its frames always go through it.
//!
//! The socket stays open beside the rings: its end of file is how each side learns the other is
//! gone. A wait on a ring wakes every [`SLICE`] to look at it, so a dead server fails a call
//! within that time and a dead client frees its server thread.

use std::time::Duration;

use multiproc_process::{Connection, Error as ProcessError};
use multiproc_sync::{ByteQueue, QueueError};

/// How often a wait on a ring checks that its peer still lives.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// The size of each ring; larger messages pass beside it.
pub(crate) const RING: usize = 64 << 10;

/// One side of a connection.
pub(crate) enum Channel {
    /// Frames over the socket.
    Socket(Connection),
    /// Frames through shared memory: `out` to the peer, `inc` from it.
    Shared {
        conn: Connection,
        out: ByteQueue,
        inc: ByteQueue,
    },
}

fn queue_error(e: QueueError) -> ProcessError {
    match e {
        QueueError::Closed => ProcessError::Eof,
        e => ProcessError::Io(std::io::Error::other(e)),
    }
}

impl Channel {
    /// The socket under the channel.
    pub(crate) fn conn(&self) -> &Connection {
        match self {
            Channel::Socket(c) | Channel::Shared { conn: c, .. } => c,
        }
    }

    /// Make the rings of a client's channel: (client → server, server → client).
    pub(crate) fn rings() -> Result<(ByteQueue, ByteQueue), QueueError> {
        Ok((
            ByteQueue::with_capacity(RING)?,
            ByteQueue::with_capacity(RING)?,
        ))
    }

    pub(crate) fn send(&self, bytes: &[u8]) -> Result<(), ProcessError> {
        match self {
            Channel::Socket(c) => c.send_bytes(bytes),
            Channel::Shared { out, .. } => out.put_parts(&[bytes]).map_err(queue_error),
        }
    }

    /// The next message, at most `max` bytes (a bigger one is an error and the channel should
    /// be dropped); `Eof` once the peer is gone.
    pub(crate) fn recv(&self, max: u64) -> Result<Vec<u8>, ProcessError> {
        match self {
            Channel::Socket(c) => c.recv_bytes(),
            Channel::Shared { conn, inc, .. } => loop {
                match inc.get_with(Some(SLICE), |b| {
                    if b.len() as u64 <= max {
                        Ok(b.to_vec())
                    } else {
                        Err(b.len() as u64)
                    }
                }) {
                    Ok(Ok(b)) => return Ok(b),
                    Ok(Err(size)) => {
                        return Err(ProcessError::Pickle(
                            multiproc_pickle::PickleError::TooLarge { size, max },
                        ))
                    }
                    Err(QueueError::Empty) => {
                        // nothing is ever sent on the socket once the rings are in use:
                        // readable means end of file
                        if conn.poll(Some(Duration::ZERO)).unwrap_or(true) {
                            return Err(ProcessError::Eof);
                        }
                    }
                    Err(e) => return Err(queue_error(e)),
                }
            },
        }
    }
}
