//! The runtime through the mini cluster: operators, backpressure, metrics,
//! cancellation and failures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{CollectSink, Counter, SlowSink};
use sluice::config::Configuration;
use sluice::{
    Collector, Error, FailureCause, JobStatus, KeyedContext, KeyedProcessFunction, ProcessContext, ProcessFunction,
    Result, RuntimeExecutionMode, StreamExecutionEnvironment,
};
use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn config(pairs: &[(&str, &str)]) -> Configuration {
    let mut c = Configuration::new();
    for (k, v) in pairs {
        c.set(k, v).unwrap();
    }
    c
}

#[test]
fn batch_mode_emits_final_values_once() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(3).set_runtime_mode(RuntimeExecutionMode::Batch);
    let sink = CollectSink::default();
    env.add_source(Counter::new(Some(3000)))
        .map(|x: u64| (x % 7, x))
        .key_by(|t: &(u64, u64)| t.0)
        .reduce(|a, b| (a.0, a.1 + b.1))
        .add_sink(sink.clone());
    env.execute("batch").unwrap();
    let mut out = sink.take();
    out.sort();
    let expected: Vec<(u64, u64)> = (0..7).map(|k| (k, (0..3000).filter(|x| x % 7 == k).sum())).collect();
    assert_eq!(out, expected);
}

#[derive(Clone)]
struct Dedup;

impl KeyedProcessFunction<u64, u64, u64> for Dedup {
    type State = bool;
    fn process_element(
        &mut self,
        v: u64,
        ctx: &mut KeyedContext<'_, u64, bool>,
        out: &mut dyn Collector<u64>,
    ) -> Result<()> {
        if !*ctx.state() {
            *ctx.state() = true;
            out.collect(v)?;
        }
        Ok(())
    }
}

#[derive(Clone, Default)]
struct Tagger {
    subtask: u32,
}

impl ProcessFunction<u64, (u32, u64)> for Tagger {
    fn process_element(&mut self, v: u64, ctx: &mut ProcessContext, out: &mut dyn Collector<(u32, u64)>) -> Result<()> {
        self.subtask = ctx.subtask_index();
        out.collect((self.subtask, v))
    }
}

#[test]
fn keyed_process_union_broadcast_and_rebalance() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let a = env.add_source(Counter::new(Some(500)));
    let b = env.from_collection((0..500u64).collect());
    let dedup = CollectSink::default();
    a.union(&b).key_by(|x: &u64| *x).process(Dedup).add_sink(dedup.clone());
    let tagged = CollectSink::default();
    env.from_collection(vec![1u64, 2, 3])
        .broadcast()
        .process(Tagger::default())
        .set_parallelism(3)
        .add_sink(tagged.clone());
    let spread = CollectSink::default();
    env.from_collection((0..100u64).collect()).rebalance().process(Tagger::default()).add_sink(spread.clone());
    env.execute("mixed").unwrap();

    let mut d = dedup.take();
    d.sort();
    assert_eq!(d, (0..500).collect::<Vec<_>>(), "each key once although it arrived twice");

    let mut t = tagged.take();
    t.sort();
    let expected: Vec<(u32, u64)> = (0..3).flat_map(|s| [1, 2, 3].map(|v| (s, v))).collect();
    assert_eq!(t, expected, "broadcast reaches every subtask");

    let s = spread.take();
    assert_eq!(s.len(), 100);
    assert_eq!(s.iter().filter(|(sub, _)| *sub == 0).count(), 50, "rebalance alternates");
}

