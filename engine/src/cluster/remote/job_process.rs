//! The job binary inside a cluster. The dispatcher starts it as the job's
//! *driver* (its job master: scheduling, checkpoint coordination, failover);
//! every TaskManager that gives the job slots starts it as a *task process*
//! hosting those slots. Both rebuild the same job graph from the same binary
//! and arguments, so only ids and placements travel between them.
//!
//! The role comes from the environment the cluster sets
//! ([`ROLE_VAR`]); a binary started by hand has no role and runs locally.
//!
//! Every job process serves its own `/metrics` (operator, checkpoint and
//! connector metrics live here, not in the TaskManager or JobManager) on the
//! first free port of the cluster's `metrics.reporter.prom.port` range, or
//! an ephemeral port without one, and reports the address: the driver in
//! its hello to the JobManager, a task process to its TaskManager, which
//! passes it on. The JobManager lists them all for Prometheus at
//! `/metrics/targets`.

use super::driver_fence::{FenceAnswers, RemoteFence};
use super::messages::{DriverHello, FromDriver, Hello, JobProcessStarted, TaskProcessHello, ToDriver, VertexSummary};
use super::wire::{self, Link, LinkTransport};
use crate::cluster::fence::CheckpointFence;
use crate::cluster::gateway::Gateway;
use crate::cluster::inbox::ToJobManager;
use crate::cluster::job_graphs::JobGraphs;
use crate::cluster::minicluster::{JobExecutionResult, MiniCluster};
use crate::cluster::protocol::{FromTaskManager, JobDetails, TaskManagerRegistration, ToTaskManager};
use crate::cluster::taskmanager::TaskManager;
use crate::error::{Error, Result, RpcError};
use crate::graph::JobGraph;
use crate::ids::{JobId, TaskManagerId};
use crate::metrics::MetricsServer;
use crate::runtime::net::DataServer;
use crate::runtime::shuffle::Shuffle;
use crate::transport::{
    Admission, JobSecret, SecureStream, Security, SecurityError, CONNECTION_THREAD_STACK, HELLO_TIMEOUT,
    MAX_CONNECTIONS,
};
use crossbeam_channel::Sender;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Environment variable naming the role: `driver` or `task`.
pub const ROLE_VAR: &str = "SLUICE_CLUSTER_ROLE";
/// The job id the cluster gave the job.
pub const JOB_ID_VAR: &str = "SLUICE_JOB_ID";
/// Driver: the JobManager process's RPC address.
pub const JOBMANAGER_VAR: &str = "SLUICE_JOBMANAGER_RPC";
/// Task process: its driver's address.
pub const DRIVER_VAR: &str = "SLUICE_DRIVER";
/// Task process: its TaskManager id.
pub const TASKMANAGER_ID_VAR: &str = "SLUICE_TASKMANAGER_ID";
/// Task process: slots it hosts.
pub const SLOTS_VAR: &str = "SLUICE_SLOTS";
/// Task process: its sequence number among the job's processes on its TaskManager.
pub const PROCESS_SEQ_VAR: &str = "SLUICE_PROCESS_SEQ";
/// Task process: the local endpoint of its TaskManager (where it reports
/// its metrics address).
pub const TASKMANAGER_ENDPOINT_VAR: &str = "SLUICE_TASKMANAGER_ENDPOINT";
/// Host to bind servers on (data server, driver endpoint).
pub const HOST_VAR: &str = "SLUICE_BIND_HOST";
/// Host other processes reach those servers at, if it differs from the
/// bound one (`taskmanager.host` with `taskmanager.bind-host`,
/// `jobmanager.rpc.address` with `jobmanager.bind-host`).
pub const ADVERTISED_HOST_VAR: &str = "SLUICE_ADVERTISED_HOST";
/// `metrics.reporter.prom.port` of the process that started this one, if
/// set: the port or range to serve `/metrics` on (else an ephemeral port).
pub const METRICS_PORTS_VAR: &str = "SLUICE_METRICS_PORTS";
/// `metrics.reporter.prom.host` of the process that started this one, if
/// set (else the bind host).
pub const METRICS_HOST_VAR: &str = "SLUICE_METRICS_HOST";
/// `key=value` lines the cluster adds to the job's configuration
/// (`-p`, `-s`, `--allow-non-restored-state`, cluster defaults, and the
/// starting process's `security.*` settings, which the job process uses for
/// its own connections).
pub const CONF_VAR: &str = "SLUICE_CLUSTER_CONF";
/// The job's secret (hex; see [`JobSecret`]): only the JobManager and the
/// job's processes know it.
pub const JOB_SECRET_VAR: &str = "SLUICE_JOB_SECRET";
/// Driver: `1` when the JobManager that starts it is highly available; the
/// job master then asks it before each checkpoint and before announcing one
/// complete (see [`crate::cluster::fence`]), and stops at once when it
/// loses the JobManager.
pub const FENCED_VAR: &str = "SLUICE_JOB_FENCED";

