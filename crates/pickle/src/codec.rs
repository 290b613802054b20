use crate::handles::{Ctx, CtxGuard, OsHandle, REFUSED};
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
/// let b = multiproc_pickle::encode(&42u64).unwrap();
/// assert_eq!(b, [42]);
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, PickleError> {
    REFUSED.with(|r| r.set(false));
    to_vec(value).map_err(map_encode)
}

/// Deserialize a value written by [`encode`]. Trailing bytes are an error.
///
/// ```
/// let v: Vec<u16> = multiproc_pickle::decode(&multiproc_pickle::encode(&vec![1u16, 2]).unwrap()).unwrap();
/// assert_eq!(v, [1, 2]);
/// assert!(multiproc_pickle::decode::<u8>(&[1, 2]).is_err());
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PickleError> {
    decode_borrowed(bytes)
}

/// [`decode`] for values that borrow from `bytes` (`&[u8]`, `&str`, structs of them): a byte
/// payload inside a message is read in place instead of copied. [`Bytes`](crate::Bytes)
/// encodes exactly as `&[u8]` decodes.
///
/// ```
/// use multiproc_pickle::{decode_borrowed, encode, Bytes};
/// let msg = encode(&(7u8, Bytes(vec![1, 2, 3]))).unwrap();
/// let (tag, payload): (u8, &[u8]) = decode_borrowed(&msg).unwrap();
/// assert_eq!((tag, payload), (7, &[1u8, 2, 3][..]));
/// ```
pub fn decode_borrowed<'de, T: serde::Deserialize<'de>>(
    bytes: &'de [u8],
) -> Result<T, PickleError> {
    let (v, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| PickleError::Decode(e.to_string()))?;
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
/// let (bytes, handles) = multiproc_pickle::encode_with_handles(&"no handles").unwrap();
/// assert!(handles.is_empty());
/// assert_eq!(multiproc_pickle::decode::<String>(&bytes).unwrap(), "no handles");
/// ```
pub fn encode_with_handles<T: Serialize + ?Sized>(
    value: &T,
) -> Result<(Vec<u8>, Vec<OsHandle>), PickleError> {
    let guard = CtxGuard::enter(Ctx::Encoding(Vec::new()));
    let res = to_vec(value);
    let handles = match guard.finish() {
        Ctx::Encoding(h) => h,
        _ => Vec::new(),
    };
    Ok((res.map_err(map_encode)?, handles))
}

/// Deserialize a value written by [`encode_with_handles`], giving it the handles that travelled
/// beside the bytes. Handles the value does not claim are closed.
///
/// ```
/// let (bytes, handles) = multiproc_pickle::encode_with_handles(&7u8).unwrap();
/// assert_eq!(multiproc_pickle::decode_with_handles::<u8>(&bytes, handles).unwrap(), 7);
/// ```
pub fn decode_with_handles<T: DeserializeOwned>(
    bytes: &[u8],
    handles: Vec<OsHandle>,
) -> Result<T, PickleError> {
    let guard = CtxGuard::enter(Ctx::Decoding(handles.into_iter().map(Some).collect()));
    let res = decode(bytes);
    drop(guard.finish());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
