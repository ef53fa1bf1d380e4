//! How the records of a job edge are distributed over the consuming
//! subtasks; the record writers (`writer`) implement each way.

/// How records of an edge are distributed over the consuming subtasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Partitioning {
    /// Subtask *i* feeds subtask *i*; needs equal parallelism. Chainable.
    Forward,
    /// Round robin over all consumers.
    Rebalance,
    /// By the key group of the record's key (`key_by`).
    Hash,
    /// Every record to every consumer.
    Broadcast,
}

impl std::fmt::Display for Partitioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Partitioning::Forward => "FORWARD",
            Partitioning::Rebalance => "REBALANCE",
            Partitioning::Hash => "HASH",
            Partitioning::Broadcast => "BROADCAST",
        })
    }
}
