//! The runtime through the mini cluster: operators, backpressure, metrics,
//! cancellation and failures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use common::{CollectSink, Counter, Paced, SlowSink};
use sluice::config::Configuration;
use sluice::{
    Collector, Error, FailureCause, JobStatus, KeyedContext, KeyedProcessFunction, OutputTag, ProcessContext,
    ProcessFunction, Result, RuntimeExecutionMode, StreamExecutionEnvironment, WatermarkStrategy,
};
use sluice_test_support::http;
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
    // An operator publishes its two counters one after the other, so one
    // scrape may fall between them; the filter's ratio must hold on a scrape
    // taken while the counters are at rest, which a few tries find.
    let mut seen = Vec::new();
    let body = loop {
        let page = http::get(addr, "/metrics").unwrap();
        assert_eq!(page.status, 200, "{}", page.body);
        let filter_in =
            metric_value(&page.body, "sluice_taskmanager_job_task_operator_numRecordsIn", "Filter").unwrap_or(0);
        let filter_out =
            metric_value(&page.body, "sluice_taskmanager_job_task_operator_numRecordsOut", "Filter").unwrap_or(0);
        if filter_in > 1000 {
            seen.push((filter_in, filter_out));
            if filter_out <= filter_in && filter_out + 200 >= filter_in / 2 {
                break page.body;
            }
        }
        assert!(seen.len() < 20, "the filter's records out never matched half its records in: {seen:?}");
        assert!(started.elapsed() < Duration::from_secs(20), "metrics never grew:\n{}", page.body);
        std::thread::sleep(Duration::from_millis(50));
    };
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

/// A sink whose subtask 1 fails to open in the first attempt, after a pause
/// long enough for its producers to fill their channels towards it.
#[derive(Clone, Default)]
struct FailsToOpen(CollectSink<u64>);

impl sluice::Sink<u64> for FailsToOpen {
    fn open(&mut self, ctx: &sluice::RuntimeContext) -> Result<()> {
        if ctx.subtask_index == 1 && ctx.attempt == 0 {
            std::thread::sleep(Duration::from_millis(300));
            return Err(Error::user("cannot reach the external system"));
        }
        Ok(())
    }
    fn write(&mut self, record: u64) -> Result<()> {
        self.0.write(record)
    }
}

/// A subtask that fails while opening (before it reads its inputs) must not
/// leave its producers blocked on channels nobody drains: the attempt is
/// canceled and the restart runs the job to its end.
#[test]
fn a_subtask_failing_to_open_does_not_block_its_producers_restart() {
    let env = StreamExecutionEnvironment::with_config(config(&[
        ("taskmanager.network.batch-size", "16"),
        ("taskmanager.network.channel-capacity", "2"),
        ("restart-strategy.type", "fixed-delay"),
        ("restart-strategy.fixed-delay.attempts", "2"),
        ("restart-strategy.fixed-delay.delay", "10ms"),
    ]));
    env.set_parallelism(2);
    let sink = FailsToOpen::default();
    let collected = sink.0.clone();
    env.add_source(Counter::new(Some(20_000))).rebalance().add_sink(sink);
    let client = env.execute_async("fails to open").unwrap();
    let started = Instant::now();
    while client.status().unwrap() != JobStatus::Finished {
        if started.elapsed() > Duration::from_secs(60) {
            let details = client.details();
            // Dropping the cluster would wait for the stuck subtasks.
            std::mem::forget(client);
            std::mem::forget(env);
            panic!("the job hangs: {details:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut seen = collected.take();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, (0..20_000).collect::<Vec<_>>(), "the restarted attempt wrote every record");
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

/// Runs 5 s tumbling event-time windows (sums per key) with 2 s allowed
/// lateness over `records`, at window parallelism 2; returns the sorted
/// main results and late records.
type Readings = Vec<(String, i64)>;

fn windows_with_late_side_output(records: &[(String, i64)]) -> (Readings, Readings) {
    use sluice::api::windows::TumblingEventTimeWindows;
    let env = StreamExecutionEnvironment::with_config(config(&[("pipeline.auto-watermark-interval", "5ms")]));
    env.set_parallelism(1);
    let late_tag = OutputTag::<(String, i64)>::new("late");
    let sums = env
        .add_source(Paced { records: records.to_vec(), next: 0, pause: Duration::from_millis(60) })
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|r: &(String, i64)| r.1),
        )
        .key_by(|r: &(String, i64)| r.0.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_secs(5)))
        .allowed_lateness(Duration::from_secs(2))
        .side_output_late_data(&late_tag)
        .reduce(|a, b| (a.0, a.1 + b.1))
        .set_parallelism(2)
        .uid("sums");
    let late = sums.get_side_output(&late_tag);
    // The side output keeps the records' timestamps: it can be windowed too.
    let late_count = late
        .key_by(|r: &(String, i64)| r.0.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_secs(100)))
        .aggregate(CountLate);
    let (main_sink, late_sink, count_sink) = (CollectSink::default(), CollectSink::default(), CollectSink::default());
    sums.add_sink(main_sink.clone());
    late.add_sink(late_sink.clone());
    late_count.add_sink(count_sink.clone());
    let plan = env.job_graph("late-data").unwrap().to_string();
    let window = plan.lines().find(|l| l.contains("Window(Reduce)")).unwrap_or_default();
    assert!(
        window.contains("Main Output") && window.contains("Side Output(late)") && window.ends_with("(parallelism 2)"),
        "the projections chain to the window at its parallelism:\n{plan}"
    );
    env.execute("late-data").unwrap();
    let (mut main, mut late) = (main_sink.take(), late_sink.take());
    main.sort();
    late.sort();
    let late_total: u64 = count_sink.take().iter().sum();
    assert_eq!(late_total, late.len() as u64, "the late stream carries timestamps into its own windows");
    (main, late)
}

