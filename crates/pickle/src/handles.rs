//! OS handles carried inside serialized values.
//!
//! A type that owns an OS handle (a pipe end, a socket, later a shared-memory segment) serializes
//! the handle with [`serialize_handle`] and gets it back with [`deserialize_handle`]. Inside
//! [`encode_with_handles`](crate::encode_with_handles) each handle is duplicated into a side list
//! and only its index goes into the bytes; the transport (the child bootstrap channel, a
//! connection's handle frames, a pool unit: all pass file descriptors with `SCM_RIGHTS` on
//! Unix, see [`scm`](crate::scm)) moves the side list, and
//! [`decode_with_handles`](crate::decode_with_handles) hands each handle back by index, once.
//!
//! Outside such a transfer, serializing a handle fails with
//! [`PickleError::HandleOutsideTransfer`](crate::PickleError::HandleOutsideTransfer): a value
//! that owns a handle never silently turns into a number that means nothing elsewhere.
//!
//! ```
//! # #[cfg(unix)] {
//! use multiproc::pickle::handles::{deserialize_handle, serialize_handle};
//! use multiproc::pickle::{decode_with_handles, encode_with_handles, OsHandle};
//! use multiproc::serde::{Deserialize, Deserializer, Serialize, Serializer};
//!
//! struct Carrier(OsHandle);
//! impl Serialize for Carrier {
//!     fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
//!         serialize_handle(&self.0, s)
//!     }
//! }
//! impl<'de> Deserialize<'de> for Carrier {
//!     fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
//!         deserialize_handle(d).map(Carrier)
//!     }
//! }
//!
//! let file = std::fs::File::open("/dev/null").unwrap();
//! let c = Carrier(file.into());
//! let (bytes, handles) = encode_with_handles(&c).unwrap();
//! assert_eq!(handles.len(), 1);
//! let back: Carrier = decode_with_handles(&bytes, handles).unwrap();
//! # let _ = back;
//! assert!(multiproc::pickle::encode(&c).is_err()); // no transfer: refused
//! # }
//! ```

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serializer};
use std::cell::RefCell;

/// The owned OS handle type of this platform (`OwnedFd` on Unix, `OwnedHandle` on Windows).
#[cfg(unix)]
pub type OsHandle = std::os::fd::OwnedFd;
/// The owned OS handle type of this platform (`OwnedFd` on Unix, `OwnedHandle` on Windows).
#[cfg(windows)]
pub type OsHandle = std::os::windows::io::OwnedHandle;

/// The borrowed form of [`OsHandle`].
#[cfg(unix)]
pub trait AsOsHandle: std::os::fd::AsFd {}
#[cfg(unix)]
impl<T: std::os::fd::AsFd> AsOsHandle for T {}
/// The borrowed form of [`OsHandle`].
#[cfg(windows)]
pub trait AsOsHandle: std::os::windows::io::AsHandle {}
#[cfg(windows)]
impl<T: std::os::windows::io::AsHandle> AsOsHandle for T {}

#[derive(Default)]
pub(crate) enum Ctx {
    #[default]
    None,
    Encoding(Vec<OsHandle>),
    Decoding(Vec<Option<OsHandle>>),
}

thread_local! {
    pub(crate) static CTX: RefCell<Ctx> = const { RefCell::new(Ctx::None) };
    /// Set when a handle was refused, so the caller can report a typed error.
    pub(crate) static REFUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The operating system's error of a duplication that failed during this encoding: serde's
    /// error type keeps only text, so the caller takes the typed error from here.
    pub(crate) static DUP_FAILED: RefCell<Option<std::io::Error>> = const { RefCell::new(None) };
}

fn duplicate(h: &impl AsOsHandle) -> std::io::Result<OsHandle> {
    #[cfg(unix)]
    {
        h.as_fd().try_clone_to_owned()
    }
    #[cfg(windows)]
    {
        h.as_handle().try_clone_to_owned()
    }
}

/// Serialize an OS handle: inside a transfer, a duplicate joins the side list and its index is
/// written; outside one, serialization fails.
pub fn serialize_handle<S: Serializer>(h: &impl AsOsHandle, s: S) -> Result<S::Ok, S::Error> {
    let index = CTX.with(|c| match &mut *c.borrow_mut() {
        Ctx::Encoding(list) => {
            let dup = duplicate(h).map_err(|e| {
                let text = S::Error::custom(&e);
                DUP_FAILED.with(|f| *f.borrow_mut() = Some(e));
                text
            })?;
            list.push(dup);
            Ok(list.len() as u32 - 1)
        }
        _ => {
            REFUSED.with(|r| r.set(true));
            Err(S::Error::custom("OS handle outside a transfer"))
        }
    })?;
    s.serialize_u32(index)
}

/// Deserialize an OS handle written by [`serialize_handle`], taking it from the transfer.
pub fn deserialize_handle<'de, D: Deserializer<'de>>(d: D) -> Result<OsHandle, D::Error> {
    let index = u32::deserialize(d)?;
    CTX.with(|c| match &mut *c.borrow_mut() {
        Ctx::Decoding(list) => list
            .get_mut(index as usize)
            .and_then(Option::take)
            .ok_or_else(|| D::Error::custom(format!("OS handle #{index} is missing"))),
        _ => Err(D::Error::custom("OS handle outside a transfer")),
    })
}

/// A borrowed OS handle as a serde value ([`serialize_handle`]): for putting handles into a
/// message without owning them.
///
/// ```
/// # #[cfg(unix)] {
/// use multiproc::pickle::handles::{HandleOwned, HandleRef};
/// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
/// let fd = std::os::fd::OwnedFd::from(a);
/// let (bytes, handles) = multiproc::pickle::encode_with_handles(&HandleRef(&fd)).unwrap();
/// assert_eq!(handles.len(), 1);
/// let back: HandleOwned = multiproc::pickle::decode_with_handles(&bytes, handles).unwrap();
/// # let _ = back.0;
/// # }
/// ```
#[derive(Debug)]
pub struct HandleRef<'a, H: AsOsHandle>(pub &'a H);

impl<H: AsOsHandle> serde::Serialize for HandleRef<'_, H> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_handle(self.0, s)
    }
}

/// An OS handle taken from a message ([`deserialize_handle`]); see [`HandleRef`].
#[derive(Debug)]
pub struct HandleOwned(pub OsHandle);

impl<'de> Deserialize<'de> for HandleOwned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_handle(d).map(HandleOwned)
    }
}

/// Restores the previous context when dropped (also on unwinding out of a serde impl).
pub(crate) struct CtxGuard(pub(crate) Option<Ctx>);

impl CtxGuard {
    pub(crate) fn enter(ctx: Ctx) -> Self {
        REFUSED.with(|r| r.set(false));
        DUP_FAILED.with(|f| f.borrow_mut().take());
        CtxGuard(Some(CTX.with(|c| c.replace(ctx))))
    }
    pub(crate) fn finish(mut self) -> Ctx {
        let prev = self.0.take().unwrap_or_default();
        CTX.with(|c| c.replace(prev))
    }
}

impl Drop for CtxGuard {
    fn drop(&mut self) {
        if let Some(prev) = self.0.take() {
            CTX.with(|c| *c.borrow_mut() = prev);
        }
    }
}