/// What the job binary is in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The job master.
    Driver,
    /// Hosts subtasks in slots of one TaskManager.
    Task,
}

/// The role from the environment; `None` for a local run.
pub fn role() -> Result<Option<Role>> {
    match std::env::var(ROLE_VAR).ok().as_deref() {
        None | Some("") => Ok(None),
        Some("driver") => Ok(Some(Role::Driver)),
        Some("task") => Ok(Some(Role::Task)),
        Some(other) => Err(RpcError::ProcessEnvironment {
            name: ROLE_VAR.into(),
            problem: format!("'{other}' is neither 'driver' nor 'task' (unset it for a local run)"),
        }
        .into()),
    }
}

/// The configuration lines the cluster passes (see [`CONF_VAR`]).
pub fn cluster_overrides() -> Vec<(String, String)> {
    std::env::var(CONF_VAR)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// The environment that passes a cluster process's metrics settings on to
/// the job processes it starts (see [`METRICS_PORTS_VAR`]).
pub fn metrics_env(conf: &crate::config::Configuration) -> Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    if let Some(ports) =
        conf.get_str("metrics.reporter.prom.port")?.filter(|_| conf.is_set("metrics.reporter.prom.port"))
    {
        env.push((METRICS_PORTS_VAR.to_string(), ports));
    }
    if let Some(host) =
        conf.get_str("metrics.reporter.prom.host")?.filter(|_| conf.is_set("metrics.reporter.prom.host"))
    {
        env.push((METRICS_HOST_VAR.to_string(), host));
    }
    Ok(env)
}

fn var(name: &str) -> Result<String> {
    std::env::var(name)
        .map_err(|_| RpcError::ProcessEnvironment { name: name.into(), problem: "not set".into() }.into())
}

/// A variable of the job process's environment, parsed.
fn parsed<T: std::str::FromStr>(name: &str) -> Result<T> {
    let text = var(name)?;
    text.parse().map_err(|_| {
        RpcError::ProcessEnvironment { name: name.into(), problem: format!("'{text}' is malformed") }.into()
    })
}

fn job_id() -> Result<JobId> {
    parsed(JOB_ID_VAR)
}

fn job_secret() -> Result<JobSecret> {
    let text = var(JOB_SECRET_VAR)?;
    JobSecret::from_hex(&text).ok_or_else(|| {
        RpcError::ProcessEnvironment { name: JOB_SECRET_VAR.into(), problem: "is not 64 hex digits".into() }.into()
    })
}

/// How this job process connects: the `security.*` lines of [`CONF_VAR`].
fn security() -> Result<Security> {
    let mut conf = crate::config::Configuration::new();
    for (key, value) in cluster_overrides() {
        if key.starts_with("security.") {
            conf.set(&key, &value)?;
        }
    }
    Ok(Security::from_config(&conf)?)
}

/// Binds a server of this job process, if `security` allows the address.
fn bind(what: &str, addr: &str, security: &Security) -> Result<TcpListener> {
    security.check_bind(what, addr)?;
    TcpListener::bind(addr).map_err(|e| Error::io(format!("cannot bind the {what} at {addr}"), e))
}

fn bind_host() -> String {
    std::env::var(HOST_VAR).unwrap_or_else(|_| "127.0.0.1".into())
}

/// Where others reach a server bound at `bound`: the advertised host (see
/// [`ADVERTISED_HOST_VAR`]) with the bound port, else the bound address.
fn advertised(bound: std::net::SocketAddr) -> String {
    match std::env::var(ADVERTISED_HOST_VAR) {
        Ok(host) if !host.is_empty() => host_port(&host, bound.port()),
        _ => bound.to_string(),
    }
}

/// `host:port`, an IPv6 literal in brackets (`[::1]:8081`): how an
/// advertised host joins its port everywhere in the cluster.
pub fn host_port(host: &str, port: u16) -> String {
    match host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => std::net::SocketAddr::from((v6, port)).to_string(),
        Err(_) => format!("{host}:{port}"),
    }
}

