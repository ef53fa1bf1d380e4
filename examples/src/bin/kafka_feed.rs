//! Feeds a text file into a Kafka topic, one record per line (the companion
//! of `kafka_wordcount`).
//!
//! `cargo run --release -p sluice-examples --bin kafka_feed -- --bootstrap-servers 127.0.0.1:9092 --topic lines --input FILE`

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use sluice::ParameterTool;
use sluice_examples::run_main;
use std::io::BufRead;
use std::time::Duration;

fn main() -> std::process::ExitCode {
    run_main(|| {
        let params = ParameterTool::from_env()?;
        let bootstrap = params.get_required("bootstrap-servers")?;
        let topic = params.get_required("topic")?;
        let input = params.get_required("input")?;
        let file = std::fs::File::open(input).map_err(|e| anyhow::anyhow!("cannot open input file '{input}': {e}"))?;
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .create()?;
        let mut n = 0u64;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| anyhow::anyhow!("cannot read '{input}': {e}"))?;
            let mut record = BaseRecord::<str, str>::to(topic).payload(&line);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        r,
                    )) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => anyhow::bail!("cannot send to topic '{topic}' at {bootstrap}: {e}"),
                }
            }
            n += 1;
        }
        producer.flush(Duration::from_secs(60)).map_err(|e| anyhow::anyhow!("cannot flush to {bootstrap}: {e}"))?;
        eprintln!("wrote {n} lines to topic '{topic}'");
        Ok(())
    })
}
