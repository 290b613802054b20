//! `list`: a sequence on the server, behind [`ListProxy`]; the same object with a fixed length
//! is the `array` behind [`ArrayProxy`](crate::ArrayProxy).
//!
//! The server keeps the elements encoded and compares them by their encoding (`remove`,
//! `index`, `count`), which for the usual element types (integers, strings, tuples and structs
//! of them) is when they are equal. It cannot order them: [`ListProxy::sort`] sorts with code
//! of this build (see there).

use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use multiproc_pickle::{encode, fingerprint, Bytes};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{ManagerError, ServerError};
use crate::func::{self, Func, Order};
use crate::numeric::{self, NumKind, Number};
use crate::proxy::{typed_proxy_serde, Proxy};
use crate::server::object::{decode_op, CallCtx, ServerObject};
use crate::wire::{Id, Reply, Stored};
use crate::Manager;

pub(crate) const TYPE: &str = "list";
pub(crate) const ARRAY_TYPE: &str = "array";

/// The operations of a list (and of an array, which refuses those that change the length).
/// Positions are `u64` (`At` alone takes Python's negative indices); ranges are a start and
/// an optional end, clamped to the length as Python's slices are.
#[derive(Serialize, Deserialize)]
pub(crate) enum Op {
    Push(Stored),
    Extend(Vec<Stored>),
    Insert(u64, Stored),
    Get(u64),
    At(i64),
    Set(u64, Stored),
    Pop,
    PopAt(u64),
    Remove(Bytes),
    Index(Bytes),
    Count(Bytes),
    Contains(Bytes),
    Len,
    Slice(u64, Option<u64>),
    Splice(u64, Option<u64>, Vec<Stored>),
    Reverse,
    Clear,
    Copy,
    Add(u64, NumKind, Bytes),
    Apply(u64, Func),
    CompareAndSet(u64, Bytes, Stored),
    Sort(Order),
    Snapshot,
    Permute(u64, Vec<u64>),
}

impl Op {
    /// Whether it may change the list (and so its version).
    fn mutates(&self) -> bool {
        !matches!(
            self,
            Op::Get(_)
                | Op::At(_)
                | Op::Index(_)
                | Op::Count(_)
                | Op::Contains(_)
                | Op::Len
                | Op::Slice(..)
                | Op::Copy
                | Op::Snapshot
                | Op::Permute(..)
        )
    }

    /// Whether it changes the length (refused by an array).
    fn resizes(&self) -> bool {
        match self {
            Op::Push(_)
            | Op::Extend(_)
            | Op::Insert(..)
            | Op::Pop
            | Op::PopAt(_)
            | Op::Remove(_)
            | Op::Clear => true,
            // a splice of an array must put back as many as it takes (checked when run)
            _ => false,
        }
    }
}

struct State {
    items: Vec<Stored>,
    /// Counts the changes: a client-side sort writes back only if nothing changed meanwhile.
    version: u64,
}

/// `i` as a position of a list of `len` elements.
fn pos(i: u64, len: usize) -> Result<usize, ServerError> {
    if i < len as u64 {
        Ok(i as usize)
    } else {
        Err(ServerError::IndexOutOfRange {
            index: i64::try_from(i).unwrap_or(i64::MAX),
            len: len as u64,
        })
    }
}

/// A range clamped to `len`, as Python's slices are (a start past the end is an empty range).
fn span(start: u64, end: Option<u64>, len: usize) -> std::ops::Range<usize> {
    let len64 = len as u64;
    let end = end.map_or(len64, |e| e.min(len64));
    let start = start.min(end);
    start as usize..end as usize
}

/// The server's side of a list or an array.
struct ListObject {
    state: Mutex<State>,
    /// An array: the length never changes.
    fixed: bool,
}

fn build(init: Stored, fixed: bool) -> Result<Arc<dyn ServerObject>, ServerError> {
    let items: Vec<Stored> = decode_op(&init.bytes.0)?;
    Ok(Arc::new(ListObject {
        state: Mutex::new(State { items, version: 0 }),
        fixed,
    }))
}

pub(crate) fn construct(init: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    build(init, false)
}

