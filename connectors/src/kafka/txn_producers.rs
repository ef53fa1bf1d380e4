//! The exactly-once sink's producers: one per transaction, each made and
//! initialised (`InitProducerId`) ahead of need on a background thread, a
//! few transactions ahead ([`ProducerPool`]).
//!
//! Why a pool and not one producer prepared ahead: `init_transactions` in
//! librdkafka 2.12 takes either ~50 ms or ~500 ms on a local broker (the
//! slow case waits for one of its internal retry timers), so with one
//! preparation in flight a sink checkpointing every 200 ms waited ~100 ms
//! per transaction for its next producer (`bench_kafka`, phase
//! `wait-for-producer`). Preparations run in parallel, so *k* of them cover
//! checkpoints every 500 ms / *k*.
//!
//! Safety of preparing ahead (see also `docs/kafka-exactly-once.md`): an id
//! prepared and never used is initialised without a transaction — nothing
//! to abort, and a recovery's probe sees it as known and empty. Every
//! preparation is joined before the subtask reports its end
//! ([`ProducerPool::clear`] from `close`), so no `InitProducerId` of a
//! failed attempt reaches the broker after a restarted attempt started to
//! use that id.

use super::protocol::TxnCoordinatorClient;
use super::sink::{SinkConfig, TxnProducer, TIMEOUT};
use super::KafkaError;
use rdkafka::producer::Producer;
use std::collections::VecDeque;
use std::thread::JoinHandle;
use std::time::Duration;

/// Most producers prepared ahead per subtask.
pub(crate) const MAX_AHEAD: usize = 8;

/// How many transactions ahead to prepare producers for, checkpointing
/// every `interval`: enough that preparations of up to 750 ms keep up,
/// from 2 (at 1 s and above) to [`MAX_AHEAD`]; 1 without checkpoints.
pub(crate) fn default_ahead(interval: Option<Duration>) -> usize {
    match interval {
        None => 1,
        Some(i) => {
            let ms = i.as_millis().max(1);
            (750u128.div_ceil(ms) as usize + 1).clamp(2, MAX_AHEAD)
        }
    }
}

/// Drops `producer` on a thread of its own: closing a producer waits for
/// its polling thread (up to 100 ms).
pub(crate) fn drop_in_background(producer: TxnProducer) {
    // If no thread can be started, the closure, and the producer with it,
    // is dropped right here.
    if let Err(e) = std::thread::Builder::new().name("kafka-producer-close".into()).spawn(move || drop(producer)) {
        tracing::debug!("closed a Kafka producer on the task thread: {e}");
    }
}

/// A producer whose transactional id is initialised, with the producer id
/// and epoch the coordinator gave it.
pub(crate) struct ReadyProducer {
    pub(crate) producer: TxnProducer,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
}

/// Creates a producer for `id` and initialises it (which fences and aborts
/// anything left open under that id).
pub(crate) fn init_producer(config: &SinkConfig, id: &str) -> Result<TxnProducer, KafkaError> {
    let producer: TxnProducer = config
        .client()
        .set("transactional.id", id)
        .create()
        .map_err(|e| KafkaError::Client(format!("cannot create a producer for '{id}': {e}")))?;
    producer.init_transactions(TIMEOUT).map_err(|e| {
        KafkaError::Client(format!(
            "cannot initialise transactions for '{id}' at {}: {e} (is the broker reachable, and does it allow transactions?)",
            config.bootstrap
        ))
    })?;
    Ok(producer)
}

/// [`init_producer`], then reads the producer id and epoch the transaction
/// will carry (they stay until the id is initialised again).
pub(crate) fn prepare(
    config: &SinkConfig,
    coordinator: &TxnCoordinatorClient,
    id: &str,
) -> Result<ReadyProducer, KafkaError> {
    let producer = init_producer(config, id)?;
    let d = coordinator
        .describe(id)
        .map_err(KafkaError::Client)?
        .ok_or_else(|| KafkaError::Client(format!("the coordinator does not know the initialised id '{id}'")))?;
    Ok(ReadyProducer { producer, producer_id: d.producer_id, producer_epoch: d.producer_epoch })
}

/// A producer being prepared for a transactional id on a background thread.
struct Preparing {
    /// The checkpoint the transaction is for.
    checkpoint: u64,
    id: String,
    thread: JoinHandle<Result<ReadyProducer, KafkaError>>,
}

impl Preparing {
    /// Waits for the preparation; `None` if it failed (logged) or panicked.
    fn join(self) -> Option<ReadyProducer> {
        match self.thread.join() {
            Ok(Ok(ready)) => Some(ready),
            Ok(Err(e)) => {
                tracing::warn!("preparing the Kafka producer of '{}' failed, trying again: {e}", self.id);
                None
            }
            Err(_) => {
                tracing::warn!("preparing the Kafka producer of '{}' panicked, trying again", self.id);
                None
            }
        }
    }
}

