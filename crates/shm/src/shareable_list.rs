//! `ShareableList`: Python's fixed-length list in a named segment, byte for byte.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{SharedMemory, ShmError};

/// One item of a [`ShareableList`]: the types Python's `ShareableList` can hold.
///
/// ```
/// use multiproc::shm::Item;
/// assert_eq!(Item::from(3), Item::Int(3));
/// assert_eq!(Item::from("hi"), Item::Str("hi".into()));
/// assert_eq!(Item::from(()), Item::None);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Python `int` (64-bit, `struct` format `q`).
    Int(i64),
    /// Python `float` (`d`).
    Float(f64),
    /// Python `bool`.
    Bool(bool),
    /// Python `None`.
    None,
    /// Python `str` (UTF-8; trailing NUL characters are not kept, as in Python).
    Str(String),
    /// Python `bytes` (trailing NUL bytes are not kept, as in Python).
    Bytes(Vec<u8>),
}

impl From<i64> for Item {
    fn from(v: i64) -> Item {
        Item::Int(v)
    }
}
impl From<i32> for Item {
    fn from(v: i32) -> Item {
        Item::Int(v.into())
    }
}
impl From<f64> for Item {
    fn from(v: f64) -> Item {
        Item::Float(v)
    }
}
impl From<bool> for Item {
    fn from(v: bool) -> Item {
        Item::Bool(v)
    }
}
impl From<()> for Item {
    fn from(_: ()) -> Item {
        Item::None
    }
}
impl From<&str> for Item {
    fn from(v: &str) -> Item {
        Item::Str(v.into())
    }
}
impl From<String> for Item {
    fn from(v: String) -> Item {
        Item::Str(v)
    }
}
impl From<Vec<u8>> for Item {
    fn from(v: Vec<u8>) -> Item {
        Item::Bytes(v)
    }
}
impl From<&[u8]> for Item {
    fn from(v: &[u8]) -> Item {
        Item::Bytes(v.to_vec())
    }
}

const ALIGN: usize = 8;
const CODE_PLAIN: u8 = 0;
const CODE_STR: u8 = 1;
const CODE_BYTES: u8 = 2;
const CODE_NONE: u8 = 3;

/// A slot's `struct` format and back-transform code for `item`, given the slot's capacity.
fn format_of(item: &Item, capacity: usize, current: &str) -> (String, u8) {
    match item {
        Item::Int(_) => ("q".into(), CODE_PLAIN),
        Item::Float(_) => ("d".into(), CODE_PLAIN),
        Item::Bool(_) => ("xxxxxxx?".into(), CODE_PLAIN),
        Item::None => ("xxxxxx?x".into(), CODE_NONE),
        Item::Str(_) | Item::Bytes(_) => {
            let code = if matches!(item, Item::Str(_)) {
                CODE_STR
            } else {
                CODE_BYTES
            };
            if current.ends_with('s') {
                (current.to_string(), code)
            } else {
                (format!("{capacity}s"), code)
            }
        }
    }
}

/// The 8 bytes of a non-string item, as Python's `struct` packs them (native byte order).
fn pack8(item: &Item) -> [u8; 8] {
    let mut b = [0u8; 8];
    match item {
        Item::Int(v) => b = v.to_ne_bytes(),
        Item::Float(v) => b = v.to_ne_bytes(),
        Item::Bool(v) => b[7] = u8::from(*v),
        Item::None => {} // "xxxxxx?x" with None packs a 0 byte
        Item::Str(_) | Item::Bytes(_) => unreachable!("strings are not packed in 8 bytes"),
    }
    b
}

/// Python's `multiprocessing.shared_memory.ShareableList`: a fixed-length list of ints, floats,
/// bools, `None`s, strs and bytes in a named [`SharedMemory`] block, in exactly CPython's
/// layout, so a list created by Python can be attached from Rust by name and the other way.
///
/// Python's slot rules hold: a str or bytes item gets, at creation, room for its length rounded
/// up to the next multiple of 8 (strictly more: 8 bytes get 16); any slot takes any number,
/// bool or `None`; a str or bytes longer than its slot is [`ShmError::ItemTooLarge`]. Indexes
/// may be negative, counting from the end, as in Python.
///
/// Items are read and written without a lock, as in Python: share a `Lock` when several
/// processes write.
///
/// ```
/// use multiproc::shm::{Item, ShareableList, ShmError};
/// let sl = ShareableList::new(None, &[Item::from(1), "hello".into(), ().into()]).unwrap();
/// assert_eq!(sl.get(1).unwrap(), Item::Str("hello".into()));
/// sl.set(-1, Item::Float(2.5)).unwrap(); // None's slot takes a float
/// // "hello" got an 8-byte slot: 11 bytes do not fit
/// assert!(matches!(sl.set(1, "longer text".into()), Err(ShmError::ItemTooLarge { .. })));
/// let other = ShareableList::attach(sl.shm().name()).unwrap(); // as another process would
/// assert_eq!(other.to_vec().unwrap(), [Item::Int(1), "hello".into(), Item::Float(2.5)]);
/// ```
pub struct ShareableList {
    shm: SharedMemory,
    len: usize,
    offsets: Vec<usize>,
}

