//! Benchmark: the Kafka drain rate of WordCount with exactly-once output,
//! next to the same job with at-least-once output and a raw rdkafka loop.
//!
//! `cargo run --release -p sluice-bench --bin bench_kafka -- [--bootstrap-servers 127.0.0.1:9092] [--words 5000000] [-p 2] [--intervals-ms 1000,200]`
//!
//! One run pre-loads a new input topic (`bench-<unix time>-lines`,
//! `--partitions 2`) with lines of `--words-per-line 10` words drawn from a
//! fixed vocabulary (`--vocabulary 5000`, `--seed 42`: the same flags give
//! the same lines), at least `--words` words in all, and prints how long the
//! load took. Then it turns that topic three ways into an output topic of
//! running word counts (key = word, value = its running count as decimal
//! text, one record per word occurrence — what `kafka_wordcount` writes):
//!
//! 1. the Sluice job with `KafkaTransactionalSink` (exactly-once),
//!    parallelism `-p`, once per checkpoint interval of `--intervals-ms`
//!    (default 1 s and 200 ms);
//! 2. the same job with `KafkaSink::at_least_once`, at the same intervals;
//! 3. a raw rdkafka loop in one thread, no engine: consume (read_committed)
//!    up to the end offsets seen at start, tokenize, count in a `HashMap`,
//!    produce one record per word with an idempotent producer, flush.
//!
//! Each run is its own child process of this binary, writes its own output
//! topic (created beforehand with the input's partition count) and is timed
//! from its start until all its output is flushed or committed (for the
//! engine runs: until `env.execute` returns). Afterwards the parent reads
//! every output topic back with `read_committed` (not timed) to count the
//! records and check that each word's values are exactly 1, 2, ... n.
//! The three ways run `--runs 3` times, interleaved (EO, ALO, raw, EO, ...);
//! the table shows the median seconds with the range, input lines/s,
//! words/s, output records/s and peak RSS, and, per interval, the ratios
//! against the targets of the exactly-once sink: at least 95% of
//! at-least-once's throughput at 1 s checkpoints, 90% at 200 ms, and at
//! least 80% of the raw loop. Then a table of the Kafka sinks' phases
//! (`sluice_connectors::kafka::phases`): seconds spent opening, recovering,
//! preparing producers (background), waiting for them, beginning,
//! blocked on a full queue, flushing, committing and closing, summed over
//! the sink subtasks — where the exactly-once sink's extra time goes. These
//! are figures, not assertions: a missed target is printed, never an error.
//!
//! The raw loop's consumer has the settings of `KafkaSource` (librdkafka
//! defaults, read_committed) and its producer those of `KafkaSink`
//! (idempotent, `linger.ms=5`), so the comparison is about the engine, not
//! about client tuning.
//!
//! With `--cluster`, a fourth way runs: the exactly-once job submitted with
//! `sluice run -p` to a local standalone cluster of one JobManager and two
//! TaskManagers (started once, before the runs, from the `sluice` binary
//! next to this one; slots split so that the job's subtasks are on both
//! TaskManagers and records cross processes over TCP). It is timed from the
//! submission until `sluice run` returns, so it also pays the upload of the
//! binary and the start of the job's processes.
//!
//! The run's topics are deleted at the end unless `--keep-topics` is given
//! (consumer groups `bench-<unix time>-*` stay); checkpoint directories live
//! in a temporary directory that is removed. Without a broker it ends with
//! an error saying how to start the local one.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message, ToBytes};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use sluice::{ParameterTool, StreamExecutionEnvironment};
use sluice_bench::cluster::LocalCluster;
use sluice_bench::{peak_rss_kb, sink_phases};
use sluice_connectors::kafka::{KafkaSink, KafkaSource, KafkaTransactionalSink, StartingOffsets};
use sluice_examples::{run_main, running_word_counts, tokenize};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// mimalloc frees records allocated on another subtask's thread cheaply.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TIMEOUT: Duration = Duration::from_secs(60);
const EXACTLY_ONCE: &str = "exactly-once";
const AT_LEAST_ONCE: &str = "at-least-once";
const RAW: &str = "raw";
const CLUSTER: &str = "cluster-exactly-once";