/// Producers being prepared for the next transactions, by checkpoint, in
/// increasing order.
pub(crate) struct ProducerPool {
    ahead: usize,
    queue: VecDeque<Preparing>,
}

impl ProducerPool {
    /// A pool that prepares `ahead` (1 to [`MAX_AHEAD`]) transactions ahead.
    pub(crate) fn new(ahead: usize) -> Self {
        ProducerPool { ahead: ahead.clamp(1, MAX_AHEAD), queue: VecDeque::new() }
    }

    /// Starts preparations for the checkpoints `from`, `from + 1`, ...
    /// `ahead` of them, that are not under way yet; `start(checkpoint)`
    /// runs one on a new thread.
    pub(crate) fn fill(
        &mut self,
        from: u64,
        mut start: impl FnMut(u64) -> std::io::Result<(String, JoinHandle<Result<ReadyProducer, KafkaError>>)>,
    ) {
        self.drop_before(from);
        let mut next = self.queue.back().map_or(from, |p| p.checkpoint + 1).max(from);
        while self.queue.len() < self.ahead {
            match start(next) {
                Ok((id, thread)) => self.queue.push_back(Preparing { checkpoint: next, id, thread }),
                Err(e) => {
                    tracing::warn!("cannot prepare a Kafka producer ahead: {e}");
                    return;
                }
            }
            next += 1;
        }
    }

    /// The producer prepared for `checkpoint`, waiting for it if its
    /// preparation is under way; `None` if none was started or it failed.
    /// Preparations for earlier checkpoints are dropped.
    pub(crate) fn take(&mut self, checkpoint: u64) -> Option<ReadyProducer> {
        self.drop_before(checkpoint);
        match self.queue.front() {
            Some(p) if p.checkpoint == checkpoint => self.queue.pop_front().and_then(Preparing::join),
            _ => None,
        }
    }

    /// Joins every preparation under way and drops what they made (ids
    /// initialised without a transaction: nothing to abort).
    pub(crate) fn clear(&mut self) {
        self.drop_before(u64::MAX);
    }

    fn drop_before(&mut self, checkpoint: u64) {
        while self.queue.front().is_some_and(|p| p.checkpoint < checkpoint) {
            if let Some(ready) = self.queue.pop_front().and_then(Preparing::join) {
                drop_in_background(ready.producer);
            }
        }
    }

    /// The checkpoints with a preparation under way, in order.
    #[cfg(test)]
    fn checkpoints(&self) -> Vec<u64> {
        self.queue.iter().map(|p| p.checkpoint).collect()
    }
}

impl Drop for ProducerPool {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A preparation that fails at once (no broker involved).
    #[allow(clippy::unnecessary_wraps)]
    fn failing(checkpoint: u64) -> std::io::Result<(String, JoinHandle<Result<ReadyProducer, KafkaError>>)> {
        let id = format!("t-{checkpoint}");
        let message = id.clone();
        Ok((id, std::thread::spawn(move || Err(KafkaError::Client(message)))))
    }

    #[test]
    fn the_pool_prepares_the_next_checkpoints_once_each_and_drops_passed_ones() {
        let mut pool = ProducerPool::new(3);
        let mut started = Vec::new();
        pool.fill(5, |c| {
            started.push(c);
            failing(c)
        });
        assert_eq!(pool.checkpoints(), [5, 6, 7]);
        // Transaction 5 begins: 6 and 7 are under way, 8 is added.
        assert!(pool.take(5).is_none(), "a failed preparation gives nothing");
        pool.fill(6, |c| {
            started.push(c);
            failing(c)
        });
        assert_eq!(pool.checkpoints(), [6, 7, 8]);
        // Checkpoint ids jumped (a restart from 9): earlier ones are dropped.
        assert!(pool.take(10).is_none());
        assert!(pool.checkpoints().is_empty());
        pool.fill(11, |c| {
            started.push(c);
            failing(c)
        });
        assert_eq!(pool.checkpoints(), [11, 12, 13]);
        assert_eq!(started, [5, 6, 7, 8, 11, 12, 13], "no checkpoint prepared twice");
        pool.clear();
        assert!(pool.checkpoints().is_empty());
    }

    #[test]
    fn more_producers_are_prepared_ahead_the_shorter_the_interval() {
        assert_eq!(default_ahead(None), 1);
        assert_eq!(default_ahead(Some(Duration::from_secs(10))), 2);
        assert_eq!(default_ahead(Some(Duration::from_secs(1))), 2);
        assert_eq!(default_ahead(Some(Duration::from_millis(500))), 3);
        assert_eq!(default_ahead(Some(Duration::from_millis(200))), 5);
        assert_eq!(default_ahead(Some(Duration::from_millis(10))), MAX_AHEAD);
        assert_eq!(ProducerPool::new(100).ahead, MAX_AHEAD);
    }
}
