use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ops::{Deref, DerefMut};

/// A byte buffer that serializes as one contiguous blob.
///
/// serde treats `Vec<u8>` as a sequence, and postcard then encodes it one element at a time;
/// `Bytes` goes through `serialize_bytes` instead, which is a length and a single copy
/// (about 50× faster for large buffers, see `cargo xtask bench`).
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
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bytes::deserialize(d).map(Bytes)
    }
}

/// `#[serde(with = "multiproc::pickle::bytes")]` for a `Vec<u8>` field: the [`Bytes`] fast path
/// without changing the field's type.
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
pub mod bytes {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    /// Serialize a byte slice as one blob.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// Deserialize a blob written by [`serialize`] (or a plain sequence of bytes).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte buffer")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_borrowed_bytes<E: Error>(self, v: &'de [u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}
