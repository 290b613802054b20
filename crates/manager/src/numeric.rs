//! Arithmetic on stored numbers, done by the server without knowing the program's types: the
//! proxy says which kind of number the value is, and the server reads and writes postcard's
//! encoding of it (zigzag varints for signed integers, varints for unsigned, little-endian
//! IEEE floats; 8-bit integers are one plain byte).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ServerError;

/// The kind of a number, as the server handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NumKind {
    /// A signed integer of this many bits.
    Signed(u8),
    /// An unsigned integer of this many bits.
    Unsigned(u8),
    /// `f32`.
    F32,
    /// `f64`.
    F64,
}

/// A number the server can add to atomically ([`DictProxy::add`](crate::DictProxy::add),
/// [`ValueProxy::add`](crate::ValueProxy::add), ...): the integers up to 64 bits and the floats.
///
/// ```
/// use multiproc::managers::{NumKind, Number};
/// assert_eq!(<i32 as Number>::KIND, NumKind::Signed(32));
/// ```
pub trait Number: Serialize + DeserializeOwned + Copy + Send + 'static {
    /// Its kind.
    const KIND: NumKind;
}

macro_rules! number {
    ($($t:ty => $k:expr),*) => { $(impl Number for $t { const KIND: NumKind = $k; })* };
}
number!(i8 => NumKind::Signed(8), i16 => NumKind::Signed(16), i32 => NumKind::Signed(32),
    i64 => NumKind::Signed(64), isize => NumKind::Signed(64),
    u8 => NumKind::Unsigned(8), u16 => NumKind::Unsigned(16), u32 => NumKind::Unsigned(32),
    u64 => NumKind::Unsigned(64), usize => NumKind::Unsigned(64),
    f32 => NumKind::F32, f64 => NumKind::F64);

fn not(kind: NumKind) -> ServerError {
    ServerError::NotANumber(format!("{kind:?}"))
}

fn decode<T: DeserializeOwned>(b: &[u8], kind: NumKind) -> Result<T, ServerError> {
    multiproc_pickle::decode(b).map_err(|_| not(kind))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    multiproc_pickle::encode(v).expect("a number encodes")
}

/// `current + delta` (`current` absent: `delta`), both encoded as `kind`; the sum encoded.
pub(crate) fn add(
    current: Option<&[u8]>,
    delta: &[u8],
    kind: NumKind,
) -> Result<Vec<u8>, ServerError> {
    let Some(current) = current else {
        // validate the delta, then it is the value
        check(delta, kind)?;
        return Ok(delta.to_vec());
    };
    Ok(match kind {
        NumKind::Signed(bits) => {
            let (a, b): (i64, i64) = if bits == 8 {
                (
                    decode::<i8>(current, kind)?.into(),
                    decode::<i8>(delta, kind)?.into(),
                )
            } else {
                (decode(current, kind)?, decode(delta, kind)?)
            };
            let sum = a.checked_add(b).ok_or(ServerError::Overflow)?;
            let (lo, hi) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
            if (sum as i128) < lo || (sum as i128) > hi {
                return Err(ServerError::Overflow);
            }
            if bits == 8 {
                encode(&(sum as i8))
            } else {
                encode(&sum)
            }
        }
        NumKind::Unsigned(bits) => {
            let (a, b): (u64, u64) = if bits == 8 {
                (
                    decode::<u8>(current, kind)?.into(),
                    decode::<u8>(delta, kind)?.into(),
                )
            } else {
                (decode(current, kind)?, decode(delta, kind)?)
            };
            let sum = a.checked_add(b).ok_or(ServerError::Overflow)?;
            if bits < 64 && sum >> bits != 0 {
                return Err(ServerError::Overflow);
            }
            if bits == 8 {
                encode(&(sum as u8))
            } else {
                encode(&sum)
            }
        }
        NumKind::F32 => encode(&(decode::<f32>(current, kind)? + decode::<f32>(delta, kind)?)),
        NumKind::F64 => encode(&(decode::<f64>(current, kind)? + decode::<f64>(delta, kind)?)),
    })
}

/// Whether `b` is a number of `kind`.
fn check(b: &[u8], kind: NumKind) -> Result<(), ServerError> {
    match kind {
        NumKind::Signed(8) => decode::<i8>(b, kind).map(drop),
        NumKind::Signed(_) => decode::<i64>(b, kind).map(drop),
        NumKind::Unsigned(8) => decode::<u8>(b, kind).map(drop),
        NumKind::Unsigned(_) => decode::<u64>(b, kind).map(drop),
        NumKind::F32 => decode::<f32>(b, kind).map(drop),
        NumKind::F64 => decode::<f64>(b, kind).map(drop),
    }
}
