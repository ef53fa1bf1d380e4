//! Kafka WordCount against a real broker (testcontainers): a clean run, a
//! crash loop of SIGKILLs, a crash between "checkpoint complete" and the
//! sink's commit (also across a transaction-version upgrade of a Kafka 4
//! cluster), and restores at another parallelism. The committed output must
//! hold, for every word, the values 1, 2, ..., n in order with no repeat and
//! no gap.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sluice_integration_tests::kafka::KafkaContainer;
use sluice_integration_tests::process::wait_within;
use sluice_integration_tests::wordcount::{check_output, create_topics, expected, feed};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WORDCOUNT: &str = env!("CARGO_BIN_EXE_kafka_wordcount");
fn start(
    bootstrap: &str,
    input: &str,
    output: &str,
    ckpt: &std::path::Path,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Child {
    start_at(bootstrap, input, output, ckpt, "2", extra, envs)
}

/// [`start`] at parallelism `parallelism`.
fn start_at(
    bootstrap: &str,
    input: &str,
    output: &str,
    ckpt: &std::path::Path,
    parallelism: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Child {
    let mut cmd = Command::new(WORDCOUNT);
    cmd.args(["--bootstrap-servers", bootstrap, "--input-topic", input, "--output-topic", output])
        .args(["--checkpoint-dir", ckpt.to_str().unwrap(), "--checkpoint-interval", "200ms", "-p", parallelism])
        .args(["-D", "restart-strategy.type=fixed-delay", "-D", "restart-strategy.fixed-delay.attempts=5"])
        .args(["-D", "restart-strategy.fixed-delay.delay=100ms"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.envs(envs.iter().copied());
    cmd.spawn().unwrap()
}

/// Starts the job once more (logging at info), waits until the committed
/// output of `loop-out` is complete and checked, stops it and returns its log.
fn run_to_completion(bs: &str, ckpt: &std::path::Path, lines: u64) -> String {
    run_to_completion_at(bs, ckpt, lines, "2")
}

/// [`run_to_completion`] at parallelism `parallelism`.
fn run_to_completion_at(bs: &str, ckpt: &std::path::Path, lines: u64, parallelism: &str) -> String {
    let mut last = start_at(bs, "loop-in", "loop-out", ckpt, parallelism, &[], &[("SLUICE_LOG", "info")]);
    let log = last.stderr.take().unwrap();
    let log = std::thread::spawn(move || std::io::read_to_string(log).unwrap_or_default());
    check_output(bs, "loop-out", 3, &expected(lines), Duration::from_secs(120));
    last.kill().unwrap();
    last.wait().unwrap();
    log.join().unwrap()
}

#[test]
fn kafka_wordcount_is_exactly_once_through_crashes() {
    let kafka = KafkaContainer::start().unwrap();
    let bs = kafka.bootstrap().to_string();

    // 1. Clean run over a pre-filled topic (bounded at the end offsets).
    create_topics(&bs, &["clean-in", "clean-out"], 3);
    feed(&bs, "clean-in", 0..3000, None);
    let dir = tempfile::tempdir().unwrap();
    let bounded = start(&bs, "clean-in", "clean-out", &dir.path().join("c"), &["--bounded"], &[]);
    let out = wait_within(bounded, Duration::from_secs(180), "the bounded WordCount");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check_output(&bs, "clean-out", 3, &expected(3000), Duration::from_secs(60));

    // 2. Crash loop: SIGKILL at pseudo-random moments while input arrives.
    create_topics(&bs, &["loop-in", "loop-out"], 3);
    let lines = 12_000;
    let feeder = {
        let bs = bs.clone();
        std::thread::spawn(move || feed(&bs, "loop-in", 0..lines, Some((200, Duration::from_millis(100)))))
    };
    let ckpt = dir.path().join("loop");
    let mut rng: u64 = 0x5eed;
    for _ in 0..10 {
        let mut child = start(&bs, "loop-in", "loop-out", &ckpt, &[], &[]);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(800 + rng % 1500));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    feeder.join().unwrap();
    let log = run_to_completion(&bs, &ckpt, lines);
    assert!(log.contains("Restoring job 'Kafka WordCount' from checkpoint"), "{log}");
}

/// A crash between "checkpoint complete" and the sink's commit: the next
/// start must commit the transaction the checkpoint recorded as pending.
#[test]
fn kafka_wordcount_commits_pending_transactions_after_a_crash_before_commit() {
    let kafka = KafkaContainer::start().unwrap();
    let bs = kafka.bootstrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("loop");
    let lines = crash_before_commit(&bs, &ckpt);
    let log = run_to_completion(&bs, &ckpt, lines);
    assert!(log.contains("from the restored checkpoint"), "the pending transaction was committed on restore: {log}");
}

/// The same crash window across a transaction-version upgrade (KIP-890): a
/// Kafka 4 cluster formatted at `transaction.version=1` holds the pending
/// transaction when the job dies; the cluster is upgraded to version 2 with
/// `kafka-features upgrade`; the restarted job commits the pending
/// transaction and goes on under version 2. Kafka 3.x has no transaction
/// versions; under the 3.9 image of the test matrix this test says so and
/// passes.
#[test]
fn kafka_wordcount_commits_a_pending_transaction_across_a_transaction_version_upgrade() {
    if !sluice_integration_tests::images::kafka_has_transaction_versions() {
        eprintln!(
            "Kafka {:?} has no transaction.version feature; nothing to test",
            sluice_integration_tests::images::kafka_image().1
        );
        return;
    }
    let kafka = KafkaContainer::start_with(&[("KAFKA_FORMAT_ARGS", "--feature transaction.version=1")]).unwrap();
    assert_eq!(kafka.feature_level("transaction.version").unwrap(), Some(1));
    let bs = kafka.bootstrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("loop");
    let lines = crash_before_commit(&bs, &ckpt);
    kafka.upgrade_feature("transaction.version", 2).unwrap();
    assert_eq!(kafka.feature_level("transaction.version").unwrap(), Some(2));
    let log = run_to_completion(&bs, &ckpt, lines);
    assert!(log.contains("from the restored checkpoint"), "the pending transaction was committed on restore: {log}");
}

/// Runs WordCount from `loop-in` to `loop-out` (created here) into the crash
/// window: killed once, then aborted by a fault after its third checkpoint
/// completes and before the sink commits, so `ckpt` records a pending
/// transaction. Returns how many input lines were fed.
fn crash_before_commit(bs: &str, ckpt: &std::path::Path) -> u64 {
    create_topics(bs, &["loop-in", "loop-out"], 3);
    let lines = 4000;
    feed(bs, "loop-in", 0..lines, None);
    let mut first = start(bs, "loop-in", "loop-out", ckpt, &[], &[]);
    std::thread::sleep(Duration::from_millis(1500));
    first.kill().unwrap();
    first.wait().unwrap();
    // The crash window: abort after a checkpoint completes, before the
    // sink commits. Input keeps arriving while the job runs, so that the
    // third checkpoint it completes (past consumer start-up) holds records.
    let feeder = {
        let bs = bs.to_string();
        std::thread::spawn(move || feed(&bs, "loop-in", lines..lines + 3000, Some((100, Duration::from_millis(50)))))
    };
    let aborted = wait_within(
        start(bs, "loop-in", "loop-out", ckpt, &[], &[("SLUICE_FAULTS", "abort@after-complete=+3")]),
        Duration::from_secs(180),
        "the WordCount aborted after its third checkpoint",
    );
    feeder.join().unwrap();
    let stderr = String::from_utf8_lossy(&aborted.stderr);
    assert!(!aborted.status.success() && stderr.contains("aborting the process after checkpoint"), "{stderr}");
    lines + 3000
}

/// Restores at another parallelism: killed at -p 2 and at -p 3 while input
/// arrives, finished at -p 1, all on one checkpoint directory. The source's
/// offsets (union state) and the sink's pending transactions must follow
/// the partitions to their new subtasks: nothing read twice, nothing skipped.
#[test]
fn kafka_wordcount_restores_at_another_parallelism() {
    let kafka = KafkaContainer::start().unwrap();
    let bs = kafka.bootstrap().to_string();
    create_topics(&bs, &["loop-in", "loop-out"], 3);
    let lines = 12_000;
    let feeder = {
        let bs = bs.clone();
        std::thread::spawn(move || feed(&bs, "loop-in", 0..lines, Some((200, Duration::from_millis(100)))))
    };
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("rescale");
    for parallelism in ["2", "3"] {
        let mut child = start_at(&bs, "loop-in", "loop-out", &ckpt, parallelism, &[], &[]);
        std::thread::sleep(Duration::from_millis(2000));
        child.kill().unwrap(); // SIGKILL, mid-input
        child.wait().unwrap();
    }
    feeder.join().unwrap();
    let log = run_to_completion_at(&bs, &ckpt, lines, "1");
    assert!(log.contains("Restoring job 'Kafka WordCount' from checkpoint"), "{log}");
}
