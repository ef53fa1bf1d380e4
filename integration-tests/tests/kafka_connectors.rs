//! The Kafka source and sinks against the local broker
//! (`scripts/kafka-local.sh start`): bad-record policies, bad settings, an
//! unreachable broker, a missing topic, an in-process restart under the
//! exactly-once sink, the connectors' metrics scraped from `/metrics`, and
//! topic patterns: matching topics read exactly, topics created while the
//! job runs discovered, and discovered partitions restored from a checkpoint;
//! the at-least-once and no-guarantee sinks, starting offsets by timestamp
//! and by committed group offsets, and JSON records with skipped ones counted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice::config::Configuration;
use sluice::faults::Faults;
use sluice::{Result, Sink, StreamExecutionEnvironment};
use sluice_connectors::kafka::{BadRecordPolicy, KafkaSink, KafkaSource, KafkaTransactionalSink, StartingOffsets};
use sluice_integration_tests::kafka::{local_bootstrap, require_listening};
use sluice_test_support::{free_port, http, unique_name};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn broker() -> String {
    let bs = local_bootstrap();
    require_listening(&bs).unwrap();
    bs
}

fn create_topic(bs: &str, topic: &str) {
    create_topic_with(bs, topic, 1);
}

fn create_topic_with(bs: &str, topic: &str, partitions: i32) {
    sluice_integration_tests::kafka::create_topics(bs, &[topic], partitions).unwrap();
}

fn produce(bs: &str, topic: &str, values: &[&str]) {
    let p: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", bs).create().unwrap();
    for v in values {
        p.send(BaseRecord::<str, str>::to(topic).payload(*v)).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// A consumer of a one-partition topic from its start, reading with
/// `isolation` (`read_committed` or `read_uncommitted`), and the topic's
/// end offset now.
fn reader(bs: &str, topic: &str, isolation: &str) -> (BaseConsumer, i64) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bs)
        .set("group.id", unique_name("reader"))
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    let (_, high) = c.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    (c, high)
}

/// A job at parallelism 1 that checkpoints every 100 ms into `dir`,
/// restarts 50 ms after a failure, and fails as `faults` says.
fn restarting_env(dir: &std::path::Path, faults: &str) -> StreamExecutionEnvironment {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1);
    env.enable_checkpointing(Duration::from_millis(100)).unwrap();
    env.set_config("state.checkpoints.dir", dir.to_str().unwrap()).unwrap();
    env.set_config("restart-strategy.type", "fixed-delay").unwrap();
    env.set_config("restart-strategy.fixed-delay.delay", "50ms").unwrap();
    env.set_faults(Faults::parse(faults).unwrap());
    env
}

/// Every committed (key, value) of a one-partition topic.
fn read_all(bs: &str, topic: &str) -> Vec<(Option<String>, String)> {
    let (c, high) = reader(bs, topic, "read_committed");
    let mut out = Vec::new();
    let started = Instant::now();
    loop {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            out.push((
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
        let pos = c.position().unwrap();
        let at = pos.find_partition(topic, 0).map(|e| e.offset());
        if matches!(at, Some(Offset::Offset(o)) if o >= high) || started.elapsed() > Duration::from_secs(20) {
            return out;
        }
    }
}

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<u64>>>);

impl Sink<u64> for Collect {
    fn write(&mut self, v: u64) -> Result<()> {
        self.0.lock().unwrap().push(v);
        Ok(())
    }
}

fn parse_number(v: &[u8]) -> std::result::Result<u64, String> {
    std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).ok_or_else(|| "not a number".to_string())
}

fn numbers(bs: &str, topic: &str) -> KafkaSource<u64> {
    KafkaSource::new(bs, &[topic], |_, v| parse_number(v)).bounded_at_latest()
}

/// Writes the numbers of `range` to `topic` (spread over its partitions).
fn produce_numbers(bs: &str, topic: &str, range: std::ops::Range<u64>) {
    let values: Vec<String> = range.map(|i| i.to_string()).collect();
    produce(bs, topic, &values.iter().map(String::as_str).collect::<Vec<_>>());
}

