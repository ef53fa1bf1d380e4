//! The window operator behind `KeyedStream::window(..)`.
//!
//! Per key and window (the state namespace) it keeps an accumulator — the
//! reduced value, an aggregate's accumulator, or the list of records — in
//! the keyed state store, and one timer at the window's last millisecond
//! (plus a cleanup timer at that time + allowed lateness). A firing timer
//! emits the window's result; the window's state is dropped at cleanup time.
//! Session windows also keep, per key, the list of its open sessions, and
//! merge the accumulators of sessions that a record bridges.
//!
//! [`assigners`] holds the window vocabulary (windows and assigners).

pub mod assigners;
#[cfg(test)]
mod tests;

use assigners::{TimeWindow, WindowAssigner};

use crate::error::{Error, Result};
use crate::metrics;
use crate::record::{Data, Key};
use crate::runtime::collector::Collector;
use crate::runtime::context::{ProcessingClock, RuntimeContext};
use crate::runtime::element::Watermark;
use crate::runtime::keyed::{timer_key, KeyedState};
use crate::runtime::operator::{StreamOperator, TimeEvent};
use crate::runtime::side_output::{MainOutput, Tagged};
use crate::runtime::watermarks::TimestampFn;
use sluice_checkpoint::state::format::StateSnapshot;
use sluice_checkpoint::state::{AggregateFunction, KeyedStateStore, StateId, StateValue, TimeDomain};
use sluice_checkpoint::CheckpointId;
use std::marker::PhantomData;
use std::sync::Arc;

/// What a window keeps and emits.
pub(crate) trait WindowAgg<K, T, O>: Send + Sync + 'static {
    /// The per-window accumulator.
    type Acc: StateValue;
    /// Adds a record.
    fn add(&self, acc: &mut Option<Self::Acc>, value: T);
    /// Merges two accumulators (session windows).
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
    /// Emits the window's result.
    fn emit(&self, key: &K, window: &TimeWindow, acc: &Self::Acc, out: &mut dyn Collector<O>) -> Result<()>;
}

/// `reduce`: the accumulator is the reduced record.
pub(crate) struct ReduceAgg<F>(pub(crate) F);

impl<K, T: Data, F: Fn(T, T) -> T + Send + Sync + 'static> WindowAgg<K, T, T> for ReduceAgg<F> {
    type Acc = T;
    fn add(&self, acc: &mut Option<T>, value: T) {
        *acc = Some(match acc.take() {
            Some(a) => (self.0)(a, value),
            None => value,
        });
    }
    fn merge(&self, a: T, b: T) -> T {
        (self.0)(a, b)
    }
    fn emit(&self, _key: &K, _window: &TimeWindow, acc: &T, out: &mut dyn Collector<T>) -> Result<()> {
        out.collect(acc.clone())
    }
}

/// `aggregate`: an [`AggregateFunction`]'s accumulator.
pub(crate) struct AggregateAgg<A, ACC, OUT>(A, PhantomData<fn() -> (ACC, OUT)>);

impl<A, ACC, OUT> AggregateAgg<A, ACC, OUT> {
    pub(crate) fn new(f: A) -> Self {
        AggregateAgg(f, PhantomData)
    }
}

impl<K, T, ACC, OUT, A> WindowAgg<K, T, OUT> for AggregateAgg<A, ACC, OUT>
where
    ACC: StateValue,
    OUT: 'static,
    T: 'static,
    A: AggregateFunction<T, ACC, OUT>,
{
    type Acc = ACC;
    fn add(&self, acc: &mut Option<ACC>, value: T) {
        self.0.add(value, acc.get_or_insert_with(|| self.0.create_accumulator()));
    }
    fn merge(&self, a: ACC, b: ACC) -> ACC {
        self.0.merge(a, b)
    }
    fn emit(&self, _key: &K, _window: &TimeWindow, acc: &ACC, out: &mut dyn Collector<OUT>) -> Result<()> {
        out.collect(self.0.get_result(acc))
    }
}

/// `apply`: all records of the window, handed to a function.
pub(crate) struct ApplyAgg<F, T>(F, PhantomData<fn() -> T>);

impl<F, T> ApplyAgg<F, T> {
    pub(crate) fn new(f: F) -> Self {
        ApplyAgg(f, PhantomData)
    }
}

