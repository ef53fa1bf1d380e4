//! Golden pipelines: a keyed running sum, event-time windows (tumbling
//! aggregate, session reduce) and a keyed process function with map state
//! and event-time timers, all off one source of timestamped events. Each
//! runs straight through, then with checkpoints and a failure injected at a
//! random record, then stopped with a savepoint and restored at parallelism
//! 1, 2 and 3 — on the heap and on the RocksDB backend. Every output must
//! equal what the events imply, computed here independently.
//!
//! Results are compared as maps (key → value); the collecting sinks are not
//! transactional, so a result replayed after a restore may appear twice,
//! but it must then carry the same value (state was restored exactly).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use common::{wait_for, CollectSink, Gate, Hold};
use sluice::api::windows::{EventTimeSessionWindows, TumblingEventTimeWindows};
use sluice::faults::Faults;
use sluice::state::{AggregateFunction, MapState};
use sluice::{
    Boundedness, Collector, Error, KeyedContext, KeyedProcessFunction, Result, RuntimeContext, Source, SourceStatus,
    StreamExecutionEnvironment, WatermarkStrategy,
};
use std::collections::BTreeMap;
use std::time::Duration;

type Event = (String, i64, u64);

const TOTAL: u64 = 4_000;
const KEYS: u64 = 23;
const TUMBLE_MS: i64 = 300;
const GAP_MS: i64 = 100;
const BUCKET_MS: i64 = 250;

fn event(i: u64) -> Event {
    let key = format!("k{}", (i * 7 + i / 3) % KEYS);
    let ts = i as i64 * 3 - (i % 5) as i64 * 4;
    (key, ts, i % 10)
}

/// Emits events `i = subtask, subtask + p, ...` with pauses; its state is
/// the next index (so it restores at the same parallelism only). It can
/// stop at `hold` until `gate` opens, or (`for_checkpoint`) until a
/// checkpoint it took at or after `hold` is complete; restored, it does not
/// stop. `log` records what it saved and was restored to.
#[derive(Clone, Default)]
struct Events {
    next: u64,
    step: u64,
    hold: Hold,
}

impl Events {
    fn hold_until_checkpointed(at: u64) -> Self {
        Events { hold: Hold::until_checkpointed(at), ..Events::default() }
    }
    fn hold(at: u64, gate: &Gate) -> Self {
        Events { hold: Hold::at(at, gate), ..Events::default() }
    }
}

impl Source<Event> for Events {
    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        if !self.hold.is_restored() {
            self.next = u64::from(ctx.subtask_index);
        }
        self.step = u64::from(ctx.parallelism);
        Ok(())
    }
    fn poll_next(&mut self, out: &mut dyn Collector<Event>) -> Result<SourceStatus> {
        for _ in 0..20 {
            if self.next >= TOTAL {
                return Ok(SourceStatus::Finished);
            }
            if self.hold.holds(self.next) {
                return Ok(SourceStatus::Idle(Duration::from_millis(2)));
            }
            out.collect(event(self.next))?;
            self.next += self.step;
        }
        Ok(SourceStatus::Idle(Duration::from_millis(2)))
    }
    held_position!();
}

/// Sum and count of a window, with its earliest timestamp and key.
struct SumCount;
impl AggregateFunction<Event, (String, i64, u64, u64), (String, i64, u64, u64)> for SumCount {
    fn create_accumulator(&self) -> (String, i64, u64, u64) {
        (String::new(), i64::MAX, 0, 0)
    }
    fn add(&self, e: Event, acc: &mut (String, i64, u64, u64)) {
        acc.0 = e.0;
        acc.1 = acc.1.min(e.1);
        acc.2 += e.2;
        acc.3 += 1;
    }
    fn get_result(&self, acc: &(String, i64, u64, u64)) -> (String, i64, u64, u64) {
        let start = acc.1 - acc.1.rem_euclid(TUMBLE_MS);
        (acc.0.clone(), start, acc.2, acc.3)
    }
    fn merge(&self, a: (String, i64, u64, u64), b: (String, i64, u64, u64)) -> (String, i64, u64, u64) {
        (a.0, a.1.min(b.1), a.2 + b.2, a.3 + b.3)
    }
}

