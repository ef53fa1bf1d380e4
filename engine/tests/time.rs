//! Processing time through real jobs: processing-time timers (registered,
//! deleted, and carried through a savepoint) and processing-time windows
//! (tumbling, sliding, session), on the heap and the RocksDB backend.
//!
//! A source here waits for the outputs it expects before it goes on (with a
//! deadline, after which it fails the job), so a timer or window that does
//! not fire on the wall clock while the job runs fails the test rather than
//! firing at the end of input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use common::{wait_for, CollectSink};
use sluice::api::windows::{ProcessingTimeSessionWindows, SlidingProcessingTimeWindows, TumblingProcessingTimeWindows};
use sluice::state::TimeDomain;
use sluice::{
    CheckpointId, Collector, Error, KeyedContext, KeyedProcessFunction, Result, RuntimeContext, Source, SourceStatus,
    StreamExecutionEnvironment,
};
use sluice_checkpoint::clock::now_ms;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a source waits for the outputs it expects.
const DEADLINE: Duration = Duration::from_secs(30);

fn env_for(backend: &str, local: &Path, parallelism: u32) -> StreamExecutionEnvironment {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(parallelism);
    env.set_config("state.backend", backend).unwrap();
    env.set_config("state.backend.rocksdb.localdir", local.to_str().unwrap()).unwrap();
    env.set_config("state.backend.rocksdb.cache-entries", "4").unwrap();
    env
}

// ---------------------------------------------------------------------------
// Processing-time timers.

const ARM: u8 = 0;
const DISARM: u8 = 1;
const ARMED: u8 = 0;
const DISARMED: u8 = 1;
const FIRED: u8 = 2;

/// (key, what happened, the timer's time, the wall clock then, flag): for
/// DISARMED the flag says the timer was deleted before its time; for FIRED,
/// that `on_timer` was told it is a processing-time timer.
type Event = (String, u8, i64, i64, bool);

/// ARM registers a processing-time timer `delay` ahead (and keeps its time
/// in the function's keyed state); DISARM deletes it.
#[derive(Clone)]
struct Alarm {
    delay: i64,
}

impl KeyedProcessFunction<String, (String, u8), Event> for Alarm {
    type State = Option<i64>;
    fn process_element(
        &mut self,
        (key, cmd): (String, u8),
        ctx: &mut KeyedContext<'_, String, Option<i64>>,
        out: &mut dyn Collector<Event>,
    ) -> Result<()> {
        let now = ctx.current_processing_time();
        if cmd == ARM {
            let at = now + self.delay;
            ctx.register_processing_time_timer(at)?;
            *ctx.state() = Some(at);
            out.collect((key, ARMED, at, now, true))
        } else {
            let at = ctx.state().ok_or_else(|| Error::user("disarmed before armed"))?;
            ctx.delete_processing_time_timer(at)?;
            out.collect((key, DISARMED, at, now, now < at))
        }
    }
    fn on_timer(
        &mut self,
        at: i64,
        ctx: &mut KeyedContext<'_, String, Option<i64>>,
        out: &mut dyn Collector<Event>,
    ) -> Result<()> {
        let now = ctx.current_processing_time();
        let processing = ctx.time_domain() == Some(TimeDomain::ProcessingTime);
        out.collect((ctx.key().clone(), FIRED, at, now, processing))
    }
}

fn fired(sink: &CollectSink<Event>, key: &str) -> bool {
    sink.0.lock().unwrap().iter().any(|e| e.0 == key && e.1 == FIRED)
}

/// Round r: ARM a{r}, ARM b{r}, DISARM a{r} in one poll, then waits until
/// b{r}'s timer has fired. a{r}'s timer is no later than b{r}'s, so had it
/// not been deleted it would have fired by then.
#[derive(Clone)]
struct AlarmRounds {
    sink: CollectSink<Event>,
    rounds: u32,
    next: u32,
    since: Option<Instant>,
}

impl Source<(String, u8)> for AlarmRounds {
    no_position!();
    bounded_single_subtask!(open);
    fn poll_next(&mut self, out: &mut dyn Collector<(String, u8)>) -> Result<SourceStatus> {
        if let Some(since) = self.since {
            if !fired(&self.sink, &format!("b{}", self.next - 1)) {
                if since.elapsed() > DEADLINE {
                    return Err(Error::user(format!("b{}'s processing-time timer never fired", self.next - 1)));
                }
                return Ok(SourceStatus::Idle(Duration::from_millis(2)));
            }
        }
        if self.next == self.rounds {
            return Ok(SourceStatus::Finished);
        }
        let r = self.next;
        out.collect((format!("a{r}"), ARM))?;
        out.collect((format!("b{r}"), ARM))?;
        out.collect((format!("a{r}"), DISARM))?;
        self.next += 1;
        self.since = Some(Instant::now());
        Ok(SourceStatus::Idle(Duration::from_millis(2)))
    }
}