impl<K, T, O, F> WindowAgg<K, T, O> for ApplyAgg<F, T>
where
    T: Data,
    O: 'static,
    K: 'static,
    F: Fn(&K, &TimeWindow, Vec<T>, &mut dyn Collector<O>) -> Result<()> + Send + Sync + 'static,
{
    type Acc = Vec<T>;
    fn add(&self, acc: &mut Option<Vec<T>>, value: T) {
        acc.get_or_insert_with(Vec::new).push(value);
    }
    fn merge(&self, mut a: Vec<T>, b: Vec<T>) -> Vec<T> {
        a.extend(b);
        a
    }
    fn emit(&self, key: &K, window: &TimeWindow, acc: &Vec<T>, out: &mut dyn Collector<O>) -> Result<()> {
        (self.0)(key, window, acc.clone(), out)
    }
}

/// The window operator. See the module docs.
pub(crate) struct WindowOperator<K, T, O, A> {
    assigner: WindowAssigner,
    agg: Arc<A>,
    key_selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
    timestamps: Option<TimestampFn<T>>,
    lateness: i64,
    state: KeyedState,
    contents: Option<StateId>,
    sessions: Option<StateId>,
    watermark: i64,
    late_dropped: Option<prometheus::IntCounter>,
    /// With a late side output: late records not yet handed to it.
    late_records: Option<Vec<T>>,
    /// Processing time, for processing-time windows.
    clock: ProcessingClock,
    _out: PhantomData<fn() -> O>,
}

impl<K, T, O, A> WindowOperator<K, T, O, A> {
    pub(crate) fn new(
        assigner: WindowAssigner,
        agg: Arc<A>,
        key_selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
        timestamps: Option<TimestampFn<T>>,
        lateness: i64,
    ) -> Self {
        WindowOperator {
            assigner,
            agg,
            key_selector,
            timestamps,
            lateness: if assigner.domain() == TimeDomain::EventTime { lateness.max(0) } else { 0 },
            state: KeyedState::default(),
            contents: None,
            sessions: None,
            watermark: i64::MIN,
            late_dropped: None,
            late_records: None,
            clock: ProcessingClock::default(),
            _out: PhantomData,
        }
    }
}

fn ids(contents: Option<StateId>) -> Result<StateId> {
    contents.ok_or_else(|| Error::internal("window operator used before open"))
}

impl<K: Key, T: Data, O: Data, A: WindowAgg<K, T, O>> WindowOperator<K, T, O, A> {
    fn event_time(&self) -> bool {
        self.assigner.domain() == TimeDomain::EventTime
    }

    /// Past the window's cleanup time: a record for it is dropped.
    fn is_late(&self, w: &TimeWindow) -> bool {
        self.event_time() && w.max_timestamp().saturating_add(self.lateness) <= self.watermark
    }

    /// Registers the window's timers. A window already past the watermark
    /// (a late record within the allowed lateness) fires at once instead,
    /// so it gets only its cleanup timer, as Flink's `EventTimeTrigger`.
    fn register_timers(&self, store: &mut KeyedStateStore, w: &TimeWindow) {
        if !self.fires_now(w) {
            store.register_timer(self.assigner.domain(), w.max_timestamp());
        }
        if self.lateness > 0 {
            store.register_timer(TimeDomain::EventTime, w.max_timestamp() + self.lateness);
        }
    }

    /// An event-time window whose end the watermark has passed.
    fn fires_now(&self, w: &TimeWindow) -> bool {
        self.event_time() && w.max_timestamp() <= self.watermark
    }

    fn delete_timers(&self, store: &mut KeyedStateStore, w: &TimeWindow) {
        store.delete_timer(self.assigner.domain(), w.max_timestamp());
        if self.lateness > 0 {
            store.delete_timer(TimeDomain::EventTime, w.max_timestamp() + self.lateness);
        }
    }

    /// A record came too late for all its windows: it goes to the late
    /// side output if there is one, else it is dropped and counted.
    fn late(&mut self, record: T) {
        match &mut self.late_records {
            Some(side) => side.push(record),
            None => {
                if let Some(c) = &self.late_dropped {
                    c.inc();
                }
            }
        }
    }

    /// Emits the current key's result for window `w` (namespace set).
    fn emit(&self, store: &mut KeyedStateStore, key: &K, w: &TimeWindow, out: &mut dyn Collector<O>) -> Result<()> {
        let agg = &self.agg;
        store.read::<A::Acc, _>(ids(self.contents)?, |acc| match acc {
            Some(acc) => agg.emit(key, w, acc, out),
            None => Ok(()),
        })?
    }