/// Counts events per key and 250 ms bucket in map state; an event-time
/// timer at the bucket's end emits (key, bucket, count) and forgets it.
#[derive(Clone, Default)]
struct Buckets {
    counts: Option<MapState<i64, u64>>,
}

impl KeyedProcessFunction<String, Event, (String, i64, u64)> for Buckets {
    type State = ();
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.counts = Some(ctx.map_state("buckets")?);
        Ok(())
    }
    fn process_element(
        &mut self,
        e: Event,
        ctx: &mut KeyedContext<'_, String, ()>,
        _out: &mut dyn Collector<(String, i64, u64)>,
    ) -> Result<()> {
        let counts = self.counts.as_ref().ok_or_else(|| Error::user("not opened"))?;
        let ts = ctx.timestamp().ok_or_else(|| Error::user("no timestamp"))?;
        assert_eq!(ts, e.1);
        let bucket = ts.div_euclid(BUCKET_MS);
        counts.put(bucket, counts.get(&bucket)?.unwrap_or(0) + 1)?;
        ctx.register_event_time_timer(bucket * BUCKET_MS + BUCKET_MS - 1)
    }
    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut KeyedContext<'_, String, ()>,
        out: &mut dyn Collector<(String, i64, u64)>,
    ) -> Result<()> {
        let counts = self.counts.as_ref().ok_or_else(|| Error::user("not opened"))?;
        let bucket = timestamp.div_euclid(BUCKET_MS);
        if let Some(n) = counts.get(&bucket)? {
            counts.remove(&bucket)?;
            out.collect((ctx.key().clone(), bucket, n))?;
        }
        Ok(())
    }
}

#[derive(Clone, Default)]
struct Sinks {
    sums: CollectSink<(String, u64)>,
    tumbling: CollectSink<(String, i64, u64, u64)>,
    sessions: CollectSink<Event>,
    buckets: CollectSink<(String, i64, u64)>,
}

fn build(env: &StreamExecutionEnvironment, source: Events, sinks: &Sinks) {
    let events = env
        .add_source(source)
        .uid("events")
        // Rescaling restores keyed state; this source's position is per subtask.
        .set_parallelism(1)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(50))
                .with_timestamp_assigner(|e: &Event| e.1),
        )
        .uid("watermarks");
    let keyed = events.key_by(|e: &Event| e.0.clone());
    events
        .map(|e: Event| (e.0, e.2))
        .key_by(|t: &(String, u64)| t.0.clone())
        .sum(|t: &mut (String, u64)| &mut t.1)
        .uid("sums")
        .add_sink(sinks.sums.clone());
    keyed
        .window(TumblingEventTimeWindows::of(Duration::from_millis(TUMBLE_MS as u64)))
        .aggregate(SumCount)
        .uid("tumbling")
        .add_sink(sinks.tumbling.clone());
    keyed
        .window(EventTimeSessionWindows::with_gap(Duration::from_millis(GAP_MS as u64)))
        .reduce(|a: Event, b: Event| (a.0, a.1.min(b.1), a.2 + b.2))
        .uid("sessions")
        .add_sink(sinks.sessions.clone());
    keyed.process(Buckets::default()).uid("buckets").add_sink(sinks.buckets.clone());
}

/// Result maps; a key seen twice must have the same value both times.
#[derive(Debug, Default, PartialEq, Eq)]
struct Results {
    sums: BTreeMap<String, u64>,
    tumbling: BTreeMap<(String, i64), (u64, u64)>,
    sessions: BTreeMap<(String, i64), u64>,
    buckets: BTreeMap<(String, i64), u64>,
}

