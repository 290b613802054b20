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
//! ```
//! use multiproc::pickle::{decode, encode};
//! let bytes = encode(&(1u32, "two".to_string())).unwrap();
//! let back: (u32, String) = decode(&bytes).unwrap();
//! assert_eq!(back, (1, "two".to_string()));
//! ```

#![warn(missing_debug_implementations)]

mod build_id;
mod bytes_impl;
mod codec;
mod depth;
mod error;
pub mod frame;
mod func;
pub mod handles;
#[cfg(unix)]
pub mod scm;

pub use build_id::build_id;
pub use bytes_impl::{bytes, Bytes};
pub use codec::{
    decode, decode_borrowed, decode_borrowed_with_max_depth, decode_with_handles,
    decode_with_handles_and_max_depth, decode_with_max_depth, encode, encode_with_handles,
    DEFAULT_MAX_DEPTH,
};
pub use error::{find_source, PickleError, SharedError};
pub use func::{fingerprint, Call, FnRef};
pub use handles::OsHandle;
