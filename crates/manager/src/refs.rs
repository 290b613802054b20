//! What a proxy does when it is encoded or decoded, which depends on where that happens. A
//! proxy is a reference to an object on a server, and the server counts references:
//!
//! - inside a value sent to the server (`Stored::of`), a proxy records its id, and the server
//!   takes a reference for the stored value;
//! - inside a reply, a proxy adopts one of the references the server took for the caller;
//! - on the server (functions applied to stored values), a proxy is plain data;
//! - during a sender-side check of a debug build (`multiproc_pickle::is_checking`), too;
//! - anywhere else (process arguments, pipes, queues), encoding takes a *travelling* reference
//!   (`Request::Incref`) and decoding claims it (`Request::Claim`), so the object lives while
//!   the proxy is on its way.

use std::cell::RefCell;

use crate::wire::Id;

/// The context of the current thread.
enum Ctx {
    /// Encoding a value for the server: the ids of the proxies met.
    Collect(Vec<Id>),
    /// Decoding a reply: the references the server gave, one per proxy inside.
    Adopt(Vec<Id>),
    /// On the server: proxies are data.
    Inert,
}

thread_local! {
    static CTX: RefCell<Vec<Ctx>> = const { RefCell::new(Vec::new()) };
}

/// Pops the context pushed by its creator, even if serde unwinds.
struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        CTX.with(|c| c.borrow_mut().pop());
    }
}

fn enter(ctx: Ctx) -> Guard {
    CTX.with(|c| c.borrow_mut().push(ctx));
    Guard
}

fn leave() -> Option<Ctx> {
    CTX.with(|c| c.borrow_mut().pop())
}

/// Run `f` (an encode) noting the proxies it meets; returns its result and their ids.
pub(crate) fn collecting<R>(f: impl FnOnce() -> R) -> (R, Vec<Id>) {
    let guard = enter(Ctx::Collect(Vec::new()));
    let r = f();
    std::mem::forget(guard);
    match leave() {
        Some(Ctx::Collect(ids)) => (r, ids),
        _ => unreachable!("contexts nest"),
    }
}

/// Run `f` (a decode of a reply) with the references `given`; returns its result and the
/// references no proxy took (the caller gives them back).
pub(crate) fn adopting<R>(given: Vec<Id>, f: impl FnOnce() -> R) -> (R, Vec<Id>) {
    let guard = enter(Ctx::Adopt(given));
    let r = f();
    std::mem::forget(guard);
    match leave() {
        Some(Ctx::Adopt(left)) => (r, left),
        _ => unreachable!("contexts nest"),
    }
}

/// Run `f` with proxies as plain data (on the server).
pub(crate) fn inert<R>(f: impl FnOnce() -> R) -> R {
    let _guard = enter(Ctx::Inert);
    f()
}

/// What encoding a proxy of `id` must do here.
pub(crate) enum OnEncode {
    /// Nothing more (its id was noted, or this is a dry run or the server).
    Nothing,
    /// Take a travelling reference.
    Travel,
}

/// What decoding a proxy of `id` must do here.
pub(crate) enum OnDecode {
    /// It owns a reference given with the reply.
    Adopted,
    /// It owns nothing (server side, or a dry run).
    Inert,
    /// It must claim a reference.
    Claim,
}

pub(crate) fn on_encode(id: Id) -> OnEncode {
    if multiproc_pickle::is_checking() {
        return OnEncode::Nothing;
    }
    CTX.with(|c| match c.borrow_mut().last_mut() {
        Some(Ctx::Collect(ids)) => {
            ids.push(id);
            OnEncode::Nothing
        }
        Some(Ctx::Inert) => OnEncode::Nothing,
        Some(Ctx::Adopt(_)) | None => OnEncode::Travel,
    })
}

pub(crate) fn on_decode(id: Id) -> OnDecode {
    if multiproc_pickle::is_checking() {
        return OnDecode::Inert;
    }
    CTX.with(|c| match c.borrow_mut().last_mut() {
        Some(Ctx::Adopt(given)) => match given.iter().position(|&g| g == id) {
            Some(i) => {
                given.swap_remove(i);
                OnDecode::Adopted
            }
            None => OnDecode::Claim,
        },
        Some(Ctx::Inert) => OnDecode::Inert,
        Some(Ctx::Collect(_)) | None => OnDecode::Claim,
    })
}