#[test]
fn slow_sink_bounds_records_in_flight() {
    let env = StreamExecutionEnvironment::with_config(config(&[
        ("taskmanager.network.batch-size", "64"),
        ("taskmanager.network.channel-capacity", "2"),
    ]));
    env.set_parallelism(1);
    let source = Counter::new(None);
    let emitted = source.emitted.clone();
    let sink = SlowSink { delay: Duration::from_millis(1), received: Default::default() };
    let received = sink.received.clone();
    env.add_source(source).map(|x: u64| vec![x as u8; 1024]).rebalance().add_sink(sink).set_parallelism(1);
    let client = env.execute_async("backpressure").unwrap();
    let started = Instant::now();
    let mut max_in_flight = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let e = emitted.load(Ordering::SeqCst);
        let r = received.load(Ordering::SeqCst);
        max_in_flight = max_in_flight.max(e.saturating_sub(r));
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = received.load(Ordering::SeqCst);
    assert!(r > 100, "the sink made progress ({r})");
    // 2 batches queued + 1 being written + 1 being filled, of 64 records,
    // plus what one source poll (100 records) holds in hand.
    assert!(max_in_flight <= 4 * 64 + 100, "records in flight stayed bounded: {max_in_flight}");
    assert_eq!(client.status().unwrap(), JobStatus::Running);
    client.cancel().unwrap();
    match client.wait() {
        Err(Error::JobCanceled(_)) => {}
        other => panic!("expected a canceled job, got {other:?}"),
    }
}

fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

fn metric_value(body: &str, name: &str, operator: &str) -> Option<u64> {
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("operator_name=\"{operator}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .max()
}

#[test]
fn metrics_endpoint_counts_records() {
    let env = StreamExecutionEnvironment::with_config(config(&[("metrics.reporter.prom.port", "0")]));
    env.set_parallelism(1);
    env.add_source(Counter::new(None))
        .map(|x: u64| x)
        .filter(|x: &u64| x % 2 == 0)
        .add_sink(SlowSink { delay: Duration::from_micros(50), received: Default::default() });
    let client = env.execute_async("metrics").unwrap();
    let addr = client.metrics_address().unwrap();
    let started = Instant::now();
    let body = loop {
        let body = scrape(addr);
        if metric_value(&body, "sluice_taskmanager_job_task_operator_numRecordsIn", "Filter").unwrap_or(0) > 1000 {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "metrics never grew:\n{body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.contains("HTTP/1.1 200"), "{body}");
    let filter_in = metric_value(&body, "sluice_taskmanager_job_task_operator_numRecordsIn", "Filter").unwrap();
    let filter_out = metric_value(&body, "sluice_taskmanager_job_task_operator_numRecordsOut", "Filter").unwrap();
    assert!(filter_out <= filter_in && filter_out >= filter_in / 2 - 200, "in {filter_in} out {filter_out}");
    assert!(body.contains("job_name=\"metrics\""), "{body}");
    assert!(body.contains("subtask_index=\"0\""), "{body}");
    assert!(body.lines().any(|l| l.starts_with("sluice_jobmanager_job_uptime{")), "{body}");
    client.cancel().unwrap();
    assert!(client.wait().is_err());
}

#[derive(Clone)]
struct FailAt(u64);

impl ProcessFunction<u64, u64> for FailAt {
    fn process_element(&mut self, v: u64, _: &mut ProcessContext, out: &mut dyn Collector<u64>) -> Result<()> {
        if v == self.0 {
            return Err(sluice::Error::user(format!("record {v} is poison")));
        }
        out.collect(v)
    }
}

#[test]
fn a_failing_subtask_fails_the_job_with_its_cause() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    env.add_source(Counter::new(None)).rebalance().process(FailAt(5000)).add_sink(CollectSink::default());
    match env.execute("failing") {
        Err(Error::JobFailed { cause: FailureCause::TaskFailed { task, message, .. }, .. }) => {
            assert!(task.contains("Process"), "{task}");
            assert_eq!(message, "record 5000 is poison");
        }
        other => panic!("expected a failed job, got {other:?}"),
    }
}

#[test]
fn too_few_slots_fail_after_the_timeout() {
    let env = StreamExecutionEnvironment::with_config(config(&[
        ("taskmanager.numberOfTaskSlots", "1"),
        ("slot.request.timeout", "300ms"),
    ]));
    env.set_parallelism(3);
    env.add_source(Counter::new(Some(10))).add_sink(CollectSink::default());
    let e = env.execute("greedy").unwrap_err().to_string();
    assert!(e.contains("could not get 3 slots") && e.contains("has 1 slots"), "{e}");
}
