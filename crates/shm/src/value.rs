//! `Value` and `Array`: shared plain data with a lock, like Python's `multiprocessing.Value`
//! and `multiprocessing.Array`. The soundness contract is on [`Value`].

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::raw_value::{bytes_for, data_offset};
use crate::{LockResult, RawArray, RawMutex, RawValue, Segment, SharedMutex, ShmError};

/// The lock of a value or array, and the process-local mutex its guards also hold.
#[derive(Clone)]
struct Guarded {
    lock: SharedMutex,
    local: Arc<Mutex<()>>,
}

impl Guarded {
    fn new(lock: SharedMutex) -> Guarded {
        Guarded {
            lock,
            local: Arc::new(Mutex::new(())),
        }
    }

    /// Both locks, waiting as long as it takes; whether the previous holder died holding the
    /// shared one.
    fn acquire(&self) -> (MutexGuard<'_, ()>, bool) {
        let local = self.local.lock();
        loop {
            match self.lock.lock() {
                LockResult::TimedOut => continue, // (not with no deadline; be total)
                r => return (local, r == LockResult::OwnerDied),
            }
        }
    }

    /// Both locks, waiting at most `timeout`; `None` when it expired.
    fn acquire_for(&self, timeout: Duration) -> Option<(MutexGuard<'_, ()>, bool)> {
        let start = Instant::now();
        let local = self.local.try_lock_for(timeout)?;
        match self
            .lock
            .lock_timeout(timeout.saturating_sub(start.elapsed()))
        {
            LockResult::TimedOut => None,
            r => Some((local, r == LockResult::OwnerDied)),
        }
    }

    fn try_acquire(&self) -> Option<(MutexGuard<'_, ()>, bool)> {
        let local = self.local.try_lock()?;
        match self.lock.try_lock() {
            LockResult::TimedOut => None,
            r => Some((local, r == LockResult::OwnerDied)),
        }
    }

    fn guard<'a, U: ?Sized>(
        &'a self,
        ptr: NonNull<U>,
        got: (MutexGuard<'a, ()>, bool),
    ) -> ValueGuard<'a, U> {
        ValueGuard {
            ptr,
            lock: &self.lock,
            _local: got.0,
            owner_died: got.1,
            _data: PhantomData,
        }
    }
}

/// Exclusive access to the data of a [`Value`] (or, as [`ArrayGuard`], of an [`Array`]) while
/// its lock is held; dropping the guard releases the lock.
///
/// It dereferences to `T` (`[T]`), mutably. [`owner_died`](Self::owner_died) tells whether the
/// lock's previous holder died holding it: the data may then be half-updated, as behind a
/// poisoned `std::sync::Mutex`.
///
/// ```
/// let v = multiproc::Value::new(1u32).unwrap();
/// let mut g = v.lock();
/// assert!(!g.owner_died());
/// *g += 1;
/// drop(g);
/// assert_eq!(v.get(), 2);
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct ValueGuard<'a, U: ?Sized> {
    ptr: NonNull<U>,
    lock: &'a SharedMutex,
    _local: MutexGuard<'a, ()>,
    owner_died: bool,
    _data: PhantomData<&'a mut U>,
}

/// Exclusive access to the elements of an [`Array`]: a [`ValueGuard`] over `[T]`.
///
/// ```
/// let a = multiproc::Array::<u8>::new(4).unwrap();
/// let mut g: multiproc::shm::ArrayGuard<'_, u8> = a.lock();
/// g.fill(1);
/// g[0] = 0;
/// drop(g);
/// assert_eq!(a.to_vec(), [0, 1, 1, 1]);
/// ```
pub type ArrayGuard<'a, T> = ValueGuard<'a, [T]>;