fn put<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(m: &mut BTreeMap<K, V>, k: K, v: V, what: &str) {
    if let Some(old) = m.get(&k) {
        assert_eq!(old, &v, "{what} {k:?} emitted twice with different values");
    }
    m.insert(k, v);
}

impl Results {
    fn add(&mut self, sinks: &Sinks) {
        for (k, v) in sinks.sums.take() {
            let e = self.sums.entry(k).or_insert(0);
            *e = (*e).max(v);
        }
        for (k, start, sum, n) in sinks.tumbling.take() {
            put(&mut self.tumbling, (k, start), (sum, n), "tumbling window");
        }
        for (k, start, sum) in sinks.sessions.take() {
            put(&mut self.sessions, (k, start), sum, "session");
        }
        for (k, bucket, n) in sinks.buckets.take() {
            put(&mut self.buckets, (k, bucket), n, "bucket");
        }
    }

    /// What the events imply, computed directly.
    fn expected() -> Results {
        let mut r = Results::default();
        let mut per_key: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
        for i in 0..TOTAL {
            let (k, ts, v) = event(i);
            *r.sums.entry(k.clone()).or_insert(0) += v;
            let t = r.tumbling.entry((k.clone(), ts - ts.rem_euclid(TUMBLE_MS))).or_insert((0, 0));
            t.0 += v;
            t.1 += 1;
            *r.buckets.entry((k.clone(), ts.div_euclid(BUCKET_MS))).or_insert(0) += 1;
            per_key.entry(k).or_default().push((ts, v));
        }
        for (k, mut evs) in per_key {
            evs.sort();
            let mut cur: Option<(i64, i64, u64)> = None; // start, end, sum
            for (ts, v) in evs {
                cur = match cur {
                    Some((s, e, sum)) if ts <= e => Some((s, e.max(ts + GAP_MS), sum + v)),
                    Some((s, _, sum)) => {
                        r.sessions.insert((k.clone(), s), sum);
                        Some((ts, ts + GAP_MS, v))
                    }
                    None => Some((ts, ts + GAP_MS, v)),
                };
            }
            if let Some((s, _, sum)) = cur {
                r.sessions.insert((k.clone(), s), sum);
            }
        }
        r
    }
}

fn env_for(backend: &str, local: &std::path::Path, parallelism: u32) -> StreamExecutionEnvironment {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(parallelism);
    env.set_config("state.backend", backend).unwrap();
    env.set_config("state.backend.rocksdb.localdir", local.to_str().unwrap()).unwrap();
    env.set_config("state.backend.rocksdb.cache-entries", "16").unwrap();
    env.set_config("pipeline.auto-watermark-interval", "20ms").unwrap();
    env
}

