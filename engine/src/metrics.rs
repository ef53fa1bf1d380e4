//! Metrics in Prometheus text format, named like Flink's.
//!
//! Every process has one registry. Operator metrics are counted in plain
//! local integers on the hot path and published to the registry when the task
//! flushes (when it is idle, at each buffer timeout, at end of input), so
//! counting costs no atomic operation per record.
//!
//! | metric | labels | meaning |
//! | --- | --- | --- |
//! | `sluice_taskmanager_job_task_operator_numRecordsIn` | job_id, job_name, task_name, operator_name, subtask_index | records an operator received |
//! | `sluice_taskmanager_job_task_operator_numRecordsOut` | same | records an operator emitted |
//! | `sluice_taskmanager_job_task_backPressuredTimeMsTotal` | job_id, job_name, task_name, subtask_index | time a subtask was blocked on full output channels |
//! | `sluice_taskmanager_job_task_idleTimeMsTotal` | same | time a subtask waited for input (or a source for data) |
//! | `sluice_taskmanager_job_task_currentInputWatermark` | same | the subtask's combined input watermark, ms (i64::MIN before the first, as Flink's Long.MIN_VALUE) |
//! | `sluice_jobmanager_job_uptime` | job_id, job_name | milliseconds since the job started running |
//! | `sluice_jobmanager_numRunningJobs` | | jobs currently running |
//! | `sluice_jobmanager_job_numberOfCompletedCheckpoints` / `numberOfFailedCheckpoints` / `numberOfInProgressCheckpoints` | job_id, job_name | checkpoint counts |
//! | `sluice_jobmanager_job_lastCheckpointDuration` / `lastCheckpointSize` | job_id, job_name | ms / bytes of the last completed checkpoint |
//! | `sluice_jobmanager_job_numRestarts` | job_id, job_name | restarts after failures |
//! | `sluice_jobmanager_taskSlotsTotal` / `taskSlotsAvailable` | | slots in the cluster |
//!
//! Connectors add their own families through [`Metrics::registry`] (the
//! Kafka connectors' are listed in `sluice_connectors::kafka::metrics`).
//!
//! With `--metrics-port PORT` (or `metrics.reporter.prom.port`) the process
//! serves them at `http://127.0.0.1:PORT/metrics`.

use crate::error::{Error, Result};
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use std::net::SocketAddr;
use std::sync::OnceLock;

/// The process-wide metric families.
pub struct Metrics {
    registry: Registry,
    records_in: IntCounterVec,
    records_out: IntCounterVec,
    back_pressured_ms: IntCounterVec,
    idle_ms: IntCounterVec,
    input_watermark: IntGaugeVec,
    late_dropped: IntCounterVec,
    alignment_ms: IntGaugeVec,
    sync_us: IntCounterVec,
    restore_ms: IntGaugeVec,
    /// Job uptime in milliseconds, per job.
    pub job_uptime: IntGaugeVec,
    /// Number of running jobs.
    pub running_jobs: IntGauge,
    /// Per job: completed checkpoints.
    pub checkpoints_completed: IntGaugeVec,
    /// Per job: failed checkpoints.
    pub checkpoints_failed: IntGaugeVec,
    /// Per job: checkpoints in progress.
    pub checkpoints_in_progress: IntGaugeVec,
    /// Per job: duration of the last completed checkpoint, ms.
    pub last_checkpoint_duration: IntGaugeVec,
    /// Per job: state size of the last completed checkpoint, bytes.
    pub last_checkpoint_size: IntGaugeVec,
    /// Per job: restarts.
    pub restarts: IntGaugeVec,
    /// Slots registered in the cluster.
    pub slots_total: IntGauge,
    /// Slots not allocated to a job.
    pub slots_available: IntGauge,
    /// TaskManagers registered with the JobManager (cluster mode).
    pub task_managers: IntGauge,
    /// 1 while this JobManager leads its highly available cluster, else 0.
    pub is_leader: IntGauge,
    /// Since when this JobManager leads, ms since the epoch (0: it does not).
    pub leader_since: IntGauge,
    /// How many times this JobManager became leader.
    pub leader_changes: IntCounter,
}

/// The counters of one operator in one subtask.
#[derive(Clone)]
pub(crate) struct OperatorMetrics {
    pub(crate) records_in: IntCounter,
    pub(crate) records_out: IntCounter,
}

const OPERATOR_LABELS: &[&str] = &["job_id", "job_name", "task_name", "operator_name", "subtask_index"];
const TASK_LABELS: &[&str] = &["job_id", "job_name", "task_name", "subtask_index"];

