//! The built-in operators behind the DataStream API, and the chain link that
//! drives an operator inside a task.

use crate::error::Result;
use crate::metrics::OperatorMetrics;
use crate::runtime::collector::{ChainInput, ChainStates, Collector};
use crate::runtime::context::RuntimeContext;
use crate::runtime::element::Watermark;
use crate::runtime::functions::{ProcessContext, ProcessFunction};
use crate::runtime::operator::{StreamOperator, TimeEvent};
use crate::runtime::side_output::{emit_side, MainOutput, SideRecord, Tagged};
use crate::sink::Sink;
use sluice_checkpoint::state::format::StateSnapshot;
use sluice_checkpoint::{CheckpointBarrier, CheckpointId};
use std::sync::Arc;

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

/// Emits main records and side records (`ctx.output`) together, tagged.
impl<I, O, P: ProcessFunction<I, O>> StreamOperator<I, Tagged<O, SideRecord>> for ProcessOp<P> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.subtask = ctx.subtask_index;
        self.function.open(ctx)
    }
    fn process_element(&mut self, record: I, out: &mut dyn Collector<Tagged<O, SideRecord>>) -> Result<()> {
        let mut ctx = ProcessContext { watermark: self.watermark, subtask_index: self.subtask, side: Vec::new() };
        self.function.process_element(record, &mut ctx, &mut MainOutput(out))?;
        emit_side(ctx.side, out)
    }
    fn process_watermark(
        &mut self,
        wm: Watermark,
        _out: &mut dyn Collector<Tagged<O, SideRecord>>,
    ) -> Result<Option<Watermark>> {
        self.watermark = wm;
        Ok(Some(wm))
    }
    fn finish(&mut self, out: &mut dyn Collector<Tagged<O, SideRecord>>) -> Result<()> {
        self.function.finish(&mut MainOutput(out))
    }
    fn close(&mut self) -> Result<()> {
        self.function.close()
    }
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
    fn snapshot_state(&mut self, id: CheckpointId) -> Result<Option<StateSnapshot>> {
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
    fn collect_batch(&mut self, records: Vec<I>) -> Result<()> {
        self.records_in += records.len() as u64;
        self.op.process_batch(records, &mut self.next)
    }
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
    fn snapshot(&mut self, barrier: &CheckpointBarrier, states: &mut ChainStates) -> Result<()> {
        self.op.flush()?;
        if let Some(snapshot) = self.op.snapshot_state(barrier.id)? {
            states.push((self.operator_id.clone(), snapshot));
        }
        self.next.inner.snapshot(barrier, states)
    }
    fn tick(&mut self, now_ms: i64) -> Result<()> {
        match self.op.on_processing_time(now_ms, &mut self.next)? {
            Some(TimeEvent::Watermark(wm)) => self.next.inner.watermark(wm)?,
            Some(TimeEvent::Idle) => self.next.inner.idle()?,
            None => {}
        }
        self.next.inner.tick(now_ms)
    }
    fn idle(&mut self) -> Result<()> {
        self.next.inner.idle()
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
