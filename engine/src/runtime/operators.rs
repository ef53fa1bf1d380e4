//! The built-in operators behind the DataStream API, and the chain link that
//! drives an operator inside a task.

use crate::api::functions::{KeyedContext, KeyedProcessFunction, ProcessContext, ProcessFunction};
use crate::error::{Error, Result};
use crate::metrics::OperatorMetrics;
use crate::record::{Data, Key};
use crate::runtime::collector::{ChainInput, Collector};
use crate::runtime::context::{RuntimeContext, RuntimeMode};
use crate::runtime::element::Watermark;
use crate::runtime::operator::StreamOperator;
use crate::sink::Sink;
use sluice_checkpoint::key_group::assign_to_key_group;
use sluice_checkpoint::{CheckpointBarrier, CheckpointId};
use std::sync::Arc;

/// Keyed state kept on the heap: a fast, non-cryptographic hasher (keys
/// are the job's own data, and the map never leaves the subtask).
pub(crate) type KeyedMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Shared, immutable user function.
pub(crate) type Func<F> = Arc<F>;

/// `map`: one output per input.
pub(crate) struct MapOp<F>(pub(crate) Func<F>);

impl<I, O, F: Fn(I) -> O + Send + Sync> StreamOperator<I, O> for MapOp<F> {
    fn process_element(&mut self, record: I, out: &mut dyn Collector<O>) -> Result<()> {
        out.collect((self.0)(record))
    }
}

/// `flat_map`: any number of outputs per input.
pub(crate) struct FlatMapOp<F>(pub(crate) Func<F>);

impl<I, O, It, F> StreamOperator<I, O> for FlatMapOp<F>
where
    It: IntoIterator<Item = O>,
    F: Fn(I) -> It + Send + Sync,
{
    fn process_element(&mut self, record: I, out: &mut dyn Collector<O>) -> Result<()> {
        for o in (self.0)(record) {
            out.collect(o)?;
        }
        Ok(())
    }
}

/// `filter`: keeps the records the predicate accepts.
pub(crate) struct FilterOp<F>(pub(crate) Func<F>);

impl<T, F: Fn(&T) -> bool + Send + Sync> StreamOperator<T, T> for FilterOp<F> {
    fn process_element(&mut self, record: T, out: &mut dyn Collector<T>) -> Result<()> {
        if (self.0)(&record) {
            out.collect(record)?;
        }
        Ok(())
    }
}

/// `process`: a user [`ProcessFunction`].
pub(crate) struct ProcessOp<P> {
    pub(crate) function: P,
    pub(crate) watermark: Watermark,
    pub(crate) subtask: u32,
}

impl<I, O, P: ProcessFunction<I, O>> StreamOperator<I, O> for ProcessOp<P> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.subtask = ctx.subtask_index;
        self.function.open(ctx)
    }
    fn process_element(&mut self, record: I, out: &mut dyn Collector<O>) -> Result<()> {
        let mut ctx = ProcessContext { watermark: self.watermark, subtask_index: self.subtask };
        self.function.process_element(record, &mut ctx, out)
    }
    fn process_watermark(&mut self, wm: Watermark, _out: &mut dyn Collector<O>) -> Result<Option<Watermark>> {
        self.watermark = wm;
        Ok(Some(wm))
    }
    fn finish(&mut self, out: &mut dyn Collector<O>) -> Result<()> {
        self.function.finish(out)
    }
    fn close(&mut self) -> Result<()> {
        self.function.close()
    }
}

/// Keyed `process`: a user [`KeyedProcessFunction`] with one value of
/// `P::State` per key.
pub(crate) struct KeyedProcessOp<K, T, P: KeyedProcessFunction<K, T, O>, O> {
    pub(crate) function: P,
    pub(crate) key_selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
    pub(crate) state: KeyedMap<K, P::State>,
    pub(crate) watermark: Watermark,
    pub(crate) max_parallelism: u32,
}