impl<U: ?Sized> ValueGuard<'_, U> {
    /// Whether the previous holder of the lock died holding it (the lock was taken over:
    /// [`LockResult::OwnerDied`]). What it was writing may be half-written.
    ///
    /// ```
    /// let v = multiproc::Value::new(0i64).unwrap();
    /// assert!(!v.lock().owner_died());
    /// ```
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl<U: ?Sized> Deref for ValueGuard<'_, U> {
    type Target = U;
    fn deref(&self) -> &U {
        // SAFETY: `ptr` points at the (aligned, in-bounds) data of a value or array whose
        // segment outlives `'a` (the guard borrows the value). We hold the shared lock and the
        // process-local mutex, so no other guard exists in this process, and lock-free access
        // in this process (`get_obj`) is excluded by its own safety contract. Any bytes are a
        // valid `U` (Pod). See `Value`'s contract for other processes.
        unsafe { self.ptr.as_ref() }
    }
}

impl<U: ?Sized> DerefMut for ValueGuard<'_, U> {
    fn deref_mut(&mut self) -> &mut U {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference handed out now.
        unsafe { self.ptr.as_mut() }
    }
}

impl<U: ?Sized> Drop for ValueGuard<'_, U> {
    fn drop(&mut self) {
        // Release the shared lock first; the process-local mutex (a field) is released after.
        if self.lock.unlock().is_err() {
            tracing::warn!("a shared value's lock was released by someone else while held");
        }
    }
}

impl<U: ?Sized + std::fmt::Debug> std::fmt::Debug for ValueGuard<'_, U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// How a value's lock travels: beside the data (an offset in the same segment) or in a
/// segment of its own (a user-supplied lock).
#[derive(Serialize)]
enum LockRef<'a> {
    Beside(u64),
    Apart(&'a SharedMutex),
}

#[derive(Deserialize)]
enum LockWire {
    Beside(u64),
    Apart(SharedMutex),
}

fn lock_ref<'a>(data_seg: &Arc<Segment>, lock: &'a SharedMutex) -> LockRef<'a> {
    let (seg, offset) = lock.location();
    if Arc::ptr_eq(seg, data_seg) {
        LockRef::Beside(offset as u64)
    } else {
        LockRef::Apart(lock)
    }
}

/// The lock received for data at `data_start..data_end` of `seg`.
fn lock_from_wire(
    wire: LockWire,
    seg: &Arc<Segment>,
    data_start: usize,
    data_end: usize,
) -> Result<SharedMutex, ShmError> {
    match wire {
        LockWire::Apart(m) => Ok(m),
        LockWire::Beside(off) => {
            let off = usize::try_from(off).map_err(|_| ShmError::InvalidSize(usize::MAX))?;
            let end = off.saturating_add(std::mem::size_of::<RawMutex>());
            if end > data_start && off < data_end {
                return Err(ShmError::OutOfBounds {
                    offset: off,
                    end,
                    len: seg.len(),
                });
            }
            SharedMutex::in_segment(seg.clone(), off)
        }
    }
}

