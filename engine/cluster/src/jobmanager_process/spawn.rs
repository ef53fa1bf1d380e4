//! Job processes spawned by the JobManager: each submitted job's binary is
//! started here as its driver (the job master), with the cluster's job
//! settings in its environment; drivers that exit before their job ended,
//! or never announce a job, fail it with the tail of their log.

use super::cluster::JobEntry;
use super::Cluster;
use sluice::cluster::fence::FENCED_EXIT_CODE;
use sluice::cluster::protocol::JobStatus;
use sluice::cluster::remote::job_process::{
    ADVERTISED_HOST_VAR, CONF_VAR, FENCED_VAR, HOST_VAR, JOBMANAGER_VAR, JOB_ID_VAR, JOB_SECRET_VAR, ROLE_VAR,
};
use sluice::error::{Error, Result};
use sluice::ids::JobId;
use sluice::transport::JobSecret;
use sluice_checkpoint::clock::now_ms;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started job binary has to announce its job.
const DRIVER_HELLO_TIMEOUT: Duration = Duration::from_secs(60);

impl Cluster {
    /// Starts job `id` (fresh, or an application cluster's fixed id, see
    /// [`super::application`]) from an uploaded binary: its driver process
    /// is spawned at once; the job then waits for slots.
    pub fn submit(
        &mut self,
        id: JobId,
        artifact_id: &str,
        args: Vec<String>,
        parallelism: Option<u32>,
        savepoint: Option<String>,
        allow_non_restored: bool,
    ) -> Result<JobId> {
        if self.jobs.contains_key(&id) {
            return Err(Error::user(format!("there is a job {id} already")));
        }
        let artifact = self
            .artifacts
            .get(artifact_id)
            .cloned()
            .ok_or_else(|| Error::user(format!("no uploaded binary with id '{artifact_id}'; upload it first")))?;
        self.check_acting()?;
        let artifact = self.store_artifact_for_recovery(artifact)?;
        let secret = JobSecret::generate()?;
        let mut conf: Vec<(String, String)> = self.settings.job_defaults.clone();
        if let Some(p) = parallelism {
            conf.push(("parallelism.client".into(), p.to_string()));
        }
        if let Some(s) = savepoint {
            conf.push(("execution.savepoint.path".into(), s));
        }
        if allow_non_restored {
            conf.push(("execution.savepoint.ignore-unclaimed-state".into(), "true".into()));
        }
        // The driver connects as this process does (a TaskManager gives its
        // task processes its own security settings instead).
        conf.extend(self.settings.security.config_lines());
        // One `key=value` per line: a value with a line break would inject settings.
        if let Some((key, _)) = conf.iter().find(|(_, v)| v.chars().any(char::is_control)) {
            return Err(Error::user(format!("the value of '{key}' contains a control character (a line break?)")));
        }
        let conf_lines: String = conf.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let log = self.settings.work_dir.join("jobs").join(id.to_string()).join("driver.log");
        let entry = JobEntry::new(id, artifact, args, conf_lines, secret, log);
        // Recorded before it starts: a leader that dies a moment later
        // leaves the job to the next one.
        self.jobs.insert(id, entry);
        if let Err(e) = self.record_job(id) {
            self.jobs.remove(&id);
            return Err(Error::ClusterUnavailable(format!("cannot record the job for high availability: {e}")));
        }
        if let Some(entry) = self.jobs.remove(&id) {
            self.start_driver(entry, None);
        }
        Ok(id)
    }

