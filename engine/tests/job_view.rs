//! The job view the web UI and REST API show ([`sluice::cluster::stats`]),
//! read from a running job whose values only the events they describe can
//! produce: a slow sink (a busy keyed task, a back-pressured source), an
//! injected failure and its restart, checkpoints with every subtask's part,
//! and event-time watermarks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use common::{wait_for, SlowSink, Words};
use sluice::cluster::stats::{CheckpointRecordStatus, JobView};
use sluice::cluster::ExecutionState;
use sluice::faults::Faults;
use sluice::{FailureCause, StreamExecutionEnvironment, WatermarkStrategy};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn the_view_shows_rates_back_pressure_checkpoints_watermarks_and_exceptions() {
    let dir = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    env.enable_checkpointing(Duration::from_millis(100)).unwrap();
    env.set_config("state.checkpoints.dir", dir.path().to_str().unwrap()).unwrap();
    env.set_config("restart-strategy.type", "fixed-delay").unwrap();
    env.set_config("restart-strategy.fixed-delay.delay", "10ms").unwrap();
    env.set_faults(Faults::parse("fail:Keyed Aggregation:1@checkpoint=2").unwrap());
    let words = Words::new(u64::MAX / 4, 1000, 200, Duration::from_millis(1));
    env.add_source(words)
        .name("Words")
        .map(|w: String| (w, 1u64))
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(Duration::ZERO)
                .with_timestamp_assigner(|_: &(String, u64)| 1_000),
        )
        .key_by(|t: &(String, u64)| t.0.clone())
        .sum(|t: &mut (String, u64)| &mut t.1)
        .add_sink(SlowSink { delay: Duration::from_micros(200), received: Default::default() });
    let client = env.execute_async("job view").unwrap();

    // The failure: in the history with its task, subtask and TaskManager.
    let details = wait_for("the injected failure and its restart", WAIT, || {
        let d = client.details().unwrap();
        (d.restarts >= 1 && !d.view.exceptions.is_empty()).then_some(d)
    });
    let e = &details.view.exceptions[0];
    assert!(matches!(e.cause, FailureCause::TaskFailed { .. }), "{e:?}");
    assert!(e.task.as_deref().unwrap().contains("Keyed Aggregation"), "{e:?}");
    assert_eq!((e.subtask, e.attempt), (Some(1), 0));
    assert!(e.taskmanager.as_deref().is_some_and(|tm| !tm.is_empty()), "{e:?}");

    // The shape.
    let v = &details.view;
    assert_eq!(v.vertices.len(), 2, "{v:?}");
    assert!(v.vertices[0].name.starts_with("Words -> Map"), "{}", v.vertices[0].name);
    assert!(v.vertices[1].name.contains("Keyed Aggregation"), "{}", v.vertices[1].name);
    assert_eq!(v.vertices.iter().map(|x| x.parallelism).collect::<Vec<_>>(), [2, 2]);
    assert_eq!(v.edges.len(), 1);
    assert_eq!((v.edges[0].source, v.edges[0].target, v.edges[0].ship_strategy.as_str()), (0, 1, "HASH"));

    // After the restart: checkpoints with every subtask's part, a restore,
    // rates that show where the time goes, and the watermark.
    let view = wait_for("three checkpoints after the restore and the rates", WAIT, || {
        let v: JobView = client.details().unwrap().view;
        let restored = v.checkpoints.latest_restored.as_ref()?.id;
        v.checkpoints.latest_completed.as_ref().filter(|c| c.id >= restored + 3)?;
        let source = v.vertices[0].subtasks.iter().filter_map(|s| s.rates).collect::<Vec<_>>();
        let keyed = v.vertices[1].subtasks.iter().filter_map(|s| s.rates).collect::<Vec<_>>();
        (source.len() == 2
            && keyed.len() == 2
            && source.iter().all(|r| r.back_pressured_ms_per_second >= 500)
            && keyed.iter().all(|r| r.busy_ms_per_second >= 500 && r.input_watermark.is_some()))
        .then_some(v)
    });
    let c = view.checkpoints.latest_completed.as_ref().unwrap();
    assert_eq!(c.status, CheckpointRecordStatus::Completed);
    assert_eq!(c.acks.len(), 4, "every subtask acknowledged: {c:?}");
    assert!(c.state_size > 0 && c.external_path.as_deref().is_some_and(|p| p.contains("chk-")), "{c:?}");
    assert!(view.checkpoints.completed >= 3 && view.checkpoints.restored == 1, "{:?}", view.checkpoints);
    assert!(view.checkpoints.history.len() <= sluice::cluster::stats::CHECKPOINT_HISTORY);
    assert_eq!(view.checkpoints.settings.as_ref().unwrap().interval_ms, 100);
    for s in view.vertices.iter().flat_map(|v| &v.subtasks) {
        assert_eq!((s.attempt, s.state), (1, ExecutionState::Running), "{s:?}");
    }
    let keyed = view.vertices[1].subtasks[0].rates.unwrap();
    assert_eq!(keyed.input_watermark, Some(999), "the watermark trails the largest timestamp by 1 ms");
    assert!(keyed.records_in_per_second > 0.0 && keyed.records_in > 0, "{keyed:?}");
    let source = view.vertices[0].subtasks[0].rates.unwrap();
    assert!(source.records_out_per_second > 0.0, "{source:?}");
    assert_eq!(source.records_in, 0, "a source receives nothing");

    client.cancel().unwrap();
    assert!(client.wait().is_err(), "canceled");
}
