//! The Kafka source.
//!
//! It reads listed topics and/or every topic whose whole name matches a
//! regular expression ([`KafkaSource::topic_pattern`], Flink's
//! `setTopicPattern`). Partitions of the topics are spread over the subtasks
//! as Flink's `KafkaTopicPartitionAssigner` does (partition *p* of topic *t*
//! goes to subtask `(start(t) + p) mod parallelism`, `start(t)` from the
//! topic name's Java hash code), which does not move a partition when others
//! appear. An unbounded source looks for new partitions and new matching
//! topics every [`KafkaSource::partition_discovery_interval`] (default
//! [`DEFAULT_PARTITION_DISCOVERY_INTERVAL`]) and reads those it finds from
//! their earliest offset, so no record of a new partition is lost.
//!
//! Offsets are the source's checkpointed state, restored exactly — not taken
//! from the consumer group; the group's offsets are committed only after a
//! checkpoint completes, for monitoring. Every assigned partition is in the
//! state from the moment it is assigned, read or not (a partition still to
//! start at the earliest offset is saved as such). The state is union state:
//! each subtask saves the offsets of the partitions it owns, and on restore
//! every subtask gets all of them and keeps those it owns now, so a job
//! restores at another parallelism without reading a record twice or
//! skipping one; a partition the checkpoint does not name starts at the
//! earliest offset. The first run starts from earliest, latest, the group's
//! committed offsets or a timestamp. `isolation.level` is `read_committed`
//! by default, so records of aborted or open transactions are never read.
//! A record that fails to deserialize fails the job by default (naming
//! topic, partition and offset), or is skipped and counted, or is sent to a
//! dead-letter topic.
//!
//! Records and bytes read, each partition's position and its lag are
//! published as metrics (see [`super::metrics`]); the lag comes from
//! librdkafka's statistics, once a second.

use super::discovery::{owner, start_of, Selection, Start, Subscription, TopicInfo, Tp, EARLIEST};
use super::metrics::SourceMetrics;
use super::properties::ClientProperties;
use super::KafkaError;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use sluice::{Boundedness, CheckpointId, Collector, Data, Error, Result, RuntimeContext, Source, SourceStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a partition starts when no checkpoint knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingOffsets {
    /// The first offset still in the log.
    Earliest,
    /// Only records written after the job started.
    Latest,
    /// The consumer group's committed offset, or earliest without one.
    Committed,
    /// The first record at or after this timestamp (ms since the epoch).
    Timestamp(i64),
}

/// What to do with a record that does not deserialize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRecordPolicy {
    /// Fail the job, naming topic, partition and offset (default).
    Fail,
    /// Skip it and count it (logged; the
    /// `KafkaSourceReader_numRecordsInErrors` metric).
    Skip,
    /// Send its raw bytes to this topic and go on.
    DeadLetter(String),
}

/// Turns a record's key and value into a `T`.
pub type Deserializer<T> = Arc<dyn Fn(Option<&[u8]>, &[u8]) -> std::result::Result<T, String> + Send + Sync>;

/// How often an unbounded source looks for new partitions and topics unless
/// [`KafkaSource::partition_discovery_interval`] says otherwise. Flink's
/// `KafkaSource` waits 5 minutes; here each subtask sends one metadata
/// request per interval, cheap enough to find new topics within seconds.
pub const DEFAULT_PARTITION_DISCOVERY_INTERVAL: Duration = Duration::from_secs(10);

/// Metadata requests before an unreachable cluster is an error.
const METADATA_ATTEMPTS: u32 = 3;

/// How often librdkafka reports statistics (the partition lag metrics).
const STATISTICS_INTERVAL_MS: &str = "1000";

