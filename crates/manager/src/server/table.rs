//! The object table: every object with its reference count, every client session with the
//! references it holds, and the references of proxies on their way between processes.
//!
//! An object's count is the sum of: the references sessions hold (one per proxy-holding
//! process, per decode), the references stored values hold (a proxy inside a dict's value),
//! and travelling references. At zero the object goes, and so do the references of what it
//! stored (which may free more objects: released in a loop, never recursively).
//!
//! Lock order: an object's own lock may be held while the table's is taken (a call taking
//! references for the values it stores or returns), never the other way: the table calls
//! into objects (`drain`, `session_ended`) only after letting go of its lock.

use std::collections::HashMap;
use std::sync::Arc;

use super::object::ServerObject;
use crate::error::ServerError;
use crate::wire::Id;

struct Entry {
    obj: Arc<dyn ServerObject>,
    count: usize,
}

#[derive(Default)]
struct Session {
    conns: usize,
    refs: HashMap<Id, usize>,
}

#[derive(Default)]
pub(crate) struct Table {
    objects: HashMap<Id, Entry>,
    next_id: Id,
    sessions: HashMap<u64, Session>,
    next_session: u64,
    /// token → object, for proxies on their way
    transit: HashMap<u64, Id>,
    next_token: u64,
}

/// Objects whose count reached zero, to be drained once the table's lock is let go.
pub(crate) type Dead = Vec<Arc<dyn ServerObject>>;

impl Table {
    pub(crate) fn get(&self, id: Id) -> Result<Arc<dyn ServerObject>, ServerError> {
        self.objects
            .get(&id)
            .map(|e| e.obj.clone())
            .ok_or(ServerError::NoSuchObject(id))
    }

    pub(crate) fn len(&self) -> usize {
        self.objects.len()
    }

    /// Register a new object, held by `session`.
    pub(crate) fn insert(&mut self, session: u64, obj: Arc<dyn ServerObject>) -> Id {
        self.next_id += 1;
        let id = self.next_id;
        self.objects.insert(id, Entry { obj, count: 1 });
        *self
            .sessions
            .entry(session)
            .or_default()
            .refs
            .entry(id)
            .or_default() += 1;
        id
    }

    /// A new session, with its first connection.
    pub(crate) fn open_session(&mut self) -> u64 {
        self.next_session += 1;
        let s = self.next_session;
        self.sessions.insert(
            s,
            Session {
                conns: 1,
                ..Session::default()
            },
        );
        s
    }

    /// Another connection joins `session`; false if there is no such session.
    pub(crate) fn join_session(&mut self, session: u64) -> bool {
        match self.sessions.get_mut(&session) {
            Some(s) => {
                s.conns += 1;
                true
            }
            None => false,
        }
    }

    /// A connection of `session` closed; when it was the last, the session's references go.
    /// Returns whether the session ended.
    pub(crate) fn close_connection(&mut self, session: u64, dead: &mut Dead) -> bool {
        let Some(s) = self.sessions.get_mut(&session) else {
            return false;
        };
        s.conns -= 1;
        if s.conns > 0 {
            return false;
        }
        let s = self.sessions.remove(&session).expect("present");
        for (id, n) in s.refs {
            self.decref(id, n, dead);
        }
        true
    }

    /// One more reference on each of `ids` (for a stored value); all must exist.
    pub(crate) fn incref_all(&mut self, ids: &[Id]) -> Result<(), ServerError> {
        if let Some(&missing) = ids.iter().find(|id| !self.objects.contains_key(id)) {
            return Err(ServerError::NoSuchObject(missing));
        }
        for id in ids {
            self.objects.get_mut(id).expect("checked").count += 1;
        }
        Ok(())
    }

    /// References on `ids` for `session` (the proxies in a reply).
    pub(crate) fn give(&mut self, session: u64, ids: &[Id]) -> Result<(), ServerError> {
        self.incref_all(ids)?;
        let s = self.sessions.entry(session).or_default();
        for &id in ids {
            *s.refs.entry(id).or_default() += 1;
        }
        Ok(())
    }

    /// `session` drops one reference on each of `ids`; a reference it does not hold is
    /// ignored (a confused client cannot free what others hold).
    pub(crate) fn drop_session_refs(&mut self, session: u64, ids: &[Id], dead: &mut Dead) {
        for &id in ids {
            let Some(s) = self.sessions.get_mut(&session) else {
                return;
            };
            match s.refs.get_mut(&id) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    s.refs.remove(&id);
                }
                None => {
                    tracing::debug!(
                        session,
                        id,
                        "a session dropped a reference it does not hold"
                    );
                    continue;
                }
            }
            self.decref(id, 1, dead);
        }
    }

    /// Drop `n` references on `id`.
    pub(crate) fn decref(&mut self, id: Id, n: usize, dead: &mut Dead) {
        if let Some(e) = self.objects.get_mut(&id) {
            e.count = e.count.saturating_sub(n);
            if e.count == 0 {
                let e = self.objects.remove(&id).expect("present");
                tracing::trace!(id, type_name = e.obj.type_name(), "object released");
                dead.push(e.obj);
            }
        }
    }

    /// A travelling reference on `id`; returns its token.
    pub(crate) fn travel(&mut self, id: Id) -> Result<u64, ServerError> {
        self.incref_all(&[id])?;
        self.next_token += 1;
        self.transit.insert(self.next_token, id);
        Ok(self.next_token)
    }

    /// A reference on `id` that nobody gives back (see `Request::Pin`).
    pub(crate) fn pin(&mut self, id: Id) -> Result<(), ServerError> {
        self.incref_all(&[id])
    }

    /// `session` takes a reference on `id`: the travelling one of `token` if it is still
    /// there, else a new one (the object must live).
    pub(crate) fn claim(&mut self, session: u64, id: Id, token: u64) -> Result<(), ServerError> {
        if token != 0 && self.transit.get(&token) == Some(&id) {
            self.transit.remove(&token);
        } else {
            self.incref_all(&[id])?;
        }
        *self
            .sessions
            .entry(session)
            .or_default()
            .refs
            .entry(id)
            .or_default() += 1;
        Ok(())
    }

    /// Every object (to tell them a session ended).
    pub(crate) fn all(&self) -> Vec<Arc<dyn ServerObject>> {
        self.objects.values().map(|e| e.obj.clone()).collect()
    }

    /// The type name of `id`.
    pub(crate) fn type_of(&self, id: Id) -> Result<String, ServerError> {
        Ok(self.get(id)?.type_name().to_owned())
    }
}
