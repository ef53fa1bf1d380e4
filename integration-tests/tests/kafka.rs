//! Kafka transactions against real brokers: the local one from
//! `scripts/kafka-local.sh` and one in a container.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_integration_tests::kafka::{local_bootstrap, require_listening, KafkaContainer};
use sluice_test_support::unique_name;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn create_topic(bootstrap: &str, topic: &str) {
    sluice_integration_tests::kafka::create_topics(bootstrap, &[topic], 1).unwrap();
}

fn producer(bootstrap: &str, txn_id: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", txn_id)
        .set("transaction.timeout.ms", "60000")
        .create()
        .unwrap()
}

fn transaction(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, values: &[&str], commit: bool) {
    p.begin_transaction().unwrap();
    for v in values {
        p.send(BaseRecord::<str, str>::to(topic).key("k").payload(*v)).map_err(|(e, _)| e).unwrap();
    }
    p.flush(T).unwrap();
    if commit {
        p.commit_transaction(T).unwrap();
    } else {
        p.abort_transaction(T).unwrap();
    }
}

/// Reads the topic from the start until `end` arrives; returns the values before it.
fn read_until(bootstrap: &str, topic: &str, isolation: &str, end: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("check-{topic}-{isolation}"))
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let started = Instant::now();
    let mut values = Vec::new();
    loop {
        assert!(started.elapsed() < T, "no end marker after {T:?}; read so far: {values:?}");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            if v == end {
                return values;
            }
            values.push(v);
        }
    }
}

/// Commits, aborts and commits again; a read_committed consumer must see
/// exactly the committed records in order, a read_uncommitted one also the
/// aborted ones (which shows they really reached the log).
fn check_transactions(bootstrap: &str, topic: &str) {
    create_topic(bootstrap, topic);
    let p = producer(bootstrap, &format!("{topic}-txn"));
    p.init_transactions(T).unwrap();
    transaction(&p, topic, &["c1", "c2", "c3"], true);
    transaction(&p, topic, &["a1", "a2"], false);
    transaction(&p, topic, &["c4", "c5"], true);
    transaction(&p, topic, &["END"], true);
    assert_eq!(read_until(bootstrap, topic, "read_committed", "END"), ["c1", "c2", "c3", "c4", "c5"]);
    let all = read_until(bootstrap, topic, "read_uncommitted", "END");
    assert_eq!(all, ["c1", "c2", "c3", "a1", "a2", "c4", "c5"]);
}

#[test]
fn local_broker_runs_transactions() {
    let bootstrap = local_bootstrap();
    require_listening(&bootstrap).unwrap();
    check_transactions(&bootstrap, &unique_name("local-txn"));
}

#[test]
fn container_broker_runs_transactions() {
    let kafka = KafkaContainer::start().unwrap();
    check_transactions(kafka.bootstrap(), &unique_name("container-txn"));
}