    /// Drops the current key's state of window `w`.
    fn purge(&self, store: &mut KeyedStateStore, w: &TimeWindow) -> Result<()> {
        store.set_namespace(w)?;
        store.clear::<A::Acc>(ids(self.contents)?)?;
        if let Some(sessions) = self.sessions {
            store.clear_namespace();
            store.update::<Vec<TimeWindow>, _>(sessions, |list| {
                if let Some(l) = list {
                    l.retain(|s| s != w);
                    if l.is_empty() {
                        *list = None;
                    }
                }
            })?;
        }
        Ok(())
    }

    fn add_to_windows(
        &self,
        store: &mut KeyedStateStore,
        key: &K,
        ts: i64,
        record: T,
        out: &mut dyn Collector<O>,
    ) -> Result<Option<T>> {
        let contents = ids(self.contents)?;
        let windows = self.assigner.assign(ts);
        if windows.iter().all(|w| self.is_late(w)) {
            return Ok(Some(record));
        }
        let mut record = Some(record);
        let last = windows.len().saturating_sub(1);
        for (i, w) in windows.iter().enumerate() {
            if self.is_late(w) {
                continue;
            }
            let value = if i == last { record.take() } else { record.clone() };
            let Some(value) = value else { continue };
            store.set_namespace(w)?;
            store.update::<A::Acc, _>(contents, |acc| self.agg.add(acc, value))?;
            self.register_timers(store, w);
            if self.fires_now(w) {
                self.emit(store, key, w, out)?; // late, within the allowed lateness
            }
        }
        Ok(None)
    }

    fn add_to_session(
        &self,
        store: &mut KeyedStateStore,
        key: &K,
        ts: i64,
        record: T,
        out: &mut dyn Collector<O>,
    ) -> Result<Option<T>> {
        let contents = ids(self.contents)?;
        let sessions = ids(self.sessions)?;
        let Some(new) = self.assigner.assign(ts).into_iter().next() else { return Ok(None) };
        if self.is_late(&new) {
            return Ok(Some(record));
        }
        store.clear_namespace();
        let open = store.get::<Vec<TimeWindow>>(sessions)?.unwrap_or_default();
        let (overlapping, mut rest): (Vec<TimeWindow>, Vec<TimeWindow>) =
            open.into_iter().partition(|w| w.intersects(&new));
        let merged = overlapping.iter().fold(new, |a, b| a.cover(b));
        let mut acc: Option<A::Acc> = None;
        for w in &overlapping {
            store.set_namespace(w)?;
            let taken = store.update::<A::Acc, _>(contents, |v| v.take())?;
            self.delete_timers(store, w);
            acc = match (acc, taken) {
                (Some(a), Some(b)) => Some(self.agg.merge(a, b)),
                (a, b) => a.or(b),
            };
        }
        self.agg.add(&mut acc, record);
        store.set_namespace(&merged)?;
        store.update::<A::Acc, _>(contents, |v| *v = acc)?;
        self.register_timers(store, &merged);
        if self.fires_now(&merged) {
            self.emit(store, key, &merged, out)?;
        }
        store.clear_namespace();
        rest.push(merged);
        store.update::<Vec<TimeWindow>, _>(sessions, |v| *v = Some(rest))?;
        Ok(None)
    }

    /// Fires the timers of `domain` due at `time`.
    fn fire(&self, domain: TimeDomain, time: i64, out: &mut dyn Collector<O>) -> Result<()> {
        let mut store = self.state.store()?.lock()?;
        while let Some(timer) = store.timers.pop_due(domain, time) {
            store.set_current_timer(&timer);
            let key: K = timer_key(&store)?;
            let w: TimeWindow = postcard::from_bytes(store.current_namespace_bytes())
                .map_err(|e| Error::user(format!("cannot decode the window of a timer: {e}")))?;
            if timer.timestamp == w.max_timestamp() && domain == self.assigner.domain() {
                self.emit(&mut store, &key, &w, out)?;
                if self.lateness == 0 {
                    self.purge(&mut store, &w)?;
                }
            } else {
                self.purge(&mut store, &w)?;
            }
        }
        Ok(())
    }
}