fn unreachable_broker(bootstrap: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot reach Kafka at {bootstrap}: {e} (is the broker running? start it with scripts/kafka-local.sh start)"
    )
}

/// Fails unless some bootstrap server accepts a TCP connection.
fn probe_tcp(bootstrap: &str) -> anyhow::Result<()> {
    use std::net::{TcpStream, ToSocketAddrs};
    let mut last = String::from("no address given");
    for server in bootstrap.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match server.to_socket_addrs() {
            Ok(addrs) => {
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                        Ok(_) => return Ok(()),
                        Err(e) => last = format!("{addr}: {e}"),
                    }
                }
            }
            Err(e) => last = format!("{server}: {e}"),
        }
    }
    Err(unreachable_broker(bootstrap, last))
}

/// Runs a future of the admin client to completion on this thread (the
/// admin client drives its futures from its own polling thread).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(50)),
        }
    }
}

/// Counts failed deliveries of a producer (the default context drops them).
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                if let Ok(mut first) = self.first_error.lock() {
                    *first = Some(e.to_string());
                }
            }
        }
    }
}

type CountingProducer = ThreadedProducer<Deliveries>;

fn check_deliveries(producer: &CountingProducer, what: &str) -> anyhow::Result<()> {
    let context = producer.context();
    let failed = context.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = context.first_error.lock().ok().and_then(|g| g.clone()).unwrap_or_default();
        anyhow::bail!("{failed} records of {what} were not delivered (first error: {first})");
    }
    Ok(())
}

/// Sends, waiting while the producer's queue is full (as the Sluice sinks do).
fn send_blocking<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
    producer: &CountingProducer,
    mut record: BaseRecord<'_, K, P>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, r)) => anyhow::bail!("cannot send to topic '{}': {e}", r.topic),
        }
    }
}

/// The vocabulary: `n` (at most 10,000) distinct lowercase words of two
/// consonant-vowel syllables, which `tokenize` keeps as they are.
fn vocabulary(n: usize) -> anyhow::Result<Vec<String>> {
    const CONSONANTS: &[u8] = b"bcdfghjklmnpqrstvwxz";
    const VOWELS: &[u8] = b"aeiou";
    if n == 0 || n > 10_000 {
        anyhow::bail!("--vocabulary must be between 1 and 10000, not {n}");
    }
    let syllable = |k: usize| [CONSONANTS[k / 5 % 20] as char, VOWELS[k % 5] as char];
    Ok((0..n).map(|i| syllable(i % 100).into_iter().chain(syllable(i / 100)).collect()).collect())
}

/// SplitMix64: deterministic and fast.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Workload {
    lines: u64,
    words_per_line: u64,
    vocabulary: usize,
    seed: u64,
    partitions: i32,
}

/// Writes the input lines, line *i* to partition *i* mod partitions, as fast
/// as the producer allows. Returns the bytes written.
fn load(bootstrap: &str, topic: &str, w: &Workload) -> anyhow::Result<u64> {
    let words = vocabulary(w.vocabulary)?;
    let producer: CountingProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "50")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "100000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(Deliveries::default())?;
    let mut rng = w.seed;
    let mut line = String::new();
    let mut bytes = 0u64;
    for i in 0..w.lines {
        line.clear();
        for j in 0..w.words_per_line {
            if j > 0 {
                line.push(' ');
            }
            line.push_str(&words[(next_random(&mut rng) % words.len() as u64) as usize]);
        }
        bytes += line.len() as u64;
        let partition = (i % w.partitions as u64) as i32;
        send_blocking(&producer, BaseRecord::<str, str>::to(topic).partition(partition).payload(&line))?;
    }
    producer.flush(Duration::from_secs(300)).map_err(|e| anyhow::anyhow!("cannot flush the input load: {e}"))?;
    check_deliveries(&producer, "the input load")?;
    Ok(bytes)
}

fn admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new().set("bootstrap.servers", bootstrap).create()?)
}

