//! Functions applied to a stored value on the server (`update` with a `fn`): the function
//! travels as a pool task does, as its position in the binary, with a monomorphized
//! trampoline that decodes the old value, calls it and encodes the new one. Only a server of
//! the same build runs it (the fingerprint says), and only one whose clients are trusted to
//! run code on it (`allow_functions`: on for a server [`Manager::start`](crate::Manager::start)
//! started, off by default for one served on an address).
//!
//! Three shapes: [`Func::new`] (`fn(Option<V>) -> V`, for a value that may be absent),
//! [`Func::present`] (`fn(V) -> V`, for one that is always there: a list element, a value) and
//! [`Order`] (the order that sorts a list of `T: Ord`, as a permutation, so the server moves its
//! stored values without re-encoding them).

use multiproc_pickle::{fingerprint, Bytes, FnRef};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ServerError;
use crate::refs;
use crate::server::object::CallCtx;
use crate::wire::{Id, Stored};

/// A function of `Option<V> -> V` (or of `V -> V`), on its way to the server.
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
    encode_new(f(old))
}

/// Decode, call, encode, for a `fn(V) -> V`: runs on the server.
fn entry_present<V: Serialize + DeserializeOwned>((func, old): EntryArgs) -> EntryOut {
    // SAFETY: made by `Func::present::<V>` with exactly this signature, in this build (the
    // server checked the fingerprint before resolving the entry).
    let f: fn(V) -> V = unsafe { func.resolve() };
    let old = old.ok_or_else(|| "no value to apply the function to".to_string())?;
    let old = refs::inert(|| multiproc_pickle::decode::<V>(&old.0)).map_err(|e| e.to_string())?;
    encode_new(f(old))
}

/// Encode the value a function made, with the ids of the proxies inside (on the server, every
/// proxy comes from the old value; `apply` keeps those of this server). The proxies are data
/// here: dropping them gives nothing back.
fn encode_new<V: Serialize>(new: V) -> EntryOut {
    let (bytes, met) = refs::collecting(|| multiproc_pickle::encode(&new));
    let bytes = bytes.map_err(|e| e.to_string())?;
    let ids = met.iter().map(crate::proxy::Proxy::id).collect();
    drop(refs::inert(|| (new, met)));
    Ok((Bytes(bytes), ids))
}

/// Of the ids of the proxies met in a new value, those the old value held on this server (a
/// proxy of another server was pinned there when the old value was stored, and must not be
/// counted here; one whose id this server also holds in the old value is taken as this
/// server's: a leak until shutdown at worst, never an early release).
fn own_ids(mut met: Vec<Id>, old: Option<&Stored>) -> Vec<Id> {
    let held: &[Id] = old.map_or(&[], |s| &s.refs);
    met.retain(|id| held.contains(id));
    met
}

impl Func {
    pub(crate) fn new<V: Serialize + DeserializeOwned>(f: fn(Option<V>) -> V) -> Func {
        Func {
            fingerprint: fingerprint(),
            entry: FnRef::of(entry::<V> as fn(EntryArgs) -> EntryOut),
            func: FnRef::of(f),
        }
    }

    /// A function of a value that is always there (a list element, a managed value).
    pub(crate) fn present<V: Serialize + DeserializeOwned>(f: fn(V) -> V) -> Func {
        Func {
            fingerprint: fingerprint(),
            entry: FnRef::of(entry_present::<V> as fn(EntryArgs) -> EntryOut),
            func: FnRef::of(f),
        }
    }

    /// Run on the server: the new value from the old.
    pub(crate) fn apply(
        &self,
        old: Option<&Stored>,
        ctx: &mut CallCtx<'_>,
    ) -> Result<Stored, ServerError> {
        allowed(self.fingerprint, ctx)?;
        // SAFETY: same build (checked above) and a trusted client (allow_functions); `entry`
        // was made from `entry::<V>` or `entry_present::<V>` with this signature by
        // `Func::new` or `Func::present`.
        let e: fn(EntryArgs) -> EntryOut = unsafe { self.entry.resolve() };
        let arg = (self.func, old.map(|s| s.bytes.clone()));
        let (bytes, refs) = unwound(|| e(arg))?;
        let new = Stored::on_server(bytes, own_ids(refs, old));
        ctx.keep(&new)?;
        Ok(new)
    }
}

/// Whether this server runs a function of the build `of`.
fn allowed(of: u64, ctx: &CallCtx<'_>) -> Result<(), ServerError> {
    if !ctx.shared.config.allow_functions {
        return Err(ServerError::FunctionsNotAllowed);
    }
    if of != fingerprint() {
        return Err(ServerError::BuildMismatch {
            client: of,
            server: fingerprint(),
        });
    }
    Ok(())
}

/// Run a trampoline: a panic is [`ServerError::Panicked`], its own error `Malformed`.
fn unwound<R>(f: impl FnOnce() -> Result<R, String>) -> Result<R, ServerError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|p| {
            ServerError::Panicked(
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into()),
            )
        })?
        .map_err(ServerError::Malformed)
}

/// The positions of `items` in sorted order (stable; `descending` keeps equal items in their
/// order too, as Python's `sort(reverse=True)` does).
pub(crate) fn argsort<T: Ord>(items: &[T], descending: bool) -> Vec<u64> {
    let mut idx: Vec<usize> = (0..items.len()).collect();
    if descending {
        idx.sort_by(|&a, &b| items[b].cmp(&items[a]));
    } else {
        idx.sort_by(|&a, &b| items[a].cmp(&items[b]));
    }
    idx.into_iter().map(|i| i as u64).collect()
}

/// The order that sorts a list of `T: Ord`, computed on the server by a trampoline of this
/// build: it decodes the list, sorts the positions and sends them back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Order {
    fingerprint: u64,
    entry: FnRef,
    descending: bool,
}

/// The list, encoded as a `Vec<T>`, and whether to sort descending.
type OrderArgs = (Bytes, bool);
type OrderOut = Result<Vec<u64>, String>;

fn order_entry<T: Ord + DeserializeOwned>((list, descending): OrderArgs) -> OrderOut {
    let items =
        refs::inert(|| multiproc_pickle::decode::<Vec<T>>(&list.0)).map_err(|e| e.to_string())?;
    let order = argsort(&items, descending);
    drop(refs::inert(|| items));
    Ok(order)
}

impl Order {
    pub(crate) fn new<T: Ord + DeserializeOwned>(descending: bool) -> Order {
        Order {
            fingerprint: fingerprint(),
            entry: FnRef::of(order_entry::<T> as fn(OrderArgs) -> OrderOut),
            descending,
        }
    }

    /// Run on the server: the positions of `items` in sorted order.
    pub(crate) fn apply(
        &self,
        items: &[Stored],
        ctx: &CallCtx<'_>,
    ) -> Result<Vec<u64>, ServerError> {
        allowed(self.fingerprint, ctx)?;
        let mut list = multiproc_pickle::encode(&items.len())
            .map_err(|e| ServerError::Malformed(e.to_string()))?;
        for s in items {
            list.extend_from_slice(&s.bytes.0);
        }
        // SAFETY: same build (checked above) and a trusted client (allow_functions); `entry`
        // was made from `order_entry::<T>` with this signature by `Order::new`.
        let e: fn(OrderArgs) -> OrderOut = unsafe { self.entry.resolve() };
        unwound(|| e((Bytes(list), self.descending)))
    }
}
