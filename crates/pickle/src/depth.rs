//! A nesting budget around any serde `Deserializer`, so a peer's bytes cannot recurse deeper
//! than we allow.
//!
//! postcard decodes recursively and has no depth limit of its own: a few bytes per level of a
//! recursive type (`enum Tree { Leaf, Node(Box<Tree>) }`) are enough to overflow the stack and
//! abort the process. [`Limited`] wraps the deserializer and every visitor, access object and
//! seed it hands out, and spends one unit of the budget each time a value opens a level whose
//! size the type does not fix: a sequence, a map, an enum, an `Option`'s `Some`. Those are the
//! only ways a recursive type can end (a struct, tuple or newtype struct that contains itself
//! only through other structs has no finite value), so they bound the recursion; structs and
//! tuples cost nothing, which keeps the budget off the per-field path (a `Vec` of tuples pays
//! once, not per element). When the budget is spent, decoding stops with a serde error and the
//! shared `tripped` flag is set, which the codec turns into `PickleError::TooDeep`.
//!
//! The budget travels by value: each nested deserializer gets what is left for its own level,
//! so leaving a level needs no bookkeeping, and the wrappers add no allocation and no shared
//! state besides the flag (written only when the limit is hit).

use std::cell::Cell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// What is left of the nesting budget, and where to say that it ran out.
#[derive(Clone, Copy)]
pub(crate) struct Budget<'t> {
    left: usize,
    tripped: &'t Cell<bool>,
}

impl<'t> Budget<'t> {
    pub(crate) fn new(max_depth: usize, tripped: &'t Cell<bool>) -> Self {
        Budget {
            left: max_depth,
            tripped,
        }
    }

    /// The budget of a level nested inside this one, or an error if there is none left.
    #[inline]
    fn enter<E: de::Error>(self) -> Result<Budget<'t>, E> {
        if self.left == 0 {
            self.tripped.set(true);
            return Err(E::custom("values nested deeper than the decoding limit"));
        }
        Ok(Budget {
            left: self.left - 1,
            tripped: self.tripped,
        })
    }
}

/// A deserializer that spends a [`Budget`] on every nested level.
pub(crate) struct Limited<'t, D> {
    pub(crate) de: D,
    pub(crate) budget: Budget<'t>,
}

macro_rules! forward_deserialize {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.de.$method(Wrap::<V, true> { visitor, budget: self.budget })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Limited<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any deserialize_bool
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_option deserialize_unit
        deserialize_seq deserialize_map deserialize_identifier deserialize_ignored_any
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let budget = self.budget;
        self.de
            .deserialize_unit_struct(name, Wrap::<V, false> { visitor, budget })
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let budget = self.budget;
        self.de
            .deserialize_newtype_struct(name, Wrap::<V, false> { visitor, budget })
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let budget = self.budget;
        self.de
            .deserialize_tuple(len, Wrap::<V, false> { visitor, budget })
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let budget = self.budget;
        self.de
            .deserialize_tuple_struct(name, len, Wrap::<V, false> { visitor, budget })
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let budget = self.budget;
        self.de
            .deserialize_struct(name, fields, Wrap::<V, false> { visitor, budget })
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let budget = self.budget;
        self.de
            .deserialize_enum(name, variants, Wrap::<V, true> { visitor, budget })
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// A visitor whose nested values are decoded through [`Limited`]; with `COUNT`, a nested
/// level it opens spends one unit of the budget.
struct Wrap<'t, V, const COUNT: bool> {
    visitor: V,
    budget: Budget<'t>,
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty))*) => {$(
        #[inline]
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.visitor.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>, const COUNT: bool> Visitor<'de> for Wrap<'_, V, COUNT> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    forward_visit! {
        visit_bool(bool)
        visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64) visit_i128(i128)
        visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64) visit_u128(u128)
        visit_f32(f32) visit_f64(f64) visit_char(char)
        visit_str(&str) visit_borrowed_str(&'de str) visit_string(String)
        visit_bytes(&[u8]) visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visitor.visit_none()
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visitor.visit_unit()
    }

    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        let budget = self.nested()?;
        self.visitor.visit_some(Limited { de, budget })
    }

    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        let budget = self.nested()?;
        self.visitor.visit_newtype_struct(Limited { de, budget })
    }

    #[inline]
    fn visit_seq<A: SeqAccess<'de>>(self, access: A) -> Result<Self::Value, A::Error> {
        let budget = self.nested()?;
        self.visitor.visit_seq(Access { access, budget })
    }

    #[inline]
    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Self::Value, A::Error> {
        let budget = self.nested()?;
        self.visitor.visit_map(Access { access, budget })
    }

    #[inline]
    fn visit_enum<A: EnumAccess<'de>>(self, access: A) -> Result<Self::Value, A::Error> {
        let budget = self.nested()?;
        self.visitor.visit_enum(Access { access, budget })
    }
}

impl<'t, V, const COUNT: bool> Wrap<'t, V, COUNT> {
    /// The budget of a level this visitor opens.
    #[inline]
    fn nested<E: de::Error>(&self) -> Result<Budget<'t>, E> {
        if COUNT {
            self.budget.enter()
        } else {
            Ok(self.budget)
        }
    }
}

/// A seed whose value is decoded through [`Limited`].
struct Seed<'t, S> {
    seed: S,
    budget: Budget<'t>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Limited {
            de,
            budget: self.budget,
        })
    }
}

/// A sequence, map, enum or variant access whose elements are decoded through [`Limited`].
struct Access<'t, A> {
    access: A,
    budget: Budget<'t>,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let budget = self.budget;
        self.access.next_element_seed(Seed { seed, budget })
    }

    fn size_hint(&self) -> Option<usize> {
        self.access.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let budget = self.budget;
        self.access.next_key_seed(Seed { seed, budget })
    }

    #[inline]
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let budget = self.budget;
        self.access.next_value_seed(Seed { seed, budget })
    }

    fn size_hint(&self) -> Option<usize> {
        self.access.size_hint()
    }
}

impl<'de, 't, A: EnumAccess<'de>> EnumAccess<'de> for Access<'t, A> {
    type Error = A::Error;
    type Variant = Access<'t, A::Variant>;

    #[inline]
    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let budget = self.budget;
        let (value, access) = self.access.variant_seed(Seed { seed, budget })?;
        Ok((value, Access { access, budget }))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    #[inline]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.access.unit_variant()
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let budget = self.budget;
        self.access.newtype_variant_seed(Seed { seed, budget })
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let budget = self.budget;
        self.access
            .tuple_variant(len, Wrap::<V, false> { visitor, budget })
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let budget = self.budget;
        self.access
            .struct_variant(fields, Wrap::<V, false> { visitor, budget })
    }
}