/// One plain-data value in shared memory with a lock: Python's `multiprocessing.Value`.
///
/// By default the lock is a word in the same segment, just before the data
/// ([`SharedMutex::in_segment`]); [`with_lock`](Self::with_lock) takes one of yours instead
/// (any `impl Into<SharedMutex>`, such as `multiproc-sync`'s `Lock`), which several values may
/// share. [`lock`](Self::lock) gives a guard that dereferences to `T`; [`get`](Self::get) and
/// [`set`](Self::set) lock around one copy. (`Value(..., lock=False)` in Python is a
/// [`RawValue`] here.)
///
/// Clones share the value and its lock; it travels to child processes as an argument, under
/// every start method. The lock is not re-entrant (Python's default is an `RLock`): do not
/// call `get`/`set`/`lock` while this thread holds a guard of the same value, or its lock.
/// See [the contract](#the-contract) for processes that ignore the lock.
///
/// ```
/// # multiproc::test_support!();
/// use multiproc::Process;
/// use multiproc::Value;
///
/// fn add(v: Value<i64>) {
///     for _ in 0..1000 {
///         *v.lock() += 1;
///     }
/// }
///
/// let v = Value::new(0i64).unwrap();
/// let ps: Vec<_> = (0..2).map(|_| Process::new(add, v.clone())).collect();
/// for p in &ps {
///     p.start().unwrap();
/// }
/// for p in &ps {
///     assert_eq!(p.join().unwrap(), 0);
/// }
/// assert_eq!(v.get(), 2000);
/// ```
///
/// # The contract
///
/// A [`ValueGuard`] hands out `&mut T` (an [`ArrayGuard`] `&mut [T]`) pointing straight into
/// shared memory, for as long as it holds the lock. That is sound because:
///
/// * within this process, a guard also holds a process-local mutex shared by all clones of the
///   value, so two guards never coexist here — not even if someone releases the shared lock
///   under a live guard (any holder of a [`SharedMutex`] may release it, as in Python);
/// * lock-free access to the same bytes (`get_obj`) is `unsafe`, with the promise that no guard
///   is alive in this process meanwhile;
/// * other processes are outside this process's memory model: the lock is advisory there, as in
///   Python. A process that writes without holding the lock races with the guard's holder, who
///   can then see torn or stale values — never invalid ones, since `T` is [`Pod`]. Lock-free
///   sharing is what [`RawValue`] and [`RawArray`] are for.
///
/// Values reach children as arguments, and arrive with process-local state of their own. (A
/// value a `fork` child merely inherits in its copy of memory also inherits that state: if
/// another thread of the parent held a guard at the instant of the fork, the child's `lock`
/// waits forever. Pass values as arguments.)
pub struct Value<T: Pod> {
    raw: RawValue<T>,
    guarded: Guarded,
}

impl<T: Pod> Value<T> {
    /// A new value holding `v`, with its lock beside it in one segment.
    ///
    /// ```
    /// let v = multiproc::Value::new([0u8; 16]).unwrap();
    /// assert_eq!(v.get(), [0; 16]);
    /// ```
    pub fn new(v: T) -> Result<Value<T>, ShmError> {
        let off = data_offset::<T>(std::mem::size_of::<RawMutex>());
        let len = off
            .checked_add(std::mem::size_of::<T>())
            .ok_or(ShmError::InvalidSize(usize::MAX))?;
        let seg = Arc::new(Segment::new(len)?);
        let lock = SharedMutex::in_segment(seg.clone(), 0)?;
        let raw = RawValue::in_segment(seg, off)?;
        raw.set(v);
        Ok(Value {
            raw,
            guarded: Guarded::new(lock),
        })
    }

    /// A new value holding `v`, guarded by `lock` (which other values may share).
    ///
    /// ```
    /// use multiproc::shm::{SharedMutex, Value};
    /// let lock = SharedMutex::new().unwrap();
    /// let a = Value::with_lock(1u32, lock.clone()).unwrap();
    /// let b = Value::with_lock(2u32, lock.clone()).unwrap();
    /// let g = a.lock();
    /// assert!(b.try_lock().is_none()); // one lock for both
    /// drop(g);
    /// assert_eq!(b.get(), 2);
    /// ```
    pub fn with_lock(v: T, lock: impl Into<SharedMutex>) -> Result<Value<T>, ShmError> {
        Ok(Value {
            raw: RawValue::new(v)?,
            guarded: Guarded::new(lock.into()),
        })
    }

    /// The lock: Python's `get_lock()`. Holding it directly does not give access to the data
    /// (use [`lock`](Self::lock)), and this value's own `get`/`set`/`lock` wait for it.
    ///
    /// ```
    /// let v = multiproc::Value::new(0u8).unwrap();
    /// let g = v.lock();
    /// assert!(v.get_lock().is_locked());
    /// drop(g);
    /// assert!(!v.get_lock().is_locked());
    /// ```
    pub fn get_lock(&self) -> &SharedMutex {
        &self.guarded.lock
    }

    fn ptr(&self) -> NonNull<T> {
        NonNull::new(self.raw.as_ptr()).expect("a mapped segment is not at address 0")
    }

