//! Kafka WordCount against a real broker (testcontainers): a clean run, a
//! crash loop of SIGKILLs, a crash between "checkpoint complete" and the
//! sink's commit, and restores at another parallelism. The committed output must hold, for every word, the values
//! 1, 2, ..., n in order with no repeat and no gap.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_integration_tests::kafka::KafkaContainer;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WORDCOUNT: &str = env!("CARGO_BIN_EXE_kafka_wordcount");
const VOCABULARY: &[&str] = &["alpha", "beta", "gamma", "delta", "épsilon", "数据", "zeta", "eta"];

fn create_topics(bootstrap: &str, topics: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    for r in rt.block_on(admin.create_topics(&new, &AdminOptions::new())).unwrap() {
        r.unwrap();
    }
}

/// Line `i` of the input, and the words it holds.
fn line(i: u64) -> String {
    let n = (i % 5 + 1) as usize;
    (0..n)
        .map(|k| VOCABULARY[((i * 7 + k as u64 * 3) % VOCABULARY.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

fn feed(bootstrap: &str, topic: &str, range: std::ops::Range<u64>, pause_every: Option<(u64, Duration)>) {
    let p: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("linger.ms", "5").create().unwrap();
    for i in range {
        let text = line(i);
        p.send(BaseRecord::<str, str>::to(topic).payload(&text)).map_err(|(e, _)| e).unwrap();
        if let Some((every, pause)) = pause_every {
            if i % every == 0 {
                p.flush(Duration::from_secs(10)).unwrap();
                std::thread::sleep(pause);
            }
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn expected(lines: u64) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for i in 0..lines {
        for w in line(i).split(' ') {
            *m.entry(w.to_string()).or_insert(0) += 1;
        }
    }
    m
}

/// Reads the committed output until it holds `total` records (or the
/// deadline), then checks the 1..n rule and the final counts.
fn check_output(bootstrap: &str, topic: &str, partitions: i32, want: &BTreeMap<String, u64>, deadline: Duration) {
    let total: u64 = want.values().sum();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "checker")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut n = 0u64;
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(m) => {
                let m = m.unwrap();
                let word = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
                let value: u64 = std::str::from_utf8(m.payload().unwrap()).unwrap().parse().unwrap();
                seen.entry(word).or_default().push(value);
                n += 1;
                quiet_since = None;
            }
            // Everything arrived: make sure nothing more follows.
            None if n >= total && quiet_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(2) => {
                break;
            }
            None => {}
        }
        assert!(started.elapsed() < deadline, "only {n} of {total} committed records after {deadline:?}");
    }
    for (word, values) in &seen {
        let rule: Vec<u64> = (1..=values.len() as u64).collect();
        assert_eq!(values, &rule, "'{word}': committed values must be 1..n with no repeat or gap");
    }
    let finals: BTreeMap<String, u64> = seen.iter().map(|(w, v)| (w.clone(), v.len() as u64)).collect();
    assert_eq!(&finals, want);
}

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
    let out =
        start(&bs, "clean-in", "clean-out", &dir.path().join("c"), &["--bounded"], &[]).wait_with_output().unwrap();
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
    create_topics(&bs, &["loop-in", "loop-out"], 3);
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("loop");
    let lines = 4000;
    feed(&bs, "loop-in", 0..lines, None);
    let mut first = start(&bs, "loop-in", "loop-out", &ckpt, &[], &[]);
    std::thread::sleep(Duration::from_millis(1500));
    first.kill().unwrap();
    first.wait().unwrap();
    // The crash window: abort after a checkpoint completes, before the
    //    sink commits; the next start must commit the pending transaction.
    //    Input keeps arriving while the job runs, so that the third
    //    checkpoint it completes (past consumer start-up) holds records.
    let feeder = {
        let bs = bs.clone();
        std::thread::spawn(move || feed(&bs, "loop-in", lines..lines + 3000, Some((100, Duration::from_millis(50)))))
    };
    let lines = lines + 3000;
    let aborted = start(&bs, "loop-in", "loop-out", &ckpt, &[], &[("SLUICE_FAULTS", "abort@after-complete=+3")])
        .wait_with_output()
        .unwrap();
    feeder.join().unwrap();
    let stderr = String::from_utf8_lossy(&aborted.stderr);
    assert!(!aborted.status.success() && stderr.contains("aborting the process after checkpoint"), "{stderr}");
    let log = run_to_completion(&bs, &ckpt, lines);
    assert!(log.contains("from the restored checkpoint"), "the pending transaction was committed on restore: {log}");
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
