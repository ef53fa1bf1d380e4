//! Event time: timestamps and watermarks (Flink's `WatermarkStrategy`).
//!
//! `assign_timestamps_and_watermarks` puts a generator after the source that
//! reads each record's timestamp, and every `pipeline.auto-watermark-interval`
//! emits the watermark *max timestamp seen − out-of-orderness − 1 ms*. A
//! generator that sees no record for the idleness timeout marks its stream
//! idle, so downstream tasks compute their watermark from the other inputs
//! instead of waiting.
//!
//! Records carry no timestamp field in Sluice: the timestamp is a function
//! of the record, which the stream remembers and hands to the operators that
//! need it (event-time windows, `KeyedContext::timestamp`). It survives
//! `filter`, `key_by`, `rebalance` and `union`; after an operator that
//! changes the record type (`map`, a window, ...) give the new type one with
//! [`DataStream::with_timestamps`](crate::DataStream::with_timestamps).
//! Watermarks themselves flow on through every operator.
//!
//! ```
//! use sluice::api::watermarks::WatermarkStrategy;
//! use std::time::Duration;
//! let strategy = WatermarkStrategy::<(String, i64)>::for_bounded_out_of_orderness(Duration::from_secs(5))
//!     .with_timestamp_assigner(|e: &(String, i64)| e.1)
//!     .with_idleness(Duration::from_secs(30));
//! # let _ = strategy;
//! ```

use crate::error::Result;
use crate::runtime::collector::Collector;
use crate::runtime::context::RuntimeContext;
use crate::runtime::element::Watermark;
use crate::runtime::operator::{StreamOperator, TimeEvent};
use std::sync::Arc;
use std::time::Duration;

/// Reads the event-time timestamp (ms) of a record.
pub type TimestampFn<T> = Arc<dyn Fn(&T) -> i64 + Send + Sync>;

/// How a stream gets timestamps and watermarks.
pub struct WatermarkStrategy<T> {
    pub(crate) timestamps: Option<TimestampFn<T>>,
    /// `None`: no watermarks are generated.
    pub(crate) out_of_orderness: Option<Duration>,
    pub(crate) idleness: Option<Duration>,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            timestamps: self.timestamps.clone(),
            out_of_orderness: self.out_of_orderness,
            idleness: self.idleness,
        }
    }
}

impl<T> WatermarkStrategy<T> {
    /// Records may arrive up to `max` late relative to the latest one seen.
    pub fn for_bounded_out_of_orderness(max: Duration) -> Self {
        WatermarkStrategy { timestamps: None, out_of_orderness: Some(max), idleness: None }
    }

    /// Timestamps only grow.
    pub fn for_monotonous_timestamps() -> Self {
        Self::for_bounded_out_of_orderness(Duration::ZERO)
    }

    /// Timestamps without watermarks (event time never advances here).
    pub fn no_watermarks() -> Self {
        WatermarkStrategy { timestamps: None, out_of_orderness: None, idleness: None }
    }

    /// How to read a record's timestamp (ms); required.
    pub fn with_timestamp_assigner(mut self, f: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Self {
        self.timestamps = Some(Arc::new(f));
        self
    }

    /// Marks the stream idle after `timeout` without records.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness = Some(timeout);
        self
    }
}

/// The watermark generator: passes records through, tracks the largest
/// timestamp, emits watermarks and idleness on the processing-time clock.
pub(crate) struct TimestampsAndWatermarksOp<T> {
    timestamps: TimestampFn<T>,
    delay_ms: Option<i64>,
    idleness_ms: Option<i64>,
    interval_ms: i64,
    max_timestamp: i64,
    emitted: Watermark,
    last_emit: i64,
    last_active: i64,
    active: bool,
    idle: bool,
}

impl<T> TimestampsAndWatermarksOp<T> {
    pub(crate) fn new(strategy: &WatermarkStrategy<T>, timestamps: TimestampFn<T>) -> Self {
        TimestampsAndWatermarksOp {
            timestamps,
            delay_ms: strategy.out_of_orderness.map(|d| d.as_millis() as i64),
            idleness_ms: strategy.idleness.map(|d| d.as_millis() as i64),
            interval_ms: 200,
            max_timestamp: i64::MIN,
            emitted: Watermark::MIN,
            last_emit: 0,
            last_active: 0,
            active: false,
            idle: false,
        }
    }

    /// The watermark the records seen so far allow.
    fn current(&self) -> Option<Watermark> {
        let delay = self.delay_ms?;
        if self.max_timestamp == i64::MIN {
            return None;
        }
        Some(Watermark(self.max_timestamp.saturating_sub(delay).saturating_sub(1)))
    }
}

impl<T: Send> StreamOperator<T, T> for TimestampsAndWatermarksOp<T> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.interval_ms = ctx.watermark_interval.as_millis().max(1) as i64;
        Ok(())
    }

    #[inline]
    fn process_element(&mut self, record: T, out: &mut dyn Collector<T>) -> Result<()> {
        let ts = (self.timestamps)(&record);
        if ts > self.max_timestamp {
            self.max_timestamp = ts;
        }
        self.active = true;
        out.collect(record)
    }

    fn process_watermark(&mut self, wm: Watermark, _out: &mut dyn Collector<T>) -> Result<Option<Watermark>> {
        // This operator decides the stream's watermarks; only the end of
        // event time passes through.
        Ok((wm == Watermark::MAX).then_some(wm))
    }

    fn on_processing_time(&mut self, now_ms: i64, _out: &mut dyn Collector<T>) -> Result<Option<TimeEvent>> {
        if self.last_active == 0 {
            self.last_active = now_ms;
        }
        if std::mem::take(&mut self.active) {
            self.last_active = now_ms;
            self.idle = false;
        } else if let Some(idleness) = self.idleness_ms {
            if !self.idle && now_ms - self.last_active >= idleness {
                self.idle = true;
                return Ok(Some(TimeEvent::Idle));
            }
        }
        if self.idle || now_ms - self.last_emit < self.interval_ms {
            return Ok(None);
        }
        self.last_emit = now_ms;
        match self.current() {
            Some(wm) if wm > self.emitted => {
                self.emitted = wm;
                Ok(Some(TimeEvent::Watermark(wm)))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn emits_bounded_watermarks_then_idles() {
        let strategy = WatermarkStrategy::<i64>::for_bounded_out_of_orderness(Duration::from_millis(100))
            .with_idleness(Duration::from_millis(1000));
        let mut op = TimestampsAndWatermarksOp::new(&strategy, Arc::new(|t: &i64| *t));
        let mut out = Vec::new();
        for ts in [500, 300, 900] {
            op.process_element(ts, &mut out).unwrap();
        }
        assert_eq!(out, vec![500, 300, 900]);
        assert_eq!(op.on_processing_time(10_000, &mut out).unwrap(), Some(TimeEvent::Watermark(Watermark(799))));
        // Nothing new: no second watermark, then idle after the timeout.
        assert_eq!(op.on_processing_time(10_300, &mut out).unwrap(), None);
        assert_eq!(op.on_processing_time(11_000, &mut out).unwrap(), Some(TimeEvent::Idle));
        op.process_element(2_000, &mut out).unwrap();
        assert_eq!(op.on_processing_time(11_300, &mut out).unwrap(), Some(TimeEvent::Watermark(Watermark(1_899))));
    }
}
