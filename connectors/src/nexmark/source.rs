//! The `Source` implementation of the Nexmark generator.

use crate::datagen::{RateLimiter, Stride};
use crate::error::Error;
use ::nexmark::config::NexmarkConfig;
use ::nexmark::event::Event;
use ::nexmark::EventGenerator;
use sluice::{Boundedness, CheckpointId, Collector, Result, RuntimeContext, Source, SourceStatus};

/// The generator's base time unless set: 2026-01-01T00:00:00Z in ms, so
/// that event times do not depend on when a run starts.
pub const DEFAULT_BASE_TIME_MS: u64 = 1_767_225_600_000;

/// Events per `poll_next`.
const BATCH: u64 = 512;

/// Nexmark events, `events` in total (unbounded without), optionally at
/// most `rate` per second over all subtasks.
#[derive(Clone)]
pub struct NexmarkSource {
    config: NexmarkConfig,
    events: Option<u64>,
    rate: Option<f64>,
    /// This subtask's event numbers.
    stride: Stride,
    limiter: RateLimiter,
    generator: Option<EventGenerator>,
}

impl Default for NexmarkSource {
    fn default() -> Self {
        Self::new()
    }
}

impl NexmarkSource {
    /// An unbounded, unthrottled source with the Nexmark defaults and base
    /// time [`DEFAULT_BASE_TIME_MS`].
    pub fn new() -> Self {
        let config = NexmarkConfig { base_time: DEFAULT_BASE_TIME_MS, ..NexmarkConfig::default() };
        Self::with_config(config)
    }

    /// A source with a generator configuration of its own (proportions,
    /// hot ratios, rates that shape event times, base time).
    pub fn with_config(config: NexmarkConfig) -> Self {
        NexmarkSource {
            config,
            events: None,
            rate: None,
            stride: Stride::default(),
            limiter: RateLimiter::default(),
            generator: None,
        }
    }

    /// Generates the events numbered `0..events` (over all subtasks), then
    /// finishes.
    pub fn with_events(mut self, events: u64) -> Self {
        self.events = Some(events);
        self
    }

    /// At most `events_per_second` in total over all subtasks.
    pub fn with_rate(mut self, events_per_second: f64) -> crate::Result<Self> {
        if !(events_per_second.is_finite() && events_per_second > 0.0) {
            return Err(Error::InvalidOption {
                connector: "nexmark",
                option: "rate",
                message: format!("{events_per_second} is not a positive number of events per second"),
            });
        }
        self.rate = Some(events_per_second);
        Ok(self)
    }
}

impl Source<Event> for NexmarkSource {
    type State = u64;

    fn boundedness(&self) -> Boundedness {
        if self.events.is_some() {
            Boundedness::Bounded
        } else {
            Boundedness::Unbounded
        }
    }

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.stride.open(ctx);
        let (next, step) = (self.stride.next(), self.stride.step());
        self.limiter = RateLimiter::optional(self.rate.map(|r| r / step as f64));
        self.generator = Some(EventGenerator::new(self.config.clone()).with_offset(next).with_step(step));
        Ok(())
    }

    fn poll_next(&mut self, out: &mut dyn Collector<Event>) -> Result<SourceStatus> {
        let budget = match self.limiter.budget(BATCH) {
            Ok(n) => n,
            Err(wait) => return Ok(SourceStatus::Idle(wait)),
        };
        let Some(generator) = self.generator.as_mut() else {
            return Err(sluice::Error::internal("the Nexmark source was polled before open"));
        };
        for _ in 0..budget {
            if self.stride.done(self.events) {
                return Ok(SourceStatus::Finished);
            }
            let Some(event) = generator.next() else { return Ok(SourceStatus::Finished) };
            out.collect(event)?;
            self.stride.advance();
            self.limiter.emitted(1);
        }
        Ok(SourceStatus::MoreAvailable)
    }

    fn snapshot_state(&mut self, _checkpoint: CheckpointId) -> Result<u64> {
        Ok(self.stride.next())
    }

    fn restore_state(&mut self, next: u64) -> Result<()> {
        self.stride.restore(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn drain(src: &mut NexmarkSource, subtask: u32, p: u32) -> Vec<Event> {
        src.open(&RuntimeContext::for_test(subtask, p)).unwrap();
        let mut out = Vec::new();
        while src.poll_next(&mut out).unwrap() != SourceStatus::Finished {}
        out
    }

    fn key(e: &Event) -> String {
        format!("{e:?}")
    }

    #[test]
    fn the_same_events_whatever_the_parallelism_in_nexmark_proportions() {
        let one = drain(&mut NexmarkSource::new().with_events(5_000), 0, 1);
        assert_eq!(one.len(), 5_000);
        let mut three: Vec<Event> =
            (0..3).flat_map(|s| drain(&mut NexmarkSource::new().with_events(5_000), s, 3)).collect();
        let mut a: Vec<String> = one.iter().map(key).collect();
        let mut b: Vec<String> = three.drain(..).map(|e| key(&e)).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        // 1 : 3 : 46 out of every 50.
        let persons = one.iter().filter(|e| matches!(e, Event::Person(_))).count();
        let auctions = one.iter().filter(|e| matches!(e, Event::Auction(_))).count();
        let bids = one.iter().filter(|e| matches!(e, Event::Bid(_))).count();
        assert_eq!((persons, auctions, bids), (100, 300, 4_600));
        // Event times come from the fixed base time, not the clock.
        let again = drain(&mut NexmarkSource::new().with_events(5_000), 0, 1);
        assert_eq!(one.iter().map(key).collect::<Vec<_>>(), again.iter().map(key).collect::<Vec<_>>());
    }

    #[test]
    fn a_restored_source_continues_where_its_checkpoint_was() {
        let whole = drain(&mut NexmarkSource::new().with_events(3_000), 0, 1);
        let mut first = NexmarkSource::new().with_events(3_000);
        first.open(&RuntimeContext::for_test(0, 1)).unwrap();
        let mut out = Vec::new();
        first.poll_next(&mut out).unwrap();
        let position = first.snapshot_state(CheckpointId(1)).unwrap();
        let mut second = NexmarkSource::new().with_events(3_000);
        second.restore_state(position).unwrap();
        out.extend(drain(&mut second, 0, 1));
        assert_eq!(out.iter().map(key).collect::<Vec<_>>(), whole.iter().map(key).collect::<Vec<_>>());
        assert!(NexmarkSource::new().with_rate(-1.0).is_err());
    }
}