    /// Starts the driver of `entry` and lists the job; `restore` is the
    /// checkpoint directory a recovered job resumes from.
    pub(super) fn start_driver(&mut self, mut entry: JobEntry, restore: Option<&str>) {
        let id = entry.id;
        let mut conf_lines = entry.conf_lines.clone();
        if self.ha.is_some() {
            // Only the checkpoint etcd recorded may be resumed (see the option).
            conf_lines.push_str("execution.checkpointing.resume-from-latest=false\n");
        }
        if let Some(dir) = restore {
            conf_lines.push_str(&format!("execution.savepoint.path={dir}\n"));
        }
        let log = entry.log.clone();
        let files = log
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            // Appended: a restarted driver keeps its predecessors' lines.
            .and_then(|()| std::fs::OpenOptions::new().create(true).append(true).open(&log))
            .and_then(|out| out.try_clone().map(|err| (out, err)));
        let spawned = files.and_then(|(out, err)| {
            Command::new(&entry.artifact.path)
                .args(&entry.args)
                .current_dir(log.parent().unwrap_or(&self.settings.work_dir))
                .env_remove("SLUICE_CONF_DIR")
                .envs(self.settings.metrics_env.iter().map(|(k, v)| (k, v)))
                .env(ROLE_VAR, "driver")
                .env(JOB_ID_VAR, id.to_string())
                .env(JOB_SECRET_VAR, entry.secret.to_hex())
                .env(JOBMANAGER_VAR, &self.rpc_address)
                .env(FENCED_VAR, if self.ha.is_some() { "1" } else { "0" })
                .env(CONF_VAR, &conf_lines)
                // The driver's endpoint: bound where the RPC endpoint is
                // (`jobmanager.bind-host`), advertised at its address.
                .env(HOST_VAR, self.settings.rpc_bind.rsplit_once(':').map(|(h, _)| h).unwrap_or("127.0.0.1"))
                .env(ADVERTISED_HOST_VAR, &self.settings.rpc_advertised_host)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
        });
        match spawned {
            Ok(child) => {
                self.drivers.insert(id, child);
                // Arguments may hold passwords: only at debug level.
                tracing::info!("job {id} started: {} with {} argument(s)", entry.artifact.name, entry.args.len());
                tracing::debug!("job {id} arguments: {:?}", entry.args);
                self.jobs.insert(id, entry);
            }
            Err(e) => {
                entry.failure = Some(format!(
                    "cannot start the job binary '{}': {e} (is it an executable built for this machine?)",
                    entry.artifact.name
                ));
                self.jobs.insert(id, entry);
                self.end_job(id, JobStatus::Failed, None);
            }
        }
    }

    /// Job driver processes still running.
    pub fn live_drivers(&mut self) -> usize {
        self.drivers.retain(|_, c| !matches!(c.try_wait(), Ok(Some(_))));
        self.drivers.len()
    }

    /// Kills the driver processes still running.
    pub fn kill_drivers(&mut self) {
        for (id, mut child) in self.drivers.drain() {
            tracing::warn!("killing the driver of job {id}");
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the binary of a job that has no driver connection yet.
    pub(super) fn kill_driver(&mut self, id: JobId) {
        if let Some(child) = self.drivers.get_mut(&id) {
            let _ = child.kill();
        }
    }

    /// Fails the jobs whose driver exited before the job ended, and those
    /// whose binary started no job within [`DRIVER_HELLO_TIMEOUT`]; with
    /// high availability restarts those whose driver stopped fenced.
    pub(super) fn check_drivers(&mut self) {
        self.restart_deferred_drivers();
        let mut exited = Vec::new();
        for (id, child) in self.drivers.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                exited.push((*id, status));
            }
        }
        for (id, status) in exited {
            self.drivers.remove(&id);
            if status.code() == Some(FENCED_EXIT_CODE) && self.ha.is_some() {
                self.restart_fenced_driver(id);
                continue;
            }
            let (ended, log) = match self.jobs.get(&id) {
                Some(j) => (j.status.is_terminal(), j.log.clone()),
                None => continue,
            };
            if !ended {
                let tail = log_tail(&log, 6);
                self.end_job(
                    id,
                    JobStatus::Failed,
                    Some(format!(
                        "the job binary exited ({status}) before the job ended; last lines of its log {}:\n{tail}",
                        log.display()
                    )),
                );
            }
        }
        let mute: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| {
                !j.status.is_terminal() && j.driver_address.is_none() && j.submitted.elapsed() > DRIVER_HELLO_TIMEOUT
            })
            .map(|j| j.id)
            .collect();
        for id in mute {
            self.kill_driver(id);
            self.end_job(
                id,
                JobStatus::Failed,
                Some(format!(
                    "the binary started no Sluice job within {DRIVER_HELLO_TIMEOUT:?} (does its main call execute()?)"
                )),
            );
        }
    }
}

impl JobEntry {
    /// A job whose driver is being started, waiting for it (CREATED).
    pub(super) fn new(
        id: JobId,
        artifact: super::Artifact,
        args: Vec<String>,
        conf_lines: String,
        secret: JobSecret,
        log: std::path::PathBuf,
    ) -> Self {
        JobEntry {
            id,
            name: artifact.name.clone(),
            status: JobStatus::Created,
            start_time: now_ms(),
            end_time: None,
            artifact,
            args,
            conf_lines,
            secret,
            driver: None,
            driver_address: None,
            driver_metrics: None,
            required_slots: 0,
            vertices: Vec::new(),
            details: None,
            failure: None,
            waiting_since: None,
            timeout_sent: false,
            next_seq: 0,
            log,
            submitted: Instant::now(),
        }
    }
}

/// The last `n` lines of a log file.
fn log_tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
