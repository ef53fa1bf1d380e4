//! What a running operator, source or sink knows about itself.

use crate::ids::JobId;
use sluice_checkpoint::state::table::StateValue;
use sluice_checkpoint::state::{
    AggregateFunction, AggregatingState, ListState, MapState, ReducingState, SharedStore, StateBackendConfig,
    StateTtlConfig, ValueState,
};
use sluice_checkpoint::KeyGroupRange;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The processing-time clock operators read (Flink's processing-time
/// service): the wall clock ([`sluice_checkpoint::clock::now_ms`]), or in
/// unit tests a manual clock that only moves when it is set.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcessingClock(Option<Arc<AtomicI64>>);

impl ProcessingClock {
    /// A clock that stands at `now_ms` until [`set`](Self::set).
    #[cfg(test)]
    pub(crate) fn manual(now_ms: i64) -> Self {
        ProcessingClock(Some(Arc::new(AtomicI64::new(now_ms))))
    }

    /// Moves a manual clock to `now_ms` (no effect on the wall clock).
    #[cfg(test)]
    pub(crate) fn set(&self, now_ms: i64) {
        if let Some(t) = &self.0 {
            t.store(now_ms, Ordering::Relaxed);
        }
    }

    /// Milliseconds since the Unix epoch, by this clock.
    pub(crate) fn now_ms(&self) -> i64 {
        match &self.0 {
            Some(t) => t.load(Ordering::Relaxed),
            None => sluice_checkpoint::clock::now_ms(),
        }
    }
}

/// Whether keyed aggregations emit running results or final ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeMode {
    /// Unbounded processing: every update is emitted as it happens.
    Streaming,
    /// Bounded processing: keyed aggregations emit one final result per key
    /// at the end of input.
    Batch,
}

/// Information about the subtask an operator runs in (Flink's `RuntimeContext`).
#[derive(Debug, Clone)]
pub struct RuntimeContext {
    /// The job's id.
    pub job_id: JobId,
    /// The job's name.
    pub job_name: String,
    /// The task (job vertex) name: the chained operators' names joined by ` -> `.
    pub task_name: String,
    /// This operator's name.
    pub operator_name: String,
    /// This operator's stable id (from its `uid`, or derived from the graph).
    pub operator_id: String,
    /// This subtask's index, from 0.
    pub subtask_index: u32,
    /// The operator's parallelism.
    pub parallelism: u32,
    /// The number of key groups.
    pub max_parallelism: u32,
    /// Which execution attempt of the job this is (0 for the first).
    pub attempt: u32,
    /// Streaming or batch.
    pub mode: RuntimeMode,
    /// The checkpoint interval, if the job takes checkpoints (sinks with
    /// transactions check their timeouts against it).
    pub checkpoint_interval: Option<Duration>,
    /// The keyed state backend settings (`state.backend`).
    pub state_backend: StateBackendConfig,
    /// How often watermark generators emit (`pipeline.auto-watermark-interval`).
    pub watermark_interval: Duration,
    /// The directory of the checkpoint or savepoint being restored, if any.
    pub restore_dir: Option<PathBuf>,
    /// The keyed state of the operator, on a keyed stream (see the
    /// `*_state` methods).
    pub(crate) keyed_state: Option<SharedStore>,
    /// The processing-time clock (the wall clock outside unit tests).
    pub(crate) clock: ProcessingClock,
}

impl RuntimeContext {
    /// The key groups this subtask owns (for keyed operators).
    pub fn key_group_range(&self) -> KeyGroupRange {
        KeyGroupRange::for_subtask(self.max_parallelism, self.parallelism, self.subtask_index)
    }

    /// A context for unit tests of functions and operators.
    pub fn for_test(subtask_index: u32, parallelism: u32) -> Self {
        RuntimeContext {
            job_id: JobId::from_u128(0),
            job_name: "test".into(),
            task_name: "test".into(),
            operator_name: "test".into(),
            operator_id: "test".into(),
            subtask_index,
            parallelism,
            max_parallelism: sluice_checkpoint::DEFAULT_MAX_PARALLELISM,
            attempt: 0,
            mode: RuntimeMode::Streaming,
            checkpoint_interval: None,
            state_backend: StateBackendConfig::default(),
            watermark_interval: Duration::from_millis(200),
            restore_dir: None,
            keyed_state: None,
            clock: ProcessingClock::default(),
        }
    }
}