    /// Lock, waiting as long as it takes; the guard dereferences to the value.
    ///
    /// ```
    /// let v = multiproc::Value::new(10i32).unwrap();
    /// {
    ///     let mut g = v.lock();
    ///     *g *= 2;
    /// } // released here
    /// assert_eq!(v.get(), 20);
    /// ```
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> ValueGuard<'_, T> {
        let got = self.guarded.acquire();
        self.guarded.guard(self.ptr(), got)
    }

    /// Lock, waiting at most `timeout`; `None` if it expired. The guard says whether the
    /// previous holder died holding the lock ([`ValueGuard::owner_died`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let v = multiproc::Value::new(0u64).unwrap();
    /// let g = v.lock_timeout(Duration::from_millis(10)).unwrap();
    /// let w = v.clone();
    /// let other = std::thread::spawn(move || w.lock_timeout(Duration::from_millis(20)).is_none());
    /// assert!(other.join().unwrap(), "held by us: timed out");
    /// drop(g);
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Option<ValueGuard<'_, T>> {
        let got = self.guarded.acquire_for(timeout)?;
        Some(self.guarded.guard(self.ptr(), got))
    }

    /// Lock if nobody holds the lock now.
    ///
    /// ```
    /// let v = multiproc::Value::new(0u64).unwrap();
    /// let g = v.try_lock().unwrap();
    /// assert!(v.try_lock().is_none());
    /// drop(g);
    /// assert!(v.try_lock().is_some());
    /// ```
    #[must_use = "the lock is released at once if the guard is not kept"]
    pub fn try_lock(&self) -> Option<ValueGuard<'_, T>> {
        let got = self.guarded.try_acquire()?;
        Some(self.guarded.guard(self.ptr(), got))
    }

    /// A copy of the value, taken under the lock: Python's `v.value`. (A previous holder's
    /// death is not reported here; use [`lock`](Self::lock) to learn of it.)
    ///
    /// ```
    /// let v = multiproc::Value::new(2.5f32).unwrap();
    /// assert_eq!(v.get(), 2.5);
    /// ```
    #[doc(alias = "value")]
    pub fn get(&self) -> T {
        *self.lock()
    }

    /// Replace the value under the lock: Python's `v.value = x`.
    ///
    /// ```
    /// let v = multiproc::Value::new(0u16).unwrap();
    /// v.set(7);
    /// assert_eq!(v.get(), 7);
    /// ```
    pub fn set(&self, v: T) {
        *self.lock() = v;
    }

    /// The value without its lock: Python's `get_obj()`.
    ///
    /// # Safety
    /// While the returned reference (or a clone of it) is used to read or write the value, no
    /// [`ValueGuard`] of this value may be alive in this process: a guard holds a `&mut T` to
    /// the same bytes, and any other access meanwhile is a data race. (Other processes cannot
    /// break this process's references; they race, see the [contract](Value#the-contract).)
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// let v = multiproc::Value::new(1u64).unwrap();
    /// // SAFETY: no guard of `v` is alive in this process while `raw` is used.
    /// let raw = unsafe { v.get_obj() };
    /// raw.atomic().fetch_add(1, Ordering::SeqCst);
    /// assert_eq!(v.get(), 2);
    /// ```
    pub unsafe fn get_obj(&self) -> &RawValue<T> {
        &self.raw
    }
}

impl<T: Pod> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            raw: self.raw.clone(),
            guarded: self.guarded.clone(),
        }
    }
}

/// Shows the value if the lock is free (like `std::sync::Mutex`), `<locked>` otherwise.
impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Value");
        match self.try_lock() {
            Some(g) => d.field("value", &*g),
            None => d.field("value", &format_args!("<locked>")),
        };
        d.finish()
    }
}

/// Serializes as its data (segment and offset) and its lock (an offset in the same segment,
/// or a lock of its own): the OS handles travel with a process start. A value received from a
/// process gets a process-local mutex of its own.
impl<T: Pod> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let lock = lock_ref(self.raw.location().0, &self.guarded.lock);
        (&self.raw, lock).serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (raw, wire) = <(RawValue<T>, LockWire)>::deserialize(d)?;
        let (seg, start) = raw.location();
        let lock = lock_from_wire(wire, seg, start, start + std::mem::size_of::<T>())
            .map_err(serde::de::Error::custom)?;
        Ok(Value {
            raw,
            guarded: Guarded::new(lock),
        })
    }
}

