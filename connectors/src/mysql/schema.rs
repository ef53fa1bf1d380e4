//! The table's columns as `information_schema.columns` describes them, and
//! the checks `open` makes with them: the tracking and split columns, which
//! columns to select, and whether the record type can be made from them.

use super::de::DeError;
use super::error::MySqlError;
use super::row::probe;
use serde::de::DeserializeOwned;

/// How the source reads a column, decided from its MySQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnClass {
    /// TINYINT .. BIGINT (signed), YEAR.
    Signed,
    /// TINYINT .. BIGINT UNSIGNED.
    Unsigned,
    /// FLOAT, DOUBLE.
    Float,
    /// DECIMAL / NUMERIC: exact, read as its decimal text.
    Decimal,
    /// CHAR, VARCHAR, TEXT types, ENUM, SET, JSON, UUID, INET4/6.
    Text,
    /// BINARY, VARBINARY, BLOB types.
    Binary,
    /// BIT(n), as an unsigned integer.
    Bit,
    /// DATE.
    Date,
    /// DATETIME, TIMESTAMP.
    DateTime,
    /// TIME (a duration, may be negative or above 24 hours).
    Time,
    /// Not readable; the reason.
    Unsupported(&'static str),
}

const SPATIAL: &str = "spatial types are not supported; select ST_AsText(column) in a view";
const UNKNOWN: &str = "this MySQL type is not supported";

/// The class of a column from `DATA_TYPE` and `COLUMN_TYPE`.
pub(crate) fn classify(data_type: &str, column_type: &str) -> ColumnClass {
    use ColumnClass::*;
    let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
    match data_type.to_ascii_lowercase().as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" if unsigned => Unsigned,
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => Signed,
        "float" | "double" | "real" | "double precision" => Float,
        "decimal" | "numeric" | "dec" | "fixed" => Decimal,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" | "json" | "uuid"
        | "inet4" | "inet6" => Text,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => Binary,
        "bit" => Bit,
        "date" => Date,
        "datetime" | "timestamp" => DateTime,
        "time" => Time,
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
        | "geometrycollection" | "geomcollection" => Unsupported(SPATIAL),
        _ => Unsupported(UNKNOWN),
    }
}

/// One column of the table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ColumnInfo {
    /// The column's name as the table declares it.
    pub name: String,
    /// How it is read.
    pub class: ColumnClass,
    /// Its type for messages, e.g. `BIGINT UNSIGNED`, `GEOMETRY`.
    pub mysql_type: String,
}

impl ColumnInfo {
    /// A column from an `information_schema.columns` row.
    pub(crate) fn new(name: &str, data_type: &str, column_type: &str) -> Self {
        let class = classify(data_type, column_type);
        let mut mysql_type = data_type.to_ascii_uppercase();
        if class == ColumnClass::Unsigned {
            mysql_type.push_str(" UNSIGNED");
        }
        ColumnInfo { name: name.to_string(), class, mysql_type }
    }
}

/// What kind of value the tracking column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrackingKind {
    /// A signed integer.
    Int,
    /// An unsigned integer.
    UInt,
    /// DATE, DATETIME or TIMESTAMP.
    Temporal,
}

/// What the options ask for, to check against the table.
#[derive(Debug)]
pub(crate) struct Wanted<'a> {
    pub database: &'a str,
    pub table: &'a str,
    pub user: &'a str,
    pub tracking: &'a str,
    pub split: Option<&'a str>,
    pub columns: Option<&'a [String]>,
    pub lag: bool,
    pub parallelism: u32,
}

/// The outcome of the checks: what to select and how to track.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The columns the records are made of, in select order.
    pub columns: Vec<ColumnInfo>,
    /// The tracking column.
    pub tracking: ColumnInfo,
    /// Its kind.
    pub kind: TrackingKind,
    /// The integer column rows are split by (parallelism > 1 only).
    pub split: Option<String>,
}

