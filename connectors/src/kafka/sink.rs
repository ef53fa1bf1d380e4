//! Kafka sinks: exactly-once through transactions (a
//! [`TwoPhaseCommitSink`]), or at-least-once (flush on every barrier).
//!
//! # Exactly-once
//!
//! Each subtask writes inside a Kafka transaction. The transactional id is
//! `<prefix>-<subtask>-<n>`, where *n* is the checkpoint the transaction will
//! be pre-committed at, so an id is never reused for another transaction
//! while a checkpoint may still name it (reusing one would let a recovery
//! commit whatever newer transaction is open under it). On barrier *n* the
//! producer is flushed and the transaction's id, producer id and epoch (read
//! with `DescribeTransactions`) are recorded in the checkpoint. On "*n*
//! complete" it is committed. On restore, transactions the checkpoint
//! recorded are committed through `EndTxn` with the stored producer id and
//! epoch (librdkafka cannot resume them); then the ids after the restored
//! checkpoint are probed upwards and every transaction found open under them
//! is aborted (by initialising a producer with its id), until five ids in a
//! row are unknown, so `read_committed` readers are not blocked — for the
//! old subtasks taken over and for further subtask indices this one would
//! own as long as they were used (a run at a higher parallelism may have
//! died before completing a checkpoint). Empty
//! transactions are aborted, not committed.
//!
//! Each transaction has its own producer. Creating one and running
//! `InitProducerId` takes 50–500 ms, so the producers of the next
//! transactions, `<prefix>-<subtask>-<n+1>`, `<n+2>`, ..., are prepared on
//! background threads as soon as transaction *n* begins (created,
//! initialised, and their producer id and epoch read with
//! `DescribeTransactions`), as many ahead as the checkpoint interval needs
//! ([`with_producers_prepared_ahead`](KafkaTransactionalSink::with_producers_prepared_ahead));
//! the barrier only flushes, and the first record after it swaps the
//! prepared producer in. Preparations are joined in `close`, before the
//! subtask reports that it ended, so no `InitProducerId` of a failed attempt
//! can reach the broker after a restarted attempt has started to use that id
//! (it would fence the new attempt's transaction); see
//! `docs/kafka-exactly-once.md`. Committed producers are dropped on a
//! background thread (closing one takes up to 100 ms).
//!
//! Keep `transaction.timeout.ms` (default here 15 min) above the checkpoint
//! interval plus the time a restart may take: the broker aborts an older
//! transaction, and a checkpoint that recorded it then cannot be committed
//! (the restore fails with a message saying records were lost). It may not
//! exceed the broker's `transaction.max.timeout.ms`.

use super::broker_connection::BrokerSecurity;
use super::metrics::SinkMetrics;
use super::phases::{self, Phase};
use super::properties::ClientProperties;
use super::protocol::{EndTxnOutcome, TxnCoordinatorClient};
use super::txn_producers::{default_ahead, drop_in_background, init_producer, prepare, ProducerPool, ReadyProducer};
use super::KafkaError;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde::{Deserialize, Serialize};
use sluice::sink::two_phase::TwoPhaseCommitSink;
use sluice::{Error, Result, RuntimeContext, Sink};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Turns a record into a Kafka key and value.
pub type Serializer<T> = Arc<dyn Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync>;

pub(crate) type TxnProducer = ThreadedProducer<DefaultProducerContext>;

/// Unknown transactional ids in a row that end the lingering-transaction probe.
const PROBE_MISSES: u32 = 5;
pub(crate) const TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed for a restart when checking `transaction.timeout.ms`.
const RESTART_ALLOWANCE_MS: u64 = 60_000;

/// A transaction of the exactly-once sink, as stored in checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KafkaTransaction {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id (known after pre-commit).
    pub producer_id: i64,
    /// The producer epoch (known after pre-commit).
    pub producer_epoch: i16,
    /// Records written.
    pub records: u64,
}

/// The transactional id of subtask `subtask`'s transaction for checkpoint `n`.
fn transactional_id(prefix: &str, subtask: u32, n: u64) -> String {
    format!("{prefix}-{subtask}-{n}")
}