fn create_topics(bootstrap: &str, topics: &[String], partitions: i32) -> anyhow::Result<()> {
    let admin = admin(bootstrap)?;
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in block_on(admin.create_topics(&new, &options)).map_err(|e| unreachable_broker(bootstrap, e))? {
        if let Err((topic, code)) = result {
            anyhow::bail!("cannot create topic '{topic}': {code}");
        }
    }
    Ok(())
}

fn delete_topics(bootstrap: &str, topics: &[String]) -> anyhow::Result<()> {
    let admin = admin(bootstrap)?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in block_on(admin.delete_topics(&names, &options))? {
        if let Err((topic, code)) = result {
            anyhow::bail!("cannot delete topic '{topic}': {code}");
        }
    }
    Ok(())
}

/// The consumer settings of `KafkaSource` (read_committed, no auto commit).
fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    c
}

fn consumer(bootstrap: &str, group: &str) -> anyhow::Result<BaseConsumer> {
    Ok(consumer_config(bootstrap, group).create()?)
}

/// Assigns every partition of `topic` from the beginning; returns the end
/// offset of each non-empty partition, read now.
fn assign_all(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        anyhow::bail!("topic '{topic}' does not exist");
    }
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
            ends.insert(p, high);
        }
    }
    consumer.assign(&tpl)?;
    Ok(ends)
}

/// Drops the partitions whose position reached their end offset (also past
/// trailing transaction markers, which deliver no message).
fn drop_finished(consumer: &BaseConsumer, topic: &str, ends: &mut HashMap<i32, i64>) -> anyhow::Result<()> {
    let positions = consumer.position()?;
    ends.retain(|p, end| {
        !matches!(positions.find_partition(topic, *p).map(|e| e.offset()), Some(Offset::Offset(o)) if o >= *end)
    });
    Ok(())
}

/// The raw loop: returns (lines consumed, records produced).
fn raw_loop(bootstrap: &str, input: &str, output: &str, group: &str) -> anyhow::Result<(u64, u64)> {
    let consumer = consumer(bootstrap, group)?;
    let mut ends = assign_all(&consumer, input)?;
    let producer: CountingProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create_with_context(Deliveries::default())?;
    let mut counts: HashMap<String, u64> = HashMap::new();
    let (mut lines, mut produced) = (0u64, 0u64);
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            None => drop_finished(&consumer, input, &mut ends)?,
            Some(Err(e)) => anyhow::bail!("consuming '{input}' failed: {e}"),
            Some(Ok(m)) => {
                let (partition, offset) = (m.partition(), m.offset());
                let Some(&end) = ends.get(&partition) else { continue };
                if offset >= end {
                    continue;
                }
                let line = std::str::from_utf8(m.payload().unwrap_or_default())
                    .map_err(|e| anyhow::anyhow!("record {input}/{partition}@{offset} is not UTF-8: {e}"))?;
                for word in tokenize(line) {
                    let count = match counts.get_mut(&word) {
                        Some(c) => {
                            *c += 1;
                            *c
                        }
                        None => {
                            counts.insert(word.clone(), 1);
                            1
                        }
                    };
                    let value = count.to_string();
                    send_blocking(&producer, BaseRecord::to(output).key(word.as_str()).payload(value.as_str()))?;
                    produced += 1;
                }
                lines += 1;
                if offset + 1 >= end {
                    ends.remove(&partition);
                }
            }
        }
    }
    producer.flush(TIMEOUT).map_err(|e| anyhow::anyhow!("cannot flush '{output}': {e}"))?;
    check_deliveries(&producer, output)?;
    Ok((lines, produced))
}

