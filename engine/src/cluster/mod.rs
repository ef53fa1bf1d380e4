//! The cluster: JobManager (dispatcher, resource manager, one job master per
//! job) and TaskManagers (slots running subtasks), talking only through the
//! typed messages of [`protocol`].
//!
//! In a local run all of them live in one process as threads of a
//! [`MiniCluster`]; the messages travel over in-process channels. The same
//! messages are what a multi-process cluster carries over RPC.

mod jobmanager;
pub mod minicluster;
pub mod protocol;
pub mod remote;
mod resource_manager;
pub mod restart;
mod taskmanager;

pub use minicluster::{JobClient, JobExecutionResult, MiniCluster, MiniClusterConfig};
pub use protocol::{ExecutionState, JobDetails, JobId, JobStatus};
pub use restart::RestartStrategy;
