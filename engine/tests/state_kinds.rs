//! List, reducing and aggregating state, and state TTL, used from a
//! `KeyedProcessFunction` through real jobs on the heap and the RocksDB
//! backend: straight through, across an injected failure (restored from a
//! checkpoint that is known to hold progress) and across a savepoint
//! restored at other parallelisms. Every output is compared with what the
//! input implies, computed here independently.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::type_complexity)]

#[macro_use]
mod common;

use common::{wait_for, CollectSink, Gate, Hold, SourceLog};
use sluice::faults::Faults;
use sluice::state::{AggregateFunction, AggregatingState, ListState, ReducingState, StateTtlConfig, ValueState};
use sluice::{
    CheckpointId, Collector, Error, KeyedContext, KeyedProcessFunction, Result, RuntimeContext, Source, SourceStatus,
    StateDescriptor, StreamExecutionEnvironment,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const TOTAL: u64 = 3_000;
const KEYS: u64 = 37;

/// Record `i`: (key, value).
fn record(i: u64) -> (u32, u64) {
    (((i * 7 + i / 5) % KEYS) as u32, (i * 2_654_435_761) % 1_000)
}

/// Emits records `0..TOTAL` from one subtask, 25 per poll with a pause.
/// It can stop at `hold` until `gate` opens, or (`hold_for_checkpoint`)
/// until a checkpoint taken at or after `hold` is complete, so that a
/// failure after it restores from a checkpoint with progress.
#[derive(Clone)]
struct Input {
    next: u64,
    hold: Hold,
}

impl Input {
    fn new() -> Self {
        Input { next: 0, hold: Hold::default() }
    }
    fn hold_at(self, at: u64, gate: &Gate) -> Self {
        Input { hold: Hold::at(at, gate), ..self }
    }
    fn hold_for_checkpoint_at(self, at: u64) -> Self {
        Input { hold: Hold::until_checkpointed(at), ..self }
    }
}

impl Source<(u32, u64)> for Input {
    bounded_single_subtask!(open);
    fn poll_next(&mut self, out: &mut dyn Collector<(u32, u64)>) -> Result<SourceStatus> {
        for _ in 0..25 {
            if self.next >= TOTAL {
                return Ok(SourceStatus::Finished);
            }
            if self.hold.holds(self.next) {
                return Ok(SourceStatus::Idle(Duration::from_millis(2)));
            }
            out.collect(record(self.next))?;
            self.next += 1;
        }
        Ok(SourceStatus::Idle(Duration::from_millis(1)))
    }
    held_position!();
}

/// (count, sum, max) of the values of a key.
type Triple = (u64, u64, u64);

/// Aggregates values into their [`Triple`].
#[derive(Clone)]
struct Stats;

impl AggregateFunction<u64, (u64, u64, u64), (u64, u64, u64)> for Stats {
    fn create_accumulator(&self) -> (u64, u64, u64) {
        (0, 0, 0)
    }
    fn add(&self, v: u64, acc: &mut (u64, u64, u64)) {
        acc.0 += 1;
        acc.1 += v;
        acc.2 = acc.2.max(v);
    }
    fn get_result(&self, acc: &(u64, u64, u64)) -> (u64, u64, u64) {
        *acc
    }
    fn merge(&self, a: (u64, u64, u64), b: (u64, u64, u64)) -> (u64, u64, u64) {
        (a.0 + b.0, a.1 + b.1, a.2.max(b.2))
    }
}

/// An order-sensitive fold, so that a reduce applied in the wrong order,
/// twice, or not at all shows.
fn fold(acc: u64, v: u64) -> u64 {
    (acc * 31 + v) % 1_000_003
}

/// For the n-th record of a key: (key, n, the key's last four values, the
/// fold of its values since the last multiple of 5 (none right after), sum, max).
type Out = (u32, u64, Vec<u64>, Option<u64>, u64, u64);

/// Keeps the last four values in list state, folds values in reducing
/// state (cleared on every fifth record) and counts, sums and maxes them in
/// aggregating state.
#[derive(Clone, Default)]
struct Kinds {
    last: Option<ListState<u64>>,
    folded: Option<ReducingState<u64>>,
    stats: Option<AggregatingState<u64, Triple, Triple>>,
}

impl KeyedProcessFunction<u32, (u32, u64), Out> for Kinds {
    type State = ();
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.last = Some(ctx.list_state("last")?);
        self.folded = Some(ctx.reducing_state("folded", fold)?);
        self.stats = Some(ctx.aggregating_state("stats", Stats)?);
        Ok(())
    }
    fn process_element(
        &mut self,
        (k, v): (u32, u64),
        _: &mut KeyedContext<'_, u32, ()>,
        out: &mut dyn Collector<Out>,
    ) -> Result<()> {
        let (Some(last), Some(folded), Some(stats)) = (&self.last, &self.folded, &self.stats) else {
            return Err(Error::user("not opened"));
        };
        last.add(v)?;
        let mut values = last.get()?;
        if values.len() > 4 {
            values.remove(0);
            last.update(values.clone())?;
        }
        stats.add(v)?;
        let (n, sum, max) = stats.get()?.ok_or_else(|| Error::user("aggregating state lost its value"))?;
        if n % 5 == 0 {
            folded.clear()?;
        } else {
            folded.add(v)?;
        }
        out.collect((k, n, values, folded.get()?, sum, max))
    }
}

