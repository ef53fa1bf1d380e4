//! The captured tables: their columns and keys as `information_schema`
//! describes them, and binlog row values turned into the same driver
//! values a `SELECT` returns, so one row decoder (the polling source's
//! serde `Deserializer`) serves the snapshot and the binlog.

use super::super::schema::{ColumnClass, ColumnInfo};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_async::Value;
use serde::{Deserialize, Serialize};

/// One column as `information_schema.columns` has it.
#[derive(Debug, Clone)]
pub(crate) struct CdcColumn {
    /// Name and serde class (shared with the polling source).
    pub info: ColumnInfo,
    /// ENUM or SET values in declaration order (binlog rows hold an ENUM
    /// as its 1-based index and a SET as a bit mask).
    pub members: Option<(bool, Vec<String>)>,
}

/// A captured table.
#[derive(Debug, Clone)]
pub(crate) struct TableSchema {
    pub database: String,
    pub table: String,
    /// All columns, in ordinal order (the order of binlog row images).
    pub columns: Vec<CdcColumn>,
    /// Just the [`ColumnInfo`]s, for the row decoder.
    pub infos: Vec<ColumnInfo>,
    /// Indices of the primary key columns, in key order.
    pub key: Vec<usize>,
    /// Whether the first key column is an integer (chunks are ranges of it);
    /// otherwise the table is one chunk.
    pub integer_key: bool,
}

impl TableSchema {
    /// `database.table`, the name states and ownership use.
    pub(crate) fn id(&self) -> String {
        table_id(&self.database, &self.table)
    }

    /// Builds the schema from `(name, DATA_TYPE, COLUMN_TYPE)` rows in
    /// ordinal order and the primary key column names in key order.
    pub(crate) fn new(database: &str, table: &str, cols: &[(String, String, String)], key: &[String]) -> Self {
        let columns: Vec<CdcColumn> = cols
            .iter()
            .map(|(name, data_type, column_type)| CdcColumn {
                info: ColumnInfo::new(name, data_type, column_type),
                members: members(data_type, column_type),
            })
            .collect();
        let key: Vec<usize> =
            key.iter().filter_map(|k| columns.iter().position(|c| c.info.name.eq_ignore_ascii_case(k))).collect();
        let integer_key = key
            .first()
            .and_then(|&i| columns.get(i))
            .is_some_and(|c| matches!(c.info.class, ColumnClass::Signed | ColumnClass::Unsigned));
        let infos = columns.iter().map(|c| c.info.clone()).collect();
        TableSchema { database: database.into(), table: table.into(), columns, infos, key, integer_key }
    }

    /// The key of a row (values in ordinal order).
    pub(crate) fn key_of(&self, row: &[Value]) -> RowKey {
        RowKey(self.key.iter().map(|&i| KeyPart::of(row.get(i).unwrap_or(&Value::NULL))).collect())
    }

    /// The integer the chunks of this table are ranges of, for a key.
    pub(crate) fn chunk_value(&self, key: &RowKey) -> Option<i128> {
        match key.0.first() {
            Some(KeyPart::Int(i)) if self.integer_key => Some(*i),
            _ => None,
        }
    }
}

/// `database.table`.
pub(crate) fn table_id(database: &str, table: &str) -> String {
    format!("{database}.{table}")
}

/// The values of an ENUM or SET column type, e.g. `enum('a','b''c')`.
fn members(data_type: &str, column_type: &str) -> Option<(bool, Vec<String>)> {
    let is_set = match data_type.to_ascii_lowercase().as_str() {
        "enum" => false,
        "set" => true,
        _ => return None,
    };
    let open = column_type.find('(')?;
    let inner = column_type.get(open + 1..column_type.rfind(')')?)?;
    let mut values = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => break,
                Some('\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                    value.push('\'');
                }
                Some('\'') => break,
                Some('\\') => {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                }
                Some(other) => value.push(other),
            }
        }
        values.push(value);
    }
    Some((is_set, values))
}

/// One part of a primary key, comparable between a `SELECT` and a binlog row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum KeyPart {
    Null,
    Int(i128),
    Bytes(Vec<u8>),
    Other(String),
}

impl KeyPart {
    fn of(value: &Value) -> KeyPart {
        match value {
            Value::NULL => KeyPart::Null,
            Value::Int(i) => KeyPart::Int(i128::from(*i)),
            Value::UInt(u) => KeyPart::Int(i128::from(*u)),
            Value::Bytes(b) => KeyPart::Bytes(b.clone()),
            other => KeyPart::Other(other.as_sql(true)),
        }
    }
}

/// A row's primary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RowKey(pub Vec<KeyPart>);

/// Days since 1970-01-01 to a civil date (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A TIMESTAMP from the binlog (`seconds[.micros]` since the epoch) as the
/// UTC date and time a `SELECT` in a `+00:00` session returns.
fn timestamp(text: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(text).ok()?;
    let (secs, micros) = match text.split_once('.') {
        Some((s, f)) => (s.parse::<i64>().ok()?, format!("{f:0<6}").get(..6)?.parse::<u32>().ok()?),
        None => (text.parse::<i64>().ok()?, 0),
    };
    if secs == 0 && micros == 0 {
        // The zero TIMESTAMP.
        return Some(Value::Date(0, 0, 0, 0, 0, 0, 0));
    }
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    Some(Value::Date(
        u16::try_from(y).ok()?,
        m as u8,
        d as u8,
        (rem / 3600) as u8,
        (rem % 3600 / 60) as u8,
        (rem % 60) as u8,
        micros,
    ))
}

