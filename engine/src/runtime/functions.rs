//! User functions that need more than a closure: process functions.
//!
//! Both traits follow the operator lifecycle (see [`crate::runtime::operator`]):
//! `open` once, `process_element` per record, `finish` at the end of bounded
//! input, `close` always. Each parallel subtask works on its own clone of the
//! function. An `Err` fails the subtask with that error.

use crate::error::Result;
use crate::record::Data;
use crate::runtime::collector::Collector;
use crate::runtime::context::{ProcessingClock, RuntimeContext};
use crate::runtime::element::Watermark;
use crate::runtime::side_output::{OutputTag, SideRecord, SideRecords};
use serde::Serialize;
use sluice_checkpoint::state::{SharedStore, TimeDomain};

/// What a [`ProcessFunction`] can see while it handles a record.
#[derive(Debug)]
pub struct ProcessContext {
    pub(crate) watermark: Watermark,
    pub(crate) subtask_index: u32,
    pub(crate) side: SideRecords,
}

impl ProcessContext {
    /// Sends `record` to the side output `tag` (Flink's `ctx.output`); read
    /// it with [`DataStream::get_side_output`](crate::DataStream::get_side_output)
    /// on the stream `process` returned. See [`side_output`](crate::runtime::side_output).
    pub fn output<S: Serialize>(&mut self, tag: &OutputTag<S>, record: S) -> Result<()> {
        self.side.push(SideRecord::new(tag, &record)?);
        Ok(())
    }

    /// The current event-time watermark of this subtask.
    pub fn current_watermark(&self) -> Watermark {
        self.watermark
    }

    /// This subtask's index, from 0.
    pub fn subtask_index(&self) -> u32 {
        self.subtask_index
    }
}

/// A function called for every record, free to emit any number of outputs
/// and to keep its own (non-keyed) fields across records.
///
/// ```
/// use sluice::{Collector, ProcessContext, ProcessFunction, Result};
///
/// /// Emits the running length of all lines seen by this subtask.
/// #[derive(Clone, Default)]
/// struct TotalLength(usize);
///
/// impl ProcessFunction<String, usize> for TotalLength {
///     fn process_element(&mut self, line: String, _ctx: &mut ProcessContext, out: &mut dyn Collector<usize>) -> Result<()> {
///         self.0 += line.len();
///         out.collect(self.0)
///     }
/// }
/// ```
pub trait ProcessFunction<I, O>: Send + 'static {
    /// Called once before the first record.
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }

    /// Handles one record.
    fn process_element(&mut self, value: I, ctx: &mut ProcessContext, out: &mut dyn Collector<O>) -> Result<()>;

    /// The input ended (bounded jobs): emit what is left.
    fn finish(&mut self, _out: &mut dyn Collector<O>) -> Result<()> {
        Ok(())
    }

    /// Called once at the end, also after failures.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// What a [`KeyedProcessFunction`] can see while it handles a record or a
/// timer: the key, the function's state for that key, time, and timers.
pub struct KeyedContext<'a, K, S> {
    pub(crate) key: &'a K,
    pub(crate) state: &'a mut S,
    pub(crate) watermark: Watermark,
    pub(crate) cleared: bool,
    pub(crate) store: &'a SharedStore,
    pub(crate) timestamp: Option<i64>,
    pub(crate) domain: Option<TimeDomain>,
    pub(crate) side: SideRecords,
    pub(crate) clock: &'a ProcessingClock,
}

impl<K, S> KeyedContext<'_, K, S> {
    /// Sends `record` to the side output `tag` (Flink's `ctx.output`); read
    /// it with [`DataStream::get_side_output`](crate::DataStream::get_side_output)
    /// on the stream `process` returned. See [`side_output`](crate::runtime::side_output).
    pub fn output<T: Serialize>(&mut self, tag: &OutputTag<T>, record: T) -> Result<()> {
        self.side.push(SideRecord::new(tag, &record)?);
        Ok(())
    }

    /// The key of the record being processed.
    pub fn key(&self) -> &K {
        self.key
    }

    /// The function's state for the current key (`Default` for a new key).
    pub fn state(&mut self) -> &mut S {
        self.cleared = false;
        self.state
    }

    /// Forgets the current key's state once this call returns.
    pub fn clear_state(&mut self) {
        self.cleared = true;
    }

    /// The current event-time watermark of this subtask.
    pub fn current_watermark(&self) -> Watermark {
        self.watermark
    }

    /// The event-time timestamp of the record being processed (if the
    /// stream has timestamps, see `assign_timestamps_and_watermarks`), or
    /// the time of the firing timer.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// In `on_timer`: which clock fired the timer.
    pub fn time_domain(&self) -> Option<TimeDomain> {
        self.domain
    }

    /// The wall clock in milliseconds since the Unix epoch.
    pub fn current_processing_time(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Calls `on_timer` for the current key once the watermark passes `time`.
    pub fn register_event_time_timer(&mut self, time: i64) -> Result<()> {
        self.store.lock()?.register_timer(TimeDomain::EventTime, time);
        Ok(())
    }

    /// Calls `on_timer` for the current key once the wall clock passes `time`.
    pub fn register_processing_time_timer(&mut self, time: i64) -> Result<()> {
        self.store.lock()?.register_timer(TimeDomain::ProcessingTime, time);
        Ok(())
    }

    /// Deletes an event-time timer of the current key.
    pub fn delete_event_time_timer(&mut self, time: i64) -> Result<()> {
        self.store.lock()?.delete_timer(TimeDomain::EventTime, time);
        Ok(())
    }

    /// Deletes a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&mut self, time: i64) -> Result<()> {
        self.store.lock()?.delete_timer(TimeDomain::ProcessingTime, time);
        Ok(())
    }
}

/// A process function on a keyed stream, with one value of
/// [`State`](KeyedProcessFunction::State) per key, kept by the runtime and
/// included in the operator's snapshot.
///
/// ```
/// use sluice::{Collector, KeyedContext, KeyedProcessFunction, Result};
///
/// /// Emits (word, n) on every n-th occurrence of a word that is a multiple of 10.
/// #[derive(Clone)]
/// struct EveryTenth;
///
/// impl KeyedProcessFunction<String, String, (String, u64)> for EveryTenth {
///     type State = u64;
///     fn process_element(&mut self, word: String, ctx: &mut KeyedContext<'_, String, u64>, out: &mut dyn Collector<(String, u64)>) -> Result<()> {
///         *ctx.state() += 1;
///         let n = *ctx.state();
///         if n % 10 == 0 { out.collect((word, n))?; }
///         Ok(())
///     }
/// }
/// ```
pub trait KeyedProcessFunction<K, I, O>: Send + 'static {
    /// The per-key state.
    type State: Data + Default;

    /// Called once before the first record.
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }

    /// Handles one record of the current key.
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut KeyedContext<'_, K, Self::State>,
        out: &mut dyn Collector<O>,
    ) -> Result<()>;

    /// A timer of the current key fired (`ctx.time_domain()` says which
    /// clock); at the end of bounded input all event-time timers fire.
    fn on_timer(
        &mut self,
        _timestamp: i64,
        _ctx: &mut KeyedContext<'_, K, Self::State>,
        _out: &mut dyn Collector<O>,
    ) -> Result<()> {
        Ok(())
    }

    /// Called once at the end, also after failures.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}