/// Waits up to `limit` until `sink` holds at least `n` values.
fn wait_for(sink: &Collect, n: usize, limit: Duration) {
    let started = Instant::now();
    while sink.0.lock().unwrap().len() < n && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sorted(sink: &Collect) -> Vec<u64> {
    let mut values = sink.0.lock().unwrap().clone();
    values.sort_unstable();
    values
}

#[test]
fn bad_records_follow_the_policy() {
    let bs = broker();
    let topic = unique_name("numbers");
    create_topic(&bs, &topic);
    produce(&bs, &topic, &["1", "2", "x", "4"]);

    // Fail (the default): the job fails naming topic, partition and offset.
    let env = StreamExecutionEnvironment::new();
    env.add_source(numbers(&bs, &topic)).add_sink(Collect::default());
    let e = env.execute("fail").unwrap_err().to_string();
    assert!(e.contains(&format!("malformed record in {topic} partition 0 at offset 2")), "{e}");

    // Skip: the others arrive.
    let env = StreamExecutionEnvironment::new();
    let sink = Collect::default();
    env.add_source(numbers(&bs, &topic).bad_records(BadRecordPolicy::Skip)).add_sink(sink.clone());
    env.execute("skip").unwrap();
    assert_eq!(*sink.0.lock().unwrap(), [1, 2, 4]);

    // Dead letter: the bad record lands in the dead-letter topic, keyed by where it came from.
    let dlq = unique_name("dlq");
    create_topic(&bs, &dlq);
    let env = StreamExecutionEnvironment::new();
    let sink = Collect::default();
    env.add_source(numbers(&bs, &topic).bad_records(BadRecordPolicy::DeadLetter(dlq.clone()))).add_sink(sink.clone());
    env.execute("dead letter").unwrap();
    assert_eq!(*sink.0.lock().unwrap(), [1, 2, 4]);
    assert_eq!(read_all(&bs, &dlq), [(Some(format!("{topic}/0@2")), "x".to_string())]);
}

#[test]
fn bad_settings_and_unreachable_brokers_are_clear_errors() {
    let bs = broker();
    let e = {
        let env = StreamExecutionEnvironment::new();
        env.add_source(numbers(&bs, "no-such-topic-anywhere")).add_sink(Collect::default());
        env.execute("missing").unwrap_err().to_string()
    };
    assert!(e.contains("'no-such-topic-anywhere' does not exist"), "{e}");

    let port = free_port().unwrap();
    let nowhere = format!("127.0.0.1:{port}");
    let e = {
        let env = StreamExecutionEnvironment::new();
        env.add_source(numbers(&nowhere, "t")).add_sink(Collect::default());
        env.execute("unreachable").unwrap_err().to_string()
    };
    assert!(e.contains(&format!("cannot reach Kafka at {nowhere} after 3 attempts")), "{e}");

    let topic = unique_name("timeouts");
    create_topic(&bs, &topic);
    produce(&bs, &topic, &["1"]);
    let run = |timeout_ms: &str| {
        let env = StreamExecutionEnvironment::new();
        env.enable_checkpointing(Duration::from_millis(500)).unwrap();
        // A setting error does not heal by restarting.
        env.set_config("restart-strategy.type", "none").unwrap();
        env.add_source(numbers(&bs, &topic)).sink_to(
            KafkaTransactionalSink::new(&bs, &unique_name("out"), &unique_name("txn"), |v: &u64| {
                (None, v.to_string().into_bytes())
            })
            .with_property("transaction.timeout.ms", timeout_ms),
        );
        env.execute("timeouts").unwrap_err().to_string()
    };
    let e = run("7200000");
    assert!(
        e.contains("broker's transaction.max.timeout.ms is 3600000") && e.contains("Lower transaction.timeout.ms"),
        "{e}"
    );
    let e = run("10000");
    assert!(e.contains("less than the checkpoint interval") && e.contains("Raise transaction.timeout.ms"), "{e}");
}

#[test]
fn exactly_once_sink_survives_an_in_process_restart() {
    let bs = broker();
    let input = unique_name("eos-in");
    let output = unique_name("eos-out");
    create_topic(&bs, &input);
    create_topic(&bs, &output);
    let values: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
    produce(&bs, &input, &values.iter().map(String::as_str).collect::<Vec<_>>());

    let dir = tempfile::tempdir().unwrap();
    let env = restarting_env(dir.path(), "fail:Map:0@record=3000");
    env.add_source(numbers(&bs, &input))
        .map(|v: u64| {
            // Slow enough that checkpoints complete before the failure.
            std::thread::sleep(Duration::from_micros(100));
            v * 10
        })
        .sink_to(KafkaTransactionalSink::new(&bs, &output, &unique_name("eos"), |v: &u64| {
            (None, v.to_string().into_bytes())
        }));
    let job = unique_name("eos restart");
    let client = env.execute_async(&job).unwrap();
    let started = Instant::now();
    while client.details().unwrap().restarts == 0 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(client.details().unwrap().restarts, 1);
    client.wait().unwrap();
    let got: Vec<u64> = read_all(&bs, &output).into_iter().map(|(_, v)| v.parse().unwrap()).collect();
    let want: Vec<u64> = (0..5000).map(|i| i * 10).collect();
    assert_eq!(got, want, "every record committed exactly once, in order");
    // The failed attempt left its transaction open; the restore aborted it.
    let page = sluice::metrics::global().render();
    let job = format!("job_name=\"{job}\"");
    let aborted = series(&page, "sluice_taskmanager_job_task_operator_KafkaSink_numTransactionsAborted", &[&job]);
    assert_eq!(aborted, Some(1.0), "{page}");
}

/// The value of the series of `metric` whose labels include every one of
/// `labels` (`name="value"`), from a Prometheus text page.
fn series(page: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn kafka_metrics_are_scraped_from_a_running_job() {
    let bs = broker();
    let input = unique_name("metrics-in");
    let output = unique_name("metrics-out");
    create_topic(&bs, &input);
    create_topic(&bs, &output);
    let values: Vec<String> = (0..3000).map(|i| i.to_string()).collect();
    produce(&bs, &input, &values.iter().map(String::as_str).collect::<Vec<_>>());

    let dir = tempfile::tempdir().unwrap();
    let mut conf = Configuration::new();
    conf.set("metrics.reporter.prom.port", "0").unwrap();
    let env = StreamExecutionEnvironment::with_config(conf);
    env.set_parallelism(1);
    env.enable_checkpointing(Duration::from_millis(200)).unwrap();
    env.set_config("state.checkpoints.dir", dir.path().to_str().unwrap()).unwrap();
    // Unbounded: the job keeps running (and reporting) after the input.
    let source = KafkaSource::new(&bs, &[input.as_str()], |_, v| {
        std::str::from_utf8(v).ok().and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| "not a number".to_string())
    });
    env.add_source(source).map(|v: u64| v + 1).sink_to(KafkaTransactionalSink::new(
        &bs,
        &output,
        &unique_name("metrics"),
        |v: &u64| (Some(b"k".to_vec()), v.to_string().into_bytes()),
    ));
    let job_name = unique_name("kafka metrics job");
    let client = env.execute_async(&job_name).unwrap();
    let target = client.metrics_address().unwrap();

    // Everything committed, then the metrics caught up (published at
    // barriers, lag from statistics once a second).
    let started = Instant::now();
    let mut out = read_all(&bs, &output);
    while out.len() < values.len() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
        out = read_all(&bs, &output);
    }
    assert_eq!(out.len(), values.len(), "the job committed every record once");
    let job = format!("job_name=\"{job_name}\"");
    let topic = format!("topic=\"{input}\"");
    let m = |name: &str| format!("sluice_taskmanager_job_task_operator_{name}");
    let mut page = String::new();
    let settled = |page: &str| {
        series(page, &m("KafkaSink_numRecordsOut"), &[&job]) == Some(out.len() as f64)
            && series(page, &m("KafkaSourceReader_topic_partition_recordsLag"), &[&job, &topic]) == Some(0.0)
            && series(page, &m("KafkaSourceReader_topic_partition_currentOffset"), &[&job, &topic])
                == Some(values.len() as f64)
    };
    while !settled(&page) && started.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(200));
        page = http::get(target, "/metrics").unwrap().body;
    }
    client.cancel().unwrap();
    let _ = client.wait();

    let get = |name: &str, labels: &[&str]| {
        series(&page, &m(name), labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{page}"))
    };
    let bytes_in: usize = values.iter().map(String::len).sum();
    let bytes_out: usize = out.iter().map(|(k, v)| k.as_deref().map_or(0, str::len) + v.len()).sum();
    assert_eq!(get("KafkaSourceReader_numRecordsIn", &[&job]), values.len() as f64);
    assert_eq!(get("KafkaSourceReader_numBytesIn", &[&job]), bytes_in as f64);
    assert_eq!(get("KafkaSourceReader_topic_partition_currentOffset", &[&job, &topic, "partition=\"0\""]), 3000.0);
    assert_eq!(get("KafkaSourceReader_topic_partition_recordsLag", &[&job, &topic, "partition=\"0\""]), 0.0);
    assert_eq!(get("KafkaSink_numRecordsOut", &[&job]), out.len() as f64, "records out = records read back");
    assert_eq!(get("KafkaSink_numBytesOut", &[&job]), bytes_out as f64);
    let committed = get("KafkaSink_numTransactionsCommitted", &[&job]);
    assert!(committed > 0.0, "{page}");
    assert!(get("KafkaSink_numTransactionsAborted", &[&job]) >= 0.0);
    assert_eq!(get("KafkaSink_commitDurationSeconds_count", &[&job]), committed, "one duration per commit");
    assert!(get("KafkaSink_commitDurationSeconds_sum", &[&job]) > 0.0);
}