/// A fixed-length array of plain data in shared memory with a lock: Python's
/// `multiprocessing.Array`.
///
/// Zero-filled at creation. As with [`Value`], the lock is by default a word in the same
/// segment before the elements, or one of yours ([`with_lock`](Self::with_lock)).
/// [`lock`](Self::lock) gives a guard that dereferences to `[T]`, for slicing, `fill`,
/// iteration; [`get`](Self::get), [`set`](Self::set) and [`to_vec`](Self::to_vec) lock around
/// one copy. (`Array(..., lock=False)` in Python is a [`RawArray`] here.) Clones share the
/// elements and the lock; it travels to child processes as an argument. See the
/// [contract](Value#the-contract).
///
/// ```
/// use multiproc::shm::{Array, ShmError};
/// let a = Array::from_slice(&[1.0f64, 2.0, 3.0]).unwrap();
/// for x in a.lock().iter_mut() {
///     *x *= 10.0;
/// }
/// assert_eq!(a.to_vec(), [10.0, 20.0, 30.0]);
/// assert!(matches!(a.get(3), Err(ShmError::IndexOutOfRange { index: 3, len: 3 })));
/// ```
pub struct Array<T: Pod> {
    raw: RawArray<T>,
    guarded: Guarded,
}

impl<T: Pod> Array<T> {
    /// `len` zero elements, with their lock beside them in one segment. Its memory is backed
    /// now, as [`RawArray::new`]'s is.
    ///
    /// ```
    /// let a = multiproc::Array::<i32>::new(3).unwrap();
    /// assert_eq!(a.to_vec(), [0, 0, 0]);
    /// ```
    pub fn new(len: usize) -> Result<Array<T>, ShmError> {
        let off = data_offset::<T>(std::mem::size_of::<RawMutex>());
        let total = off
            .checked_add(bytes_for::<T>(len)?)
            .ok_or(ShmError::InvalidSize(len))?;
        let seg = Arc::new(Segment::new(total)?);
        seg.populate();
        let lock = SharedMutex::in_segment(seg.clone(), 0)?;
        let raw = RawArray::in_segment(seg, off, len)?;
        Ok(Array {
            raw,
            guarded: Guarded::new(lock),
        })
    }

    /// A new array holding a copy of `data`, with its lock beside it.
    ///
    /// ```
    /// let a = multiproc::Array::from_slice(b"abc").unwrap();
    /// assert_eq!(a.to_vec(), b"abc");
    /// ```
    pub fn from_slice(data: &[T]) -> Result<Array<T>, ShmError> {
        let a = Array::new(data.len())?;
        a.raw.copy_from_slice(data)?;
        Ok(a)
    }

    /// `len` zero elements guarded by `lock` (which other values and arrays may share).
    ///
    /// ```
    /// use multiproc::shm::{Array, SharedMutex, Value};
    /// let lock = SharedMutex::new().unwrap();
    /// let a = Array::<u8>::with_lock(2, lock.clone()).unwrap();
    /// let n = Value::with_lock(0usize, lock).unwrap();
    /// let g = a.lock();
    /// assert!(n.try_lock().is_none());
    /// drop(g);
    /// ```
    pub fn with_lock(len: usize, lock: impl Into<SharedMutex>) -> Result<Array<T>, ShmError> {
        Ok(Array {
            raw: RawArray::new(len)?,
            guarded: Guarded::new(lock.into()),
        })
    }

    /// A new array holding a copy of `data`, guarded by `lock`.
    ///
    /// ```
    /// let lock = multiproc::shm::SharedMutex::new().unwrap();
    /// let a = multiproc::Array::from_slice_with_lock(&[1u8, 2], lock).unwrap();
    /// assert_eq!(a.to_vec(), [1, 2]);
    /// ```
    pub fn from_slice_with_lock(
        data: &[T],
        lock: impl Into<SharedMutex>,
    ) -> Result<Array<T>, ShmError> {
        Ok(Array {
            raw: RawArray::from_slice(data)?,
            guarded: Guarded::new(lock.into()),
        })
    }