/// Serves this process's `/metrics` (see [`METRICS_PORTS_VAR`] and
/// [`METRICS_HOST_VAR`]); a process without metrics still runs its job (the
/// reason is logged).
fn serve_metrics() -> Option<MetricsServer> {
    let host = std::env::var(METRICS_HOST_VAR).ok().filter(|h| !h.is_empty()).unwrap_or_else(bind_host);
    let ports = match std::env::var(METRICS_PORTS_VAR) {
        Ok(text) => match crate::config::parse_port_range(&text) {
            Some(ports) => ports,
            None => {
                eprintln!("{METRICS_PORTS_VAR}={text} is not a port or range; serving /metrics on any free port");
                (0, 0)
            }
        },
        Err(_) => (0, 0),
    };
    match MetricsServer::start_in_range(&host, ports) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("this job process serves no /metrics: {e}");
            None
        }
    }
}

/// Tells the TaskManager that started this task process where its
/// `/metrics` is (the TaskManager tells the JobManager).
fn report_to_taskmanager(
    job: JobId,
    secret: JobSecret,
    metrics: Option<&MetricsServer>,
    security: &Security,
) -> Result<()> {
    let endpoint = var(TASKMANAGER_ENDPOINT_VAR)?;
    let seq: u32 = parsed(PROCESS_SEQ_VAR)?;
    let mut stream = wire::connect(&endpoint, "TaskManager", Duration::from_secs(10), security)?;
    wire::write_frame(
        &mut stream,
        &JobProcessStarted { job, seq, metrics_address: metrics.map(|m| m.local_addr().to_string()), secret },
    )
}

// ---------------------------------------------------------------- task ---

/// Runs this process as a task process until its driver says stop or goes
/// away; never returns to the job's `main`.
pub(crate) fn run_task_process(graph: JobGraph) -> ! {
    let code = match task_process(graph) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("task process failed: {e}");
            1
        }
    };
    std::process::exit(code)
}

fn task_process(graph: JobGraph) -> Result<()> {
    let id = TaskManagerId(var(TASKMANAGER_ID_VAR)?);
    let slots: u32 = parsed(SLOTS_VAR)?;
    let driver = var(DRIVER_VAR)?;
    let job = job_id()?;
    let secret = job_secret()?;
    let security = security()?;
    watch_parent("the TaskManager", "the task process", || {});
    let metrics = serve_metrics();
    if let Err(e) = report_to_taskmanager(job, secret.clone(), metrics.as_ref(), &security) {
        tracing::warn!("cannot tell the TaskManager where this process's metrics are: {e}");
    }
    let data_bind = format!("{}:0", bind_host());
    security.check_bind("data server", &data_bind)?;
    let server = DataServer::start(&data_bind, security.clone(), secret.clone())?;
    let stream = wire::connect(&driver, "job driver", Duration::from_secs(30), &security)?;
    let (link, mut reader) = Link::new(stream)?;
    let registration =
        TaskManagerRegistration { id: id.clone(), slots, data_address: Some(advertised(server.address())) };
    link.send(&TaskProcessHello { secret, registration })?;
    tracing::info!("task process {id} with {slots} slots registered at driver {driver}");
    let (tm_tx, tm_rx) = crossbeam_channel::unbounded::<ToTaskManager>();
    let to_driver: Gateway<FromTaskManager> = Gateway::new(LinkTransport::start(link.clone(), "to-driver")?);
    let graphs = JobGraphs::single(job, Arc::new(graph));
    let tm = TaskManager::new(id.clone(), tm_rx, to_driver, graphs, Arc::new(Shuffle::networked(id.clone(), server)));
    let tm_thread = std::thread::Builder::new()
        .name("taskmanager".into())
        .spawn(move || tm.run())
        .map_err(|e| Error::io("cannot start a thread", e))?;
    loop {
        let msg = match wire::read_frame::<ToTaskManager>(&mut reader) {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("connection to the driver broke: {e}");
                break;
            }
        };
        let shutdown = matches!(msg, ToTaskManager::Shutdown);
        if tm_tx.send(msg).is_err() || shutdown {
            break;
        }
    }
    let _ = tm_tx.send(ToTaskManager::Shutdown);
    // Subtasks stop at their next check; do not hang on one that will not.
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    std::thread::spawn(move || {
        let _ = tm_thread.join();
        let _ = done_tx.send(());
    });
    let _ = done_rx.recv_timeout(Duration::from_secs(5));
    link.close();
    drop(metrics);
    Ok(())
}

