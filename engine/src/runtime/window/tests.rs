//! The window operator through the one-operator test harness: event-time
//! windows fire when the watermark passes their end, processing-time
//! windows when the (injected) clock does; late records are dropped and
//! counted, re-fire a window within the allowed lateness, or go to the
//! late side output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::ptr_arg)]

use super::assigners::{TimeWindow, TumblingEventTimeWindows, TumblingProcessingTimeWindows, WindowAssigner};
use super::{ApplyAgg, LateDataOutput, WindowOperator};
use crate::error::Result;
use crate::runtime::collector::Collector;
use crate::runtime::side_output::Tagged;
use crate::runtime::test_harness::{OneInputHarness, Output};
use std::sync::Arc;
use std::time::Duration;

/// (user, event time).
type Click = (String, i64);
/// (user, window start, clicks in the window).
type Count = (String, i64, usize);
type CountFn = fn(&String, &TimeWindow, Vec<Click>, &mut dyn Collector<Count>) -> Result<()>;
type Counting = WindowOperator<String, Click, Count, ApplyAgg<CountFn, Click>>;

fn count(user: &String, w: &TimeWindow, clicks: Vec<Click>, out: &mut dyn Collector<Count>) -> Result<()> {
    out.collect((user.clone(), w.start, clicks.len()))
}

/// Counts the clicks per user and window; event time is the click's second field.
fn counting(assigner: WindowAssigner, lateness_ms: i64) -> Counting {
    WindowOperator::new(
        assigner,
        Arc::new(ApplyAgg::new(count as CountFn)),
        Arc::new(|c: &Click| c.0.clone()),
        Some(Arc::new(|c: &Click| c.1)),
        lateness_ms,
    )
}

fn click(user: &str, ts: i64) -> Click {
    (user.to_string(), ts)
}

fn counted(user: &str, start: i64, n: usize) -> Count {
    (user.to_string(), start, n)
}

fn five_seconds() -> WindowAssigner {
    TumblingEventTimeWindows::of(Duration::from_secs(5))
}

/// Records, sorted (windows of several keys fire in timer order).
fn sorted(mut records: Vec<Count>) -> Vec<Count> {
    records.sort();
    records
}

