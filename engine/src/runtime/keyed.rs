//! Keyed operators: `reduce`/`sum` and `process` with a
//! [`KeyedProcessFunction`], on the keyed state store of their subtask.
//!
//! Each keyed operator subtask owns one [`KeyedStateStore`] (heap or
//! RocksDB, from `state.backend`), created when it is restored or opened.
//! Before handing a record (or a firing timer) to user code the operator
//! makes the record's key current, so every state handle and timer call
//! applies to that key.

use crate::error::{Error, Result};
use crate::record::{Data, Key};
use crate::runtime::collector::Collector;
use crate::runtime::context::{ProcessingClock, RuntimeContext, RuntimeMode};
use crate::runtime::element::Watermark;
use crate::runtime::functions::{KeyedContext, KeyedProcessFunction};
use crate::runtime::operator::{StreamOperator, TimeEvent};
use crate::runtime::side_output::{emit_side, MainOutput, SideRecord, SideRecords, Tagged};
use crate::runtime::watermarks::TimestampFn;
use sluice_checkpoint::state::format::StateSnapshot;
use sluice_checkpoint::state::{KeyedStateStore, SharedStore, StateId, TimeDomain};
use sluice_checkpoint::CheckpointId;
use std::path::Path;
use std::sync::Arc;

/// The keyed state of one operator subtask, created on first use.
#[derive(Default)]
pub(crate) struct KeyedState {
    store: Option<SharedStore>,
}

impl KeyedState {
    /// The store, created for `ctx`'s key groups if there is none yet.
    pub(crate) fn open(&mut self, ctx: &RuntimeContext) -> Result<SharedStore> {
        if let Some(s) = &self.store {
            return Ok(s.clone());
        }
        let store = KeyedStateStore::new(
            &format!("{}-{}", ctx.operator_id, ctx.subtask_index),
            &ctx.state_backend,
            ctx.max_parallelism,
            ctx.key_group_range(),
        )?;
        let shared = SharedStore::new(store);
        self.store = Some(shared.clone());
        Ok(shared)
    }

    /// The store, once opened.
    pub(crate) fn store(&self) -> Result<&SharedStore> {
        self.store.as_ref().ok_or_else(|| Error::internal("keyed state used before the operator was opened"))
    }

    /// Restores one old subtask's snapshot; returns the operator's own bytes.
    pub(crate) fn restore(&mut self, ctx: &RuntimeContext, bytes: &[u8]) -> Result<Vec<u8>> {
        let store = self.open(ctx)?;
        let dir = ctx.restore_dir.as_deref().unwrap_or(Path::new("."));
        let extra = store.lock()?.restore(bytes, dir)?;
        Ok(extra)
    }

    /// Snapshots the store with the operator's own bytes.
    pub(crate) fn snapshot(&self, id: CheckpointId, extra: Vec<u8>) -> Result<Option<StateSnapshot>> {
        match &self.store {
            Some(s) => Ok(Some(s.lock()?.snapshot(id.0, extra)?)),
            None => Ok(None),
        }
    }

    /// Checkpoint `id` completed.
    pub(crate) fn complete(&self, id: CheckpointId) -> Result<()> {
        if let Some(s) = &self.store {
            s.lock()?.notify_checkpoint_complete(id.0);
        }
        Ok(())
    }
}

/// Decodes the current key of a firing timer.
pub(crate) fn timer_key<K: Key>(store: &KeyedStateStore) -> Result<K> {
    postcard::from_bytes(store.current_key_bytes())
        .map_err(|e| Error::user(format!("cannot decode the key of a timer: {e} (state of another job?)")))
}

/// Keyed `reduce` and `sum`: one accumulated value per key. In streaming
/// mode every update is emitted; in batch mode each key's final value is
/// emitted once at the end of input.
pub(crate) struct ReduceOp<K, T, F> {
    reduce: Arc<F>,
    key_selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
    state: KeyedState,
    id: Option<StateId>,
    mode: RuntimeMode,
}

impl<K, T, F> ReduceOp<K, T, F> {
    /// A reduce operator; `reduce(acc, record)` folds a record in.
    pub(crate) fn new(reduce: Arc<F>, key_selector: Arc<dyn Fn(&T) -> K + Send + Sync>) -> Self {
        ReduceOp { reduce, key_selector, state: KeyedState::default(), id: None, mode: RuntimeMode::Streaming }
    }
}

