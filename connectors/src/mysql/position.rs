//! The read position of a MySQL source subtask: its checkpointed state.

use super::schema::TrackingKind;
use mysql_async::Value;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A value of the tracking column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrackingValue {
    /// A signed integer column.
    Int(i64),
    /// An unsigned integer column (BIGINT UNSIGNED may exceed `i64`).
    UInt(u64),
    /// A DATE, DATETIME or TIMESTAMP column, as `YYYY-MM-DD HH:MM:SS.ffffff`
    /// (TIMESTAMP in the session time zone, as the server returned it).
    DateTime(String),
}

impl TrackingValue {
    /// The tracking value of a cell, `None` if it is NULL or of another kind.
    pub(crate) fn from_value(kind: TrackingKind, v: &Value) -> Option<Self> {
        match (kind, v) {
            (TrackingKind::Int, Value::Int(i)) => Some(TrackingValue::Int(*i)),
            (TrackingKind::Int, Value::UInt(u)) => i64::try_from(*u).ok().map(TrackingValue::Int),
            (TrackingKind::UInt, Value::UInt(u)) => Some(TrackingValue::UInt(*u)),
            (TrackingKind::UInt, Value::Int(i)) => u64::try_from(*i).ok().map(TrackingValue::UInt),
            (TrackingKind::Temporal, Value::Date(y, m, d, h, mi, s, us)) => {
                Some(TrackingValue::DateTime(format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")))
            }
            _ => None,
        }
    }

    /// Whether this value belongs to a tracking column of `kind`.
    pub(crate) fn is(&self, kind: TrackingKind) -> bool {
        matches!(
            (self, kind),
            (TrackingValue::Int(_), TrackingKind::Int)
                | (TrackingValue::UInt(_), TrackingKind::UInt)
                | (TrackingValue::DateTime(_), TrackingKind::Temporal)
        )
    }

    /// The value as a statement parameter. Temporal values are sent as
    /// text, which MySQL converts to the column's type when comparing.
    pub(crate) fn to_param(&self) -> Value {
        match self {
            TrackingValue::Int(i) => Value::Int(*i),
            TrackingValue::UInt(u) => Value::UInt(*u),
            TrackingValue::DateTime(s) => Value::Bytes(s.clone().into_bytes()),
        }
    }
}

impl fmt::Display for TrackingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackingValue::Int(i) => write!(f, "{i}"),
            TrackingValue::UInt(u) => write!(f, "{u}"),
            TrackingValue::DateTime(s) => write!(f, "'{s}'"),
        }
    }
}

/// Where a snapshot-only source stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotEnd {
    /// The table had no row with a tracking value when the source first opened.
    EmptyTable,
    /// The largest tracking value when the source first opened.
    At(TrackingValue),
}

/// The state of one MySQL source subtask, saved in checkpoints.
///
/// Every row of this subtask's share whose tracking value is at most `last`
/// has been emitted, and no other row: a restored source reads
/// `WHERE column > last`, so it neither loses nor repeats rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MySqlPosition {
    /// The largest tracking value emitted; `None` before the first row.
    pub last: Option<TrackingValue>,
    /// Snapshot-only mode: where reading stops, fixed at the first `open`
    /// (so a restored snapshot ends where the original would have).
    pub snapshot_end: Option<SnapshotEnd>,
    /// The subtask this position belongs to.
    pub subtask: u32,
    /// The parallelism it was taken at; 0 if taken before `open`.
    pub parallelism: u32,
}
