//! Checkpoints, failover, savepoints and rescaling through the mini cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use common::{final_counts, wait_for, CollectSink, Gate, Words};
use sluice::faults::Faults;
use sluice::{Error, JobStatus, StreamExecutionEnvironment};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// source → keyed running count → collecting sink.
fn word_count_job(env: &StreamExecutionEnvironment, words: Words, sink: &CollectSink<(String, u64)>) {
    env.add_source(words)
        .set_parallelism(1)
        .map(|w: String| (w, 1u64))
        .key_by(|t: &(String, u64)| t.0.clone())
        .sum(|t: &mut (String, u64)| &mut t.1)
        .add_sink(sink.clone());
}

fn checkpointed_env(dir: &std::path::Path, parallelism: u32) -> StreamExecutionEnvironment {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(parallelism);
    env.enable_checkpointing(Duration::from_millis(50)).unwrap();
    env.set_config("state.checkpoints.dir", dir.to_str().unwrap()).unwrap();
    env.set_config("restart-strategy.type", "fixed-delay").unwrap();
    env.set_config("restart-strategy.fixed-delay.attempts", "5").unwrap();
    env.set_config("restart-strategy.fixed-delay.delay", "10ms").unwrap();
    env
}

#[test]
fn failures_restore_exactly_once_state() {
    let expected = Words::new(6000, 23, 20, Duration::from_millis(2)).expected_counts();
    for p in [1u32, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let env = checkpointed_env(dir.path(), p);
        // The keyed task fails once, mid-stream, when the barrier of checkpoint
        // 3 reaches it: with one checkpoint at a time, 1 and 2 are complete by
        // then whatever the machine's load (a record count would race them).
        env.set_faults(Faults::parse("fail:Keyed Aggregation:0@checkpoint=3").unwrap());
        let sink = CollectSink::default();
        let words = Words::new(6000, 23, 20, Duration::from_millis(2));
        let log = words.log.clone();
        word_count_job(&env, words, &sink);
        let client = env.execute_async("failover").unwrap();
        let started = Instant::now();
        let details = loop {
            let d = client.details().unwrap();
            if d.status.is_terminal() || started.elapsed() > Duration::from_secs(60) {
                break d;
            }
            if d.restarts > 0 && d.status == JobStatus::Running {
                break d;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(details.restarts, 1, "p={p}: one restart");
        assert!(details.completed_checkpoints >= 2, "p={p}: {details:?}");
        client.wait().unwrap();
        // Checkpoint 3 never completed: the job restored checkpoint 2, with
        // the source's position in it (a restart from scratch would also
        // count every word exactly once).
        let restored = log.restored();
        assert_eq!(restored.len(), 1, "p={p}: {restored:?}");
        assert_eq!(Some(restored[0]), log.snapshot_at(2), "p={p}: restored checkpoint 2");
        assert!(restored[0] > 0, "p={p}: checkpoint 2 was taken after the first words");
        let out = sink.take();
        assert!(out.len() > 6000, "p={p}: records after the last checkpoint were replayed");
        assert_eq!(final_counts(&out), expected, "p={p}: state counted every word exactly once");
    }
}

#[test]
fn savepoint_restores_at_other_parallelism() {
    let words = Words::new(8000, 31, 40, Duration::from_millis(2));
    let expected = words.expected_counts();
    // The source stops after 3 000 words until the job is canceled: the
    // savepoint holds exactly their counts.
    let hold = 3_000;
    let saved = Words::new(hold, 31, 40, Duration::ZERO).expected_counts();
    let dir = tempfile::tempdir().unwrap();
    let savepoints = tempfile::tempdir().unwrap();

    // First run at parallelism 2: a savepoint at the hold, then cancel.
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let first = CollectSink::default();
    word_count_job(&env, words.clone().hold_at(hold, &Gate::default()), &first);
    let client = env.execute_async("savepoint").unwrap();
    wait_for("the words before the hold", Duration::from_secs(60), || {
        (first.0.lock().unwrap().len() as u64 >= hold).then_some(())
    });
    let path = client.trigger_savepoint(savepoints.path()).unwrap();
    client.cancel().unwrap();
    assert!(matches!(client.wait(), Err(Error::JobCanceled(_))));
    assert!(path.join("_metadata").is_file());
    assert_eq!(final_counts(&first.take()), saved, "the first run counted the words before the hold");

    for p in [1u32, 2, 3] {
        let env = StreamExecutionEnvironment::new();
        env.set_parallelism(p);
        env.set_config("execution.savepoint.path", path.to_str().unwrap()).unwrap();
        env.set_config("state.checkpoints.dir", dir.path().to_str().unwrap()).unwrap();
        let sink = CollectSink::default();
        let words = Words::new(8000, 31, 40, Duration::from_millis(2));
        let log = words.log.clone();
        word_count_job(&env, words, &sink);
        env.execute("restored").unwrap();
        assert_eq!(log.restored(), vec![hold], "p={p}: the source continued from the savepoint");
        // Every word counts on from its count in the savepoint: n+1, n+2, ...
        let mut counted: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (w, n) in sink.take() {
            counted.entry(w).or_default().push(n);
        }
        for (w, total) in &expected {
            let from = saved.get(w).copied().unwrap_or(0);
            let got = counted.remove(w).unwrap_or_default();
            assert_eq!(got, (from + 1..=*total).collect::<Vec<_>>(), "p={p}: counts of {w} after the restore");
        }
        assert!(counted.is_empty(), "p={p}: unknown words {counted:?}");
    }
}

#[test]
fn incompatible_savepoint_is_a_clear_error() {
    let savepoints = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1);
    let sink = CollectSink::default();
    word_count_job(&env, Words::new(1_000_000, 5, 10, Duration::from_millis(1)), &sink);
    let client = env.execute_async("a").unwrap();
    wait_for("some counts", Duration::from_secs(60), || (!sink.0.lock().unwrap().is_empty()).then_some(()));
    let path = client.trigger_savepoint(savepoints.path()).unwrap();
    client.cancel().unwrap();
    let _ = client.wait();

    // A job with another shape: its keyed operator sits elsewhere.
    let other = || {
        let env = StreamExecutionEnvironment::new();
        env.set_parallelism(1);
        env.set_config("execution.savepoint.path", path.to_str().unwrap()).unwrap();
        env.add_source(Words::new(10, 5, 10, Duration::ZERO))
            .filter(|_: &String| true)
            .map(|w: String| (w, 1u64))
            .key_by(|t: &(String, u64)| t.0.clone())
            .sum(|t: &mut (String, u64)| &mut t.1)
            .add_sink(CollectSink::default());
        env
    };
    let e = other().execute("b").unwrap_err().to_string();
    assert!(e.contains("does not have") && e.contains("--allow-non-restored-state"), "{e}");
    let env = other();
    env.set_config("execution.savepoint.ignore-unclaimed-state", "true").unwrap();
    env.execute("b").unwrap();

    // The same job with its source (whose positions are per subtask, not
    // union state) at another parallelism: refused, not silently mis-read.
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1);
    env.set_config("execution.savepoint.path", path.to_str().unwrap()).unwrap();
    env.add_source(Words::new(10, 5, 10, Duration::ZERO))
        .set_parallelism(2)
        .map(|w: String| (w, 1u64))
        .key_by(|t: &(String, u64)| t.0.clone())
        .sum(|t: &mut (String, u64)| &mut t.1)
        .add_sink(CollectSink::default());
    let e = env.execute("d").unwrap_err().to_string();
    assert!(e.contains("cannot be split or merged") && e.contains("parallelism 1"), "{e}");

    let missing = savepoints.path().join("nope");
    let env = StreamExecutionEnvironment::new();
    env.set_config("execution.savepoint.path", missing.to_str().unwrap()).unwrap();
    env.add_source(Words::new(10, 5, 10, Duration::ZERO)).add_sink(CollectSink::default());
    let e = env.execute("c").unwrap_err().to_string();
    assert!(e.contains("no completed checkpoint or savepoint") && e.contains("nope"), "{e}");
}

