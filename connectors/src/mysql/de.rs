//! Cells to serde values: a serde `Deserializer` over one MySQL value, and
//! the error of reading rows into records (see [`super::row`] for rows).
//!
//! How each MySQL type maps onto serde is in the `mysql` module docs.

use super::schema::{ColumnClass, ColumnInfo};
use mysql_async::Value;
use serde::de::value::{SeqDeserializer, StrDeserializer};
use serde::de::{self, IntoDeserializer, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Why a row (or a column of it) does not make the record type.
#[derive(Debug)]
pub(crate) enum DeError {
    /// The column's type cannot make the field's type.
    Incompatible {
        column: String,
        mysql_type: String,
        wanted: &'static str,
        hint: &'static str,
        /// Set when the column's type is not supported at all.
        reason: Option<&'static str>,
    },
    /// NULL into a field that is not an `Option`.
    Null { column: String },
    /// A field of the record type has no column.
    MissingField(&'static str),
    /// A value did not fit (range, UTF-8, a type's own check).
    Column { column: String, message: String },
    /// Any other serde error.
    Custom(String),
}

impl DeError {
    /// Puts a serde error of a cell in the context of its column.
    pub(crate) fn at(self, column: &str) -> Self {
        match self {
            DeError::Custom(message) => DeError::Column { column: column.into(), message },
            other => other,
        }
    }

    /// Whether a probe that failed this way proves real rows fail too.
    pub(crate) fn is_definite(&self) -> bool {
        matches!(self, DeError::Incompatible { .. } | DeError::MissingField(_))
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeError::Incompatible { column, mysql_type, wanted, hint, reason } => {
                write!(f, "column `{column}` has MySQL type {mysql_type} and cannot be read into a {wanted} field")?;
                match reason {
                    Some(r) => write!(f, " ({r})"),
                    None => f.write_str(hint),
                }
            }
            DeError::Null { column } => {
                write!(f, "column `{column}` is NULL but its field is not an Option; make the field an Option")
            }
            DeError::MissingField(field) => write!(
                f,
                "field `{field}` has no column of that name among the selected columns; add the \
                 column, make the field an Option or #[serde(default)], or rename it with \
                 #[serde(rename = \"column\")]"
            ),
            DeError::Column { column, message } => write!(f, "column `{column}`: {message}"),
            DeError::Custom(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        DeError::Custom(msg.to_string())
    }
    fn missing_field(field: &'static str) -> Self {
        DeError::MissingField(field)
    }
}

/// A cell's value, normalised from the driver's `Value` by its column class.
enum Scalar<'a> {
    Null,
    I64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
    Str(Cow<'a, str>),
    Bytes(&'a [u8]),
}

fn micros(us: u32) -> String {
    if us == 0 {
        String::new()
    } else {
        format!(".{us:06}")
    }
}

/// One cell as a serde `Deserializer`.
pub(crate) struct ValueDe<'a> {
    pub col: &'a ColumnInfo,
    pub value: &'a Value,
    /// Reading a made-up value (any enum variant will do).
    pub probe: bool,
}

impl<'a> ValueDe<'a> {
    fn incompatible(&self, wanted: &'static str) -> DeError {
        use ColumnClass::*;
        let hint = match (self.col.class, wanted) {
            (Binary, "string") => " (binary columns map to Vec<u8>)",
            (Signed | Unsigned | Float | Bit, "string") => " (numeric columns map to integer or float fields)",
            (Text, _) => " (text columns map to String)",
            (Date | DateTime | Time, _) => " (temporal columns map to String in ISO 8601 form)",
            (Decimal, "integer") => " (DECIMAL with a fraction maps to String or f64)",
            (Decimal, _) => " (DECIMAL maps to String or f64)",
            (Float, _) => " (FLOAT and DOUBLE map to f32 or f64)",
            _ => "",
        };
        DeError::Incompatible {
            column: self.col.name.clone(),
            mysql_type: self.col.mysql_type.clone(),
            wanted,
            hint,
            reason: match self.col.class {
                Unsupported(r) => Some(r),
                _ => None,
            },
        }
    }

    fn column_error(&self, message: impl Into<String>) -> DeError {
        DeError::Column { column: self.col.name.clone(), message: message.into() }
    }

    fn scalar(&self, wanted: &'static str) -> Result<Scalar<'a>, DeError> {
        use ColumnClass as C;
        let class = self.col.class;
        Ok(match (class, self.value) {
            (_, Value::NULL) => Scalar::Null,
            (C::Unsupported(_), _) => return Err(self.incompatible(wanted)),
            (_, Value::Int(i)) => Scalar::I64(*i),
            (_, Value::UInt(u)) => Scalar::U64(*u),
            (_, Value::Float(x)) => Scalar::F32(*x),
            (_, Value::Double(x)) => Scalar::F64(*x),
            (C::Bit, Value::Bytes(b)) if b.len() <= 8 => {
                Scalar::U64(b.iter().fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte)))
            }
            (C::Bit, Value::Bytes(_)) => return Err(self.column_error("BIT wider than 64 bits")),
            (C::Binary, Value::Bytes(b)) => Scalar::Bytes(b),
            (_, Value::Bytes(b)) => {
                let s =
                    std::str::from_utf8(b).map_err(|_| self.column_error("holds bytes that are not valid UTF-8"))?;
                match class {
                    C::Signed | C::Unsigned => match (s.parse::<i64>(), s.parse::<u64>()) {
                        (Ok(i), _) => Scalar::I64(i),
                        (_, Ok(u)) => Scalar::U64(u),
                        _ => return Err(self.column_error(format!("'{s}' is not an integer"))),
                    },
                    C::Float => {
                        Scalar::F64(s.parse().map_err(|_| self.column_error(format!("'{s}' is not a number")))?)
                    }
                    _ => Scalar::Str(Cow::Borrowed(s)),
                }
            }
            (C::Date, Value::Date(y, m, d, ..)) => Scalar::Str(Cow::Owned(format!("{y:04}-{m:02}-{d:02}"))),
            (_, Value::Date(y, m, d, h, mi, s, us)) => {
                Scalar::Str(Cow::Owned(format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}", micros(*us))))
            }
            (_, Value::Time(neg, days, h, m, s, us)) => Scalar::Str(Cow::Owned(format!(
                "{}{:02}:{m:02}:{s:02}{}",
                if *neg { "-" } else { "" },
                u64::from(*days) * 24 + u64::from(*h),
                micros(*us)
            ))),
        })
    }

    fn not_null(&self, wanted: &'static str) -> Result<Scalar<'a>, DeError> {
        match self.scalar(wanted)? {
            Scalar::Null => Err(DeError::Null { column: self.col.name.clone() }),
            s => Ok(s),
        }
    }

    fn integer<'de, V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.not_null("integer")? {
            Scalar::I64(i) => v.visit_i64(i),
            Scalar::U64(u) => v.visit_u64(u),
            Scalar::Str(s) if self.col.class == ColumnClass::Decimal => match (s.parse::<i64>(), s.parse::<u64>()) {
                (Ok(i), _) => v.visit_i64(i),
                (_, Ok(u)) => v.visit_u64(u),
                _ => Err(self.incompatible("integer")),
            },
            _ => Err(self.incompatible("integer")),
        }
    }

    fn float<'de, V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.not_null("float")? {
            Scalar::F32(x) => v.visit_f32(x),
            Scalar::F64(x) => v.visit_f64(x),
            Scalar::I64(i) if self.col.class != ColumnClass::Bit => v.visit_i64(i),
            Scalar::U64(u) if self.col.class != ColumnClass::Bit => v.visit_u64(u),
            Scalar::Str(s) if self.col.class == ColumnClass::Decimal => {
                let x: f64 = s.parse().map_err(|_| self.column_error(format!("'{s}' is not a number")))?;
                v.visit_f64(x)
            }
            _ => Err(self.incompatible("float")),
        }
    }

    fn string<'de, V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.not_null("string")? {
            Scalar::Str(s) => v.visit_str(&s),
            _ => Err(self.incompatible("string")),
        }
    }
}

