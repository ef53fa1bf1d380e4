//! Metrics of the Kafka connectors, in the engine's process-wide Prometheus
//! registry (served with the others at `/metrics`), named like the metrics
//! of Flink's Kafka connector under the operator scope. Every family has the
//! operator labels `job_id`, `job_name`, `task_name`, `operator_name`,
//! `subtask_index`; the per-partition ones also `topic` and `partition`.
//!
//! | metric | type | meaning |
//! | --- | --- | --- |
//! | `sluice_taskmanager_job_task_operator_KafkaSourceReader_numRecordsIn` | counter | records read (including skipped or dead-lettered ones) |
//! | `sluice_taskmanager_job_task_operator_KafkaSourceReader_numBytesIn` | counter | key + value bytes read |
//! | `sluice_taskmanager_job_task_operator_KafkaSourceReader_numRecordsInErrors` | counter | records that did not deserialize and were skipped or sent to the dead-letter topic |
//! | `sluice_taskmanager_job_task_operator_KafkaSourceReader_topic_partition_currentOffset` | gauge | the partition's position: offset of the last record read + 1 |
//! | `sluice_taskmanager_job_task_operator_KafkaSourceReader_topic_partition_recordsLag` | gauge | end of the partition (last stable offset under `read_committed`, else the high watermark) minus the position |
//! | `sluice_taskmanager_job_task_operator_KafkaSink_numRecordsOut` | counter | records handed to the producer |
//! | `sluice_taskmanager_job_task_operator_KafkaSink_numBytesOut` | counter | key + value bytes handed to the producer |
//! | `sluice_taskmanager_job_task_operator_KafkaSink_numTransactionsCommitted` | counter | transactions committed (live, or from a restored checkpoint) |
//! | `sluice_taskmanager_job_task_operator_KafkaSink_numTransactionsAborted` | counter | transactions aborted: those a failed or killed run left open, at recovery (a transaction begins with its first record, so none is empty) |
//! | `sluice_taskmanager_job_task_operator_KafkaSink_commitDurationSeconds` | histogram | time to commit one transaction |
//!
//! The offsets and the lag come from librdkafka's statistics, emitted every
//! second (`statistics.interval.ms`), never per record. Record and byte
//! counts are added up locally and published per batch (source) or every
//! 1024 records and at each barrier (sinks).

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts};
use sluice::RuntimeContext;
use std::sync::OnceLock;

const OPERATOR_LABELS: &[&str] = &["job_id", "job_name", "task_name", "operator_name", "subtask_index"];
const PARTITION_LABELS: &[&str] =
    &["job_id", "job_name", "task_name", "operator_name", "subtask_index", "topic", "partition"];
const PREFIX: &str = "sluice_taskmanager_job_task_operator_";

/// Records a sink counts locally before publishing them.
pub(crate) const PUBLISH_EVERY: u64 = 1024;

struct Families {
    records_in: IntCounterVec,
    bytes_in: IntCounterVec,
    records_in_errors: IntCounterVec,
    current_offset: IntGaugeVec,
    lag: IntGaugeVec,
    records_out: IntCounterVec,
    bytes_out: IntCounterVec,
    committed: IntCounterVec,
    aborted: IntCounterVec,
    commit_duration: HistogramVec,
}

fn build() -> Result<Families, prometheus::Error> {
    let counter =
        |name: &str, help: &str| IntCounterVec::new(Opts::new(format!("{PREFIX}{name}"), help), OPERATOR_LABELS);
    let gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(format!("{PREFIX}{name}"), help), PARTITION_LABELS);
    let f = Families {
        records_in: counter("KafkaSourceReader_numRecordsIn", "Records read from Kafka")?,
        bytes_in: counter("KafkaSourceReader_numBytesIn", "Key and value bytes read from Kafka")?,
        records_in_errors: counter(
            "KafkaSourceReader_numRecordsInErrors",
            "Records that did not deserialize and were skipped or sent to the dead-letter topic",
        )?,
        current_offset: gauge(
            "KafkaSourceReader_topic_partition_currentOffset",
            "Position in the partition: offset of the last record read + 1",
        )?,
        lag: gauge(
            "KafkaSourceReader_topic_partition_recordsLag",
            "End of the partition (last stable offset under read_committed, else high watermark) minus the position",
        )?,
        records_out: counter("KafkaSink_numRecordsOut", "Records handed to the Kafka producer")?,
        bytes_out: counter("KafkaSink_numBytesOut", "Key and value bytes handed to the Kafka producer")?,
        committed: counter("KafkaSink_numTransactionsCommitted", "Kafka transactions committed")?,
        aborted: counter("KafkaSink_numTransactionsAborted", "Kafka transactions aborted")?,
        commit_duration: HistogramVec::new(
            HistogramOpts::new(
                format!("{PREFIX}KafkaSink_commitDurationSeconds"),
                "Time to commit one Kafka transaction",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            OPERATOR_LABELS,
        )?,
    };
    let registry = sluice::metrics::global().registry();
    registry.register(Box::new(f.records_in.clone()))?;
    registry.register(Box::new(f.bytes_in.clone()))?;
    registry.register(Box::new(f.records_in_errors.clone()))?;
    registry.register(Box::new(f.current_offset.clone()))?;
    registry.register(Box::new(f.lag.clone()))?;
    registry.register(Box::new(f.records_out.clone()))?;
    registry.register(Box::new(f.bytes_out.clone()))?;
    registry.register(Box::new(f.committed.clone()))?;
    registry.register(Box::new(f.aborted.clone()))?;
    registry.register(Box::new(f.commit_duration.clone()))?;
    Ok(f)
}

