//! `sluice taskmanager`: registers its slots with the JobManager process,
//! heartbeats, and starts the job processes the JobManager asks for (the
//! job's binary in task mode, one process per job and slot grant), killing
//! them when told or when it loses the JobManager.
//!
//! It also listens on a local endpoint (an ephemeral port of
//! `taskmanager.host`) where its job processes report, once, where they
//! serve their `/metrics`; it forwards that to the JobManager.

use sluice::cluster::remote::job_process::{
    ADVERTISED_HOST_VAR, CONF_VAR, DRIVER_VAR, HOST_VAR, JOB_ID_VAR, JOB_SECRET_VAR, PROCESS_SEQ_VAR, ROLE_VAR,
    SLOTS_VAR, TASKMANAGER_ENDPOINT_VAR, TASKMANAGER_ID_VAR,
};
use sluice::cluster::remote::messages::{
    ArtifactFrame, ArtifactRequest, FromTaskManagerProcess, Hello, JobProcessSpec, JobProcessStarted, TaskManagerHello,
    ToTaskManagerProcess,
};
use sluice::cluster::remote::wire::{self, Link};
use sluice::config::Configuration;
use sluice::error::{Error, Result, RpcError};
use sluice::ids::{JobId, TaskManagerId};
use sluice::metrics::MetricsServer;
use sluice::transport::{Admission, JobSecret, SecureStream, Security, HELLO_TIMEOUT};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Children = Arc<Mutex<HashMap<(JobId, u32), Child>>>;
/// The secrets of the jobs that have processes here (their reports must prove them).
type Secrets = Arc<Mutex<HashMap<JobId, JobSecret>>>;

/// Set (to any value) by `sluice run-application` for its TaskManagers:
/// the TaskManager stops its job processes and exits when its parent (the
/// application's client) goes away.
pub const EXIT_WITH_PARENT_VAR: &str = "SLUICE_EXIT_WITH_PARENT";

/// The connection to the JobManager while registered.
type CurrentLink = Arc<Mutex<Option<Link>>>;

/// A TaskManager's settings, read from the configuration.
#[derive(Debug, Clone)]
pub struct TaskManagerSettings {
    /// Its id.
    pub id: String,
    /// Slots it offers.
    pub slots: u32,
    /// The JobManager's RPC address (with high availability: the leader's,
    /// looked up in the coordination service before each registration).
    pub jobmanager: String,
    /// Where binaries and logs go.
    pub work_dir: PathBuf,
    /// Host job processes advertise (`taskmanager.host`).
    pub host: String,
    /// Host job processes bind to (`taskmanager.bind-host`, else `host`).
    pub bind_host: String,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// How long to keep trying to reach the JobManager.
    pub registration_timeout: Duration,
    /// Metrics settings passed on to job processes.
    pub metrics_env: Vec<(String, String)>,
    /// How connections are secured (`security.ssl.internal.*`); job
    /// processes started here get the same settings.
    pub security: Security,
    /// High availability (`high-availability.*`): where to find the leader.
    pub ha: crate::ha::HaSettings,
    /// What the work directory keeps (`taskmanager.artifacts.retained`,
    /// `taskmanager.jobs.retained`).
    pub retention: crate::retention::Retention,
}

impl TaskManagerSettings {
    /// From `conf` (keys `taskmanager.*`, `jobmanager.rpc.*`, `heartbeat.*`, `cluster.work-dir`).
    pub fn from_config(conf: &Configuration) -> Result<Self> {
        let id =
            conf.get_str("taskmanager.resource-id")?.unwrap_or_else(|| format!("taskmanager-{}", std::process::id()));
        let host = conf.get_str("jobmanager.rpc.address")?.unwrap_or_else(|| "127.0.0.1".into());
        let port = conf.get_u32("jobmanager.rpc.port")?.unwrap_or(6123);
        Ok(TaskManagerSettings {
            work_dir: work_dir(conf)?.join(&id),
            id,
            slots: conf.get_u32("taskmanager.numberOfTaskSlots")?.unwrap_or(1),
            jobmanager: format!("{host}:{port}"),
            host: conf.get_str("taskmanager.host")?.unwrap_or_else(|| "127.0.0.1".into()),
            bind_host: match conf.get_str("taskmanager.bind-host")? {
                Some(h) => h,
                None => conf.get_str("taskmanager.host")?.unwrap_or_else(|| "127.0.0.1".into()),
            },
            heartbeat: conf.get_duration("heartbeat.interval")?.unwrap_or(Duration::from_secs(1)),
            registration_timeout: conf
                .get_duration("taskmanager.registration.timeout")?
                .unwrap_or(Duration::from_secs(300)),
            metrics_env: sluice::cluster::remote::job_process::metrics_env(conf)?,
            retention: crate::retention::Retention {
                artifacts: conf.get_u32("taskmanager.artifacts.retained")?.unwrap_or(5) as usize,
                jobs: conf.get_u32("taskmanager.jobs.retained")?.unwrap_or(50) as usize,
            },
            security: Security::from_config(conf)?,
            ha: crate::ha::HaSettings::from_config(conf)?,
        })
    }
}