pub(crate) fn construct_array(init: Stored) -> Result<Arc<dyn ServerObject>, ServerError> {
    build(init, true)
}

impl ServerObject for ListObject {
    fn type_name(&self) -> &str {
        if self.fixed {
            ARRAY_TYPE
        } else {
            TYPE
        }
    }

    fn drain(&self) -> Vec<Id> {
        let mut st = self.state.lock();
        st.items.drain(..).flat_map(|v| v.refs).collect()
    }

    fn call(&self, op: &[u8], ctx: &mut CallCtx<'_>) -> Result<Reply, ServerError> {
        let op: Op = decode_op(op)?;
        if self.fixed && op.resizes() {
            return Err(ServerError::FixedLength);
        }
        let mut st = self.state.lock();
        if op.mutates() {
            st.version = st.version.wrapping_add(1);
        }
        let mut out = ctx.out();
        let len = st.items.len();
        match op {
            Op::Push(v) => {
                ctx.keep(&v)?;
                st.items.push(v);
            }
            Op::Extend(vs) => {
                keep_all(ctx, &vs)?;
                st.items.extend(vs);
            }
            Op::Insert(i, v) => {
                if i > len as u64 {
                    return Err(ServerError::IndexOutOfRange {
                        index: i64::try_from(i).unwrap_or(i64::MAX),
                        len: len as u64,
                    });
                }
                ctx.keep(&v)?;
                st.items.insert(i as usize, v);
            }
            Op::Get(i) => {
                out.option(pos(i, len).ok().map(|i| &st.items[i]));
            }
            Op::At(i) => {
                let j = if i < 0 { i + len as i64 } else { i };
                let j = u64::try_from(j).map_err(|_| ServerError::IndexOutOfRange {
                    index: i,
                    len: len as u64,
                })?;
                let j = pos(j, len).map_err(|_| ServerError::IndexOutOfRange {
                    index: i,
                    len: len as u64,
                })?;
                out.value(&st.items[j]);
            }
            Op::Set(i, v) => {
                let i = pos(i, len)?;
                ctx.keep(&v)?;
                let old = std::mem::replace(&mut st.items[i], v);
                ctx.release(old);
            }
            Op::Pop => {
                let old = st.items.pop();
                out.option(old.as_ref());
                if let Some(old) = old {
                    // the caller adopts the value's references through the reply: keep ours
                    // until the reply took its own
                    ctx.release(old);
                }
            }
            Op::PopAt(i) => {
                let old = st.items.remove(pos(i, len)?);
                out.value(&old);
                ctx.release(old);
            }
            Op::Remove(b) => {
                let i = find(&st.items, &b)?;
                let old = st.items.remove(i);
                ctx.release(old);
            }
            Op::Index(b) => return Reply::plain(&(find(&st.items, &b)? as u64)),
            Op::Count(b) => {
                let n = st.items.iter().filter(|s| s.bytes.0 == b.0).count();
                return Reply::plain(&(n as u64));
            }
            Op::Contains(b) => return Reply::plain(&st.items.iter().any(|s| s.bytes.0 == b.0)),
            Op::Len => return Reply::plain(&(len as u64)),
            Op::Slice(start, end) => {
                let r = span(start, end, len);
                out.len(r.len());
                for v in &st.items[r] {
                    out.value(v);
                }
            }
            Op::Splice(start, end, new) => {
                let r = span(start, end, len);
                if self.fixed && new.len() != r.len() {
                    return Err(ServerError::FixedLength);
                }
                keep_all(ctx, &new)?;
                let removed: Vec<Stored> = st.items.splice(r, new).collect();
                out.len(removed.len());
                for v in removed {
                    out.value(&v);
                    ctx.release(v);
                }
            }
            Op::Reverse => st.items.reverse(),
            Op::Clear => {
                let ids: Vec<Id> = st.items.drain(..).flat_map(|v| v.refs).collect();
                ctx.release_ids(ids);
            }
            Op::Copy => {
                out.len(len);
                for v in &st.items {
                    out.value(v);
                }
            }
            Op::Add(i, kind, delta) => {
                let i = pos(i, len)?;
                let sum = numeric::add(Some(&st.items[i].bytes.0), &delta.0, kind)?;
                out.raw(&sum);
                let new = Stored::on_server(Bytes(sum), Vec::new());
                let old = std::mem::replace(&mut st.items[i], new);
                ctx.release(old);
            }
            Op::Apply(i, f) => {
                let i = pos(i, len)?;
                let new = f.apply(Some(&st.items[i]), ctx)?;
                out.value(&new);
                let old = std::mem::replace(&mut st.items[i], new);
                ctx.release(old);
            }
            Op::CompareAndSet(i, expected, new) => {
                let i = pos(i, len)?;
                let matches = st.items[i].bytes.0 == expected.0;
                if matches {
                    ctx.keep(&new)?;
                    let old = std::mem::replace(&mut st.items[i], new);
                    ctx.release(old);
                }
                return Reply::plain(&matches);
            }
            Op::Sort(order) => {
                let perm = order.apply(&st.items, ctx)?;
                permute(&mut st.items, &perm)?;
            }
            Op::Snapshot => {
                out.raw(&encode(&st.version).map_err(|e| ServerError::Malformed(e.to_string()))?);
                out.len(len);
                for v in &st.items {
                    out.value(v);
                }
            }
            Op::Permute(version, perm) => {
                if version != st.version {
                    return Reply::plain(&false);
                }
                permute(&mut st.items, &perm)?;
                st.version = st.version.wrapping_add(1);
                return Reply::plain(&true);
            }
        }
        drop(st);
        ctx.finish(out)
    }
}