fn deleted_timers(backend: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let env = env_for(backend, &tmp.path().join("rocksdb"), 2);
    let sink = CollectSink::default();
    let rounds = 4;
    env.add_source(AlarmRounds { sink: sink.clone(), rounds, next: 0, since: None })
        .key_by(|r: &(String, u8)| r.0.clone())
        .process(Alarm { delay: 300 })
        .add_sink(sink.clone());
    env.execute("processing-time-timers").unwrap();
    let events = sink.take();
    let of = |key: &str, kind: u8| events.iter().filter(|e| e.0 == key && e.1 == kind).cloned().collect::<Vec<_>>();
    let mut in_time = 0;
    for r in 0..rounds {
        let (a, b) = (format!("a{r}"), format!("b{r}"));
        let armed_b = of(&b, ARMED);
        let fired_b = of(&b, FIRED);
        assert_eq!(fired_b.len(), 1, "{backend}: b{r}'s timer fired once: {events:?}");
        let (_, _, at, now, processing) = fired_b[0].clone();
        assert!(processing, "{backend}: on_timer is told the processing-time domain");
        assert_eq!(at, armed_b[0].2, "{backend}: b{r} fired for the time it was registered for");
        assert!(now >= at, "{backend}: b{r} fired at {now}, before its time {at}");
        let disarmed = of(&a, DISARMED);
        assert_eq!(disarmed.len(), 1, "{backend}: {events:?}");
        if disarmed[0].4 {
            in_time += 1;
            assert!(of(&a, FIRED).is_empty(), "{backend}: a{r}'s timer was deleted but fired: {events:?}");
        }
    }
    // A DISARM 300 ms late would need a stall of the whole machine.
    assert!(in_time >= 1, "{backend}: no timer was deleted before its time: {events:?}");
}

#[test]
fn processing_time_timers_fire_and_deleted_ones_do_not_on_the_heap() {
    deleted_timers("hashmap");
}

#[test]
fn processing_time_timers_fire_and_deleted_ones_do_not_on_rocksdb() {
    deleted_timers("rocksdb");
}

/// Arms `TIMER_KEYS` keys once, then stops (idle) — until restored, when it
/// waits for every key's timer to fire and then finishes.
#[derive(Clone)]
struct ArmOnce {
    sink: CollectSink<Event>,
    armed: bool,
    restored_at: Option<Instant>,
    /// Fail unless restored (the job restores a savepoint).
    restoring: bool,
    opened: Option<Instant>,
}

const TIMER_KEYS: usize = 10;

impl Source<(String, u8)> for ArmOnce {
    type State = bool;
    bounded_single_subtask!();
    fn open(&mut self, _: &RuntimeContext) -> Result<()> {
        if self.restoring && self.restored_at.is_none() {
            return Err(Error::user("the savepoint did not restore the source"));
        }
        self.opened = Some(Instant::now());
        Ok(())
    }
    fn poll_next(&mut self, out: &mut dyn Collector<(String, u8)>) -> Result<SourceStatus> {
        if !self.armed {
            (0..TIMER_KEYS).try_for_each(|k| out.collect((format!("k{k}"), ARM)))?;
            self.armed = true;
        }
        let Some(since) = self.restored_at else {
            // The first run: held until the test cancels it.
            if self.opened.is_some_and(|t| t.elapsed() > DEADLINE) {
                return Err(Error::user("ArmOnce was not canceled"));
            }
            return Ok(SourceStatus::Idle(Duration::from_millis(5)));
        };
        let done = self.sink.0.lock().unwrap().iter().filter(|e| e.1 == FIRED).count() >= TIMER_KEYS;
        if done {
            return Ok(SourceStatus::Finished);
        }
        if since.elapsed() > DEADLINE {
            return Err(Error::user("restored processing-time timers never fired"));
        }
        Ok(SourceStatus::Idle(Duration::from_millis(5)))
    }
    fn snapshot_state(&mut self, _: CheckpointId) -> Result<bool> {
        Ok(self.armed)
    }
    fn restore_state(&mut self, armed: bool) -> Result<()> {
        self.armed = armed;
        self.restored_at = Some(Instant::now());
        Ok(())
    }
}