/// The families, registered once per process; `None` (after one warning)
/// if they cannot be, in which case the connectors run without metrics.
fn families() -> Option<&'static Families> {
    static FAMILIES: OnceLock<Option<Families>> = OnceLock::new();
    FAMILIES
        .get_or_init(|| match build() {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!("Kafka connector metrics are not available: {e}");
                None
            }
        })
        .as_ref()
}

fn operator_labels(ctx: &RuntimeContext) -> [String; 5] {
    [
        ctx.job_id.to_string(),
        ctx.job_name.clone(),
        ctx.task_name.clone(),
        ctx.operator_name.clone(),
        ctx.subtask_index.to_string(),
    ]
}

/// The metrics of one Kafka source subtask.
#[derive(Clone)]
pub(crate) struct SourceMetrics {
    labels: [String; 5],
    records_in: IntCounter,
    bytes_in: IntCounter,
    records_in_errors: IntCounter,
}

impl SourceMetrics {
    /// The metrics of the source subtask `ctx` describes.
    pub(crate) fn new(ctx: &RuntimeContext) -> Option<Self> {
        let f = families()?;
        let labels = operator_labels(ctx);
        let refs = [&*labels[0], &labels[1], &labels[2], &labels[3], &labels[4]];
        Some(SourceMetrics {
            records_in: f.records_in.with_label_values(&refs),
            bytes_in: f.bytes_in.with_label_values(&refs),
            records_in_errors: f.records_in_errors.with_label_values(&refs),
            labels,
        })
    }

    /// Adds a batch of records read.
    pub(crate) fn read(&self, records: u64, bytes: u64) {
        self.records_in.inc_by(records);
        self.bytes_in.inc_by(bytes);
    }

    /// Counts a record that did not deserialize (skipped or dead-lettered).
    pub(crate) fn error(&self) {
        self.records_in_errors.inc();
    }

    /// Sets a partition's position and lag.
    pub(crate) fn partition(&self, topic: &str, partition: i32, position: i64, lag: i64) {
        let Some(f) = families() else { return };
        let partition = partition.to_string();
        let l = &self.labels;
        let refs = [&*l[0], &l[1], &l[2], &l[3], &l[4], topic, &partition];
        f.current_offset.with_label_values(&refs).set(position);
        f.lag.with_label_values(&refs).set(lag);
    }
}

/// The metrics of one Kafka sink subtask, with the records and bytes not
/// published yet.
pub(crate) struct SinkMetrics {
    records_out: IntCounter,
    bytes_out: IntCounter,
    committed: IntCounter,
    aborted: IntCounter,
    commit_duration: Histogram,
    unpublished_records: u64,
    unpublished_bytes: u64,
}

impl SinkMetrics {
    /// The metrics of the sink subtask `ctx` describes.
    pub(crate) fn new(ctx: &RuntimeContext) -> Option<Self> {
        let f = families()?;
        let labels = operator_labels(ctx);
        let refs = [&*labels[0], &labels[1], &labels[2], &labels[3], &labels[4]];
        Some(SinkMetrics {
            records_out: f.records_out.with_label_values(&refs),
            bytes_out: f.bytes_out.with_label_values(&refs),
            committed: f.committed.with_label_values(&refs),
            aborted: f.aborted.with_label_values(&refs),
            commit_duration: f.commit_duration.with_label_values(&refs),
            unpublished_records: 0,
            unpublished_bytes: 0,
        })
    }

    /// Counts one record of `bytes` bytes.
    pub(crate) fn sent(&mut self, bytes: usize) {
        self.unpublished_records += 1;
        self.unpublished_bytes += bytes as u64;
        if self.unpublished_records >= PUBLISH_EVERY {
            self.publish();
        }
    }

    /// Publishes the locally counted records and bytes.
    pub(crate) fn publish(&mut self) {
        self.records_out.inc_by(std::mem::take(&mut self.unpublished_records));
        self.bytes_out.inc_by(std::mem::take(&mut self.unpublished_bytes));
    }

    /// Counts a committed transaction and how long committing it took.
    pub(crate) fn committed(&self, took: std::time::Duration) {
        self.committed.inc();
        self.commit_duration.observe(took.as_secs_f64());
    }

    /// Counts an aborted transaction.
    pub(crate) fn aborted(&self) {
        self.aborted.inc();
    }
}
