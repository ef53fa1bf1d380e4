//! `sluice jobmanager`: the cluster's JobManager process.
//!
//! - **Resource manager**: TaskManagers register their slots over RPC,
//!   heartbeat, and are declared lost when their connection closes or their
//!   heartbeats stop. Each job is granted as many slots as its largest
//!   parallelism (slot sharing); a grant on a TaskManager becomes one job
//!   process there. A job that cannot get its slots waits (CREATED) and
//!   fails after `slot.request.timeout`, naming what it needs and what exists.
//! - **Dispatcher**: keeps uploaded job binaries, starts each submitted job's
//!   binary as its driver (the job master: scheduling, checkpoints,
//!   failover; see [`sluice::cluster::remote::job_process`]), follows what the driver reports,
//!   and relays cancel and savepoint requests to it.
//! - **Metrics discovery**: the JobManager knows where every process of the
//!   cluster serves `/metrics` (its own REST endpoint, each TaskManager's,
//!   each job driver's and task process's, reported when they start) and
//!   lists them for Prometheus (see [`crate::discovery`]).
//! - The REST API and web UI live in [`crate::rest`].

use crossbeam_channel::Sender;
use sluice::cluster::protocol::{JobDetails, JobStatus};
use sluice::cluster::remote::job_process::{CONF_VAR, DRIVER_VAR, HOST_VAR, JOBMANAGER_VAR, JOB_ID_VAR, ROLE_VAR};
use sluice::cluster::remote::messages::{
    DriverHello, FromDriver, FromTaskManagerProcess, Hello, JobProcessSpec, TaskManagerHello, ToDriver,
    ToTaskManagerProcess, VertexSummary,
};
use sluice::cluster::remote::wire::{self, Link};
use sluice::cluster::slot_allocator::{SlotAllocator, SpreadOut};
use sluice::config::Configuration;
use sluice::error::{Error, FailureCause, Result, RpcError};
use sluice::ids::{JobId, TaskManagerId};
use sluice::metrics;
use std::collections::{BTreeMap, HashMap};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a started job binary has to announce its job.
const DRIVER_HELLO_TIMEOUT: Duration = Duration::from_secs(60);

/// Configuration keys a job inherits from the cluster's configuration file.
const JOB_KEY_PREFIXES: &[&str] =
    &["parallelism.default", "execution.", "state.", "restart-strategy", "pipeline.", "taskmanager.network."];

/// The JobManager's settings.
#[derive(Debug, Clone)]
pub struct JobManagerSettings {
    /// `host:port` of the RPC endpoint.
    pub rpc_bind: String,
    /// `host:port` of the REST API.
    pub rest_bind: String,
    /// Bearer token the REST API requires, if any.
    pub token: Option<String>,
    /// Where binaries and logs go.
    pub work_dir: PathBuf,
    /// Silence after which a TaskManager is lost.
    pub heartbeat_timeout: Duration,
    /// How long a job waits for slots.
    pub slot_timeout: Duration,
    /// `key=value` settings every job inherits.
    pub job_defaults: Vec<(String, String)>,
    /// Metrics settings passed on to job drivers.
    pub metrics_env: Vec<(String, String)>,
}

impl JobManagerSettings {
    /// From `conf`.
    pub fn from_config(conf: &Configuration) -> Result<Self> {
        let rpc_host = conf.get_str("jobmanager.rpc.address")?.unwrap_or_else(|| "127.0.0.1".into());
        let rest_host = conf.get_str("rest.address")?.unwrap_or_else(|| "127.0.0.1".into());
        Ok(JobManagerSettings {
            rpc_bind: format!("{rpc_host}:{}", conf.get_u32("jobmanager.rpc.port")?.unwrap_or(6123)),
            rest_bind: format!("{rest_host}:{}", conf.get_u32("rest.port")?.unwrap_or(8081)),
            token: conf.get_str("rest.token")?.filter(|t| !t.is_empty()),
            work_dir: crate::taskmanager_process::work_dir(conf)?.join("jobmanager"),
            heartbeat_timeout: conf.get_duration("heartbeat.timeout")?.unwrap_or(Duration::from_secs(10)),
            slot_timeout: conf.get_duration("slot.request.timeout")?.unwrap_or(Duration::from_secs(300)),
            job_defaults: conf
                .iter()
                .filter(|(k, _)| JOB_KEY_PREFIXES.iter().any(|p| k.starts_with(p)))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            metrics_env: sluice::cluster::remote::job_process::metrics_env(conf)?,
        })
    }
}