#[test]
fn topic_pattern_reads_every_matching_topic_exactly() {
    let bs = broker();
    let tag = unique_name("pattern");
    let (a, b, other) = (format!("{tag}-a"), format!("{tag}-b"), format!("{tag}-other"));
    create_topic_with(&bs, &a, 3);
    create_topic_with(&bs, &b, 2);
    create_topic(&bs, &other);
    produce_numbers(&bs, &a, 0..300);
    produce_numbers(&bs, &b, 1000..1200);
    // A prefix match of the pattern would take this one too.
    produce_numbers(&bs, &other, 9000..9001);

    // Bounded at two subtasks; `b` is listed and matched: read once.
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let got = Collect::default();
    let source = KafkaSource::new(&bs, &[b.as_str()], |_, v| parse_number(v))
        .topic_pattern(&format!("{tag}-[a-z]"))
        .unwrap()
        .bounded_at_latest();
    env.add_source(source).add_sink(got.clone());
    env.execute("pattern").unwrap();
    let want: Vec<u64> = (0..300).chain(1000..1200).collect();
    assert_eq!(sorted(&got), want, "every record of {a} and {b} once, none of {other}");

    // A pattern that matches nothing is not an error (bounded: nothing to read).
    let env = StreamExecutionEnvironment::new();
    let got = Collect::default();
    let source = KafkaSource::new(&bs, &[], |_, v| parse_number(v))
        .topic_pattern(&format!("{tag}-none-.*"))
        .unwrap()
        .bounded_at_latest();
    env.add_source(source).add_sink(got.clone());
    env.execute("pattern matching nothing").unwrap();
    assert!(got.0.lock().unwrap().is_empty());

    let e = KafkaSource::<String>::strings(&bs, &[]).topic_pattern("(unclosed").err().unwrap().to_string();
    assert!(e.contains("bad Kafka topic pattern '(unclosed'"), "{e}");
    let env = StreamExecutionEnvironment::new();
    env.add_source(KafkaSource::new(&bs, &[], |_, v| parse_number(v))).add_sink(Collect::default());
    let e = env.execute("no topics").unwrap_err().to_string();
    assert!(e.contains("has no topics: list topics or set a topic pattern"), "{e}");
}

