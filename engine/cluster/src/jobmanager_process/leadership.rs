//! A highly available JobManager's side of leadership (see
//! [`crate::ha`]): what it does when elected (recover every recorded job
//! from its latest completed checkpoint), when deposed (stop every job
//! master it started, drop its TaskManagers, forget its jobs), how it
//! records jobs, and how it answers its job masters' fence requests.
//!
//! A standby JobManager serves REST (saying who leads) and refuses
//! TaskManagers and submissions.

use super::cluster::JobEntry;
use super::{Artifact, Cluster};
use crate::ha::job_records::{self, JobRecord};
use crate::ha::{CheckpointPointer, HaError, HighAvailabilityServices, LeaderInfo, Term};
use crossbeam_channel::Sender;
use sluice::cluster::fence::Fenced;
use sluice::cluster::remote::messages::{FenceOp, ToDriver};
use sluice::error::{Error, Result};
use sluice::ids::JobId;
use sluice::transport::JobSecret;
use sluice_checkpoint::clock::now_ms;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Work for the thread that writes to the coordination service on behalf
/// of job masters (the event loop never waits for etcd on their account).
type Work = Box<dyn FnOnce() + Send>;

/// A highly available JobManager's leadership state.
pub(crate) struct HaState {
    pub(crate) services: Arc<dyn HighAvailabilityServices>,
    /// `<storageDir>/<cluster-id>`.
    pub(crate) storage: PathBuf,
    /// While leading: the term every write is conditioned on.
    pub(crate) term: Option<Term>,
    /// While leading: since when (ms since the epoch).
    pub(crate) leader_since: Option<i64>,
    /// How many times this JobManager became leader.
    pub(crate) terms: u64,
    /// The record file each job's pointer names now.
    records: HashMap<JobId, String>,
    /// Jobs waiting for their job master: it stopped fenced while this
    /// JobManager's lease looked stale, or the checkpoint to resume from
    /// could not be read. Started once this JobManager surely leads and
    /// etcd answers (or left to the next leader).
    fenced_jobs: Vec<JobId>,
    worker: Sender<Work>,
}

impl HaState {
    pub(crate) fn new(services: Arc<dyn HighAvailabilityServices>, storage: PathBuf) -> Result<Self> {
        let (worker, work) = crossbeam_channel::unbounded::<Work>();
        std::thread::Builder::new()
            .name("ha-fence".into())
            .spawn(move || {
                for w in work {
                    w();
                }
            })
            .map_err(|e| Error::io("cannot start a thread", e))?;
        Ok(HaState {
            services,
            storage,
            term: None,
            leader_since: None,
            terms: 0,
            records: HashMap::new(),
            fenced_jobs: Vec::new(),
            worker,
        })
    }
}

/// Who leads, as a standby or the leader sees it.
#[derive(Debug, Clone)]
pub enum Leadership {
    /// No high availability: this JobManager is the only one.
    Alone,
    /// This JobManager leads.
    Leader {
        /// Since when, ms since the epoch.
        since: i64,
        /// How many times it became leader.
        terms: u64,
    },
    /// Another JobManager leads (or none yet).
    Standby {
        /// The leader, if one is elected.
        leader: Option<LeaderInfo>,
    },
}

impl HaState {
    /// Whether this JobManager leads and its lease was renewed recently
    /// enough that it will not step down any moment now (the
    /// [`crate::ha::leadership`] loop's rule): a leader that has not yet
    /// noticed its lease lapsing must not start new work.
    fn leads_now(&self) -> bool {
        let Some(term) = &self.term else { return false };
        let ttl = self.services.lease_ttl();
        self.services.renewed_at(term).is_some_and(|at| at.elapsed() < ttl - ttl / 4)
    }
}

impl Cluster {
    /// Whether this JobManager may act (no high availability, or leading).
    pub fn is_acting(&self) -> bool {
        self.ha.as_ref().is_none_or(|ha| ha.term.is_some())
    }

    /// Whether the job store records job `id`, readable or not (false
    /// without high availability).
    pub(super) fn job_is_recorded(&self, id: JobId) -> Result<bool> {
        let Some(ha) = self.ha.as_ref() else { return Ok(false) };
        let jobs =
            ha.services.jobs().map_err(|e| Error::ClusterUnavailable(format!("cannot read the job store: {e}")))?;
        Ok(jobs.iter().any(|(j, _)| *j == id))
    }