impl Wanted<'_> {
    fn find<'c>(&self, all: &'c [ColumnInfo], name: &str, role: &'static str) -> Result<&'c ColumnInfo, MySqlError> {
        all.iter().find(|c| c.name.eq_ignore_ascii_case(name)).ok_or_else(|| MySqlError::MissingColumn {
            database: self.database.into(),
            table: self.table.into(),
            column: name.into(),
            role,
            available: all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    /// Checks the table's columns against the options and the record type `T`.
    pub(crate) fn resolve<T: DeserializeOwned>(&self, all: Vec<ColumnInfo>) -> Result<Resolved, MySqlError> {
        if all.is_empty() {
            return Err(MySqlError::MissingTable {
                database: self.database.into(),
                table: self.table.into(),
                user: self.user.into(),
            });
        }
        let tracking = self.find(&all, self.tracking, "tracking column")?.clone();
        let kind = match tracking.class {
            ColumnClass::Signed => TrackingKind::Int,
            ColumnClass::Unsigned => TrackingKind::UInt,
            ColumnClass::Date | ColumnClass::DateTime => TrackingKind::Temporal,
            _ => {
                return Err(MySqlError::BadTrackingColumn {
                    table: self.table.into(),
                    column: tracking.name,
                    mysql_type: tracking.mysql_type,
                })
            }
        };
        if self.lag && kind != TrackingKind::Temporal {
            return Err(MySqlError::LagNeedsTemporal {
                table: self.table.into(),
                column: tracking.name,
                mysql_type: tracking.mysql_type,
            });
        }
        let split = if self.parallelism > 1 {
            let col = match self.split {
                Some(name) => self.find(&all, name, "split column")?,
                None => &tracking,
            };
            if !matches!(col.class, ColumnClass::Signed | ColumnClass::Unsigned) {
                return Err(MySqlError::BadSplitColumn {
                    table: self.table.into(),
                    column: col.name.clone(),
                    mysql_type: col.mysql_type.clone(),
                    parallelism: self.parallelism,
                });
            }
            Some(col.name.clone())
        } else {
            None
        };

        let candidates = match self.columns {
            Some(names) => {
                names.iter().map(|n| self.find(&all, n, "selected column").cloned()).collect::<Result<Vec<_>, _>>()?
            }
            None => all,
        };
        let probed = probe::<T>(&candidates);
        if let Some(e) = probed.error {
            if e.is_definite() {
                return Err(self.mismatch::<T>(&e));
            }
            tracing::debug!(
                "MySQL source: could not check {} against `{}` at open ({e}); rows will be checked as they are read",
                std::any::type_name::<T>(),
                self.table
            );
        }
        // A struct record needs only its fields' columns; other record types
        // (maps, tuples, single values) get every candidate column.
        let columns: Vec<ColumnInfo> = match (self.columns, probed.fields) {
            (None, Some(fields)) => candidates.into_iter().filter(|c| fields.contains(&c.name.as_str())).collect(),
            _ => candidates,
        };
        if let Some(c) = columns.iter().find(|c| matches!(c.class, ColumnClass::Unsupported(_))) {
            let reason = match c.class {
                ColumnClass::Unsupported(reason) => reason,
                _ => UNKNOWN,
            };
            return Err(MySqlError::UnsupportedColumn {
                table: self.table.into(),
                column: c.name.clone(),
                mysql_type: c.mysql_type.clone(),
                reason,
            });
        }
        Ok(Resolved { columns, tracking, kind, split })
    }

    fn mismatch<T>(&self, e: &DeError) -> MySqlError {
        if let DeError::Incompatible { column, mysql_type, reason: Some(reason), .. } = e {
            return MySqlError::UnsupportedColumn {
                table: self.table.into(),
                column: column.clone(),
                mysql_type: mysql_type.clone(),
                reason,
            };
        }
        MySqlError::RecordMismatch {
            database: self.database.into(),
            table: self.table.into(),
            record_type: std::any::type_name::<T>(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde::Deserialize;

    fn table() -> Vec<ColumnInfo> {
        vec![
            ColumnInfo::new("id", "bigint", "bigint(20) unsigned"),
            ColumnInfo::new("name", "varchar", "varchar(64)"),
            ColumnInfo::new("created", "datetime", "datetime(6)"),
            ColumnInfo::new("shape", "geometry", "geometry"),
            ColumnInfo::new("data", "blob", "blob"),
            ColumnInfo::new("price", "decimal", "decimal(10,2)"),
        ]
    }

    fn wanted(tracking: &str) -> Wanted<'_> {
        Wanted {
            database: "db",
            table: "t",
            user: "u",
            tracking,
            split: None,
            columns: None,
            lag: false,
            parallelism: 1,
        }
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Row {
        id: u64,
        name: String,
        price: f64,
        note: Option<String>,
    }

    #[test]
    fn classifies_types() {
        assert_eq!(classify("INT", "int(11) unsigned"), ColumnClass::Unsigned);
        assert_eq!(classify("year", "year(4)"), ColumnClass::Signed);
        assert_eq!(classify("longblob", "longblob"), ColumnClass::Binary);
        assert_eq!(classify("json", "longtext"), ColumnClass::Text);
        assert_eq!(classify("timestamp", "timestamp(3)"), ColumnClass::DateTime);
        assert!(matches!(classify("point", "point"), ColumnClass::Unsupported(_)));
        assert_eq!(ColumnInfo::new("a", "bigint", "bigint(20) unsigned").mysql_type, "BIGINT UNSIGNED");
    }

    #[test]
    fn selects_the_struct_fields_and_skips_unsupported_columns_it_does_not_need() {
        let r = wanted("id").resolve::<Row>(table()).unwrap();
        let names: Vec<_> = r.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "name", "price"]);
        assert_eq!(r.kind, TrackingKind::UInt);
        assert_eq!(r.split, None);
        let mut p3 = wanted("ID");
        p3.parallelism = 3;
        assert_eq!(p3.resolve::<Row>(table()).unwrap().split.as_deref(), Some("id"));
    }

    #[test]
    fn explains_what_does_not_fit() {
        let msg = |r: Result<Resolved, MySqlError>| r.unwrap_err().to_string();
        let e = msg(wanted("id").resolve::<Row>(vec![]));
        assert!(e.contains("table `db`.`t` does not exist"), "{e}");
        let e = msg(wanted("nope").resolve::<Row>(table()));
        assert!(e.contains("column `nope` (tracking column) does not exist"), "{e}");
        assert!(e.contains("id, name, created"), "{e}");
        let e = msg(wanted("name").resolve::<Row>(table()));
        assert!(e.contains("tracking column `name`") && e.contains("VARCHAR"), "{e}");
        let mut lag = wanted("id");
        lag.lag = true;
        assert!(msg(lag.resolve::<Row>(table())).contains("lag"));
        let mut p2 = wanted("created");
        p2.parallelism = 2;
        let e = msg(p2.resolve::<Row>(table()));
        assert!(e.contains("split") && e.contains("DATETIME"), "{e}");

        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct WithShape {
            id: u64,
            shape: String,
        }
        let e = msg(wanted("id").resolve::<WithShape>(table()));
        assert!(e.contains("column `shape`") && e.contains("GEOMETRY"), "{e}");
        let mut all = wanted("id");
        let cols = vec!["name".to_string(), "shape".to_string()];
        all.columns = Some(&cols);
        let e = msg(all.resolve::<std::collections::HashMap<String, String>>(table()));
        assert!(e.contains("GEOMETRY"), "{e}");

        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct BlobAsString {
            id: u64,
            data: String,
        }
        let e = msg(wanted("id").resolve::<BlobAsString>(table()));
        assert!(e.contains("column `data`") && e.contains("BLOB") && e.contains("Vec<u8>"), "{e}");

        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Missing {
            id: u64,
            customer: String,
        }
        let e = msg(wanted("id").resolve::<Missing>(table()));
        assert!(e.contains("field `customer`"), "{e}");
    }
}