/// `cluster.work-dir`, or by default `sluice-cluster-<uid>` in the temporary
/// directory; created private (0700). Job binaries run from here, so it
/// must belong to this user and be closed to others (else an error says how
/// to fix it): another local user must not plant a binary in it.
pub(crate) fn work_dir(conf: &Configuration) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let uid = own_uid()?;
    let dir = conf
        .get_str("cluster.work-dir")?
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("sluice-cluster-{uid}")));
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) => return Err(Error::io(format!("cannot create the work directory '{}'", dir.display()), e)),
    }
    let meta = std::fs::symlink_metadata(&dir)
        .map_err(|e| Error::io(format!("cannot inspect the work directory '{}'", dir.display()), e))?;
    if !meta.is_dir() || meta.uid() != uid {
        return Err(Error::user(format!(
            "the work directory '{}' is not a directory of this user (uid {uid}); another user may have planted it. \
             Remove it or set cluster.work-dir to a directory of your own",
            dir.display()
        )));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(Error::user(format!(
            "the work directory '{}' is writable by other users (mode {:o}); run chmod 700 on it or set \
             cluster.work-dir to a private directory",
            dir.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    Ok(dir)
}

/// This process's (effective) user id: the owner of `/proc/self`.
fn own_uid() -> Result<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid()).map_err(|e| Error::io("cannot read /proc/self", e))
}

/// Runs a TaskManager until the JobManager tells it to shut down; it
/// re-registers when the JobManager goes away and comes back.
pub fn run(settings: TaskManagerSettings, metrics: Option<&MetricsServer>) -> Result<()> {
    std::fs::create_dir_all(&settings.work_dir)
        .map_err(|e| Error::io(format!("cannot create '{}'", settings.work_dir.display()), e))?;
    let children: Children = Arc::default();
    if std::env::var_os(EXIT_WITH_PARENT_VAR).is_some() {
        let children = children.clone();
        sluice::cluster::remote::job_process::watch_parent("the application client", "the TaskManager", move || {
            kill_all(&children)
        });
    }
    check_addresses(&settings)?;
    let current: CurrentLink = Arc::default();
    let secrets: Secrets = Arc::default();
    let endpoint = start_local_endpoint(&settings, children.clone(), secrets.clone(), current.clone())?;
    let ha = settings.ha.services()?;
    let mut settings = settings;
    let mut refused_since: Option<Instant> = None;
    loop {
        let stream = match &ha {
            None => {
                wire::connect(&settings.jobmanager, "JobManager", settings.registration_timeout, &settings.security)?
            }
            Some(ha) => {
                let (address, stream) = crate::ha::connect_to_leader(
                    ha.as_ref(),
                    "JobManager",
                    settings.registration_timeout,
                    &settings.security,
                )?;
                settings.jobmanager = address;
                stream
            }
        };
        let (link, mut reader) = Link::new(stream)?;
        link.send(&Hello::TaskManager(TaskManagerHello {
            id: TaskManagerId(settings.id.clone()),
            slots: settings.slots,
            metrics_address: metrics.map(|m| m.local_addr().to_string()),
        }))?;
        match wire::read_frame::<ToTaskManagerProcess>(&mut reader)? {
            Some(ToTaskManagerProcess::Registered) => {
                eprintln!(
                    "TaskManager {} registered at {} with {} slots",
                    settings.id, settings.jobmanager, settings.slots
                )
            }
            Some(ToTaskManagerProcess::Refused(why)) => {
                // Usually our previous incarnation, killed a moment ago, whose
                // connection the JobManager has not seen close yet.
                if refused_since.get_or_insert_with(Instant::now).elapsed() > settings.registration_timeout {
                    return Err(RpcError::Refused { peer: "JobManager".into(), reason: why }.into());
                }
                eprintln!("the JobManager refused the registration ({why}); retrying");
                std::thread::sleep(Duration::from_millis(300));
                continue;
            }
            other => {
                return Err(RpcError::Protocol {
                    peer: format!("the JobManager at {}", settings.jobmanager),
                    what: format!("answered the registration with {other:?}"),
                }
                .into())
            }
        }
        if let Ok(mut c) = current.lock() {
            *c = Some(link.clone());
        }
        let beat = spawn_heartbeats(link.clone(), settings.heartbeat);
        let stop = Arc::new(AtomicBool::new(false));
        let reaper = spawn_reaper(children.clone(), secrets.clone(), link.clone(), stop.clone());
        let watch =
            ha.as_ref().map(|ha| watch_leader(ha.clone(), settings.jobmanager.clone(), link.clone(), stop.clone()));
        let shutdown = serve(&settings, &endpoint, &mut reader, &children, &secrets, &link);
        if let Ok(mut c) = current.lock() {
            *c = None;
        }
        link.close();
        stop.store(true, Ordering::Relaxed);
        let _ = beat.join();
        let _ = reaper.join();
        if let Some(w) = watch {
            let _ = w.join();
        }
        kill_all(&children);
        if shutdown {
            eprintln!("TaskManager {} shuts down", settings.id);
            return Ok(());
        }
        eprintln!("TaskManager {} lost the JobManager; its job processes were stopped; registering again", settings.id);
    }
}

/// Handles the JobManager's commands; `true` on `Shutdown`.
fn serve(
    settings: &TaskManagerSettings,
    endpoint: &str,
    reader: &mut SecureStream,
    children: &Children,
    secrets: &Secrets,
    link: &Link,
) -> bool {
    loop {
        match wire::read_frame::<ToTaskManagerProcess>(reader) {
            Ok(Some(ToTaskManagerProcess::StartJobProcess(spec))) => {
                if let Err(e) = start_job_process(settings, endpoint, &spec, children, secrets) {
                    eprintln!("cannot start a process of job {}: {e}", spec.job);
                    let _ = link.send(&FromTaskManagerProcess::JobProcessExited {
                        job: spec.job,
                        seq: spec.seq,
                        status: format!("could not start: {e}"),
                    });
                }
            }
            Ok(Some(ToTaskManagerProcess::StopJob { job })) => {
                if let Ok(mut c) = children.lock() {
                    for ((j, _), child) in c.iter_mut().filter(|((j, _), _)| *j == job) {
                        tracing::info!("stopping the process of job {j}");
                        let _ = child.kill();
                    }
                }
            }
            Ok(Some(ToTaskManagerProcess::Logs { request, what })) => {
                let answer = crate::task_logs::answer(&settings.work_dir, &what);
                let _ = link.send(&FromTaskManagerProcess::Logs { request, answer });
            }
            Ok(Some(ToTaskManagerProcess::Shutdown)) => return true,
            Ok(Some(other)) => tracing::debug!("TaskManager ignores {other:?}"),
            Ok(None) | Err(_) => return false,
        }
    }
}

fn start_job_process(
    settings: &TaskManagerSettings,
    endpoint: &str,
    spec: &JobProcessSpec,
    children: &Children,
    secrets: &Secrets,
) -> Result<()> {
    let secret =
        spec.env.iter().find(|(k, _)| k == JOB_SECRET_VAR).and_then(|(_, v)| JobSecret::from_hex(v)).ok_or_else(
            || RpcError::Protocol {
                peer: "the JobManager".into(),
                what: format!("sent no job secret for job {}", spec.job),
            },
        )?;
    let binary = install_artifact(settings, spec, &secret)?;
    let mut running: std::collections::HashSet<String> =
        children.lock().unwrap_or_else(|p| p.into_inner()).keys().map(|(job, seq)| format!("{job}-{seq}")).collect();
    running.insert(format!("{}-{}", spec.job, spec.seq));
    crate::retention::prune(&settings.work_dir, settings.retention, &running);
    let dir = settings.work_dir.join("jobs").join(format!("{}-{}", spec.job, spec.seq));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("cannot create '{}'", dir.display()), e))?;
    let log = |name: &str| {
        std::fs::File::create(dir.join(name))
            .map_err(|e| Error::io(format!("cannot create a log in '{}'", dir.display()), e))
    };
    let mut cmd = Command::new(&binary);
    cmd.args(&spec.args)
        .current_dir(&dir)
        .env_remove("SLUICE_CONF_DIR")
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .envs(settings.metrics_env.iter().map(|(k, v)| (k, v)))
        .env(CONF_VAR, own_security(spec, &settings.security))
        .env(ROLE_VAR, "task")
        .env(JOB_ID_VAR, spec.job.to_string())
        .env(TASKMANAGER_ID_VAR, format!("{}/{}-{}", settings.id, short(spec.job), spec.seq))
        .env(SLOTS_VAR, spec.slots.to_string())
        .env(PROCESS_SEQ_VAR, spec.seq.to_string())
        .env(TASKMANAGER_ENDPOINT_VAR, endpoint)
        .env(HOST_VAR, &settings.bind_host)
        .env(ADVERTISED_HOST_VAR, &settings.host)
        .stdin(Stdio::null())
        .stdout(log("taskmanager.out")?)
        .stderr(log("taskmanager.log")?);
    if !spec.env.iter().any(|(k, _)| k == DRIVER_VAR) {
        return Err(RpcError::Protocol {
            peer: "the JobManager".into(),
            what: format!("sent no driver address for job {}", spec.job),
        }
        .into());
    }
    // Spawned under the lock: the process's report (see
    // `start_local_endpoint`) must find it registered.
    // A thread that panicked holding the table left it consistent (inserts
    // and removals are single calls).
    let mut c = children.lock().unwrap_or_else(|p| p.into_inner());
    let child = cmd.spawn().map_err(|e| Error::io(format!("cannot run '{}'", binary.display()), e))?;
    tracing::info!(
        "started process {} of job {} with {} slots (logs in {})",
        child.id(),
        spec.job,
        spec.slots,
        dir.display()
    );
    c.insert((spec.job, spec.seq), child);
    if let Ok(mut s) = secrets.lock() {
        s.insert(spec.job, secret);
    }
    Ok(())
}

