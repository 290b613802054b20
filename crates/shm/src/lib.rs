//! Shared memory for multiproc: the ground the sync primitives, values and queues stand on.
//!
//! * [`Segment`]: an anonymous shared mapping (a `memfd` on Linux, a section backed by the
//!   paging file on Windows) that travels to child processes as an argument and disappears
//!   when the last process lets go. Nothing to leak.
//! * [`SharedMemory`]: a *named* segment other processes can attach to by name, like Python's
//!   `multiprocessing.shared_memory.SharedMemory`.
//! * [`futex`]: wait until a 32-bit word in shared memory changes, and wake waiters.
//! * [`RawMutex`]: a lock that is one word in shared memory; an uncontended acquire is one
//!   atomic instruction, and a holder that dies is detected ([`LockResult::OwnerDied`]), even
//!   once its pid is reused (holders are known by [`ProcessId`]: pid and start time).
//! * [`SharedMutex`]: a `RawMutex` that keeps its memory alive, clones, and travels to children.
//! * [`RawValue`] / [`RawArray`]: plain data (any [`bytemuck::Pod`] type) in shared memory, no
//!   lock — Python's `RawValue`/`RawArray`, i.e. `Value`/`Array` with `lock=False`.
//! * [`ShareableList`]: Python's fixed-length list of ints, floats, bools, `None`s, strs and
//!   bytes in a named block, in CPython's exact layout.
//! * [`Value`] / [`Array`]: the same with a lock, Python's `multiprocessing.Value`/`Array`;
//!   `lock()` gives a guard that dereferences to the data.
//!
//! ```
//! use multiproc::shm::Segment;
//! let seg = Segment::new(4096).unwrap();
//! assert_eq!(seg.len(), 4096);
//! seg.write(0, b"hello").unwrap();
//! assert_eq!(seg.read(0, 5).unwrap(), b"hello");
//! ```

#![warn(missing_debug_implementations)]

/// The integration tests' bounds on blocking calls, for the unit tests too.
#[cfg(test)]
#[path = "../../process/tests/integration/bounded.rs"]
mod bounded;
mod error;
pub mod futex;
mod identity;
mod mutex;
mod raw_value;
mod segment;
mod shareable_list;
mod shared_memory;
mod shared_mutex;
mod sys;
mod value;

pub use error::ShmError;
pub use identity::ProcessId;
pub use mutex::{LockResult, NotLocked, RawMutex};
pub use raw_value::{HasAtomic, RawArray, RawValue};
pub use segment::Segment;
pub use shareable_list::{Item, ShareableList};
pub use shared_memory::{SharedMemory, MAX_ATTACH_NAME_LEN, MAX_NAME_LEN};
pub use shared_mutex::SharedMutex;
pub use value::{Array, ArrayGuard, Value, ValueGuard};
