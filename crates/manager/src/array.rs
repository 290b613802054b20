//! `array`: a sequence of fixed length on the server, behind [`ArrayProxy`] (Python's
//! `manager.Array(typecode, sequence)`). The server's object is a list that refuses every
//! operation changing its length ([`ServerError::FixedLength`]).

use std::marker::PhantomData;
use std::ops::RangeBounds;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ManagerError;
#[cfg(doc)]
use crate::error::ServerError;
use crate::list::{bounds, element, stored_all, Op, ARRAY_TYPE};
use crate::numeric::Number;
use crate::proxy::{typed_proxy_serde, Proxy};
use crate::wire::Stored;
use crate::Manager;

/// A proxy of an array of fixed length on a manager's server: Python's `ArrayProxy`, typed,
/// for elements of any serde type (not only Python's C numbers). Every method is one round
/// trip, atomic on the server; [`add`](Self::add), [`compare_and_set`](Self::compare_and_set)
/// and [`update_with`](Self::update_with) change an element in one step, so no update is lost.
/// A position past the end is [`ServerError::IndexOutOfRange`].
///
/// It is not [`multiproc::Array`](multiproc_shm::Array), which lives in shared memory:
/// this one lives on the manager's server, so it reaches other machines and holds any type
/// (proxies too).
///
/// ```
/// multiproc::init();
/// let m = multiproc::Manager::start().unwrap();
/// let a = m.array(3, 0i64).unwrap();
/// a.set(1, 5).unwrap();
/// assert_eq!(a.add(1, 2).unwrap(), 7);
/// assert_eq!(a.to_vec().unwrap(), [0, 7, 0]);
/// ```
pub struct ArrayProxy<T> {
    core: Proxy,
    _t: PhantomData<fn() -> T>,
}

typed_proxy_serde!(ArrayProxy<T>, ARRAY_TYPE);

impl<T> ArrayProxy<T>
where
    T: Serialize + DeserializeOwned,
{
    /// The element at `index` (Python's `a[index]`); [`ServerError::IndexOutOfRange`] past the
    /// end.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let a = m.array_from([1u8, 2]).unwrap();
    /// assert_eq!(a.get(1).unwrap(), 2);
    /// assert!(a.get(2).is_err());
    /// ```
    pub fn get(&self, index: usize) -> Result<T, ManagerError> {
        self.core
            .call(&Op::At(i64::try_from(index).unwrap_or(i64::MAX)))
    }

    /// Set the element at `index` (`a[index] = value`); [`ServerError::IndexOutOfRange`] past
    /// the end.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let a = m.array(2, 'x').unwrap();
    /// a.set(0, 'y').unwrap();
    /// assert_eq!(a.to_vec().unwrap(), ['y', 'x']);
    /// ```
    pub fn set(&self, index: usize, value: T) -> Result<(), ManagerError> {
        self.core.call(&Op::Set(index as u64, Stored::of(&value)?))
    }

    /// The number of elements, fixed when the array was made.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.array(4, 0u8).unwrap().len().unwrap(), 4);
    /// ```
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Result<usize, ManagerError> {
        Ok(self.core.call::<_, u64>(&Op::Len)? as usize)
    }

    /// Every element, as a plain `Vec` (Python's `a[:]`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.array_from([1, 2]).unwrap().to_vec().unwrap(), [1, 2]);
    /// ```
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        self.core.call(&Op::Copy)
    }

    /// The elements in `range` (Python's `a[i:j]`), clamped to the length.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let a = m.array_from(0..5u16).unwrap();
    /// assert_eq!(a.slice(1..3).unwrap(), [1, 2]);
    /// ```
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<Vec<T>, ManagerError> {
        let (start, end) = bounds(range);
        self.core.call(&Op::Slice(start, end))
    }

    /// Replace the elements in `range` (clamped to the length) by as many `values`, in one
    /// step (Python's `a[i:j] = values`); [`ServerError::FixedLength`] if their numbers differ.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let a = m.array(4, 0u8).unwrap();
    /// a.set_slice(1..3, [7, 8]).unwrap();
    /// assert_eq!(a.to_vec().unwrap(), [0, 7, 8, 0]);
    /// assert!(a.set_slice(0..1, [1, 2]).is_err());
    /// ```
    pub fn set_slice(
        &self,
        range: impl RangeBounds<usize>,
        values: impl IntoIterator<Item = T>,
    ) -> Result<(), ManagerError> {
        let (start, end) = bounds(range);
        let values: Vec<T> = values.into_iter().collect();
        let _old: Vec<T> = self
            .core
            .call(&Op::Splice(start, end, stored_all(&values)?))?;
        Ok(())
    }

    /// Set the element at `index` to `new` only if it is now `expected` (by encoding); returns
    /// whether it did. Every server runs it.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let a = m.array(1, 0u32).unwrap();
    /// assert!(a.compare_and_set(0, &0, 1).unwrap());
    /// assert!(!a.compare_and_set(0, &0, 2).unwrap());
    /// ```
    pub fn compare_and_set(
        &self,
        index: usize,
        expected: &T,
        new: T,
    ) -> Result<bool, ManagerError> {
        element::compare_and_set(&self.core, index, expected, new)
    }

    /// Set the element at `index` to `f(element)` on the server, in one step, and return it.
    /// As [`ListProxy::update_with`](crate::ListProxy::update_with): a same-build server that
    /// trusts its clients only.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let a = m.array(2, 1u64).unwrap();
    /// fn double(x: u64) -> u64 { x * 2 }
    /// assert_eq!(a.update_with(1, double).unwrap(), 2);
    /// ```
    pub fn update_with(&self, index: usize, f: fn(T) -> T) -> Result<T, ManagerError> {
        element::update_with(&self.core, index, f)
    }

    /// Add `delta` to the number at `index` on the server, in one step, and return the sum;
    /// [`ServerError::Overflow`] if it does not fit `T`. Every server runs it.
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let a = m.array(2, 0.5f64).unwrap();
    /// assert_eq!(a.add(0, 1.0).unwrap(), 1.5);
    /// ```
    pub fn add(&self, index: usize, delta: T) -> Result<T, ManagerError>
    where
        T: Number,
    {
        element::add(&self.core, index, delta)
    }
}

impl Manager {
    /// A new array on the server of `len` copies of `value` (Python's
    /// `manager.Array(typecode, [value] * len)`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let a = m.array(3, false).unwrap();
    /// assert_eq!(a.to_vec().unwrap(), [false; 3]);
    /// ```
    pub fn array<T>(&self, len: usize, value: T) -> Result<ArrayProxy<T>, ManagerError>
    where
        T: Serialize + DeserializeOwned,
    {
        let one = Stored::of(&value)?;
        let items = vec![one; len];
        Ok(ArrayProxy {
            core: self.create(ARRAY_TYPE, self.bundle(&items)?)?,
            _t: PhantomData,
        })
    }

    /// A new array on the server holding `items`; its length is theirs, for good (Python's
    /// `manager.Array(typecode, sequence)`).
    ///
    /// ```
    /// multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let a = m.array_from(["x", "y"].map(String::from)).unwrap();
    /// assert_eq!(a.len().unwrap(), 2);
    /// ```
    pub fn array_from<T>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ArrayProxy<T>, ManagerError>
    where
        T: Serialize + DeserializeOwned,
    {
        let items: Vec<T> = items.into_iter().collect();
        let stored = stored_all(&items)?;
        Ok(ArrayProxy {
            core: self.create(ARRAY_TYPE, self.bundle(&stored)?)?,
            _t: PhantomData,
        })
    }
}
