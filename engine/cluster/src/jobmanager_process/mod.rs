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
//!
//! One model of concurrency, as in the job master of
//! [`sluice::cluster::jobmanager`]: a single thread, the event loop, owns
//! the [`Cluster`] state. The RPC connection threads (`serve`) send it
//! what they read as events; the REST handlers and the CLI send it
//! closures through a [`JobManager`] handle and get their result back on
//! a reply channel; the periodic work (heartbeat timeouts, exited drivers,
//! slot grants, gauges) runs when the loop's receive times out every
//! [`TICK`]. No lock guards the state.
//!
//! By concept, one module each: `artifacts` (uploaded binaries), `slots`
//! (slot grants and the job processes they become), `spawn` (driver
//! processes), `serve` (TaskManager and driver connections), `cluster`
//! (the state).

mod application;
mod artifacts;
mod cluster;
mod leadership;
mod serve;
mod slots;
mod spawn;

pub use application::{application_job_id, Application};
pub use artifacts::Artifact;
pub(crate) use cluster::JobEntry;
pub use cluster::{Cluster, SavepointAnswer};
pub use leadership::Leadership;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use sluice::cluster::remote::messages::{
    DriverHello, FromDriver, FromTaskManagerProcess, TaskManagerHello, ToTaskManagerProcess,
};
use sluice::cluster::remote::wire::Link;
use sluice::config::Configuration;
use sluice::error::{Error, Result};
use sluice::ids::JobId;
use sluice::transport::Security;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the event loop does its periodic work.
pub const TICK: Duration = Duration::from_millis(50);

/// Configuration keys a job inherits from the cluster's configuration file.
const JOB_KEY_PREFIXES: &[&str] =
    &["parallelism.default", "execution.", "state.", "restart-strategy", "pipeline.", "taskmanager.network."];

/// The JobManager's settings.
#[derive(Debug, Clone)]
pub struct JobManagerSettings {
    /// `host:port` the RPC endpoint binds (`jobmanager.bind-host`, else
    /// `jobmanager.rpc.address`, and `jobmanager.rpc.port`).
    pub rpc_bind: String,
    /// The host TaskManagers and drivers reach the RPC endpoint at
    /// (`jobmanager.rpc.address`), with the bound port.
    pub rpc_advertised_host: String,
    /// `host:port` the REST API binds (`rest.bind-address`, else
    /// `rest.address`, and `rest.port`).
    pub rest_bind: String,
    /// The host clients reach the REST API at (`rest.address`), published
    /// with the bound port when this JobManager leads.
    pub rest_advertised_host: String,
    /// What the REST API lets in (tokens, switches, allowed hosts).
    pub rest: crate::rest_guard::RestPolicy,
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
    /// How RPC connections are secured (`security.ssl.internal.*`).
    pub security: Security,
    /// High availability (`high-availability.*`).
    pub ha: crate::ha::HaSettings,
    /// This JobManager's id (`jobmanager.resource-id`).
    pub id: String,
    /// Uploaded binaries kept (`web.upload.retained`).
    pub retained_uploads: usize,
    /// Every key set in the configuration file or with `-D`, for
    /// `GET /jobmanager/config` (secrets masked there).
    pub configuration: Vec<(String, String)>,
}

