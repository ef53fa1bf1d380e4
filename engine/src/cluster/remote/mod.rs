//! The job binary's side of the multi-process cluster. A cluster is a
//! JobManager process, TaskManager processes, and per job a driver process
//! (the job's master) and task processes (its slots on each TaskManager),
//! started from one `sluice` binary (the `sluice-cluster` crate: JobManager
//! and TaskManager processes, REST API and web UI, the CLI) and the job's
//! own binary. Only what a job binary needs in a cluster lives here, so a
//! job links neither the REST server nor the CLI.
//!
//! ```text
//!  sluice run ──REST──▶ JobManager ◀──RPC── TaskManager ──spawns──▶ task process ─┐
//!                        │  ▲                                          ▲   ▲       │ data (TCP,
//!                 spawns │  │ RPC                                      │   └───────┘  credits)
//!                        ▼  │                                   RPC    │
//!                      job driver (job master: scheduling, checkpoints, failover)
//! ```
//!
//! The driver runs the same job master as the mini cluster; task processes
//! run the same TaskManager, and the two speak the same
//! [`protocol`](crate::cluster::protocol) as in the mini cluster, through
//! [`Gateway`](crate::cluster::gateway::Gateway)s that are TCP links here.
//! Only the processes of the cluster itself (JobManager, TaskManagers,
//! drivers) add their own [`messages`]. [`wire`] frames both;
//! [`crate::runtime::net`] carries records.

mod driver_fence;
pub mod job_process;
pub mod messages;
pub mod wire;
