//! State backend benchmark: a datagen WordCount over many distinct keys
//! (default 10 million) on the heap backend and on RocksDB, each without
//! checkpoints and with a 1 s checkpoint interval. Every configuration runs
//! in its own process (so peak RSS is its own) and prints records/s, peak
//! RSS and, with checkpoints, their count and last duration.
//!
//! `cargo run --release -p sluice-examples --bin bench_state -- [--keys 10000000] [--records 20000000] [-p 1]`

use sluice::{ParameterTool, Sink, StreamExecutionEnvironment};
use sluice_connectors::datagen::DataGeneratorSource;
use sluice_examples::{peak_rss_kb, run_main};
use std::time::Instant;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Counts what reaches it, nothing else.
#[derive(Clone, Default)]
struct Discard(u64);

impl Sink<(String, u64)> for Discard {
    fn write(&mut self, _: (String, u64)) -> sluice::Result<()> {
        self.0 += 1;
        Ok(())
    }
}

fn run_one(params: &ParameterTool, backend: &str, interval: Option<&str>) -> anyhow::Result<()> {
    let keys = params.get_u64_or("keys", 10_000_000)?;
    let records = params.get_u64_or("records", 2 * keys)?;
    let p = params.get_u64_or("p", 1)? as u32;
    let dir = tempfile::tempdir()?;
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(p);
    env.set_config("state.backend", backend)?;
    env.set_config("state.backend.rocksdb.localdir", dir.path().join("db").to_str().unwrap_or("."))?;
    env.set_config("state.checkpoints.dir", dir.path().join("chk").to_str().unwrap_or("."))?;
    if let Some(i) = interval {
        env.enable_checkpointing(sluice::config::parse_duration(i).unwrap_or_default())?;
    }
    let words = env.add_source(
        DataGeneratorSource::new(move |i, _| format!("key-{}", (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % keys))
            .with_count(records),
    );
    words
        .map(|w: String| (w, 1u64))
        .key_by(|t: &(String, u64)| t.0.clone())
        .sum(|t: &mut (String, u64)| &mut t.1)
        .add_sink(Discard::default());
    let started = Instant::now();
    let client = env.execute_async("bench-state")?;
    let mut completed = 0;
    while let Ok(d) = client.details() {
        completed = completed.max(d.completed_checkpoints);
        if d.status.is_terminal() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    client.wait()?;
    let secs = started.elapsed().as_secs_f64();
    let metrics = sluice::metrics::global().render();
    let last_ms = metrics
        .lines()
        .find(|l| l.starts_with("sluice_jobmanager_job_lastCheckpointDuration"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or("-")
        .to_string();
    println!(
        "RESULT {backend:8} checkpoints={:5} {:>12.0} rec/s  {:>7.1} s  peak RSS {:>8.1} MiB  completed checkpoints {completed}  last checkpoint {last_ms} ms",
        interval.unwrap_or("off"),
        records as f64 / secs,
        secs,
        peak_rss_kb() as f64 / 1024.0
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    run_main(|| {
        let params = ParameterTool::from_env()?;
        if let Some(config) = params.get("run") {
            let (backend, interval) = config.split_once(':').unwrap_or((config, "off"));
            return run_one(&params, backend, (interval != "off").then_some(interval));
        }
        let exe = std::env::current_exe()?;
        let args: Vec<String> = std::env::args().skip(1).collect();
        println!("bench_state: datagen WordCount, {:?}", args);
        for config in ["hashmap:off", "rocksdb:off", "hashmap:1s", "rocksdb:1s"] {
            let out = std::process::Command::new(&exe).args(&args).args(["--run", config]).output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            match text.lines().find(|l| l.starts_with("RESULT")) {
                Some(line) => println!("{}", line.trim_start_matches("RESULT ")),
                None => println!("{config}: failed: {}", String::from_utf8_lossy(&out.stderr)),
            }
        }
        Ok(())
    })
}