#[test]
fn topic_pattern_discovers_topics_created_while_running() {
    let bs = broker();
    let tag = unique_name("discover");
    let topic = format!("{tag}-a");
    let dir = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    env.enable_checkpointing(Duration::from_millis(200)).unwrap();
    env.set_config("state.checkpoints.dir", dir.path().to_str().unwrap()).unwrap();
    env.set_config("restart-strategy.type", "none").unwrap();
    let got = Collect::default();
    // Latest: a partition found at start would skip what came before; a
    // discovered one is read from its earliest offset all the same.
    let source = KafkaSource::new(&bs, &[], |_, v| parse_number(v))
        .topic_pattern(&format!("{tag}-.*"))
        .unwrap()
        .starting_offsets(StartingOffsets::Latest)
        .partition_discovery_interval(Duration::from_secs(2));
    env.add_source(source).add_sink(got.clone());
    let client = env.execute_async("discovery").unwrap();
    // A completed checkpoint: every source subtask has opened, matching nothing.
    let started = Instant::now();
    while client.details().unwrap().completed_checkpoints == 0 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(client.details().unwrap().completed_checkpoints > 0, "{:?}", client.details());

    // Written before the next discovery (most likely: it is 2 s away).
    create_topic_with(&bs, &topic, 3);
    produce_numbers(&bs, &topic, 0..150);
    wait_for(&got, 150, Duration::from_secs(60));
    assert_eq!(sorted(&got), (0..150).collect::<Vec<_>>(), "the new topic was discovered and read whole");
    // And read on after that.
    produce_numbers(&bs, &topic, 150..300);
    wait_for(&got, 300, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(client.details().unwrap().restarts, 0);
    client.cancel().unwrap();
    let _ = client.wait();
    assert_eq!(sorted(&got), (0..300).collect::<Vec<_>>(), "each record once, by one subtask");
}

#[test]
fn discovered_partitions_are_restored_from_the_checkpoint() {
    let bs = broker();
    let tag = unique_name("restore");
    let (a, b) = (format!("{tag}-a"), format!("{tag}-b"));
    let output = unique_name("restore-out");
    create_topic(&bs, &a);
    create_topic(&bs, &output);
    produce_numbers(&bs, &a, 0..2000);

    let dir = tempfile::tempdir().unwrap();
    // `a` holds 2000 records: the failure comes while reading `b`.
    let env = restarting_env(dir.path(), "fail:Map:0@record=3000");
    let source = KafkaSource::new(&bs, &[], |_, v| parse_number(v))
        .topic_pattern(&format!("{tag}-[ab]"))
        .unwrap()
        .partition_discovery_interval(Duration::from_millis(300));
    env.add_source(source)
        .map(|v: u64| {
            // Slow enough that checkpoints complete between discovery and failure.
            std::thread::sleep(Duration::from_micros(100));
            v * 10
        })
        .sink_to(KafkaTransactionalSink::new(&bs, &output, &unique_name("restore"), |v: &u64| {
            (None, v.to_string().into_bytes())
        }));
    let client = env.execute_async("discovered restore").unwrap();
    let started = Instant::now();
    while client.details().unwrap().completed_checkpoints == 0 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    create_topic_with(&bs, &b, 2);
    produce_numbers(&bs, &b, 10_000..12_000);
    // Record 3000 is one of `b`'s: no restart without discovery.
    while client.details().unwrap().restarts == 0 && started.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(client.details().unwrap().restarts, 1, "the new topic was discovered and the job failed over");
    let want: Vec<u64> = (0..2000).chain(10_000..12_000).map(|v| v * 10).collect();
    let read = || -> Vec<u64> {
        let mut got: Vec<u64> = read_all(&bs, &output).into_iter().map(|(_, v)| v.parse().unwrap()).collect();
        got.sort_unstable();
        got
    };
    let mut got = read();
    while got.len() < want.len() && started.elapsed() < Duration::from_secs(150) {
        std::thread::sleep(Duration::from_millis(200));
        got = read();
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(client.details().unwrap().restarts, 1);
    client.cancel().unwrap();
    let _ = client.wait();
    assert_eq!(read(), want, "after the restore, every record of both topics committed exactly once");
}

/// Every (key, value) of a one-partition topic, without waiting for
/// transactions (the at-least-once and no-guarantee sinks use none).
fn read_uncommitted(bs: &str, topic: &str) -> Vec<String> {
    let (c, high) = reader(bs, topic, "read_uncommitted");
    let mut out = Vec::new();
    let started = Instant::now();
    while (out.len() as i64) < high {
        assert!(started.elapsed() < Duration::from_secs(30), "read {} of {high} records of {topic}", out.len());
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            out.push(String::from_utf8_lossy(m.unwrap().payload().unwrap_or_default()).into_owned());
        }
    }
    out
}

/// Emits 0..n, then stops (idle) until `release` opens and finishes. It
/// records (checkpoint, position) of its snapshots and the checkpoints it
/// is told are complete.
#[derive(Clone)]
struct HeldNumbers {
    n: u64,
    next: u64,
    release: Arc<std::sync::atomic::AtomicBool>,
    snapshots: Arc<Mutex<Vec<(u64, u64)>>>,
    completed: Arc<Mutex<Vec<u64>>>,
}

impl HeldNumbers {
    fn new(n: u64) -> Self {
        HeldNumbers { n, next: 0, release: Arc::default(), snapshots: Arc::default(), completed: Arc::default() }
    }
    /// Whether a checkpoint taken after all n numbers is complete.
    fn checkpointed_all(&self) -> bool {
        let completed = self.completed.lock().unwrap();
        self.snapshots.lock().unwrap().iter().any(|(c, pos)| *pos == self.n && completed.contains(c))
    }
}

impl sluice::Source<u64> for HeldNumbers {
    type State = u64;
    fn boundedness(&self) -> sluice::Boundedness {
        sluice::Boundedness::Bounded
    }
    fn is_parallel(&self) -> bool {
        false
    }
    fn open(&mut self, _: &sluice::RuntimeContext) -> Result<()> {
        Ok(())
    }
    fn poll_next(&mut self, out: &mut dyn sluice::Collector<u64>) -> Result<sluice::SourceStatus> {
        while self.next < self.n {
            out.collect(self.next)?;
            self.next += 1;
        }
        if self.release.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(sluice::SourceStatus::Finished);
        }
        Ok(sluice::SourceStatus::Idle(Duration::from_millis(5)))
    }
    fn snapshot_state(&mut self, id: sluice::CheckpointId) -> Result<u64> {
        self.snapshots.lock().unwrap().push((id.0, self.next));
        Ok(self.next)
    }
    fn notify_checkpoint_complete(&mut self, id: sluice::CheckpointId) -> Result<()> {
        self.completed.lock().unwrap().push(id.0);
        Ok(())
    }
    fn restore_state(&mut self, next: u64) -> Result<()> {
        self.next = next;
        Ok(())
    }
}