/// What `Kinds` must emit for records `range` (given all before).
fn expected(range: std::ops::Range<u64>) -> Vec<Out> {
    // Per key: last values, fold, count, sum, max.
    type Running = (Vec<u64>, Option<u64>, u64, u64, u64);
    let mut per_key: BTreeMap<u32, Running> = BTreeMap::new();
    let mut out = Vec::new();
    for i in 0..TOTAL {
        let (k, v) = record(i);
        let (last, folded, n, sum, max) = per_key.entry(k).or_default();
        last.push(v);
        if last.len() > 4 {
            last.remove(0);
        }
        *n += 1;
        *sum += v;
        *max = (*max).max(v);
        *folded = if *n % 5 == 0 { None } else { Some(folded.map_or(v, |a| fold(a, v))) };
        if range.contains(&i) {
            out.push((k, *n, last.clone(), *folded, *sum, *max));
        }
    }
    out.sort();
    out
}

fn env_for(backend: &str, local: &Path, parallelism: u32) -> StreamExecutionEnvironment {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(parallelism);
    env.set_config("state.backend", backend).unwrap();
    env.set_config("state.backend.rocksdb.localdir", local.to_str().unwrap()).unwrap();
    // A small cache: most reads and writes reach RocksDB itself.
    env.set_config("state.backend.rocksdb.cache-entries", "8").unwrap();
    env
}

fn build(env: &StreamExecutionEnvironment, input: Input, sink: &CollectSink<Out>) {
    env.add_source(input)
        .uid("input")
        .key_by(|r: &(u32, u64)| r.0)
        .process(Kinds::default())
        .uid("kinds")
        .add_sink(sink.clone());
}

/// Outputs by (key, n); an output emitted twice (replayed after a restore)
/// must carry the same values both times.
fn by_key_and_count(outputs: &[Out]) -> BTreeMap<(u32, u64), Out> {
    let mut m = BTreeMap::new();
    for o in outputs {
        if let Some(old) = m.insert((o.0, o.1), o.clone()) {
            assert_eq!(&old, o, "({}, {}) emitted twice with different state", o.0, o.1);
        }
    }
    m
}

