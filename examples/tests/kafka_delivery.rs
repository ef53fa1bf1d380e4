//! The Kafka WordCount's `--delivery` flag against the local broker
//! (`scripts/kafka-local.sh start`): each guarantee writes the right
//! counts, and only `exactly-once` writes through transactions (whose
//! commit markers take offsets of their own in the output partition);
//! `at-least-once` and `none` write plain records; a bad value is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice_integration_tests::kafka::{local_bootstrap, require_listening};
use sluice_integration_tests::wordcount::{check_output, create_topics, expected, feed};
use sluice_test_support::unique_name;
use std::process::{Command, Output};
use std::time::Duration;

const WORDCOUNT: &str = env!("CARGO_BIN_EXE_kafka_wordcount");
const LINES: u64 = 300;

/// Runs the bounded Kafka WordCount at parallelism 1 with `--delivery`.
fn run(bs: &str, input: &str, output: &str, delivery: &str) -> Output {
    let ckpt = tempfile::tempdir().unwrap();
    Command::new(WORDCOUNT)
        .args(["--bootstrap-servers", bs, "--input-topic", input, "--output-topic", output, "--bounded", "-p", "1"])
        .args(["--group-id", &unique_name("delivery"), "--delivery", delivery])
        .args(["--checkpoint-dir", ckpt.path().to_str().unwrap(), "--checkpoint-interval", "200ms"])
        .env_remove("SLUICE_CONF_DIR")
        .output()
        .unwrap()
}

/// The end offset of partition 0 of `topic`.
fn end_offset(bs: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bs).create().unwrap();
    consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap().1
}

#[test]
fn delivery_flag_picks_the_sink_and_each_writes_every_count() {
    let bs = local_bootstrap();
    require_listening(&bs).unwrap();
    let input = unique_name("delivery-in");
    create_topics(&bs, &[&input], 1);
    feed(&bs, &input, 0..LINES, None);
    let want = expected(LINES);
    let records: u64 = want.values().sum();
    for delivery in ["at-least-once", "none", "exactly-once"] {
        let output = unique_name(&format!("delivery-{delivery}"));
        create_topics(&bs, &[&output], 1);
        let out = run(&bs, &input, &output, delivery);
        assert!(out.status.success(), "--delivery {delivery}: {}", String::from_utf8_lossy(&out.stderr));
        check_output(&bs, &output, 1, &want, Duration::from_secs(60));
        let end = end_offset(&bs, &output);
        eprintln!("--delivery {delivery}: {records} records, end offset {end}");
        if delivery == "exactly-once" {
            assert!(end > records as i64, "transactions leave commit markers: end offset {end}, {records} records");
        } else {
            assert_eq!(end, records as i64, "--delivery {delivery} writes plain records, no transaction markers");
        }
    }
    let out = run(&bs, &input, &unique_name("delivery-bad"), "twice");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("bad value 'twice' for parameter --delivery"), "{stderr}");
}