/// An uploaded job binary.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Content hash (hex).
    pub id: String,
    /// File name.
    pub name: String,
    /// Where it is stored.
    pub path: PathBuf,
    /// Its bytes, sent to TaskManagers.
    pub bytes: Arc<Vec<u8>>,
    /// Upload time, ms since the epoch.
    pub uploaded: u64,
}

/// A TaskManager as the resource manager sees it.
pub(crate) struct TaskManagerEntry {
    link: Link,
    /// Connection generation: a stale connection's end must not remove a
    /// TaskManager that registered again.
    generation: u64,
    pub(crate) slots: u32,
    pub(crate) last_heartbeat: Instant,
    pub(crate) metrics_address: Option<String>,
    /// Job processes here, by (job, seq).
    pub(crate) processes: BTreeMap<(JobId, u32), JobProcessEntry>,
}

/// A job process on a TaskManager.
#[derive(Debug, Clone)]
pub(crate) struct JobProcessEntry {
    /// Slots it hosts.
    pub(crate) slots: u32,
    /// Where it serves `/metrics`, once it has reported.
    pub(crate) metrics_address: Option<String>,
}

impl TaskManagerEntry {
    pub(crate) fn used(&self) -> u32 {
        self.processes.values().map(|p| p.slots).sum()
    }
}

/// A job as the dispatcher sees it.
pub(crate) struct JobEntry {
    pub(crate) id: JobId,
    pub(crate) name: String,
    pub(crate) status: JobStatus,
    pub(crate) start_time: u64,
    pub(crate) end_time: Option<u64>,
    pub(crate) artifact: Artifact,
    args: Vec<String>,
    conf_lines: String,
    driver: Option<Link>,
    driver_address: Option<String>,
    /// Where the driver serves `/metrics`.
    pub(crate) driver_metrics: Option<String>,
    pub(crate) required_slots: u32,
    pub(crate) vertices: Vec<VertexSummary>,
    pub(crate) details: Option<JobDetails>,
    pub(crate) failure: Option<String>,
    waiting_since: Option<Instant>,
    timeout_sent: bool,
    next_seq: u32,
    pub(crate) log: PathBuf,
    submitted: Instant,
}

/// The JobManager's state, shared by RPC threads, the ticker and REST.
pub struct Cluster {
    pub(crate) settings: JobManagerSettings,
    rpc_address: String,
    /// The REST endpoint's address (it also serves the JobManager's `/metrics`).
    pub(crate) rest_address: Option<String>,
    pub(crate) task_managers: BTreeMap<String, TaskManagerEntry>,
    pub(crate) jobs: BTreeMap<JobId, JobEntry>,
    pub(crate) artifacts: BTreeMap<String, Artifact>,
    drivers: HashMap<JobId, Child>,
    savepoints: HashMap<u64, Sender<std::result::Result<String, String>>>,
    next_id: u64,
}

/// A handle on the cluster state.
pub type SharedCluster = Arc<Mutex<Cluster>>;

/// Locks the cluster state.
pub fn lock(c: &SharedCluster) -> MutexGuard<'_, Cluster> {
    // A panic while holding the lock leaves consistent-enough bookkeeping;
    // keep serving rather than poisoning every later request.
    c.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Starts the RPC endpoint and the ticker; returns the shared state. The
