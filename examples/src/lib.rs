//! # sluice-examples
//!
//! Runnable Sluice jobs and the pieces they share:
//!
//! * `wordcount` — batch WordCount over a text file;
//! * `socket_wordcount` — streaming WordCount over a socket text stream;
//! * `datagen_wordcount` — streaming WordCount over a user-defined generator
//!   source ([`WordGenerator`], the example of a custom `Source`);
//! * `kafka_wordcount` — streaming WordCount from a Kafka topic to another,
//!   exactly-once;
//! * `kafka_feed` — feeds a text file into a Kafka topic.
//!
//! The benchmarks are in `sluice-bench` (`bench/`).
#![deny(missing_docs)]

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
