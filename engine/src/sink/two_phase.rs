//! The two-phase-commit sink contract: exactly-once output to an external
//! system through checkpoints.
//!
//! A [`TwoPhaseCommitSink`] writes every record into the current
//! *transaction*. Its lifecycle, driven by the runtime:
//!
//! 1. on start, [`recover`](TwoPhaseCommitSink::recover) with the
//!    transactions the restored checkpoint recorded as pending — they are
//!    **committed** (the checkpoint already counts their input as consumed) —
//!    and then every other transaction this sink may have left open is
//!    aborted, so readers are never blocked by them;
//! 2. [`begin_transaction`](TwoPhaseCommitSink::begin_transaction), then
//!    [`write`](TwoPhaseCommitSink::write) per record;
//! 3. when barrier *n* passes: [`pre_commit`](TwoPhaseCommitSink::pre_commit)
//!    the current transaction (flush; after this it must survive a crash and
//!    still be committable), record it in the snapshot as pending for *n*,
//!    and begin the next one;
//! 4. when checkpoint *n* is complete everywhere: [`commit`](TwoPhaseCommitSink::commit)
//!    every pending transaction of checkpoints ≤ *n*. Commit must be
//!    idempotent: after a crash between "complete" and "committed" the
//!    transaction is committed again on restore;
//! 5. at the end of bounded input the current transaction is pre-committed
//!    and committed with the pending ones.
//!
//! Without checkpoints, a transaction spans the whole run and is committed
//! at the end of input. Errors fail the subtask; say whether data may have
//! been lost.

use crate::error::{Error, Result};
use crate::runtime::collector::Collector;
use crate::runtime::context::RuntimeContext;
use crate::runtime::operator::StreamOperator;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_checkpoint::state::format::StateSnapshot;
use sluice_checkpoint::CheckpointId;
use std::collections::BTreeMap;

/// An exactly-once sink. See the module docs for the lifecycle.
pub trait TwoPhaseCommitSink<T>: Send + 'static {
    /// What identifies a transaction durably (a temporary file, a Kafka
    /// transactional id with producer id and epoch, ...). It is stored in
    /// checkpoints.
    type Transaction: Serialize + DeserializeOwned + Clone + Send + std::fmt::Debug + 'static;

    /// Prepares the subtask (connections, directories).
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()>;

    /// Commits `pending` (recorded by the restored checkpoint for the old
    /// subtasks this subtask takes over), then aborts anything else this
    /// sink left open for those subtasks. `old_subtasks` lists them;
    /// `next_checkpoint` is the first checkpoint id after the restored one
    /// (transactions begun after it were never recorded).
    fn recover(&mut self, pending: Vec<Self::Transaction>, old_subtasks: &[u32], next_checkpoint: u64) -> Result<()>;

    /// Starts a new transaction. `checkpoint` is the id of the checkpoint
    /// the transaction will most likely be pre-committed at; ids only grow,
    /// except that a job restarted from checkpoint *c* starts again at
    /// *c* + 1 (after `recover` has aborted what the failed run left open),
    /// so a sink can derive unique transaction names from it.
    fn begin_transaction(&mut self, checkpoint: u64) -> Result<Self::Transaction>;

    /// Writes one record into `txn`.
    fn write(&mut self, txn: &mut Self::Transaction, record: T) -> Result<()>;

    /// Flushes `txn` so that it survives a crash and can be committed later.
    fn pre_commit(&mut self, txn: &mut Self::Transaction) -> Result<()>;

    /// Makes `txn` visible. Must succeed when called again for a committed one.
    fn commit(&mut self, txn: Self::Transaction) -> Result<()>;

    /// Discards `txn`.
    fn abort(&mut self, txn: Self::Transaction) -> Result<()>;

    /// Whether `txn` holds no record (empty transactions are not committed,
    /// only aborted).
    fn is_empty(&self, txn: &Self::Transaction) -> bool;

    /// Releases resources; called once when the subtask ends (also after a
    /// failure or cancellation, before the subtask reports its end, so before
    /// a restarted attempt starts). Must not commit anything. Default: nothing.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The operator state of a two-phase-commit sink subtask.
#[derive(Serialize, Deserialize)]
struct SinkState<X> {
    subtask: u32,
    parallelism: u32,
    /// The checkpoint this state belongs to.
    checkpoint: u64,
    pending: Vec<(u64, X)>,
}

/// Runs a [`TwoPhaseCommitSink`] as the last operator of a chain.
pub(crate) struct TwoPhaseCommitOp<S: TwoPhaseCommitSink<T>, T> {
    sink: S,
    current: Option<S::Transaction>,
    pending: BTreeMap<u64, Vec<S::Transaction>>,
    restored: Vec<SinkState<S::Transaction>>,
    _records: std::marker::PhantomData<fn(T)>,
    subtask: u32,
    parallelism: u32,
    /// The checkpoint the next transaction will most likely belong to.
    next_checkpoint: u64,
}