#[test]
fn aligned_barriers_give_exactly_once_state_with_a_slow_input() {
    let (counts, expected, overtaken) = two_inputs_with_a_failure("EXACTLY_ONCE");
    assert!(!overtaken, "no record after a barrier was counted before the checkpoint");
    assert_eq!(counts, expected);
}

#[test]
fn unaligned_at_least_once_counts_everything_at_least_once() {
    let (counts, expected, overtaken) = two_inputs_with_a_failure("AT_LEAST_ONCE");
    assert!(overtaken, "fast records after the barrier were counted while the slow barrier was held");
    assert_eq!(counts.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (k, v) in &expected {
        assert!(counts[k] >= *v, "{k}: {} < {v}", counts[k]);
    }
    let extra: u64 = counts.values().sum::<u64>() - expected.values().sum::<u64>();
    assert!(extra > 0, "the records counted in checkpoint 2 and replayed after the restore were counted twice");
    eprintln!("at-least-once counted {extra} records twice");
}

type Counts = BTreeMap<String, u64>;

/// Two inputs into one keyed count; the keyed task fails when checkpoint
/// 3's barrier reaches it, so the job restores checkpoint 2. The slow input
/// runs through a slow map in its own task, and its source holds checkpoint
/// 2's barrier back (in its snapshot) for up to 500 ms, while the fast
/// input's barrier is in. Exactly-once alignment holds the fast input until
/// both barriers are in; without it, fast records after the barrier are
/// counted in checkpoint 2's state and again after the restore (which
/// rewinds the fast source to its barrier). Returns the final counts, the
/// expected ones, and whether a fast record after the barrier was counted
/// before the slow barrier arrived.
fn two_inputs_with_a_failure(mode: &str) -> (Counts, Counts, bool) {
    let fast = Words::new(20_000, 11, 20, Duration::from_millis(1));
    let slow = Words::new(5_000, 11, 10, Duration::from_millis(2));
    let mut expected = fast.expected_counts();
    for (k, v) in slow.expected_counts() {
        *expected.entry(k).or_insert(0) += v;
    }
    let sink = CollectSink::default();
    let overtaken = Gate::default();
    let hold = {
        let (fast_log, slow_emitted, sink, overtaken) =
            (fast.log.clone(), slow.emitted.clone(), sink.clone(), overtaken.clone());
        move |checkpoint: u64, attempt: u32, _: u64| {
            if checkpoint != 2 || attempt != 0 {
                return;
            }
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(500) {
                // More counted than the fast records before the barrier
                // plus every slow record: a fast record after the barrier.
                if let Some(fast_at_barrier) = fast_log.snapshot_at(2) {
                    let counted = sink.0.lock().unwrap().len() as u64;
                    if counted > fast_at_barrier + slow_emitted.load(Ordering::SeqCst) {
                        overtaken.open();
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    let slow = slow.on_snapshot(hold);
    let dir = tempfile::tempdir().unwrap();
    let env = checkpointed_env(dir.path(), 1);
    env.set_config("execution.checkpointing.mode", mode).unwrap();
    env.set_faults(Faults::parse("fail:Keyed Aggregation:0@checkpoint=3").unwrap());
    let fast_log = fast.log.clone();
    let a = env.add_source(fast).set_parallelism(1);
    let b = env
        .add_source(slow)
        .set_parallelism(1)
        .rebalance()
        .map(|w: String| {
            std::thread::sleep(Duration::from_micros(100));
            w
        })
        .name("Slow Map");
    a.union(&b)
        .map(|w: String| (w, 1u64))
        .key_by(|t: &(String, u64)| t.0.clone())
        .sum(|t: &mut (String, u64)| &mut t.1)
        .add_sink(sink.clone());
    let result = env.execute("aligned").unwrap();
    assert_eq!(result.restarts, 1);
    let restored = fast_log.restored();
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert_eq!(Some(restored[0]), fast_log.snapshot_at(2), "the job restored checkpoint 2");
    (final_counts(&sink.take()), expected, overtaken.is_open())
}

fn committed_lines(dir: &std::path::Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            lines.extend(std::fs::read_to_string(entry.path()).unwrap().lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}

#[test]
fn file_sink_output_is_exactly_once_through_failures() {
    let words = Words::new(6000, 17, 20, Duration::from_millis(2));
    let mut expected: Vec<String> = Vec::new();
    let mut running = std::collections::BTreeMap::new();
    for i in 0..words.total {
        let n = running.entry(words.word(i)).or_insert(0u64);
        *n += 1;
        expected.push(format!("{},{n}", words.word(i)));
    }
    expected.sort();
    for p in [1u32, 2] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let env = checkpointed_env(&dir.path().join("ckpt"), p);
        // Two failures: in the window after checkpoint 3 is complete but
        // before the sink commits (the restore must commit what checkpoint 3
        // recorded as pending), then mid-stream in the next attempt.
        let faults = "fail:Sink:0@complete=3;fail:Keyed Aggregation:0@record=2000,attempt=1";
        env.set_faults(Faults::parse(faults).unwrap());
        env.add_source(words.clone())
            .set_parallelism(1)
            .map(|w: String| (w, 1u64))
            .key_by(|t: &(String, u64)| t.0.clone())
            .sum(|t: &mut (String, u64)| &mut t.1)
            .map(|(w, n)| format!("{w},{n}"))
            .sink_to(sluice::FileSink::new(&out));
        let client = env.execute_async("exactly-once files").unwrap();
        let started = Instant::now();
        while !client.status().unwrap().is_terminal() && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
            if client.details().unwrap().restarts >= 2 {
                break;
            }
        }
        let restarts = client.details().unwrap().restarts;
        client.wait().unwrap();
        assert_eq!(restarts, 2, "p={p}: both injected failures happened");
        assert_eq!(committed_lines(&out), expected, "p={p}: every update committed exactly once");
        let leftovers: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "p={p}: no uncommitted part files remain: {leftovers:?}");
    }
}

#[test]
fn a_job_never_resumes_another_jobs_checkpoint_in_a_shared_directory() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let env = checkpointed_env(dir.path(), 2);
        let sink = CollectSink::default();
        let words = Words::new(1500, 17, 20, Duration::from_millis(2));
        let log = words.log.clone();
        word_count_job(&env, words, &sink);
        env.execute(name).unwrap();
        (log.restored(), final_counts(&sink.take()))
    };
    let expected = Words::new(1500, 17, 20, Duration::ZERO).expected_counts();
    let (restored, counts) = run("first job");
    assert!(restored.is_empty());
    assert_eq!(counts, expected);
    let completed = std::fs::read_dir(dir.path()).unwrap().flatten().count();
    assert_eq!(completed, 1, "the first job left its checkpoints in the directory");
    // Another job with the same operators in the same directory starts from
    // scratch: it must not take the first job's source positions and counts.
    let (restored, counts) = run("second job");
    assert!(restored.is_empty(), "the second job restored the first job's checkpoint at {restored:?}");
    assert_eq!(counts, expected, "the second job counted from the first job's state");
    // The first job run again resumes its own latest checkpoint.
    let (restored, _) = run("first job");
    assert_eq!(restored.len(), 1, "the first job resumes its own checkpoint");
}

/// A highly available JobManager names the checkpoint to resume and turns
/// the directory scan off: a job must then not resume even its own newest
/// checkpoint there (etcd may never have recorded it).
#[test]
fn without_resume_from_latest_a_job_ignores_its_own_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let run = |resume: &str| {
        let env = checkpointed_env(dir.path(), 2);
        env.set_config("execution.checkpointing.resume-from-latest", resume).unwrap();
        let sink = CollectSink::default();
        let words = Words::new(1500, 17, 20, Duration::from_millis(2));
        let log = words.log.clone();
        word_count_job(&env, words, &sink);
        env.execute("the job").unwrap();
        (log.restored(), final_counts(&sink.take()))
    };
    let expected = Words::new(1500, 17, 20, Duration::ZERO).expected_counts();
    let (restored, counts) = run("true");
    assert!(restored.is_empty());
    assert_eq!(counts, expected);
    let (restored, counts) = run("false");
    assert!(restored.is_empty(), "resumed the checkpoint at {restored:?} although told not to");
    assert_eq!(counts, expected, "counted from the checkpoint's state");
    let (restored, _) = run("true");
    assert_eq!(restored.len(), 1, "by default the job resumes its own checkpoint");
}

#[test]
fn savepoints_go_only_below_state_savepoints_dir_and_paths_hold_no_newline() {
    let allowed = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1);
    env.set_config("state.savepoints.dir", allowed.path().to_str().unwrap()).unwrap();
    let sink = CollectSink::default();
    word_count_job(&env, Words::new(1000, 7, 10, Duration::ZERO).hold_at(500, &Gate::default()), &sink);
    let client = env.execute_async("savepoint directories").unwrap();
    wait_for("the words before the hold", Duration::from_secs(60), || {
        (sink.0.lock().unwrap().len() >= 500).then_some(())
    });
    let e = client.trigger_savepoint(elsewhere.path()).unwrap_err().to_string();
    assert!(e.contains("state.savepoints.dir"), "{e}");
    let e = client.trigger_savepoint(allowed.path().join("..").join("x")).unwrap_err().to_string();
    assert!(e.contains("'..'"), "{e}");
    let e = client.trigger_savepoint(allowed.path().join("a\nexecution.savepoint.path=/x")).unwrap_err().to_string();
    assert!(e.contains("control characters"), "{e}");
    let path = client.trigger_savepoint(allowed.path().join("nightly")).unwrap();
    assert!(path.starts_with(allowed.path().join("nightly")) && path.join("_metadata").is_file(), "{path:?}");
    assert!(std::fs::read_dir(elsewhere.path()).unwrap().next().is_none(), "nothing was written elsewhere");
    client.cancel().unwrap();
    assert!(matches!(client.wait(), Err(Error::JobCanceled(_))));
}

