//! # sluice-bench
//!
//! Sluice's benchmarks, each a binary:
//!
//! * `bench_wordcount` — datagen WordCount on the engine next to a
//!   hand-written loop;
//! * `bench_kafka` — the Kafka WordCount's drain rate with the exactly-once
//!   sink, the at-least-once sink and a raw rdkafka loop (optionally on a
//!   local standalone cluster, [`cluster`]);
//! * `bench_state` — the heap and RocksDB state backends under many keys;
//! * `bench_nexmark` — Nexmark queries ([`nexmark`]), each checked against
//!   an independent reference.
//!
//! The jobs they measure come from `sluice-examples`; this library holds what
//! the benchmarks share: a local cluster of real processes and this process's
//! resource readings. Apache Flink's side of `bench_state` is the Maven
//! project in `bench/flink/`.
#![deny(missing_docs)]

pub mod cluster;
pub mod nexmark;
pub mod sink_phases;

/// This process's peak resident set size in KiB (`VmHWM`, Linux), 0 if unknown.
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU time (user and system) this process has used so far, in seconds.
pub fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| stat_cpu(&s)).unwrap_or(0.0)
}

/// CPU seconds (user + system) of this process's live threads whose name
/// starts with `prefix` (Linux; 0 elsewhere), e.g. one task's thread.
pub fn thread_cpu_seconds(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix)))
        .filter_map(|t| stat_cpu(&std::fs::read_to_string(t.path().join("stat")).ok()?))
        .sum()
}

/// Seconds that this process's live threads whose name starts with
/// `prefix` were ready to run but waited for a CPU (Linux schedstat's run
/// delay; 0 elsewhere): how much other threads held them back.
pub fn thread_wait_seconds(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix)))
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            stat.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .sum::<f64>()
        / 1e9
}

/// utime + stime of a `/proc/.../stat` line, in seconds: fields 14 and 15,
/// in clock ticks of 1/100 s (USER_HZ). The command name before them may
/// hold spaces, so fields are counted after its closing parenthesis.
fn stat_cpu(stat: &str) -> Option<f64> {
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
