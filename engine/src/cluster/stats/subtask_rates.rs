//! Per-second rates of each subtask, from the cumulative counters its
//! TaskManager samples about once a second (Flink's `numRecordsInPerSecond`,
//! `busyTimeMsPerSecond`, `backPressuredTimeMsPerSecond`,
//! `idleTimeMsPerSecond`, `currentInputWatermark`).

use crate::ids::SubtaskId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A subtask's cumulative counters at one moment, as its TaskManager read
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskSample {
    /// Which subtask.
    pub subtask: SubtaskId,
    /// Milliseconds since the subtask was deployed, when sampled.
    pub uptime_ms: u64,
    /// Records its head operator received.
    pub records_in: u64,
    /// Records its last operator emitted.
    pub records_out: u64,
    /// Milliseconds it was blocked on full output channels.
    pub back_pressured_ms: u64,
    /// Milliseconds it waited for input.
    pub idle_ms: u64,
    /// Its combined input watermark, if it has one.
    pub input_watermark: Option<i64>,
}

/// A subtask's totals and its rates over the last sampling interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SubtaskRates {
    /// Records received so far.
    pub records_in: u64,
    /// Records emitted so far.
    pub records_out: u64,
    /// Records received per second.
    pub records_in_per_second: f64,
    /// Records emitted per second.
    pub records_out_per_second: f64,
    /// Milliseconds per second neither idle nor back-pressured.
    pub busy_ms_per_second: u64,
    /// Milliseconds per second blocked on full output channels.
    pub back_pressured_ms_per_second: u64,
    /// Milliseconds per second waiting for input.
    pub idle_ms_per_second: u64,
    /// The combined input watermark, if any.
    pub input_watermark: Option<i64>,
}

impl SubtaskRates {
    /// The rates between two samples of one subtask (`None` if no time
    /// passed between them).
    pub fn between(earlier: &SubtaskSample, later: &SubtaskSample) -> Option<SubtaskRates> {
        let elapsed = later.uptime_ms.checked_sub(earlier.uptime_ms).filter(|ms| *ms > 0)?;
        let per_second = |a: u64, b: u64| b.saturating_sub(a) as f64 * 1000.0 / elapsed as f64;
        let ms_per_second = |a: u64, b: u64| ((b.saturating_sub(a) * 1000) / elapsed).min(1000);
        let back_pressured = ms_per_second(earlier.back_pressured_ms, later.back_pressured_ms);
        let idle = ms_per_second(earlier.idle_ms, later.idle_ms).min(1000 - back_pressured);
        Some(SubtaskRates {
            records_in: later.records_in,
            records_out: later.records_out,
            records_in_per_second: per_second(earlier.records_in, later.records_in),
            records_out_per_second: per_second(earlier.records_out, later.records_out),
            busy_ms_per_second: 1000 - back_pressured - idle,
            back_pressured_ms_per_second: back_pressured,
            idle_ms_per_second: idle,
            input_watermark: later.input_watermark,
        })
    }
}

/// The last sample and rates of each subtask of a job.
#[derive(Debug, Default)]
pub(crate) struct RateTracker {
    last: HashMap<SubtaskId, (SubtaskSample, Option<SubtaskRates>)>,
}

impl RateTracker {
    /// Takes a new sample; samples of attempts other than `attempt` are
    /// dropped.
    pub(crate) fn sample(&mut self, attempt: u32, sample: SubtaskSample) {
        if sample.subtask.attempt != attempt {
            return;
        }
        let rates = self.last.get(&sample.subtask).and_then(|(prev, _)| SubtaskRates::between(prev, &sample));
        self.last.insert(sample.subtask, (sample, rates));
    }

    /// Forgets the subtasks of attempts before `attempt` (a restart).
    pub(crate) fn begin_attempt(&mut self, attempt: u32) {
        self.last.retain(|s, _| s.attempt >= attempt);
    }

    /// The latest rates of `subtask`.
    pub(crate) fn rates(&self, subtask: &SubtaskId) -> Option<SubtaskRates> {
        self.last.get(subtask).and_then(|(_, r)| *r)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ids::JobId;

    fn sample(uptime_ms: u64, records: u64, bp: u64, idle: u64) -> SubtaskSample {
        SubtaskSample {
            subtask: SubtaskId { job: JobId::from_u128(1), attempt: 0, vertex: 1, subtask: 0 },
            uptime_ms,
            records_in: records,
            records_out: records * 2,
            back_pressured_ms: bp,
            idle_ms: idle,
            input_watermark: Some(42),
        }
    }

    #[test]
    fn rates_over_the_interval_and_busy_is_the_rest() {
        let r = SubtaskRates::between(&sample(1000, 100, 0, 0), &sample(3000, 2100, 1000, 600)).unwrap();
        assert_eq!(r.records_in_per_second, 1000.0);
        assert_eq!(r.records_out_per_second, 2000.0);
        assert_eq!(r.back_pressured_ms_per_second, 500);
        assert_eq!(r.idle_ms_per_second, 300);
        assert_eq!(r.busy_ms_per_second, 200);
        assert_eq!((r.records_in, r.input_watermark), (2100, Some(42)));
    }

    #[test]
    fn rounding_never_makes_more_than_a_second() {
        let r = SubtaskRates::between(&sample(0, 0, 0, 0), &sample(999, 0, 700, 700)).unwrap();
        assert_eq!(r.back_pressured_ms_per_second + r.idle_ms_per_second + r.busy_ms_per_second, 1000);
        assert!(SubtaskRates::between(&sample(5, 0, 0, 0), &sample(5, 1, 0, 0)).is_none());
    }

    #[test]
    fn the_tracker_needs_two_samples_and_forgets_old_attempts() {
        let mut t = RateTracker::default();
        let s = sample(1000, 10, 0, 0);
        t.sample(0, s);
        assert_eq!(t.rates(&s.subtask), None);
        t.sample(0, sample(2000, 20, 0, 0));
        assert_eq!(t.rates(&s.subtask).map(|r| r.records_in_per_second), Some(10.0));
        t.sample(1, sample(3000, 30, 0, 0));
        assert_eq!(t.rates(&s.subtask).map(|r| r.records_in), Some(20), "a sample of another attempt is ignored");
        t.begin_attempt(1);
        assert_eq!(t.rates(&s.subtask), None);
    }
}