/// With a producer that would hold records for a minute, the at-least-once
/// sink has every record before a barrier in Kafka once that checkpoint is
/// complete; the no-guarantee sink has sent none of them by then. Both
/// flush at the end of input.
#[test]
fn at_least_once_sink_flushes_on_barriers_and_none_does_not() {
    let bs = broker();
    let n = 500;
    for at_least_once in [true, false] {
        let what = if at_least_once { "at-least-once" } else { "none" };
        let topic = unique_name(&format!("delivery-{what}"));
        create_topic(&bs, &topic);
        let serialize = |v: &u64| (None, v.to_string().into_bytes());
        let sink = if at_least_once {
            KafkaSink::at_least_once(&bs, &topic, serialize)
        } else {
            KafkaSink::none(&bs, &topic, serialize)
        }
        .with_property("linger.ms", "60000");
        let env = StreamExecutionEnvironment::new();
        env.set_parallelism(1);
        env.enable_checkpointing(Duration::from_millis(50)).unwrap();
        let source = HeldNumbers::new(n);
        env.add_source(source.clone()).add_sink(sink);
        let client = env.execute_async(&format!("delivery {what}")).unwrap();
        let started = Instant::now();
        while !source.checkpointed_all() {
            assert!(started.elapsed() < Duration::from_secs(60), "{what}: no checkpoint after the last number");
            std::thread::sleep(Duration::from_millis(5));
        }
        let at_checkpoint = read_uncommitted(&bs, &topic);
        let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        if at_least_once {
            assert_eq!(at_checkpoint, want, "{what}: everything before the barrier is in Kafka");
        } else {
            assert!(at_checkpoint.is_empty(), "{what}: {} records sent before the end", at_checkpoint.len());
        }
        source.release.store(true, std::sync::atomic::Ordering::SeqCst);
        client.wait().unwrap();
        assert_eq!(read_uncommitted(&bs, &topic), want, "{what}: flushed at the end of input");
    }
}

