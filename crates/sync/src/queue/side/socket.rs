//! The side channel on Unix: a socket pair that carries memory files.
//!
//! The producer writes the item into its own anonymous memory file and sends the file's
//! descriptor, with the item's sequence number, as one datagram on the queue's socket pair
//! (sent on one end, received on the other; every process that has the queue has both ends),
//! then publishes a marker frame with the same number in the ring. A descriptor in flight
//! keeps its file alive after its sender exits, and the kernel frees it with the socket when
//! the last process holding the queue is gone: nothing can leak, no tracker is needed.
//!
//! Producers send under the producer lock, in ring order, with numbers that only grow; the
//! consumer whose turn it is (under the consumer lock) *peeks* at the first datagram, which
//! installs a duplicate of its descriptor and leaves it queued, maps and reads the item, and
//! only then takes the datagram off the socket. So, at the consumer's marker `n`:
//!
//! * the first datagram is `n`: it is the item;
//! * it is older than `n`: a producer died between sending and publishing its marker; that
//!   item was never put, the datagram is dropped;
//! * it is newer than `n`, or there is none: a consumer died after taking the datagram and
//!   before moving past the marker, i.e. with the item in hand: the item went with it (as if
//!   it had died just after `get` returned), and the marker is skipped.

use std::io;

use multiproc_pickle::handles::{deserialize_handle, serialize_handle};
use multiproc_pickle::OsHandle;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::unix::{self as sys, Mapping};
use crate::queue::QueueError;

/// A datagram: `[sequence number: u64 LE][item length: u64 LE]`, and the descriptor.
const DATAGRAM: usize = 16;

fn os_error(op: &'static str) -> impl FnOnce(io::Error) -> QueueError {
    move |e| QueueError::system(op, e)
}

/// The queue's socket pair: producers send on `tx`, consumers receive on `rx`.
pub(in crate::queue) struct Side {
    tx: OsHandle,
    rx: OsHandle,
}

/// An item's bytes in their own memory file, ready to be sent.
pub(in crate::queue) struct SideItem {
    file: OsHandle,
    len: u64,
}

impl SideItem {
    /// Copy the concatenation of `parts` (`len` bytes) into a new memory file.
    pub(in crate::queue) fn new(parts: &[&[u8]], len: u64) -> Result<SideItem, QueueError> {
        let file = sys::memory_file(parts).map_err(os_error("create a queue item's memory"))?;
        Ok(SideItem { file, len })
    }

    /// What the marker carries beside the number: nothing here (the socket orders the items).
    pub(in crate::queue) fn token(&self) -> u64 {
        0
    }
}

impl Side {
    pub(in crate::queue) fn new() -> io::Result<Side> {
        let (tx, rx) = sys::socket_pair()?;
        Ok(Side { tx, rx })
    }

    /// Send `item` as number `seq`, without waiting: `false` when the socket has no room now
    /// (too many big items in flight; a consumer taking one makes room).
    pub(in crate::queue) fn try_send(&self, seq: u64, item: &SideItem) -> Result<bool, QueueError> {
        let mut d = [0u8; DATAGRAM];
        d[..8].copy_from_slice(&seq.to_le_bytes());
        d[8..].copy_from_slice(&item.len.to_le_bytes());
        sys::send_with_handles(&self.tx, &d, &[sys::borrow(&item.file)])
            .map_err(os_error("send a queue item"))
    }

    /// The item numbered `seq`, mapped, and left on the socket (see the module's text):
    /// `None` if it is gone with a consumer that died holding it. Older datagrams are dropped.
    pub(in crate::queue) fn find(
        &self,
        seq: u64,
        _token: u64,
    ) -> Result<Option<Mapping>, QueueError> {
        loop {
            let mut d = [0u8; DATAGRAM];
            let Some((n, fds)) = sys::recv_with_handles(&self.rx, &mut d, true)
                .map_err(os_error("receive a queue item"))?
            else {
                return Ok(None);
            };
            // one descriptor per datagram; extra ones (never sent by a queue) are closed here
            let file = fds.into_iter().next();
            let first = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
            let len = u64::from_le_bytes(d[8..].try_into().expect("8 bytes"));
            match (n == DATAGRAM, file) {
                (true, Some(file)) if first == seq => {
                    let len = usize::try_from(len).map_err(|_| {
                        QueueError::system("map a queue item", io::ErrorKind::InvalidData.into())
                    })?;
                    let map = Mapping::new(&file, len).map_err(os_error("map a queue item"))?;
                    return Ok(Some(map));
                }
                (true, Some(_)) if first > seq => return Ok(None),
                _ => {
                    // older (its producer died before publishing it), or not ours at all
                    tracing::debug!(seq = first, "dropping a stray queue item");
                    self.remove_first()?;
                }
            }
        }
    }

    /// The item `find` returned has been read: take its datagram off the socket, closing its
    /// descriptor, and unmap it; its memory is freed with that.
    pub(in crate::queue) fn take(&self, map: Mapping) -> Result<(), QueueError> {
        drop(map);
        self.remove_first()
    }

    /// Take the first datagram off the socket, closing its descriptor.
    fn remove_first(&self) -> Result<(), QueueError> {
        let mut d = [0u8; DATAGRAM];
        sys::recv_with_handles(&self.rx, &mut d, false)
            .map_err(os_error("receive a queue item"))?;
        Ok(())
    }
}

struct H<'a>(&'a OsHandle);

impl Serialize for H<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_handle(self.0, s)
    }
}

struct HO(OsHandle);

impl<'de> Deserialize<'de> for HO {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_handle(d).map(HO)
    }
}

/// Serializes as its two sockets (moved with the process-start transfer, like the ring's
/// memory).
impl Serialize for Side {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (H(&self.tx), H(&self.rx)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Side {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (tx, rx) = <(HO, HO)>::deserialize(d)?;
        Ok(Side { tx: tx.0, rx: rx.0 })
    }
}