/// Take the references of all of `values`, or of none (one unknown id refuses them all, so a
/// failed request keeps nothing).
fn keep_all(ctx: &mut CallCtx<'_>, values: &[Stored]) -> Result<(), ServerError> {
    let refs: Vec<Id> = values.iter().flat_map(|v| v.refs.iter().copied()).collect();
    ctx.keep(&Stored::on_server(Bytes(Vec::new()), refs))
}

/// The position of the first element encoded as `b`.
fn find(items: &[Stored], b: &Bytes) -> Result<usize, ServerError> {
    items
        .iter()
        .position(|s| s.bytes.0 == b.0)
        .ok_or(ServerError::ValueNotFound)
}

/// Reorder `items`: the element at `perm[k]` goes to `k`. Refused (nothing moves) unless
/// `perm` holds every position once.
fn permute(items: &mut Vec<Stored>, perm: &[u64]) -> Result<(), ServerError> {
    let bad = || ServerError::Malformed("not a permutation of the list".into());
    if perm.len() != items.len() {
        return Err(bad());
    }
    let mut seen = vec![false; items.len()];
    for &p in perm {
        let p = usize::try_from(p).map_err(|_| bad())?;
        if p >= seen.len() || std::mem::replace(&mut seen[p], true) {
            return Err(bad());
        }
    }
    let mut old: Vec<Option<Stored>> = items.drain(..).map(Some).collect();
    items.extend(perm.iter().map(|&p| {
        old[p as usize]
            .take()
            .expect("each position once (checked)")
    }));
    Ok(())
}

/// `range` as the wire's start and optional end.
pub(crate) fn bounds(range: impl RangeBounds<usize>) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s as u64,
        Bound::Excluded(&s) => (s as u64).saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Some((e as u64).saturating_add(1)),
        Bound::Excluded(&e) => Some(e as u64),
        Bound::Unbounded => None,
    };
    (start, end)
}

/// The encoding of `v`, to compare with stored values (a proxy inside takes no reference).
pub(crate) fn probe<T: Serialize + ?Sized>(v: &T) -> Result<Bytes, ManagerError> {
    Ok(Stored::of(v)?.bytes)
}

/// The elements as stored values. The caller keeps `items` until the server has them: a proxy
/// among them that dropped before would give back the last reference of its object.
pub(crate) fn stored_all<T: Serialize>(items: &[T]) -> Result<Vec<Stored>, ManagerError> {
    items
        .iter()
        .map(|v| Ok(Stored::of(v)?))
        .collect::<Result<Vec<_>, ManagerError>>()
}

