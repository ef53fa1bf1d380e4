//! Kafka transactions against real brokers: the local one from
//! `scripts/kafka-local.sh` and one in a container; commits replayed by the
//! exactly-once sink's coordinator client, on both transaction versions of
//! a Kafka 4 cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_connectors::kafka::protocol::{EndTxnOutcome, TxnCoordinatorClient};
use sluice_integration_tests::images::{kafka_has_transaction_versions, kafka_image};
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

/// Opens a transaction under `id` holding `values`, flushed, and returns the
/// producer id and epoch it carries, as the exactly-once sink records them
/// in a checkpoint.
fn open_transaction(
    bootstrap: &str,
    client: &TxnCoordinatorClient,
    id: &str,
    topic: &str,
    values: &[&str],
) -> (ThreadedProducer<DefaultProducerContext>, i64, i16) {
    let p = producer(bootstrap, id);
    p.init_transactions(T).unwrap();
    let d = client.describe(id).unwrap().expect("an initialised id is known");
    p.begin_transaction().unwrap();
    for v in values {
        p.send(BaseRecord::<str, str>::to(topic).key("k").payload(*v)).map_err(|(e, _)| e).unwrap();
    }
    p.flush(T).unwrap();
    (p, d.producer_id, d.producer_epoch)
}

/// `EndTxn(commit)` as the exactly-once sink replays it from a restored
/// checkpoint: it commits a transaction a crash left open; a repeated replay
/// (a crash after the commit) and a replay of a transaction its live producer
/// committed succeed (the coordinator takes a repeated commit at the same
/// epoch as a retry, or the client recognises it from DescribeTransactions
/// when the end bumped the epoch); a transaction fenced since (its id
/// re-initialised, which aborts it) is refused with an error, never taken as
/// committed. The read_committed check shows each record committed once.
fn check_commit_replays(bootstrap: &str, topic: &str) {
    create_topic(bootstrap, topic);
    let client = TxnCoordinatorClient::new(bootstrap, T);

    let crashed = format!("{topic}-crashed");
    let (p, pid, epoch) = open_transaction(bootstrap, &client, &crashed, topic, &["p1", "p2"]);
    std::mem::forget(p); // a crash: the producer neither commits nor aborts
    assert_eq!(client.end_txn(&crashed, pid, epoch, true).unwrap(), EndTxnOutcome::Ended);
    let again = client.end_txn(&crashed, pid, epoch, true).unwrap();
    assert!(matches!(again, EndTxnOutcome::Ended | EndTxnOutcome::AlreadyCommitted), "{again:?}");

    let live = format!("{topic}-live");
    let (p, pid, epoch) = open_transaction(bootstrap, &client, &live, topic, &["l1"]);
    p.commit_transaction(T).unwrap();
    let replayed = client.end_txn(&live, pid, epoch, true).unwrap();
    assert!(matches!(replayed, EndTxnOutcome::Ended | EndTxnOutcome::AlreadyCommitted), "{replayed:?}");

    let fenced = format!("{topic}-fenced");
    let (p, pid, epoch) = open_transaction(bootstrap, &client, &fenced, topic, &["f1"]);
    std::mem::forget(p);
    producer(bootstrap, &fenced).init_transactions(T).unwrap(); // aborts the open transaction
    let refused = client.end_txn(&fenced, pid, epoch, true).unwrap_err();
    assert!(refused.contains("refused to commit"), "{refused}");

    let end = producer(bootstrap, &format!("{topic}-end"));
    end.init_transactions(T).unwrap();
    transaction(&end, topic, &["END"], true);
    assert_eq!(read_until(bootstrap, topic, "read_committed", "END"), ["p1", "p2", "l1"]);
}

#[test]
fn local_broker_recognises_replayed_commits() {
    let bootstrap = local_bootstrap();
    require_listening(&bootstrap).unwrap();
    check_commit_replays(&bootstrap, &unique_name("local-replay"));
}

/// A Kafka 4 cluster formatted at `transaction.version=1`, then upgraded to
/// 2 with `kafka-features upgrade` (KIP-890): commit replays behave the same
/// before and after. Kafka 3.x has no transaction versions; under the 3.9
/// image of the test matrix this test says so and passes.
#[test]
fn commit_replays_on_transaction_versions_1_and_2() {
    if !kafka_has_transaction_versions() {
        eprintln!("Kafka {:?} has no transaction.version feature; nothing to test", kafka_image().1);
        return;
    }
    let kafka = KafkaContainer::start_with(&[("KAFKA_FORMAT_ARGS", "--feature transaction.version=1")]).unwrap();
    assert_eq!(kafka.feature_level("transaction.version").unwrap(), Some(1));
    check_commit_replays(kafka.bootstrap(), &unique_name("tv1-replay"));
    kafka.upgrade_feature("transaction.version", 2).unwrap();
    assert_eq!(kafka.feature_level("transaction.version").unwrap(), Some(2));
    check_commit_replays(kafka.bootstrap(), &unique_name("tv2-replay"));
}
