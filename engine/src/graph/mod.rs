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

pub use crate::runtime::partitioning::Partitioning;
