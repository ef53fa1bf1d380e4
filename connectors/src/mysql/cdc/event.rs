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
