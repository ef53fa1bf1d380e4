//! Where the Kafka sinks spend their time: process-wide totals per phase,
//! summed over every sink subtask of this process since it started (or
//! since [`reset`]). `bench_kafka` prints them next to its throughput
//! figures; they also say where a slow exactly-once job waits.
//!
//! Task-thread phases block the subtask (no record moves meanwhile);
//! [`Phase::Prepare`] runs on a background thread and only costs anything
//! when [`Phase::WaitForProducer`] shows the task thread waiting for it.
//!
//! ```
//! use sluice_connectors::kafka::phases::{self, Phase};
//! phases::timed(Phase::Flush, || std::thread::sleep(std::time::Duration::from_millis(1)));
//! let flush = phases::snapshot().into_iter().find(|t| t.phase == Phase::Flush).unwrap();
//! assert!(flush.count >= 1 && flush.total >= std::time::Duration::from_millis(1));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A phase of a Kafka sink's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `open`: client set-up and the exactly-once sink's
    /// `transaction.timeout.ms` check (a `DescribeConfigs` round trip).
    Open,
    /// `recover`: committing a restored checkpoint's transactions and
    /// probing for lingering ones (`DescribeTransactions` per id).
    Recover,
    /// Background: creating the next transaction's producer,
    /// `InitProducerId`, and reading its producer id and epoch.
    Prepare,
    /// Task thread waiting for [`Phase::Prepare`] to finish (or preparing
    /// the producer itself when nothing was prepared).
    WaitForProducer,
    /// `begin_transaction` on the prepared producer.
    Begin,
    /// Task thread waiting because the producer's queue was full.
    QueueFull,
    /// Flushing at a barrier or at the end of input.
    Flush,
    /// Committing: `commit_transaction` (or `EndTxn` for a transaction of
    /// another attempt).
    Commit,
    /// `close`: waiting for a preparation still in progress.
    Close,
}

impl Phase {
    /// Every phase, in the order of a transaction's life.
    pub const ALL: [Phase; 9] = [
        Phase::Open,
        Phase::Recover,
        Phase::Prepare,
        Phase::WaitForProducer,
        Phase::Begin,
        Phase::QueueFull,
        Phase::Flush,
        Phase::Commit,
        Phase::Close,
    ];

    /// A short name (`wait-for-producer`, `queue-full`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Open => "open",
            Phase::Recover => "recover",
            Phase::Prepare => "prepare",
            Phase::WaitForProducer => "wait-for-producer",
            Phase::Begin => "begin",
            Phase::QueueFull => "queue-full",
            Phase::Flush => "flush",
            Phase::Commit => "commit",
            Phase::Close => "close",
        }
    }

    /// Whether the phase runs on a background thread, not the task thread.
    pub fn is_background(self) -> bool {
        self == Phase::Prepare
    }

    fn index(self) -> usize {
        self as usize
    }
}

struct Total {
    nanos: AtomicU64,
    count: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: Total = Total { nanos: AtomicU64::new(0), count: AtomicU64::new(0) };
static TOTALS: [Total; Phase::ALL.len()] = [ZERO; Phase::ALL.len()];

/// Adds one occurrence of `phase` that took `elapsed`.
pub fn record(phase: Phase, elapsed: Duration) {
    let t = &TOTALS[phase.index()];
    t.nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    t.count.fetch_add(1, Ordering::Relaxed);
}

/// Runs `f`, recording its duration under `phase`.
pub fn timed<R>(phase: Phase, f: impl FnOnce() -> R) -> R {
    let started = Instant::now();
    let r = f();
    record(phase, started.elapsed());
    r
}

/// The total time and the count of one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseTotal {
    /// The phase.
    pub phase: Phase,
    /// Time spent in it, summed over subtasks.
    pub total: Duration,
    /// How often it ran.
    pub count: u64,
}

/// The totals of every phase so far, in [`Phase::ALL`] order.
pub fn snapshot() -> Vec<PhaseTotal> {
    Phase::ALL
        .iter()
        .map(|&phase| {
            let t = &TOTALS[phase.index()];
            PhaseTotal {
                phase,
                total: Duration::from_nanos(t.nanos.load(Ordering::Relaxed)),
                count: t.count.load(Ordering::Relaxed),
            }
        })
        .collect()
}

/// Sets every total back to zero.
pub fn reset() {
    for t in &TOTALS {
        t.nanos.store(0, Ordering::Relaxed);
        t.count.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_indexed_in_order_and_named_uniquely() {
        for (i, p) in Phase::ALL.iter().enumerate() {
            assert_eq!(p.index(), i);
        }
        let mut names: Vec<_> = Phase::ALL.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Phase::ALL.len());
    }

    #[test]
    fn records_add_up_per_phase() {
        let before = snapshot();
        record(Phase::Commit, Duration::from_millis(3));
        record(Phase::Commit, Duration::from_millis(4));
        let after = snapshot();
        let commit = |s: &[PhaseTotal]| s[Phase::Commit.index()];
        // Other tests of this process may record too: at least ours.
        assert!(commit(&after).count >= commit(&before).count + 2);
        assert!(commit(&after).total >= commit(&before).total + Duration::from_millis(7));
    }
}