#[allow(clippy::too_many_arguments)]
fn engine_job(
    delivery: &str,
    interval: Duration,
    bootstrap: &str,
    input: &str,
    output: &str,
    tag: &str,
    parallelism: u32,
    checkpoint_dir: &Path,
) -> anyhow::Result<()> {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(parallelism);
    env.enable_checkpointing(interval)?;
    let dir = checkpoint_dir.to_str().ok_or_else(|| anyhow::anyhow!("temporary directory path is not UTF-8"))?;
    env.set_config("state.checkpoints.dir", dir)?;
    let source = KafkaSource::strings(bootstrap, &[input])
        .starting_offsets(StartingOffsets::Earliest)
        .group_id(&format!("{tag}-group"))
        .bounded_at_latest();
    let lines = env.add_source(source).name("Kafka Source").uid("kafka-source");
    let counts = running_word_counts(&lines);
    let serialize = |(word, count): &(String, u64)| (Some(word.clone().into_bytes()), count.to_string().into_bytes());
    match delivery {
        EXACTLY_ONCE => {
            counts
                .sink_to(KafkaTransactionalSink::new(bootstrap, output, &format!("{tag}-txn"), serialize))
                .uid("kafka-sink");
        }
        AT_LEAST_ONCE => {
            counts.add_sink(KafkaSink::at_least_once(bootstrap, output, serialize)).uid("kafka-sink");
        }
        other => anyhow::bail!("unknown delivery {other}"),
    }
    env.execute(&format!("bench_kafka {delivery}"))?;
    Ok(())
}

/// A measured run, in the child process.
fn child(params: &ParameterTool, mode: &str) -> anyhow::Result<()> {
    let bootstrap = params.get_required("bootstrap-servers")?;
    let input = params.get_required("input-topic")?;
    let output = params.get_required("output-topic")?;
    let tag = params.get_required("tag")?;
    let parallelism = params.get_u64_or("p", 2)? as u32;
    let started = Instant::now();
    let (lines, produced) = match mode {
        RAW => raw_loop(bootstrap, input, output, &format!("{tag}-group"))?,
        delivery => {
            let dir = PathBuf::from(params.get_required("checkpoint-dir")?);
            let interval = Duration::from_millis(params.get_u64_or("checkpoint-interval-ms", 1000)?);
            engine_job(delivery, interval, bootstrap, input, output, tag, parallelism, &dir)?;
            (0, 0)
        }
    };
    let secs = started.elapsed().as_secs_f64();
    println!("RESULT seconds={secs} lines={lines} produced={produced} rss_kb={}", peak_rss_kb());
    sink_phases::print_phase_lines();
    Ok(())
}

struct ChildResult {
    secs: f64,
    /// The Kafka sink's phase totals (none for the raw loop and the cluster).
    phases: Vec<sink_phases::RunPhase>,
    /// Lines the raw loop consumed (0 for the engine runs).
    lines: u64,
    rss_kb: u64,
}

fn measure(exe: &Path, args: &[String]) -> anyhow::Result<ChildResult> {
    let out = Command::new(exe).args(args).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        anyhow::bail!("benchmark child {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let line = stdout.lines().find(|l| l.starts_with("RESULT ")).ok_or_else(|| anyhow::anyhow!("no RESULT line"))?;
    let field = |name: &str| -> Option<&str> {
        line.split_whitespace().find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    };
    Ok(ChildResult {
        secs: field("seconds").and_then(|v| v.parse().ok()).unwrap_or(f64::NAN),
        lines: field("lines").and_then(|v| v.parse().ok()).unwrap_or(0),
        rss_kb: field("rss_kb").and_then(|v| v.parse().ok()).unwrap_or(0),
        phases: sink_phases::parse_phase_lines(&stdout),
    })
}

/// What the committed output topic holds.
struct OutputCheck {
    records: u64,
    /// Records whose value is not the word's previous value + 1.
    out_of_sequence: u64,
    /// Sum over words of the last value seen.
    final_total: u64,
}

/// Reads `topic` with read_committed to its end and checks every word's
/// values run 1, 2, ... n (one producer per word, so in order).
fn read_output(bootstrap: &str, topic: &str, group: &str) -> anyhow::Result<OutputCheck> {
    // librdkafka pauses fetching for fetch.queue.backoff.ms (1 s) whenever
    // queued.min.messages are waiting; this reader is far faster than that.
    let consumer: BaseConsumer = consumer_config(bootstrap, group)
        .set("queued.min.messages", "1000000")
        .set("fetch.queue.backoff.ms", "10")
        .create()?;
    let mut ends = assign_all(&consumer, topic)?;
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut check = OutputCheck { records: 0, out_of_sequence: 0, final_total: 0 };
    let mut idle_since = Instant::now();
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                drop_finished(&consumer, topic, &mut ends)?;
                if idle_since.elapsed() > Duration::from_secs(15) {
                    eprintln!("warning: '{topic}' gave nothing for 15 s before its end offsets; counted what was read");
                    break;
                }
            }
            Some(Err(e)) => anyhow::bail!("reading '{topic}' failed: {e}"),
            Some(Ok(m)) => {
                idle_since = Instant::now();
                check.records += 1;
                let word = std::str::from_utf8(m.key().unwrap_or_default()).unwrap_or_default();
                let value: u64 =
                    std::str::from_utf8(m.payload().unwrap_or_default()).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
                let previous = match last.get_mut(word) {
                    Some(v) => std::mem::replace(v, value),
                    None => {
                        last.insert(word.to_string(), value);
                        0
                    }
                };
                if value != previous + 1 {
                    check.out_of_sequence += 1;
                }
                if ends.get(&m.partition()).is_some_and(|end| m.offset() + 1 >= *end) {
                    ends.remove(&m.partition());
                }
            }
        }
    }
    check.final_total = last.values().sum();
    Ok(check)
}

