//! # sluice-examples
//!
//! Runnable Sluice jobs and the pieces they share:
//!
//! * `wordcount` — batch WordCount over a text file;
//! * `socket_wordcount` — streaming WordCount over a socket text stream;
//! * `datagen_wordcount` — streaming WordCount over a user-defined generator
//!   source ([`WordGenerator`], the example of a custom `Source`);
//! * `bench_wordcount` — the engine next to a hand-written loop.
#![deny(missing_docs)]

pub mod bench_cluster;
pub mod generator;

pub use generator::WordGenerator;
use sluice::DataStream;

/// Splits text into words the way every WordCount here does: lowercase the
/// text, split on every character that is not alphanumeric (Unicode), drop
/// empty strings.
///
/// ```
/// assert_eq!(sluice_examples::tokenize("Héllo, WORLD! 你好 x2"), ["héllo", "world", "你好", "x2"]);
/// ```
pub fn tokenize(line: &str) -> Vec<String> {
    line.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// The streaming WordCount every example shares: running `(word, count)`
/// per word occurrence, words split by [`tokenize`].
pub fn running_word_counts(text: &DataStream<String>) -> DataStream<(String, u64)> {
    text.flat_map(|line: String| tokenize(&line).into_iter().map(|w| (w, 1u64)))
        .key_by(|(word, _)| word.clone())
        .sum(|t: &mut (String, u64)| &mut t.1)
}

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

/// Logs to stderr; the level comes from `SLUICE_LOG` (default `warn`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Runs a job's `main` body: on error prints `error: ...` to stderr and
/// exits with status 1, without a panic or backtrace.
pub fn run_main(body: impl FnOnce() -> anyhow::Result<()>) -> std::process::ExitCode {
    init_logging();
    match body() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