/// The consumer's context: turns librdkafka's statistics (served on the
/// task thread by `poll`, once per [`STATISTICS_INTERVAL_MS`]) into the
/// per-partition position and lag metrics.
struct SourceContext {
    metrics: Option<SourceMetrics>,
    read_committed: bool,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        let Some(m) = &self.metrics else { return };
        for (topic, t) in &statistics.topics {
            for p in t.partitions.values().filter(|p| p.partition >= 0 && p.desired) {
                let end = if self.read_committed { p.ls_offset } else { p.hi_offset };
                // app_offset: after the last record handed to the source;
                // before the first one, where fetching starts.
                let position = if p.app_offset >= 0 { p.app_offset } else { p.next_offset };
                if end >= 0 && position >= 0 {
                    m.partition(topic, p.partition, position, (end - position).max(0));
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {}

type KafkaConsumer = BaseConsumer<SourceContext>;

/// Reads Kafka topics. See the module docs.
pub struct KafkaSource<T> {
    bootstrap: String,
    /// Client properties (`set_property`) for the consumer and the dead-letter producer.
    properties: ClientProperties,
    subscription: Subscription,
    discovery_interval: Duration,
    group_id: Option<String>,
    starting: StartingOffsets,
    read_committed: bool,
    deserialize: Deserializer<T>,
    policy: BadRecordPolicy,
    bounded: bool,
    consumer: Option<KafkaConsumer>,
    metrics: Option<SourceMetrics>,
    dead_letters: Option<ThreadedProducer<DefaultProducerContext>>,
    assigned: BTreeSet<Tp>,
    /// Where each assigned partition started: an offset, or [`EARLIEST`].
    starts: BTreeMap<Tp, i64>,
    /// The next offset to read of each partition a record was read from.
    positions: BTreeMap<Tp, i64>,
    restored: Option<BTreeMap<Tp, i64>>,
    stop_at: BTreeMap<Tp, i64>,
    to_commit: BTreeMap<u64, BTreeMap<Tp, i64>>,
    subtask: u32,
    parallelism: u32,
    last_discovery: Option<Instant>,
    /// Records skipped under [`BadRecordPolicy::Skip`].
    pub skipped_records: u64,
}

impl<T> Clone for KafkaSource<T> {
    fn clone(&self) -> Self {
        KafkaSource {
            bootstrap: self.bootstrap.clone(),
            properties: self.properties.clone(),
            subscription: self.subscription.clone(),
            discovery_interval: self.discovery_interval,
            group_id: self.group_id.clone(),
            starting: self.starting,
            read_committed: self.read_committed,
            deserialize: self.deserialize.clone(),
            policy: self.policy.clone(),
            bounded: self.bounded,
            consumer: None,
            metrics: None,
            dead_letters: None,
            assigned: BTreeSet::new(),
            starts: BTreeMap::new(),
            positions: BTreeMap::new(),
            restored: self.restored.clone(),
            stop_at: BTreeMap::new(),
            to_commit: BTreeMap::new(),
            subtask: 0,
            parallelism: 1,
            last_discovery: None,
            skipped_records: 0,
        }
    }
}

impl KafkaSource<String> {
    /// Reads UTF-8 values as `String`s.
    pub fn strings(bootstrap: &str, topics: &[&str]) -> Self {
        KafkaSource::new(bootstrap, topics, |_, v| {
            std::str::from_utf8(v).map(str::to_string).map_err(|e| format!("not UTF-8: {e}"))
        })
    }
}

impl KafkaSource<Vec<u8>> {
    /// Reads values as raw bytes.
    pub fn bytes(bootstrap: &str, topics: &[&str]) -> Self {
        KafkaSource::new(bootstrap, topics, |_, v| Ok(v.to_vec()))
    }
}

impl<T: DeserializeOwned> KafkaSource<T> {
    /// Reads JSON values into `T` with serde.
    pub fn json(bootstrap: &str, topics: &[&str]) -> Self {
        KafkaSource::new(bootstrap, topics, |_, v| serde_json::from_slice(v).map_err(|e| format!("bad JSON: {e}")))
    }
}

impl<T> KafkaSource<T> {
    /// Reads `topics` from `bootstrap`, turning records into `T` with
    /// `deserialize`. `topics` may be empty when a
    /// [`topic_pattern`](Self::topic_pattern) names them.
    pub fn new(
        bootstrap: &str,
        topics: &[&str],
        deserialize: impl Fn(Option<&[u8]>, &[u8]) -> std::result::Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        KafkaSource {
            bootstrap: bootstrap.into(),
            properties: ClientProperties::default(),
            subscription: Subscription::new(topics),
            discovery_interval: DEFAULT_PARTITION_DISCOVERY_INTERVAL,
            group_id: None,
            starting: StartingOffsets::Earliest,
            read_committed: true,
            deserialize: Arc::new(deserialize),
            policy: BadRecordPolicy::Fail,
            bounded: false,
            consumer: None,
            metrics: None,
            dead_letters: None,
            assigned: BTreeSet::new(),
            starts: BTreeMap::new(),
            positions: BTreeMap::new(),
            restored: None,
            stop_at: BTreeMap::new(),
            to_commit: BTreeMap::new(),
            subtask: 0,
            parallelism: 1,
            last_discovery: None,
            skipped_records: 0,
        }
    }

    /// Also reads every topic whose whole name matches the regular
    /// expression `pattern` (Rust `regex` syntax; a full match, like Flink's
    /// `setTopicPattern`: `events-.*` takes `events-a`, not `my-events-a`).
    /// Topics created later that match are read from their earliest offset
    /// once partition discovery finds them. A pattern that matches nothing
    /// yet is not an error: the source waits for topics. Topics whose names
    /// start with `__` (Kafka's internal ones) never match. An invalid
    /// expression is [`KafkaError::BadTopicPattern`].
    pub fn topic_pattern(mut self, pattern: &str) -> Result<Self> {
        self.subscription.set_pattern(pattern)?;
        Ok(self)
    }

    /// How often an unbounded source looks for new partitions (and, with a
    /// pattern, new topics) while running (default
    /// [`DEFAULT_PARTITION_DISCOVERY_INTERVAL`]). Each look is one metadata
    /// request per subtask, made on the task thread. A bounded source
    /// ([`bounded_at_latest`](Self::bounded_at_latest)) reads the partitions
    /// it finds at start only.
    pub fn partition_discovery_interval(mut self, interval: Duration) -> Self {
        self.discovery_interval = interval;
        self
    }

    /// Where partitions start on a first run (default: earliest).
    pub fn starting_offsets(mut self, starting: StartingOffsets) -> Self {
        self.starting = starting;
        self
    }

    /// The consumer group offsets are committed to (default `sluice-<job name>`).
    pub fn group_id(mut self, group: &str) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// Reads uncommitted records too (`isolation.level=read_uncommitted`).
    pub fn read_uncommitted(mut self) -> Self {
        self.read_committed = false;
        self
    }

    /// What to do with records that do not deserialize.
    pub fn bad_records(mut self, policy: BadRecordPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets a consumer property (e.g. `security.protocol`, `sasl.*`,
    /// `ssl.*`, `fetch.max.bytes`), as Flink's `setProperty`; the
    /// dead-letter producer gets the same ones. The source's own settings
    /// (offset commits, isolation level, group) are not overridden: use
    /// the builder's methods. Secret values never show in logs.
    pub fn set_property(mut self, key: &str, value: &str) -> Self {
        self.properties.set(key, value);
        self
    }

    /// [`set_property`](Self::set_property) for each pair.
    pub fn set_properties<'a>(mut self, properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        self.properties.set_all(properties);
        self
    }

    /// Stops at the end offsets seen when the job starts (a bounded source;
    /// partitions and topics created later are not read).
    pub fn bounded_at_latest(mut self) -> Self {
        self.bounded = true;
        self
    }

    fn consumer(&self) -> Result<&KafkaConsumer> {
        self.consumer.as_ref().ok_or_else(|| Error::internal("Kafka source used before open"))
    }

    /// The partitions the subscription selects from the cluster's metadata,
    /// retrying while the broker does not answer.
    fn partitions(&self, consumer: &KafkaConsumer) -> Result<Selection> {
        let mut last = String::new();
        for attempt in 1..=METADATA_ATTEMPTS {
            match consumer.fetch_metadata(None, Duration::from_secs(3)) {
                Ok(md) => {
                    let topics: Vec<TopicInfo<'_>> = md
                        .topics()
                        .iter()
                        .map(|t| TopicInfo {
                            name: t.name(),
                            partitions: t.error().is_none().then(|| t.partitions().iter().map(|p| p.id()).collect()),
                        })
                        .collect();
                    return Ok(self.subscription.select(&topics, &self.bootstrap)?);
                }
                Err(e) => {
                    last = e.to_string();
                    tracing::warn!("Kafka metadata from {} failed (attempt {attempt}): {last}", self.bootstrap);
                    if attempt < METADATA_ATTEMPTS {
                        std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
                    }
                }
            }
        }
        Err(KafkaError::Unreachable { bootstrap: self.bootstrap.clone(), attempts: METADATA_ATTEMPTS, message: last }
            .into())
    }

    /// The partitions of `all` this subtask owns and has not assigned yet.
    fn unassigned_mine(&self, all: &[Tp]) -> Vec<Tp> {
        all.iter()
            .filter(|(t, p)| owner(t, *p, self.parallelism) == self.subtask)
            .filter(|tp| !self.assigned.contains(tp))
            .cloned()
            .collect()
    }

    /// The end offset (the last stable one under `read_committed`) of `tp`.
    fn end_offset(consumer: &KafkaConsumer, tp: &Tp) -> Result<i64> {
        let (_, high) = consumer
            .fetch_watermarks(&tp.0, tp.1, Duration::from_secs(10))
            .map_err(|e| KafkaError::Client(format!("cannot read the end offset of {}/{}: {e}", tp.0, tp.1)))?;
        Ok(high)
    }

    /// Where `tp` starts: an offset, or [`EARLIEST`]. Positions taken from
    /// the log end (latest, or a timestamp after the last record) are
    /// resolved now, so that a checkpoint taken before the first record
    /// keeps them instead of moving on to a later end after a restore.
    fn start_offset(&self, consumer: &KafkaConsumer, tp: &Tp, discovered: bool) -> Result<i64> {
        match start_of(tp, self.restored.as_ref(), discovered) {
            Start::At(o) => return Ok(o),
            Start::Earliest => return Ok(EARLIEST),
            Start::Configured => {}
        }
        match self.starting {
            StartingOffsets::Earliest => Ok(EARLIEST),
            StartingOffsets::Latest => Self::end_offset(consumer, tp),
            StartingOffsets::Committed => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&tp.0, tp.1);
                let committed = consumer
                    .committed_offsets(tpl, Duration::from_secs(10))
                    .map_err(|e| KafkaError::Client(format!("cannot read committed offsets: {e}")))?;
                match committed.find_partition(&tp.0, tp.1).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) if o >= 0 => Ok(o),
                    _ => Ok(EARLIEST),
                }
            }
            StartingOffsets::Timestamp(ts) => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(ts))
                    .map_err(|e| KafkaError::Client(e.to_string()))?;
                let found = consumer
                    .offsets_for_times(tpl, Duration::from_secs(10))
                    .map_err(|e| KafkaError::Client(format!("cannot look up offsets for timestamp {ts}: {e}")))?;
                match found.find_partition(&tp.0, tp.1).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) if o >= 0 => Ok(o),
                    _ => Self::end_offset(consumer, tp),
                }
            }
        }
    }

    /// Starts reading `new`; `discovered` when found after open.
    fn assign(&mut self, new: Vec<Tp>, discovered: bool) -> Result<()> {
        let consumer = self.consumer()?;
        let mut tpl = TopicPartitionList::new();
        let mut starts = Vec::new();
        let mut stops = Vec::new();
        for tp in &new {
            let start = self.start_offset(consumer, tp, discovered)?;
            let offset = if start < 0 { Offset::Beginning } else { Offset::Offset(start) };
            tpl.add_partition_offset(&tp.0, tp.1, offset).map_err(|e| KafkaError::Client(e.to_string()))?;
            starts.push((tp.clone(), start));
            if self.bounded {
                stops.push((tp.clone(), Self::end_offset(consumer, tp)?));
            }
        }
        consumer.incremental_assign(&tpl).map_err(|e| KafkaError::Client(format!("cannot assign partitions: {e}")))?;
        self.starts.extend(starts);
        self.stop_at.extend(stops);
        self.assigned.extend(new);
        Ok(())
    }

    fn finished(&self) -> Result<bool> {
        if !self.bounded {
            return Ok(false);
        }
        let consumer = self.consumer()?;
        let positions = consumer.position().map_err(|e| KafkaError::Client(e.to_string()))?;
        Ok(self.stop_at.iter().all(|((t, p), stop)| {
            *stop == 0
                || self.positions.get(&(t.clone(), *p)).is_some_and(|o| o >= stop)
                || matches!(positions.find_partition(t, *p).map(|e| e.offset()), Some(Offset::Offset(o)) if o >= *stop)
        }))
    }

    fn bad_record(&mut self, topic: &str, partition: i32, offset: i64, value: &[u8], message: String) -> Result<()> {
        if let (Some(m), false) = (&self.metrics, self.policy == BadRecordPolicy::Fail) {
            m.error();
        }
        match &self.policy {
            BadRecordPolicy::Fail => {
                Err(KafkaError::Malformed { topic: topic.into(), partition, offset, message }.into())
            }
            BadRecordPolicy::Skip => {
                self.skipped_records += 1;
                tracing::warn!("skipping malformed record {topic}/{partition}@{offset}: {message}");
                Ok(())
            }
            BadRecordPolicy::DeadLetter(dlq) => {
                let producer =
                    self.dead_letters.as_ref().ok_or_else(|| Error::internal("dead-letter producer missing"))?;
                let key = format!("{topic}/{partition}@{offset}");
                producer
                    .send(BaseRecord::<str, [u8]>::to(dlq).key(&key).payload(value))
                    .map_err(|(e, _)| KafkaError::Client(format!("cannot send to dead-letter topic '{dlq}': {e}")))?;
                producer
                    .flush(Duration::from_secs(30))
                    .map_err(|e| KafkaError::Client(format!("cannot flush dead-letter topic '{dlq}': {e}")))?;
                Ok(())
            }
        }
    }
}