/// Removes its directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

/// One row of the table: the runs of one way, in order.
struct Row {
    mode: &'static str,
    /// The checkpoint interval of the engine runs (ignored by the raw loop).
    interval_ms: u64,
    name: String,
    runs: Vec<(ChildResult, OutputCheck)>,
}

impl Row {
    /// A row of `mode` at checkpoint interval `interval_ms`.
    fn new(mode: &'static str, interval_ms: u64, what: &str) -> Row {
        let name = match mode {
            RAW => what.to_string(),
            _ => format!("{what}, {}", interval_label(interval_ms)),
        };
        Row { mode, interval_ms, name, runs: Vec::new() }
    }

    /// What tells this row's runs apart in topic and directory names.
    fn key(&self) -> String {
        format!("{}-{}ms", self.mode, self.interval_ms)
    }
}

/// `1 s` or `200 ms`.
fn interval_label(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

impl Row {
    fn median_secs(&self) -> f64 {
        let mut secs: Vec<f64> = self.runs.iter().map(|(r, _)| r.secs).collect();
        secs.sort_by(f64::total_cmp);
        match secs.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => secs[n / 2],
            n => (secs[n / 2 - 1] + secs[n / 2]) / 2.0,
        }
    }
}

fn main() -> std::process::ExitCode {
    run_main(|| {
        let params = ParameterTool::from_env()?;
        if let Some(mode) = params.get("mode") {
            return child(&params, mode);
        }
        let bootstrap = params.get_or("bootstrap-servers", "127.0.0.1:9092").to_string();
        let target_words = params.get_u64_or("words", 5_000_000)?.max(1);
        let parallelism = params.get_u64_or("p", 2)?.max(1);
        let partitions = params.get_u64_or("partitions", 2)?.clamp(1, 1000) as i32;
        let words_per_line = params.get_u64_or("words-per-line", 10)?.max(1);
        let repeats = params.get_u64_or("runs", 3)?.max(1);
        let workload = Workload {
            lines: target_words.div_ceil(words_per_line),
            words_per_line,
            vocabulary: params.get_u64_or("vocabulary", 5000)? as usize,
            seed: params.get_u64_or("seed", 42)?,
            partitions,
        };
        let words = workload.lines * words_per_line;

        // The broker must answer before anything else (a TCP connect first:
        // librdkafka logs a storm of errors while it retries).
        probe_tcp(&bootstrap)?;
        let probe = consumer(&bootstrap, "bench-kafka-probe")?;
        probe.fetch_metadata(None, Duration::from_secs(10)).map_err(|e| unreachable_broker(&bootstrap, e))?;
        drop(probe);

        let unix = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let tag = format!("bench-{unix}");
        let input = format!("{tag}-lines");
        let intervals: Vec<u64> = params
            .get_or("intervals-ms", "1000,200")
            .split(',')
            .map(|ms| ms.trim().parse::<u64>().map(|ms| ms.max(1)))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("--intervals-ms takes checkpoint intervals in ms, e.g. 1000,200: {e}"))?;
        let first_interval = *intervals.first().ok_or_else(|| anyhow::anyhow!("--intervals-ms is empty"))?;
        let mut rows = Vec::new();
        for &ms in &intervals {
            rows.push(Row::new(EXACTLY_ONCE, ms, "sluice, exactly-once"));
            rows.push(Row::new(AT_LEAST_ONCE, ms, "sluice, at-least-once"));
        }
        rows.push(Row::new(RAW, 0, "raw rdkafka loop (1 thread)"));
        if params.has("cluster") {
            rows.push(Row::new(CLUSTER, first_interval, "cluster (2 TMs), exactly-once"));
        }
        let output = |key: &str, k: u64| format!("{tag}-out-{key}-{k}");
        let mut topics = vec![input.clone()];
        for k in 0..repeats {
            topics.extend(rows.iter().map(|row| output(&row.key(), k)));
        }
        create_topics(&bootstrap, &topics, partitions)?;

        println!(
            "Kafka WordCount drain rate: {} lines x {words_per_line} words = {words} words, vocabulary {}, \
             {partitions} partitions, engine parallelism {parallelism}, checkpoints every {}, {repeats} run(s) \
             of each, {} cores, broker {bootstrap}, load average {}",
            workload.lines,
            workload.vocabulary,
            intervals.iter().map(|&ms| interval_label(ms)).collect::<Vec<_>>().join(" / "),
            std::thread::available_parallelism()?.get(),
            load_average()
        );
        let started = Instant::now();
        let bytes = load(&bootstrap, &input, &workload)?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "loaded topic '{input}' in {secs:.2} s: {} lines/s, {:.1} MB/s of values ({:.1} MB)",
            (workload.lines as f64 / secs) as u64,
            bytes as f64 / 1e6 / secs,
            bytes as f64 / 1e6
        );

        let exe = std::env::current_exe()?;
        let cluster = match params.has("cluster") {
            true => Some(LocalCluster::start(&exe, 2, (parallelism as u32).div_ceil(2))?),
            false => None,
        };
        let temp = TempDir(std::env::temp_dir().join(format!("sluice-{tag}-{}", std::process::id())));
        std::fs::create_dir_all(&temp.0)?;
        // Interleaved (EO, ALO, raw, EO, ...) so that drifting load hits all alike.
        for k in 0..repeats {
            for row in rows.iter_mut() {
                let (mode, key, name) = (row.mode, row.key(), row.name.clone());
                let out = output(&key, k);
                let checkpoint_dir = temp.0.join(format!("{key}-{k}"));
                let args: Vec<String> = [
                    "--mode",
                    if mode == CLUSTER { EXACTLY_ONCE } else { mode },
                    "--bootstrap-servers",
                    &bootstrap,
                    "--input-topic",
                    &input,
                    "--output-topic",
                    &out,
                    "--tag",
                    &format!("{tag}-{key}-{k}"),
                    "--checkpoint-interval-ms",
                    &row.interval_ms.to_string(),
                    "--checkpoint-dir",
                    checkpoint_dir.to_str().ok_or_else(|| anyhow::anyhow!("temporary directory path is not UTF-8"))?,
                    "-p",
                    &parallelism.to_string(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                let load_before = load_average();
                let run = match (&cluster, mode) {
                    (Some(cluster), CLUSTER) => {
                        let started = Instant::now();
                        cluster.run(parallelism as u32, &exe, &args)?;
                        ChildResult { secs: started.elapsed().as_secs_f64(), lines: 0, rss_kb: 0, phases: Vec::new() }
                    }
                    _ => measure(&exe, &args)?,
                };
                if run.lines != 0 && run.lines != workload.lines {
                    eprintln!("warning: {name} consumed {} lines, not {}", run.lines, workload.lines);
                }
                let check = read_output(&bootstrap, &out, &format!("{tag}-{key}-{k}-verify"))?;
                eprintln!(
                    "run {}/{repeats} {name}: {:.2} s, {} output records (load average before: {load_before})",
                    k + 1,
                    run.secs,
                    check.records
                );
                row.runs.push((run, check));
            }
        }
        drop(temp);
        drop(cluster);

        println!();
        println!(
            "{:<34} {:>8} {:>13} {:>10} {:>11} {:>11} {:>11}  {:<14} {:>7}",
            "run", "seconds", "(min-max)", "lines/s", "words/s", "out recs/s", "out recs", "output check", "RSS MiB"
        );
        for row in &rows {
            let secs = row.median_secs();
            let min = row.runs.iter().map(|(r, _)| r.secs).fold(f64::INFINITY, f64::min);
            let max = row.runs.iter().map(|(r, _)| r.secs).fold(f64::NEG_INFINITY, f64::max);
            let records = row.runs.iter().map(|(_, c)| c.records).max().unwrap_or(0);
            let wrong = row
                .runs
                .iter()
                .filter(|(_, c)| !(c.records == words && c.out_of_sequence == 0 && c.final_total == words))
                .count();
            let check = if wrong == 0 { "exact".to_string() } else { format!("{wrong} run(s) WRONG") };
            let rss = row.runs.iter().map(|(r, _)| r.rss_kb).max().unwrap_or(0);
            println!(
                "{:<34} {secs:>8.2} {:>13} {:>10.0} {:>11.0} {:>11.0} {records:>11}  {check:<14} {:>7.1}",
                row.name,
                format!("({min:.2}-{max:.2})"),
                workload.lines as f64 / secs,
                words as f64 / secs,
                records as f64 / secs,
                rss as f64 / 1024.0
            );
        }
        let find = |mode: &str, ms: u64| rows.iter().find(|r| r.mode == mode && (mode == RAW || r.interval_ms == ms));
        println!();
        println!(
            "seconds: median of the runs, from the start of the run until all its output is flushed or committed;"
        );
        println!("out recs: committed records read back with read_committed; exact = every word's values 1, 2, ... n.");
        for &ms in &intervals {
            let (Some(eo), Some(alo), Some(raw)) = (find(EXACTLY_ONCE, ms), find(AT_LEAST_ONCE, ms), find(RAW, 0))
            else {
                continue;
            };
            let vs_alo = alo.median_secs() / eo.median_secs();
            let vs_raw = raw.median_secs() / eo.median_secs();
            let target = if ms >= 1000 { 0.95 } else { 0.90 };
            println!(
                "checkpoints every {}: exactly-once is {:.1}% of at-least-once's throughput (target: >= {:.0}%): {}; \
                 {:.1}% of the raw loop's (target: >= 80%): {}",
                interval_label(ms),
                100.0 * vs_alo,
                100.0 * target,
                verdict(vs_alo >= target),
                100.0 * vs_raw,
                verdict(vs_raw >= 0.80)
            );
        }

        let phase_rows: Vec<_> = rows
            .iter()
            .filter(|row| row.mode != RAW)
            .map(|row| (row.name.as_str(), row.runs.iter().map(|(r, _)| r.phases.clone()).collect()))
            .collect();
        sink_phases::print_phase_table(&phase_rows);

        if let (Some(eo), Some(cl)) = (find(EXACTLY_ONCE, first_interval), find(CLUSTER, first_interval)) {
            println!(
                "cluster vs mini cluster (exactly-once, {}): {:.1}% of its throughput",
                interval_label(first_interval),
                100.0 * eo.median_secs() / cl.median_secs()
            );
        }

        if params.has("keep-topics") {
            println!("kept topics: {}", topics.join(", "));
        } else if let Err(e) = delete_topics(&bootstrap, &topics) {
            eprintln!("warning: {e}");
        }
        Ok(())
    })
}