/// The job's configuration lines with this TaskManager's `security.*`
/// settings instead of the JobManager's (certificate paths are per host).
fn own_security(spec: &JobProcessSpec, security: &Security) -> String {
    let from_jm = spec.env.iter().find(|(k, _)| k == CONF_VAR).map(|(_, v)| v.as_str()).unwrap_or("");
    let mut lines: String =
        from_jm.lines().filter(|l| !l.trim_start().starts_with("security.")).map(|l| format!("{l}\n")).collect();
    for (k, v) in security.config_lines() {
        lines.push_str(&format!("{k}={v}\n"));
    }
    lines
}

/// Checks, before registering, that job processes will be able to bind
/// `taskmanager.bind-host` (else `taskmanager.host`) and that
/// `taskmanager.host` resolves: a wrong address is an error naming its key
/// now, not a job that fails later on every slot of this TaskManager.
fn check_addresses(settings: &TaskManagerSettings) -> Result<()> {
    use std::net::ToSocketAddrs;
    let key = if settings.bind_host == settings.host { "taskmanager.host" } else { "taskmanager.bind-host" };
    let bind = format!("{}:0", settings.bind_host);
    settings.security.check_bind("data server of this TaskManager's job processes", &bind)?;
    std::net::TcpListener::bind(&bind).map_err(|e| {
        Error::user(format!(
            "{key} '{}' cannot be bound on this host ({e}): set it to an address of this host (or 0.0.0.0 for \
             taskmanager.bind-host)",
            settings.bind_host
        ))
    })?;
    match (settings.host.as_str(), 0).to_socket_addrs().map(|mut a| a.next().is_some()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::user(format!("taskmanager.host '{}' resolves to no address", settings.host))),
        Err(e) => Err(Error::user(format!(
            "taskmanager.host '{}' does not resolve ({e}): set it to the address other hosts reach this \
             TaskManager at",
            settings.host
        ))),
    }
}