fn state_kinds(backend: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("rocksdb");
    let all = expected(0..TOTAL);

    // 1. Straight through, at parallelism 2.
    let env = env_for(backend, &local, 2);
    let sink = CollectSink::default();
    build(&env, Input::new(), &sink);
    env.execute("state-kinds").unwrap();
    let mut out = sink.take();
    out.sort();
    assert_eq!(out, all, "{backend}: straight run");

    // 2. Checkpoints, and a failure of the keyed subtask 0 at its 900th
    // record. The source stops at record 300 until a checkpoint taken there
    // is complete; subtask 0 has taken in at most 300 records by then, so
    // the failure comes after that checkpoint and the job restores from it.
    let env = env_for(backend, &local, 2);
    env.enable_checkpointing(Duration::from_millis(30)).unwrap();
    env.set_config("state.checkpoints.dir", tmp.path().join("chk").to_str().unwrap()).unwrap();
    env.set_config("restart-strategy.type", "fixed-delay").unwrap();
    env.set_config("restart-strategy.fixed-delay.delay", "10ms").unwrap();
    env.set_faults(Faults::parse("fail:Keyed Process:0@record=900").unwrap());
    let input = Input::new().hold_for_checkpoint_at(300);
    let log = input.hold.log.clone();
    let sink = CollectSink::default();
    build(&env, input, &sink);
    let result = env.execute("state-kinds-failover").unwrap();
    assert_eq!(result.restarts, 1, "{backend}: the injected failure restarted the job once");
    let restored = log.restored();
    assert!(
        restored.len() == 1 && restored[0] >= 300,
        "{backend}: restored once from a checkpoint taken at record 300 or later: {restored:?}"
    );
    let out = sink.take();
    assert!(out.len() as u64 >= TOTAL, "{backend}: {} outputs", out.len());
    let got = by_key_and_count(&out);
    assert_eq!(got.into_values().collect::<Vec<_>>(), all, "{backend}: with a failure");

    // 3. A savepoint of the first 1 700 records at parallelism 2, restored
    // at 1 and 3: the restored jobs emit the rest only, counting on.
    let hold = 1_700;
    let env = env_for(backend, &local, 2);
    let gate = Gate::default();
    let sink = CollectSink::default();
    build(&env, Input::new().hold_at(hold, &gate), &sink);
    let client = env.execute_async("state-kinds-savepoint").unwrap();
    wait_for("the records before the hold", Duration::from_secs(60), || {
        (sink.0.lock().unwrap().len() as u64 >= hold).then_some(())
    });
    let path = client.trigger_savepoint(tmp.path().join("savepoints")).unwrap();
    client.cancel().unwrap();
    assert!(matches!(client.wait(), Err(Error::JobCanceled(_))));
    let mut before = sink.take();
    before.sort();
    assert_eq!(before, expected(0..hold), "{backend}: outputs before the savepoint");
    for p in [1u32, 3] {
        let env = env_for(backend, &local, p);
        env.set_config("execution.savepoint.path", path.to_str().unwrap()).unwrap();
        let input = Input::new();
        let log = input.hold.log.clone();
        let sink = CollectSink::default();
        build(&env, input, &sink);
        env.execute("state-kinds-restored").unwrap();
        assert_eq!(log.restored(), vec![hold], "{backend}: the source restored its position");
        let mut out = sink.take();
        out.sort();
        assert_eq!(out, expected(hold..TOTAL), "{backend}: restored from the savepoint at parallelism {p}");
    }
}

#[test]
fn list_reducing_and_aggregating_state_on_the_heap() {
    state_kinds("hashmap");
}

#[test]
fn list_reducing_and_aggregating_state_on_rocksdb() {
    state_kinds("rocksdb");
}

// ---------------------------------------------------------------------------
// State TTL. Expiry runs on the wall clock, so the function itself records
// when it wrote an entry (in state without TTL) and when it reads it again,
// and classifies each read: certainly within the TTL, certainly past it, or
// too close to tell. The test checks every certain read, and that both kinds
// occurred.

const FRESH: u8 = 0;
const EXPIRED: u8 = 1;
const UNSURE: u8 = 2;

/// (key, seq, value read from the TTL value state, the TTL list state,
/// verdict, seq recorded with the last write (without TTL)).
type TtlOut = (u32, u32, Option<u32>, Vec<u32>, u8, Option<u32>);