fn golden(backend: &str) {
    let expected = Results::expected();
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("rocksdb");

    // 1. Straight through.
    let env = env_for(backend, &local, 2);
    let sinks = Sinks::default();
    build(&env, Events::default(), &sinks);
    env.execute("golden").unwrap();
    let mut straight = Results::default();
    straight.add(&sinks);
    assert_eq!(straight, expected, "{backend}: straight run");

    // 2. Checkpoints, and a failure at a random record of the windows. The
    // source stops after 100 events until a checkpoint taken there is
    // complete; no subtask has taken in 200 records by then, so the failure
    // comes after that checkpoint and the job must restore from it.
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let record = 200 + seed % 1_500;
    let task = ["Window(Aggregate)", "Window(Reduce)", "Keyed Process", "Keyed Aggregation"][(seed % 4) as usize];
    eprintln!("{backend}: failing '{task}' subtask 0 at record {record}");
    let env = env_for(backend, &local, 2);
    env.enable_checkpointing(Duration::from_millis(40)).unwrap();
    env.set_config("state.checkpoints.dir", tmp.path().join("chk").to_str().unwrap()).unwrap();
    env.set_config("restart-strategy.type", "fixed-delay").unwrap();
    env.set_config("restart-strategy.fixed-delay.delay", "10ms").unwrap();
    env.set_faults(Faults::parse(&format!("fail:{task}:0@record={record}")).unwrap());
    let sinks = Sinks::default();
    let source = Events::hold_until_checkpointed(100);
    let log = source.hold.log.clone();
    build(&env, source, &sinks);
    let result = env.execute("golden-failover").unwrap();
    assert_eq!(result.restarts, 1, "{backend}: the injected failure restarted the job once");
    let restored = log.restored();
    assert!(
        restored.len() == 1 && restored[0] >= 100,
        "{backend}: restored from a checkpoint taken after event 100: {restored:?}"
    );
    let mut failover = Results::default();
    failover.add(&sinks);
    assert_eq!(failover, expected, "{backend}: with a failure at {task} record {record}");

    // 3. A savepoint at parallelism 2 with the source stopped after half the
    // events, once checkpoints have completed there (so that RocksDB takes
    // it from its changelog); restored at 1, 2 and 3.
    let half = TOTAL / 2;
    let savepoints = tmp.path().join("savepoints");
    let env = env_for(backend, &local, 2);
    env.enable_checkpointing(Duration::from_millis(40)).unwrap();
    env.set_config("state.checkpoints.dir", tmp.path().join("chk3").to_str().unwrap()).unwrap();
    let first = Sinks::default();
    let source = Events::hold(half, &Gate::default());
    let log = source.hold.log.clone();
    build(&env, source, &first);
    let client = env.execute_async("golden-savepoint").unwrap();
    wait_for("the sums of the first half", Duration::from_secs(60), || {
        (first.sums.0.lock().unwrap().len() as u64 >= half).then_some(())
    });
    let checkpointed = client.details().unwrap().completed_checkpoints;
    wait_for("a checkpoint at the hold", Duration::from_secs(60), || {
        (client.details().unwrap().completed_checkpoints >= checkpointed + 2).then_some(())
    });
    let path = client.trigger_savepoint(&savepoints).unwrap();
    client.cancel().unwrap();
    assert!(matches!(client.wait(), Err(Error::JobCanceled(_))));
    assert_eq!(log.snapshots.lock().unwrap().last().map(|s| s.1), Some(half), "{backend}: held at the half");
    let mut before = Results::default();
    before.add(&first);
    assert_eq!(first.sums.take().len() as u64, half, "{backend}: one running sum per event before the hold");
    for p in [1u32, 2, 3] {
        let env = env_for(backend, &local, p);
        env.set_config("execution.savepoint.path", path.to_str().unwrap()).unwrap();
        let sinks = Sinks::default();
        let source = Events::default();
        let log = source.hold.log.clone();
        build(&env, source, &sinks);
        env.execute("golden-restored").unwrap();
        assert_eq!(log.restored(), vec![half], "{backend} p={p}: the source continued from the savepoint");
        // The restored run alone: one sum per remaining event, and the
        // final sums include the first half (the keyed state was restored).
        let sums = sinks.sums.take();
        assert_eq!(sums.len() as u64, TOTAL - half, "{backend} p={p}: sums emitted after the restore");
        assert_eq!(common::final_counts(&sums), expected.sums, "{backend} p={p}: sums from the restored state");
        let mut after = Results {
            sums: before.sums.clone(),
            tumbling: before.tumbling.clone(),
            sessions: before.sessions.clone(),
            buckets: before.buckets.clone(),
        };
        after.add(&sinks);
        assert_eq!(after, expected, "{backend}: restored from the savepoint at parallelism {p}");
    }
}

#[test]
fn golden_pipelines_on_the_heap_backend() {
    golden("hashmap");
}

#[test]
fn golden_pipelines_on_rocksdb() {
    golden("rocksdb");
}