/// Listens where this TaskManager's job processes report their metrics
/// address; returns the endpoint's address.
fn start_local_endpoint(
    settings: &TaskManagerSettings,
    children: Children,
    secrets: Secrets,
    current: CurrentLink,
) -> Result<String> {
    // Only this host's job processes report here: loopback.
    let bind = "127.0.0.1:0".to_string();
    settings.security.check_bind("TaskManager's local endpoint", &bind)?;
    let listener = std::net::TcpListener::bind(&bind)
        .map_err(|e| Error::io(format!("cannot bind the TaskManager's local endpoint on {bind}"), e))?;
    let addr = listener.local_addr().map_err(|e| Error::io("local endpoint", e))?.to_string();
    let security = settings.security.clone();
    std::thread::Builder::new()
        .name("job-process-reports".into())
        .spawn(move || {
            // Reports are one frame each: a few at a time is plenty.
            let admission = Admission::new(64);
            for conn in listener.incoming() {
                let Ok(socket) = conn else { continue };
                let Some(admitted) = admission.try_admit() else { continue };
                let (children, secrets, current, security) =
                    (children.clone(), secrets.clone(), current.clone(), security.clone());
                let _ = std::thread::Builder::new().name("job-process-report".into()).spawn(move || {
                    let _admitted = admitted;
                    let mut stream = match security.accept(socket) {
                        Ok(s) => s,
                        Err(e) => return tracing::warn!("a job process's report: the secure handshake failed: {e}"),
                    };
                    let _ = stream.set_read_timeout(Some(HELLO_TIMEOUT));
                    match wire::read_frame::<JobProcessStarted>(&mut stream) {
                        Ok(Some(report)) => forward_report(report, &children, &secrets, &current),
                        Ok(None) => {}
                        Err(e) => tracing::warn!("a job process's report: {e}"),
                    }
                });
            }
        })
        .map_err(|e| Error::io("cannot start a thread", e))?;
    Ok(addr)
}