#[derive(Clone)]
struct Expiring {
    ttl: Duration,
    value: Option<ValueState<u32>>,
    list: Option<ListState<u32>>,
    /// (time before the write, time after it, seq written): no TTL.
    written: Option<ValueState<(i64, i64, u32)>>,
}

impl Expiring {
    fn new(ttl: Duration) -> Self {
        Expiring { ttl, value: None, list: None, written: None }
    }
}

impl KeyedProcessFunction<u32, (u32, u32), TtlOut> for Expiring {
    type State = ();
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let ttl = StateTtlConfig::new(self.ttl);
        self.value = Some(ctx.value_state(StateDescriptor::new("value").with_ttl(ttl))?);
        self.list = Some(ctx.list_state(StateDescriptor::new("list").with_ttl(ttl))?);
        self.written = Some(ctx.value_state("written")?);
        Ok(())
    }
    fn process_element(
        &mut self,
        (k, seq): (u32, u32),
        ctx: &mut KeyedContext<'_, u32, ()>,
        out: &mut dyn Collector<TtlOut>,
    ) -> Result<()> {
        let (Some(value), Some(list), Some(written)) = (&self.value, &self.list, &self.written) else {
            return Err(Error::user("not opened"));
        };
        let ttl = self.ttl.as_millis() as i64;
        let last = written.value()?;
        let read_from = ctx.current_processing_time();
        let seen = value.value()?;
        let listed = list.get()?;
        let read_to = ctx.current_processing_time();
        // An entry is expired when (read time - its stamp) > ttl, and its
        // stamp lies between the times before and after the write.
        let verdict = match last {
            Some((_, _, _)) if last.is_some_and(|(from, _, _)| read_to - from <= ttl) => FRESH,
            Some((_, to, _)) if read_from - to > ttl => EXPIRED,
            Some(_) => UNSURE,
            None => EXPIRED,
        };
        out.collect((k, seq, seen, listed, verdict, last.map(|l| l.2)))?;
        let from = ctx.current_processing_time();
        value.update(seq)?;
        list.add(seq)?;
        let to = ctx.current_processing_time();
        Ok(written.update((from, to, seq))?)
    }
}

/// Checks every certain read; returns (fresh, expired) read counts.
fn check_ttl_reads(outputs: &[TtlOut], what: &str) -> (usize, usize) {
    let (mut fresh, mut expired) = (0, 0);
    for (k, seq, seen, list, verdict, last) in outputs {
        match *verdict {
            FRESH => {
                fresh += 1;
                let last = last.unwrap();
                assert_eq!(*seen, Some(last), "{what}: key {k} seq {seq}: a read within the TTL sees the last write");
                // Every key gets every round: the list holds the rounds
                // since its last expiry, up to the last write.
                let first = last + 1 - list.len().max(1) as u32;
                assert_eq!(list, &(first..=last).collect::<Vec<_>>(), "{what}: key {k} seq {seq}: list");
            }
            EXPIRED => {
                expired += 1;
                assert_eq!(
                    (seen, list.len()),
                    (&None, 0),
                    "{what}: key {k} seq {seq}: a read past the TTL sees nothing"
                );
            }
            _ => {}
        }
    }
    (fresh, expired)
}

/// Emits `ROUNDS` rounds of (key, round) for `TTL_KEYS` keys, one round per
/// poll. After the rounds in `SLOW` it waits `ttl` + 100 ms of wall clock,
/// so that the next reads come after the TTL; the others follow at once.
/// With `hold_for_checkpoint`, it stops after round 2 until a checkpoint
/// taken there is complete.
#[derive(Clone)]
struct Rounds {
    ttl: Duration,
    next: u32,
    resume_at: i64,
    hold_for_checkpoint: bool,
    saved_past_hold: Option<u64>,
    released: Gate,
    log: SourceLog,
}

const ROUNDS: u32 = 8;
const TTL_KEYS: u32 = 6;
const SLOW: [u32; 3] = [1, 3, 5];

