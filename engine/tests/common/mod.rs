//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sluice::{Boundedness, CheckpointId, Collector, Result, RuntimeContext, Sink, Source, SourceStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Polls `check` every few milliseconds until it returns `Some`, and panics
/// naming `what` if that takes longer than `timeout`. Tests wait for events
/// (a record, a checkpoint, a metric value) with this, not with sleeps.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A flag shared by a test and the copies of a source it gave a job.
#[derive(Clone, Default)]
pub struct Gate(Arc<AtomicBool>);

impl Gate {
    pub fn open(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_open(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a source saw of checkpoints: the positions it saved (checkpoint id,
/// position) and the positions it was restored to, across all attempts.
#[derive(Clone, Default)]
pub struct SourceLog {
    pub snapshots: Arc<Mutex<Vec<(u64, u64)>>>,
    pub restored: Arc<Mutex<Vec<u64>>>,
}

impl SourceLog {
    pub fn snapshot_at(&self, checkpoint: u64) -> Option<u64> {
        self.snapshots.lock().unwrap().iter().rev().find(|(c, _)| *c == checkpoint).map(|(_, p)| *p)
    }
    pub fn restored(&self) -> Vec<u64> {
        self.restored.lock().unwrap().clone()
    }
}

/// Where a test source stops: at position `at` it waits (idle) until a
/// gate opens or, with `until_checkpointed`, until a checkpoint it took at
/// or past `at` is complete; a restored source does not stop. It logs the
/// positions the source saved and was restored to.
#[derive(Clone, Default)]
pub struct Hold {
    pub log: SourceLog,
    at: Option<u64>,
    gate: Gate,
    until_checkpointed: bool,
    saved_past: Option<u64>,
    restored: bool,
}

impl Hold {
    /// Stops at `at` until `gate` opens.
    pub fn at(at: u64, gate: &Gate) -> Self {
        Hold { at: Some(at), gate: gate.clone(), ..Hold::default() }
    }

    /// Stops at `at` until a checkpoint taken there is complete.
    pub fn until_checkpointed(at: u64) -> Self {
        Hold { at: Some(at), until_checkpointed: true, ..Hold::default() }
    }

    /// Whether a source at position `next` waits.
    pub fn holds(&self, next: u64) -> bool {
        self.at.is_some_and(|h| next >= h) && !self.restored && !self.gate.is_open()
    }

    /// The source saved position `next` in checkpoint `id`.
    pub fn saved(&mut self, id: CheckpointId, next: u64) {
        self.log.snapshots.lock().unwrap().push((id.0, next));
        if self.at.is_some_and(|h| next >= h) && self.saved_past.is_none() {
            self.saved_past = Some(id.0);
        }
    }

    /// Checkpoint `id` is complete.
    pub fn completed(&mut self, id: CheckpointId) {
        if self.until_checkpointed && self.saved_past.is_some_and(|c| id.0 >= c) {
            self.gate.open();
        }
    }

    /// The source was restored to `position`.
    pub fn restored(&mut self, position: u64) {
        self.log.restored.lock().unwrap().push(position);
        self.restored = true;
    }

    /// Whether the source was restored.
    pub fn is_restored(&self) -> bool {
        self.restored
    }
}

/// The `boundedness` and `is_parallel` of a test source that is bounded and
/// runs as one subtask, and with `open` a no-op `open` too.
#[allow(unused_macros)]
macro_rules! bounded_single_subtask {
    () => {
        fn boundedness(&self) -> sluice::Boundedness {
            sluice::Boundedness::Bounded
        }
        fn is_parallel(&self) -> bool {
            false
        }
    };
    (open) => {
        bounded_single_subtask!();
        fn open(&mut self, _: &sluice::RuntimeContext) -> sluice::Result<()> {
            Ok(())
        }
    };
}

/// The state of a test source that is its position `next: u64`, with a
/// [`Hold`] in `hold`: `State = u64`, `snapshot_state`,
/// `notify_checkpoint_complete` and `restore_state`.
#[allow(unused_macros)]
macro_rules! held_position {
    () => {
        type State = u64;
        fn snapshot_state(&mut self, id: sluice::CheckpointId) -> sluice::Result<u64> {
            self.hold.saved(id, self.next);
            Ok(self.next)
        }
        fn notify_checkpoint_complete(&mut self, id: sluice::CheckpointId) -> sluice::Result<()> {
            self.hold.completed(id);
            Ok(())
        }
        fn restore_state(&mut self, s: u64) -> sluice::Result<()> {
            self.hold.restored(s);
            self.next = s;
            Ok(())
        }
    };
}

/// `State = ()` with its snapshot and restore, for a test source that
/// keeps no position.
#[allow(unused_macros)]
macro_rules! no_position {
    () => {
        type State = ();
        fn snapshot_state(&mut self, _: sluice::CheckpointId) -> sluice::Result<()> {
            Ok(())
        }
        fn restore_state(&mut self, _: ()) -> sluice::Result<()> {
            Ok(())
        }
    };
}

/// Emits `records` one per poll, pausing `pause` after each (so that the
/// watermark passes each record before the next); its state is the index
/// of the next record.
#[derive(Clone)]
pub struct Paced {
    pub records: Vec<(String, i64)>,
    pub next: usize,
    pub pause: Duration,
}

impl Source<(String, i64)> for Paced {
    type State = usize;
    bounded_single_subtask!(open);
    fn poll_next(&mut self, out: &mut dyn Collector<(String, i64)>) -> Result<SourceStatus> {
        let Some(r) = self.records.get(self.next) else { return Ok(SourceStatus::Finished) };
        out.collect(r.clone())?;
        self.next += 1;
        Ok(SourceStatus::Idle(self.pause))
    }
    fn snapshot_state(&mut self, _: CheckpointId) -> Result<usize> {
        Ok(self.next)
    }
    fn restore_state(&mut self, s: usize) -> Result<()> {
        self.next = s;
        Ok(())
    }
}

/// Called by [`Words`] in `snapshot_state` with (checkpoint, attempt,
/// position), before it returns: a test can hold a checkpoint there.
pub type SnapshotHook = Arc<dyn Fn(u64, u32, u64) + Send + Sync>;

/// Collects every record into a shared vector.
#[derive(Clone, Default)]
pub struct CollectSink<T>(pub Arc<Mutex<Vec<T>>>);

impl<T: Send + 'static> Sink<T> for CollectSink<T> {
    fn write(&mut self, record: T) -> Result<()> {
        self.0.lock().map_err(|_| sluice::Error::user("poisoned"))?.push(record);
        Ok(())
    }
}

impl<T: Clone> CollectSink<T> {
    pub fn take(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }
}

/// Emits 0, 1, 2, ... (split over subtasks) forever or up to `end`,
/// counting what it emitted in `emitted`.
#[derive(Clone)]
pub struct Counter {
    pub end: Option<u64>,
    pub emitted: Arc<AtomicU64>,
    next: u64,
    step: u64,
}

impl Counter {
    pub fn new(end: Option<u64>) -> Self {
        Counter { end, emitted: Arc::new(AtomicU64::new(0)), next: 0, step: 1 }
    }
}

impl Source<u64> for Counter {
    type State = u64;
    fn boundedness(&self) -> Boundedness {
        if self.end.is_some() {
            Boundedness::Bounded
        } else {
            Boundedness::Unbounded
        }
    }
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.next = u64::from(ctx.subtask_index);
        self.step = u64::from(ctx.parallelism);
        Ok(())
    }
    fn poll_next(&mut self, out: &mut dyn Collector<u64>) -> Result<SourceStatus> {
        for _ in 0..100 {
            if self.end.is_some_and(|e| self.next >= e) {
                return Ok(SourceStatus::Finished);
            }
            out.collect(self.next)?;
            self.emitted.fetch_add(1, Ordering::SeqCst);
            self.next += self.step;
        }
        Ok(SourceStatus::MoreAvailable)
    }
    fn snapshot_state(&mut self, _: CheckpointId) -> Result<u64> {
        Ok(self.next)
    }
    fn restore_state(&mut self, s: u64) -> Result<()> {
        self.next = s;
        Ok(())
    }
}

/// A sink that sleeps per record and counts what it received.
#[derive(Clone)]
pub struct SlowSink {
    pub delay: Duration,
    pub received: Arc<AtomicU64>,
}

impl<T: Send + 'static> Sink<T> for SlowSink {
    fn write(&mut self, _record: T) -> Result<()> {
        std::thread::sleep(self.delay);
        self.received.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Emits `total` words `w0..w{keys}` in a fixed order, `per_poll` records
/// per poll with a pause between polls (so checkpoints happen mid-stream).
/// Its state is the index of the next word, so a restore continues exactly.
#[derive(Clone)]
pub struct Words {
    pub total: u64,
    pub keys: u64,
    pub per_poll: u64,
    pub pause: Duration,
    /// Records emitted so far, over all subtasks and attempts.
    pub emitted: Arc<AtomicU64>,
    /// Checkpoints and restores this source took part in.
    pub log: SourceLog,
    hold: Option<(u64, Gate)>,
    hook: Option<SnapshotHook>,
    attempt: u32,
    next: u64,
    step: u64,
    restored: bool,
}

impl Words {
    pub fn new(total: u64, keys: u64, per_poll: u64, pause: Duration) -> Self {
        Words {
            total,
            keys,
            per_poll,
            pause,
            emitted: Arc::default(),
            log: SourceLog::default(),
            hold: None,
            hook: None,
            attempt: 0,
            next: 0,
            step: 1,
            restored: false,
        }
    }

    /// A source that stops before index `at` (idle, not finished) until
    /// `gate` opens; a restored source does not stop.
    pub fn hold_at(mut self, at: u64, gate: &Gate) -> Self {
        self.hold = Some((at, gate.clone()));
        self
    }

    /// Calls `hook` in every `snapshot_state`.
    pub fn on_snapshot(mut self, hook: impl Fn(u64, u32, u64) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// The word of index `i`.
    pub fn word(&self, i: u64) -> String {
        format!("w{}", (i * 7 + i / 3) % self.keys)
    }

    /// The final count of every word after all `total` records.
    pub fn expected_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut m = std::collections::BTreeMap::new();
        for i in 0..self.total {
            *m.entry(self.word(i)).or_insert(0) += 1;
        }
        m
    }
}

impl Source<String> for Words {
    type State = u64;
    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        if !self.restored {
            self.next = u64::from(ctx.subtask_index);
        }
        self.step = u64::from(ctx.parallelism);
        self.attempt = ctx.attempt;
        Ok(())
    }
    fn poll_next(&mut self, out: &mut dyn Collector<String>) -> Result<SourceStatus> {
        for _ in 0..self.per_poll {
            if self.next >= self.total {
                return Ok(SourceStatus::Finished);
            }
            if let Some((at, gate)) = &self.hold {
                if self.next >= *at && !self.restored && !gate.is_open() {
                    return Ok(SourceStatus::Idle(Duration::from_millis(2)));
                }
            }
            out.collect(self.word(self.next))?;
            self.emitted.fetch_add(1, Ordering::SeqCst);
            self.next += self.step;
        }
        Ok(SourceStatus::Idle(self.pause))
    }
    fn snapshot_state(&mut self, checkpoint: CheckpointId) -> Result<u64> {
        self.log.snapshots.lock().unwrap().push((checkpoint.0, self.next));
        if let Some(hook) = &self.hook {
            hook(checkpoint.0, self.attempt, self.next);
        }
        Ok(self.next)
    }
    fn restore_state(&mut self, s: u64) -> Result<()> {
        self.log.restored.lock().unwrap().push(s);
        self.next = s;
        self.restored = true;
        Ok(())
    }
}

/// The largest value seen per key: with running counts (which are replayed
/// after a restart), the final count of each key.
pub fn final_counts(records: &[(String, u64)]) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for (k, v) in records {
        let e = m.entry(k.clone()).or_insert(0);
        *e = (*e).max(*v);
    }
    m
}