impl<K: Key, T: Data, F: Fn(&mut T, T) + Send + Sync> ReduceOp<K, T, F> {
    /// Folds `record` (of `key`) into its accumulator; emits the new value
    /// in streaming mode.
    fn process_keyed(&mut self, key: K, record: T, out: &mut dyn Collector<T>) -> Result<()> {
        let id = registered(self.id)?;
        let streaming = self.mode == RuntimeMode::Streaming;
        let reduce = &self.reduce;
        let emit = {
            let mut store = self.state.store()?.lock()?;
            store.set_current_key(&key)?;
            store.update::<T, _>(id, |acc| {
                match acc {
                    Some(a) => reduce(a, record),
                    None => *acc = Some(record),
                }
                if streaming {
                    acc.clone()
                } else {
                    None
                }
            })?
        };
        match emit {
            Some(v) => out.collect(v),
            None => Ok(()),
        }
    }
}

fn registered(id: Option<StateId>) -> Result<StateId> {
    id.ok_or_else(|| Error::internal("keyed operator used before open"))
}

impl<K: Key, T: Data, F: Fn(&mut T, T) + Send + Sync> StreamOperator<T, T> for ReduceOp<K, T, F> {
    fn restore_state(&mut self, ctx: &RuntimeContext, bytes: &[u8]) -> Result<()> {
        self.state.restore(ctx, bytes).map(|_| ())
    }
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.mode = ctx.mode;
        let store = self.state.open(ctx)?;
        self.id = Some(store.lock()?.register::<T>("reduce", None)?);
        Ok(())
    }
    fn process_element(&mut self, record: T, out: &mut dyn Collector<T>) -> Result<()> {
        let key = (self.key_selector)(&record);
        self.process_keyed(key, record, out)
    }
    fn process_batch(&mut self, records: Vec<T>, out: &mut dyn Collector<T>) -> Result<()> {
        let keys: Vec<K> = records.iter().map(|r| (self.key_selector)(r)).collect();
        self.state.store()?.lock()?.prefetch::<T, K>(registered(self.id)?, &keys)?;
        for (key, record) in keys.into_iter().zip(records) {
            self.process_keyed(key, record, out)?;
        }
        Ok(())
    }
    fn finish(&mut self, out: &mut dyn Collector<T>) -> Result<()> {
        if self.mode == RuntimeMode::Batch {
            let id = registered(self.id)?;
            self.state.store()?.lock()?.for_each::<T>(id, |_, v| {
                out.collect(v)
                    .map_err(|e| sluice_checkpoint::Error::State { state: "reduce".into(), message: e.to_string() })
            })?;
        }
        Ok(())
    }
    fn snapshot_state(&mut self, id: CheckpointId) -> Result<Option<StateSnapshot>> {
        self.state.snapshot(id, Vec::new())
    }
    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        self.state.complete(id)
    }
}

/// Keyed `process`: a user [`KeyedProcessFunction`] with its per-key
/// `State`, any state handles it registers, and timers.
pub(crate) struct KeyedProcessOp<K, T, P: KeyedProcessFunction<K, T, O>, O> {
    function: P,
    key_selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
    timestamps: Option<TimestampFn<T>>,
    state: KeyedState,
    id: Option<StateId>,
    watermark: Watermark,
    clock: ProcessingClock,
    _out: std::marker::PhantomData<fn() -> O>,
}

impl<K, T, P: KeyedProcessFunction<K, T, O>, O> KeyedProcessOp<K, T, P, O> {
    /// An operator running `function` keyed by `key_selector`.
    pub(crate) fn new(
        function: P,
        key_selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
        timestamps: Option<TimestampFn<T>>,
    ) -> Self {
        KeyedProcessOp {
            function,
            key_selector,
            timestamps,
            state: KeyedState::default(),
            id: None,
            watermark: Watermark::MIN,
            clock: ProcessingClock::default(),
            _out: std::marker::PhantomData,
        }
    }
}