fn timers_in_a_savepoint(backend: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("rocksdb");
    let delay = 2_000;
    let job = |env: &StreamExecutionEnvironment, sink: &CollectSink<Event>, restoring: bool| {
        env.add_source(ArmOnce { sink: sink.clone(), armed: false, restored_at: None, restoring, opened: None })
            .uid("arm")
            .key_by(|r: &(String, u8)| r.0.clone())
            .process(Alarm { delay })
            .uid("alarm")
            .add_sink(sink.clone());
    };
    let env = env_for(backend, &local, 2);
    let first = CollectSink::default();
    job(&env, &first, false);
    let client = env.execute_async("timers-savepoint").unwrap();
    wait_for("the timers to be armed", DEADLINE, || (first.0.lock().unwrap().len() >= TIMER_KEYS).then_some(()));
    let path = client.trigger_savepoint(tmp.path().join("savepoints")).unwrap();
    client.cancel().unwrap();
    assert!(matches!(client.wait(), Err(Error::JobCanceled(_))));
    let armed: BTreeMap<String, i64> = first.take().into_iter().map(|e| (e.0, e.2)).collect();
    assert_eq!(armed.len(), TIMER_KEYS, "{backend}: nothing but the ARMED events before the savepoint");
    let saved = now_ms();
    assert!(
        armed.values().all(|at| *at > saved),
        "{backend}: the savepoint came more than {delay} ms after the timers were set: inconclusive"
    );

    for p in [1u32, 3] {
        let env = env_for(backend, &local, p);
        env.set_config("execution.savepoint.path", path.to_str().unwrap()).unwrap();
        let sink = CollectSink::default();
        job(&env, &sink, true);
        env.execute("timers-restored").unwrap();
        let events = sink.take();
        let fired: BTreeMap<String, i64> = events.iter().filter(|e| e.1 == FIRED).map(|e| (e.0.clone(), e.2)).collect();
        assert_eq!(events.len(), TIMER_KEYS, "{backend} p={p}: every restored timer fired once: {events:?}");
        assert_eq!(fired, armed, "{backend} p={p}: the timers fired for the times set before the savepoint");
        assert!(events.iter().all(|e| e.3 >= e.2 && e.4), "{backend} p={p}: {events:?}");
    }
}

#[test]
fn processing_time_timers_survive_a_savepoint_on_the_heap() {
    timers_in_a_savepoint("hashmap");
}

#[test]
fn processing_time_timers_survive_a_savepoint_on_rocksdb() {
    timers_in_a_savepoint("rocksdb");
}

// ---------------------------------------------------------------------------
// Processing-time windows.

/// (key, phase, value, wall clock when the source emitted it).
type Reading = (String, u32, u64, i64);
/// (key, window start, end, the phases of its records, count, sum, wall
/// clock when it fired, the earliest and latest emission time of its records).
type Fired = (String, i64, i64, Vec<u32>, u64, u64, i64, (i64, i64));

const PHASES: u32 = 3;
const PER_PHASE: u64 = 40;
const WINDOW_KEYS: u64 = 4;

fn reading(phase: u32, j: u64, now: i64) -> Reading {
    (format!("k{}", j % WINDOW_KEYS), phase, j * 3 + u64::from(phase) * 100, now)
}

// `apply` hands the key as `&K`, here `&String`.
#[allow(clippy::ptr_arg)]
fn fired_window(
    key: &String,
    w: &sluice::TimeWindow,
    records: Vec<Reading>,
    out: &mut dyn Collector<Fired>,
) -> Result<()> {
    let mut phases: Vec<u32> = records.iter().map(|r| r.1).collect();
    phases.sort();
    phases.dedup();
    let sum = records.iter().map(|r| r.2).sum();
    let emitted = records.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| (lo.min(r.3), hi.max(r.3)));
    out.collect((key.clone(), w.start, w.end, phases, records.len() as u64, sum, now_ms(), emitted))
}

/// Records of phase p: how many each window kind must have counted.
fn counted(sink: &CollectSink<Fired>, phase: u32) -> u64 {
    sink.0.lock().unwrap().iter().filter(|f| f.3.contains(&phase)).map(|f| f.4).sum()
}

/// Emits each phase's records in one poll, then waits until every window
/// kind has fired for all of them before the next phase.
#[derive(Clone)]
struct Phases {
    tumbling: CollectSink<Fired>,
    sliding: CollectSink<Fired>,
    sessions: CollectSink<Fired>,
    next: u32,
    since: Option<Instant>,
}