    /// Refuses work on a standby, naming the leader.
    pub(super) fn check_acting(&self) -> Result<()> {
        if self.is_acting() {
            return Ok(());
        }
        Err(Error::ClusterUnavailable(match self.leadership() {
            Leadership::Standby { leader: Some(l) } => {
                format!("this JobManager is a standby; the leader {} serves REST at {}", l.id, l.rest_address)
            }
            _ => "this JobManager is a standby and no JobManager leads yet; retry shortly".into(),
        }))
    }

    /// Who leads.
    pub fn leadership(&self) -> Leadership {
        match &self.ha {
            None => Leadership::Alone,
            Some(ha) => match (ha.term.as_ref(), ha.leader_since) {
                (Some(_), Some(since)) => Leadership::Leader { since, terms: ha.terms },
                _ => Leadership::Standby { leader: ha.services.leader().ok().flatten() },
            },
        }
    }

    /// Elected: recovers every recorded job. Fails (and the caller
    /// resigns) if the recorded jobs cannot be read.
    pub fn become_leader(&mut self, term: Term) -> std::result::Result<(), HaError> {
        let Some(ha) = self.ha.as_mut() else { return Ok(()) };
        let jobs = ha.services.jobs()?;
        ha.term = Some(term);
        ha.leader_since = Some(now_ms());
        ha.terms += 1;
        let storage = ha.storage.clone();
        let m = sluice::metrics::global();
        m.leader_changes.inc();
        m.is_leader.set(1);
        m.leader_since.set(ha.leader_since.unwrap_or(0));
        for (id, path) in jobs {
            let record = match job_records::read_record(&storage, &path) {
                Ok(r) if r.id == id => r,
                Ok(r) => {
                    tracing::error!("the record '{path}' of job {id} describes job {}; skipped", r.id);
                    continue;
                }
                Err(e) => {
                    tracing::error!("cannot recover job {id}: {e}");
                    continue;
                }
            };
            if let Some(ha) = self.ha.as_mut() {
                ha.records.insert(id, path);
            }
            self.recover(record);
        }
        Ok(())
    }

    /// Deposed: stops every job master started here (before another
    /// leader can be elected), drops the TaskManagers (they look for the
    /// new leader) and forgets the jobs, which the next leader recovers.
    pub fn step_down(&mut self) {
        let Some(ha) = self.ha.as_mut() else { return };
        ha.term = None;
        ha.leader_since = None;
        ha.records.clear();
        ha.fenced_jobs.clear();
        let m = sluice::metrics::global();
        m.is_leader.set(0);
        m.leader_since.set(0);
        self.kill_drivers();
        for (_, tm) in std::mem::take(&mut self.task_managers) {
            tm.link.close();
        }
        self.jobs.clear();
        self.savepoints.clear();
    }