    /// The number of elements.
    ///
    /// ```
    /// assert_eq!(multiproc::Array::<u8>::new(7).unwrap().len(), 7);
    /// ```
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the array has no elements.
    ///
    /// ```
    /// assert!(multiproc::Array::<u8>::new(0).unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The lock: Python's `get_lock()`. See [`Value::get_lock`].
    ///
    /// ```
    /// let a = multiproc::Array::<u8>::new(1).unwrap();
    /// assert!(!a.get_lock().is_locked());
    /// ```
    pub fn get_lock(&self) -> &SharedMutex {
        &self.guarded.lock
    }

    fn ptr(&self) -> NonNull<[T]> {
        let first = NonNull::new(self.raw.as_ptr()).expect("a mapped segment is not at address 0");
        NonNull::slice_from_raw_parts(first, self.raw.len())
    }

    /// Lock, waiting as long as it takes; the guard dereferences to the elements.
    ///
    /// ```
    /// let a = multiproc::Array::<u32>::new(3).unwrap();
    /// a.lock().copy_from_slice(&[3, 2, 1]);
    /// a.lock().sort();
    /// assert_eq!(a.to_vec(), [1, 2, 3]);
    /// ```
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> ArrayGuard<'_, T> {
        let got = self.guarded.acquire();
        self.guarded.guard(self.ptr(), got)
    }

    /// Lock, waiting at most `timeout`; `None` if it expired.
    ///
    /// ```
    /// use std::time::Duration;
    /// let a = multiproc::Array::<u8>::new(1).unwrap();
    /// let g = a.lock_timeout(Duration::from_secs(1)).unwrap();
    /// assert!(!g.owner_died());
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Option<ArrayGuard<'_, T>> {
        let got = self.guarded.acquire_for(timeout)?;
        Some(self.guarded.guard(self.ptr(), got))
    }

    /// Lock if nobody holds the lock now.
    ///
    /// ```
    /// let a = multiproc::Array::<u8>::new(1).unwrap();
    /// let g = a.try_lock().unwrap();
    /// assert!(a.try_lock().is_none());
    /// ```
    #[must_use = "the lock is released at once if the guard is not kept"]
    pub fn try_lock(&self) -> Option<ArrayGuard<'_, T>> {
        let got = self.guarded.try_acquire()?;
        Some(self.guarded.guard(self.ptr(), got))
    }

    /// A copy of element `index` taken under the lock, or `IndexOutOfRange`: Python's `a[i]`.
    ///
    /// ```
    /// let a = multiproc::Array::from_slice(&[4u8, 5]).unwrap();
    /// assert_eq!(a.get(1).unwrap(), 5);
    /// assert!(a.get(2).is_err());
    /// ```
    pub fn get(&self, index: usize) -> Result<T, ShmError> {
        self.raw.get(index)?; // the index check, without waiting for the lock
        Ok(self.lock()[index])
    }

    /// Replace element `index` under the lock, or `IndexOutOfRange`: Python's `a[i] = x`.
    ///
    /// ```
    /// let a = multiproc::Array::<u8>::new(2).unwrap();
    /// a.set(0, 1).unwrap();
    /// assert!(a.set(2, 1).is_err());
    /// assert_eq!(a.to_vec(), [1, 0]);
    /// ```
    pub fn set(&self, index: usize, v: T) -> Result<(), ShmError> {
        if index >= self.len() {
            return Err(ShmError::IndexOutOfRange {
                index,
                len: self.len(),
            });
        }
        self.lock()[index] = v;
        Ok(())
    }

    /// A copy of all the elements, taken under the lock: Python's `a[:]`.
    ///
    /// ```
    /// let a = multiproc::Array::from_slice(&[1i16, -1]).unwrap();
    /// assert_eq!(a.to_vec(), vec![1, -1]);
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        self.lock().to_vec()
    }

    /// The elements without their lock: Python's `get_obj()`.
    ///
    /// # Safety
    /// While the returned reference (or a clone of it) is used to read or write elements, no
    /// [`ArrayGuard`] of this array may be alive in this process: a guard holds a `&mut [T]`
    /// to the same bytes, and any other access meanwhile is a data race. (Other processes
    /// race, see the [contract](Value#the-contract).)
    ///
    /// ```
    /// let a = multiproc::Array::<u8>::new(3).unwrap();
    /// // SAFETY: no guard of `a` is alive in this process while `raw` is used.
    /// let raw = unsafe { a.get_obj() };
    /// raw.fill(9);
    /// assert_eq!(a.to_vec(), [9, 9, 9]);
    /// ```
    pub unsafe fn get_obj(&self) -> &RawArray<T> {
        &self.raw
    }
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            raw: self.raw.clone(),
            guarded: self.guarded.clone(),
        }
    }
}

