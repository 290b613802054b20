//! The side channel: how an item that does not fit the ring travels.
//!
//! The producer copies the item into memory of its own (outside the producer lock), then,
//! under the lock, hands it over ([`Side::try_send`]) with the next side number `seq` and
//! publishes a marker frame `[MARK][seq][token]` in the ring ([`SideItem::token`] says where
//! the memory is, where the platform needs that). The consumer whose turn the marker is finds
//! the item ([`Side::find`]), reads it in place, and only then takes it ([`Side::take`]).
//! `find` returning `None` means the item is gone with a process that died (which one, and
//! why that is the only way, depends on the platform): the marker is skipped.
//!
//! Both platforms keep the same promises: an item once `put` survives its producer's normal
//! exit; a consumer killed before `take` leaves the item to the next one; one killed after
//! `take` (the last instants of a `get`) takes it with it.
//!
//! * Unix (`socket.rs`, `unix.rs`): the memory is an anonymous memory file whose descriptor
//!   travels on a datagram socket pair that every process holding the queue has both ends of.
//!   A descriptor in flight keeps its file alive, whoever dies, and the kernel frees it with
//!   the socket: nothing can leak, no tracker is needed.
//! * Windows (`windows.rs`): there is no passing of handles on a socket, so the memory is a
//!   named pagefile section (the token names it), which lives while some process has a handle
//!   to it. The producer keeps its handle until a consumer marks the item taken, and hands it
//!   to its parent process when it exits first (so `join` before `get` still finds the item).
//!   An item whose producer is killed before a consumer opens it is lost with it.

#[cfg(unix)]
mod socket;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(super) use socket::{Side, SideItem};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(super) use windows::{Side, SideItem};