/// The element updates done in one step, which [`ListProxy`] and
/// [`ArrayProxy`](crate::ArrayProxy) share: their `compare_and_set`, `update_with` and `add`.
pub(crate) mod element {
    use multiproc_pickle::{encode, Bytes};
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use super::{probe, Op};
    use crate::error::ManagerError;
    use crate::func::Func;
    use crate::numeric::Number;
    use crate::proxy::Proxy;
    use crate::wire::Stored;

    /// Set the element at `index` to `new` only if it is now `expected` (by encoding).
    pub(crate) fn compare_and_set<T: Serialize>(
        core: &Proxy,
        index: usize,
        expected: &T,
        new: T,
    ) -> Result<bool, ManagerError> {
        core.call(&Op::CompareAndSet(
            index as u64,
            probe(expected)?,
            Stored::of(&new)?,
        ))
    }

    /// Set the element at `index` to `f(element)` on the server; the new element.
    pub(crate) fn update_with<T: Serialize + DeserializeOwned>(
        core: &Proxy,
        index: usize,
        f: fn(T) -> T,
    ) -> Result<T, ManagerError> {
        core.call(&Op::Apply(index as u64, Func::present(f)))
    }

    /// Add `delta` to the number at `index` on the server; the sum.
    pub(crate) fn add<T: Number>(core: &Proxy, index: usize, delta: T) -> Result<T, ManagerError> {
        core.call(&Op::Add(index as u64, T::KIND, Bytes(encode(&delta)?)))
    }
}

/// A proxy of a list on a manager's server: Python's `ListProxy`, typed. Every method is one
/// round trip to the server, atomic there; [`add`](Self::add),
/// [`compare_and_set`](Self::compare_and_set) and [`update_with`](Self::update_with) read and
/// write an element in one step, so no update is lost when several processes change it.
///
/// Positions are `usize`, as `Vec`'s: [`get`](Self::get) gives `None` past the end, the others
/// [`ServerError::IndexOutOfRange`]. Python's negative indices (`l[-1]`) are
/// [`at`](Self::at). Ranges ([`slice`](Self::slice), [`splice`](Self::splice),
/// [`drain`](Self::drain)) take any `RangeBounds<usize>` and are clamped to the length, as
/// Python's slices are. Elements compare by their encoding ([`remove`](Self::remove),
/// [`index`](Self::index), [`count`](Self::count)).
///
/// Elements may hold proxies (a list of dicts): the server keeps the inner objects alive while
/// they are stored, and reading one gives a proxy of the same object, never a copy.
///
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let l = m.list::<i64>().unwrap();
/// l.push(3).unwrap();
/// l.extend([1, 2]).unwrap();
/// l.sort().unwrap();
/// assert_eq!(l.copy().unwrap(), [1, 2, 3]);
/// assert_eq!(l.at(-1).unwrap(), 3);
/// ```
pub struct ListProxy<T> {
    core: Proxy,
    _t: PhantomData<fn() -> T>,
}

typed_proxy_serde!(ListProxy<T>, TYPE);

