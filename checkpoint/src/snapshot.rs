//! The state a subtask hands back when it acknowledges a checkpoint.
//!
//! For now a snapshot is the serialized state of one operator of a subtask
//! (sources' read positions, keyed state grouped by key group). The checkpoint
//! storage that writes these to `<dir>/<job>/chk-<n>/` builds on this type.

use serde::{Deserialize, Serialize};

/// The serialized state of one operator of one subtask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSnapshot {
    /// The stable id of the operator (derived from its `uid` or from the graph).
    pub operator_id: String,
    /// Which subtask took the snapshot.
    pub subtask: u32,
    /// The operator's own encoding of its state.
    pub bytes: Vec<u8>,
}
