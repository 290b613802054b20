//! The pickle layer of multiproc: how values, functions and OS handles cross a process boundary.
//!
//! * [`encode`] / [`decode`]: serde values as compact postcard bytes, with typed errors and a
//!   bound on how deeply a decoded value nests ([`DEFAULT_MAX_DEPTH`]).
//! * [`frame`]: the length-prefixed frame format every multiproc connection speaks (the same
//!   bytes as CPython's `multiprocessing.connection`), with a configurable maximum size.
//! * [`Bytes`] and [`bytes`]: the fast path for byte payloads (one `memcpy` instead of one
//!   serializer call per byte).
//! * [`FnRef`] and [`Call`]: a plain `fn` item or non-capturing closure sent as its position in
//!   the binary, guarded by a build [`fingerprint`].
//! * [`handles`]: OS handles (pipe ends, sockets) carried inside serialized values.
//! * `scm` (Unix): descriptors passed over Unix sockets (`SCM_RIGHTS`), shared by every crate.
//!
//! # What a message type may use
//!
//! Messages are [postcard](https://docs.rs/postcard), a compact format that is **not
//! self-describing**: the bytes hold values only, and the receiver's type says how to read
//! them. Most of serde works; these features do not, because they need the bytes to say what
//! they hold (`deserialize_any`, `deserialize_identifier`) or write fewer fields than are read:
//!
//! | works | does not work (the receiver cannot decode) |
//! | --- | --- |
//! | structs, tuples, `Option`, `Vec`, maps, externally tagged enums (the default) | `#[serde(untagged)]` enums |
//! | `#[serde(rename = ...)]`, `#[serde(default)]` on a field that is always written | `#[serde(tag = "...")]` and `#[serde(tag, content)]` enums |
//! | `#[serde(with = ...)]`, `#[serde(skip)]` (neither written nor read) | `#[serde(flatten)]` |
//! | [`Bytes`] / [`bytes`] for byte payloads | `#[serde(skip_serializing_if = ...)]`, `skip_serializing` or `skip_deserializing` alone |
//! | | `serde_json::Value` and other "any" types |
//!
//! Encoding such a value succeeds; decoding fails in the receiving process ("This is a feature
//! that PostCard will never implement"), far from the cause. **In debug builds the sender
//! checks**: `Queue::put` and the arguments of `Pool::map` (and the other pool calls) decode
//! what they just encoded ([`check_round_trip`]) and return [`PickleError::WontRoundTrip`]
//! naming the likely attribute. `Connection::send`, whose value need not be `Deserialize`,
//! cannot decode it back: it checks with [`check_shape`], which finds a skipped field
//! (`skip_serializing_if`) but not an untagged or internally tagged enum, which only fails at
//! the receiver. Release builds do not check and pay nothing for it.
//!
//! # Byte payloads: use `Bytes`, not `Vec<u8>`
//!
//! serde sees a `Vec<u8>` as a sequence of numbers, one serializer call each. [`Bytes`] (or
//! `#[serde(with = "multiproc::pickle::bytes")]` on a field) writes a length and one copy:
//! on a 4 MiB buffer a `Vec<u8>` encodes and decodes 40× to 100× slower (about 175 MB/s
//! against 12 to 27 GB/s to encode, 170 MB/s against 16 to 18 GB/s to decode).
//!
//! ```
//! use multiproc::pickle::{decode, encode};
//! let bytes = encode(&(1u32, "two".to_string())).unwrap();
//! let back: (u32, String) = decode(&bytes).unwrap();
//! assert_eq!(back, (1, "two".to_string()));
//! ```

#![warn(missing_debug_implementations)]

mod build_id;
mod bytes_impl;
mod checking;
mod codec;
mod depth;
mod error;
pub mod frame;
mod func;
pub mod handles;
mod roundtrip;
#[cfg(unix)]
pub mod scm;
mod shape_probe;

pub use build_id::build_id;
pub use bytes_impl::{bytes, Bytes};
pub use checking::is_checking;
pub use codec::{
    decode, decode_borrowed, decode_borrowed_with_max_depth, decode_with_handles,
    decode_with_handles_and_max_depth, decode_with_max_depth, encode, encode_with_handles,
    DEFAULT_MAX_DEPTH,
};
pub use error::{find_source, PickleError, SharedError};
pub use func::{fingerprint, Call, FnRef};
pub use handles::OsHandle;
pub use roundtrip::{check_round_trip, encode_checked};
pub use shape_probe::check_shape;
