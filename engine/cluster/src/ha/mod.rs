//! JobManager high availability (Flink's `HighAvailabilityServices`):
//! several JobManagers, one elected leader, standbys that take over and
//! resume every job from its latest completed checkpoint.
//!
//! The coordination service holds only small pointers; the data lives in
//! `high-availability.storageDir` (a directory every JobManager host
//! shares, as Flink's HA storage directory):
//!
//! | what | coordination service (etcd) | storage directory |
//! | --- | --- | --- |
//! | leader election | a key under `<root>/leader/`, on the candidate's lease | |
//! | jobs | `<root>/jobs/<job id>` → the job's record file | job records, job binaries |
//! | completed checkpoints | `<root>/checkpoints/<job id>` → id and directory | (checkpoints stay in `state.checkpoints.dir`) |
//! | checkpoint ids | `<root>/checkpoint-counter/<job id>` → the next id | |
//!
//! `<root>` is `/sluice/<high-availability.cluster-id>`.
//!
//! **Fencing.** Every write a leader makes is conditioned on its
//! [`Term`]: the election key it created still exists with the revision it
//! was created at, which stops being true the moment its lease expires or
//! it resigns. A JobManager that cannot renew its lease steps down before
//! the lease can expire ([`leadership`]), and the job masters it started
//! ask it before each checkpoint and before announcing one complete
//! ([`sluice::cluster::fence`]), so a deposed leader completes no
//! checkpoint — and no Kafka transaction is committed on its word — once
//! another can lead.
//!
//! Modules: [`settings`] (the `high-availability.*` keys), [`etcd`] (the
//! implementation on etcd), [`job_records`] (what the storage directory
//! holds), [`leadership`] (the election loop that drives a JobManager).

pub mod etcd;
pub mod job_records;
pub mod leadership;
pub mod settings;

pub use settings::HaSettings;

use serde::{Deserialize, Serialize};
use sluice::ids::JobId;
use std::time::Duration;

/// Where a leading JobManager can be reached, as published in its
/// election key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// The JobManager's id (`jobmanager.resource-id`, else host and pid).
    pub id: String,
    /// Its RPC address as TaskManagers reach it.
    pub rpc_address: String,
    /// Its REST address as clients reach it (`host:port`).
    pub rest_address: String,
    /// When it was elected, ms since the epoch.
    pub since_ms: i64,
}

/// A leadership term: the election key a leader created and the revision
/// it was created at. Writes conditioned on a term fail once the term is
/// over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The election key.
    pub key: Vec<u8>,
    /// The revision the key was created at.
    pub revision: i64,
    /// The lease the key lives on.
    pub lease: i64,
}

/// The latest completed checkpoint of a job, as recorded by its leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPointer {
    /// Its id.
    pub id: u64,
    /// Its directory (holding `_metadata`).
    pub dir: String,
}

/// What went wrong with high availability. Each names what to check.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// The coordination service could not be reached.
    #[error("cannot reach etcd at {endpoints} (high-availability.etcd.endpoints): {detail}")]
    Unreachable {
        /// The endpoints tried.
        endpoints: String,
        /// What the client said.
        detail: String,
    },
    /// A conditioned write failed: this JobManager's term is over.
    #[error("this JobManager no longer leads cluster '{cluster_id}'")]
    NotLeader {
        /// `high-availability.cluster-id`.
        cluster_id: String,
    },
    /// The TLS settings towards etcd cannot be used.
    #[error("TLS towards etcd: {0}")]
    Tls(String),
    /// The storage directory cannot be used.
    #[error("high-availability.storageDir: {0}")]
    Storage(String),
    /// A value in the coordination service or the storage directory is
    /// not what Sluice wrote there.
    #[error("corrupt high-availability data at '{at}': {detail} (was it written by another program or cluster id?)")]
    Corrupt {
        /// The key or file.
        at: String,
        /// What is wrong.
        detail: String,
    },
}