    /// Lists `record`'s job; restarts it (from its latest completed
    /// checkpoint) unless it has ended.
    fn recover(&mut self, record: JobRecord) {
        let Some(ha) = self.ha.as_ref() else { return };
        let artifact = Artifact {
            id: format!("recovered-{}", record.id),
            sha256: record.artifact_sha256.clone(),
            name: record.artifact_name.clone(),
            path: record.artifact_path(&ha.storage),
            size: record.artifact_size,
            uploaded: record.start_time,
        };
        let latest = ha.services.latest_checkpoint(record.id);
        let id = record.id;
        let secret = match JobSecret::generate() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot recover job {id}: {e}");
                return;
            }
        };
        let log = self.settings.work_dir.join("jobs").join(id.to_string()).join("driver.log");
        let mut entry = JobEntry::new(id, artifact, record.args, record.conf_lines, secret, log);
        entry.name = record.name;
        entry.start_time = record.start_time;
        if record.status.is_terminal() {
            entry.status = record.status;
            entry.end_time = record.end_time;
            entry.failure = record.failure;
            self.jobs.insert(id, entry);
            return;
        }
        let restore = match latest {
            Ok(Some(CheckpointPointer { id: cp, dir })) if !dir.chars().any(char::is_control) => {
                eprintln!("Recovering job {id} from its latest completed checkpoint {cp} ({dir})");
                Some(dir)
            }
            Ok(_) => {
                eprintln!("Recovering job {id}; it completed no checkpoint under any leader yet");
                None
            }
            Err(e) => {
                // Only the recorded checkpoint may be resumed: wait for it.
                tracing::warn!("cannot read the latest checkpoint of job {id}: {e}; retrying");
                self.jobs.insert(id, entry);
                if let Some(ha) = self.ha.as_mut() {
                    ha.fenced_jobs.push(id);
                }
                return;
            }
        };
        self.start_driver(entry, restore.as_deref());
    }

    /// Restarts the driver of `id`, which exited fenced, if this
    /// JobManager surely still leads (e.g. the driver gave up on a slow
    /// answer); else the job waits for the next leader.
    pub(super) fn restart_fenced_driver(&mut self, id: JobId) {
        let Some(ha) = self.ha.as_mut() else { return };
        if !ha.leads_now() {
            tracing::warn!("the job master of job {id} stopped fenced; it restarts once this JobManager surely leads");
            ha.fenced_jobs.push(id);
            return;
        }
        let Some(entry) = self.jobs.remove(&id) else { return };
        eprintln!("the job master of job {id} stopped fenced while this JobManager leads; restarting it");
        self.recover(entry.to_record());
    }

    /// Starts the job masters of the jobs waiting for one (see
    /// `fenced_jobs`) once this JobManager surely leads (each tick).
    pub(super) fn restart_deferred_drivers(&mut self) {
        let Some(ha) = self.ha.as_mut() else { return };
        if ha.fenced_jobs.is_empty() || !ha.leads_now() {
            return;
        }
        for id in std::mem::take(&mut ha.fenced_jobs) {
            self.restart_fenced_driver(id);
        }
    }

    /// Records job `id` as it is now (a fresh record file, then the
    /// leader's conditioned pointer). Without high availability: nothing.
    pub(super) fn record_job(&mut self, id: JobId) -> std::result::Result<(), HaError> {
        let Some(ha) = self.ha.as_mut() else { return Ok(()) };
        let Some(term) = ha.term.clone() else {
            return Err(HaError::NotLeader { cluster_id: ha.services.cluster_id().into() });
        };
        let Some(job) = self.jobs.get(&id) else { return Ok(()) };
        let path = job_records::write_record(&ha.storage, &job.to_record())?;
        ha.services.put_job(&term, id, &path)?;
        if let Some(old) = ha.records.insert(id, path) {
            job_records::remove_record(&ha.storage, &old);
        }
        Ok(())
    }

    /// Stores a submitted binary where every JobManager finds it.
    pub(super) fn store_artifact_for_recovery(&self, artifact: Artifact) -> Result<Artifact> {
        let Some(ha) = self.ha.as_ref() else { return Ok(artifact) };
        let path = job_records::store_artifact(&ha.storage, &artifact.path, &artifact.sha256)?;
        Ok(Artifact { path, ..artifact })
    }

    /// Answers a job master's fence request (see [`sluice::cluster::fence`]).
    pub(super) fn on_fence(&mut self, job: JobId, request: u64, op: FenceOp) {
        let Some(link) = self.jobs.get(&job).and_then(|j| j.driver.clone()) else { return };
        let Some(ha) = self.ha.as_ref() else {
            // Nothing fences without high availability.
            let answer = match op {
                FenceOp::ReserveId { at_least } => Ok(at_least),
                FenceOp::Completed { checkpoint, .. } => Ok(checkpoint),
            };
            let _ = link.send(&ToDriver::FenceAnswer { request, answer });
            return;
        };
        let Some(term) = ha.term.clone().filter(|_| ha.leads_now()) else {
            let _ = link.send(&ToDriver::FenceAnswer { request, answer: Err(Fenced::NotLeader) });
            return;
        };
        let services = ha.services.clone();
        let work: Work = Box::new(move || {
            let answer = match op {
                FenceOp::ReserveId { at_least } => services.reserve_checkpoint_id(&term, job, at_least),
                FenceOp::Completed { checkpoint, dir } => {
                    services.add_checkpoint(&term, job, &CheckpointPointer { id: checkpoint, dir }).map(|()| checkpoint)
                }
            }
            .map_err(|e| match e {
                HaError::NotLeader { .. } => Fenced::NotLeader,
                other => Fenced::Unavailable(other.to_string()),
            });
            let _ = link.send(&ToDriver::FenceAnswer { request, answer });
        });
        let _ = ha.worker.send(work);
    }
}

impl JobEntry {
    /// What a leader records of this job.
    pub(crate) fn to_record(&self) -> JobRecord {
        JobRecord {
            id: self.id,
            name: self.name.clone(),
            artifact_name: self.artifact.name.clone(),
            artifact_sha256: self.artifact.sha256.clone(),
            artifact_size: self.artifact.size,
            args: self.args.clone(),
            conf_lines: self.conf_lines.clone(),
            status: self.status,
            start_time: self.start_time,
            end_time: self.end_time,
            failure: self.failure.clone(),
        }
    }
}