#[test]
fn event_time_windows_fire_when_the_watermark_passes_their_end() {
    let mut h = OneInputHarness::new(counting(five_seconds(), 0));
    h.open().unwrap();
    for c in [click("a", 1_000), click("a", 4_999), click("b", 2_000), click("a", 5_000)] {
        h.process(c).unwrap();
    }
    assert_eq!(h.take(), vec![], "nothing fires on records alone");
    h.watermark(4_998).unwrap();
    assert_eq!(h.take(), vec![Output::Watermark(4_998)], "[0, 5000) is still open at 4998");
    h.watermark(4_999).unwrap();
    let out = h.take();
    assert_eq!(out.last(), Some(&Output::Watermark(4_999)), "results go out before the watermark: {out:?}");
    let fired: Vec<Count> = out
        .into_iter()
        .filter_map(|o| match o {
            Output::Record(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(sorted(fired), vec![counted("a", 0, 2), counted("b", 0, 1)]);
    h.watermark(9_999).unwrap();
    assert_eq!(h.take(), vec![Output::Record(counted("a", 5_000, 1)), Output::Watermark(9_999)]);
    h.finish().unwrap();
    assert_eq!(h.take(), vec![], "a fired window without lateness was purged");
}

#[test]
fn late_records_are_dropped_and_counted() {
    let mut h = OneInputHarness::new(counting(five_seconds(), 0));
    h.open().unwrap();
    h.process(click("a", 1_000)).unwrap();
    h.watermark(5_000).unwrap();
    assert_eq!(h.take_records(), vec![counted("a", 0, 1)]);
    assert_eq!(h.late_records_dropped(), 0);
    h.process(click("a", 2_000)).unwrap(); // its window [0, 5000) is gone
    h.process(click("a", 4_999)).unwrap();
    h.process(click("a", 7_000)).unwrap(); // [5000, 10000) is open
    assert_eq!(h.take(), vec![], "late records make no output");
    assert_eq!(h.late_records_dropped(), 2);
    h.finish().unwrap();
    assert_eq!(h.take_records(), vec![counted("a", 5_000, 1)]);
}

#[test]
fn allowed_lateness_fires_the_window_again_then_drops() {
    let mut h = OneInputHarness::new(counting(five_seconds(), 1_000));
    h.open().unwrap();
    h.process(click("a", 1_000)).unwrap();
    h.watermark(5_000).unwrap();
    assert_eq!(h.take_records(), vec![counted("a", 0, 1)]);
    // Within the lateness (cleanup at 4999 + 1000): fires at once, with both.
    h.process(click("a", 2_000)).unwrap();
    assert_eq!(h.take_records(), vec![counted("a", 0, 2)]);
    assert_eq!(h.late_records_dropped(), 0);
    // Past the cleanup time: dropped and counted.
    h.watermark(5_999).unwrap();
    assert_eq!(h.take_records(), vec![]);
    h.process(click("a", 3_000)).unwrap();
    assert_eq!(h.take_records(), vec![]);
    assert_eq!(h.late_records_dropped(), 1);
}

#[test]
fn late_records_go_to_the_side_output_instead_when_asked() {
    let mut h = OneInputHarness::new(LateDataOutput::new(counting(five_seconds(), 0)));
    h.open().unwrap();
    h.process(click("a", 1_000)).unwrap();
    h.watermark(5_000).unwrap();
    h.process(click("a", 2_000)).unwrap();
    let (mut main, mut side) = (Vec::new(), Vec::new());
    for r in h.take_records() {
        match r {
            Tagged::Main(m) => main.push(m),
            Tagged::Side(s) => side.push(s),
        }
    }
    assert_eq!(main, vec![counted("a", 0, 1)]);
    assert_eq!(side, vec![click("a", 2_000)]);
    assert_eq!(h.late_records_dropped(), 0, "a record sent to the side output is not dropped");
}

#[test]
fn processing_time_windows_follow_the_injected_clock() {
    let mut h = OneInputHarness::new(counting(TumblingProcessingTimeWindows::of(Duration::from_secs(5)), 0));
    h.open().unwrap();
    h.set_processing_time(1_000).unwrap();
    // The event time in the record plays no part: the clock assigns it.
    h.process(click("a", 123_456_789)).unwrap();
    h.process(click("b", -5)).unwrap();
    h.set_processing_time(4_998).unwrap();
    assert_eq!(h.take(), vec![]);
    h.set_processing_time(4_999).unwrap();
    assert_eq!(sorted(h.take_records()), vec![counted("a", 0, 1), counted("b", 0, 1)]);
    h.set_processing_time(7_000).unwrap();
    h.process(click("a", 0)).unwrap();
    h.watermark(i64::MAX - 1).unwrap();
    assert_eq!(h.take(), vec![Output::Watermark(i64::MAX - 1)], "watermarks do not fire processing-time windows");
    h.set_processing_time(9_999).unwrap();
    assert_eq!(h.take_records(), vec![counted("a", 5_000, 1)]);
}

#[test]
fn open_windows_survive_a_barrier_and_a_restore() {
    let mut h = OneInputHarness::new(counting(five_seconds(), 0));
    h.open().unwrap();
    h.process(click("a", 1_000)).unwrap();
    h.process(click("a", 2_000)).unwrap();
    let state = h.barrier(1).unwrap().expect("the window operator has state");
    h.checkpoint_complete(1).unwrap();
    h.process(click("a", 3_000)).unwrap(); // after the barrier: not in the snapshot
    let mut restored = OneInputHarness::new(counting(five_seconds(), 0));
    restored.restore(&state).unwrap();
    restored.open().unwrap();
    restored.process(click("b", 4_000)).unwrap();
    restored.watermark(4_999).unwrap();
    assert_eq!(sorted(restored.take_records()), vec![counted("a", 0, 2), counted("b", 0, 1)]);
}