impl<S: TwoPhaseCommitSink<T>, T> TwoPhaseCommitOp<S, T> {
    pub(crate) fn new(sink: S) -> Self {
        TwoPhaseCommitOp {
            sink,
            current: None,
            pending: BTreeMap::new(),
            restored: Vec::new(),
            _records: std::marker::PhantomData,
            subtask: 0,
            parallelism: 1,
            next_checkpoint: 1,
        }
    }

    fn commit_up_to(&mut self, id: u64) -> Result<()> {
        let later = self.pending.split_off(&(id + 1));
        let due = std::mem::replace(&mut self.pending, later);
        for txn in due.into_values().flatten() {
            if self.sink.is_empty(&txn) {
                self.sink.abort(txn)?;
            } else {
                self.sink.commit(txn)?;
            }
        }
        Ok(())
    }
}

impl<T: Send, S: TwoPhaseCommitSink<T>> StreamOperator<T, ()> for TwoPhaseCommitOp<S, T> {
    fn restore_state(&mut self, _ctx: &RuntimeContext, bytes: &[u8]) -> Result<()> {
        let state: SinkState<S::Transaction> = postcard::from_bytes(bytes)
            .map_err(|e| Error::user(format!("cannot decode the pending transactions of a sink: {e}")))?;
        self.next_checkpoint = self.next_checkpoint.max(state.checkpoint + 1);
        self.restored.push(state);
        Ok(())
    }

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.subtask = ctx.subtask_index;
        self.parallelism = ctx.parallelism;
        self.sink.open(ctx)?;
        // This subtask takes over old subtask s when s % parallelism == its index.
        let p = ctx.parallelism.max(1);
        let old_subtasks: Vec<u32> = match self.restored.first() {
            Some(s) => (0..s.parallelism.max(p)).filter(|s| s % p == ctx.subtask_index).collect(),
            None => vec![ctx.subtask_index],
        };
        let mut pending = Vec::new();
        for state in std::mem::take(&mut self.restored) {
            if state.subtask % p == ctx.subtask_index {
                pending.extend(state.pending.into_iter().map(|(_, txn)| txn));
            }
        }
        if !pending.is_empty() {
            tracing::info!(
                "{} (subtask {}) commits {} transaction(s) recorded as pending by the restored checkpoint",
                ctx.operator_name,
                ctx.subtask_index,
                pending.len()
            );
        }
        self.sink.recover(pending, &old_subtasks, self.next_checkpoint)
    }

    fn process_element(&mut self, record: T, _out: &mut dyn Collector<()>) -> Result<()> {
        if self.current.is_none() {
            self.current = Some(self.sink.begin_transaction(self.next_checkpoint)?);
        }
        match self.current.as_mut() {
            Some(txn) => self.sink.write(txn, record),
            None => Err(Error::internal("the sink has no open transaction")),
        }
    }

    fn snapshot_state(&mut self, id: CheckpointId) -> Result<Option<StateSnapshot>> {
        if let Some(mut txn) = self.current.take() {
            self.sink.pre_commit(&mut txn)?;
            self.pending.entry(id.0).or_default().push(txn);
        }
        self.next_checkpoint = self.next_checkpoint.max(id.0 + 1);
        let state = SinkState {
            subtask: self.subtask,
            parallelism: self.parallelism,
            checkpoint: id.0,
            pending: self.pending.iter().flat_map(|(c, txns)| txns.iter().map(move |t| (*c, t.clone()))).collect(),
        };
        postcard::to_stdvec(&state)
            .map(|b| Some(StateSnapshot::Ready(b)))
            .map_err(|e| Error::user(format!("cannot encode sink state: {e}")))
    }

    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        self.commit_up_to(id.0)
    }

    fn finish(&mut self, _out: &mut dyn Collector<()>) -> Result<()> {
        if let Some(mut txn) = self.current.take() {
            self.sink.pre_commit(&mut txn)?;
            self.pending.entry(u64::MAX).or_default().push(txn);
        }
        self.commit_up_to(u64::MAX - 1)?;
        let last = self.pending.remove(&u64::MAX).unwrap_or_default();
        for txn in last {
            if self.sink.is_empty(&txn) {
                self.sink.abort(txn)?;
            } else {
                self.sink.commit(txn)?;
            }
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        // An open transaction of a failed or canceled subtask is left for
        // the next start's recovery to abort; nothing is committed here.
        self.sink.close()
    }
}