impl Source<Reading> for Phases {
    no_position!();
    bounded_single_subtask!(open);
    fn poll_next(&mut self, out: &mut dyn Collector<Reading>) -> Result<SourceStatus> {
        if let Some(since) = self.since {
            let p = self.next - 1;
            let done = counted(&self.tumbling, p) == PER_PHASE
                && counted(&self.sliding, p) == 3 * PER_PHASE
                && counted(&self.sessions, p) == PER_PHASE;
            if !done {
                if since.elapsed() > DEADLINE {
                    return Err(Error::user(format!("the processing-time windows of phase {p} never fired")));
                }
                return Ok(SourceStatus::Idle(Duration::from_millis(2)));
            }
        }
        if self.next == PHASES {
            return Ok(SourceStatus::Finished);
        }
        let now = now_ms();
        (0..PER_PHASE).try_for_each(|j| out.collect(reading(self.next, j, now)))?;
        self.next += 1;
        self.since = Some(Instant::now());
        Ok(SourceStatus::Idle(Duration::from_millis(2)))
    }
}

fn processing_time_windows(backend: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let env = env_for(backend, &tmp.path().join("rocksdb"), 2);
    let (tumbling, sliding, sessions) = (CollectSink::default(), CollectSink::default(), CollectSink::default());
    let keyed = env
        .add_source(Phases {
            tumbling: tumbling.clone(),
            sliding: sliding.clone(),
            sessions: sessions.clone(),
            next: 0,
            since: None,
        })
        .key_by(|r: &Reading| r.0.clone());
    keyed
        .window(TumblingProcessingTimeWindows::of(Duration::from_millis(200)))
        .apply(fired_window)
        .add_sink(tumbling.clone());
    keyed
        .window(SlidingProcessingTimeWindows::of(Duration::from_millis(300), Duration::from_millis(100)))
        .apply(fired_window)
        .add_sink(sliding.clone());
    keyed
        .window(ProcessingTimeSessionWindows::with_gap(Duration::from_millis(150)))
        .apply(fired_window)
        .add_sink(sessions.clone());
    env.execute("processing-time-windows").unwrap();

    let mut expected: BTreeMap<(String, u32), (u64, u64)> = BTreeMap::new();
    for p in 0..PHASES {
        for j in 0..PER_PHASE {
            let (k, _, v, _) = reading(p, j, 0);
            let e = expected.entry((k, p)).or_default();
            e.0 += 1;
            e.1 += v;
        }
    }
    for (name, sink, copies, shape) in [
        ("tumbling", &tumbling, 1, &(|s: i64, e: i64| e - s == 200 && s % 200 == 0) as &dyn Fn(i64, i64) -> bool),
        ("sliding", &sliding, 3, &|s: i64, e: i64| e - s == 300 && s % 100 == 0),
        ("session", &sessions, 1, &|s: i64, e: i64| e - s >= 150),
    ] {
        let results = sink.take();
        let mut totals: BTreeMap<(String, u32), (u64, u64)> = BTreeMap::new();
        for (key, start, end, phases, count, sum, fired_at, (first, last)) in &results {
            assert_eq!(phases.len(), 1, "{backend} {name}: a window fired before the next phase began: {results:?}");
            assert!(shape(*start, *end), "{backend} {name}: window [{start}, {end})");
            assert!(*fired_at >= end - 1, "{backend} {name}: [{start}, {end}) fired early, at {fired_at}");
            // A record is assigned by the wall clock when it is processed,
            // which is after it was emitted and before the window fired.
            assert!(
                last < end && first <= fired_at,
                "{backend} {name}: [{start}, {end}) fired at {fired_at} holds records emitted at {first}..{last}"
            );
            let t = totals.entry((key.clone(), phases[0])).or_default();
            t.0 += count;
            t.1 += sum;
        }
        let want: BTreeMap<_, _> = expected.iter().map(|(k, (n, s))| (k.clone(), (n * copies, s * copies))).collect();
        assert_eq!(totals, want, "{backend} {name}: every record in its windows, once per window");
    }
}

#[test]
fn processing_time_windows_fire_on_the_wall_clock_on_the_heap() {
    processing_time_windows("hashmap");
}

#[test]
fn processing_time_windows_fire_on_the_wall_clock_on_rocksdb() {
    processing_time_windows("rocksdb");
}