#[test]
fn a_savepoint_whose_metadata_names_files_outside_it_is_refused() {
    use sluice_checkpoint::storage;
    for backend in ["hashmap", "rocksdb"] {
        let savepoints = tempfile::tempdir().unwrap();
        let job = |path: Option<&std::path::Path>| {
            let env = StreamExecutionEnvironment::new();
            env.set_parallelism(1);
            env.set_config("state.backend", backend).unwrap();
            if let Some(p) = path {
                env.set_config("execution.savepoint.path", p.to_str().unwrap()).unwrap();
            }
            let sink = CollectSink::default();
            word_count_job(&env, Words::new(1_000_000, 5, 10, Duration::from_millis(1)), &sink);
            (env, sink)
        };
        let (env, sink) = job(None);
        let client = env.execute_async("crafted").unwrap();
        wait_for("some counts", Duration::from_secs(60), || (!sink.0.lock().unwrap().is_empty()).then_some(()));
        let path = client.trigger_savepoint(savepoints.path()).unwrap();
        client.cancel().unwrap();
        let _ = client.wait();
        let (metadata, dir) = storage::read_metadata(&path).unwrap();
        for bad in ["/tmp/x", "../x"] {
            let mut crafted = metadata.clone();
            crafted.operators[0].subtasks[0].file = bad.to_string();
            storage::write_metadata(&dir, &crafted).unwrap();
            let e = job(Some(&path)).0.execute("crafted").unwrap_err().to_string();
            assert!(
                e.contains(&format!("'{bad}'")) && e.contains("_metadata") && e.contains("not a plain file name"),
                "{backend}: {e}"
            );
        }
        assert!(!savepoints.path().join("x").exists() && !path.join("x").exists());
    }
}
