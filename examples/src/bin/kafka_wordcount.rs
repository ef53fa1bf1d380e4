//! Kafka WordCount, exactly-once: lines from `--input-topic`, for every word
//! occurrence one record on `--output-topic` with key = the word and value =
//! its running count. With checkpoints, the committed output holds for every
//! word the values 1, 2, 3, ... n with no repeat and no gap, through crashes.
//!
//! ```text
//! cargo run --release -p sluice-examples --bin kafka_wordcount -- \
//!     --bootstrap-servers 127.0.0.1:9092 --input-topic lines --output-topic counts \
//!     --checkpoint-dir /tmp/kafka-wc --checkpoint-interval 1s [-p N]
//! ```
//! Started again with the same `--checkpoint-dir`, it resumes from the latest
//! completed checkpoint. `--delivery at-least-once|none` trades the
//! guarantee for latency; `--bounded` stops at the end offsets seen at start;
//! `--sink-delay-us N` slows the sink down by N µs per record (to watch back
//! pressure in the web UI).
//! `--kafka-properties FILE` sets client properties (`key=value` lines, `#`
//! comments) on the source and the sink, e.g. `security.protocol=SASL_SSL`,
//! `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`:
//! secrets stay out of the command line and out of the logs.

use sluice::{ParameterTool, StreamExecutionEnvironment};
use sluice_connectors::kafka::{KafkaSink, KafkaSource, KafkaTransactionalSink, StartingOffsets};
use sluice_examples::{run_main, running_word_counts};

/// mimalloc frees records allocated on another subtask's thread cheaply.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    run_main(|| {
        let params = ParameterTool::from_env()?;
        let bootstrap = params.get_required("bootstrap-servers")?.to_string();
        let input = params.get_required("input-topic")?.to_string();
        let output = params.get_required("output-topic")?.to_string();
        let prefix = params.get_or("transactional-id-prefix", &format!("sluice-wc-{output}")).to_string();
        let env = StreamExecutionEnvironment::from_params(&params)?;
        let properties = match params.get("kafka-properties") {
            Some(path) => read_properties(path)?,
            None => Vec::new(),
        };
        let props = || properties.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let mut source = KafkaSource::strings(&bootstrap, &[input.as_str()])
            .starting_offsets(StartingOffsets::Earliest)
            .group_id(params.get_or("group-id", "sluice-kafka-wordcount"))
            .set_properties(props());
        if params.has("bounded") {
            source = source.bounded_at_latest();
        }
        let lines = env.add_source(source).name("Kafka Source").uid("kafka-source");
        tracing::info!("Kafka WordCount reads '{input}' and writes '{output}' at {bootstrap}");
        let mut counts = running_word_counts(&lines);
        let delay_us: u64 = params.get_or("sink-delay-us", "0").parse().map_err(|_| {
            anyhow::anyhow!("bad value for parameter --sink-delay-us: expected microseconds per record")
        })?;
        if delay_us > 0 {
            // A slow sink on purpose: the web UI shows the back pressure.
            let delay = std::time::Duration::from_micros(delay_us);
            counts = counts
                .map(move |c: (String, u64)| {
                    std::thread::sleep(delay);
                    c
                })
                .name("Throttle");
        }
        let serialize =
            |(word, count): &(String, u64)| (Some(word.clone().into_bytes()), count.to_string().into_bytes());
        match params.get_or("delivery", "exactly-once") {
            "exactly-once" => {
                let sink = KafkaTransactionalSink::new(&bootstrap, &output, &prefix, serialize).set_properties(props());
                counts.sink_to(sink).uid("kafka-sink");
            }
            "at-least-once" => {
                counts
                    .add_sink(KafkaSink::at_least_once(&bootstrap, &output, serialize).set_properties(props()))
                    .uid("kafka-sink");
            }
            "none" => {
                counts
                    .add_sink(KafkaSink::none(&bootstrap, &output, serialize).set_properties(props()))
                    .uid("kafka-sink");
            }
            other => anyhow::bail!(
                "bad value '{other}' for parameter --delivery: expected exactly-once, at-least-once or none"
            ),
        }
        env.execute("Kafka WordCount")?;
        Ok(())
    })
}

/// `key=value` lines of a client properties file (`#` starts a comment).
fn read_properties(path: &str) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read --kafka-properties '{path}': {e}"))?;
    let mut properties = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{path}:{}: expected key=value, not '{line}'", n + 1))?;
        properties.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(properties)
}