/// Settings shared by the Kafka sinks.
#[derive(Clone, Debug)]
pub(crate) struct SinkConfig {
    pub(crate) bootstrap: String,
    topic: String,
    extra: ClientProperties,
}

impl SinkConfig {
    pub(crate) fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("linger.ms", "5");
        self.extra.apply(&mut c);
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }
}

/// Sends one record; returns its key + value size.
fn send<T>(producer: &TxnProducer, topic: &str, serialize: &Serializer<T>, record: &T) -> Result<usize> {
    let (key, value) = serialize(record);
    let size = value.len() + key.as_ref().map_or(0, Vec::len);
    let mut r = BaseRecord::<[u8], [u8]>::to(topic).payload(&value);
    if let Some(k) = key.as_deref() {
        r = r.key(k);
    }
    loop {
        match producer.send(r) {
            Ok(()) => return Ok(size),
            Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                r = back;
                phases::timed(Phase::QueueFull, || std::thread::sleep(Duration::from_millis(2)));
            }
            Err((e, _)) => return Err(Error::user(format!("cannot send to Kafka topic '{topic}': {e}"))),
        }
    }
}

/// Flushes `producer`: waits until every record sent is delivered.
///
/// librdkafka's flush through `ThreadedProducer` sleeps in steps of 100 ms
/// (the polling thread, not the caller, serves the delivery reports), which
/// cost up to 100 ms per barrier; this asks librdkafka to send at once and
/// checks every millisecond instead.
fn flush(producer: &TxnProducer) -> std::result::Result<(), RdError> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match producer.flush(Duration::ZERO) {
            Ok(()) => return Ok(()),
            Err(RdError::Flush(RDKafkaErrorCode::OperationTimedOut)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The exactly-once Kafka sink. Use with `DataStream::sink_to`.
pub struct KafkaTransactionalSink<T> {
    config: SinkConfig,
    prefix: String,
    serialize: Serializer<T>,
    subtask: u32,
    parallelism: u32,
    producers: HashMap<String, TxnProducer>,
    /// Ids with a transaction opened by a live producer of this process.
    open_here: HashSet<String>,
    coordinator: Option<TxnCoordinatorClient>,
    /// Producers of the next transactions, being prepared.
    pool: ProducerPool,
    /// Transactions to prepare producers ahead for (default: from the
    /// checkpoint interval, see [`default_ahead`]).
    ahead: Option<usize>,
    metrics: Option<SinkMetrics>,
}

impl<T> Clone for KafkaTransactionalSink<T> {
    fn clone(&self) -> Self {
        KafkaTransactionalSink {
            config: self.config.clone(),
            prefix: self.prefix.clone(),
            serialize: self.serialize.clone(),
            subtask: 0,
            parallelism: 1,
            producers: HashMap::new(),
            open_here: HashSet::new(),
            coordinator: None,
            pool: ProducerPool::new(1),
            ahead: self.ahead,
            metrics: None,
        }
    }
}

impl<T> KafkaTransactionalSink<T> {
    /// Writes to `topic` on `bootstrap`, with transactional ids starting
    /// with `transactional_id_prefix` (unique per job and sink).
    pub fn new(
        bootstrap: &str,
        topic: &str,
        transactional_id_prefix: &str,
        serialize: impl Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync + 'static,
    ) -> Self {
        KafkaTransactionalSink {
            config: SinkConfig {
                bootstrap: bootstrap.into(),
                topic: topic.into(),
                extra: {
                    let mut p = ClientProperties::default();
                    p.set("transaction.timeout.ms", "900000");
                    p
                },
            },
            prefix: transactional_id_prefix.into(),
            serialize: Arc::new(serialize),
            subtask: 0,
            parallelism: 1,
            producers: HashMap::new(),
            open_here: HashSet::new(),
            coordinator: None,
            pool: ProducerPool::new(1),
            ahead: None,
            metrics: None,
        }
    }

    /// Sets a producer property (e.g. `transaction.timeout.ms`, or
    /// `security.protocol` and `sasl.*` / `ssl.*` for a secured cluster), as
    /// Flink's `setProperty`. Secret values never show in logs.
    pub fn set_property(mut self, key: &str, value: &str) -> Self {
        self.config.extra.set(key, value);
        self
    }

    /// [`set_property`](Self::set_property) for each pair.
    pub fn set_properties<'a>(mut self, properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        self.config.extra.set_all(properties);
        self
    }

    /// The same as [`set_property`](Self::set_property).
    pub fn with_property(self, key: &str, value: &str) -> Self {
        self.set_property(key, value)
    }

    /// Prepares producers (created, `InitProducerId` done) for the next `n`
    /// transactions ahead, on background threads (1 to 8). The default
    /// follows the checkpoint interval: 2 at 1 s and above, up to 5 at
    /// 200 ms (see `docs/kafka-exactly-once.md`); each costs an idle
    /// producer per subtask.
    pub fn with_producers_prepared_ahead(mut self, n: usize) -> Self {
        self.ahead = Some(n);
        self
    }

    fn id(&self, subtask: u32, n: u64) -> String {
        transactional_id(&self.prefix, subtask, n)
    }

    /// `transaction.timeout.ms` must outlast a checkpoint interval plus a
    /// restart, and may not exceed the broker's `transaction.max.timeout.ms`.
    fn check_timeout(&self, ctx: &RuntimeContext) -> Result<()> {
        let configured =
            self.config.extra.get("transaction.timeout.ms").and_then(|v| v.parse::<u64>().ok()).unwrap_or(60_000);
        if let Some(interval) = ctx.checkpoint_interval {
            let needed = interval.as_millis() as u64 + RESTART_ALLOWANCE_MS;
            if configured < needed {
                return Err(KafkaError::Client(format!(
                    "transaction.timeout.ms is {configured} ms, less than the checkpoint interval ({} ms) plus {} s \
                     for a restart: the broker could abort a transaction a checkpoint already counts, and its records \
                     would be lost. Raise transaction.timeout.ms (KafkaTransactionalSink::with_property) to at least \
                     {needed} or shorten the checkpoint interval",
                    interval.as_millis(),
                    RESTART_ALLOWANCE_MS / 1000
                ))
                .into());
            }
        }
        let broker_max = self.coordinator()?.broker_config("transaction.max.timeout.ms").map_err(KafkaError::Client)?;
        if let Some(max) = broker_max.and_then(|v| v.parse::<u64>().ok()) {
            if configured > max {
                return Err(KafkaError::Client(format!(
                    "transaction.timeout.ms is {configured} ms but the broker's transaction.max.timeout.ms is {max} ms: \
                     the broker would refuse the producer. Lower transaction.timeout.ms to at most {max} \
                     (KafkaTransactionalSink::with_property) or raise transaction.max.timeout.ms on the broker"
                ))
                .into());
            }
        }
        Ok(())
    }

    fn coordinator(&self) -> Result<&TxnCoordinatorClient> {
        self.coordinator.as_ref().ok_or_else(|| Error::internal("Kafka sink used before open"))
    }

    /// Aborts the open transactions under `<prefix>-<s>-<n>` for `n` from
    /// `from` on, until [`PROBE_MISSES`] ids in a row are unknown; says
    /// whether any id was known.
    fn abort_lingering(&mut self, s: u32, from: u64) -> Result<bool> {
        let mut misses = 0;
        let mut known = false;
        let mut n = from;
        while misses < PROBE_MISSES {
            let id = self.id(s, n);
            match self.coordinator()?.describe(&id).map_err(KafkaError::Client)? {
                None => misses += 1,
                Some(d) => {
                    misses = 0;
                    known = true;
                    if !matches!(d.state.as_str(), "Empty" | "CompleteCommit" | "CompleteAbort" | "Dead") {
                        tracing::info!("Kafka sink: aborting lingering transaction '{id}' ({})", d.state);
                        // Initialising a producer with the id fences and aborts it.
                        drop_in_background(init_producer(&self.config, &id)?);
                        if let Some(m) = &self.metrics {
                            m.aborted();
                        }
                    }
                }
            }
            n += 1;
        }
        Ok(known)
    }

    /// The live producer of transaction `id`.
    fn producer(&self, id: &str) -> Result<&TxnProducer> {
        self.producers.get(id).ok_or_else(|| Error::internal(format!("no producer for transaction '{id}'")))
    }

    /// Starts preparing the producers of `<prefix>-<subtask>-<checkpoint>`
    /// and the next ones, as many as the pool holds, on background threads
    /// (see [`super::txn_producers`] for why this is safe).
    fn prepare_ahead(&mut self, checkpoint: u64) -> Result<()> {
        let coordinator = self.coordinator()?.clone();
        let (config, prefix, subtask) = (&self.config, &self.prefix, self.subtask);
        self.pool.fill(checkpoint, |c| {
            let id = transactional_id(prefix, subtask, c);
            let (config, coordinator, thread_id) = (config.clone(), coordinator.clone(), id.clone());
            std::thread::Builder::new()
                .name("kafka-txn-prepare".into())
                .spawn(move || phases::timed(Phase::Prepare, || prepare(&config, &coordinator, &thread_id)))
                .map(|thread| (id, thread))
        });
        Ok(())
    }

    /// The producer for transaction `id` of `checkpoint`: the one prepared
    /// ahead, else one made now.
    fn ready_producer(&mut self, checkpoint: u64, id: &str) -> Result<ReadyProducer> {
        let started = Instant::now();
        let ready = match self.pool.take(checkpoint) {
            Some(ready) => Ok(ready),
            None => prepare(&self.config, self.coordinator()?, id).map_err(Error::from),
        };
        phases::record(Phase::WaitForProducer, started.elapsed());
        ready
    }

    /// `recover`, untimed: commits the restored checkpoint's transactions,
    /// then aborts what earlier runs left open.
    fn commit_recovered_and_abort_lingering(
        &mut self,
        pending: Vec<KafkaTransaction>,
        old_subtasks: &[u32],
        next_checkpoint: u64,
    ) -> Result<()> {
        for txn in pending {
            if txn.records == 0 {
                continue;
            }
            let started = Instant::now();
            let outcome = self
                .coordinator()?
                .end_txn(&txn.transactional_id, txn.producer_id, txn.producer_epoch, true)
                .map_err(|e| {
                    KafkaError::Client(format!(
                        "cannot commit transaction '{}' recorded by the restored checkpoint: {e}. \
                         Its {} records are lost if the broker aborted it (transaction.timeout.ms too low?)",
                        txn.transactional_id, txn.records
                    ))
                })?;
            if let Some(m) = &self.metrics {
                m.committed(started.elapsed());
            }
            tracing::info!(
                "Kafka sink: committed transaction '{}' from the restored checkpoint ({outcome:?})",
                txn.transactional_id
            );
        }
        // Abort what earlier runs left open under ids no checkpoint knows:
        // for the old subtasks this one takes over, then for the further
        // indices it would take over (subtask + k * parallelism), as long as
        // one of them was used — a run at a higher parallelism may have been
        // killed before it completed a checkpoint.
        for &s in old_subtasks {
            self.abort_lingering(s, next_checkpoint)?;
        }
        let p = self.parallelism.max(1);
        let top = old_subtasks.iter().copied().max().unwrap_or(self.subtask).max(self.subtask);
        let mut s = self.subtask;
        while s <= top {
            s += p;
        }
        while self.abort_lingering(s, next_checkpoint)? {
            s += p;
        }
        Ok(())
    }

    /// `commit`, untimed.
    fn commit_now(&mut self, txn: KafkaTransaction) -> Result<()> {
        let id = txn.transactional_id.clone();
        let started = Instant::now();
        if self.open_here.remove(&id) {
            self.producer(&id)?.commit_transaction(TIMEOUT).map_err(|e| {
                KafkaError::Client(format!(
                    "cannot commit transaction '{id}': {e}; the job restarts and commits it from the checkpoint"
                ))
            })?;
        } else if txn.records > 0 {
            let outcome = self
                .coordinator()?
                .end_txn(&id, txn.producer_id, txn.producer_epoch, true)
                .map_err(KafkaError::Client)?;
            let _: EndTxnOutcome = outcome;
        }
        if let Some(m) = &self.metrics {
            m.committed(started.elapsed());
        }
        if let Some(p) = self.producers.remove(&id) {
            drop_in_background(p);
        }
        Ok(())
    }
}

impl<T: Send + 'static> TwoPhaseCommitSink<T> for KafkaTransactionalSink<T> {
    type Transaction = KafkaTransaction;

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.subtask = ctx.subtask_index;
        self.parallelism = ctx.parallelism;
        // The coordinator client resumes transactions after a restart with
        // raw protocol requests: secured as the producers are.
        let security = BrokerSecurity::from_properties(&self.config.extra).map_err(KafkaError::Client)?;
        self.coordinator =
            Some(TxnCoordinatorClient::new(&self.config.bootstrap, Duration::from_secs(10)).with_security(security));
        self.metrics = SinkMetrics::new(ctx);
        self.pool = ProducerPool::new(self.ahead.unwrap_or_else(|| default_ahead(ctx.checkpoint_interval)));
        phases::timed(Phase::Open, || self.check_timeout(ctx))
    }

    fn recover(&mut self, pending: Vec<KafkaTransaction>, old_subtasks: &[u32], next_checkpoint: u64) -> Result<()> {
        phases::timed(Phase::Recover, || {
            self.commit_recovered_and_abort_lingering(pending, old_subtasks, next_checkpoint)
        })?;
        self.prepare_ahead(next_checkpoint)
    }

    fn begin_transaction(&mut self, checkpoint: u64) -> Result<KafkaTransaction> {
        let id = self.id(self.subtask, checkpoint);
        let ready = self.ready_producer(checkpoint, &id)?;
        phases::timed(Phase::Begin, || ready.producer.begin_transaction())
            .map_err(|e| KafkaError::Client(format!("cannot begin a transaction on '{id}': {e}")))?;
        self.producers.insert(id.clone(), ready.producer);
        self.open_here.insert(id.clone());
        self.prepare_ahead(checkpoint + 1)?;
        Ok(KafkaTransaction {
            transactional_id: id,
            producer_id: ready.producer_id,
            producer_epoch: ready.producer_epoch,
            records: 0,
        })
    }

    fn write(&mut self, txn: &mut KafkaTransaction, record: T) -> Result<()> {
        // begin_transaction created the producer; borrow it beside the config.
        let producer = self
            .producers
            .get(&txn.transactional_id)
            .ok_or_else(|| Error::internal(format!("no producer for transaction '{}'", txn.transactional_id)))?;
        let size = send(producer, &self.config.topic, &self.serialize, &record)?;
        if let Some(m) = &mut self.metrics {
            m.sent(size);
        }
        txn.records += 1;
        Ok(())
    }

    fn pre_commit(&mut self, txn: &mut KafkaTransaction) -> Result<()> {
        let id = txn.transactional_id.clone();
        phases::timed(Phase::Flush, || {
            flush(self.producer(&id)?)
                .map_err(|e| Error::from(KafkaError::Client(format!("cannot flush transaction '{id}': {e}"))))
        })?;
        if let Some(m) = &mut self.metrics {
            m.publish();
        }
        if txn.records > 0 && txn.producer_id < 0 {
            // Not known from the preparation (cannot happen today): ask.
            let d = self
                .coordinator()?
                .describe(&id)
                .map_err(KafkaError::Client)?
                .ok_or_else(|| KafkaError::Client(format!("the coordinator does not know transaction '{id}'")))?;
            txn.producer_id = d.producer_id;
            txn.producer_epoch = d.producer_epoch;
        }
        Ok(())
    }

    fn commit(&mut self, txn: KafkaTransaction) -> Result<()> {
        let started = Instant::now();
        let committed = self.commit_now(txn);
        phases::record(Phase::Commit, started.elapsed());
        committed
    }

    fn abort(&mut self, txn: KafkaTransaction) -> Result<()> {
        let id = txn.transactional_id.clone();
        if self.open_here.remove(&id) {
            self.producer(&id)?
                .abort_transaction(TIMEOUT)
                .map_err(|e| KafkaError::Client(format!("cannot abort transaction '{id}': {e}")))?;
            if let Some(m) = &self.metrics {
                m.aborted();
            }
        }
        if let Some(p) = self.producers.remove(&id) {
            drop_in_background(p);
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        // Before the subtask reports its end (and a restarted attempt may
        // use the id): no InitProducerId of this attempt may come later.
        phases::timed(Phase::Close, || self.pool.clear());
        if let Some(m) = &mut self.metrics {
            m.publish();
        }
        Ok(())
    }

    fn is_empty(&self, txn: &KafkaTransaction) -> bool {
        txn.records == 0
    }
}