macro_rules! forward {
    ($helper:ident: $($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            self.$helper(v)
        })*
    };
}

impl<'de> de::Deserializer<'de> for ValueDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.scalar("value")? {
            Scalar::Null => v.visit_none(),
            Scalar::I64(i) => v.visit_i64(i),
            Scalar::U64(u) => v.visit_u64(u),
            Scalar::F32(x) => v.visit_f32(x),
            Scalar::F64(x) => v.visit_f64(x),
            Scalar::Str(s) => v.visit_str(&s),
            Scalar::Bytes(b) => v.visit_bytes(b),
        }
    }

    forward!(integer: deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128);
    forward!(float: deserialize_f32 deserialize_f64);
    forward!(string: deserialize_char deserialize_str deserialize_string deserialize_identifier);

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.not_null("bool")? {
            Scalar::I64(i) => v.visit_bool(i != 0),
            Scalar::U64(u) => v.visit_bool(u != 0),
            _ => Err(self.incompatible("bool")),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.not_null("bytes")? {
            Scalar::Bytes(b) => v.visit_bytes(b),
            Scalar::Str(s) => v.visit_bytes(s.as_bytes()),
            _ => Err(self.incompatible("bytes")),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(v)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let bytes: Vec<u8> = match self.not_null("byte sequence")? {
            Scalar::Bytes(b) => b.to_vec(),
            Scalar::Str(s) => s.as_bytes().to_vec(),
            _ => return Err(self.incompatible("sequence")),
        };
        let mut seq = SeqDeserializer::<_, DeError>::new(bytes.into_iter());
        let out = v.visit_seq(&mut seq)?;
        seq.end()?;
        Ok(out)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::NULL => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::NULL => v.visit_unit(),
            _ => Err(self.incompatible("unit")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, v: V) -> Result<V::Value, DeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, v: V) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match self.not_null("enum")? {
            // A probe's text is made up: any variant will do.
            Scalar::Str(_) if self.probe && !variants.is_empty() => {
                let first: StrDeserializer<'_, DeError> = variants[0].into_deserializer();
                v.visit_enum(first)
            }
            Scalar::Str(s) => {
                let name: StrDeserializer<'_, DeError> = s.as_ref().into_deserializer();
                v.visit_enum(name)
            }
            _ => Err(self.incompatible("enum")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, _v: V) -> Result<V::Value, DeError> {
        Err(self.incompatible("tuple"))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        _v: V,
    ) -> Result<V::Value, DeError> {
        Err(self.incompatible("tuple struct"))
    }

    fn deserialize_map<V: Visitor<'de>>(self, _v: V) -> Result<V::Value, DeError> {
        Err(self.incompatible("map"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        _v: V,
    ) -> Result<V::Value, DeError> {
        Err(self.incompatible("nested struct"))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}
