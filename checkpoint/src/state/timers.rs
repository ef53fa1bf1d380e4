//! Event-time and processing-time timers of a keyed operator.
//!
//! A timer belongs to a key and a namespace (the window, for window
//! operators) and fires once when the watermark (event time) or the wall
//! clock (processing time) passes its timestamp. Registering the same timer
//! twice keeps one. Timers are held on the heap, ordered by time, and are
//! part of the keyed snapshot, cut by key group like all keyed state.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimeDomain {
    /// The watermark.
    EventTime,
    /// The wall clock of the subtask.
    ProcessingTime,
}

/// A registered timer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timer {
    /// When it fires (ms; event time or processing time).
    pub timestamp: i64,
    /// Key group ‖ key (postcard), as in the state's composite keys.
    pub key: Vec<u8>,
    /// The namespace (postcard; empty for none).
    pub namespace: Vec<u8>,
}

impl Timer {
    /// The key group of the timer's key.
    pub fn key_group(&self) -> u32 {
        match self.key.as_slice() {
            [a, b, ..] => u32::from(u16::from_be_bytes([*a, *b])),
            _ => 0,
        }
    }
}

/// The timers of one operator subtask.
#[derive(Debug, Default)]
pub struct TimerService {
    event: BTreeSet<Timer>,
    processing: BTreeSet<Timer>,
}

impl TimerService {
    fn queue(&mut self, domain: TimeDomain) -> &mut BTreeSet<Timer> {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    /// Registers a timer (a duplicate is kept once).
    pub fn register(&mut self, domain: TimeDomain, timer: Timer) {
        self.queue(domain).insert(timer);
    }

    /// Removes a timer if registered.
    pub fn delete(&mut self, domain: TimeDomain, timer: &Timer) {
        self.queue(domain).remove(timer);
    }

    /// Takes the earliest timer due at `time` (timestamp ≤ `time`).
    pub fn pop_due(&mut self, domain: TimeDomain, time: i64) -> Option<Timer> {
        let q = self.queue(domain);
        if q.first().is_some_and(|t| t.timestamp <= time) {
            q.pop_first()
        } else {
            None
        }
    }

    /// The earliest processing-time timer, if any.
    pub fn next_processing_time(&self) -> Option<i64> {
        self.processing.first().map(|t| t.timestamp)
    }

    /// Number of registered timers in `domain`.
    pub fn len(&self, domain: TimeDomain) -> usize {
        match domain {
            TimeDomain::EventTime => self.event.len(),
            TimeDomain::ProcessingTime => self.processing.len(),
        }
    }

    /// Whether no timer is registered.
    pub fn is_empty(&self) -> bool {
        self.event.is_empty() && self.processing.is_empty()
    }

    /// All timers, for a snapshot.
    pub fn snapshot(&self) -> Vec<(TimeDomain, Timer)> {
        let ev = self.event.iter().map(|t| (TimeDomain::EventTime, t.clone()));
        ev.chain(self.processing.iter().map(|t| (TimeDomain::ProcessingTime, t.clone()))).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(ts: i64, key: u8) -> Timer {
        Timer { timestamp: ts, key: vec![0, 1, key], namespace: vec![] }
    }

    #[test]
    fn fires_in_time_order_once() {
        let mut s = TimerService::default();
        s.register(TimeDomain::EventTime, t(20, 1));
        s.register(TimeDomain::EventTime, t(10, 2));
        s.register(TimeDomain::EventTime, t(10, 2));
        s.register(TimeDomain::ProcessingTime, t(5, 1));
        assert_eq!(s.pop_due(TimeDomain::EventTime, 15), Some(t(10, 2)));
        assert_eq!(s.pop_due(TimeDomain::EventTime, 15), None);
        assert_eq!(s.pop_due(TimeDomain::EventTime, 20), Some(t(20, 1)));
        assert_eq!(s.next_processing_time(), Some(5));
        assert_eq!(t(1, 3).key_group(), 1);
    }
}