impl std::fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareableList")
            .field("name", &self.shm.name())
            .field("items", &self.to_vec())
            .finish()
    }
}

impl ShareableList {
    /// A new list holding `items`, in a new block named `name` (or a fresh random name).
    pub fn new(name: Option<&str>, items: &[Item]) -> Result<ShareableList, ShmError> {
        let n = items.len();
        let caps: Vec<usize> = items
            .iter()
            .map(|it| match it {
                Item::Str(s) => ALIGN * (s.len() / ALIGN + 1),
                Item::Bytes(b) => ALIGN * (b.len() / ALIGN + 1),
                _ => ALIGN,
            })
            .collect();
        let mut offsets = vec![0usize];
        for c in &caps {
            offsets.push(offsets.last().expect("non-empty") + c);
        }
        let data = (n + 2) * 8;
        let size = data + offsets[n] + n * 8 + n;
        let shm = SharedMemory::create(name, size.max(1))?;
        let sl = ShareableList {
            shm,
            len: n,
            offsets,
        };
        let mut head = Vec::with_capacity((n + 2) * 8);
        head.extend_from_slice(&(n as i64).to_ne_bytes());
        for o in &sl.offsets {
            head.extend_from_slice(&(*o as i64).to_ne_bytes());
        }
        sl.shm.write(0, &head)?;
        for (i, item) in items.iter().enumerate() {
            sl.store(i, item, "")?;
        }
        Ok(sl)
    }

    /// Attach to the list in the block `name` (created by us or by CPython).
    pub fn attach(name: &str) -> Result<ShareableList, ShmError> {
        ShareableList::from_shm(SharedMemory::attach(name)?)
    }