impl<K: Key, T, O, P: KeyedProcessFunction<K, T, O>> StreamOperator<T, O> for KeyedProcessOp<K, T, P, O> {
    fn process_element(&mut self, record: T, out: &mut dyn Collector<O>) -> Result<()> {
        let key = (self.key_selector)(&record);
        let state = self.state.entry(key.clone()).or_default();
        let mut ctx = KeyedContext { key: &key, state, watermark: self.watermark, cleared: false };
        self.function.process_element(record, &mut ctx, out)?;
        if ctx.cleared {
            self.state.remove(&key);
        }
        Ok(())
    }
    fn process_watermark(&mut self, wm: Watermark, _out: &mut dyn Collector<O>) -> Result<Option<Watermark>> {
        self.watermark = wm;
        Ok(Some(wm))
    }
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.max_parallelism = ctx.max_parallelism;
        self.function.open(ctx)
    }
    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<Option<Vec<u8>>> {
        encode_keyed(&self.state, self.max_parallelism).map(Some)
    }
    fn restore_state(&mut self, ctx: &RuntimeContext, bytes: &[u8]) -> Result<()> {
        decode_keyed_into(&mut self.state, bytes, ctx)
    }
    fn close(&mut self) -> Result<()> {
        self.function.close()
    }
}

/// Keyed `reduce` and `sum`: keeps one accumulated value per key. In
/// streaming mode every update is emitted; in batch mode each key's final
/// value is emitted once at the end of input.
pub(crate) struct ReduceOp<K, T, F> {
    pub(crate) reduce: Func<F>,
    pub(crate) key_selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
    pub(crate) state: KeyedMap<K, T>,
    pub(crate) mode: RuntimeMode,
    pub(crate) max_parallelism: u32,
}

impl<K: Key, T: Data, F: Fn(&mut T, T) + Send + Sync> StreamOperator<T, T> for ReduceOp<K, T, F> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.mode = ctx.mode;
        self.max_parallelism = ctx.max_parallelism;
        Ok(())
    }
    fn process_element(&mut self, record: T, out: &mut dyn Collector<T>) -> Result<()> {
        let key = (self.key_selector)(&record);
        let acc = match self.state.get_mut(&key) {
            Some(acc) => {
                (self.reduce)(acc, record);
                acc
            }
            None => self.state.entry(key).or_insert(record),
        };
        if self.mode == RuntimeMode::Streaming {
            out.collect(acc.clone())?;
        }
        Ok(())
    }
    fn finish(&mut self, out: &mut dyn Collector<T>) -> Result<()> {
        if self.mode == RuntimeMode::Batch {
            for (_, v) in self.state.drain() {
                out.collect(v)?;
            }
        }
        Ok(())
    }
    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<Option<Vec<u8>>> {
        encode_keyed(&self.state, self.max_parallelism).map(Some)
    }
    fn restore_state(&mut self, ctx: &RuntimeContext, bytes: &[u8]) -> Result<()> {
        decode_keyed_into(&mut self.state, bytes, ctx)
    }
}

/// Encodes keyed state as (key group, key, value) entries, so that a
/// restore at another parallelism can keep only its own key groups.
fn encode_keyed<K: Key, V: Data>(map: &KeyedMap<K, V>, max_parallelism: u32) -> Result<Vec<u8>> {
    let entries: Vec<(u32, &K, &V)> =
        map.iter().map(|(k, v)| (assign_to_key_group(k, max_parallelism), k, v)).collect();
    postcard::to_stdvec(&entries).map_err(|e| Error::user(format!("cannot encode keyed state: {e}")))
}

/// Adds the entries of `bytes` that belong to this subtask's key groups.
fn decode_keyed_into<K: Key, V: Data>(map: &mut KeyedMap<K, V>, bytes: &[u8], ctx: &RuntimeContext) -> Result<()> {
    let entries: Vec<(u32, K, V)> = postcard::from_bytes(bytes).map_err(|e| {
        Error::user(format!(
            "cannot decode the keyed state of '{}': {e} (was the savepoint taken by a job with other record types?)",
            ctx.operator_name
        ))
    })?;
    let range = ctx.key_group_range();
    map.extend(entries.into_iter().filter(|(g, _, _)| range.contains(*g)).map(|(_, k, v)| (k, v)));
    Ok(())
}

