use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ops::{Deref, DerefMut};

/// A byte buffer that serializes as one contiguous blob: **use it (or
/// `#[serde(with = "multiproc::pickle::bytes")]` on a `Vec<u8>` field) for every byte payload.**
///
/// serde treats a plain `Vec<u8>` as a sequence of numbers, and postcard then encodes and
/// decodes it one element at a time; `Bytes` goes through `serialize_bytes` instead, a length
/// and a single copy. Measured on a 4 MiB buffer (`cargo xtask bench`, `encode_*` and
/// `decode_*`): a `Vec<u8>` encodes and decodes 40× to 100× slower than `Bytes`.
///
/// It is [`serde_bytes::ByteBuf`] under another name, kept as a type of this crate for its
/// short `Debug` (a length, not megabytes of numbers) and its `Deref` to `Vec<u8>`; the
/// serialization is `serde_bytes`'s, so it mixes freely with types that use that crate.
///
/// ```
/// use multiproc::pickle::{decode, encode, Bytes};
/// let b = Bytes(vec![7u8; 1 << 20]);
/// let enc = encode(&b).unwrap();
/// assert_eq!(enc.len(), (1 << 20) + 3); // a 3-byte varint length, then the bytes
/// let back: Bytes = decode(&enc).unwrap();
/// assert_eq!(back, b);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl Deref for Bytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Self {
        b.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_bytes::deserialize(d).map(Bytes)
    }
}

/// `#[serde(with = "multiproc::pickle::bytes")]` for a `Vec<u8>` (or `&[u8]`, `Box<[u8]>`)
/// field: the [`Bytes`] fast path without changing the field's type. It is the `serde_bytes`
/// crate, re-exported so that a program needs no dependency of its own.
///
/// ```
/// use multiproc::serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize, PartialEq, Debug)]
/// #[serde(crate = "multiproc::serde")]
/// struct Image {
///     width: u32,
///     #[serde(with = "multiproc::pickle::bytes")]
///     pixels: Vec<u8>,
/// }
/// let img = Image { width: 2, pixels: vec![1, 2, 3, 4] };
/// let back: Image = multiproc::pickle::decode(&multiproc::pickle::encode(&img).unwrap()).unwrap();
/// assert_eq!(back, img);
/// ```
pub use serde_bytes as bytes;
