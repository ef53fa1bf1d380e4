//! State backend benchmark: a datagen WordCount over many distinct keys
//! (default 10 million) on the heap backend and on RocksDB, each without
//! checkpoints and with a 1 s checkpoint interval. Every configuration runs
//! in its own process (so peak RSS is its own) and prints records/s, peak
//! RSS and, with checkpoints, their count and last duration.
//!
//! `cargo run --release -p sluice-bench --bin bench_state -- [--keys 10000000] [--records 20000000] [-p 1]
//! [--repeat 3] [--configs hashmap:off,hashmap:1s]`
//!
//! With `--repeat N` the configurations run in N interleaved rounds (every
//! other round in reverse order) and the medians and their ratios (the
//! issue's targets) are printed, as well as the median and range of the
//! ratios within each round, which slow drift of the machine does not bias.
//!
//! `--skew S` (default 0: uniform) makes the key frequencies Zipf-like, as
//! words in text are: the first `--keys` records name every key once (so
//! all of them exist), the rest draw key rank r with probability about
//! proportional to 1/r^S (S = 1 is natural language). Hot keys are what the
//! RocksDB backend's cache serves without a RocksDB read.
//!
//! A configuration is `backend:interval`, optionally followed by
//! `:key=value+key=value` settings of the job, e.g.
//! `rocksdb:off:state.backend.rocksdb.compaction.style=universal` to compare
//! RocksDB tunings side by side.

use sluice::{ParameterTool, Sink, StreamExecutionEnvironment};
use sluice_bench::{cpu_seconds, peak_rss_kb, thread_cpu_seconds, thread_wait_seconds};
use sluice_connectors::datagen::DataGeneratorSource;
use sluice_examples::run_main;
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

