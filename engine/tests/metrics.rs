//! The metrics the README names, read back from a job's `/metrics`
//! endpoint with values that only the event they count can produce: a
//! checkpoint held in progress, a slow barrier to align, a failure and
//! restart with a restore, late records, and a slow sink.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use common::{wait_for, CollectSink, Counter, Gate, Paced, SlowSink, Words};
use sluice::api::windows::TumblingEventTimeWindows;
use sluice::faults::Faults;
use sluice::{StreamExecutionEnvironment, WatermarkStrategy};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn scrape(addr: SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// The values of metric `name` of job `job` whose labels start with the
/// values in `with` (`label="value...`).
fn values(body: &str, name: &str, job: &str, with: &[(&str, &str)]) -> Vec<i64> {
    let job = format!("job_name=\"{job}\"");
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&job))
        .filter(|l| with.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}"))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as i64)
        .collect()
}

/// The largest value of `name` for `job` (None if absent).
fn max(addr: SocketAddr, name: &str, job: &str, with: &[(&str, &str)]) -> Option<i64> {
    values(&scrape(addr), name, job, with).into_iter().max()
}

fn wait_metric(addr: SocketAddr, name: &str, job: &str, with: &[(&str, &str)], ok: impl Fn(i64) -> bool) -> i64 {
    wait_for(&format!("{name} of {job} {with:?}"), WAIT, || max(addr, name, job, with).filter(|v| ok(*v)))
}

const JM: &str = "sluice_jobmanager_job_";
const TASK: &str = "sluice_taskmanager_job_task_";

