//! Record writers: the end of a chain that feeds downstream subtasks.
//!
//! A writer picks a channel per record (the partitioner), appends the record
//! to that channel's batch, and sends the batch when it is full, when the
//! task flushes (idle, buffer timeout) and before any watermark, barrier or
//! end of stream. Channels are bounded: when the consumer is behind, `send`
//! blocks, which is how backpressure travels upstream to the source. The time
//! spent blocked is counted as back-pressured time. A blocked send gives up
//! when the subtask is canceled: its consumer may be gone for good (it failed
//! before claiming its channel), and a cancel must not wait for it.

use crate::error::{Error, Result};
use crate::runtime::collector::{ChainInput, ChainStates, Collector};
use crate::runtime::element::{StreamElement, Watermark};
use crate::runtime::partitioning::Partitioning;
use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};
use prometheus::IntCounter;
use sluice_checkpoint::key_group::{key_group_for_hash, operator_index_for_key_group};
use sluice_checkpoint::{CheckpointBarrier, CheckpointId};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A stable hash of a record's key.
pub(crate) type KeyHash<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// Picks the downstream channel of each record.
pub(crate) enum Partitioner<T> {
    /// Subtask *i* to subtask *i* (one channel).
    Forward,
    /// Round robin over all downstream subtasks.
    Rebalance(usize),
    /// Every record to every downstream subtask.
    Broadcast,
    /// By key group of the record's key.
    Hash { key_hash: KeyHash<T>, max_parallelism: u32 },
}

impl<T> Partitioner<T> {
    pub(crate) fn new(
        kind: Partitioning,
        key_hash: Option<KeyHash<T>>,
        max_parallelism: u32,
        subtask: u32,
    ) -> Result<Self> {
        Ok(match kind {
            Partitioning::Forward => Partitioner::Forward,
            Partitioning::Rebalance => Partitioner::Rebalance(subtask as usize),
            Partitioning::Broadcast => Partitioner::Broadcast,
            Partitioning::Hash => Partitioner::Hash {
                key_hash: key_hash
                    .ok_or_else(|| Error::InvalidGraph("hash partitioning without a key selector".into()))?,
                max_parallelism,
            },
        })
    }
}

/// Writes a chain's output into the channels towards downstream subtasks.
pub(crate) struct RecordWriter<T> {
    senders: Vec<Sender<StreamElement<T>>>,
    buffers: Vec<Vec<T>>,
    partitioner: Partitioner<T>,
    batch_size: usize,
    back_pressure: IntCounter,
    blocked: Duration,
    description: String,
    /// The subtask's cancel flag, checked while a send is blocked.
    canceled: Arc<AtomicBool>,
}

/// How often a blocked send looks at the cancel flag.
const CANCEL_CHECK: Duration = Duration::from_millis(50);

impl<T: Clone + Send> RecordWriter<T> {
    pub(crate) fn new(
        senders: Vec<Sender<StreamElement<T>>>,
        partitioner: Partitioner<T>,
        batch_size: usize,
        back_pressure: IntCounter,
        description: String,
        canceled: Arc<AtomicBool>,
    ) -> Self {
        let buffers = senders.iter().map(|_| Vec::with_capacity(batch_size)).collect();
        RecordWriter {
            senders,
            buffers,
            partitioner,
            batch_size: batch_size.max(1),
            back_pressure,
            blocked: Duration::ZERO,
            description,
            canceled,
        }
    }

    fn send(&mut self, idx: usize, element: StreamElement<T>) -> Result<()> {
        let sender = &self.senders[idx];
        match sender.try_send(element) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(mut element)) => {
                let started = Instant::now();
                let sent = loop {
                    match sender.send_timeout(element, CANCEL_CHECK) {
                        Ok(()) => break Ok(()),
                        Err(SendTimeoutError::Disconnected(_)) => break Err(self.closed(idx)),
                        Err(SendTimeoutError::Timeout(back)) if !self.canceled.load(Ordering::Relaxed) => {
                            element = back
                        }
                        Err(SendTimeoutError::Timeout(_)) => {
                            break Err(Error::TaskCanceled(format!(
                                "waiting for downstream subtask {} to take the {}",
                                idx + 1,
                                self.description
                            )))
                        }
                    }
                };
                self.blocked += started.elapsed();
                sent
            }
            Err(TrySendError::Disconnected(_)) => Err(self.closed(idx)),
        }
    }

    fn closed(&self, idx: usize) -> Error {
        Error::ChannelClosed(format!("{} (downstream subtask {}) stopped consuming", self.description, idx + 1))
    }

    fn send_batch(&mut self, idx: usize) -> Result<()> {
        if self.buffers[idx].is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.buffers[idx], Vec::with_capacity(self.batch_size));
        self.send(idx, StreamElement::Records(batch))
    }

    fn flush_all(&mut self) -> Result<()> {
        for i in 0..self.buffers.len() {
            self.send_batch(i)?;
        }
        let ms = self.blocked.as_millis() as u64;
        if ms > 0 {
            self.back_pressure.inc_by(ms);
            self.blocked -= Duration::from_millis(ms);
        }
        Ok(())
    }

    fn broadcast_event(&mut self, element: StreamElement<T>) -> Result<()> {
        self.flush_all()?;
        for i in 0..self.senders.len() {
            self.send(i, element.clone())?;
        }
        Ok(())
    }

    #[inline]
    fn push(&mut self, idx: usize, record: T) -> Result<()> {
        let buf = &mut self.buffers[idx];
        buf.push(record);
        if buf.len() >= self.batch_size {
            self.send_batch(idx)?;
        }
        Ok(())
    }
}

impl<T: Clone + Send> Collector<T> for RecordWriter<T> {
    #[inline]
    fn collect(&mut self, record: T) -> Result<()> {
        let n = self.senders.len();
        match &mut self.partitioner {
            Partitioner::Forward => self.push(0, record),
            Partitioner::Rebalance(next) => {
                let idx = *next % n;
                *next = next.wrapping_add(1);
                self.push(idx, record)
            }
            Partitioner::Hash { key_hash, max_parallelism } => {
                let group = key_group_for_hash(key_hash(&record), *max_parallelism);
                let idx = operator_index_for_key_group(*max_parallelism, n as u32, group) as usize;
                self.push(idx, record)
            }
            Partitioner::Broadcast => {
                for i in 0..n.saturating_sub(1) {
                    self.push(i, record.clone())?;
                }
                self.push(n - 1, record)
            }
        }
    }
}

impl<T: Clone + Send> ChainInput<T> for RecordWriter<T> {
    fn watermark(&mut self, wm: Watermark) -> Result<()> {
        self.broadcast_event(StreamElement::Watermark(wm))
    }
    fn flush(&mut self) -> Result<()> {
        self.flush_all()
    }
    fn end_of_input(&mut self) -> Result<()> {
        self.broadcast_event(StreamElement::EndOfStream)
    }
    fn snapshot(&mut self, barrier: &CheckpointBarrier, _states: &mut ChainStates) -> Result<()> {
        self.broadcast_event(StreamElement::Barrier(*barrier))
    }
    fn idle(&mut self) -> Result<()> {
        self.broadcast_event(StreamElement::Idle)
    }
    fn checkpoint_complete(&mut self, _id: CheckpointId) -> Result<()> {
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}