/// Runs a user [`Sink`] as the last operator of a chain.
pub(crate) struct SinkOp<S>(pub(crate) S);

impl<T, S: Sink<T>> StreamOperator<T, ()> for SinkOp<S> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.0.open(ctx)
    }
    fn process_element(&mut self, record: T, _out: &mut dyn Collector<()>) -> Result<()> {
        self.0.write(record)
    }
    fn flush(&mut self) -> Result<()> {
        self.0.flush()
    }
    fn finish(&mut self, _out: &mut dyn Collector<()>) -> Result<()> {
        self.0.finish()
    }
    fn snapshot_state(&mut self, id: CheckpointId) -> Result<Option<Vec<u8>>> {
        self.0.prepare_checkpoint(id)?;
        Ok(None)
    }
    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        self.0.notify_checkpoint_complete(id)
    }
    fn close(&mut self) -> Result<()> {
        self.0.close()
    }
}

/// Counts the records an operator emits, then passes them on.
pub(crate) struct CountingOutput<O> {
    pub(crate) inner: Box<dyn ChainInput<O>>,
    pub(crate) count: u64,
}

impl<O> Collector<O> for CountingOutput<O> {
    #[inline]
    fn collect(&mut self, record: O) -> Result<()> {
        self.count += 1;
        self.inner.collect(record)
    }
}

/// A chain link: one operator, its metrics, and the rest of the chain.
pub(crate) struct OperatorLink<I, O> {
    pub(crate) op: Box<dyn StreamOperator<I, O>>,
    pub(crate) next: CountingOutput<O>,
    pub(crate) records_in: u64,
    pub(crate) metrics: OperatorMetrics,
    pub(crate) closed: bool,
    pub(crate) operator_id: String,
}

impl<I, O> OperatorLink<I, O> {
    pub(crate) fn new(
        op: Box<dyn StreamOperator<I, O>>,
        next: Box<dyn ChainInput<O>>,
        metrics: OperatorMetrics,
        operator_id: String,
    ) -> Self {
        OperatorLink {
            op,
            next: CountingOutput { inner: next, count: 0 },
            records_in: 0,
            metrics,
            closed: false,
            operator_id,
        }
    }

    fn publish_metrics(&mut self) {
        self.metrics.records_in.inc_by(std::mem::take(&mut self.records_in));
        self.metrics.records_out.inc_by(std::mem::take(&mut self.next.count));
    }
}

impl<I, O> Collector<I> for OperatorLink<I, O> {
    #[inline]
    fn collect(&mut self, record: I) -> Result<()> {
        self.records_in += 1;
        self.op.process_element(record, &mut self.next)
    }
}

impl<I: Send, O: Send> ChainInput<I> for OperatorLink<I, O> {
    fn watermark(&mut self, wm: Watermark) -> Result<()> {
        match self.op.process_watermark(wm, &mut self.next)? {
            Some(w) => self.next.inner.watermark(w),
            None => Ok(()),
        }
    }
    fn flush(&mut self) -> Result<()> {
        self.op.flush()?;
        self.publish_metrics();
        self.next.inner.flush()
    }
    fn end_of_input(&mut self) -> Result<()> {
        self.op.finish(&mut self.next)?;
        self.op.flush()?;
        self.publish_metrics();
        self.next.inner.end_of_input()
    }
    fn snapshot(&mut self, barrier: &CheckpointBarrier, states: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
        self.op.flush()?;
        if let Some(bytes) = self.op.snapshot_state(barrier.id)? {
            states.push((self.operator_id.clone(), bytes));
        }
        self.next.inner.snapshot(barrier, states)
    }
    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        self.op.notify_checkpoint_complete(id)?;
        self.next.inner.checkpoint_complete(id)
    }
    fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.publish_metrics();
        let own = self.op.close();
        let rest = self.next.inner.close();
        own.and(rest)
    }
}