/// Names a piece of keyed state, optionally with a time-to-live (Flink's
/// state descriptor). A plain `&str` converts into one without TTL.
#[derive(Debug, Clone)]
pub struct StateDescriptor {
    /// The state's name, unique within its operator.
    pub name: String,
    /// Entries expire this long after their last write (or read).
    pub ttl: Option<StateTtlConfig>,
}

impl StateDescriptor {
    /// A state named `name`.
    pub fn new(name: &str) -> Self {
        StateDescriptor { name: name.to_string(), ttl: None }
    }

    /// Gives the state a time-to-live.
    pub fn with_ttl(mut self, ttl: StateTtlConfig) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

impl From<&str> for StateDescriptor {
    fn from(name: &str) -> Self {
        StateDescriptor::new(name)
    }
}

/// Keyed state handles, available in the `open` of a function on a keyed
/// stream (`KeyedStream::process`). Each handle reads and writes the entry of
/// the key being processed.
///
/// ```
/// use sluice::{Collector, KeyedContext, KeyedProcessFunction, Result, RuntimeContext};
/// use sluice::state::ValueState;
///
/// #[derive(Clone, Default)]
/// struct CountWords { count: Option<ValueState<u64>> }
///
/// impl KeyedProcessFunction<String, String, (String, u64)> for CountWords {
///     type State = ();
///     fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
///         self.count = Some(ctx.value_state("count")?);
///         Ok(())
///     }
///     fn process_element(&mut self, word: String, _ctx: &mut KeyedContext<'_, String, ()>, out: &mut dyn Collector<(String, u64)>) -> Result<()> {
///         let Some(count) = &self.count else { return Ok(()) };
///         let n = count.value()?.unwrap_or(0) + 1;
///         count.update(n)?;
///         out.collect((word, n))
///     }
/// }
/// ```
impl RuntimeContext {
    fn keyed_store(&self, name: &str) -> crate::error::Result<&SharedStore> {
        self.keyed_state.as_ref().ok_or_else(|| {
            crate::error::Error::user(format!(
                "keyed state '{name}' requested by '{}', which is not on a keyed stream; use key_by(..).process(..)",
                self.operator_name
            ))
        })
    }

    /// A [`ValueState`] of this operator.
    pub fn value_state<T: StateValue>(&self, d: impl Into<StateDescriptor>) -> crate::error::Result<ValueState<T>> {
        let d = d.into();
        Ok(ValueState::register(self.keyed_store(&d.name)?, &d.name, d.ttl)?)
    }

    /// A [`ListState`] of this operator.
    pub fn list_state<T: StateValue>(&self, d: impl Into<StateDescriptor>) -> crate::error::Result<ListState<T>> {
        let d = d.into();
        Ok(ListState::register(self.keyed_store(&d.name)?, &d.name, d.ttl)?)
    }

    /// A [`MapState`] of this operator.
    pub fn map_state<K: StateValue + Ord, V: StateValue>(
        &self,
        d: impl Into<StateDescriptor>,
    ) -> crate::error::Result<MapState<K, V>> {
        let d = d.into();
        Ok(MapState::register(self.keyed_store(&d.name)?, &d.name, d.ttl)?)
    }

    /// A [`ReducingState`] of this operator that folds values with `reduce`.
    pub fn reducing_state<T: StateValue>(
        &self,
        d: impl Into<StateDescriptor>,
        reduce: impl Fn(T, T) -> T + Send + Sync + 'static,
    ) -> crate::error::Result<ReducingState<T>> {
        let d = d.into();
        Ok(ReducingState::register(self.keyed_store(&d.name)?, &d.name, reduce, d.ttl)?)
    }

    /// An [`AggregatingState`] of this operator that adds inputs with `function`.
    pub fn aggregating_state<IN: 'static, ACC: StateValue, OUT: 'static>(
        &self,
        d: impl Into<StateDescriptor>,
        function: impl AggregateFunction<IN, ACC, OUT>,
    ) -> crate::error::Result<AggregatingState<IN, ACC, OUT>> {
        let d = d.into();
        Ok(AggregatingState::register(self.keyed_store(&d.name)?, &d.name, std::sync::Arc::new(function), d.ttl)?)
    }
}
