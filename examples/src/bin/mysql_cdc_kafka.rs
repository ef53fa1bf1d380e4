//! MySQL / MariaDB change data capture into Kafka, exactly-once: a snapshot
//! of `--tables`, then their binlog, each change one record on
//! `--output-topic` (key `table:primary key`, value a Debezium-like JSON
//! envelope: `before`, `after`, `op`, `source` with binlog file, position
//! and GTID). With checkpoints the committed output holds every change
//! once, in order per key, through crashes in either phase.
//!
//! ```text
//! cargo run --release -p sluice-examples --bin mysql_cdc_kafka -- \
//!     --mysql-url mysql://cdc:secret@127.0.0.1:3306/shop --tables orders,refunds \
//!     --key-column id --server-ids 5400-5403 --bootstrap-servers 127.0.0.1:9092 \
//!     --output-topic shop-changes --checkpoint-dir /tmp/cdc --checkpoint-interval 1s [-p N]
//! ```
//! Started again with the same `--checkpoint-dir`, it resumes from the
//! latest completed checkpoint: unfinished snapshot chunks are read again,
//! the binlog is followed from the checkpointed position.

use serde_json::Value;
use sluice::{ParameterTool, StreamExecutionEnvironment};
use sluice_connectors::kafka::KafkaTransactionalSink;
use sluice_connectors::mysql::cdc::{ChangeEvent, MySqlCdcSource};
use sluice_examples::run_main;
use std::time::Duration;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    run_main(|| {
        let params = ParameterTool::from_env()?;
        let url = params.get_required("mysql-url")?.to_string();
        let tables: Vec<String> = params.get_required("tables")?.split(',').map(|t| t.trim().to_string()).collect();
        let key_column = params.get_or("key-column", "id").to_string();
        let ids = params.get_or("server-ids", "5400-5499");
        let (lo, hi) = ids
            .split_once('-')
            .and_then(|(lo, hi)| Some((lo.trim().parse::<u32>().ok()?, hi.trim().parse::<u32>().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("bad value '{ids}' for --server-ids: expected LOW-HIGH, e.g. 5400-5403"))?;
        let bootstrap = params.get_required("bootstrap-servers")?.to_string();
        let output = params.get_required("output-topic")?.to_string();
        let prefix = params.get_or("transactional-id-prefix", &format!("sluice-cdc-{output}")).to_string();
        let chunk_size: u64 = params.get_or("chunk-size", "8096").parse()?;
        let env = StreamExecutionEnvironment::from_params(&params)?;
        let source = MySqlCdcSource::<Value>::builder()
            .url(&url)
            .tables(tables)
            .server_ids(lo..=hi)
            .chunk_size(chunk_size)
            .heartbeat(Duration::from_secs(1))
            .build()?;
        let changes = env.add_source(source).name("MySQL CDC Source").uid("mysql-cdc-source");
        let serialize = move |e: &ChangeEvent<Value>| {
            let key = e.row.as_ref().and_then(|r| r.get(&key_column)).map(|k| format!("{}:{k}", e.table));
            let value = e
                .to_json_envelope()
                .map(|v| v.to_string())
                .unwrap_or_else(|err| serde_json::json!({"error": err.to_string(), "table": e.table}).to_string());
            (key.map(String::into_bytes), value.into_bytes())
        };
        changes.sink_to(KafkaTransactionalSink::new(&bootstrap, &output, &prefix, serialize)).uid("kafka-sink");
        env.execute("MySQL CDC to Kafka")?;
        Ok(())
    })
}
