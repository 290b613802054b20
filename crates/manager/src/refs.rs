//! What a proxy does when it is encoded or decoded, which depends on where that happens. A
//! proxy is a reference to an object on a server, and the server counts references:
//!
//! - inside a value sent to a server (`Stored::of`), a proxy records itself; when the value is
//!   sent ([`storing_to`]), the server takes a reference for the stored value on each proxy of
//!   its own, and each proxy of *another* server is pinned there (`Request::Pin`: a reference
//!   that lives until that server stops, since the storing server never tells it when the
//!   value goes), so reading the value back always finds the object;
//! - inside a reply, a proxy of the replying server adopts one of the references the server
//!   took for the caller; a proxy of another server claims a new one from its own server;
//! - on the server (functions applied to stored values), a proxy is plain data;
//! - during a sender-side check of a debug build (`multiproc_pickle::is_checking`), too;
//! - anywhere else (process arguments, pipes, queues), encoding takes a *travelling* reference
//!   (`Request::Incref`) and decoding claims it (`Request::Claim`), so the object lives while
//!   the proxy is on its way.

use std::cell::RefCell;

use crate::client::Endpoint;
use crate::proxy::Proxy;
use crate::wire::Id;

/// The context of the current thread.
enum Ctx {
    /// Encoding a value to be stored: the proxies met.
    Collect(Vec<Proxy>),
    /// Decoding a reply of the server at `Endpoint`: the references it gave, one per proxy of
    /// its own inside.
    Adopt(Endpoint, Vec<Id>),
    /// On the server: proxies are data.
    Inert,
}

thread_local! {
    static CTX: RefCell<Vec<Ctx>> = const { RefCell::new(Vec::new()) };
    /// The servers a request is being encoded for, innermost last ([`storing_to`]).
    static TARGET: RefCell<Vec<Endpoint>> = const { RefCell::new(Vec::new()) };
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

/// Run `f` (an encode) noting the proxies it meets; returns its result and them.
pub(crate) fn collecting<R>(f: impl FnOnce() -> R) -> (R, Vec<Proxy>) {
    let guard = enter(Ctx::Collect(Vec::new()));
    let r = f();
    std::mem::forget(guard);
    match leave() {
        Some(Ctx::Collect(met)) => (r, met),
        _ => unreachable!("contexts nest"),
    }
}

/// Run `f` (a decode of a reply from the server at `from`) with the references `given`;
/// returns its result and the references no proxy took (the caller gives them back).
pub(crate) fn adopting<R>(from: &Endpoint, given: Vec<Id>, f: impl FnOnce() -> R) -> (R, Vec<Id>) {
    let guard = enter(Ctx::Adopt(from.clone(), given));
    let r = f();
    std::mem::forget(guard);
    match leave() {
        Some(Ctx::Adopt(_, left)) => (r, left),
        _ => unreachable!("contexts nest"),
    }
}

/// Run `f` (the encode of a request to the server at `to`): the stored values inside it
/// reference the proxies of `to` by id and pin those of other servers ([`Stored`]'s encoding
/// asks [`target`]).
///
/// [`Stored`]: crate::wire::Stored
pub(crate) fn storing_to<R>(to: &Endpoint, f: impl FnOnce() -> R) -> R {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            TARGET.with(|t| t.borrow_mut().pop());
        }
    }
    TARGET.with(|t| t.borrow_mut().push(to.clone()));
    let _pop = Pop;
    f()
}

/// The server the request being encoded goes to, if any.
pub(crate) fn target() -> Option<Endpoint> {
    TARGET.with(|t| t.borrow().last().cloned())
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

/// What encoding `proxy` must do here.
pub(crate) fn on_encode(proxy: &Proxy) -> OnEncode {
    if multiproc_pickle::is_checking() {
        return OnEncode::Nothing;
    }
    CTX.with(|c| match c.borrow_mut().last_mut() {
        Some(Ctx::Collect(met)) => {
            met.push(proxy.clone());
            OnEncode::Nothing
        }
        Some(Ctx::Inert) => OnEncode::Nothing,
        Some(Ctx::Adopt(..)) | None => OnEncode::Travel,
    })
}

/// What decoding a proxy of object `id` on the server at `at` must do here.
pub(crate) fn on_decode(at: &Endpoint, id: Id) -> OnDecode {
    if multiproc_pickle::is_checking() {
        return OnDecode::Inert;
    }
    CTX.with(|c| match c.borrow_mut().last_mut() {
        Some(Ctx::Adopt(from, given)) if from == at => match given.iter().position(|&g| g == id) {
            Some(i) => {
                given.swap_remove(i);
                OnDecode::Adopted
            }
            None => OnDecode::Claim,
        },
        Some(Ctx::Inert) => OnDecode::Inert,
        Some(Ctx::Adopt(..) | Ctx::Collect(_)) | None => OnDecode::Claim,
    })
}