impl Source<(u32, u32)> for Rounds {
    type State = u32;
    bounded_single_subtask!(open);
    fn poll_next(&mut self, out: &mut dyn Collector<(u32, u32)>) -> Result<SourceStatus> {
        let now = sluice_checkpoint::clock::now_ms();
        if now < self.resume_at {
            return Ok(SourceStatus::Idle(Duration::from_millis((self.resume_at - now).clamp(1, 20) as u64)));
        }
        if self.hold_for_checkpoint && self.next == 2 && !self.released.is_open() {
            return Ok(SourceStatus::Idle(Duration::from_millis(2)));
        }
        if self.next >= ROUNDS {
            return Ok(SourceStatus::Finished);
        }
        for k in 0..TTL_KEYS {
            out.collect((k, self.next))?;
        }
        if SLOW.contains(&self.next) {
            self.resume_at = now + self.ttl.as_millis() as i64 + 100;
        }
        self.next += 1;
        Ok(SourceStatus::MoreAvailable)
    }
    fn snapshot_state(&mut self, id: CheckpointId) -> Result<u32> {
        if self.next >= 2 && self.saved_past_hold.is_none() {
            self.saved_past_hold = Some(id.0);
        }
        Ok(self.next)
    }
    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        if self.saved_past_hold.is_some_and(|c| id.0 >= c) {
            self.released.open();
        }
        Ok(())
    }
    fn restore_state(&mut self, s: u32) -> Result<()> {
        self.log.restored.lock().unwrap().push(u64::from(s));
        self.next = s;
        Ok(())
    }
}

fn ttl_job<S>(env: &StreamExecutionEnvironment, source: S, ttl: Duration, sink: &CollectSink<TtlOut>)
where
    S: Source<(u32, u32)> + Clone,
{
    env.add_source(source)
        .uid("rounds")
        .key_by(|r: &(u32, u32)| r.0)
        .process(Expiring::new(ttl))
        .uid("expiring")
        .add_sink(sink.clone());
}

fn rounds(ttl: Duration) -> Rounds {
    Rounds {
        ttl,
        next: 0,
        resume_at: 0,
        hold_for_checkpoint: false,
        saved_past_hold: None,
        released: Gate::default(),
        log: SourceLog::default(),
    }
}

fn ttl_expiry(backend: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("rocksdb");
    let ttl = Duration::from_millis(150);

    // Straight through.
    let env = env_for(backend, &local, 2);
    let sink = CollectSink::default();
    ttl_job(&env, rounds(ttl), ttl, &sink);
    env.execute("ttl").unwrap();
    let out = sink.take();
    assert_eq!(out.len() as u32, ROUNDS * TTL_KEYS, "{backend}: one output per record");
    let (fresh, expired) = check_ttl_reads(&out, backend);
    assert!(fresh >= 6 && expired >= 6 + 6, "{backend}: reads within the TTL {fresh}, past it {expired}");

    // With checkpoints and a failure at round 4, after a checkpoint taken
    // after round 2 is complete: the restored entries keep their age.
    let env = env_for(backend, &local, 1);
    env.enable_checkpointing(Duration::from_millis(30)).unwrap();
    env.set_config("state.checkpoints.dir", tmp.path().join("chk").to_str().unwrap()).unwrap();
    env.set_config("restart-strategy.type", "fixed-delay").unwrap();
    env.set_config("restart-strategy.fixed-delay.delay", "10ms").unwrap();
    env.set_faults(Faults::parse(&format!("fail:Keyed Process:0@record={}", 4 * TTL_KEYS + 2)).unwrap());
    let source = Rounds { hold_for_checkpoint: true, ..rounds(ttl) };
    let log = source.log.clone();
    let sink = CollectSink::default();
    ttl_job(&env, source, ttl, &sink);
    let result = env.execute("ttl-failover").unwrap();
    assert_eq!(result.restarts, 1, "{backend}: the injected failure restarted the job");
    let restored = log.restored();
    assert!(restored.len() == 1 && restored[0] >= 2, "{backend}: restored from round 2 or later: {restored:?}");
    let out = sink.take();
    // Replayed rounds emit again; each emission must be consistent.
    let (fresh, expired) = check_ttl_reads(&out, &format!("{backend} failover"));
    assert!(fresh >= 6 && expired >= 6 + 6, "{backend} failover: within the TTL {fresh}, past it {expired}");
}

