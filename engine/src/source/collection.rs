//! A bounded source over an in-memory collection (Flink's `fromCollection`).

use super::{Boundedness, Source, SourceStatus};
use crate::error::Result;
use crate::record::Data;
use crate::runtime::collector::Collector;
use crate::runtime::context::RuntimeContext;
use sluice_checkpoint::CheckpointId;
use std::sync::Arc;

/// Emits the elements of a collection, split round-robin over the subtasks;
/// its state is the index of the next element.
#[derive(Clone)]
pub struct CollectionSource<T> {
    data: Arc<Vec<T>>,
    next: usize,
    step: usize,
    restored: bool,
}

impl<T> CollectionSource<T> {
    /// A source over `data`.
    pub fn new(data: Vec<T>) -> Self {
        CollectionSource { data: Arc::new(data), next: 0, step: 1, restored: false }
    }
}

impl<T: Data + Sync> Source<T> for CollectionSource<T> {
    type State = usize;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        if !self.restored {
            self.next = ctx.subtask_index as usize;
        }
        self.step = ctx.parallelism.max(1) as usize;
        Ok(())
    }

    fn poll_next(&mut self, out: &mut dyn Collector<T>) -> Result<SourceStatus> {
        for _ in 0..256 {
            match self.data.get(self.next) {
                Some(v) => {
                    out.collect(v.clone())?;
                    self.next += self.step;
                }
                None => return Ok(SourceStatus::Finished),
            }
        }
        Ok(SourceStatus::MoreAvailable)
    }

    fn snapshot_state(&mut self, _checkpoint: CheckpointId) -> Result<usize> {
        Ok(self.next)
    }

    fn restore_state(&mut self, next: usize) -> Result<()> {
        self.next = next;
        self.restored = true;
        Ok(())
    }
}