/// Passes a job process's report on to the JobManager, if the process is
/// one of ours and proves its job (a stray or stale report is dropped).
fn forward_report(report: JobProcessStarted, children: &Children, secrets: &Secrets, current: &CurrentLink) {
    let (job, seq) = (report.job, report.seq);
    let proven = secrets.lock().map(|s| s.get(&job).is_some_and(|k| k.matches(&report.secret))).unwrap_or(false);
    if !proven {
        tracing::warn!("a report for process {seq} of job {job} without the job's secret; dropped");
        return;
    }
    let ours = children.lock().map(|c| c.contains_key(&(job, seq))).unwrap_or(false);
    if !ours {
        tracing::debug!("report of process {seq} of job {job}, which is not running here; dropped");
        return;
    }
    let link = current.lock().ok().and_then(|c| c.clone());
    if let Some(link) = link {
        if let Err(e) = link.send(&FromTaskManagerProcess::JobProcessStarted(report)) {
            tracing::warn!("cannot forward a job process's report to the JobManager: {e}");
        }
    }
}

/// The job binary of `spec`: a cached copy whose SHA-256 matches, else
/// fetched from the JobManager ([`Hello::FetchArtifact`], proving the job's
/// `secret`), written under a random name with `O_EXCL|O_NOFOLLOW`, checked
/// against its SHA-256 and size, then moved into place. A file planted in
/// the work directory never runs.
fn install_artifact(settings: &TaskManagerSettings, spec: &JobProcessSpec, secret: &JobSecret) -> Result<PathBuf> {
    use sha2::Digest;
    use std::io::Write;
    let protocol = |what: String| -> Error { RpcError::Protocol { peer: "the JobManager".into(), what }.into() };
    let hash = &spec.artifact_id;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(protocol(format!("sent '{hash}' as a binary's SHA-256")));
    }
    let name = &spec.artifact_name;
    if Path::new(name).file_name().and_then(|n| n.to_str()) != Some(name.as_str()) || name.starts_with('.') {
        return Err(protocol(format!("sent '{name}' as a binary's file name")));
    }
    let dir = settings.work_dir.join("artifacts").join(hash);
    let path = dir.join(name);
    if std::fs::read(&path).is_ok_and(|cached| sluice::transport::sha256_hex(&cached) == *hash) {
        crate::retention::touch(&dir);
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("cannot create '{}'", dir.display()), e))?;
    let tmp = dir.join(format!(".{}.{}", name, sluice::transport::random_hex(8)?));
    let mut file = crate::create_private_file(&tmp)?;
    let fetched = (|| -> Result<()> {
        let mut stream =
            wire::connect(&settings.jobmanager, "JobManager", Duration::from_secs(30), &settings.security)?;
        let request = ArtifactRequest { job: spec.job, secret: secret.clone(), sha256: hash.clone() };
        wire::write_frame(&mut stream, &Hello::FetchArtifact(request))?;
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        loop {
            match wire::read_frame::<ArtifactFrame>(&mut stream)? {
                Some(ArtifactFrame::Chunk(bytes)) => {
                    size += bytes.len() as u64;
                    if size > spec.artifact_size {
                        return Err(protocol(format!("sent more than the {} bytes of '{name}'", spec.artifact_size)));
                    }
                    hasher.update(&bytes);
                    file.write_all(&bytes).map_err(|e| Error::io(format!("cannot write '{}'", tmp.display()), e))?;
                }
                Some(ArtifactFrame::End) => break,
                Some(ArtifactFrame::Refused(why)) => {
                    return Err(protocol(format!("refused the binary '{name}': {why}")))
                }
                None => return Err(protocol(format!("closed the connection before the end of '{name}'"))),
            }
        }
        let got: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if got != *hash || size != spec.artifact_size {
            return Err(protocol(format!("sent a binary '{name}' that does not match its SHA-256 and size")));
        }
        file.sync_all().map_err(|e| Error::io(format!("cannot write '{}'", tmp.display()), e))
    })();
    drop(file);
    if let Err(e) = fetched {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // A rename replaces a running binary's directory entry, not its content (no ETXTBSY).
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(format!("cannot move '{}' into place", path.display()), e))?;
    Ok(path)
}

