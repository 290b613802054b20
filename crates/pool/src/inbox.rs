//! The dispatcher's inbox: one shared-memory queue ([`ByteQueue`]) carrying everything the
//! dispatcher waits for — workers' replies and submitters' nudges — so it sleeps on one futex
//! word, and a busy pool makes no system call per result (a worker's reply is a copy into the
//! ring; a wake-up is paid only when the dispatcher sleeps).
//!
//! A message is a 16-byte header `[kind: u32 LE][0u32][worker id: u64 LE]` and a body.

use multiproc_sync::ByteQueue;

use crate::PoolError;

/// Bytes of shared memory in the ring (touched only as it is used).
pub(crate) const CAPACITY: usize = 1 << 20;

/// Replies up to this size travel in the inbox; a larger one goes on the worker's own pipe and
/// the inbox gets a marker ([`Kind::OnPipe`]). So every inbox message fits the ring whole: it is
/// published at once, and a worker killed while writing one leaves nothing half-written that
/// could break the inbox for the other workers.
pub(crate) const INLINE_MAX: usize = 64 << 10;

const HEADER: usize = 16;

/// What an inbox message is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// A worker's reply to the oldest unit it holds: the body is the encoded reply.
    Reply,
    /// The reply to the oldest unit a worker holds follows on that worker's pipe.
    OnPipe,
    /// A submitter queued work the dispatcher must assign (no body).
    Nudge,
}

impl Kind {
    fn code(self) -> u32 {
        match self {
            Kind::Reply => 1,
            Kind::OnPipe => 2,
            Kind::Nudge => 3,
        }
    }

    fn from_code(c: u32) -> Option<Kind> {
        Some(match c {
            1 => Kind::Reply,
            2 => Kind::OnPipe,
            3 => Kind::Nudge,
            _ => return None,
        })
    }
}

/// The header of a message of `kind` from worker `worker`.
pub(crate) fn header(kind: Kind, worker: u64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&kind.code().to_le_bytes());
    h[8..].copy_from_slice(&worker.to_le_bytes());
    h
}

/// Split a message into its kind, worker id and body; `None` if it is not one of ours.
pub(crate) fn parse(msg: &[u8]) -> Option<(Kind, u64, &[u8])> {
    if msg.len() < HEADER {
        return None;
    }
    let kind = Kind::from_code(u32::from_le_bytes(msg[..4].try_into().ok()?))?;
    let worker = u64::from_le_bytes(msg[8..HEADER].try_into().ok()?);
    Some((kind, worker, &msg[HEADER..]))
}

/// A new inbox.
pub(crate) fn new() -> Result<ByteQueue, PoolError> {
    ByteQueue::with_capacity(CAPACITY).map_err(PoolError::start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_garbage_is_refused() {
        for kind in [Kind::Reply, Kind::OnPipe, Kind::Nudge] {
            let mut msg = header(kind, 0x0102_0304_0506_0708).to_vec();
            msg.extend_from_slice(b"body");
            assert_eq!(
                parse(&msg),
                Some((kind, 0x0102_0304_0506_0708, &b"body"[..]))
            );
        }
        assert_eq!(parse(b"short"), None);
        let mut bad = header(Kind::Reply, 1);
        bad[0] = 99;
        assert_eq!(parse(&bad), None);
    }
}