fn build() -> std::result::Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let records_in = IntCounterVec::new(
        Opts::new("sluice_taskmanager_job_task_operator_numRecordsIn", "Records received by an operator subtask"),
        OPERATOR_LABELS,
    )?;
    let records_out = IntCounterVec::new(
        Opts::new("sluice_taskmanager_job_task_operator_numRecordsOut", "Records emitted by an operator subtask"),
        OPERATOR_LABELS,
    )?;
    let back_pressured_ms = IntCounterVec::new(
        Opts::new(
            "sluice_taskmanager_job_task_backPressuredTimeMsTotal",
            "Milliseconds a subtask spent blocked on full output channels",
        ),
        TASK_LABELS,
    )?;
    let idle_ms = IntCounterVec::new(
        Opts::new(
            "sluice_taskmanager_job_task_idleTimeMsTotal",
            "Milliseconds a subtask waited for input (a source: for data)",
        ),
        TASK_LABELS,
    )?;
    let input_watermark = IntGaugeVec::new(
        Opts::new(
            "sluice_taskmanager_job_task_currentInputWatermark",
            "The combined watermark of a subtask's inputs, ms since the epoch",
        ),
        TASK_LABELS,
    )?;
    let late_dropped = IntCounterVec::new(
        Opts::new(
            "sluice_taskmanager_job_task_operator_numLateRecordsDropped",
            "Records that arrived after their window's allowed lateness and were dropped",
        ),
        OPERATOR_LABELS,
    )?;
    let alignment_ms = IntGaugeVec::new(
        Opts::new(
            "sluice_taskmanager_job_task_checkpointAlignmentTime",
            "Milliseconds the last checkpoint barrier alignment of a subtask took",
        ),
        TASK_LABELS,
    )?;
    let sync_us = IntCounterVec::new(
        Opts::new(
            "sluice_taskmanager_job_task_checkpointSyncTimeUsTotal",
            "Microseconds a subtask spent in the synchronous part of its snapshots (its task thread's checkpoint cost)",
        ),
        TASK_LABELS,
    )?;
    let restore_ms = IntGaugeVec::new(
        Opts::new(
            "sluice_taskmanager_job_task_operator_restoreDuration",
            "Milliseconds an operator subtask spent restoring its state at its last start",
        ),
        OPERATOR_LABELS,
    )?;
    let job_uptime = IntGaugeVec::new(
        Opts::new("sluice_jobmanager_job_uptime", "Milliseconds since the job started running"),
        &["job_id", "job_name"],
    )?;
    let running_jobs = IntGauge::new("sluice_jobmanager_numRunningJobs", "Jobs currently running")?;
    let job_gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["job_id", "job_name"]);
    let checkpoints_completed =
        job_gauge("sluice_jobmanager_job_numberOfCompletedCheckpoints", "Completed checkpoints")?;
    let checkpoints_failed = job_gauge("sluice_jobmanager_job_numberOfFailedCheckpoints", "Failed checkpoints")?;
    let checkpoints_in_progress =
        job_gauge("sluice_jobmanager_job_numberOfInProgressCheckpoints", "Checkpoints in progress")?;
    let last_checkpoint_duration =
        job_gauge("sluice_jobmanager_job_lastCheckpointDuration", "Duration of the last completed checkpoint, ms")?;
    let last_checkpoint_size =
        job_gauge("sluice_jobmanager_job_lastCheckpointSize", "State size of the last completed checkpoint, bytes")?;
    let restarts = job_gauge("sluice_jobmanager_job_numRestarts", "Restarts of the job")?;
    let slots_total = IntGauge::new("sluice_jobmanager_taskSlotsTotal", "Task slots registered")?;
    let slots_available = IntGauge::new("sluice_jobmanager_taskSlotsAvailable", "Task slots not allocated")?;
    registry.register(Box::new(records_in.clone()))?;
    registry.register(Box::new(records_out.clone()))?;
    registry.register(Box::new(back_pressured_ms.clone()))?;
    registry.register(Box::new(idle_ms.clone()))?;
    registry.register(Box::new(input_watermark.clone()))?;
    registry.register(Box::new(late_dropped.clone()))?;
    registry.register(Box::new(alignment_ms.clone()))?;
    registry.register(Box::new(sync_us.clone()))?;
    registry.register(Box::new(restore_ms.clone()))?;
    registry.register(Box::new(job_uptime.clone()))?;
    registry.register(Box::new(running_jobs.clone()))?;
    for g in [
        &checkpoints_completed,
        &checkpoints_failed,
        &checkpoints_in_progress,
        &last_checkpoint_duration,
        &last_checkpoint_size,
        &restarts,
    ] {
        registry.register(Box::new(g.clone()))?;
    }
    registry.register(Box::new(slots_total.clone()))?;
    registry.register(Box::new(slots_available.clone()))?;
    let task_managers =
        IntGauge::new("sluice_jobmanager_numRegisteredTaskManagers", "TaskManagers registered with the JobManager")?;
    registry.register(Box::new(task_managers.clone()))?;
    let is_leader = IntGauge::new("sluice_jobmanager_isLeader", "1 while this JobManager leads the cluster")?;
    let leader_since =
        IntGauge::new("sluice_jobmanager_leaderSince", "Since when this JobManager leads, ms since the epoch")?;
    let leader_changes =
        IntCounter::new("sluice_jobmanager_leadershipGained_total", "Times this JobManager became leader")?;
    registry.register(Box::new(is_leader.clone()))?;
    registry.register(Box::new(leader_since.clone()))?;
    registry.register(Box::new(leader_changes.clone()))?;
    Ok(Metrics {
        registry,
        records_in,
        records_out,
        back_pressured_ms,
        idle_ms,
        input_watermark,
        late_dropped,
        alignment_ms,
        sync_us,
        restore_ms,
        job_uptime,
        running_jobs,
        checkpoints_completed,
        checkpoints_failed,
        checkpoints_in_progress,
        last_checkpoint_duration,
        last_checkpoint_size,
        restarts,
        slots_total,
        slots_available,
        task_managers,
        is_leader,
        leader_since,
        leader_changes,
    })
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| match build() {
        Ok(m) => m,
        // The metric definitions above are static; failing here is a bug in them.
        #[allow(clippy::panic)]
        Err(e) => panic!("static metric definitions are invalid: {e}"),
    })
}

