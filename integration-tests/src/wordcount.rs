//! The Kafka WordCount example under test (`examples/tests`, the cluster
//! tests of `sluice-cluster`): its input lines, the counts they make, and
//! the check of its committed output (the 1..n rule).
//!
//! These are test assertions: they panic with the reason when the broker
//! cannot be reached or the output is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The words of the input lines.
pub const VOCABULARY: &[&str] = &["alpha", "beta", "gamma", "delta", "épsilon", "数据", "zeta", "eta"];

/// Creates `topics` (see [`crate::kafka::create_topics`]); panics if it cannot.
pub fn create_topics(bootstrap: &str, topics: &[&str], partitions: i32) {
    crate::kafka::create_topics(bootstrap, topics, partitions).unwrap();
}

/// Line `i` of the input, and the words it holds.
pub fn line(i: u64) -> String {
    let n = (i % 5 + 1) as usize;
    (0..n)
        .map(|k| VOCABULARY[((i * 7 + k as u64 * 3) % VOCABULARY.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes lines `range` to `topic`; with `pause_every = (n, pause)` it
/// flushes and sleeps `pause` every `n` lines.
pub fn feed(bootstrap: &str, topic: &str, range: std::ops::Range<u64>, pause_every: Option<(u64, Duration)>) {
    let p: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("linger.ms", "5").create().unwrap();
    for i in range {
        let text = line(i);
        p.send(BaseRecord::<str, str>::to(topic).payload(&text)).map_err(|(e, _)| e).unwrap();
        if let Some((every, pause)) = pause_every {
            if i % every == 0 {
                // Generous: on a loaded 2-core machine a broker container
                // can stall for seconds while the job under test restarts.
                p.flush(Duration::from_secs(60)).expect("the test input reaches the broker within 60 s");
                std::thread::sleep(pause);
            }
        }
    }
    p.flush(Duration::from_secs(60)).expect("the test input reaches the broker within 60 s");
}

/// [`feed`] of lines `range` on a thread of its own, flushing and
/// pausing `pause` every `every` lines: input that keeps arriving while a
/// test kills and restarts what reads it.
pub fn feed_in_background(
    bootstrap: &str,
    topic: &str,
    range: std::ops::Range<u64>,
    every: u64,
    pause: Duration,
) -> std::thread::JoinHandle<()> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    std::thread::spawn(move || feed(&bootstrap, &topic, range, Some((every, pause))))
}

/// The final count of every word in the first `lines` lines.
pub fn expected(lines: u64) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for i in 0..lines {
        for w in line(i).split(' ') {
            *m.entry(w.to_string()).or_insert(0) += 1;
        }
    }
    m
}

/// A consumer of the committed records of `topic`'s `partitions`, from
/// their start.
pub fn committed_reader(bootstrap: &str, topic: &str, partitions: i32, group: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

/// Waits until `topic` holds at least `at_least` committed records (read
/// with `isolation.level=read_committed`); panics after `deadline`.
pub fn wait_for_committed(bootstrap: &str, topic: &str, partitions: i32, at_least: u64, deadline: Duration) {
    let consumer = committed_reader(bootstrap, topic, partitions, "committed-waiter");
    let started = Instant::now();
    let mut n = 0u64;
    while n < at_least {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m.unwrap();
            n += 1;
        }
        assert!(started.elapsed() < deadline, "only {n} of {at_least} committed records in {topic} after {deadline:?}");
    }
}

/// The sum of the last stable offsets of `topic`'s `partitions` (end
/// offsets for read_committed): it grows with each committed transaction
/// (records and transaction markers alike).
pub fn committed_end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> i64 {
    let consumer = committed_reader(bootstrap, topic, partitions, "committed-counter");
    (0..partitions)
        .map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).map(|(_, high)| high).unwrap_or(0))
        .sum()
}

/// Reads the committed output until it holds `total` records (or the
/// deadline), then checks the 1..n rule and the final counts.
pub fn check_output(bootstrap: &str, topic: &str, partitions: i32, want: &BTreeMap<String, u64>, deadline: Duration) {
    let total: u64 = want.values().sum();
    let consumer = committed_reader(bootstrap, topic, partitions, "checker");
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
