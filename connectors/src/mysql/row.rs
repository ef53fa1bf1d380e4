//! Rows to records: a whole MySQL row as a serde `Deserializer`.
//!
//! A row is a map from column name to value (a struct's fields match
//! columns by name), or a sequence in select order (tuples), or, with one
//! column, that single value. The same code checks the record type at
//! `open`, on a made-up row built from the column types ([`probe`]).

use super::de::{DeError, ValueDe};
use super::schema::{ColumnClass, ColumnInfo};
use mysql_async::Value;
use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

/// A whole row as a serde `Deserializer`.
pub(crate) struct RowDe<'a> {
    columns: &'a [ColumnInfo],
    values: &'a [Value],
    probe: bool,
    fields: Option<&'a std::cell::Cell<Option<&'static [&'static str]>>>,
}

impl<'a> RowDe<'a> {
    /// A row of `values`, one per column of `columns`, in order.
    pub(crate) fn new(columns: &'a [ColumnInfo], values: &'a [Value]) -> Self {
        RowDe { columns, values, probe: false, fields: None }
    }

    fn single(&self) -> Result<ValueDe<'a>, DeError> {
        match (self.columns, self.values) {
            ([col], [value]) => Ok(ValueDe { col, value, probe: self.probe }),
            _ => Err(DeError::Custom(format!(
                "a record type of one value needs exactly one selected column \
                 (.columns([...])), but {} are selected",
                self.columns.len()
            ))),
        }
    }

    fn cells(&self) -> impl Iterator<Item = ValueDe<'a>> + 'a {
        let probe = self.probe;
        self.columns.iter().zip(self.values).map(move |(col, value)| ValueDe { col, value, probe })
    }
}

macro_rules! single {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            self.single()?.$method(v)
        })*
    };
}

impl<'de> de::Deserializer<'de> for RowDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_map(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_map(RowAccess { cells: self.cells(), current: None })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        if let Some(record) = self.fields {
            record.set(Some(fields));
        }
        self.deserialize_map(v)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let mut seq = RowAccess { cells: self.cells(), current: None };
        let out = v.visit_seq(&mut seq)?;
        match seq.cells.next() {
            None => Ok(out),
            Some(_) => Err(DeError::Custom(format!(
                "the record type takes fewer values than the {} selected columns",
                self.columns.len()
            ))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, v: V) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_some(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }

    single!(deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier);

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, v: V) -> Result<V::Value, DeError> {
        self.single()?.deserialize_unit_struct(name, v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.single()?.deserialize_enum(name, variants, v)
    }
}

/// Walks a row's cells, as a map (name → value) or a sequence.
struct RowAccess<'a, I> {
    cells: I,
    current: Option<ValueDe<'a>>,
}

impl<'de, 'a, I: Iterator<Item = ValueDe<'a>>> de::MapAccess<'de> for RowAccess<'a, I> {
    type Error = DeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        match self.cells.next() {
            None => Ok(None),
            Some(cell) => {
                let name: StrDeserializer<'_, DeError> = cell.col.name.as_str().into_deserializer();
                self.current = Some(cell);
                seed.deserialize(name).map(Some)
            }
        }
    }

    fn next_value_seed<S: de::DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        let cell =
            self.current.take().ok_or_else(|| DeError::Custom("a value was asked for before its column".into()))?;
        let column = cell.col;
        seed.deserialize(cell).map_err(|e| e.at(&column.name))
    }
}

impl<'de, 'a, I: Iterator<Item = ValueDe<'a>>> de::SeqAccess<'de> for RowAccess<'a, I> {
    type Error = DeError;

    fn next_element_seed<S: de::DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>, DeError> {
        match self.cells.next() {
            None => Ok(None),
            Some(cell) => {
                let column = cell.col;
                seed.deserialize(cell).map(Some).map_err(|e| e.at(&column.name))
            }
        }
    }
}

/// What reading `T` from a synthetic row of `columns` showed.
pub(crate) struct Probe {
    /// The struct's field names, if `T` is a struct.
    pub fields: Option<&'static [&'static str]>,
    /// Why it failed, if it did.
    pub error: Option<DeError>,
}

/// Reads `T` from a made-up row with a typical non-NULL value per column, to
/// find at `open` what real rows would fail on: a field without a column, a
/// column whose type cannot make its field. Other failures (a made-up value
/// a type rejects) prove nothing and are only reported.
pub(crate) fn probe<T: DeserializeOwned>(columns: &[ColumnInfo]) -> Probe {
    use ColumnClass as C;
    let values: Vec<Value> = columns
        .iter()
        .map(|c| match c.class {
            C::Signed => Value::Int(1),
            C::Unsigned => Value::UInt(1),
            C::Float => Value::Double(1.0),
            C::Decimal => Value::Bytes(b"1".to_vec()),
            C::Text | C::Binary | C::Unsupported(_) => Value::Bytes(b"a".to_vec()),
            C::Bit => Value::Bytes(vec![1]),
            C::Date => Value::Date(2000, 1, 1, 0, 0, 0, 0),
            C::DateTime => Value::Date(2000, 1, 1, 0, 0, 0, 0),
            C::Time => Value::Time(false, 0, 1, 0, 0, 0),
        })
        .collect();
    let fields = std::cell::Cell::new(None);
    let row = RowDe { columns, values: &values, probe: true, fields: Some(&fields) };
    let error = T::deserialize(row).err();
    Probe { fields: fields.get(), error }
}

#[cfg(test)]
#[path = "de_tests.rs"]
mod tests;
