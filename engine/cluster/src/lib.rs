//! # sluice-cluster
//!
//! The processes of a standalone Sluice cluster and the `sluice` CLI that
//! starts and drives them, kept out of the `sluice` library that every job
//! binary links (a job links neither the REST server nor the CLI):
//!
//! - [`jobmanager_process`]: `sluice jobmanager` — an event loop owning the
//!   cluster state: the resource manager
//!   (TaskManagers register and heartbeat), the dispatcher (job binaries
//!   uploaded, each job's driver started), metrics discovery;
//! - [`taskmanager_process`]: `sluice taskmanager` — offers slots, starts
//!   the job processes the JobManager asks for;
//! - [`rest`]: the REST API and web UI at Flink's paths;
//! - [`discovery`]: the `/metrics` targets of every process, for Prometheus;
//! - [`ha`]: JobManager high availability on etcd (leader election, the
//!   job store, checkpoint pointers, fencing).
//! - [`retention`]: what a TaskManager's work directory keeps.
//!
//! The job binary's side of the cluster (its driver and task processes, and
//! the messages between the processes) is in [`sluice::cluster::remote`].
#![deny(missing_docs)]

pub mod discovery;
pub mod ha;
pub mod jobmanager_process;
pub mod rest;
pub mod rest_guard;
pub mod rest_tls;
pub mod retention;
pub mod task_logs;
pub mod taskmanager_process;

/// Creates `path` as a new file, executable by its owner only (0700), with
/// `O_EXCL|O_NOFOLLOW`: it never replaces a file and never writes through a
/// link someone planted at that name.
pub(crate) fn create_private_file(path: &std::path::Path) -> sluice::error::Result<std::fs::File> {
    create_owner_only(path, 0o700)
        .map_err(|e| sluice::error::Error::io(format!("cannot create '{}'", path.display()), e))
}

/// [`create_private_file`] with permissions `mode` (e.g. 0600 for data).
pub(crate) fn create_owner_only(path: &std::path::Path, mode: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).custom_flags(libc::O_NOFOLLOW).open(path)
}
