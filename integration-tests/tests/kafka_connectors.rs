//! The Kafka source and sinks against the local broker
//! (`scripts/kafka-local.sh start`): bad-record policies, bad settings, an
//! unreachable broker, a missing topic, an in-process restart under the
//! exactly-once sink, the connectors' metrics scraped from `/metrics`, and
//! topic patterns: matching topics read exactly, topics created while the
//! job runs discovered, and discovered partitions restored from a checkpoint.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice::config::Configuration;
use sluice::faults::Faults;
use sluice::{Result, Sink, StreamExecutionEnvironment};
use sluice_connectors::kafka::{BadRecordPolicy, KafkaSource, KafkaTransactionalSink, StartingOffsets};
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

/// Every committed (key, value) of a one-partition topic.
fn read_all(bs: &str, topic: &str) -> Vec<(Option<String>, String)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bs)
        .set("group.id", unique_name("reader"))
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let (_, high) = c.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
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
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1);
    env.enable_checkpointing(Duration::from_millis(100)).unwrap();
    env.set_config("state.checkpoints.dir", dir.path().to_str().unwrap()).unwrap();
    env.set_config("restart-strategy.type", "fixed-delay").unwrap();
    env.set_config("restart-strategy.fixed-delay.delay", "50ms").unwrap();
    env.set_faults(Faults::parse("fail:Map:0@record=3000").unwrap());
    env.add_source(numbers(&bs, &input))
        .map(|v: u64| {
            // Slow enough that checkpoints complete before the failure.
            std::thread::sleep(Duration::from_micros(100));
            v * 10
        })
        .sink_to(KafkaTransactionalSink::new(&bs, &output, &unique_name("eos"), |v: &u64| {
            (None, v.to_string().into_bytes())
        }));
    let client = env.execute_async("eos restart").unwrap();
    let started = Instant::now();
    while client.details().unwrap().restarts == 0 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(client.details().unwrap().restarts, 1);
    client.wait().unwrap();
    let got: Vec<u64> = read_all(&bs, &output).into_iter().map(|(_, v)| v.parse().unwrap()).collect();
    let want: Vec<u64> = (0..5000).map(|i| i * 10).collect();
    assert_eq!(got, want, "every record committed exactly once, in order");
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
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1);
    env.enable_checkpointing(Duration::from_millis(100)).unwrap();
    env.set_config("state.checkpoints.dir", dir.path().to_str().unwrap()).unwrap();
    env.set_config("restart-strategy.type", "fixed-delay").unwrap();
    env.set_config("restart-strategy.fixed-delay.delay", "50ms").unwrap();
    // `a` holds 2000 records: the failure comes while reading `b`.
    env.set_faults(Faults::parse("fail:Map:0@record=3000").unwrap());
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
