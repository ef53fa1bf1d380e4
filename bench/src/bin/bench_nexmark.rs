//! Benchmark: Nexmark queries on Sluice. Each query runs in a child process
//! over the same generated events (`NexmarkSource`, fixed base time) into a
//! sink that drops its records, and prints events/s, events/s per core
//! (CPU time of the process, generator included) and peak RSS.
//!
//! With `--check` it runs each query instead over a small run, collects
//! its output and compares it, record by record, with the independent
//! reference (`sluice_bench::nexmark::reference`); a mismatch fails.
//!
//! ```text
//! cargo run --release -p sluice-bench --bin bench_nexmark -- [--events 10000000] [-p 2] [--queries q0,q1,q2] [--check]
//! ```

use sluice::{ParameterTool, Result as SluiceResult, Sink, StreamExecutionEnvironment};
use sluice_bench::nexmark::{discard_output, output_lines, reference, QUERIES};
use sluice_bench::{cpu_seconds, peak_rss_kb};
use sluice_connectors::nexmark::{NexmarkSource, DEFAULT_BASE_TIME_MS};
use sluice_examples::run_main;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// mimalloc frees records allocated on another subtask's thread cheaply.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps every record (subtasks share it: the job runs in this process).
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<String>>>);

impl Sink<String> for Collect {
    fn write(&mut self, record: String) -> SluiceResult<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(record);
        Ok(())
    }
}

/// Runs `query` over `events` events at `parallelism`: its typed output
/// dropped, or as JSON lines into `collect`.
fn run_query(query: &str, events: u64, parallelism: u32, collect: Option<&Collect>) -> anyhow::Result<()> {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(parallelism);
    let stream = env.add_source(NexmarkSource::new().with_events(events)).name("Nexmark Source");
    let unknown = || anyhow::anyhow!("unknown query '{query}' (known: {QUERIES:?})");
    match collect {
        Some(c) => drop(output_lines(query, &stream).ok_or_else(unknown)?.add_sink(c.clone())),
        None if discard_output(query, &stream) => {}
        None => return Err(unknown()),
    }
    env.execute(&format!("Nexmark {query}"))?;
    Ok(())
}

fn child(query: &str, events: u64, parallelism: u32) -> anyhow::Result<()> {
    let (started, cpu) = (Instant::now(), cpu_seconds());
    run_query(query, events, parallelism, None)?;
    let secs = started.elapsed().as_secs_f64();
    println!("RESULT seconds={secs} cpu={} rss_kb={}", cpu_seconds() - cpu, peak_rss_kb());
    Ok(())
}

fn check(query: &str, events: u64, parallelism: u32) -> anyhow::Result<()> {
    let collect = Collect::default();
    run_query(query, events, parallelism, Some(&collect))?;
    let mut got = std::mem::take(&mut *collect.0.lock().unwrap_or_else(|p| p.into_inner()));
    got.sort();
    let config = nexmark::config::NexmarkConfig { base_time: DEFAULT_BASE_TIME_MS, ..Default::default() };
    let generated = nexmark::EventGenerator::new(config).take(events as usize);
    let want = reference::lines(query, generated).ok_or_else(|| anyhow::anyhow!("no reference for '{query}'"))?;
    if got != want {
        let first = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        anyhow::bail!(
            "{query}: {} records, the reference has {}; first difference at sorted record {first}: {:?} vs {:?}",
            got.len(),
            want.len(),
            got.get(first),
            want.get(first)
        );
    }
    println!("{query}: {} records, equal to the reference", got.len());
    Ok(())
}

fn field(line: &str, name: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn main() -> std::process::ExitCode {
    run_main(|| {
        let params = ParameterTool::from_env()?;
        let parallelism: u32 = params.get_or("p", "2").parse()?;
        let queries: Vec<String> =
            params.get_or("queries", &QUERIES.join(",")).split(',').map(|q| q.trim().to_string()).collect();
        if let Some(query) = params.get("child") {
            let events: u64 = params.get_or("events", "10000000").parse()?;
            return child(query, events, parallelism);
        }
        if params.has("check") {
            let events: u64 = params.get_or("events", "200000").parse()?;
            for q in &queries {
                check(q, events, parallelism)?;
            }
            return Ok(());
        }
        let events: u64 = params.get_or("events", "10000000").parse()?;
        let exe = std::env::current_exe()?;
        println!("Nexmark on Sluice: {events} events, parallelism {parallelism}");
        println!(
            "{:<6} {:>14} {:>18} {:>10} {:>12}",
            "query", "events/s", "events/s per core", "seconds", "peak RSS MiB"
        );
        for q in &queries {
            let out = Command::new(&exe)
                .args(["--child", q, "--events", &events.to_string(), "-p", &parallelism.to_string()])
                .output()?;
            if !out.status.success() {
                anyhow::bail!("{q} failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line = stdout.lines().find(|l| l.starts_with("RESULT ")).unwrap_or_default();
            let (secs, cpu, rss) = (field(line, "seconds"), field(line, "cpu"), field(line, "rss_kb"));
            println!(
                "{q:<6} {:>14.0} {:>18.0} {secs:>10.2} {:>12.0}",
                events as f64 / secs,
                events as f64 / cpu,
                rss / 1024.0
            );
        }
        Ok(())
    })
}