/// A failure after some checkpoints: the at-least-once sink has every
/// record, those after the restored checkpoint twice.
#[test]
fn at_least_once_sink_writes_every_record_through_a_failure() {
    let bs = broker();
    let input = unique_name("alo-in");
    let output = unique_name("alo-out");
    create_topic(&bs, &input);
    create_topic(&bs, &output);
    produce_numbers(&bs, &input, 0..5000);
    let dir = tempfile::tempdir().unwrap();
    // The whole chain is one task; it fails at checkpoint 3's barrier, with
    // records since checkpoint 2 already sent.
    let env = restarting_env(dir.path(), "fail:Map:0@checkpoint=3");
    env.add_source(numbers(&bs, &input))
        .map(|v: u64| {
            std::thread::sleep(Duration::from_micros(200));
            v
        })
        .add_sink(KafkaSink::at_least_once(&bs, &output, |v: &u64| (None, v.to_string().into_bytes())));
    let result = env.execute("at-least-once restart").unwrap();
    assert_eq!(result.restarts, 1);
    let got: Vec<u64> = read_uncommitted(&bs, &output).iter().map(|v| v.parse().unwrap()).collect();
    let mut distinct = got.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct, (0..5000).collect::<Vec<_>>(), "every record at least once");
    assert!(got.len() > 5000, "records after checkpoint 2 were written again after the restore");
}

