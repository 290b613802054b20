//! Functions applied to a stored value on the server (`update` with a `fn`): the function
//! travels as a pool task does, as its position in the binary, with a monomorphized
//! trampoline that decodes the old value, calls it and encodes the new one. Only a server of
//! the same build runs it (the fingerprint says), and only one whose clients are trusted to
//! run code on it (`allow_functions`: on for a server [`Manager::start`](crate::Manager::start)
//! started, off by default for one served on an address).

use multiproc_pickle::{fingerprint, Bytes, FnRef};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ServerError;
use crate::refs;
use crate::server::object::CallCtx;
use crate::wire::{Id, Stored};

/// A function of `Option<V> -> V`, on its way to the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Func {
    fingerprint: u64,
    entry: FnRef,
    func: FnRef,
}

type EntryArgs = (FnRef, Option<Bytes>);
type EntryOut = Result<(Bytes, Vec<Id>), String>;

/// Decode, call, encode: runs on the server.
fn entry<V: Serialize + DeserializeOwned>((func, old): EntryArgs) -> EntryOut {
    // SAFETY: made by `Func::new::<V>` with exactly this signature, in this build (the server
    // checked the fingerprint before resolving the entry).
    let f: fn(Option<V>) -> V = unsafe { func.resolve() };
    let old = match old {
        Some(b) => {
            Some(refs::inert(|| multiproc_pickle::decode::<V>(&b.0)).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let new = f(old);
    let (bytes, ids) = refs::collecting(|| multiproc_pickle::encode(&new));
    let bytes = bytes.map_err(|e| e.to_string())?;
    drop(refs::inert(|| new));
    Ok((Bytes(bytes), ids))
}

impl Func {
    pub(crate) fn new<V: Serialize + DeserializeOwned>(f: fn(Option<V>) -> V) -> Func {
        Func {
            fingerprint: fingerprint(),
            entry: FnRef::of(entry::<V> as fn(EntryArgs) -> EntryOut),
            func: FnRef::of(f),
        }
    }

    /// Run on the server: the new value from the old.
    pub(crate) fn apply(
        &self,
        old: Option<&Stored>,
        ctx: &mut CallCtx<'_>,
    ) -> Result<Stored, ServerError> {
        if !ctx.shared.config.allow_functions {
            return Err(ServerError::FunctionsNotAllowed);
        }
        if self.fingerprint != fingerprint() {
            return Err(ServerError::BuildMismatch {
                client: self.fingerprint,
                server: fingerprint(),
            });
        }
        // SAFETY: same build (checked above) and a trusted client (allow_functions); `entry`
        // was made from `entry::<V>` with this signature by `Func::new`.
        let e: fn(EntryArgs) -> EntryOut = unsafe { self.entry.resolve() };
        let arg = (self.func, old.map(|s| s.bytes.clone()));
        let (bytes, refs) = std::panic::catch_unwind(|| e(arg))
            .map_err(|p| {
                ServerError::Panicked(
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into()),
                )
            })?
            .map_err(ServerError::Malformed)?;
        let new = Stored { bytes, refs };
        ctx.keep(&new)?;
        Ok(new)
    }
}
