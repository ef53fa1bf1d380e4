//! The records the CDC source emits: one [`ChangeEvent`] per row change
//! (or per row of the snapshot, or per schema change).

use super::offset::RowMark;
use serde::{Deserialize, Serialize};

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// A new row (also every row read by the snapshot, see
    /// [`ChangeEvent::snapshot`]); `row` is the row.
    Insert,
    /// The row before an update; an [`Op::UpdateAfter`] follows at once.
    UpdateBefore,
    /// The row after an update.
    UpdateAfter,
    /// A deleted row; `row` is the row as it was.
    Delete,
    /// A DDL statement on a captured table (only with
    /// [`SchemaChanges::Emit`](super::SchemaChanges::Emit)); `row` is `None`
    /// and `ddl` holds the statement.
    SchemaChange,
}

/// One change of a captured table, with the row typed as `T`.
///
/// `T` is any `Deserialize` type the row can be read into (a struct whose
/// fields match columns by name, a tuple, a map), with the same type mapping
/// as the polling [`MySqlSource`](crate::mysql::MySqlSource); with
/// `T = serde_json::Value` the row is a JSON object (column name → value),
/// the JSON-like envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent<T> {
    /// The operation.
    pub op: Op,
    /// The database of the table.
    pub database: String,
    /// The table.
    pub table: String,
    /// The row (none for a schema change).
    pub row: Option<T>,
    /// Where the change is in the binlog: the end of its rows event and the
    /// row's index in it. For a snapshot row, the chunk's high watermark
    /// (row `u32::MAX`): the row is the table's state at that position.
    pub mark: RowMark,
    /// The MariaDB GTID (`domain-server-sequence`) of the transaction, if
    /// the binlog has one (not for snapshot rows).
    pub gtid: Option<String>,
    /// The binlog timestamp of the change in milliseconds since the Unix
    /// epoch (seconds precision: the time the statement started on the
    /// server); 0 for snapshot rows.
    pub timestamp_ms: u64,
    /// Read by the snapshot rather than from the binlog.
    pub snapshot: bool,
    /// The DDL statement of a [`Op::SchemaChange`].
    pub ddl: Option<String>,
}

impl<T> ChangeEvent<T> {
    /// Whether applying this event adds or replaces the row (insert, update
    /// after), as opposed to removing it (update before, delete).
    pub fn is_upsert(&self) -> bool {
        matches!(self.op, Op::Insert | Op::UpdateAfter)
    }
}

impl<T: Serialize> ChangeEvent<T> {
    /// A Debezium-like JSON envelope: `before`, `after`, `op` (`r` snapshot
    /// read, `c` insert, `u` update, `d` delete; an update is two events,
    /// the before image with `after: null` and the after image with
    /// `before: null`), `source` (database, table, binlog file and
    /// position, row, GTID, snapshot) and `ts_ms`; a schema change has
    /// `op: "ddl"` and the statement in `ddl`.
    pub fn to_json_envelope(&self) -> serde_json::Result<serde_json::Value> {
        let row = serde_json::to_value(&self.row)?;
        let (op, before, after) = match self.op {
            Op::Insert if self.snapshot => ("r", serde_json::Value::Null, row),
            Op::Insert => ("c", serde_json::Value::Null, row),
            Op::UpdateBefore => ("u", row, serde_json::Value::Null),
            Op::UpdateAfter => ("u", serde_json::Value::Null, row),
            Op::Delete => ("d", row, serde_json::Value::Null),
            Op::SchemaChange => ("ddl", serde_json::Value::Null, serde_json::Value::Null),
        };
        let mut envelope = serde_json::json!({
            "before": before,
            "after": after,
            "op": op,
            "source": {
                "connector": "mysql",
                "db": self.database,
                "table": self.table,
                "file": self.mark.position.file,
                "pos": self.mark.position.pos,
                "row": if self.mark.row == u32::MAX { None } else { Some(self.mark.row) },
                "gtid": self.gtid,
                "snapshot": self.snapshot,
                "ts_ms": self.timestamp_ms,
            },
            "ts_ms": self.timestamp_ms,
        });
        if let (Some(ddl), Some(map)) = (&self.ddl, envelope.as_object_mut()) {
            map.insert("ddl".into(), serde_json::Value::String(ddl.clone()));
        }
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::mysql::cdc::BinlogPosition;

    #[test]
    fn renders_a_debezium_like_envelope() {
        let mut e = ChangeEvent {
            op: Op::UpdateAfter,
            database: "shop".into(),
            table: "orders".into(),
            row: Some(serde_json::json!({"id": 7, "amount": 1.5})),
            mark: RowMark { position: BinlogPosition::new("mysql-bin.000002", 1234), row: 0 },
            gtid: Some("0-1-42".into()),
            timestamp_ms: 1_700_000_000_000,
            snapshot: false,
            ddl: None,
        };
        let j = e.to_json_envelope().unwrap();
        assert_eq!(j["op"], "u");
        assert_eq!(j["after"]["id"], 7);
        assert!(j["before"].is_null());
        assert_eq!(j["source"]["file"], "mysql-bin.000002");
        assert_eq!(j["source"]["pos"], 1234);
        assert_eq!(j["source"]["gtid"], "0-1-42");
        assert_eq!(j["ts_ms"], 1_700_000_000_000u64);
        e.op = Op::Insert;
        e.snapshot = true;
        assert_eq!(e.to_json_envelope().unwrap()["op"], "r");
        e.op = Op::Delete;
        e.snapshot = false;
        let j = e.to_json_envelope().unwrap();
        assert_eq!((j["op"].as_str(), j["before"]["id"].as_i64()), (Some("d"), Some(7)));
        assert!(!e.is_upsert());
    }
}
