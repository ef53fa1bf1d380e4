//! Benchmark: datagen WordCount on the engine at parallelism 1 and 2, next
//! to a hand-written single-thread loop (tokenize + `HashMap` increment)
//! over the same generated words, in one run. Each measurement runs in its
//! own child process so that its peak RSS is its own.
//!
//! `cargo run --release -p sluice-bench --bin bench_wordcount -- [--count 5000000] [--seed 42]`

use sluice::{ParameterTool, Result as SluiceResult, Sink, StreamExecutionEnvironment};
use sluice_bench::peak_rss_kb;
use sluice_examples::generator::{next_token, subtask_seed};
use sluice_examples::{run_main, running_word_counts, tokenize, WordGenerator};
use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

/// mimalloc frees records allocated on another subtask's thread cheaply.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VOCABULARY: u64 = 10_000;

/// Drops records (the benchmark measures the engine, not stdout).
#[derive(Clone)]
struct Discard;

impl Sink<(String, u64)> for Discard {
    fn write(&mut self, record: (String, u64)) -> SluiceResult<()> {
        std::hint::black_box(record);
        Ok(())
    }
}

fn hand_loop(seed: u64, count: u64) -> usize {
    let mut rng = subtask_seed(seed, 0);
    let mut counts: HashMap<String, u64> = HashMap::new();
    for _ in 0..count {
        let token = next_token(&mut rng, VOCABULARY);
        for word in tokenize(&token) {
            *counts.entry(word).or_insert(0) += 1;
        }
    }
    counts.len()
}

fn engine(seed: u64, count: u64, parallelism: u32) -> anyhow::Result<()> {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(parallelism);
    let words = env.add_source(WordGenerator::new(seed, None, Some(count)).with_vocabulary(VOCABULARY));
    running_word_counts(&words).add_sink(Discard);
    env.execute("bench")?;
    Ok(())
}

fn child(mode: &str, seed: u64, count: u64, parallelism: u32) -> anyhow::Result<()> {
    let started = Instant::now();
    match mode {
        "loop" => {
            std::hint::black_box(hand_loop(seed, count));
        }
        "engine" => engine(seed, count, parallelism)?,
        other => anyhow::bail!("unknown --mode {other}"),
    }
    let secs = started.elapsed().as_secs_f64();
    println!("RESULT seconds={secs} rss_kb={}", peak_rss_kb());
    Ok(())
}

fn measure(exe: &std::path::Path, args: &[String]) -> anyhow::Result<(f64, u64)> {
    let out = Command::new(exe).args(args).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        anyhow::bail!("benchmark child {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let line = stdout.lines().find(|l| l.starts_with("RESULT ")).ok_or_else(|| anyhow::anyhow!("no RESULT line"))?;
    let field = |name: &str| -> Option<&str> {
        line.split_whitespace().find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    };
    let secs: f64 = field("seconds").and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
    let rss: u64 = field("rss_kb").and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok((secs, rss))
}

fn main() -> std::process::ExitCode {
    run_main(|| {
        let params = ParameterTool::from_env()?;
        let seed = params.get_u64_or("seed", 42)?;
        let count = params.get_u64_or("count", 5_000_000)?;
        if let Some(mode) = params.get("mode") {
            let p = params.get_u64_or("p", 1)? as u32;
            return child(mode, seed, count, p);
        }
        let exe = std::env::current_exe()?;
        let base = vec!["--seed".to_string(), seed.to_string(), "--count".to_string(), count.to_string()];
        let runs: [(&str, Vec<&str>); 3] = [
            ("hand-written loop (1 thread)", vec!["--mode", "loop"]),
            ("sluice engine, parallelism 1", vec!["--mode", "engine", "-p", "1"]),
            ("sluice engine, parallelism 2", vec!["--mode", "engine", "-p", "2"]),
        ];
        println!(
            "datagen WordCount, {count} generated tokens, seed {seed}, {} cores",
            std::thread::available_parallelism()?.get()
        );
        println!("{:<32} {:>10} {:>14} {:>14} {:>10}", "run", "seconds", "records/s", "peak RSS MiB", "vs loop");
        let mut loop_rate = None;
        for (name, extra) in runs {
            let mut args = base.clone();
            args.extend(extra.iter().map(|s| s.to_string()));
            let (secs, rss_kb) = measure(&exe, &args)?;
            let rate = count as f64 / secs;
            let base_rate = *loop_rate.get_or_insert(rate);
            println!(
                "{name:<32} {secs:>10.2} {rate:>14.0} {:>14.1} {:>9.0}%",
                rss_kb as f64 / 1024.0,
                100.0 * rate / base_rate
            );
        }
        Ok(())
    })
}