/// (key, seq, value of the short-TTL state, value of the long-TTL state,
/// the long-TTL list).
type AgedOut = (u32, u32, Option<u32>, Option<u32>, Vec<u32>);

/// Reads, then writes, a value with a short TTL and a value and a list with
/// a long one.
#[derive(Clone, Default)]
struct Aged {
    short: Option<ValueState<u32>>,
    long: Option<ValueState<u32>>,
    list: Option<ListState<u32>>,
}

const SHORT_TTL: Duration = Duration::from_millis(300);

impl KeyedProcessFunction<u32, (u32, u32), AgedOut> for Aged {
    type State = ();
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let long = StateTtlConfig::new(Duration::from_secs(600));
        self.short = Some(ctx.value_state(StateDescriptor::new("short").with_ttl(StateTtlConfig::new(SHORT_TTL)))?);
        self.long = Some(ctx.value_state(StateDescriptor::new("long").with_ttl(long))?);
        self.list = Some(ctx.list_state(StateDescriptor::new("list").with_ttl(long))?);
        Ok(())
    }
    fn process_element(
        &mut self,
        (k, seq): (u32, u32),
        _: &mut KeyedContext<'_, u32, ()>,
        out: &mut dyn Collector<AgedOut>,
    ) -> Result<()> {
        let (Some(short), Some(long), Some(list)) = (&self.short, &self.long, &self.list) else {
            return Err(Error::user("not opened"));
        };
        out.collect((k, seq, short.value()?, long.value()?, list.get()?))?;
        short.update(seq)?;
        long.update(seq)?;
        Ok(list.add(seq)?)
    }
}

/// Emits the "old" keys 0..TTL_KEYS, waits until the sink has their
/// outputs and then the short TTL + 50 ms more, emits the "fresh" keys
/// 100.. and stops there. Restored, it emits a probe (seq 1) for every key.
/// It fails the job if it waits a minute, or if it is to be `restoring`
/// but has not been restored.
#[derive(Clone)]
struct TwoAges {
    sink: CollectSink<AgedOut>,
    phase: u32,
    resume_at: Option<i64>,
    restored: bool,
    restoring: bool,
    opened: Option<std::time::Instant>,
}

impl Source<(u32, u32)> for TwoAges {
    type State = u32;
    bounded_single_subtask!();
    fn open(&mut self, _: &RuntimeContext) -> Result<()> {
        if self.restoring && !self.restored {
            return Err(Error::user("the savepoint did not restore the source"));
        }
        self.opened = Some(std::time::Instant::now());
        Ok(())
    }
    fn poll_next(&mut self, out: &mut dyn Collector<(u32, u32)>) -> Result<SourceStatus> {
        if self.opened.is_some_and(|t| t.elapsed() > Duration::from_secs(60)) {
            return Err(Error::user(format!("TwoAges waited a minute in phase {}", self.phase)));
        }
        let idle = Ok(SourceStatus::Idle(Duration::from_millis(2)));
        match self.phase {
            0 => (0..TTL_KEYS).try_for_each(|k| out.collect((k, 0)))?,
            1 => {
                if (self.sink.0.lock().unwrap().len() as u32) < TTL_KEYS {
                    return idle;
                }
                let now = sluice_checkpoint::clock::now_ms();
                let resume_at = *self.resume_at.get_or_insert(now + SHORT_TTL.as_millis() as i64 + 50);
                if now < resume_at {
                    return idle;
                }
                (0..TTL_KEYS).try_for_each(|k| out.collect((100 + k, 0)))?
            }
            2 if !self.restored => return idle,
            2 => (0..TTL_KEYS).try_for_each(|k| {
                out.collect((k, 1))?;
                out.collect((100 + k, 1))
            })?,
            _ => return Ok(SourceStatus::Finished),
        }
        self.phase += 1;
        Ok(SourceStatus::MoreAvailable)
    }
    fn snapshot_state(&mut self, _: CheckpointId) -> Result<u32> {
        Ok(self.phase)
    }
    fn restore_state(&mut self, s: u32) -> Result<()> {
        self.phase = s;
        self.restored = true;
        Ok(())
    }
}