/// The first run starts from a timestamp, from the group's committed
/// offsets (written here by a consumer, or by an earlier job after its
/// checkpoints), or from earliest when the group has none.
#[test]
fn starting_offsets_by_timestamp_and_committed_group_offsets() {
    let bs = broker();
    let topic = unique_name("starts");
    create_topic(&bs, &topic);
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - 60_000;
    let p: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &bs).create().unwrap();
    for i in 0..10i64 {
        let v = i.to_string();
        p.send(BaseRecord::<str, str>::to(&topic).payload(&v).timestamp(base + i * 1000)).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
    let run = |source: KafkaSource<u64>| {
        let env = StreamExecutionEnvironment::new();
        env.set_parallelism(1);
        let sink = Collect::default();
        env.add_source(source).add_sink(sink.clone());
        env.execute(&unique_name("starts")).unwrap();
        sorted(&sink)
    };
    let from = |starting| numbers(&bs, &topic).starting_offsets(starting);
    assert_eq!(run(from(StartingOffsets::Timestamp(base + 5_000))), [5, 6, 7, 8, 9], "at a record's timestamp");
    assert_eq!(run(from(StartingOffsets::Timestamp(base + 4_500))), [5, 6, 7, 8, 9], "the first one after");

    // Offsets a consumer of the group committed.
    let group = unique_name("group");
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &bs).set("group.id", &group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(7)).unwrap();
    c.commit(&tpl, rdkafka::consumer::CommitMode::Sync).unwrap();
    assert_eq!(run(from(StartingOffsets::Committed).group_id(&group)), [7, 8, 9], "the group's committed offset");
    let fresh = unique_name("group");
    assert_eq!(run(from(StartingOffsets::Committed).group_id(&fresh)), (0..10).collect::<Vec<_>>(), "none: earliest");

    // Offsets a job committed after its checkpoints completed.
    let group = unique_name("job-group");
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1);
    env.enable_checkpointing(Duration::from_millis(50)).unwrap();
    let sink = Collect::default();
    let unbounded = KafkaSource::new(&bs, &[topic.as_str()], |_, v| parse_number(v)).group_id(&group);
    env.add_source(unbounded).add_sink(sink.clone());
    let client = env.execute_async("commits offsets").unwrap();
    let committed = || -> Option<i64> {
        let c: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &bs).set("group.id", &group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, 0);
        let offsets = c.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
        match offsets.find_partition(&topic, 0)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    };
    let started = Instant::now();
    while committed() != Some(10) {
        assert!(started.elapsed() < Duration::from_secs(60), "the job never committed offset 10: {:?}", committed());
        std::thread::sleep(Duration::from_millis(50));
    }
    client.cancel().unwrap();
    let _ = client.wait();
    assert_eq!(sorted(&sink), (0..10).collect::<Vec<_>>());
    produce_numbers(&bs, &topic, 10..15);
    assert_eq!(run(from(StartingOffsets::Committed).group_id(&group)), [10, 11, 12, 13, 14], "after the job's offsets");
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct Reading {
    sensor: String,
    value: i64,
}