#[derive(Clone)]
struct CountLate;

impl sluice::state::AggregateFunction<(String, i64), u64, u64> for CountLate {
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, _: (String, i64), acc: &mut u64) {
        *acc += 1;
    }
    fn get_result(&self, acc: &u64) -> u64 {
        *acc
    }
    fn merge(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}

#[test]
fn late_window_records_go_to_the_side_output() {
    let r = |k: &str, t: i64| (k.to_string(), t);
    let (main, late) = windows_with_late_side_output(&[
        r("a", 1_000),
        r("b", 3_000),
        r("a", 2_000),
        // Watermark 11 999: [0, 5 s) fires (a 3 000, b 3 000). Both
        // [0, 5 s) and [5, 10 s) are past their cleanup time (last
        // millisecond + 2 s lateness: 6 999 and 11 999).
        r("a", 12_000),
        r("a", 1_500),  // late for [0, 5 s): side output
        r("b", 6_000),  // late for [5, 10 s): side output
        r("a", 10_500), // on time for [10, 15 s)
        // Watermark 15 999: [10, 15 s) fires (22 500); it is kept until 16 999.
        r("b", 16_000),
        r("a", 14_000), // late but within the allowed lateness: fires again (36 500)
        r("a", 18_000),
    ]);
    assert_eq!(
        main,
        vec![r("a", 3_000), r("a", 18_000), r("a", 22_500), r("a", 36_500), r("b", 3_000), r("b", 16_000)],
        "main results"
    );
    assert_eq!(late, vec![r("a", 1_500), r("b", 6_000)], "late records");
}

#[test]
fn an_unknown_side_output_is_a_clear_error() {
    let env = StreamExecutionEnvironment::new();
    let doubled = env.from_collection(vec![1u64, 2]).map(|x: u64| x * 2);
    let missing = doubled.get_side_output(&OutputTag::<u64>::new("nothing-here"));
    missing.add_sink(CollectSink::default());
    let err = env.execute("no-side-output").unwrap_err().to_string();
    assert!(err.contains("get_side_output('nothing-here')") && err.contains("no side output"), "{err}");
}

/// Parses numbers; malformed lines go to one side output, large numbers
/// (also on the main stream) to another of another type.
#[derive(Clone)]
struct ParseNumbers {
    malformed: OutputTag<String>,
    large: OutputTag<(u32, u64)>,
}

impl ProcessFunction<String, u64> for ParseNumbers {
    fn process_element(&mut self, line: String, ctx: &mut ProcessContext, out: &mut dyn Collector<u64>) -> Result<()> {
        match line.parse::<u64>() {
            Ok(n) => {
                if n >= 100 {
                    ctx.output(&self.large, (ctx.subtask_index(), n))?;
                }
                out.collect(n)
            }
            Err(_) => ctx.output(&self.malformed, line),
        }
    }
}

/// Passes the first record of each key; repeats go to a side output, and a
/// timer at the end of input sends each key's count to another.
#[derive(Clone)]
struct FirstOfKey {
    repeats: OutputTag<(u64, u64)>,
    counts: OutputTag<(u64, u64)>,
}

