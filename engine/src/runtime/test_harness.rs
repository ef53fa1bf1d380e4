//! A harness for unit tests of one operator (Flink's
//! `OneInputStreamOperatorTestHarness`, RisingWave's executor tests): it
//! drives a [`StreamOperator`] through its lifecycle the way a task does —
//! records, watermarks, barriers, processing time — and records what the
//! operator emits, in order, with the watermarks it forwards between the
//! records. Processing time comes from a manual clock the test moves, so
//! timers fire exactly when the test says.
//!
//! ```ignore
//! let mut h = OneInputHarness::new(operator);
//! h.open()?;
//! h.process(("a".to_string(), 1_000))?;
//! h.watermark(4_999)?;
//! assert_eq!(h.take(), vec![Output::Record(...), Output::Watermark(4_999)]);
//! ```

use crate::error::{Error, Result};
use crate::ids::JobId;
use crate::metrics;
use crate::runtime::collector::Collector;
use crate::runtime::context::{ProcessingClock, RuntimeContext};
use crate::runtime::element::Watermark;
use crate::runtime::operator::{StreamOperator, TimeEvent};
use sluice_checkpoint::state::format::{StateSnapshot, UploadTarget};
use sluice_checkpoint::{CheckpointId, CheckpointKind};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

/// What came out of the operator under test.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Output<O> {
    /// An emitted record.
    Record(O),
    /// A watermark the operator forwarded.
    Watermark(i64),
    /// The operator declared its stream idle.
    Idle,
}

/// An operator's snapshot taken by [`OneInputHarness::barrier`]: its bytes
/// and the checkpoint directory they may refer to (kept while the snapshot
/// lives).
pub(crate) struct Snapshot {
    bytes: Vec<u8>,
    checkpoint_dir: PathBuf,
    _files: Arc<tempfile::TempDir>,
}

/// The output list, as the operator's collector.
struct Sink<'a, O>(&'a mut Vec<Output<O>>);

impl<O> Collector<O> for Sink<'_, O> {
    fn collect(&mut self, record: O) -> Result<()> {
        self.0.push(Output::Record(record));
        Ok(())
    }
}

/// One operator under test, with a manual processing-time clock (at 0
/// until moved) and a context of its own job id (so that its metrics are
/// its own).
pub(crate) struct OneInputHarness<I, O, Op> {
    op: Op,
    ctx: RuntimeContext,
    clock: ProcessingClock,
    output: Vec<Output<O>>,
    /// Checkpoint directories of this harness's barriers.
    files: Arc<tempfile::TempDir>,
    _in: PhantomData<fn(I)>,
}

impl<I, O, Op: StreamOperator<I, O>> OneInputHarness<I, O, Op> {
    /// A harness for `op` as subtask 0 of 1 (panics if no temporary
    /// directory can be made for its checkpoints).
    pub(crate) fn new(op: Op) -> Self {
        let clock = ProcessingClock::manual(0);
        let mut ctx = RuntimeContext::for_test(0, 1);
        ctx.job_id = JobId::generate();
        ctx.operator_name = "operator under test".into();
        ctx.operator_id = format!("op-{}", ctx.job_id);
        ctx.clock = clock.clone();
        #[allow(clippy::expect_used)]
        let files = Arc::new(tempfile::tempdir().expect("a temporary directory for the harness's checkpoints"));
        OneInputHarness { op, ctx, clock, output: Vec::new(), files, _in: PhantomData }
    }

    /// Opens the operator.
    pub(crate) fn open(&mut self) -> Result<()> {
        self.op.open(&self.ctx)
    }

    /// Restores a snapshot taken by [`barrier`](Self::barrier), of this or
    /// another harness (before [`open`](Self::open)).
    pub(crate) fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        self.ctx.restore_dir = Some(snapshot.checkpoint_dir.clone());
        self.op.restore_state(&self.ctx, &snapshot.bytes)
    }

    /// One record.
    pub(crate) fn process(&mut self, record: I) -> Result<()> {
        self.op.process_element(record, &mut Sink(&mut self.output))
    }

    /// A watermark; what the operator forwards is recorded after what it
    /// emitted.
    pub(crate) fn watermark(&mut self, wm: i64) -> Result<()> {
        if let Some(Watermark(w)) = self.op.process_watermark(Watermark(wm), &mut Sink(&mut self.output))? {
            self.output.push(Output::Watermark(w));
        }
        Ok(())
    }

    /// Moves processing time to `now_ms` and lets the operator react, as a
    /// task's timer tick does.
    pub(crate) fn set_processing_time(&mut self, now_ms: i64) -> Result<()> {
        self.clock.set(now_ms);
        match self.op.on_processing_time(now_ms, &mut Sink(&mut self.output))? {
            Some(TimeEvent::Watermark(Watermark(w))) => self.output.push(Output::Watermark(w)),
            Some(TimeEvent::Idle) => self.output.push(Output::Idle),
            None => {}
        }
        Ok(())
    }

    /// Barrier `id` reaches the operator: its snapshot, with the
    /// asynchronous part (if any) run at once into a checkpoint directory
    /// of the harness's own.
    pub(crate) fn barrier(&mut self, id: u64) -> Result<Option<Snapshot>> {
        let dir = self.files.path().join(format!("chk-{id}"));
        let bytes = match self.op.snapshot_state(CheckpointId(id))? {
            None => return Ok(None),
            Some(StateSnapshot::Ready(bytes)) => bytes,
            Some(StateSnapshot::Upload(upload)) => {
                std::fs::create_dir_all(&dir).map_err(|e| Error::io("checkpoint directory", e))?;
                let target = UploadTarget {
                    checkpoint_dir: dir.clone(),
                    shared_dir: self.files.path().join("shared"),
                    file_prefix: format!("{}-{}", self.ctx.operator_id, self.ctx.subtask_index),
                    kind: CheckpointKind::Checkpoint,
                };
                upload(&target)?.bytes
            }
        };
        Ok(Some(Snapshot { bytes, checkpoint_dir: dir, _files: self.files.clone() }))
    }

    /// Checkpoint `id` completed on every subtask.
    pub(crate) fn checkpoint_complete(&mut self, id: u64) -> Result<()> {
        self.op.notify_checkpoint_complete(CheckpointId(id))
    }

    /// End of input.
    pub(crate) fn finish(&mut self) -> Result<()> {
        self.op.finish(&mut Sink(&mut self.output))
    }

    /// Everything emitted since the last call, in order.
    pub(crate) fn take(&mut self) -> Vec<Output<O>> {
        std::mem::take(&mut self.output)
    }

    /// The records emitted since the last call (watermarks dropped).
    pub(crate) fn take_records(&mut self) -> Vec<O> {
        self.take()
            .into_iter()
            .filter_map(|o| match o {
                Output::Record(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The operator's `numLateRecordsDropped` counter.
    pub(crate) fn late_records_dropped(&self) -> u64 {
        let c = &self.ctx;
        let (job, subtask) = (c.job_id.to_string(), c.subtask_index.to_string());
        metrics::global().late_records_dropped(&[&job, &c.job_name, &c.task_name, &c.operator_name, &subtask]).get()
    }
}