/// REST API is started separately ([`crate::rest::serve`]).
pub fn start(settings: JobManagerSettings) -> Result<SharedCluster> {
    std::fs::create_dir_all(settings.work_dir.join("artifacts"))
        .map_err(|e| Error::io(format!("cannot create '{}'", settings.work_dir.display()), e))?;
    let listener = TcpListener::bind(&settings.rpc_bind).map_err(|e| {
        Error::io(format!("cannot bind the RPC endpoint {} (jobmanager.rpc.port in use?)", settings.rpc_bind), e)
    })?;
    let rpc_address = listener.local_addr().map_err(|e| Error::io("RPC endpoint", e))?.to_string();
    let cluster = Arc::new(Mutex::new(Cluster {
        settings,
        rpc_address,
        rest_address: None,
        task_managers: BTreeMap::new(),
        jobs: BTreeMap::new(),
        artifacts: BTreeMap::new(),
        drivers: HashMap::new(),
        savepoints: HashMap::new(),
        next_id: 1,
    }));
    let c = cluster.clone();
    std::thread::Builder::new()
        .name("rpc-accept".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(stream) = conn else { continue };
                let c = c.clone();
                let _ = std::thread::Builder::new().name("rpc".into()).spawn(move || {
                    if let Err(e) = serve_connection(stream, &c) {
                        tracing::warn!("RPC connection: {e}");
                    }
                });
            }
        })
        .map_err(|e| Error::io("cannot start a thread", e))?;
    let c = cluster.clone();
    std::thread::Builder::new()
        .name("jobmanager-tick".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(50));
            lock(&c).tick();
        })
        .map_err(|e| Error::io("cannot start a thread", e))?;
    Ok(cluster)
}

impl Cluster {
    /// The RPC endpoint's bound address.
    pub fn rpc_address(&self) -> &str {
        &self.rpc_address
    }

    /// Records where the REST endpoint (and the JobManager's `/metrics`) is.
    pub fn set_rest_address(&mut self, addr: String) {
        self.rest_address = Some(addr);
    }