impl KeyedProcessFunction<u64, (u64, u64), u64> for FirstOfKey {
    type State = u64;
    fn process_element(
        &mut self,
        v: (u64, u64),
        ctx: &mut KeyedContext<'_, u64, u64>,
        out: &mut dyn Collector<u64>,
    ) -> Result<()> {
        *ctx.state() += 1;
        if *ctx.state() == 1 {
            ctx.register_event_time_timer(i64::MAX - 1)?;
            out.collect(v.1)
        } else {
            ctx.output(&self.repeats, v)
        }
    }
    fn on_timer(&mut self, _: i64, ctx: &mut KeyedContext<'_, u64, u64>, _: &mut dyn Collector<u64>) -> Result<()> {
        let (key, count) = (*ctx.key(), *ctx.state());
        ctx.output(&self.counts, (key, count))
    }
}

#[test]
fn process_functions_send_records_to_side_outputs() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let (malformed, large) = (OutputTag::<String>::new("malformed"), OutputTag::<(u32, u64)>::new("large"));
    let lines: Vec<String> = (0..300u64).map(|i| if i % 7 == 3 { format!("bad-{i}") } else { i.to_string() }).collect();
    let numbers = env
        .from_collection(lines)
        .rebalance()
        .process(ParseNumbers { malformed: malformed.clone(), large: large.clone() })
        .uid("parse");
    let (main_sink, bad_sink, large_sink) = (CollectSink::default(), CollectSink::default(), CollectSink::default());
    numbers.add_sink(main_sink.clone());
    numbers.get_side_output(&malformed).add_sink(bad_sink.clone());
    numbers.get_side_output(&large).add_sink(large_sink.clone());

    let (repeats, counts) = (OutputTag::<(u64, u64)>::new("repeats"), OutputTag::<(u64, u64)>::new("counts"));
    let firsts = env
        .from_collection((0..100u64).map(|i| (i % 10, i)).collect())
        .key_by(|r: &(u64, u64)| r.0)
        .process(FirstOfKey { repeats: repeats.clone(), counts: counts.clone() });
    let (first_sink, repeat_sink, count_sink) =
        (CollectSink::default(), CollectSink::default(), CollectSink::default());
    firsts.add_sink(first_sink.clone());
    firsts.get_side_output(&repeats).add_sink(repeat_sink.clone());
    firsts.get_side_output(&counts).add_sink(count_sink.clone());

    let plan = env.job_graph("side-outputs").unwrap().to_string();
    let process = plan.lines().find(|l| l.contains("Process") && !l.contains("Keyed")).unwrap_or_default();
    assert!(
        process.contains("Main Output")
            && process.contains("Side Output(malformed)")
            && process.contains("Side Output(large)"),
        "the projections chain to the process operator:\n{plan}"
    );
    env.execute("side-outputs").unwrap();

    let mut main = main_sink.take();
    main.sort();
    assert_eq!(main, (0..300).filter(|i| i % 7 != 3).collect::<Vec<_>>(), "well-formed numbers");
    let mut bad = bad_sink.take();
    bad.sort();
    let mut expected_bad: Vec<String> = (0..300u64).filter(|i| i % 7 == 3).map(|i| format!("bad-{i}")).collect();
    expected_bad.sort();
    assert_eq!(bad, expected_bad, "malformed lines, none lost");
    let large_out = large_sink.take();
    let mut large_values: Vec<u64> = large_out.iter().map(|r| r.1).collect();
    large_values.sort();
    assert_eq!(large_values, (100..300).filter(|i| i % 7 != 3).collect::<Vec<_>>(), "large numbers");
    assert!(large_out.iter().any(|r| r.0 == 0) && large_out.iter().any(|r| r.0 == 1), "both subtasks sent some");

    let mut firsts = first_sink.take();
    firsts.sort();
    assert_eq!(firsts, (0..10).collect::<Vec<_>>());
    let mut rep = repeat_sink.take();
    rep.sort();
    let mut expected_rep: Vec<(u64, u64)> = (10..100u64).map(|i| (i % 10, i)).collect();
    expected_rep.sort();
    assert_eq!(rep, expected_rep, "repeats");
    let mut cnt = count_sink.take();
    cnt.sort();
    assert_eq!(cnt, (0..10u64).map(|k| (k, 10)).collect::<Vec<_>>(), "timers send to side outputs too");
}

#[test]
fn a_side_output_read_as_another_type_is_a_clear_error() {
    let env = StreamExecutionEnvironment::new();
    let (malformed, large) = (OutputTag::<String>::new("malformed"), OutputTag::<(u32, u64)>::new("large"));
    let numbers =
        env.from_collection(vec!["1".to_string(), "x".to_string()]).process(ParseNumbers { malformed, large });
    numbers.get_side_output(&OutputTag::<u64>::new("malformed")).add_sink(CollectSink::default());
    numbers.add_sink(CollectSink::default());
    let err = env.execute("wrong-side-type").unwrap_err().to_string();
    assert!(err.contains("side output 'malformed'") && err.contains("u64"), "{err}");
}