pub(crate) fn short(job: JobId) -> String {
    job.to_string()[..8].to_string()
}

fn spawn_heartbeats(link: Link, every: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || loop {
        std::thread::sleep(every);
        if link.send(&FromTaskManagerProcess::Heartbeat).is_err() {
            return;
        }
    })
}

/// Reports job processes that ended, and forgets the secret of a job
/// without processes here; stops with the connection.
/// With high availability: leaves the JobManager at `registered` (closes
/// `link`) once etcd names another leader, so that a leader that froze or
/// was cut off from etcd, and was replaced, loses its TaskManagers even if
/// their connection to it stays open.
fn watch_leader(
    ha: Arc<dyn crate::ha::HighAvailabilityServices>,
    registered: String,
    link: Link,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            if let Ok(Some(leader)) = ha.leader() {
                if leader.rpc_address != registered {
                    eprintln!(
                        "the cluster's leader is now {} at {}; leaving the JobManager at {registered}",
                        leader.id, leader.rpc_address
                    );
                    link.close();
                    return;
                }
            }
        }
    })
}

fn spawn_reaper(
    children: Children,
    secrets: Secrets,
    link: Link,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || loop {
        let started = Instant::now();
        let mut ended = Vec::new();
        if let Ok(mut c) = children.lock() {
            c.retain(|(job, seq), child| match child.try_wait() {
                Ok(Some(status)) => {
                    ended.push((*job, *seq, status.to_string()));
                    false
                }
                _ => true,
            });
            if !ended.is_empty() {
                if let Ok(mut s) = secrets.lock() {
                    forget_jobs_without_processes(&mut s, &c);
                }
            }
        }
        for (job, seq, status) in ended {
            tracing::info!("process {seq} of job {job} ended: {status}");
            if link.send(&FromTaskManagerProcess::JobProcessExited { job, seq, status }).is_err() {
                return;
            }
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50).saturating_sub(started.elapsed()));
    })
}

/// Drops the secret of every job that has no process in `children` any
/// more: a report for it can no longer be proven (a process started for it
/// later brings its secret again).
fn forget_jobs_without_processes<C>(secrets: &mut HashMap<JobId, JobSecret>, children: &HashMap<(JobId, u32), C>) {
    secrets.retain(|job, _| children.keys().any(|(j, _)| j == job));
}

fn kill_all(children: &Children) {
    if let Ok(mut c) = children.lock() {
        for (_, mut child) in c.drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod work_dir_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_job_without_processes_loses_its_secret() {
        let (a, b) = (JobId::generate(), JobId::generate());
        let mut secrets: HashMap<JobId, JobSecret> =
            [(a, JobSecret::generate().unwrap()), (b, JobSecret::generate().unwrap())].into();
        let children: HashMap<(JobId, u32), ()> = [((a, 2), ())].into();
        forget_jobs_without_processes(&mut secrets, &children);
        assert!(secrets.contains_key(&a), "job a still has process 2 here");
        assert!(!secrets.contains_key(&b), "job b has no process here any more");
    }

    #[test]
    fn work_directories_are_private_and_a_shared_one_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let mut conf = Configuration::new();
        let fresh = base.path().join("fresh");
        conf.set("cluster.work-dir", fresh.to_str().unwrap()).unwrap();
        let dir = work_dir(&conf).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let shared = base.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        conf.set("cluster.work-dir", shared.to_str().unwrap()).unwrap();
        let e = work_dir(&conf).unwrap_err().to_string();
        assert!(e.contains("writable by other users") && e.contains("chmod 700"), "{e}");
    }
}