/// Exits this process (after `before_exit`) when its parent goes away: a
/// task process must not outlive its TaskManager, nor an application
/// cluster's TaskManager its client (killed with SIGKILL, a parent cannot
/// stop its children).
pub fn watch_parent(parent_name: &'static str, me: &'static str, before_exit: impl FnOnce() + Send + 'static) {
    let parent = std::os::unix::process::parent_id();
    let _ = std::thread::Builder::new().name("parent-watch".into()).spawn(move || loop {
        std::thread::sleep(Duration::from_millis(100));
        if std::os::unix::process::parent_id() != parent {
            eprintln!("{parent_name} (pid {parent}) is gone; {me} exits");
            before_exit();
            std::process::exit(3);
        }
    });
}

// -------------------------------------------------------------- driver ---

/// Runs the job as its driver: the job master of the job, reporting to the
/// JobManager process, with task processes registering as TaskManagers.
pub(crate) fn run_driver(graph: JobGraph) -> Result<JobExecutionResult> {
    let job_id = job_id()?;
    let secret = job_secret()?;
    let security = security()?;
    let jm_addr = var(JOBMANAGER_VAR)?;
    let fenced = std::env::var_os(FENCED_VAR).is_some_and(|v| v == "1");
    let metrics = serve_metrics();
    let listener = bind("driver's endpoint", &format!("{}:0", bind_host()), &security)?;
    let driver_address = advertised(listener.local_addr().map_err(|e| Error::io("driver endpoint", e))?);
    let stream = wire::connect(&jm_addr, "JobManager", Duration::from_secs(30), &security)?;
    let (link, reader) = Link::new(stream)?;
    let answers = FenceAnswers::default();
    let fence: Option<Box<dyn CheckpointFence>> =
        if fenced { Some(Box::new(RemoteFence::new(link.clone(), answers.clone()))) } else { None };
    let cluster = MiniCluster::start_driver_job_master(fence)?;
    let jm = cluster.job_manager();
    {
        let (jm, security, secret) = (jm.clone(), security.clone(), secret.clone());
        std::thread::Builder::new()
            .name("driver-accept".into())
            .spawn(move || accept_task_processes(listener, jm, job_id, security, secret))
            .map_err(|e| Error::io("cannot start a thread", e))?;
    }
    link.send(&Hello::Driver(DriverHello {
        job: job_id,
        name: graph.name().to_string(),
        required_slots: graph.required_slots(),
        driver_address,
        vertices: graph
            .vertices()
            .iter()
            .map(|v| VertexSummary { name: v.name.clone(), parallelism: v.parallelism })
            .collect(),
        metrics_address: metrics.as_ref().map(|m| m.local_addr().to_string()),
        secret,
    }))?;
    let client = cluster.submit_as(graph, job_id)?.owning(cluster).with_metrics(metrics);
    {
        let (jm, link) = (jm.clone(), link.clone());
        let commands = DriverCommands { link, jm, job_id, answers, fenced };
        std::thread::Builder::new()
            .name("driver-commands".into())
            .spawn(move || commands.serve(reader))
            .map_err(|e| Error::io("cannot start a thread", e))?;
    }
    // Details go to the JobManager when they change, their metrics at most
    // about once a second (the UI's refresh).
    let mut last: Option<JobDetails> = None;
    let mut sent = Instant::now();
    loop {
        if let Some(result) = client.poll_result(Duration::from_millis(100))? {
            let _ = link.send(&FromDriver::JobEnded {
                status: result.status,
                failure: result.failure.clone(),
                restarts: result.restarts,
            });
            return client.into_execution_result(result);
        }
        if let Ok(details) = client.details() {
            let status_changed = last.as_ref().is_none_or(|l| {
                (l.status, l.restarts, l.completed_checkpoints, l.failed_checkpoints)
                    != (details.status, details.restarts, details.completed_checkpoints, details.failed_checkpoints)
            });
            let due = sent.elapsed() >= Duration::from_millis(900) && last.as_ref() != Some(&details);
            if status_changed || due {
                let _ = link.send(&FromDriver::JobStatus(Box::new(details.clone())));
                last = Some(details);
                sent = Instant::now();
            }
        }
    }
}

/// The driver's side of its JobManager link: commands and fence answers.
struct DriverCommands {
    link: Link,
    jm: Sender<ToJobManager>,
    job_id: JobId,
    answers: FenceAnswers,
    /// Started by a highly available JobManager (see [`FENCED_VAR`]).
    fenced: bool,
}