/// The at-least-once (or no-guarantee) Kafka sink: records are sent as
/// they come and, at-least-once, flushed on every checkpoint barrier.
pub struct KafkaSink<T> {
    config: SinkConfig,
    serialize: Serializer<T>,
    flush_on_checkpoint: bool,
    producer: Option<TxnProducer>,
    metrics: Option<SinkMetrics>,
}

impl<T> Clone for KafkaSink<T> {
    fn clone(&self) -> Self {
        KafkaSink {
            config: self.config.clone(),
            serialize: self.serialize.clone(),
            flush_on_checkpoint: self.flush_on_checkpoint,
            producer: None,
            metrics: None,
        }
    }
}

impl<T> KafkaSink<T> {
    /// At-least-once: flushed on every barrier, so a completed checkpoint
    /// has all earlier records in Kafka (a restart may write some twice).
    pub fn at_least_once(
        bootstrap: &str,
        topic: &str,
        serialize: impl Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync + 'static,
    ) -> Self {
        KafkaSink {
            config: SinkConfig { bootstrap: bootstrap.into(), topic: topic.into(), extra: ClientProperties::default() },
            serialize: Arc::new(serialize),
            flush_on_checkpoint: true,
            producer: None,
            metrics: None,
        }
    }

    /// No guarantee: records may be lost or duplicated on failure.
    pub fn none(
        bootstrap: &str,
        topic: &str,
        serialize: impl Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync + 'static,
    ) -> Self {
        KafkaSink { flush_on_checkpoint: false, ..Self::at_least_once(bootstrap, topic, serialize) }
    }