fn run_one(params: &ParameterTool, backend: &str, interval: Option<&str>, settings: &str) -> anyhow::Result<()> {
    let keys = params.get_u64_or("keys", 10_000_000)?;
    let records = params.get_u64_or("records", 2 * keys)?;
    let p = params.get_u64_or("p", 1)? as u32;
    let skew: f64 = params.get("skew").map(str::parse::<f64>).transpose()?.unwrap_or(0.0);
    let dir = tempfile::tempdir()?;
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(p);
    env.set_config("state.backend", backend)?;
    env.set_config("state.backend.rocksdb.localdir", dir.path().join("db").to_str().unwrap_or("."))?;
    env.set_config("state.checkpoints.dir", dir.path().join("chk").to_str().unwrap_or("."))?;
    for setting in settings.split('+').filter(|s| !s.is_empty()) {
        let (key, value) =
            setting.split_once('=').ok_or_else(|| anyhow::anyhow!("setting '{setting}' is not key=value"))?;
        env.set_config(key, value)?;
    }
    if let Some(i) = interval {
        env.enable_checkpointing(sluice::config::parse_duration(i).unwrap_or_default())?;
    }
    let words = env.add_source(
        DataGeneratorSource::new(move |i, rng| {
            let rank = if skew > 0.0 && i >= keys { zipf_rank(rng.next_u64(), keys, skew) } else { i };
            format!("key-{}", (rank.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % keys)
        })
        .with_count(records),
    );
    words
        .map(|w: String| (w, 1u64))
        .key_by(|t: &(String, u64)| t.0.clone())
        .sum(|t: &mut (String, u64)| &mut t.1)
        .add_sink(Discard::default());
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let client = env.execute_async("bench-state")?;
    let mut completed = 0;
    // The keyed task's own thread (its name is cut to 15 bytes by Linux),
    // sampled while it lives: its CPU per record tells slower work apart
    // from waiting.
    let mut task_cpu: f64 = 0.0;
    let mut task_wait: f64 = 0.0;
    while let Ok(d) = client.details() {
        completed = completed.max(d.completed_checkpoints);
        task_cpu = task_cpu.max(thread_cpu_seconds("Keyed Aggregati"));
        task_wait = task_wait.max(thread_wait_seconds("Keyed Aggregati"));
        if d.status.is_terminal() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    client.wait()?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let metrics = sluice::metrics::global().render();
    let last_ms = metrics
        .lines()
        .find(|l| l.starts_with("sluice_jobmanager_job_lastCheckpointDuration"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or("-")
        .to_string();
    // The task threads' synchronous snapshot time: the part of the
    // checkpoint cost that does not depend on spare cores.
    let sync_us: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("sluice_taskmanager_job_task_checkpointSyncTimeUsTotal"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    println!(
        "RESULT {backend:8} checkpoints={:5} {:>12.0} rec/s  {:>7.1} s  peak RSS {:>8.1} MiB  completed checkpoints {completed}  last checkpoint {last_ms} ms  sync parts {:.0} ms ({:.1}% of the run)  CPU {:.1} s = {:.2} us/record  task thread {:.2} us/record, waited for a CPU {:.1}% of the run {settings}",
        interval.unwrap_or("off"),
        records as f64 / secs,
        secs,
        peak_rss_kb() as f64 / 1024.0,
        sync_us / 1000.0,
        sync_us / 1e4 / secs,
        cpu,
        cpu * 1e6 / records as f64,
        task_cpu * 1e6 / records as f64,
        100.0 * task_wait / secs,
    );
    Ok(())
}

/// A key rank in `0..n` drawn from a continuous Zipf (bounded Pareto)
/// approximation with exponent `s`, from 64 random bits: the inverse of its
/// distribution function at a uniform point.
fn zipf_rank(bits: u64, n: u64, s: f64) -> u64 {
    let u = (bits >> 11) as f64 / (1u64 << 53) as f64;
    let n = n as f64;
    let x = if (s - 1.0).abs() < 1e-9 { n.powf(u) } else { ((n.powf(1.0 - s) - 1.0) * u + 1.0).powf(1.0 / (1.0 - s)) };
    (x as u64).saturating_sub(1).min(n as u64 - 1)
}

/// The median of `v` (sorts it).
fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn main() -> std::process::ExitCode {
    run_main(|| {
        let params = ParameterTool::from_env()?;
        if let Some(config) = params.get("run") {
            let mut parts = config.splitn(3, ':');
            let backend = parts.next().unwrap_or("hashmap");
            let interval = parts.next().unwrap_or("off");
            let settings = parts.next().unwrap_or("");
            return run_one(&params, backend, (interval != "off").then_some(interval), settings);
        }
        let exe = std::env::current_exe()?;
        let repeat = params.get_u64_or("repeat", 1)?.max(1);
        let configs = params.get("configs").unwrap_or("hashmap:off,rocksdb:off,hashmap:1s,rocksdb:1s").to_string();
        let configs: Vec<&str> = configs.split(',').collect();
        // Child runs get the same arguments minus the ones only this
        // process reads.
        let mut args: Vec<String> = Vec::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            if a == "--repeat" || a == "--configs" {
                it.next();
            } else {
                args.push(a);
            }
        }
        println!("bench_state: datagen WordCount, {args:?}, {repeat} round(s) of {configs:?}");
        // Per configuration, its rate in each round (None: the run failed).
        let mut rates: Vec<Vec<Option<f64>>> = vec![Vec::new(); configs.len()];
        let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
        // Rounds interleave the configurations, and every other round runs
        // them in reverse order, so that drift of the machine touches all of
        // them alike.
        for round in 1..=repeat {
            let mut order: Vec<usize> = (0..configs.len()).collect();
            if round % 2 == 0 {
                order.reverse();
            }
            for i in order {
                let config = configs[i];
                let out = std::process::Command::new(&exe).args(&args).args(["--run", config]).output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                let mut rate = None;
                match text.lines().find(|l| l.starts_with("RESULT")) {
                    Some(line) => {
                        println!("round {round}: {}", line.trim_start_matches("RESULT "));
                        let words: Vec<&str> = line.split_whitespace().collect();
                        rate = words.get(3).and_then(|r| r.parse::<f64>().ok());
                        let per_record = words.iter().position(|w| *w == "us/record");
                        if let Some(cpu) = per_record.and_then(|i| words.get(i.checked_sub(1)?)?.parse::<f64>().ok()) {
                            cpus[i].push(cpu);
                        }
                    }
                    None => println!("round {round}: {config}: failed: {}", String::from_utf8_lossy(&out.stderr)),
                }
                rates[i].push(rate);
            }
        }
        let medians: Vec<Option<f64>> =
            rates.iter().map(|r| median(&mut r.iter().flatten().copied().collect::<Vec<f64>>())).collect();
        let cpu_medians: Vec<Option<f64>> = cpus.iter_mut().map(|c| median(c)).collect();
        println!("medians (records/s, process CPU per record):");
        for ((config, m), c) in configs.iter().zip(&medians).zip(&cpu_medians) {
            println!(
                "  {config:14} {}  {} us/record",
                m.map(|m| format!("{m:.0}")).unwrap_or_else(|| "-".into()),
                c.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into())
            );
        }
        let index = |c: &str| configs.iter().position(|x| *x == c);
        // The ratio of the medians, and the median (and range) of the ratios
        // of the two runs of one round: the latter cancels slow drift of
        // the machine's speed, which on a shared VM can exceed the effect.
        let ratio = |name: &str, a: &str, b: &str| {
            let (Some(a), Some(b)) = (index(a), index(b)) else { return };
            let (Some(ma), Some(mb)) = (medians[a], medians[b]) else { return };
            let mut paired: Vec<f64> =
                rates[a].iter().zip(&rates[b]).filter_map(|(x, y)| Some(100.0 * (*x)? / (*y)?)).collect();
            // `median` sorts `paired`: its ends are the range.
            let per_round = match (median(&mut paired), paired.first(), paired.last()) {
                (Some(m), Some(lo), Some(hi)) if paired.len() > 1 => format!("{m:.1} % ({lo:.1}-{hi:.1} %)"),
                (Some(m), ..) => format!("{m:.1} %"),
                _ => "-".into(),
            };
            println!("  {name}: {:.1} % of medians; per round: median {per_round}", 100.0 * ma / mb);
        };
        ratio("RocksDB / heap, no checkpoints", "rocksdb:off", "hashmap:off");
        ratio("heap with 1 s checkpoints / without", "hashmap:1s", "hashmap:off");
        ratio("RocksDB with 1 s checkpoints / without", "rocksdb:1s", "rocksdb:off");
        Ok(())
    })
}