impl<K: Key, T, O, P: KeyedProcessFunction<K, T, O>> KeyedProcessOp<K, T, P, O> {
    /// Runs `call` with the current key's `State` taken out of the store and
    /// put back (or cleared) afterwards; returns the records it sent to side
    /// outputs.
    fn with_state(
        &mut self,
        key: &K,
        timestamp: Option<i64>,
        domain: Option<TimeDomain>,
        call: impl FnOnce(&mut P, &mut KeyedContext<'_, K, P::State>) -> Result<()>,
    ) -> Result<SideRecords> {
        let id = registered(self.id)?;
        let store = self.state.store()?;
        let mut value = store.lock()?.update::<P::State, _>(id, |v| v.take())?.unwrap_or_default();
        let mut ctx = KeyedContext {
            key,
            state: &mut value,
            watermark: self.watermark,
            cleared: false,
            store,
            timestamp,
            domain,
            side: Vec::new(),
            clock: &self.clock,
        };
        call(&mut self.function, &mut ctx)?;
        let (cleared, side) = (ctx.cleared, ctx.side);
        store.lock()?.update::<P::State, _>(id, |v| *v = if cleared { None } else { Some(value) })?;
        Ok(side)
    }

    fn fire_timers(
        &mut self,
        domain: TimeDomain,
        time: i64,
        out: &mut dyn Collector<Tagged<O, SideRecord>>,
    ) -> Result<()> {
        loop {
            let (timer, key) = {
                let mut store = self.state.store()?.lock()?;
                let Some(timer) = store.timers.pop_due(domain, time) else { return Ok(()) };
                store.set_current_timer(&timer);
                let key: K = timer_key(&store)?;
                (timer, key)
            };
            let ts = timer.timestamp;
            let side =
                self.with_state(&key, Some(ts), Some(domain), |f, ctx| f.on_timer(ts, ctx, &mut MainOutput(out)))?;
            emit_side(side, out)?;
        }
    }
}

/// Emits main records and side records (`ctx.output`) together, tagged.
impl<K: Key, T, O, P: KeyedProcessFunction<K, T, O>> StreamOperator<T, Tagged<O, SideRecord>>
    for KeyedProcessOp<K, T, P, O>
{
    fn restore_state(&mut self, ctx: &RuntimeContext, bytes: &[u8]) -> Result<()> {
        self.state.restore(ctx, bytes).map(|_| ())
    }
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let store = self.state.open(ctx)?;
        self.id = Some(store.lock()?.register::<P::State>("process-state", None)?);
        self.clock = ctx.clock.clone();
        let mut ctx = ctx.clone();
        ctx.keyed_state = Some(store);
        self.function.open(&ctx)
    }
    fn process_element(&mut self, record: T, out: &mut dyn Collector<Tagged<O, SideRecord>>) -> Result<()> {
        let key = (self.key_selector)(&record);
        let timestamp = self.timestamps.as_ref().map(|f| f(&record));
        self.state.store()?.set_current_key(&key)?;
        let side =
            self.with_state(&key, timestamp, None, |f, ctx| f.process_element(record, ctx, &mut MainOutput(out)))?;
        emit_side(side, out)
    }
    fn process_watermark(
        &mut self,
        wm: Watermark,
        out: &mut dyn Collector<Tagged<O, SideRecord>>,
    ) -> Result<Option<Watermark>> {
        self.watermark = wm;
        self.fire_timers(TimeDomain::EventTime, wm.0, out)?;
        Ok(Some(wm))
    }
    fn on_processing_time(
        &mut self,
        now_ms: i64,
        out: &mut dyn Collector<Tagged<O, SideRecord>>,
    ) -> Result<Option<TimeEvent>> {
        self.fire_timers(TimeDomain::ProcessingTime, now_ms, out)?;
        Ok(None)
    }
    fn finish(&mut self, out: &mut dyn Collector<Tagged<O, SideRecord>>) -> Result<()> {
        // End of input is the end of event time: every event-time timer fires.
        self.watermark = Watermark::MAX;
        self.fire_timers(TimeDomain::EventTime, i64::MAX, out)
    }
    fn snapshot_state(&mut self, id: CheckpointId) -> Result<Option<StateSnapshot>> {
        self.state.snapshot(id, Vec::new())
    }
    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        self.state.complete(id)
    }
    fn close(&mut self) -> Result<()> {
        self.function.close()
    }
}

#[cfg(test)]
mod tests {
    //! Keyed timers through the one-operator test harness, on an injected
    //! processing-time clock and on watermarks.

    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::runtime::test_harness::OneInputHarness;