impl<K: Key, T: Data, O: Data, A: WindowAgg<K, T, O>> StreamOperator<T, O> for WindowOperator<K, T, O, A> {
    fn restore_state(&mut self, ctx: &RuntimeContext, bytes: &[u8]) -> Result<()> {
        self.state.restore(ctx, bytes).map(|_| ())
    }
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let store = self.state.open(ctx)?;
        let mut s = store.lock()?;
        self.contents = Some(s.register::<A::Acc>("window-contents", None)?);
        if self.assigner.is_merging() {
            self.sessions = Some(s.register::<Vec<TimeWindow>>("window-sessions", None)?);
        }
        self.clock = ctx.clock.clone();
        let job_id = ctx.job_id.to_string();
        let subtask = ctx.subtask_index.to_string();
        self.late_dropped = Some(metrics::global().late_records_dropped(&[
            &job_id,
            &ctx.job_name,
            &ctx.task_name,
            &ctx.operator_name,
            &subtask,
        ]));
        Ok(())
    }
    fn process_element(&mut self, record: T, out: &mut dyn Collector<O>) -> Result<()> {
        let key = (self.key_selector)(&record);
        let ts = match (self.assigner.domain(), &self.timestamps) {
            (TimeDomain::EventTime, Some(f)) => f(&record),
            (TimeDomain::EventTime, None) => {
                return Err(Error::user("event-time window without timestamps; use assign_timestamps_and_watermarks"))
            }
            (TimeDomain::ProcessingTime, _) => self.clock.now_ms(),
        };
        let shared = self.state.store()?.clone();
        let mut store = shared.lock()?;
        store.set_current_key(&key)?;
        let late = if self.assigner.is_merging() {
            self.add_to_session(&mut store, &key, ts, record, out)?
        } else {
            self.add_to_windows(&mut store, &key, ts, record, out)?
        };
        drop(store);
        if let Some(record) = late {
            self.late(record);
        }
        Ok(())
    }
    fn process_watermark(&mut self, wm: Watermark, out: &mut dyn Collector<O>) -> Result<Option<Watermark>> {
        self.watermark = wm.0;
        self.fire(TimeDomain::EventTime, wm.0, out)?;
        Ok(Some(wm))
    }
    fn on_processing_time(&mut self, now_ms: i64, out: &mut dyn Collector<O>) -> Result<Option<TimeEvent>> {
        self.fire(TimeDomain::ProcessingTime, now_ms, out)?;
        Ok(None)
    }
    fn finish(&mut self, out: &mut dyn Collector<O>) -> Result<()> {
        // End of bounded input: every window that has state fires.
        self.watermark = i64::MAX;
        self.fire(TimeDomain::EventTime, i64::MAX, out)?;
        self.fire(TimeDomain::ProcessingTime, i64::MAX, out)
    }
    fn snapshot_state(&mut self, id: CheckpointId) -> Result<Option<StateSnapshot>> {
        self.state.snapshot(id, Vec::new())
    }
    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        self.state.complete(id)
    }
}

/// A window operator whose late records go to a side output: it emits
/// [`Tagged::Main`] results and [`Tagged::Side`] late records.
pub(crate) struct LateDataOutput<K, T, O, A> {
    window: WindowOperator<K, T, O, A>,
}

impl<K, T, O, A> LateDataOutput<K, T, O, A> {
    pub(crate) fn new(mut window: WindowOperator<K, T, O, A>) -> Self {
        window.late_records = Some(Vec::new());
        LateDataOutput { window }
    }

    fn emit_late(&mut self, out: &mut dyn Collector<Tagged<O, T>>) -> Result<()> {
        if let Some(late) = &mut self.window.late_records {
            for record in late.drain(..) {
                out.collect(Tagged::Side(record))?;
            }
        }
        Ok(())
    }
}

impl<K: Key, T: Data, O: Data, A: WindowAgg<K, T, O>> StreamOperator<T, Tagged<O, T>> for LateDataOutput<K, T, O, A> {
    fn restore_state(&mut self, ctx: &RuntimeContext, bytes: &[u8]) -> Result<()> {
        self.window.restore_state(ctx, bytes)
    }
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.window.open(ctx)
    }
    fn process_element(&mut self, record: T, out: &mut dyn Collector<Tagged<O, T>>) -> Result<()> {
        self.window.process_element(record, &mut MainOutput(out))?;
        self.emit_late(out)
    }
    fn process_watermark(&mut self, wm: Watermark, out: &mut dyn Collector<Tagged<O, T>>) -> Result<Option<Watermark>> {
        self.window.process_watermark(wm, &mut MainOutput(out))
    }
    fn on_processing_time(&mut self, now_ms: i64, out: &mut dyn Collector<Tagged<O, T>>) -> Result<Option<TimeEvent>> {
        self.window.on_processing_time(now_ms, &mut MainOutput(out))
    }
    fn finish(&mut self, out: &mut dyn Collector<Tagged<O, T>>) -> Result<()> {
        self.window.finish(&mut MainOutput(out))
    }
    fn snapshot_state(&mut self, id: CheckpointId) -> Result<Option<StateSnapshot>> {
        self.window.snapshot_state(id)
    }
    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        self.window.notify_checkpoint_complete(id)
    }
    fn close(&mut self) -> Result<()> {
        self.window.close()
    }
}