impl<T: Data> Source<T> for KafkaSource<T> {
    type State = Vec<(String, i32, i64)>;

    fn boundedness(&self) -> Boundedness {
        if self.bounded {
            Boundedness::Bounded
        } else {
            Boundedness::Unbounded
        }
    }

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.subtask = ctx.subtask_index;
        self.parallelism = ctx.parallelism.max(1);
        let group = self.group_id.clone().unwrap_or_else(|| format!("sluice-{}", ctx.job_name));
        self.metrics = SourceMetrics::new(ctx);
        let mut config = ClientConfig::new();
        self.properties.apply(&mut config);
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", if self.read_committed { "read_committed" } else { "read_uncommitted" });
        if self.metrics.is_some() {
            config.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        }
        let context = SourceContext { metrics: self.metrics.clone(), read_committed: self.read_committed };
        let consumer: KafkaConsumer = config
            .create_with_context(context)
            .map_err(|e| KafkaError::Client(format!("cannot create a Kafka consumer: {e}")))?;
        if self.subscription.is_empty() {
            return Err(KafkaError::NoTopics { bootstrap: self.bootstrap.clone() }.into());
        }
        let found = self.partitions(&consumer)?;
        if let Some(pattern) = self.subscription.pattern() {
            if found.pattern_topics == 0 && self.subtask == 0 {
                tracing::info!(
                    "Kafka topic pattern '{pattern}' matches no topic on {} yet; waiting for one{}",
                    self.bootstrap,
                    if self.bounded {
                        String::from(" (none: the source is bounded)")
                    } else {
                        format!(" (discovery every {:?})", self.discovery_interval)
                    }
                );
            }
        }
        self.consumer = Some(consumer);
        if let BadRecordPolicy::DeadLetter(_) = self.policy {
            let mut config = ClientConfig::new();
            self.properties.apply(&mut config);
            let p = config
                .set("bootstrap.servers", &self.bootstrap)
                .create()
                .map_err(|e| KafkaError::Client(format!("cannot create the dead-letter producer: {e}")))?;
            self.dead_letters = Some(p);
        }
        let mine = self.unassigned_mine(&found.partitions);
        self.assign(mine, false)?;
        self.last_discovery = Some(Instant::now());
        Ok(())
    }

    fn poll_next(&mut self, out: &mut dyn Collector<T>) -> Result<SourceStatus> {
        if !self.bounded && self.last_discovery.is_some_and(|t| t.elapsed() >= self.discovery_interval) {
            self.last_discovery = Some(Instant::now());
            // A failed discovery is retried at the next interval: the
            // partitions already assigned are read on meanwhile.
            let new = match self.partitions(self.consumer()?) {
                Ok(found) => self.unassigned_mine(&found.partitions),
                Err(e) => {
                    tracing::warn!("Kafka source subtask {}: partition discovery failed: {e}", self.subtask);
                    Vec::new()
                }
            };
            if !new.is_empty() {
                tracing::info!(
                    "Kafka source subtask {} discovered partitions {new:?}; reading them from the earliest offset",
                    self.subtask
                );
                self.assign(new, true)?;
            }
        }
        let mut emitted = 0;
        let mut bytes = 0u64;
        while emitted < 500 {
            let polled = {
                let consumer = self.consumer()?;
                match consumer.poll(Duration::ZERO) {
                    None => None,
                    Some(Err(e)) if is_transient(&e) => {
                        // librdkafka recovers from these by itself (a new
                        // topic's leader not elected yet, a broker restart).
                        tracing::warn!("Kafka source subtask {}: {e}; retrying", self.subtask);
                        None
                    }
                    Some(Err(e)) => return Err(KafkaError::Client(format!("consuming failed: {e}")).into()),
                    Some(Ok(m)) => Some((
                        m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len),
                        m.topic().to_string(),
                        m.partition(),
                        m.offset(),
                        (self.deserialize)(m.key(), m.payload().unwrap_or_default()),
                        m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    )),
                }
            };
            let Some((size, topic, partition, offset, value, raw)) = polled else { break };
            bytes += size as u64;
            match value {
                Ok(v) => out.collect(v)?,
                Err(message) => self.bad_record(&topic, partition, offset, &raw, message)?,
            }
            self.positions.insert((topic, partition), offset + 1);
            emitted += 1;
        }
        if emitted > 0 {
            if let Some(m) = &self.metrics {
                m.read(emitted, bytes);
            }
            return Ok(SourceStatus::MoreAvailable);
        }
        if self.finished()? {
            return Ok(SourceStatus::Finished);
        }
        Ok(SourceStatus::Idle(Duration::from_millis(10)))
    }

    fn snapshot_state(&mut self, checkpoint: CheckpointId) -> Result<Self::State> {
        // Every partition this subtask owns (the union of all subtasks'
        // states then names each partition once); one not read yet keeps its
        // start (EARLIEST for one that starts at the earliest offset).
        let state: BTreeMap<Tp, i64> = self
            .assigned
            .iter()
            .filter_map(|tp| self.positions.get(tp).or_else(|| self.starts.get(tp)).map(|o| (tp.clone(), *o)))
            .collect();
        self.to_commit.insert(checkpoint.0, state.clone());
        Ok(state.into_iter().map(|((t, p), o)| (t, p, o)).collect())
    }

    fn union_state(&self) -> bool {
        true
    }

    fn restore_state(&mut self, state: Self::State) -> Result<()> {
        // Called once per old subtask. Each partition is in one state only
        // (checkpoints of earlier versions, too); were it in several, the
        // furthest offset is the owner's.
        let restored = self.restored.get_or_insert_with(BTreeMap::new);
        for (t, p, o) in state {
            let e = restored.entry((t, p)).or_insert(o);
            *e = (*e).max(o);
        }
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<()> {
        let later = self.to_commit.split_off(&(checkpoint.0 + 1));
        let done = std::mem::replace(&mut self.to_commit, later);
        if let Some((_, offsets)) = done.into_iter().next_back() {
            let mut tpl = TopicPartitionList::new();
            // A partition still at EARLIEST has no offset to commit.
            for ((t, p), o) in offsets.into_iter().filter(|(_, o)| *o >= 0) {
                tpl.add_partition_offset(&t, p, Offset::Offset(o)).map_err(|e| KafkaError::Client(e.to_string()))?;
            }
            if tpl.count() > 0 {
                // For monitoring only: the checkpoint is the truth.
                if let Err(e) = self.consumer()?.commit(&tpl, CommitMode::Async) {
                    tracing::warn!("committing group offsets failed (monitoring only): {e}");
                }
            }
        }
        Ok(())
    }
}

/// Consumer errors librdkafka reports and then recovers from on its own:
/// metadata of a partition not known yet or moving between brokers, and
/// timeouts. Polling goes on after them; any other error fails the task.
fn is_transient(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(e, rdkafka::error::KafkaError::PartitionEOF(_))
        || matches!(
            e,
            rdkafka::error::KafkaError::MessageConsumption(
                C::UnknownTopicOrPartition
                    | C::UnknownPartition
                    | C::UnknownTopic
                    | C::LeaderNotAvailable
                    | C::NotLeaderForPartition
                    | C::RequestTimedOut
                    | C::BrokerTransportFailure
            )
        )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::is_transient;
    use rdkafka::error::KafkaError as E;
    use rdkafka::types::RDKafkaErrorCode as C;

    #[test]
    fn metadata_races_are_retried_and_other_consumer_errors_fail() {
        assert!(is_transient(&E::MessageConsumption(C::UnknownTopicOrPartition)));
        assert!(is_transient(&E::MessageConsumption(C::LeaderNotAvailable)));
        assert!(!is_transient(&E::MessageConsumption(C::TopicAuthorizationFailed)));
        assert!(!is_transient(&E::MessageConsumptionFatal(C::UnknownTopicOrPartition)));
    }
}