impl Metrics {
    pub(crate) fn operator(&self, labels: &[&str; 5]) -> OperatorMetrics {
        OperatorMetrics {
            records_in: self.records_in.with_label_values(labels),
            records_out: self.records_out.with_label_values(labels),
        }
    }

    pub(crate) fn back_pressure(&self, labels: &[&str; 4]) -> IntCounter {
        self.back_pressured_ms.with_label_values(labels)
    }

    pub(crate) fn idle_time(&self, labels: &[&str; 4]) -> IntCounter {
        self.idle_ms.with_label_values(labels)
    }

    pub(crate) fn input_watermark(&self, labels: &[&str; 4]) -> IntGauge {
        self.input_watermark.with_label_values(labels)
    }

    pub(crate) fn late_records_dropped(&self, labels: &[&str; 5]) -> IntCounter {
        self.late_dropped.with_label_values(labels)
    }

    pub(crate) fn alignment_time(&self, labels: &[&str; 4]) -> IntGauge {
        self.alignment_ms.with_label_values(labels)
    }

    pub(crate) fn sync_time(&self, labels: &[&str; 4]) -> IntCounter {
        self.sync_us.with_label_values(labels)
    }

    pub(crate) fn restore_duration(&self, labels: &[&str; 5]) -> IntGauge {
        self.restore_ms.with_label_values(labels)
    }

    /// The process-wide registry, for connectors that register their own
    /// metric families (e.g. the Kafka connectors'); rendered with the rest.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders every metric in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which
        // the registry does not accept in the first place.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// A running `/metrics` HTTP endpoint; stops when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `host:port` (port 0 picks a free port) and serves `/metrics`
    /// from a background thread.
    pub fn start(host: &str, port: u16) -> Result<Self> {
        let want = format!("{host}:{port}");
        let std_listener = std::net::TcpListener::bind(&want)
            .map_err(|e| Error::Metrics { addr: want.clone(), message: format!("{e}; pick another --metrics-port") })?;
        let addr =
            std_listener.local_addr().map_err(|e| Error::Metrics { addr: want.clone(), message: e.to_string() })?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| Error::Metrics { addr: want.clone(), message: e.to_string() })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Metrics { addr: want.clone(), message: e.to_string() })?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("metrics endpoint stopped: {e}");
                            return;
                        }
                    };
                    let app = axum::Router::new().route(
                        "/metrics",
                        axum::routing::get(|| async {
                            ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], global().render())
                        }),
                    );
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = rx.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!("metrics endpoint stopped: {e}");
                    }
                })
            })
            .map_err(|e| Error::Metrics { addr: want.clone(), message: e.to_string() })?;
        tracing::info!("serving Prometheus metrics at http://{addr}/metrics");
        Ok(MetricsServer { addr, shutdown: Some(tx), thread: Some(thread) })
    }

    /// Serves on the first port of `lo..=hi` that is free on `host` (a
    /// range as in Flink's `metrics.reporter.prom.port: 9250-9260`, so that
    /// several processes of one host each find one); `(0, 0)` picks any.
    pub fn start_in_range(host: &str, (lo, hi): (u16, u16)) -> Result<Self> {
        let mut last = None;
        for port in lo..=hi {
            match Self::start(host, port) {
                Ok(server) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(_) if lo != hi => Error::Metrics {
                addr: format!("{host}:{lo}-{hi}"),
                message: format!("every port of {lo}-{hi} is taken; widen metrics.reporter.prom.port"),
            },
            Some(e) => e,
            None => Error::Metrics { addr: format!("{host}:{lo}-{hi}"), message: "an empty port range".into() },
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_port_range_skips_taken_ports() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = MetricsServer::start_in_range("127.0.0.1", (port, port)).err().unwrap().to_string();
        assert!(e.contains(&port.to_string()), "{e}");
        let hi = port.saturating_add(50);
        let server = MetricsServer::start_in_range("127.0.0.1", (port, hi)).unwrap();
        let got = server.local_addr().port();
        assert!(got > port && got <= hi, "{got} in {port}-{hi}");
    }
}
