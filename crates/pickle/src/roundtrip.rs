//! The sender-side check that a message can be decoded again: postcard is not self-describing,
//! so some serde features encode fine and only fail (or decode into something else) in the
//! receiving process. Debug builds catch them where the value is sent.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{encode, PickleError};

/// [`encode`], then (in debug builds) [`check_round_trip`]: what `Queue::put` and the pool's
/// calls use for values the receiver decodes as the same type.
///
/// ```
/// let bytes = multiproc::pickle::encode_checked(&(1u8, "two".to_string())).unwrap();
/// assert_eq!(bytes, multiproc::pickle::encode(&(1u8, "two")).unwrap());
/// ```
#[inline]
pub fn encode_checked<T: Serialize + DeserializeOwned>(value: &T) -> Result<Vec<u8>, PickleError> {
    let bytes = encode(value)?;
    check_round_trip::<T>(&bytes)?;
    Ok(bytes)
}

#[cfg(debug_assertions)]
/// The likely cause of a postcard decoding error, in terms of serde attributes.
fn hint_for(e: &postcard::Error) -> &'static str {
    match e {
        postcard::Error::WontImplement => {
            "the type needs a self-describing format (deserialize_any or deserialize_identifier): \
             #[serde(untagged)], #[serde(tag = \"...\")] (internally tagged), #[serde(flatten)], \
             or a field such as serde_json::Value; use externally tagged enums and plain fields"
        }
        postcard::Error::DeserializeUnexpectedEnd => {
            "fewer fields were written than are read: #[serde(skip_serializing_if = \"...\")] or \
             #[serde(skip_serializing)] on a field that is still deserialized; remove it (an \
             Option field costs one byte when None)"
        }
        _ => {
            "the Serialize and Deserialize of the type disagree: #[serde(skip_serializing_if)], \
             #[serde(skip_serializing)]/#[serde(skip_deserializing)] on one side only, or a \
             hand-written impl that writes something else than it reads"
        }
    }
}

/// In debug builds, decode `encoded` (just written by [`encode`](crate::encode) from a `T`)
/// back into a `T`, so a message the receiver could not read fails here, at the sender, with
/// [`PickleError::WontRoundTrip`] naming the likely serde attribute. In release builds it does
/// nothing and costs nothing (an empty inline function).
///
/// `Queue::put` and the arguments of `Pool::map` and friends call it (through
/// [`encode_checked`]); see the crate docs, "What a message type may use".
///
/// ```
/// use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// #[serde(untagged)]
/// enum Msg { Num(u32), Text(String) }
///
/// let bytes = multiproc::pickle::encode(&Msg::Num(1)).unwrap(); // encoding works...
/// let check = multiproc::pickle::check_round_trip::<Msg>(&bytes);
/// if cfg!(debug_assertions) { // ...and in debug builds the sender learns it cannot decode
///     assert!(matches!(check, Err(multiproc::pickle::PickleError::WontRoundTrip { .. })));
/// } else {
///     assert!(check.is_ok());
/// }
/// ```
#[inline(always)]
pub fn check_round_trip<T: DeserializeOwned>(encoded: &[u8]) -> Result<(), PickleError> {
    #[cfg(debug_assertions)]
    check_round_trip_debug::<T>(encoded)?;
    #[cfg(not(debug_assertions))]
    let _ = encoded;
    Ok(())
}

#[cfg(debug_assertions)]
#[inline(never)]
fn check_round_trip_debug<T: DeserializeOwned>(encoded: &[u8]) -> Result<(), PickleError> {
    let fail = |reason: String, hint: &'static str| PickleError::WontRoundTrip {
        type_name: std::any::type_name::<T>(),
        reason,
        hint,
    };
    let _checking = crate::checking::Checking::enter();
    match postcard::take_from_bytes::<T>(encoded) {
        Ok((_, [])) => Ok(()),
        Ok((_, rest)) => Err(fail(
            format!("{} bytes were written that are never read", rest.len()),
            "a field is written but not read: #[serde(skip_deserializing)] on one side only, \
             or a hand-written impl that writes more than it reads",
        )),
        Err(e) => Err(fail(e.to_string(), hint_for(&e))),
    }
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Untagged {
        A(u32),
        B(String),
    }

    #[derive(Serialize, Deserialize)]
    #[serde(tag = "kind")]
    enum Internal {
        A { x: u32 },
    }

    #[derive(Serialize, Deserialize)]
    struct Skipping {
        a: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        b: Option<u32>,
    }

    #[derive(Serialize, Deserialize)]
    struct Fine {
        a: u32,
        b: Option<u32>,
        e: Plain,
    }

    #[derive(Serialize, Deserialize)]
    enum Plain {
        X,
        Y(String),
    }

    fn err_of<T: Serialize + DeserializeOwned>(v: &T) -> PickleError {
        check_round_trip::<T>(&encode(v).unwrap()).unwrap_err()
    }

    #[test]
    fn features_postcard_cannot_decode_are_caught_at_the_sender() {
        let e = err_of(&Untagged::B("x".into()));
        assert!(matches!(&e, PickleError::WontRoundTrip { hint, .. } if hint.contains("untagged")));
        assert!(e.to_string().contains("Untagged"), "{e}");
        let e = err_of(&Untagged::A(1));
        assert!(matches!(e, PickleError::WontRoundTrip { .. }));
        let e = err_of(&Internal::A { x: 1 });
        assert!(matches!(&e, PickleError::WontRoundTrip { hint, .. } if hint.contains("tag")));
        let e = err_of(&Skipping { a: 1, b: None });
        assert!(
            matches!(&e, PickleError::WontRoundTrip { hint, .. } if hint.contains("skip_serializing_if")),
            "{e}"
        );
    }

    #[test]
    fn plain_types_pass() {
        let v = Fine {
            a: 1,
            b: None,
            e: Plain::Y("y".into()),
        };
        check_round_trip::<Fine>(&encode(&v).unwrap()).unwrap();
        check_round_trip::<Fine>(
            &encode(&Fine {
                a: 2,
                b: Some(3),
                e: Plain::X,
            })
            .unwrap(),
        )
        .unwrap();
        let m: std::collections::HashMap<String, Vec<u8>> =
            (0..50).map(|i| (i.to_string(), vec![i as u8; 3])).collect();
        check_round_trip::<std::collections::HashMap<String, Vec<u8>>>(&encode(&m).unwrap())
            .unwrap();
    }
}
