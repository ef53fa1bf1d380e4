//! Application mode on a cluster of its own (Flink's `standalone-job`):
//! `sluice standalone-job BINARY` is a JobManager that runs the one job of
//! a binary it has at hand (in its container image), and ends when that
//! job ends. TaskManagers join it as they join any JobManager.
//!
//! With high availability the job has a fixed id per cluster id
//! ([`application_job_id`]): a JobManager that takes over, or one that
//! restarts, finds the job in the job store and resumes it from its latest
//! completed checkpoint instead of running it a second time; once it has
//! ended, a restarted JobManager finds it ended and exits at once. Without
//! high availability a restarted JobManager runs the job anew (it resumes
//! from the latest checkpoint in its checkpoint directory, as any
//! restarted job does).

use super::{Artifact, Cluster, JobManager};
use crate::ha::HaSettings;
use sluice::cluster::protocol::JobStatus;
use sluice::error::{Error, Result};
use sluice::ids::JobId;
use std::path::PathBuf;
use std::time::Duration;

/// How often the application's progress is looked at.
const POLL: Duration = Duration::from_millis(200);

/// The job an application cluster runs.
#[derive(Debug, Clone)]
pub struct Application {
    /// The job binary.
    pub binary: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// `-p`: the job's default parallelism.
    pub parallelism: Option<u32>,
    /// `-s`: a savepoint to start from (the first run only).
    pub savepoint: Option<String>,
    /// `--allow-non-restored-state`.
    pub allow_non_restored: bool,
}

/// The application's job id: with high availability one fixed id per
/// cluster id, so that every JobManager of the cluster means the same job;
/// without, a fresh one.
pub fn application_job_id(ha: &HaSettings) -> JobId {
    match ha {
        HaSettings::None => JobId::generate(),
        HaSettings::Etcd { cluster_id, .. } => {
            let hash =
                |salt: &str| sluice_checkpoint::key_group::stable_hash(&("sluice-application", salt, cluster_id));
            JobId::from_u128((u128::from(hash("high")) << 64) | u128::from(hash("low")))
        }
    }
}

/// What [`Cluster::start_application`] found.
enum Start {
    /// This JobManager does not lead (yet).
    Standby,
    /// The job is known (recovered, running or ended); nothing started.
    Known,
    /// The job was submitted.
    Started,
}

impl Cluster {
    /// Submits the application's job `id` from `artifact`, unless the
    /// cluster knows the job already (here or in the job store).
    fn start_application(&mut self, id: JobId, artifact: Artifact, app: &Application) -> Result<Start> {
        if !self.is_acting() {
            return Ok(Start::Standby);
        }
        if self.jobs.contains_key(&id) || self.job_is_recorded(id)? {
            return Ok(Start::Known);
        }
        let artifact_id = artifact.id.clone();
        self.insert_artifact(artifact);
        self.submit(
            id,
            &artifact_id,
            app.args.clone(),
            app.parallelism,
            app.savepoint.clone(),
            app.allow_non_restored,
        )?;
        Ok(Start::Started)
    }

    /// The status of job `id` if this JobManager leads and knows it.
    fn application_status(&self, id: JobId) -> Option<JobStatus> {
        self.is_acting().then(|| self.jobs.get(&id).map(|j| j.status)).flatten()
    }
}

impl JobManager {
    /// Runs `app`'s job once this JobManager leads (at once without high
    /// availability) unless the cluster knows it already, and waits until
    /// it has ended; returns how it ended.
    pub fn run_application(&self, app: Application) -> Result<(JobId, JobStatus)> {
        let id = application_job_id(&self.call(|c| c.settings.ha.clone())?);
        let name = app.binary.file_name().and_then(|n| n.to_str()).unwrap_or("application").to_string();
        let bytes = std::fs::read(&app.binary).map_err(|e| {
            Error::io(format!("cannot read the application's job binary '{}'", app.binary.display()), e)
        })?;
        let work_dir = self.call(|c| c.work_dir())?;
        let artifact = Artifact::store(&work_dir, &name, bytes)?;
        loop {
            let (artifact, app_for_loop) = (artifact.clone(), app.clone());
            match self.call(move |c| c.start_application(id, artifact, &app_for_loop))?? {
                Start::Standby => std::thread::sleep(POLL),
                Start::Known => {
                    tracing::info!("the application's job {id} is known to the cluster already: following it");
                    break;
                }
                Start::Started => {
                    tracing::info!("started the application's job {id} ({name})");
                    break;
                }
            }
        }
        loop {
            if let Some(status) = self.call(move |c| c.application_status(id))? {
                if status.is_terminal() {
                    return Ok((id, status));
                }
            }
            std::thread::sleep(POLL);
        }
    }
}
