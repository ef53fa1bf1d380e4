//! The cluster: JobManager (dispatcher, resource manager, one job master per
//! job) and TaskManagers (slots running subtasks), talking only through the
//! typed messages of [`protocol`], sent through [`gateway`]s.
//!
//! In a local run all of them live in one process as threads of a
//! [`MiniCluster`]; the messages travel over in-process channels. The same
//! messages are what a multi-process cluster carries over RPC.

pub mod fence;
pub mod gateway;
pub mod inbox;
pub mod job_graphs;
mod jobmanager;
pub mod minicluster;
pub mod protocol;
pub mod remote;
mod resource_manager;
pub mod restart;
pub mod slot_allocator;
pub mod stats;
mod taskmanager;

pub use crate::config::RestartStrategy;
pub use crate::ids::JobId;
pub use minicluster::{JobClient, JobExecutionResult, MiniCluster, MiniClusterConfig};
pub use protocol::{ExecutionState, JobDetails, JobStatus};