impl JobManagerSettings {
    /// From `conf`.
    pub fn from_config(conf: &Configuration) -> Result<Self> {
        let rpc_host = conf.get_str("jobmanager.rpc.address")?.unwrap_or_else(|| "127.0.0.1".into());
        let rest_host = conf.get_str("rest.address")?.unwrap_or_else(|| "127.0.0.1".into());
        let rpc_bind_host = conf.get_str("jobmanager.bind-host")?.unwrap_or_else(|| rpc_host.clone());
        let rest_bind_host = conf.get_str("rest.bind-address")?.unwrap_or_else(|| rest_host.clone());
        let ha = crate::ha::HaSettings::from_config(conf)?;
        let id = conf
            .get_str("jobmanager.resource-id")?
            .unwrap_or_else(|| format!("jobmanager-{rpc_host}-{}", std::process::id()));
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')) {
            return Err(Error::user(format!(
                "jobmanager.resource-id '{id}' must be letters, digits, '-', '_', '.' or ':'"
            )));
        }
        // Several JobManagers of one cluster may share a host and its work
        // directory: each gets its own below it.
        let own_dir = if ha.enabled() { format!("jobmanager-{id}") } else { "jobmanager".to_string() };
        Ok(JobManagerSettings {
            rpc_bind: format!("{rpc_bind_host}:{}", conf.get_u32("jobmanager.rpc.port")?.unwrap_or(6123)),
            rpc_advertised_host: rpc_host,
            rest_bind: format!("{rest_bind_host}:{}", conf.get_u32("rest.port")?.unwrap_or(8081)),
            rest_advertised_host: rest_host,
            rest: crate::rest_guard::RestPolicy::from_config(conf)?,
            work_dir: crate::taskmanager_process::work_dir(conf)?.join(own_dir),
            heartbeat_timeout: conf.get_duration("heartbeat.timeout")?.unwrap_or(Duration::from_secs(10)),
            slot_timeout: conf.get_duration("slot.request.timeout")?.unwrap_or(Duration::from_secs(300)),
            job_defaults: conf
                .iter()
                .filter(|(k, _)| JOB_KEY_PREFIXES.iter().any(|p| k.starts_with(p)))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            metrics_env: sluice::cluster::remote::job_process::metrics_env(conf)?,
            security: Security::from_config(conf)?,
            ha,
            id,
            retained_uploads: conf.get_u32("web.upload.retained")?.unwrap_or(20) as usize,
            configuration: conf.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        })
    }
}

/// What the event loop is sent.
pub(crate) enum Event {
    /// A TaskManager connected; the loop answers with its connection
    /// generation, or `None` if it was refused.
    TaskManagerHello { hello: TaskManagerHello, link: Link, reply: Sender<Option<u64>> },
    /// A frame from a TaskManager.
    TaskManager { id: String, generation: u64, msg: FromTaskManagerProcess },
    /// A TaskManager's connection ended.
    TaskManagerClosed { id: String, generation: u64 },
    /// A driver announced its job; the loop accepts it or says why not.
    DriverHello { hello: DriverHello, link: Link, reply: Sender<Result<()>> },
    /// A frame from a job's driver.
    Driver { job: JobId, msg: FromDriver },
    /// A command or query from REST or the CLI; it sends its own reply.
    Call(Box<dyn FnOnce(&mut Cluster) + Send>),
}

/// A handle on a running JobManager: sends its event loop commands.
#[derive(Clone)]
pub struct JobManager {
    events: Sender<Event>,
    rpc_address: String,
    /// With high availability: the services, and this JobManager's id.
    ha: Option<(std::sync::Arc<dyn crate::ha::HighAvailabilityServices>, String)>,
}

impl std::fmt::Debug for JobManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobManager").field("rpc_address", &self.rpc_address).finish()
    }
}

fn loop_gone() -> Error {
    Error::ClusterUnavailable("the JobManager's event loop has stopped".into())
}

impl JobManager {
    /// The RPC endpoint's bound address.
    pub fn rpc_address(&self) -> &str {
        &self.rpc_address
    }

    /// With high availability: starts campaigning for leadership,
    /// published with this JobManager's RPC address and `rest_address`
    /// (until elected it is a standby). Without: nothing.
    pub fn start_leadership(&self, rest_address: &str) -> Result<()> {
        let Some((services, id)) = &self.ha else { return Ok(()) };
        let me = crate::ha::LeaderInfo {
            id: id.clone(),
            rpc_address: self.rpc_address.clone(),
            rest_address: rest_address.to_string(),
            since_ms: 0,
        };
        crate::ha::leadership::spawn(services.clone(), me, self.clone())
            .map_err(|e| Error::io("cannot start the leadership thread", e))
    }