    /// Sets a producer property (e.g. `linger.ms`, `compression.type`, or
    /// `security.protocol` and `sasl.*` / `ssl.*` for a secured cluster), as
    /// Flink's `setProperty`. Secret values never show in logs.
    pub fn set_property(mut self, key: &str, value: &str) -> Self {
        self.config.extra.set(key, value);
        self
    }

    /// [`set_property`](Self::set_property) for each pair.
    pub fn set_properties<'a>(mut self, properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        self.config.extra.set_all(properties);
        self
    }

    /// The same as [`set_property`](Self::set_property).
    pub fn with_property(self, key: &str, value: &str) -> Self {
        self.set_property(key, value)
    }
}

impl<T: Send + 'static> Sink<T> for KafkaSink<T> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.metrics = SinkMetrics::new(ctx);
        let p: TxnProducer =
            phases::timed(Phase::Open, || self.config.client().set("enable.idempotence", "true").create())
                .map_err(|e| KafkaError::Client(format!("cannot create a Kafka producer: {e}")))?;
        self.producer = Some(p);
        Ok(())
    }

    fn write(&mut self, record: T) -> Result<()> {
        let p = self.producer.as_ref().ok_or_else(|| Error::internal("Kafka sink used before open"))?;
        let size = send(p, &self.config.topic, &self.serialize, &record)?;
        if let Some(m) = &mut self.metrics {
            m.sent(size);
        }
        Ok(())
    }

    fn prepare_checkpoint(&mut self, _checkpoint: sluice::CheckpointId) -> Result<()> {
        if let Some(m) = &mut self.metrics {
            m.publish();
        }
        match (&self.producer, self.flush_on_checkpoint) {
            (Some(p), true) => phases::timed(Phase::Flush, || flush(p))
                .map_err(|e| Error::from(KafkaError::Client(format!("cannot flush on a checkpoint barrier: {e}")))),
            _ => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(m) = &mut self.metrics {
            m.publish();
        }
        match &self.producer {
            Some(p) => phases::timed(Phase::Flush, || flush(p))
                .map_err(|e| Error::from(KafkaError::Client(format!("cannot flush at end of input: {e}")))),
            None => Ok(()),
        }
    }

    fn close(&mut self) -> Result<()> {
        if let Some(m) = &mut self.metrics {
            m.publish();
        }
        Ok(())
    }
}