    /// Per key: on each record a processing-time timer 100 ms later (by the
    /// operator's clock) and an event-time timer at the record's time + 10;
    /// the record "cancel" deletes the key's pending processing-time timer.
    /// A firing timer emits (key, domain, time, records seen).
    #[derive(Clone)]
    struct Reminders;

    type Fired = (String, TimeDomain, i64, u32);

    impl KeyedProcessFunction<String, (String, String, i64), Fired> for Reminders {
        type State = (u32, Option<i64>);
        fn process_element(
            &mut self,
            (_, what, ts): (String, String, i64),
            ctx: &mut KeyedContext<'_, String, Self::State>,
            _out: &mut dyn Collector<Fired>,
        ) -> Result<()> {
            if what == "cancel" {
                if let Some(t) = ctx.state().1.take() {
                    ctx.delete_processing_time_timer(t)?;
                }
                return Ok(());
            }
            let at = ctx.current_processing_time() + 100;
            ctx.state().0 += 1;
            ctx.state().1 = Some(at);
            ctx.register_processing_time_timer(at)?;
            ctx.register_event_time_timer(ts + 10)
        }
        fn on_timer(
            &mut self,
            timestamp: i64,
            ctx: &mut KeyedContext<'_, String, Self::State>,
            out: &mut dyn Collector<Fired>,
        ) -> Result<()> {
            let domain = ctx.time_domain().ok_or_else(|| Error::internal("a timer without a domain"))?;
            let seen = ctx.state().0;
            out.collect((ctx.key().clone(), domain, timestamp, seen))
        }
    }

    type Input = (String, String, i64);

    fn harness() -> OneInputHarness<Input, Tagged<Fired, SideRecord>, KeyedProcessOp<String, Input, Reminders, Fired>> {
        let op = KeyedProcessOp::new(
            Reminders,
            Arc::new(|r: &Input| r.0.clone()),
            Some(Arc::new(|r: &Input| r.2) as TimestampFn<Input>),
        );
        OneInputHarness::new(op)
    }

    fn fired(
        h: &mut OneInputHarness<
            Input,
            Tagged<Fired, SideRecord>,
            impl StreamOperator<Input, Tagged<Fired, SideRecord>>,
        >,
    ) -> Vec<Fired> {
        h.take_records().into_iter().filter_map(Tagged::main).collect()
    }

    fn input(key: &str, what: &str, ts: i64) -> Input {
        (key.to_string(), what.to_string(), ts)
    }

    #[test]
    fn processing_time_timers_fire_on_the_injected_clock() {
        let mut h = harness();
        h.open().unwrap();
        h.set_processing_time(1_000).unwrap();
        h.process(input("a", "x", 0)).unwrap(); // timer at 1100
        h.set_processing_time(1_050).unwrap();
        h.process(input("b", "x", 0)).unwrap(); // timer at 1150
        h.process(input("a", "x", 0)).unwrap(); // timer at 1150 (1100 stays)
        h.set_processing_time(1_099).unwrap();
        assert_eq!(fired(&mut h), vec![]);
        h.set_processing_time(1_100).unwrap();
        assert_eq!(fired(&mut h), vec![("a".to_string(), TimeDomain::ProcessingTime, 1_100, 2)]);
        h.process(input("b", "cancel", 0)).unwrap();
        h.set_processing_time(5_000).unwrap();
        assert_eq!(
            fired(&mut h),
            vec![("a".to_string(), TimeDomain::ProcessingTime, 1_150, 2)],
            "b's deleted timer does not fire"
        );
    }

    #[test]
    fn event_time_timers_fire_on_watermarks_not_on_the_clock() {
        let mut h = harness();
        h.open().unwrap();
        h.process(input("a", "x", 1_000)).unwrap(); // event-time timer at 1010
        h.process(input("a", "cancel", 0)).unwrap(); // only the processing-time one goes
        h.set_processing_time(i64::MAX - 1).unwrap();
        assert_eq!(fired(&mut h), vec![]);
        h.watermark(1_009).unwrap();
        assert_eq!(fired(&mut h), vec![]);
        h.watermark(1_010).unwrap();
        assert_eq!(fired(&mut h), vec![("a".to_string(), TimeDomain::EventTime, 1_010, 1)]);
    }
}