/// Two sources into one keyed count under exactly-once checkpoints. The
/// second source holds checkpoint 3 in its snapshot for a while (the
/// checkpoint is in progress, the task after the union aligns on its
/// barrier); the keyed task fails when checkpoint 4's barrier reaches it,
/// and restores 100 000 keys.
#[test]
fn checkpoint_restart_and_restore_metrics() {
    let job = "metrics-checkpoints";
    let dir = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1);
    env.set_config("metrics.reporter.prom.port", "0").unwrap();
    env.enable_checkpointing(Duration::from_millis(50)).unwrap();
    // Time to read the last checkpoint's figures before the next one.
    env.set_config("execution.checkpointing.min-pause", "1s").unwrap();
    env.set_config("state.checkpoints.dir", dir.path().to_str().unwrap()).unwrap();
    env.set_config("restart-strategy.type", "fixed-delay").unwrap();
    env.set_config("restart-strategy.fixed-delay.delay", "10ms").unwrap();
    env.set_faults(Faults::parse("fail:Keyed Aggregation:0@checkpoint=4").unwrap());
    let (holding, release) = (Gate::default(), Gate::default());
    let hold = {
        let (holding, release) = (holding.clone(), release.clone());
        move |checkpoint: u64, attempt: u32, _: u64| {
            if checkpoint == 3 && attempt == 0 {
                holding.open();
                let started = Instant::now();
                while !release.is_open() && started.elapsed() < WAIT {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    };
    let many_keys = Words::new(100_000_000, 100_000, 200, Duration::from_millis(1));
    let held = Words::new(100_000_000, 11, 2, Duration::from_millis(2)).on_snapshot(hold);
    env.add_source(many_keys)
        .name("Many Keys")
        .union(&env.add_source(held).name("Holding"))
        .map(|w: String| (w, 1u64))
        .key_by(|t: &(String, u64)| t.0.clone())
        .sum(|t: &mut (String, u64)| &mut t.1)
        .add_sink(CollectSink::default());
    let client = env.execute_async(job).unwrap();
    let addr = client.metrics_address().unwrap();

    wait_for("checkpoint 3 held in the source", WAIT, || holding.is_open().then_some(()));
    let in_progress = wait_metric(addr, &format!("{JM}numberOfInProgressCheckpoints"), job, &[], |v| v == 1);
    assert_eq!(in_progress, 1);
    let completed = max(addr, &format!("{JM}numberOfCompletedCheckpoints"), job, &[]).unwrap();
    assert_eq!(completed, 2, "checkpoints 1 and 2 completed, 3 is held");
    // Hold it long enough to show in the durations below.
    let held_since = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    release.open();
    let held_ms = held_since.elapsed().as_millis() as i64;

    // One page, with checkpoint 3 the last one completed.
    let page = wait_for("checkpoint 3 to complete", WAIT, || {
        let page = scrape(addr);
        let completed = values(&page, &format!("{JM}numberOfCompletedCheckpoints"), job, &[]);
        (completed.first().copied().unwrap_or(0) >= 3).then_some(page)
    });
    let one = |name: &str, with: &[(&str, &str)]| values(&page, name, job, with).into_iter().max().unwrap();
    assert_eq!(one(&format!("{JM}numberOfCompletedCheckpoints"), &[]), 3, "read before checkpoint 4 completed");
    let duration = one(&format!("{JM}lastCheckpointDuration"), &[]);
    assert!(duration >= held_ms, "checkpoint 3 took as long as it was held ({held_ms} ms): {duration}");
    let size = one(&format!("{JM}lastCheckpointSize"), &[]);
    // Only the subtasks' own state files count: the change files and RocksDB
    // files a checkpoint uploads to `shared/` are not in this figure.
    assert!(size > 0, "the checkpoint holds state: {size} bytes");
    // The map after the union (two inputs) waited for the held barrier with
    // the other input's in.
    let aligned = one(&format!("{TASK}checkpointAlignmentTime"), &[("task_name", "Map")]);
    assert!(aligned >= held_ms / 2, "alignment waited for the held barrier ({held_ms} ms): {aligned} ms");
    let sync_us = one(&format!("{TASK}checkpointSyncTimeUsTotal"), &[("task_name", "Keyed Aggregation")]);
    assert!(sync_us > 0, "snapshots take time on the task thread: {sync_us} µs");

    // Checkpoint 4 fails with the keyed task; the job restarts and restores.
    wait_metric(addr, &format!("{JM}numRestarts"), job, &[], |v| v == 1);
    let failed = wait_metric(addr, &format!("{JM}numberOfFailedCheckpoints"), job, &[], |v| v >= 1);
    assert_eq!(failed, 1, "checkpoint 4 was aborted by the failure");
    let restore_ms = wait_metric(
        addr,
        &format!("{TASK}operator_restoreDuration"),
        job,
        &[("operator_name", "Keyed Aggregation")],
        |_| true,
    );
    assert!(restore_ms >= 1, "restoring 100 000 keys takes time: {restore_ms} ms");
    let details = client.details().unwrap();
    assert_eq!(details.restarts, 1, "{details:?}");
    client.cancel().unwrap();
    let _ = client.wait();
}

#[test]
fn late_records_dropped_are_counted() {
    let job = "metrics-late";
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1);
    env.set_config("metrics.reporter.prom.port", "0").unwrap();
    env.set_config("pipeline.auto-watermark-interval", "5ms").unwrap();
    let r = |k: &str, t: i64| (k.to_string(), t);
    // 1 s windows, no allowed lateness. After 5 000 the watermark is 4 999:
    // every window before [5 s, 6 s) is gone, so the next three are dropped;
    // 5 500 is on time.
    let records =
        vec![r("a", 100), r("b", 1_200), r("a", 5_000), r("a", 300), r("b", 2_000), r("c", 3_999), r("a", 5_500)];
    let sink = CollectSink::default();
    env.add_source(Paced { records, next: 0, pause: Duration::from_millis(40) })
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|r: &(String, i64)| r.1),
        )
        .key_by(|r: &(String, i64)| r.0.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
        .reduce(|a, b| (a.0, a.1 + b.1))
        .add_sink(sink.clone());
    let client = env.execute_async(job).unwrap();
    let addr = client.metrics_address().unwrap();
    let metric = format!("{TASK}operator_numLateRecordsDropped");
    let dropped = wait_metric(addr, &metric, job, &[("operator_name", "Window(Reduce)")], |v| v >= 3);
    client.wait().unwrap();
    assert_eq!(dropped, 3, "three records came after their window was gone");
    let mut out = sink.take();
    out.sort();
    assert_eq!(out, vec![r("a", 100), r("a", 10_500), r("b", 1_200)], "the dropped records are in no window");
    let after = values(&sluice::metrics::global().render(), &metric, job, &[]);
    assert_eq!(after, vec![3], "after the job, in the process' registry");
}

#[test]
fn back_pressure_time_is_counted() {
    let job = "metrics-back-pressure";
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1);
    env.set_config("metrics.reporter.prom.port", "0").unwrap();
    env.set_config("taskmanager.network.batch-size", "16").unwrap();
    env.set_config("taskmanager.network.channel-capacity", "1").unwrap();
    let sink = SlowSink { delay: Duration::from_millis(2), received: Default::default() };
    env.add_source(Counter::new(None)).name("Fast Source").rebalance().add_sink(sink).name("Slow Sink");
    let started = Instant::now();
    let client = env.execute_async(job).unwrap();
    let addr = client.metrics_address().unwrap();
    let metric = format!("{TASK}backPressuredTimeMsTotal");
    let source = [("task_name", "Fast Source")];
    // The source spends nearly all its time blocked on the full channel.
    let blocked = wait_metric(addr, &metric, job, &source, |v| v >= 200);
    assert!(blocked <= started.elapsed().as_millis() as i64 + 100, "{blocked} ms blocked");
    let sink_side = max(addr, &metric, job, &[("task_name", "Slow Sink")]).unwrap_or(0);
    assert_eq!(sink_side, 0, "the sink has no output to block on");
    client.cancel().unwrap();
    let _ = client.wait();
}
