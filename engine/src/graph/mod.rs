//! From the program to running subtasks: stream graph → job graph →
//! execution graph.
//!
//! * [`stream_graph`]: what the DataStream API records, one node per
//!   transformation.
//! * [`job_graph`]: parallelism resolved, operators chained into vertices
//!   where the edge is forward and the parallelism matches, edges with their
//!   partitioning.
//! * [`execution`]: the job graph expanded into subtasks, and how one
//!   subtask's runtime pieces are built from it.

pub mod execution;
pub mod job_graph;
pub(crate) mod stream_graph;

pub use job_graph::{JobEdge, JobGraph, JobVertex, ParallelismDefaults};

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