impl DriverCommands {
    fn serve(self, mut reader: SecureStream) {
        let DriverCommands { link, jm, job_id, answers, fenced } = self;
        loop {
            match wire::read_frame::<ToDriver>(&mut reader) {
                Ok(Some(ToDriver::CancelJob)) => {
                    let _ = jm.send(ToJobManager::CancelJob { job_id });
                }
                Ok(Some(ToDriver::FailJob(cause))) => {
                    let _ = jm.send(ToJobManager::FailJob { job_id, cause });
                }
                Ok(Some(ToDriver::TriggerSavepoint { request, dir })) => {
                    let (jm, link) = (jm.clone(), link.clone());
                    std::thread::spawn(move || {
                        let (tx, rx) = crossbeam_channel::bounded(1);
                        let _ = jm.send(ToJobManager::TriggerSavepoint { job_id, dir: dir.into(), reply: tx });
                        let result = match rx.recv() {
                            Ok(r) => r.map(|p| p.display().to_string()),
                            Err(_) => Err("the job master stopped".into()),
                        };
                        let _ = link.send(&FromDriver::SavepointDone { request, result });
                    });
                }
                Ok(Some(ToDriver::FenceAnswer { request, answer })) => answers.deliver(request, answer),
                Ok(None) | Err(_) if fenced => {
                    // The JobManager that started the job is gone; the one
                    // elected next restarts the job from its latest
                    // checkpoint. Stop now, without canceling (a cancel
                    // would end the job for good) and before any further
                    // checkpoint could complete.
                    answers.fail_all();
                    tracing::error!("lost the JobManager; job {job_id} stops here and resumes under the next leader");
                    std::process::exit(crate::cluster::fence::FENCED_EXIT_CODE);
                }
                Ok(None) | Err(_) => {
                    // Without its JobManager nobody can follow or stop the job.
                    tracing::error!("lost the JobManager; canceling job {job_id}");
                    let _ = jm.send(ToJobManager::CancelJob { job_id });
                    return;
                }
            }
        }
    }
}

fn accept_task_processes(
    listener: TcpListener,
    jm: Sender<ToJobManager>,
    job: JobId,
    security: Security,
    secret: JobSecret,
) {
    let admission = Admission::new(MAX_CONNECTIONS);
    for conn in listener.incoming() {
        let Ok(socket) = conn else { continue };
        let Some(admitted) = admission.try_admit() else { continue };
        let (jm, security, secret) = (jm.clone(), security.clone(), secret.clone());
        let _ = std::thread::Builder::new().name("task-process".into()).stack_size(CONNECTION_THREAD_STACK).spawn(
            move || {
                let _admitted = admitted;
                let served = security
                    .accept(socket)
                    .map_err(|e| Error::io("the secure handshake of a task process failed", e))
                    .and_then(|stream| serve_task_process(stream, jm, job, &secret));
                if let Err(e) = served {
                    tracing::warn!("task process connection: {e}");
                }
            },
        );
    }
}

/// Serves one task process: once it proves it belongs to the job, its
/// registration becomes a TaskManager of the job master with a gateway over
/// the link; its reports go to the job master unchanged; its end is the
/// TaskManager's loss.
fn serve_task_process(stream: SecureStream, jm: Sender<ToJobManager>, job: JobId, secret: &JobSecret) -> Result<()> {
    let peer = stream.peer_addr().map_or_else(|_| "a peer".to_string(), |a| a.to_string());
    stream.set_read_timeout(Some(HELLO_TIMEOUT)).map_err(|e| Error::io("driver endpoint", e))?;
    let (link, mut reader) = Link::new(stream)?;
    let Some(hello) = wire::read_frame::<TaskProcessHello>(&mut reader)? else {
        return Ok(());
    };
    if !hello.secret.matches(secret) {
        link.close();
        return Err(SecurityError::WrongJobSecret { peer, job: job.to_string() }.into());
    }
    reader.set_read_timeout(None).map_err(|e| Error::io("driver endpoint", e))?;
    let registration = hello.registration;
    let id = registration.id.clone();
    let gateway = Gateway::new(LinkTransport::<ToTaskManager>::start(link.clone(), "to-task-process")?);
    let _ = jm.send(ToJobManager::TaskManagerConnected { registration, gateway });
    loop {
        match wire::read_frame::<FromTaskManager>(&mut reader) {
            Ok(Some(msg)) => {
                if jm.send(ToJobManager::FromTaskManager(msg)).is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("task process {id}: {e}");
                break;
            }
        }
    }
    link.close();
    let _ = jm.send(ToJobManager::TaskManagerLost { id });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn an_advertised_ipv6_host_is_bracketed() {
        assert_eq!(host_port("::1", 8081), "[::1]:8081");
        assert_eq!(host_port("fd00::5", 9), "[fd00::5]:9");
        assert_eq!(host_port("10.0.0.2", 9), "10.0.0.2:9");
        assert_eq!(host_port("tm-1.sluice.svc", 9), "tm-1.sluice.svc:9");
    }
}