/// TTL state goes through a savepoint with its age: restored, the old
/// keys' short-TTL values (expired before the savepoint) read as absent,
/// and every long-TTL value and list as written. With `checkpoints`, the
/// old entries were in checkpoints while they were fresh (the heap
/// backend's change files, RocksDB's files) before the savepoint.
fn ttl_savepoint(backend: &str, checkpoints: bool) {
    let what = format!("{backend} (checkpoints: {checkpoints})");
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("rocksdb");
    let env = env_for(backend, &local, 2);
    if checkpoints {
        env.enable_checkpointing(Duration::from_millis(30)).unwrap();
        env.set_config("state.checkpoints.dir", tmp.path().join("chk").to_str().unwrap()).unwrap();
    }
    let job = |env: &StreamExecutionEnvironment, source: TwoAges, sink: &CollectSink<AgedOut>| {
        env.add_source(source)
            .uid("two-ages")
            .key_by(|r: &(u32, u32)| r.0)
            .process(Aged::default())
            .uid("aged")
            .add_sink(sink.clone());
    };
    let sink = CollectSink::default();
    let source =
        TwoAges { sink: sink.clone(), phase: 0, resume_at: None, restored: false, restoring: false, opened: None };
    job(&env, source.clone(), &sink);
    let client = env.execute_async("ttl-savepoint").unwrap();
    wait_for("the fresh keys' outputs", Duration::from_secs(60), || {
        (sink.0.lock().unwrap().len() as u32 >= 2 * TTL_KEYS).then_some(())
    });
    let path = client.trigger_savepoint(tmp.path().join("savepoints")).unwrap();
    client.cancel().unwrap();
    assert!(matches!(client.wait(), Err(Error::JobCanceled(_))));
    let first = sink.take();
    assert!(first.iter().all(|o| o.2.is_none() && o.3.is_none()), "{what}: new keys: {first:?}");

    let env = env_for(backend, &local, 3);
    env.set_config("execution.savepoint.path", path.to_str().unwrap()).unwrap();
    let probes = CollectSink::default();
    job(&env, TwoAges { restoring: true, ..source }, &probes);
    env.execute("ttl-restored").unwrap();
    let mut probes = probes.take();
    probes.sort();
    let old: Vec<_> = probes.iter().filter(|o| o.0 < 100).cloned().collect();
    assert_eq!(old, (0..TTL_KEYS).map(|k| (k, 1, None, Some(0), vec![0])).collect::<Vec<_>>(), "{what}: old keys");
    let fresh: Vec<_> = probes.iter().filter(|o| o.0 >= 100).map(|o| (o.0, o.1, o.3, o.4.clone())).collect();
    let want: Vec<_> = (0..TTL_KEYS).map(|k| (100 + k, 1, Some(0), vec![0])).collect();
    assert_eq!(fresh, want, "{what}: fresh keys");
}

#[test]
fn state_ttl_through_a_savepoint_on_the_heap() {
    ttl_savepoint("hashmap", false);
    ttl_savepoint("hashmap", true);
}

#[test]
fn state_ttl_through_a_savepoint_on_rocksdb() {
    ttl_savepoint("rocksdb", false);
    ttl_savepoint("rocksdb", true);
}

#[test]
fn state_ttl_on_the_heap() {
    ttl_expiry("hashmap");
}

#[test]
fn state_ttl_on_rocksdb() {
    ttl_expiry("rocksdb");
}