/// An integer the binlog decoded as signed although the column is
/// UNSIGNED (the server logged no signedness metadata).
fn unsigned(i: i64, column_type: ColumnType) -> Value {
    if i >= 0 {
        return Value::UInt(i as u64);
    }
    let bits = match column_type {
        ColumnType::MYSQL_TYPE_TINY => 8,
        ColumnType::MYSQL_TYPE_SHORT => 16,
        ColumnType::MYSQL_TYPE_INT24 => 24,
        ColumnType::MYSQL_TYPE_LONG => 32,
        _ => 64,
    };
    if bits == 64 {
        Value::UInt(i as u64)
    } else {
        Value::UInt((i as u64) & ((1u64 << bits) - 1))
    }
}

/// Why a binlog value could not be converted.
pub(crate) type Problem = String;

/// A binlog row image as driver values in ordinal order.
pub(crate) fn binlog_row(schema: &TableSchema, row: BinlogRow) -> Result<Vec<Value>, Problem> {
    let types: Vec<ColumnType> = row.columns_ref().iter().map(|c| c.column_type()).collect();
    let mut out = Vec::with_capacity(row.len());
    let mut row = row;
    for (i, &column_type) in types.iter().enumerate() {
        let value = match row.take(i) {
            None => Value::NULL,
            Some(BinlogValue::Value(v)) => v,
            Some(BinlogValue::Jsonb(j)) => {
                let json = serde_json::Value::try_from(j).map_err(|e| format!("a JSON value cannot be read: {e}"))?;
                Value::Bytes(json.to_string().into_bytes())
            }
            Some(BinlogValue::JsonDiff(_)) => {
                return Err("a partial JSON update (binlog_row_value_options=PARTIAL_JSON); \
                            set binlog_row_value_options='' on the server"
                    .into())
            }
        };
        let Some(column) = schema.columns.get(i) else {
            out.push(value);
            continue;
        };
        let value = match (&column.members, column.info.class, value) {
            (_, _, Value::NULL) => Value::NULL,
            (Some((false, names)), _, Value::Int(index)) => match usize::try_from(index) {
                Ok(0) => Value::Bytes(Vec::new()),
                Ok(n) => match names.get(n - 1) {
                    Some(name) => Value::Bytes(name.clone().into_bytes()),
                    None => return Err(format!("ENUM index {n} of column `{}` is out of range", column.info.name)),
                },
                Err(_) => return Err(format!("ENUM index {index} of column `{}`", column.info.name)),
            },
            (Some((true, names)), _, Value::Bytes(mask)) => {
                // Little-endian bit mask of the members.
                let chosen: Vec<&str> = names
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| mask.get(bit / 8).is_some_and(|byte| byte & (1 << (bit % 8)) != 0))
                    .map(|(_, n)| n.as_str())
                    .collect();
                Value::Bytes(chosen.join(",").into_bytes())
            }
            (_, ColumnClass::Unsigned, Value::Int(n)) => unsigned(n, column_type),
            (_, ColumnClass::DateTime, Value::Bytes(b)) if column.info.mysql_type == "TIMESTAMP" => {
                timestamp(&b).ok_or_else(|| format!("TIMESTAMP value of column `{}` is malformed", column.info.name))?
            }
            (_, ColumnClass::DateTime, Value::Int(secs)) if column.info.mysql_type == "TIMESTAMP" => {
                timestamp(secs.to_string().as_bytes())
                    .ok_or_else(|| format!("TIMESTAMP value of column `{}` is malformed", column.info.name))?
            }
            (_, _, v) => v,
        };
        out.push(value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn reads_enum_and_set_members() {
        assert_eq!(members("enum", "enum('a','b''c')"), Some((false, vec!["a".into(), "b'c".into()])));
        assert_eq!(members("set", "set('x','y')"), Some((true, vec!["x".into(), "y".into()])));
        assert_eq!(members("int", "int(11)"), None);
    }

    #[test]
    fn converts_binlog_timestamps_and_unsigned_ints() {
        assert_eq!(timestamp(b"0"), Some(Value::Date(0, 0, 0, 0, 0, 0, 0)));
        assert_eq!(timestamp(b"951782400"), Some(Value::Date(2000, 2, 29, 0, 0, 0, 0)));
        assert_eq!(timestamp(b"1709211909.00012"), Some(Value::Date(2024, 2, 29, 13, 5, 9, 120)));
        assert_eq!(unsigned(-1, ColumnType::MYSQL_TYPE_TINY), Value::UInt(255));
        assert_eq!(unsigned(-1, ColumnType::MYSQL_TYPE_LONGLONG), Value::UInt(u64::MAX));
        assert_eq!(unsigned(5, ColumnType::MYSQL_TYPE_LONG), Value::UInt(5));
    }

    #[test]
    fn keys_and_chunk_values() {
        let cols = [
            ("name".to_string(), "varchar".to_string(), "varchar(10)".to_string()),
            ("id".to_string(), "bigint".to_string(), "bigint(20) unsigned".to_string()),
        ];
        let t = TableSchema::new("db", "t", &cols, &["ID".to_string()]);
        assert_eq!(t.key, [1]);
        assert!(t.integer_key);
        let a = t.key_of(&[Value::Bytes(b"x".to_vec()), Value::UInt(7)]);
        let b = t.key_of(&[Value::Bytes(b"y".to_vec()), Value::Int(7)]);
        assert_eq!(a, b);
        assert_eq!(t.chunk_value(&a), Some(7));
        let s = TableSchema::new("db", "t", &cols, &["name".to_string()]);
        assert!(!s.integer_key);
        assert_eq!(s.chunk_value(&s.key_of(&[Value::Bytes(b"x".to_vec()), Value::NULL])), None);
    }
}