    /// Asks every TaskManager to stop (they stop their job processes
    /// first); used when an application cluster ends.
    pub fn shut_down_task_managers(&mut self) {
        for (id, tm) in &self.task_managers {
            if let Err(e) = tm.link.send(&ToTaskManagerProcess::Shutdown) {
                tracing::warn!("cannot tell TaskManager {id} to shut down: {e}");
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

    /// Slots registered in total.
    pub(crate) fn total_slots(&self) -> u32 {
        self.task_managers.values().map(|t| t.slots).sum()
    }

    /// Slots not granted to a job.
    pub(crate) fn free_slots(&self) -> u32 {
        self.task_managers.values().map(|t| t.slots.saturating_sub(t.used())).sum()
    }

    /// Stores an uploaded binary; returns it.
    pub fn add_artifact(&mut self, name: &str, bytes: Vec<u8>) -> Result<Artifact> {
        let name = std::path::Path::new(name)
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty() && !n.starts_with('.'))
            .ok_or_else(|| Error::user(format!("'{name}' is not a usable file name")))?
            .to_string();
        let id = format!("{:016x}", sluice_checkpoint::key_group::stable_hash(&(bytes.as_slice(), name.as_str())));
        let dir = self.settings.work_dir.join("artifacts").join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("cannot create '{}'", dir.display()), e))?;
        let path = dir.join(&name);
        std::fs::write(&path, &bytes).map_err(|e| Error::io(format!("cannot write '{}'", path.display()), e))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| Error::io(format!("cannot make '{}' executable", path.display()), e))?;
        }
        let a = Artifact { id: id.clone(), name, path, bytes: Arc::new(bytes), uploaded: now_ms() };
        self.artifacts.insert(id, a.clone());
        Ok(a)
    }

    /// Starts a job from an uploaded binary: its driver process is spawned
    /// at once; the job then waits for slots.
    pub fn submit(
        &mut self,
        artifact_id: &str,
        args: Vec<String>,
        parallelism: Option<u32>,
        savepoint: Option<String>,
        allow_non_restored: bool,
    ) -> Result<JobId> {
        let artifact = self
            .artifacts
            .get(artifact_id)
            .cloned()
            .ok_or_else(|| Error::user(format!("no uploaded binary with id '{artifact_id}'; upload it first")))?;
        // It becomes a `key=value` line of the job's settings: no newline.
        if let Some(s) = &savepoint {
            sluice_checkpoint::names::check_path_text(s).map_err(|e| Error::user(e.to_string()))?;
        }
        let id = JobId::generate();
        let dir = self.settings.work_dir.join("jobs").join(id.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("cannot create '{}'", dir.display()), e))?;
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
        let conf_lines: String = conf.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let log = dir.join("driver.log");
        let out =
            std::fs::File::create(&log).map_err(|e| Error::io(format!("cannot create '{}'", log.display()), e))?;
        let err = out.try_clone().map_err(|e| Error::io("log file", e))?;
        let spawned = Command::new(&artifact.path)
            .args(&args)
            .current_dir(&dir)
            .env_remove("SLUICE_CONF_DIR")
            .envs(self.settings.metrics_env.iter().map(|(k, v)| (k, v)))
            .env(ROLE_VAR, "driver")
            .env(JOB_ID_VAR, id.to_string())
            .env(JOBMANAGER_VAR, &self.rpc_address)
            .env(CONF_VAR, &conf_lines)
            .env(HOST_VAR, self.rpc_address.rsplit_once(':').map(|(h, _)| h).unwrap_or("127.0.0.1"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn();
        let mut entry = JobEntry {
            id,
            name: artifact.name.clone(),
            status: JobStatus::Created,
            start_time: now_ms(),
            end_time: None,
            artifact,
            args,
            conf_lines,
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
        };
        match spawned {
            Ok(child) => {
                self.drivers.insert(id, child);
                tracing::info!("job {id} submitted: {} {:?}", entry.artifact.name, entry.args);
            }
            Err(e) => {
                entry.status = JobStatus::Failed;
                entry.end_time = Some(now_ms());
                entry.failure = Some(format!(
                    "cannot start the job binary '{}': {e} (is it an executable built for this machine?)",
                    entry.artifact.name
                ));
            }
        }
        self.jobs.insert(id, entry);
        Ok(id)
    }

    /// Asks a job's driver to cancel the job.
    pub fn cancel(&mut self, id: JobId) -> Result<()> {
        let job = self.jobs.get_mut(&id).ok_or_else(|| Error::user(format!("no job {id}")))?;
        if job.status.is_terminal() {
            return Err(Error::user(format!("job {id} has already ended ({})", job.status)));
        }
        match &job.driver {
            Some(link) => link.send(&ToDriver::CancelJob),
            None => {
                // Not started yet: stop its binary.
                if let Some(child) = self.drivers.get_mut(&id) {
                    let _ = child.kill();
                }
                self.end_job(id, JobStatus::Canceled, None);
                Ok(())
            }
        }
    }

    /// Sends a savepoint request to the job's driver; the answer arrives on
    /// the returned channel.
    pub fn request_savepoint(
        &mut self,
        id: JobId,
        dir: String,
    ) -> Result<crossbeam_channel::Receiver<std::result::Result<String, String>>> {
        let job = self.jobs.get(&id).ok_or_else(|| Error::user(format!("no job {id}")))?;
        if job.status != JobStatus::Running {
            return Err(Error::user(format!("job {id} is {}, a savepoint needs a RUNNING job", job.status)));
        }
        let link = job.driver.clone().ok_or_else(|| Error::user(format!("job {id} has no driver yet")))?;
        let request = self.next_id;
        self.next_id += 1;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.savepoints.insert(request, tx);
        link.send(&ToDriver::TriggerSavepoint { request, dir })?;
        Ok(rx)
    }

    fn end_job(&mut self, id: JobId, status: JobStatus, failure: Option<String>) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        if job.status.is_terminal() {
            return;
        }
        tracing::info!("job {id} ended: {status}{}", failure.as_deref().map(|f| format!(" ({f})")).unwrap_or_default());
        job.status = status;
        job.end_time = Some(now_ms());
        if job.failure.is_none() {
            job.failure = failure;
        }
        job.driver = None;
        for tm in self.task_managers.values_mut() {
            let before = tm.processes.len();
            tm.processes.retain(|(j, _), _| *j != id);
            if tm.processes.len() != before {
                let _ = tm.link.send(&ToTaskManagerProcess::StopJob { job: id });
            }
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        // TaskManagers whose heartbeats stopped.
        let timeout = self.settings.heartbeat_timeout;
        let silent: Vec<String> = self
            .task_managers
            .iter()
            .filter(|(_, t)| t.last_heartbeat.elapsed() > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            if let Some(tm) = self.task_managers.remove(&id) {
                eprintln!("TaskManager {id} sent no heartbeat for {timeout:?}: declared lost");
                tm.link.close();
            }
        }
        // Drivers that exited.
        let mut exited = Vec::new();
        for (id, child) in self.drivers.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                exited.push((*id, status.to_string()));
            }
        }
        for (id, status) in exited {
            self.drivers.remove(&id);
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
        // Drivers that never announced a job.
        let mute: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| {
                !j.status.is_terminal() && j.driver_address.is_none() && j.submitted.elapsed() > DRIVER_HELLO_TIMEOUT
            })
            .map(|j| j.id)
            .collect();
        for id in mute {
            if let Some(child) = self.drivers.get_mut(&id) {
                let _ = child.kill();
            }
            self.end_job(
                id,
                JobStatus::Failed,
                Some(format!(
                    "the binary started no Sluice job within {DRIVER_HELLO_TIMEOUT:?} (does its main call execute()?)"
                )),
            );
        }
        self.grant_slots(now);
        let m = metrics::global();
        m.task_managers.set(self.task_managers.len() as i64);
        m.slots_total.set(i64::from(self.total_slots()));
        m.slots_available.set(i64::from(self.free_slots()));
        m.running_jobs.set(self.jobs.values().filter(|j| j.status == JobStatus::Running).count() as i64);
    }

    /// Gives every job that lacks slots what it lacks, all at once when
    /// enough are free; fails jobs that waited longer than the timeout.
    fn grant_slots(&mut self, now: Instant) {
        let total = self.total_slots();
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in ids {
            let Some(job) = self.jobs.get(&id) else { continue };
            if job.status.is_terminal() || job.driver_address.is_none() {
                continue;
            }
            let held: u32 = self
                .task_managers
                .values()
                .flat_map(|t| t.processes.iter())
                .filter(|((j, _), _)| *j == id)
                .map(|(_, p)| p.slots)
                .sum();
            let lacking = job.required_slots.saturating_sub(held);
            if lacking == 0 {
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.waiting_since = None;
                }
                continue;
            }
            if self.free_slots() < lacking {
                let Some(job) = self.jobs.get_mut(&id) else { continue };
                let since = *job.waiting_since.get_or_insert(now);
                let waited = now.duration_since(since);
                if waited >= self.settings.slot_timeout && !job.timeout_sent {
                    job.timeout_sent = true;
                    let cause = FailureCause::NotEnoughSlots {
                        required: job.required_slots,
                        available: total,
                        waited_ms: waited.as_millis() as u64,
                    };
                    if let Some(link) = &job.driver {
                        let _ = link.send(&ToDriver::FailJob(cause));
                    }
                }
                continue;
            }
            let free: Vec<(TaskManagerId, u32)> = self
                .task_managers
                .iter()
                .map(|(id, tm)| (TaskManagerId(id.clone()), tm.slots.saturating_sub(tm.used())))
                .collect();
            let Some(grant) = SpreadOut.allocate(&free, lacking) else { continue };
            for (tm_id, slots) in grant {
                self.start_job_process(id, &tm_id.0, slots);
            }
        }
    }

    fn start_job_process(&mut self, id: JobId, tm_id: &str, slots: u32) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let Some(driver) = job.driver_address.clone() else { return };
        let seq = job.next_seq;
        job.next_seq += 1;
        job.waiting_since = None;
        let spec = JobProcessSpec {
            job: id,
            seq,
            artifact_id: job.artifact.id.clone(),
            artifact_name: job.artifact.name.clone(),
            binary: job.artifact.bytes.as_ref().clone(),
            args: job.args.clone(),
            env: vec![(DRIVER_VAR.into(), driver), (CONF_VAR.into(), job.conf_lines.clone())],
            slots,
        };
        let Some(tm) = self.task_managers.get_mut(tm_id) else { return };
        tm.processes.insert((id, seq), JobProcessEntry { slots, metrics_address: None });
        tracing::info!("job {id}: {slots} slots on {tm_id} (process {seq})");
        if let Err(e) = tm.link.send(&ToTaskManagerProcess::StartJobProcess(Box::new(spec))) {
            tracing::warn!("cannot reach TaskManager {tm_id}: {e}");
            tm.processes.remove(&(id, seq));
        }
    }
}