impl<T: Pod> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Array")
            .field("len", &self.len())
            .field("locked", &self.get_lock().is_locked())
            .finish()
    }
}

/// Serializes as its elements (segment, offset, length) and its lock, as [`Value`] does.
impl<T: Pod> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let lock = lock_ref(self.raw.location().0, &self.guarded.lock);
        (&self.raw, lock).serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (raw, wire) = <(RawArray<T>, LockWire)>::deserialize(d)?;
        let (seg, start) = raw.location();
        let end = start + raw.len() * std::mem::size_of::<T>();
        let lock = lock_from_wire(wire, seg, start, end).map_err(serde::de::Error::custom)?;
        Ok(Array {
            raw,
            guarded: Guarded::new(lock),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounded::ThreadJoinBounded;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Plant a pid that cannot exist (above the kernel's limit of 2^22) in `lock`'s word, as
    /// if a process had died holding it.
    fn plant_dead_owner(lock: &SharedMutex) {
        let (seg, off) = lock.location();
        seg.write(off, &((1u32 << 22) + 5).to_ne_bytes()).unwrap();
    }

    #[test]
    fn threads_count_exactly() {
        let v = Value::new(0i64).unwrap();
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let v = v.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *v.lock() += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join_bounded();
        }
        assert_eq!(v.get(), 40_000);
        assert!(!v.get_lock().is_locked());
    }

    #[test]
    fn lock_sits_before_the_data_in_one_segment() {
        let v = Value::new(0x0102_0304u32).unwrap();
        let (lseg, loff) = v.get_lock().location();
        // SAFETY: no guard of `v` is alive while `raw` is used.
        let (dseg, doff) = unsafe { v.get_obj() }.location();
        assert!(Arc::ptr_eq(lseg, dseg));
        assert_eq!((loff, doff), (0, 16));
        assert_eq!(dseg.read(doff, 4).unwrap(), 0x0102_0304u32.to_ne_bytes());
        let a = Array::<u64>::new(2).unwrap();
        assert_eq!(a.get_lock().location().1, 0);
    }

    #[test]
    fn owner_died_is_reported_once() {
        if cfg!(not(target_os = "linux")) {
            return; // dead-owner detection needs process liveness (Linux today)
        }
        let v = Value::new(5u8).unwrap();
        plant_dead_owner(v.get_lock());
        let g = v.lock_timeout(Duration::from_secs(10)).expect("taken over");
        assert!(g.owner_died());
        assert_eq!(*g, 5);
        drop(g);
        assert!(!v.lock().owner_died());
        let a = Array::<u8>::new(1).unwrap();
        plant_dead_owner(a.get_lock());
        assert!(a.try_lock().expect("taken over").owner_died());
    }

    #[test]
    fn timeout_expires_while_held() {
        let v = Value::new(0u32).unwrap();
        let w = v.clone();
        let g = v.lock();
        let t = Instant::now();
        let other = std::thread::spawn(move || w.lock_timeout(Duration::from_millis(50)).is_none());
        assert!(other.join_bounded());
        assert!(t.elapsed() >= Duration::from_millis(50));
        drop(g);
        // and a free lock is taken at once, even with a zero timeout
        assert!(v.lock_timeout(Duration::ZERO).is_some());
    }

    #[test]
    fn a_released_lock_never_gives_a_second_guard_here() {
        let v = Value::new(0u32).unwrap();
        let g = v.lock();
        // Python semantics: anyone may release the lock...
        v.get_lock().unlock().unwrap();
        assert!(!v.get_lock().is_locked());
        // ...but this process still cannot make a second `&mut` to the data.
        assert!(v.try_lock().is_none());
        assert!(v.lock_timeout(Duration::from_millis(20)).is_none());
        drop(g); // its release finds the lock free: a warning, no panic
        assert!(v.try_lock().is_some());
    }

    #[test]
    fn user_lock_is_shared() {
        let lock = SharedMutex::new().unwrap();
        let a = Value::with_lock(1i32, lock.clone()).unwrap();
        let b = Array::<i32>::with_lock(3, lock.clone()).unwrap();
        let g = a.lock();
        assert!(lock.is_locked());
        assert!(b.try_lock().is_none());
        drop(g);
        assert!(!lock.is_locked());
        b.set(2, 9).unwrap();
        assert_eq!(b.to_vec(), [0, 0, 9]);
    }

    #[test]
    fn index_errors() {
        let a = Array::from_slice(&[1u64, 2]).unwrap();
        assert!(matches!(
            a.get(2),
            Err(ShmError::IndexOutOfRange { index: 2, len: 2 })
        ));
        assert!(matches!(
            a.set(5, 0),
            Err(ShmError::IndexOutOfRange { index: 5, len: 2 })
        ));
        assert_eq!(a.to_vec(), [1, 2]);
        let e = Array::<u8>::new(0).unwrap();
        assert!(e.is_empty() && e.get(0).is_err());
        assert_eq!(&*e.lock(), &[] as &[u8]);
    }

    #[test]
    fn travels_with_its_lock() {
        // beside: one handle; apart: two
        let v = Value::new(3i64).unwrap();
        let (bytes, handles) = multiproc_pickle::encode_with_handles(&v).unwrap();
        assert_eq!(handles.len(), 1);
        let w: Value<i64> = multiproc_pickle::decode_with_handles(&bytes, handles).unwrap();
        let g = v.lock();
        assert!(w.get_lock().is_locked(), "the same lock word");
        drop(g);
        w.set(4);
        assert_eq!(v.get(), 4);

        let lock = SharedMutex::new().unwrap();
        let a = Array::from_slice_with_lock(&[1u8, 2], lock.clone()).unwrap();
        let (bytes, handles) = multiproc_pickle::encode_with_handles(&a).unwrap();
        assert_eq!(handles.len(), 2);
        let b: Array<u8> = multiproc_pickle::decode_with_handles(&bytes, handles).unwrap();
        assert_eq!(b.to_vec(), [1, 2]);
        assert_eq!(lock.lock(), LockResult::Acquired);
        assert!(b.try_lock().is_none(), "the user's lock travelled");
        lock.unlock().unwrap();
    }

    #[test]
    fn debug_does_not_block() {
        let v = Value::new(7u8).unwrap();
        assert_eq!(format!("{v:?}"), "Value { value: 7 }");
        let g = v.lock();
        assert_eq!(format!("{v:?}"), "Value { value: <locked> }");
        assert_eq!(format!("{g:?}"), "7");
    }

    #[test]
    fn guard_writes_are_seen_through_raw_copies_after_release() {
        let a = Array::<u32>::new(4).unwrap();
        a.lock().fill(3);
        // SAFETY: no guard of `a` is alive while `raw` is used.
        let raw = unsafe { a.get_obj() };
        assert_eq!(raw.to_vec(), [3; 4]);
        let hits = AtomicU32::new(0);
        for x in a.lock().iter() {
            hits.fetch_add(*x, Ordering::Relaxed);
        }
        assert_eq!(hits.into_inner(), 12);
    }
}