    fn from_shm(shm: SharedMemory) -> Result<ShareableList, ShmError> {
        let bad = |why: &str| ShmError::Corrupt(format!("not a ShareableList: {why}"));
        let word = |at: usize| -> Result<i64, ShmError> {
            let mut b = [0u8; 8];
            shm.read_into(at, &mut b).map_err(|_| bad("too short"))?;
            Ok(i64::from_ne_bytes(b))
        };
        let n = word(0)?;
        if n < 0 || (n as u64).saturating_mul(17) > shm.size() as u64 {
            return Err(bad("impossible length"));
        }
        let n = n as usize;
        let mut offsets = Vec::with_capacity(n + 1);
        for i in 0..=n {
            let o = word(8 + i * 8)?;
            if o < 0
                || offsets
                    .last()
                    .is_some_and(|&p: &usize| (o as usize) < p + ALIGN)
                    && i > 0
            {
                return Err(bad("offsets out of order"));
            }
            offsets.push(o as usize);
        }
        if offsets[0] != 0 || (n + 2) * 8 + offsets[n] + n * 9 > shm.size() {
            return Err(bad("items outside the block"));
        }
        Ok(ShareableList {
            shm,
            len: n,
            offsets,
        })
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list has no item.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The block the list lives in (its name is what other processes attach to).
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    fn data_start(&self) -> usize {
        (self.len + 2) * 8
    }

    fn formats_start(&self) -> usize {
        self.data_start() + self.offsets[self.len]
    }

    fn position(&self, index: isize) -> Result<usize, ShmError> {
        let i = if index < 0 {
            index + self.len as isize
        } else {
            index
        };
        if i < 0 || i as usize >= self.len {
            return Err(ShmError::IndexOutOfRange {
                index: index.unsigned_abs(),
                len: self.len,
            });
        }
        Ok(i as usize)
    }

    fn format(&self, i: usize) -> Result<String, ShmError> {
        let mut f = [0u8; 8];
        self.shm.read_into(self.formats_start() + i * 8, &mut f)?;
        let end = f.iter().position(|&b| b == 0).unwrap_or(8);
        String::from_utf8(f[..end].to_vec()).map_err(|_| ShmError::BadItem {
            index: i,
            reason: "its format is not text".into(),
        })
    }

    fn code(&self, i: usize) -> Result<u8, ShmError> {
        let mut c = [0u8; 1];
        self.shm
            .read_into(self.formats_start() + self.len * 8 + i, &mut c)?;
        Ok(c[0])
    }

    /// The item at `index` (negative: from the end).
    pub fn get(&self, index: isize) -> Result<Item, ShmError> {
        let i = self.position(index)?;
        let fmt = self.format(i)?;
        let code = self.code(i)?;
        let at = self.data_start() + self.offsets[i];
        let cap = self.offsets[i + 1] - self.offsets[i];
        let corrupt = |why: &str| ShmError::BadItem {
            index: i,
            reason: why.into(),
        };
        if let Some(width) = fmt.strip_suffix('s') {
            let width: usize = width.parse().map_err(|_| corrupt("bad width"))?;
            if width > cap {
                return Err(corrupt("wider than its slot"));
            }
            let mut raw = self.shm.read(at, width)?;
            while raw.last() == Some(&0) {
                raw.pop();
            }
            return match code {
                CODE_STR => String::from_utf8(raw)
                    .map(Item::Str)
                    .map_err(|_| corrupt("str is not UTF-8")),
                CODE_BYTES => Ok(Item::Bytes(raw)),
                _ => Err(corrupt("string format with a non-string code")),
            };
        }
        let mut b = [0u8; 8];
        self.shm.read_into(at, &mut b)?;
        match (fmt.as_str(), code) {
            (_, CODE_NONE) => Ok(Item::None),
            ("q", _) => Ok(Item::Int(i64::from_ne_bytes(b))),
            ("d", _) => Ok(Item::Float(f64::from_ne_bytes(b))),
            ("xxxxxxx?", _) => Ok(Item::Bool(b[7] != 0)),
            _ => Err(corrupt("unknown format")),
        }
    }

    fn store(&self, i: usize, item: &Item, current: &str) -> Result<(), ShmError> {
        let at = self.data_start() + self.offsets[i];
        let cap = self.offsets[i + 1] - self.offsets[i];
        let (fmt, code) = format_of(item, cap, current);
        match item {
            Item::Str(_) | Item::Bytes(_) => {
                let bytes = match item {
                    Item::Str(s) => s.as_bytes(),
                    Item::Bytes(b) => b.as_slice(),
                    _ => unreachable!("matched above"),
                };
                let width: usize = fmt[..fmt.len() - 1].parse().unwrap_or(cap).min(cap);
                if bytes.len() > width {
                    return Err(ShmError::ItemTooLarge {
                        len: bytes.len(),
                        capacity: width,
                    });
                }
                let mut padded = bytes.to_vec();
                padded.resize(width, 0);
                self.shm.write(at, &padded)?;
            }
            _ => self.shm.write(at, &pack8(item))?,
        }
        let mut f = [0u8; 8];
        f[..fmt.len()].copy_from_slice(fmt.as_bytes());
        self.shm.write(self.formats_start() + i * 8, &f)?;
        self.shm
            .write(self.formats_start() + self.len * 8 + i, &[code])?;
        Ok(())
    }

    /// Replace the item at `index` (negative: from the end), under Python's slot rules.
    pub fn set(&self, index: isize, item: Item) -> Result<(), ShmError> {
        let i = self.position(index)?;
        let current = self.format(i)?;
        self.store(i, &item, &current)
    }

    /// All items, in order.
    ///
    /// # Errors
    ///
    /// [`ShmError::BadItem`] naming the first item that cannot be read: no item is ever
    /// skipped, so position `i` of the vector is always item `i` of the list.
    pub fn to_vec(&self) -> Result<Vec<Item>, ShmError> {
        (0..self.len as isize).map(|i| self.get(i)).collect()
    }

    /// How many items equal `value`.
    ///
    /// # Errors
    ///
    /// [`ShmError::BadItem`] if an item cannot be read (it is not counted as "not equal").
    pub fn count(&self, value: &Item) -> Result<usize, ShmError> {
        Ok(self.to_vec()?.iter().filter(|v| *v == value).count())
    }

    /// The position of the first item equal to `value`.
    ///
    /// # Errors
    ///
    /// [`ShmError::NotInList`] if no item equals `value`; [`ShmError::BadItem`] if an item
    /// before the first match cannot be read.
    pub fn index(&self, value: &Item) -> Result<usize, ShmError> {
        for i in 0..self.len {
            if self.get(i as isize)? == *value {
                return Ok(i);
            }
        }
        Err(ShmError::NotInList)
    }

    /// The `struct` format of all items, as Python's `ShareableList.format`.
    ///
    /// # Errors
    ///
    /// [`ShmError::BadItem`] naming the first item whose format cannot be read.
    pub fn format_string(&self) -> Result<String, ShmError> {
        (0..self.len).map(|i| self.format(i)).collect()
    }
}

/// Serializes as its block (name and handle); it arrives attached.
impl Serialize for ShareableList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.shm.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ShareableList::from_shm(SharedMemory::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_slot_rules() {
        let items = vec![
            Item::Int(-7),
            Item::Float(2.5),
            Item::Bool(true),
            Item::None,
            Item::Str("héllo".into()),
            Item::Bytes(b"12345678".to_vec()),
        ];
        let sl = ShareableList::new(None, &items).unwrap();
        assert_eq!(sl.to_vec().unwrap(), items);
        assert_eq!(sl.format_string().unwrap(), "qdxxxxxxx?xxxxxx?x8s16s");
        assert_eq!(sl.get(-1).unwrap(), items[5]);
        assert!(matches!(sl.get(6), Err(ShmError::IndexOutOfRange { .. })));
        assert!(matches!(sl.get(-7), Err(ShmError::IndexOutOfRange { .. })));
        // a string slot of 8 ("héllo" is 6 bytes) takes 8 bytes, not 9
        sl.set(4, Item::Str("abcdefgh".into())).unwrap();
        assert!(matches!(
            sl.set(4, Item::Str("abcdefghi".into())),
            Err(ShmError::ItemTooLarge {
                len: 9,
                capacity: 8
            })
        ));
        // any slot takes a number; a number's slot takes a short string
        sl.set(4, Item::Int(5)).unwrap();
        sl.set(0, Item::Str("fits8".into())).unwrap();
        assert!(sl.set(0, Item::Str("toolong!!".into())).is_err());
        sl.set(3, Item::Bool(false)).unwrap();
        assert_eq!(
            sl.to_vec().unwrap(),
            [
                Item::Str("fits8".into()),
                Item::Float(2.5),
                Item::Bool(true),
                Item::Bool(false),
                Item::Int(5),
                Item::Bytes(b"12345678".to_vec()),
            ]
        );
        assert_eq!(sl.count(&Item::Bool(true)).unwrap(), 1);
        assert_eq!(sl.index(&Item::Int(5)).unwrap(), 4);
        assert!(matches!(sl.index(&Item::Int(99)), Err(ShmError::NotInList)));
        let again = ShareableList::attach(sl.shm().name()).unwrap();
        assert_eq!(again.to_vec().unwrap(), sl.to_vec().unwrap());
    }

    #[test]
    fn a_block_that_is_not_a_list_is_refused() {
        let shm = SharedMemory::create(None, 64).unwrap();
        shm.write(0, &(1_000_000i64).to_ne_bytes()).unwrap();
        assert!(matches!(
            ShareableList::attach(shm.name()),
            Err(ShmError::Corrupt(_))
        ));
        let empty = ShareableList::new(None, &[]).unwrap();
        assert!(empty.is_empty());
        assert_eq!(ShareableList::attach(empty.shm().name()).unwrap().len(), 0);
    }

    #[test]
    fn an_unreadable_item_is_an_error_naming_it_not_a_gap() {
        let items = [Item::Int(1), Item::Int(2), Item::Int(3)];
        let sl = ShareableList::new(None, &items).unwrap();
        // Overwrite item 1's format with something no list writes (what another program
        // scribbling over the block would leave).
        sl.shm
            .write(sl.formats_start() + 8, b"zz\0\0\0\0\0\0")
            .unwrap();
        let bad = |r: Result<_, ShmError>| matches!(r, Err(ShmError::BadItem { index: 1, .. }));
        assert!(bad(sl.to_vec().map(|_| ())));
        assert!(bad(sl.count(&Item::Int(3)).map(|_| ())));
        assert!(bad(sl.index(&Item::Int(3)).map(|_| ())));
        // the items before it are still found; item 0 matches before item 1 is read
        assert_eq!(sl.index(&Item::Int(1)).unwrap(), 0);
        sl.shm.write(sl.formats_start() + 8, &[0xff; 8]).unwrap();
        assert!(bad(sl.format_string().map(|_| ())));
        let shown = format!("{sl:?}");
        assert!(shown.contains("BadItem"), "{shown}");
    }
}
