//! The sender-side check for values that are only `Serialize` (`Connection::send`): a
//! serializer that writes nothing and notes whether a struct skipped a field
//! (`#[serde(skip_serializing_if)]`), the one postcard-breaking feature visible while
//! serializing.

#[cfg(debug_assertions)]
use serde::ser;
use serde::ser::Serialize;

use crate::PickleError;

/// In debug builds, walk `value` with a serializer that writes nothing and fail with
/// [`PickleError::WontRoundTrip`] if a struct skips a field (`#[serde(skip_serializing_if)]`
/// that fired): postcard would write the struct without it and the receiver would read the
/// next bytes as that field. Release builds do nothing. For values that are also
/// `DeserializeOwned`, [`check_round_trip`](crate::check_round_trip) catches more (untagged
/// and internally tagged enums, `flatten`).
///
/// ```
/// use serde::Serialize;
/// #[derive(Serialize)]
/// struct Msg {
///     id: u32,
///     #[serde(skip_serializing_if = "Option::is_none")]
///     note: Option<String>,
/// }
/// let check = multiproc::pickle::check_shape(&Msg { id: 1, note: None });
/// assert_eq!(check.is_err(), cfg!(debug_assertions));
/// assert!(multiproc::pickle::check_shape(&Msg { id: 1, note: Some("x".into()) }).is_ok());
/// ```
#[inline(always)]
pub fn check_shape<T: Serialize + ?Sized>(value: &T) -> Result<(), PickleError> {
    #[cfg(debug_assertions)]
    check_shape_debug(value)?;
    #[cfg(not(debug_assertions))]
    let _ = value;
    Ok(())
}

#[cfg(debug_assertions)]
#[inline(never)]
fn check_shape_debug<T: Serialize + ?Sized>(value: &T) -> Result<(), PickleError> {
    let _checking = crate::checking::Checking::enter();
    match value.serialize(Probe) {
        Ok(()) => Ok(()),
        Err(Found::Skipped { strukt, field }) => Err(PickleError::WontRoundTrip {
            type_name: std::any::type_name::<T>(),
            reason: format!("struct {strukt} skipped its field {field:?} when serializing"),
            hint: "#[serde(skip_serializing_if = \"...\")] or #[serde(skip_serializing)] on a \
                   field that is still deserialized; remove it (an Option field costs one byte \
                   when None)",
        }),
        // the value's own Serialize failed: encoding will say so itself
        Err(Found::Custom) => Ok(()),
    }
}

#[cfg(debug_assertions)]
/// Why the probe stopped.
#[derive(Debug)]
enum Found {
    /// A struct skipped a field.
    Skipped {
        strukt: &'static str,
        field: &'static str,
    },
    /// The value's Serialize reported an error of its own.
    Custom,
}

#[cfg(debug_assertions)]
impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[cfg(debug_assertions)]
impl std::error::Error for Found {}

#[cfg(debug_assertions)]
impl ser::Error for Found {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Found::Custom
    }
}

#[cfg(debug_assertions)]
/// A serializer that writes nothing.
struct Probe;

#[cfg(debug_assertions)]
/// A struct being probed: its name, for the error.
struct StructProbe(&'static str);

#[cfg(debug_assertions)]
macro_rules! nothing {
    ($($f:ident($t:ty)),* $(,)?) => {
        $(fn $f(self, _: $t) -> Result<(), Found> { Ok(()) })*
    };
}

#[cfg(debug_assertions)]
impl ser::Serializer for Probe {
    type Ok = ();
    type Error = Found;
    type SerializeSeq = Probe;
    type SerializeTuple = Probe;
    type SerializeTupleStruct = Probe;
    type SerializeTupleVariant = Probe;
    type SerializeMap = Probe;
    type SerializeStruct = StructProbe;
    type SerializeStructVariant = StructProbe;

    nothing!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_none(self) -> Result<(), Found> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Found> {
        v.serialize(Probe)
    }
    fn serialize_unit(self) -> Result<(), Found> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Found> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Found> {
        v.serialize(Probe)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        v: &T,
    ) -> Result<(), Found> {
        v.serialize(Probe)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Probe, Found> {
        Ok(Probe)
    }
    fn serialize_tuple(self, _: usize) -> Result<Probe, Found> {
        Ok(Probe)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Probe, Found> {
        Ok(Probe)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Probe, Found> {
        Ok(Probe)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Probe, Found> {
        Ok(Probe)
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<StructProbe, Found> {
        Ok(StructProbe(name))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<StructProbe, Found> {
        Ok(StructProbe(variant))
    }
    fn is_human_readable(&self) -> bool {
        false // as postcard
    }
}

#[cfg(debug_assertions)]
macro_rules! elements {
    ($($tr:ident :: $f:ident),* $(,)?) => {
        $(impl ser::$tr for Probe {
            type Ok = ();
            type Error = Found;
            fn $f<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Found> {
                v.serialize(Probe)
            }
            fn end(self) -> Result<(), Found> {
                Ok(())
            }
        })*
    };
}

#[cfg(debug_assertions)]
elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

#[cfg(debug_assertions)]
impl ser::SerializeMap for Probe {
    type Ok = ();
    type Error = Found;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Found> {
        k.serialize(Probe)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Found> {
        v.serialize(Probe)
    }
    fn end(self) -> Result<(), Found> {
        Ok(())
    }
}

#[cfg(debug_assertions)]
macro_rules! struct_probe {
    ($($tr:ident),*) => {
        $(impl ser::$tr for StructProbe {
            type Ok = ();
            type Error = Found;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                v: &T,
            ) -> Result<(), Found> {
                v.serialize(Probe)
            }
            fn skip_field(&mut self, field: &'static str) -> Result<(), Found> {
                Err(Found::Skipped { strukt: self.0, field })
            }
            fn end(self) -> Result<(), Found> {
                Ok(())
            }
        })*
    };
}

#[cfg(debug_assertions)]
struct_probe!(SerializeStruct, SerializeStructVariant);

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Inner {
        a: u8,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        list: Vec<u8>,
    }

    #[derive(Serialize)]
    enum Outer {
        Wrap { inner: Vec<Inner> },
    }

    #[test]
    fn a_skipped_field_deep_inside_is_found() {
        let ok = Outer::Wrap {
            inner: vec![Inner {
                a: 1,
                list: vec![1],
            }],
        };
        check_shape(&ok).unwrap();
        let bad = Outer::Wrap {
            inner: vec![
                Inner {
                    a: 1,
                    list: vec![1],
                },
                Inner { a: 2, list: vec![] },
            ],
        };
        let e = check_shape(&bad).unwrap_err();
        assert!(
            matches!(&e, PickleError::WontRoundTrip { reason, .. } if reason.contains("Inner") && reason.contains("list")),
            "{e}"
        );
        // what has no struct at all passes
        check_shape(&(
            1u8,
            "x",
            vec![Some(2.5f32)],
            std::collections::BTreeMap::<u8, u8>::new(),
        ))
        .unwrap();
    }
}