impl<T> ListProxy<T>
where
    T: Serialize + DeserializeOwned,
{
    pub(crate) fn from_proxy(core: Proxy) -> Self {
        ListProxy {
            core,
            _t: PhantomData,
        }
    }

    /// Append `value` at the end (Python's `append`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list::<String>().unwrap();
    /// l.push("a".to_string()).unwrap();
    /// assert_eq!(l.len().unwrap(), 1);
    /// ```
    #[doc(alias = "append")]
    pub fn push(&self, value: T) -> Result<(), ManagerError> {
        self.core.call(&Op::Push(Stored::of(&value)?))
    }

    /// Append every value of `values`, in one step (Python's `extend`, `+=`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list::<u8>().unwrap();
    /// l.extend(0..3).unwrap();
    /// assert_eq!(l.copy().unwrap(), [0, 1, 2]);
    /// ```
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<(), ManagerError> {
        let values: Vec<T> = values.into_iter().collect();
        self.core.call(&Op::Extend(stored_all(&values)?))
    }

    /// Insert `value` at `index`, shifting the rest right (`Vec::insert`);
    /// [`ServerError::IndexOutOfRange`] if `index > len` (Python would append instead).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([1u8, 3]).unwrap();
    /// l.insert(1, 2).unwrap();
    /// assert_eq!(l.copy().unwrap(), [1, 2, 3]);
    /// assert!(l.insert(9, 0).is_err());
    /// ```
    pub fn insert(&self, index: usize, value: T) -> Result<(), ManagerError> {
        self.core
            .call(&Op::Insert(index as u64, Stored::of(&value)?))
    }

    /// The element at `index`, or `None` past the end (`Vec::get`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from(['a', 'b']).unwrap();
    /// assert_eq!(l.get(1).unwrap(), Some('b'));
    /// assert_eq!(l.get(2).unwrap(), None);
    /// ```
    pub fn get(&self, index: usize) -> Result<Option<T>, ManagerError> {
        self.core.call(&Op::Get(index as u64))
    }

    /// Python's `l[index]`: a negative index counts from the end (`-1` is the last element);
    /// [`ServerError::IndexOutOfRange`] outside the list.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([10, 20, 30]).unwrap();
    /// assert_eq!(l.at(-1).unwrap(), 30);
    /// assert_eq!(l.at(0).unwrap(), 10);
    /// assert!(l.at(-4).is_err());
    /// ```
    pub fn at(&self, index: i64) -> Result<T, ManagerError> {
        self.core.call(&Op::At(index))
    }

    /// Set the element at `index` (`l[index] = value`); [`ServerError::IndexOutOfRange`] past
    /// the end.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([1, 2]).unwrap();
    /// l.set(0, 5).unwrap();
    /// assert_eq!(l.copy().unwrap(), [5, 2]);
    /// ```
    pub fn set(&self, index: usize, value: T) -> Result<(), ManagerError> {
        self.core.call(&Op::Set(index as u64, Stored::of(&value)?))
    }

    /// Remove and return the last element, `None` if empty (`Vec::pop`; Python's `pop()`
    /// raises instead).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([1, 2]).unwrap();
    /// assert_eq!(l.pop().unwrap(), Some(2));
    /// ```
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        self.core.call(&Op::Pop)
    }

    /// Remove and return the element at `index` (Python's `pop(i)`, `Vec::remove`);
    /// [`ServerError::IndexOutOfRange`] past the end.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([1, 2, 3]).unwrap();
    /// assert_eq!(l.pop_at(0).unwrap(), 1);
    /// assert_eq!(l.copy().unwrap(), [2, 3]);
    /// ```
    pub fn pop_at(&self, index: usize) -> Result<T, ManagerError> {
        self.core.call(&Op::PopAt(index as u64))
    }

    /// Remove the first element equal to `value` (Python's `remove`);
    /// [`ServerError::ValueNotFound`] if there is none.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([1, 2, 1]).unwrap();
    /// l.remove(&1).unwrap();
    /// assert_eq!(l.copy().unwrap(), [2, 1]);
    /// ```
    pub fn remove(&self, value: &T) -> Result<(), ManagerError> {
        self.core.call(&Op::Remove(probe(value)?))
    }

    /// The position of the first element equal to `value` (Python's `index`);
    /// [`ServerError::ValueNotFound`] if there is none.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from(["a", "b"].map(String::from)).unwrap();
    /// assert_eq!(l.index(&"b".to_string()).unwrap(), 1);
    /// ```
    pub fn index(&self, value: &T) -> Result<usize, ManagerError> {
        Ok(self.core.call::<_, u64>(&Op::Index(probe(value)?))? as usize)
    }

    /// How many elements equal `value` (Python's `count`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([1, 2, 1]).unwrap();
    /// assert_eq!(l.count(&1).unwrap(), 2);
    /// ```
    pub fn count(&self, value: &T) -> Result<usize, ManagerError> {
        Ok(self.core.call::<_, u64>(&Op::Count(probe(value)?))? as usize)
    }

    /// Whether an element equals `value` (`value in l`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([1, 2]).unwrap();
    /// assert!(l.contains(&2).unwrap());
    /// ```
    pub fn contains(&self, value: &T) -> Result<bool, ManagerError> {
        self.core.call(&Op::Contains(probe(value)?))
    }

    /// The number of elements.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.list_from([1, 2]).unwrap().len().unwrap(), 2);
    /// ```
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Result<usize, ManagerError> {
        Ok(self.core.call::<_, u64>(&Op::Len)? as usize)
    }

    /// Whether there are no elements.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.list::<u8>().unwrap().is_empty().unwrap());
    /// ```
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// The elements in `range` (Python's `l[a:b]`), clamped to the length.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from(0..10u32).unwrap();
    /// assert_eq!(l.slice(2..5).unwrap(), [2, 3, 4]);
    /// assert_eq!(l.slice(8..).unwrap(), [8, 9]);
    /// assert_eq!(l.slice(20..30).unwrap(), Vec::<u32>::new());
    /// ```
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<Vec<T>, ManagerError> {
        let (start, end) = bounds(range);
        self.core.call(&Op::Slice(start, end))
    }

    /// Replace the elements in `range` (clamped to the length) by `values`, in one step, and
    /// return the ones removed (Python's `l[a:b] = values`, `Vec::splice`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([1, 2, 3, 4]).unwrap();
    /// assert_eq!(l.splice(1..3, [7, 8, 9]).unwrap(), [2, 3]);
    /// assert_eq!(l.copy().unwrap(), [1, 7, 8, 9, 4]);
    /// ```
    pub fn splice(
        &self,
        range: impl RangeBounds<usize>,
        values: impl IntoIterator<Item = T>,
    ) -> Result<Vec<T>, ManagerError> {
        let (start, end) = bounds(range);
        let values: Vec<T> = values.into_iter().collect();
        self.core
            .call(&Op::Splice(start, end, stored_all(&values)?))
    }

    /// Remove the elements in `range` (clamped to the length) and return them (`del l[a:b]`,
    /// `Vec::drain`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([1, 2, 3]).unwrap();
    /// assert_eq!(l.drain(..2).unwrap(), [1, 2]);
    /// assert_eq!(l.copy().unwrap(), [3]);
    /// ```
    pub fn drain(&self, range: impl RangeBounds<usize>) -> Result<Vec<T>, ManagerError> {
        self.splice(range, std::iter::empty())
    }

    /// Reverse the order of the elements, in place.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([1, 2, 3]).unwrap();
    /// l.reverse().unwrap();
    /// assert_eq!(l.copy().unwrap(), [3, 2, 1]);
    /// ```
    pub fn reverse(&self) -> Result<(), ManagerError> {
        self.core.call(&Op::Reverse)
    }

    /// Remove every element.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([1, 2, 3]).unwrap();
    /// l.clear().unwrap();
    /// assert!(l.is_empty().unwrap());
    /// ```
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.core.call(&Op::Clear)
    }

    /// Every element, as a plain `Vec` (Python's `l[:]`); proxies inside stay proxies of the
    /// same objects.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([1, 2]).unwrap();
    /// let v: Vec<i32> = l.copy().unwrap();
    /// assert_eq!(v, [1, 2]);
    /// ```
    pub fn copy(&self) -> Result<Vec<T>, ManagerError> {
        self.core.call(&Op::Copy)
    }

    /// Set the element at `index` to `new` only if it is now `expected` (by encoding); returns
    /// whether it did. [`ServerError::IndexOutOfRange`] past the end. Every server runs it.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([1, 2]).unwrap();
    /// assert!(l.compare_and_set(0, &1, 5).unwrap());
    /// assert!(!l.compare_and_set(0, &1, 6).unwrap());
    /// assert_eq!(l.get(0).unwrap(), Some(5));
    /// ```
    pub fn compare_and_set(
        &self,
        index: usize,
        expected: &T,
        new: T,
    ) -> Result<bool, ManagerError> {
        element::compare_and_set(&self.core, index, expected, new)
    }

    /// Set the element at `index` to `f(element)` on the server, in one step, and return the
    /// new element. `f` is a plain `fn` of this program: only a server of the same build that
    /// trusts its clients runs it (one [`Manager::start`] started; else
    /// [`ServerError::FunctionsNotAllowed`] or [`ServerError::BuildMismatch`]). A panic in `f`
    /// is [`ServerError::Panicked`] and changes nothing.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from(["a".to_string()]).unwrap();
    /// fn shout(s: String) -> String { s.to_uppercase() + "!" }
    /// assert_eq!(l.update_with(0, shout).unwrap(), "A!");
    /// ```
    pub fn update_with(&self, index: usize, f: fn(T) -> T) -> Result<T, ManagerError> {
        element::update_with(&self.core, index, f)
    }

    /// Add `delta` to the number at `index` on the server, in one step, and return the sum;
    /// [`ServerError::IndexOutOfRange`] past the end, [`ServerError::Overflow`] if the sum does
    /// not fit `T`. Every server runs it, whatever its build.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([0u64, 10]).unwrap();
    /// assert_eq!(l.add(1, 5).unwrap(), 15);
    /// ```
    pub fn add(&self, index: usize, delta: T) -> Result<T, ManagerError>
    where
        T: Number,
    {
        element::add(&self.core, index, delta)
    }

    /// Sort the elements in place, stably (Python's `sort()`). The server cannot order encoded
    /// values, so the order comes from this program's `Ord`:
    ///
    /// - on a server of the same build that runs clients' functions (one [`Manager::start`]
    ///   started), a monomorphized function of this build decodes the list and sorts it on the
    ///   server, under the list's lock: one round trip, atomic;
    /// - on any other server (another build, `allow_functions` off), this process reads the
    ///   list with its version, sorts it here and writes the order back only if the list did
    ///   not change meanwhile, retrying until it did not.
    ///
    /// Either way only the order travels back: the stored elements move, so proxies inside stay
    /// the same objects.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from(["b", "c", "a"].map(String::from)).unwrap();
    /// l.sort().unwrap();
    /// assert_eq!(l.copy().unwrap(), ["a", "b", "c"]);
    /// ```
    pub fn sort(&self) -> Result<(), ManagerError>
    where
        T: Ord,
    {
        self.sort_in(false)
    }

    /// Sort the elements in place, largest first, stably (Python's `sort(reverse=True)`); as
    /// [`sort`](Self::sort).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from([2, 3, 1]).unwrap();
    /// l.sort_descending().unwrap();
    /// assert_eq!(l.copy().unwrap(), [3, 2, 1]);
    /// ```
    pub fn sort_descending(&self) -> Result<(), ManagerError>
    where
        T: Ord,
    {
        self.sort_in(true)
    }

    fn sort_in(&self, descending: bool) -> Result<(), ManagerError>
    where
        T: Ord,
    {
        let welcome = &self.core.client()?.welcome;
        if welcome.functions && welcome.fingerprint == fingerprint() {
            return self.core.call(&Op::Sort(Order::new::<T>(descending)));
        }
        let mut attempt = 0u32;
        loop {
            let (version, items): (u64, Vec<T>) = self.core.call(&Op::Snapshot)?;
            let order = func::argsort(&items, descending);
            drop(items);
            if self.core.call::<_, bool>(&Op::Permute(version, order))? {
                return Ok(());
            }
            // someone else changed it meanwhile (so the list made progress): let them go on
            // a little, at most ~13 ms, before reading it again
            tracing::debug!(
                id = self.core.id(),
                attempt,
                "the list changed while sorting"
            );
            std::thread::sleep(std::time::Duration::from_micros(50 << attempt.min(8)));
            attempt = attempt.saturating_add(1);
        }
    }
}

impl Manager {
    /// A new empty list on the server (Python's `manager.list()`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list::<(u8, String)>().unwrap();
    /// assert!(l.is_empty().unwrap());
    /// ```
    pub fn list<T>(&self) -> Result<ListProxy<T>, ManagerError>
    where
        T: Serialize + DeserializeOwned,
    {
        self.list_from(std::iter::empty())
    }

    /// A new list on the server holding `items` (Python's `manager.list(items)`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list_from(vec![1u8, 2, 3]).unwrap();
    /// assert_eq!(l.len().unwrap(), 3);
    /// ```
    pub fn list_from<T>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ListProxy<T>, ManagerError>
    where
        T: Serialize + DeserializeOwned,
    {
        let items: Vec<T> = items.into_iter().collect();
        let stored = stored_all(&items)?;
        Ok(ListProxy::from_proxy(
            self.create(TYPE, self.bundle(&stored)?)?,
        ))
    }
}