    /// Runs `f` on the event loop's thread and waits for its result. Not
    /// for async code (see [`ask`](Self::ask)).
    pub fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut Cluster) -> R + Send + 'static) -> Result<R> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.events
            .send(Event::Call(Box::new(move |c| {
                let _ = tx.send(f(c));
            })))
            .map_err(|_| loop_gone())?;
        rx.recv().map_err(|_| loop_gone())
    }

    /// [`call`](Self::call) for async code (the REST handlers).
    pub async fn ask<R: Send + 'static>(&self, f: impl FnOnce(&mut Cluster) -> R + Send + 'static) -> Result<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.events
            .send(Event::Call(Box::new(move |c| {
                let _ = tx.send(f(c));
            })))
            .map_err(|_| loop_gone())?;
        rx.await.map_err(|_| loop_gone())
    }
}

/// Binds the RPC endpoint and starts the event loop and the connection
/// acceptor; returns the handle. The REST API is started separately
/// ([`crate::rest::serve`]).
pub fn start(settings: JobManagerSettings) -> Result<JobManager> {
    std::fs::create_dir_all(settings.work_dir.join("artifacts"))
        .map_err(|e| Error::io(format!("cannot create '{}'", settings.work_dir.display()), e))?;
    settings.security.check_bind("JobManager's RPC endpoint", &settings.rpc_bind)?;
    let listener = TcpListener::bind(&settings.rpc_bind).map_err(|e| {
        Error::io(
            format!(
                "cannot bind the RPC endpoint {} (is jobmanager.bind-host, else jobmanager.rpc.address, an address \
                 of this host, and jobmanager.rpc.port free?)",
                settings.rpc_bind
            ),
            e,
        )
    })?;
    let port = listener.local_addr().map_err(|e| Error::io("RPC endpoint", e))?.port();
    // What TaskManagers and drivers connect to: the advertised host.
    let rpc_address = sluice::cluster::remote::job_process::host_port(&settings.rpc_advertised_host, port);
    let (events, inbox) = crossbeam_channel::unbounded();
    let security = settings.security.clone();
    let (ha, ha_state) = match settings.ha.services()? {
        Some(services) => {
            let storage = settings.ha.storage()?.unwrap_or_default();
            let state = leadership::HaState::new(services.clone(), storage)?;
            (Some((services, settings.id.clone())), Some(state))
        }
        None => (None, None),
    };
    let cluster = Cluster::new(settings, rpc_address.clone(), ha_state);
    std::thread::Builder::new()
        .name("jobmanager".into())
        .spawn(move || run(cluster, inbox))
        .map_err(|e| Error::io("cannot start a thread", e))?;
    let acceptor = events.clone();
    std::thread::Builder::new()
        .name("rpc-accept".into())
        .spawn(move || serve::accept(listener, acceptor, security))
        .map_err(|e| Error::io("cannot start a thread", e))?;
    Ok(JobManager { events, rpc_address, ha })
}

/// The event loop: applies events as they come, ticks every [`TICK`].
fn run(mut cluster: Cluster, inbox: Receiver<Event>) {
    let mut next_tick = Instant::now() + TICK;
    loop {
        match inbox.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(event) => {
                cluster.apply(event);
                // Everything already queued first: after a slow event, the
                // heartbeats that waited meanwhile must count before a tick
                // judges the TaskManagers.
                while let Ok(event) = inbox.try_recv() {
                    cluster.apply(event);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if Instant::now() >= next_tick {
            cluster.tick();
            next_tick = Instant::now() + TICK;
        }
    }
}

impl Cluster {
    fn apply(&mut self, event: Event) {
        match event {
            Event::TaskManagerHello { hello, link, reply } => {
                if let Err(e) = self.check_acting() {
                    // It looks the leader up again.
                    let _ = link.send(&ToTaskManagerProcess::Refused(e.to_string()));
                    let _ = reply.send(None);
                    return;
                }
                let _ = reply.send(self.on_task_manager_hello(hello, link));
            }
            Event::TaskManager { id, generation, msg } => self.on_task_manager(&id, generation, msg),
            Event::TaskManagerClosed { id, generation } => self.on_task_manager_closed(&id, generation),
            Event::DriverHello { hello, link, reply } => {
                let answer = self.check_acting().and_then(|()| self.on_driver_hello(hello, link));
                let _ = reply.send(answer);
            }
            Event::Driver { job, msg } => self.on_driver(job, msg),
            Event::Call(f) => f(self),
        }
    }
}