impl From<HaError> for sluice::error::Error {
    fn from(e: HaError) -> Self {
        sluice::error::Error::ClusterUnavailable(e.to_string())
    }
}

/// The high-availability services a JobManager, its TaskManagers and the
/// CLI use (Flink's `HighAvailabilityServices`: leader election and
/// retrieval, the job store, the completed checkpoint store and the
/// checkpoint id counter). Implementations: [`etcd::EtcdHa`]; a Kubernetes
/// one (Leases and ConfigMaps) fits the same trait. Every call blocks for
/// at most the implementation's operation timeout.
pub trait HighAvailabilityServices: Send + Sync {
    /// The cluster id (`high-availability.cluster-id`).
    fn cluster_id(&self) -> &str;

    /// How long a leader's lease lasts without renewal.
    fn lease_ttl(&self) -> Duration;

    /// Runs for leadership with `me` as the published value; blocks until
    /// elected (or fails if the service cannot be reached). The lease is
    /// renewed in the background from the start of the candidacy.
    fn campaign(&self, me: &LeaderInfo) -> Result<Term, HaError>;

    /// When the lease of `term` was last renewed (the send time of the
    /// last renewal the service confirmed); `None` once the lease is gone.
    fn renewed_at(&self, term: &Term) -> Option<std::time::Instant>;

    /// Ends `term` (deletes the election key, revokes the lease).
    fn resign(&self, term: &Term);

    /// The current leader, if any.
    fn leader(&self) -> Result<Option<LeaderInfo>, HaError>;

    /// Records job `job` with its record file `record` (conditioned on
    /// `term`).
    fn put_job(&self, term: &Term, job: JobId, record: &str) -> Result<(), HaError>;

    /// Every recorded job with its record file.
    fn jobs(&self) -> Result<Vec<(JobId, String)>, HaError>;

    /// Reserves the next checkpoint id of `job`: at least `at_least`, and
    /// above every id reserved before (conditioned on `term`).
    fn reserve_checkpoint_id(&self, term: &Term, job: JobId, at_least: u64) -> Result<u64, HaError>;

    /// Records `pointer` as the latest completed checkpoint of `job`
    /// (conditioned on `term`).
    fn add_checkpoint(&self, term: &Term, job: JobId, pointer: &CheckpointPointer) -> Result<(), HaError>;

    /// The latest completed checkpoint of `job`, if any.
    fn latest_checkpoint(&self, job: JobId) -> Result<Option<CheckpointPointer>, HaError>;
}

/// The current leader, waiting up to `timeout` for one to be elected.
pub fn locate_leader(services: &dyn HighAvailabilityServices, timeout: Duration) -> sluice::error::Result<LeaderInfo> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let last = match services.leader() {
            Ok(Some(leader)) => return Ok(leader),
            Ok(None) => "no JobManager leads it".to_string(),
            Err(e) => e.to_string(),
        };
        if std::time::Instant::now() >= deadline {
            return Err(sluice::error::Error::ClusterUnavailable(format!(
                "no leading JobManager of cluster '{}' within {timeout:?}: {last} \
                 (are the JobManagers running with the same high-availability.cluster-id?)",
                services.cluster_id()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Connects to the RPC endpoint of the current leader (looked up again
/// after each failed attempt: a killed leader's entry stays until its
/// lease expires); returns the address and the stream.
pub fn connect_to_leader(
    services: &dyn HighAvailabilityServices,
    what: &str,
    timeout: Duration,
    security: &sluice::transport::Security,
) -> sluice::error::Result<(String, sluice::transport::SecureStream)> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let leader = locate_leader(services, left)?;
        let attempt = Duration::from_secs(1).min(left.max(Duration::from_millis(100)));
        match sluice::cluster::remote::wire::connect(&leader.rpc_address, what, attempt, security) {
            Ok(stream) => return Ok((leader.rpc_address, stream)),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(e) => {
                tracing::debug!("the leader {} at {} cannot be reached yet: {e}", leader.id, leader.rpc_address);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
