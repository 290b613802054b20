use std::cell::Cell;

use crate::depth::{Budget, Limited};
use crate::handles::{Ctx, CtxGuard, OsHandle, DUP_FAILED, REFUSED};
use crate::PickleError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where postcard writes: a `Vec` that copies short pieces (a varint's one to ten bytes, the
/// bulk of a message of numbers) byte by byte instead of calling `memcpy` for each, which was
/// a third of the time spent encoding a `Vec<u64>`.
struct Out(Vec<u8>);

impl postcard::ser_flavors::Flavor for Out {
    type Output = Vec<u8>;

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() <= 16 {
            self.0.reserve(data.len());
            for &b in data {
                self.0.push(b);
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// postcard's `to_allocvec`, through [`Out`].
fn to_vec<T: Serialize + ?Sized>(value: &T) -> postcard::Result<Vec<u8>> {
    postcard::serialize_with_flavor::<T, Out, Vec<u8>>(value, Out(Vec::new()))
}

/// serde's error back into the typed one a handle left aside (a refusal outside a transfer).
fn map_encode(e: postcard::Error) -> PickleError {
    if REFUSED.with(|r| r.replace(false)) {
        PickleError::HandleOutsideTransfer
    } else {
        PickleError::Encode(e.to_string())
    }
}

/// Serialize `value` to postcard bytes.
///
/// Values that own OS handles refuse with [`PickleError::HandleOutsideTransfer`]; use
/// [`encode_with_handles`] for those.
///
/// ```
/// let b = multiproc::pickle::encode(&42u64).unwrap();
/// assert_eq!(b, [42]);
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, PickleError> {
    REFUSED.with(|r| r.set(false));
    to_vec(value).map_err(map_encode)
}

/// How deeply values may nest when decoding, unless told otherwise: 128 levels, as
/// `serde_json` allows. Each sequence, map, enum and `Some` opens one level (structs, tuples and
/// newtype structs, whose shape the type fixes, are free), so a recursive type such as
/// `enum Tree { Leaf, Node(Box<Tree>) }` cannot make a peer's bytes recurse until the stack
/// overflows. Use [`decode_with_max_depth`] (or
/// `Connection::set_max_depth` in multiproc) for data that legitimately nests deeper.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// Deserialize a value written by [`encode`]. Trailing bytes are an error, and so is nesting
/// deeper than [`DEFAULT_MAX_DEPTH`] ([`PickleError::TooDeep`]).
///
/// ```
/// let v: Vec<u16> = multiproc::pickle::decode(&multiproc::pickle::encode(&vec![1u16, 2]).unwrap()).unwrap();
/// assert_eq!(v, [1, 2]);
/// assert!(multiproc::pickle::decode::<u8>(&[1, 2]).is_err());
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PickleError> {
    decode_borrowed_with_max_depth(bytes, DEFAULT_MAX_DEPTH)
}

/// [`decode`] with another nesting limit than [`DEFAULT_MAX_DEPTH`]: a value that nests deeper
/// than `max_depth` levels is a [`PickleError::TooDeep`] error, whatever the bytes say.
///
/// ```
/// use multiproc::pickle::{decode_with_max_depth, encode, PickleError};
/// let deep = encode(&Some(Some(Some(1u8)))).unwrap();
/// assert_eq!(decode_with_max_depth::<Option<Option<Option<u8>>>>(&deep, 3).unwrap(), Some(Some(Some(1))));
/// assert!(matches!(
///     decode_with_max_depth::<Option<Option<Option<u8>>>>(&deep, 2),
///     Err(PickleError::TooDeep { max: 2 })
/// ));
/// ```
pub fn decode_with_max_depth<T: DeserializeOwned>(
    bytes: &[u8],
    max_depth: usize,
) -> Result<T, PickleError> {
    decode_borrowed_with_max_depth(bytes, max_depth)
}

/// [`decode`] for values that borrow from `bytes` (`&[u8]`, `&str`, structs of them): a byte
/// payload inside a message is read in place instead of copied. [`Bytes`](crate::Bytes)
/// encodes exactly as `&[u8]` decodes.
///
/// ```
/// use multiproc::pickle::{decode_borrowed, encode, Bytes};
/// let msg = encode(&(7u8, Bytes(vec![1, 2, 3]))).unwrap();
/// let (tag, payload): (u8, &[u8]) = decode_borrowed(&msg).unwrap();
/// assert_eq!((tag, payload), (7, &[1u8, 2, 3][..]));
/// ```
pub fn decode_borrowed<'de, T: serde::Deserialize<'de>>(
    bytes: &'de [u8],
) -> Result<T, PickleError> {
    decode_borrowed_with_max_depth(bytes, DEFAULT_MAX_DEPTH)
}

/// [`decode_borrowed`] with another nesting limit than [`DEFAULT_MAX_DEPTH`].
///
/// ```
/// use multiproc::pickle::{decode_borrowed_with_max_depth, encode};
/// let msg = encode(&vec![vec![(1u8, "one")]]).unwrap();
/// let v: Vec<Vec<(u8, &str)>> = decode_borrowed_with_max_depth(&msg, 2).unwrap();
/// assert_eq!(v, [[(1, "one")]]);
/// assert!(decode_borrowed_with_max_depth::<Vec<Vec<(u8, &str)>>>(&msg, 1).is_err());
/// ```
pub fn decode_borrowed_with_max_depth<'de, T: serde::Deserialize<'de>>(
    bytes: &'de [u8],
    max_depth: usize,
) -> Result<T, PickleError> {
    let tripped = Cell::new(false);
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let v = T::deserialize(Limited {
        de: &mut de,
        budget: Budget::new(max_depth, &tripped),
    })
    .map_err(|e| {
        if tripped.get() {
            PickleError::TooDeep { max: max_depth }
        } else if matches!(e, postcard::Error::WontImplement) {
            // The receiver's type wants a self-describing format: say which attribute.
            PickleError::Decode(format!(
                "{e}: the type uses a serde feature postcard cannot decode \
                 (#[serde(untagged)], #[serde(tag = ...)], #[serde(flatten)] or an 'any' value \
                 such as serde_json::Value; see the multiproc::pickle docs, \
                 \"What a message type may use\")"
            ))
        } else {
            PickleError::Decode(e.to_string())
        }
    })?;
    let rest = de
        .finalize()
        .map_err(|e| PickleError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PickleError::Decode(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(v)
}

/// Serialize `value`, moving duplicates of the OS handles it owns into a side list.
///
/// ```
/// let (bytes, handles) = multiproc::pickle::encode_with_handles(&"no handles").unwrap();
/// assert!(handles.is_empty());
/// assert_eq!(multiproc::pickle::decode::<String>(&bytes).unwrap(), "no handles");
/// ```
pub fn encode_with_handles<T: Serialize + ?Sized>(
    value: &T,
) -> Result<(Vec<u8>, Vec<OsHandle>), PickleError> {
    let guard = CtxGuard::enter(Ctx::Encoding(Vec::new()));
    let res = to_vec(value);
    // (a duplication that failed left its io::Error aside: serde's error keeps only text)
    let dup_failed = DUP_FAILED.with(|f| f.borrow_mut().take());
    let handles = match guard.finish() {
        Ctx::Encoding(h) => h,
        _ => Vec::new(),
    };
    let bytes = res.map_err(|e| match dup_failed {
        Some(io) => PickleError::Io(io),
        None => map_encode(e),
    })?;
    Ok((bytes, handles))
}

/// Deserialize a value written by [`encode_with_handles`], giving it the handles that travelled
/// beside the bytes. Handles the value does not claim are closed. Nesting is limited to
/// [`DEFAULT_MAX_DEPTH`], as in [`decode`].
///
/// ```
/// let (bytes, handles) = multiproc::pickle::encode_with_handles(&7u8).unwrap();
/// assert_eq!(multiproc::pickle::decode_with_handles::<u8>(&bytes, handles).unwrap(), 7);
/// ```
pub fn decode_with_handles<T: DeserializeOwned>(
    bytes: &[u8],
    handles: Vec<OsHandle>,
) -> Result<T, PickleError> {
    decode_with_handles_and_max_depth(bytes, handles, DEFAULT_MAX_DEPTH)
}

/// [`decode_with_handles`] with another nesting limit than [`DEFAULT_MAX_DEPTH`].
///
/// ```
/// let (bytes, handles) = multiproc::pickle::encode_with_handles(&Some(Some(1u8))).unwrap();
/// assert!(multiproc::pickle::decode_with_handles_and_max_depth::<Option<Option<u8>>>(&bytes, handles, 1).is_err());
/// ```
pub fn decode_with_handles_and_max_depth<T: DeserializeOwned>(
    bytes: &[u8],
    handles: Vec<OsHandle>,
    max_depth: usize,
) -> Result<T, PickleError> {
    let guard = CtxGuard::enter(Ctx::Decoding(handles.into_iter().map(Some).collect()));
    let res = decode_borrowed_with_max_depth(bytes, max_depth);
    drop(guard.finish());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_describing_type_is_named_as_the_cause_at_the_receiver() {
        #[derive(serde::Serialize, serde::Deserialize, Debug)]
        #[serde(untagged)]
        enum U {
            A(u8),
        }
        let e = decode::<U>(&encode(&U::A(1)).unwrap()).unwrap_err();
        assert!(
            matches!(&e, PickleError::Decode(m) if m.contains("untagged")),
            "{e}"
        );
    }

    #[test]
    fn roundtrip_and_trailing() {
        let v = (1u8, String::from("x"), vec![1.5f64]);
        let b = encode(&v).unwrap();
        assert_eq!(decode::<(u8, String, Vec<f64>)>(&b).unwrap(), v);
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(
            decode::<(u8, String, Vec<f64>)>(&longer),
            Err(PickleError::Decode(_))
        ));
        assert!(matches!(
            decode::<(u8, String, Vec<f64>)>(&b[..2]),
            Err(PickleError::Decode(_))
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 12345;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = decode::<(String, Vec<u32>, Option<u64>)>(&bytes);
        }
    }

    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    enum Tree {
        Leaf,
        Node(Box<Tree>),
    }

    /// The bytes of a `Tree` nested `depth` levels deep: variant 1 (`Node`) `depth` times,
    /// then variant 0 (`Leaf`).
    fn tree_bytes(depth: usize) -> Vec<u8> {
        let mut b = vec![1u8; depth];
        b.push(0);
        b
    }

    fn tree(depth: usize) -> Tree {
        (0..depth).fold(Tree::Leaf, |t, _| Tree::Node(Box::new(t)))
    }

    fn in_thread<R: Send + 'static>(stack: usize, f: impl FnOnce() -> R + Send + 'static) -> R {
        std::thread::Builder::new()
            .stack_size(stack)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn deep_nesting_is_a_typed_error_not_a_stack_overflow() {
        let bytes = tree_bytes(100_000);
        // the default test-thread stack (2 MiB), and a small one
        for stack in [2 << 20, 256 << 10] {
            let b = bytes.clone();
            let r = in_thread(stack, move || decode::<Tree>(&b));
            assert!(
                matches!(
                    r,
                    Err(PickleError::TooDeep {
                        max: DEFAULT_MAX_DEPTH
                    })
                ),
                "{r:?}"
            );
            let b = bytes.clone();
            let r = in_thread(stack, move || decode_with_handles::<Tree>(&b, Vec::new()));
            assert!(matches!(r, Err(PickleError::TooDeep { .. })), "{r:?}");
        }
        // sequences, options and structs count too
        let r = in_thread(256 << 10, move || {
            #[derive(serde::Deserialize, Debug)]
            #[allow(dead_code)]
            struct Rose(Vec<Rose>);
            decode::<Rose>(&[1u8; 100_000])
        });
        assert!(matches!(r, Err(PickleError::TooDeep { .. })), "{r:?}");
        let r = in_thread(256 << 10, move || {
            #[derive(serde::Deserialize, Debug)]
            #[allow(dead_code)]
            struct List(u8, Option<Box<List>>);
            let bytes: Vec<u8> = std::iter::repeat_n([7u8, 1], 50_000).flatten().collect();
            decode::<List>(&bytes)
        });
        assert!(matches!(r, Err(PickleError::TooDeep { .. })), "{r:?}");
    }

    #[test]
    fn nesting_within_the_limit_decodes() {
        // a Tree opens one level per node (its enum), plus one for the leaf
        let within = tree(DEFAULT_MAX_DEPTH - 1);
        assert_eq!(encode(&within).unwrap(), tree_bytes(DEFAULT_MAX_DEPTH - 1));
        assert_eq!(decode::<Tree>(&encode(&within).unwrap()).unwrap(), within);
        assert!(matches!(
            decode::<Tree>(&tree_bytes(DEFAULT_MAX_DEPTH)),
            Err(PickleError::TooDeep { .. })
        ));
        // a deeper limit, where the caller knows its data (and its stack) allow it
        let r = in_thread(64 << 20, || {
            let deep = tree(5_000);
            let back = decode_with_max_depth::<Tree>(&encode(&deep).unwrap(), 6_000);
            let ok = back.as_ref().map(|b| *b == deep).unwrap_or(false);
            // dropping a 5000-deep Box chain recurses too; do it here, on the big stack
            drop((deep, back));
            ok
        });
        assert!(r);
        assert!(matches!(
            decode_with_max_depth::<Tree>(&tree_bytes(10), 5),
            Err(PickleError::TooDeep { max: 5 })
        ));
        assert_eq!(
            decode_with_max_depth::<Tree>(&tree_bytes(0), 0).ok(),
            None,
            "even a leaf is an enum: one level"
        );
        assert_eq!(decode_with_max_depth::<u64>(&[5], 0).unwrap(), 5);
    }
}