/// The last `n` lines of a log file.
pub(crate) fn log_tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn serve_connection(stream: TcpStream, cluster: &SharedCluster) -> Result<()> {
    let (link, mut reader) = Link::new(stream)?;
    match wire::read_frame::<Hello>(&mut reader)? {
        Some(Hello::TaskManager(TaskManagerHello { id, slots, metrics_address })) => {
            serve_task_manager(link, reader, cluster, id.0, slots, metrics_address)
        }
        Some(Hello::Driver(DriverHello { job, name, required_slots, driver_address, vertices, metrics_address })) => {
            {
                let mut c = lock(cluster);
                let Some(entry) = c.jobs.get_mut(&job) else {
                    return Err(RpcError::Protocol {
                        peer: link.peer().to_string(),
                        what: format!("announced job {job}, which this JobManager did not start"),
                    }
                    .into());
                };
                entry.name = name;
                entry.required_slots = required_slots;
                entry.driver_address = Some(driver_address);
                entry.driver_metrics = metrics_address;
                entry.vertices = vertices;
                entry.driver = Some(link.clone());
                entry.waiting_since = Some(Instant::now());
            }
            serve_driver(reader, cluster, job)
        }
        None => Ok(()),
    }
}

fn serve_task_manager(
    link: Link,
    mut reader: TcpStream,
    cluster: &SharedCluster,
    id: String,
    slots: u32,
    metrics_address: Option<String>,
) -> Result<()> {
    let generation = {
        let mut c = lock(cluster);
        if c.task_managers.contains_key(&id) {
            let _ = link.send(&ToTaskManagerProcess::Refused(format!("a TaskManager with id '{id}' is registered")));
            return Ok(());
        }
        let generation = c.next_id;
        c.next_id += 1;
        c.task_managers.insert(
            id.clone(),
            TaskManagerEntry {
                link: link.clone(),
                generation,
                slots,
                last_heartbeat: Instant::now(),
                metrics_address,
                processes: BTreeMap::new(),
            },
        );
        link.send(&ToTaskManagerProcess::Registered)?;
        eprintln!("TaskManager {id} registered with {slots} slots");
        generation
    };
    while let Ok(Some(msg)) = wire::read_frame::<FromTaskManagerProcess>(&mut reader) {
        let mut c = lock(cluster);
        let Some(tm) = c.task_managers.get_mut(&id).filter(|t| t.generation == generation) else { break };
        tm.last_heartbeat = Instant::now();
        match msg {
            FromTaskManagerProcess::JobProcessExited { job, seq, status } => {
                if tm.processes.remove(&(job, seq)).is_some() {
                    eprintln!("process {seq} of job {job} on TaskManager {id} ended: {status}");
                }
            }
            FromTaskManagerProcess::JobProcessStarted(report) => {
                if let Some(p) = tm.processes.get_mut(&(report.job, report.seq)) {
                    p.metrics_address = report.metrics_address;
                }
            }
            FromTaskManagerProcess::Heartbeat => {}
        }
    }
    let mut c = lock(cluster);
    if c.task_managers.get(&id).is_some_and(|t| t.generation == generation) {
        c.task_managers.remove(&id);
        eprintln!("TaskManager {id} disconnected: its slots are gone");
    }
    Ok(())
}

fn serve_driver(mut reader: TcpStream, cluster: &SharedCluster, job: JobId) -> Result<()> {
    loop {
        let msg = match wire::read_frame::<FromDriver>(&mut reader) {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => return Ok(()),
        };
        let mut c = lock(cluster);
        match msg {
            FromDriver::JobStatus(details) => {
                if let Some(j) = c.jobs.get_mut(&job).filter(|j| !j.status.is_terminal()) {
                    j.status = details.status;
                    j.details = Some(details);
                }
            }
            FromDriver::JobEnded { status, failure, restarts } => {
                if let Some(j) = c.jobs.get_mut(&job) {
                    if let Some(d) = j.details.as_mut() {
                        d.restarts = restarts;
                        d.status = status;
                    }
                }
                c.end_job(job, status, failure.map(|f| f.to_string()));
            }
            FromDriver::SavepointDone { request, result } => {
                if let Some(tx) = c.savepoints.remove(&request) {
                    let _ = tx.send(result);
                }
            }
        }
    }
}