#[derive(Clone, Default)]
struct CollectReadings(Arc<Mutex<Vec<Reading>>>);

impl Sink<Reading> for CollectReadings {
    fn write(&mut self, r: Reading) -> Result<()> {
        self.0.lock().unwrap().push(r);
        Ok(())
    }
}

/// JSON values become the record type through serde; with the skip policy
/// the ones that do not (bad JSON, a missing field, a wrong type) are left
/// out and counted in `numRecordsInErrors`.
#[test]
fn json_records_and_the_count_of_skipped_ones() {
    let bs = broker();
    let topic = unique_name("json");
    create_topic(&bs, &topic);
    produce(
        &bs,
        &topic,
        &[
            r#"{"sensor":"a","value":1}"#,
            r#"{"sensor":"b","value":-7}"#,
            r#"{"sensor":"a""#,
            r#"{"sensor":"c"}"#,
            r#"{"value":3,"sensor":"c"}"#,
            r#"{"sensor":"d","value":"x"}"#,
        ],
    );
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1);
    let sink = CollectReadings::default();
    let source =
        KafkaSource::<Reading>::json(&bs, &[topic.as_str()]).bounded_at_latest().bad_records(BadRecordPolicy::Skip);
    let job = unique_name("json job");
    env.add_source(source).add_sink(sink.clone());
    env.execute(&job).unwrap();
    let r = |sensor: &str, value| Reading { sensor: sensor.into(), value };
    assert_eq!(*sink.0.lock().unwrap(), [r("a", 1), r("b", -7), r("c", 3)]);
    let page = sluice::metrics::global().render();
    let job = format!("job_name=\"{job}\"");
    let m = "sluice_taskmanager_job_task_operator_KafkaSourceReader_";
    assert_eq!(series(&page, &format!("{m}numRecordsInErrors"), &[&job]), Some(3.0), "{page}");
    assert_eq!(series(&page, &format!("{m}numRecordsIn"), &[&job]), Some(6.0), "{page}");
}

/// Client properties reach the source's consumer and the sinks' producers
/// (a bad one fails the job naming it), and the
/// exactly-once sink says plainly that it cannot recover transactions on a
/// secured listener yet.
#[test]
fn client_properties_reach_every_kafka_client() {
    let bs = broker();
    let topic = unique_name("props");
    create_topic(&bs, &topic);
    produce(&bs, &topic, &["1"]);
    let fails = |source: KafkaSource<u64>, sink: Option<KafkaSink<u64>>| {
        let env = StreamExecutionEnvironment::new();
        env.set_parallelism(1);
        env.set_config("restart-strategy.type", "none").unwrap();
        let stream = env.add_source(source.bounded_at_latest());
        match sink {
            Some(s) => {
                stream.add_sink(s);
            }
            None => {
                stream.add_sink(Collect::default());
            }
        }
        env.execute(&unique_name("props job")).unwrap_err().to_string()
    };
    let e = fails(numbers(&bs, &topic).set_property("fetch.wait.max.ms", "not-a-number"), None);
    assert!(e.contains("fetch.wait.max.ms"), "{e}");
    let sink = KafkaSink::at_least_once(&bs, &unique_name("o"), |v: &u64| (None, v.to_string().into_bytes()))
        .set_property("compression.type", "no-such-codec");
    let e = fails(numbers(&bs, &topic), Some(sink));
    assert!(e.contains("compression.type"), "{e}");

    let env = StreamExecutionEnvironment::new();
    env.enable_checkpointing(Duration::from_millis(500)).unwrap();
    env.set_config("restart-strategy.type", "none").unwrap();
    env.add_source(numbers(&bs, &topic)).sink_to(
        KafkaTransactionalSink::new(&bs, &unique_name("o"), &unique_name("txn"), |v: &u64| {
            (None, v.to_string().into_bytes())
        })
        .set_properties([("security.protocol", "SASL_SSL"), ("sasl.password", "hunter2")]),
    );
    let e = env.execute("secured").unwrap_err().to_string();
    assert!(e.contains("plain TCP only") && e.contains("SASL_SSL"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}
