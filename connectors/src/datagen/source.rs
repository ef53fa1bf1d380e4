//! The `Source` implementation of the data generator.

use super::rate::RateLimiter;
use super::rng::SplitMix64;
use super::stride::Stride;
use crate::error::Error;
use sluice::{Boundedness, CheckpointId, Collector, Data, Result, RuntimeContext, Source, SourceStatus};
use std::sync::Arc;

/// The user function that makes a record from its index and a seeded generator.
pub type GenerateFn<T> = Arc<dyn Fn(u64, &mut SplitMix64) -> T + Send + Sync>;

/// Generates records of type `T` from a function of (index, rng).
pub struct DataGeneratorSource<T> {
    generate: GenerateFn<T>,
    seed: u64,
    count: Option<u64>,
    rate: Option<f64>,
    stride: Stride,
    limiter: RateLimiter,
}

impl<T> Clone for DataGeneratorSource<T> {
    fn clone(&self) -> Self {
        DataGeneratorSource {
            generate: self.generate.clone(),
            seed: self.seed,
            count: self.count,
            rate: self.rate,
            stride: self.stride,
            limiter: RateLimiter::default(),
        }
    }
}

impl<T> DataGeneratorSource<T> {
    /// An unbounded, unthrottled generator with seed 0.
    pub fn new(generate: impl Fn(u64, &mut SplitMix64) -> T + Send + Sync + 'static) -> Self {
        DataGeneratorSource {
            generate: Arc::new(generate),
            seed: 0,
            count: None,
            rate: None,
            stride: Stride::default(),
            limiter: RateLimiter::default(),
        }
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Generates exactly `count` records in total, then finishes.
    pub fn with_count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// At most `records_per_second` in total over all subtasks.
    pub fn with_rate(mut self, records_per_second: f64) -> crate::Result<Self> {
        if !(records_per_second.is_finite() && records_per_second > 0.0) {
            return Err(Error::InvalidOption {
                connector: "datagen",
                option: "rate",
                message: format!("{records_per_second} is not a positive number of records per second"),
            });
        }
        self.rate = Some(records_per_second);
        Ok(self)
    }
}

impl<T: Data> Source<T> for DataGeneratorSource<T> {
    type State = u64;

    fn boundedness(&self) -> Boundedness {
        if self.count.is_some() {
            Boundedness::Bounded
        } else {
            Boundedness::Unbounded
        }
    }

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.stride.open(ctx);
        self.limiter = RateLimiter::optional(self.rate.map(|r| r / self.stride.step() as f64));
        Ok(())
    }

    fn poll_next(&mut self, out: &mut dyn Collector<T>) -> Result<SourceStatus> {
        let budget = match self.limiter.budget(512) {
            Ok(n) => n,
            Err(wait) => return Ok(SourceStatus::Idle(wait)),
        };
        for _ in 0..budget {
            if self.stride.done(self.count) {
                return Ok(SourceStatus::Finished);
            }
            let index = self.stride.next();
            let mut rng = SplitMix64::for_stream(self.seed, index);
            out.collect((self.generate)(index, &mut rng))?;
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

    fn drain(src: &mut DataGeneratorSource<(u64, u64)>, subtask: u32, p: u32) -> Vec<(u64, u64)> {
        src.open(&RuntimeContext::for_test(subtask, p)).unwrap();
        let mut out = Vec::new();
        while src.poll_next(&mut out).unwrap() != SourceStatus::Finished {}
        out
    }

    fn gen() -> DataGeneratorSource<(u64, u64)> {
        DataGeneratorSource::new(|i, rng| (i, rng.below(1000))).with_seed(9).with_count(1000)
    }

    #[test]
    fn same_records_whatever_the_parallelism() {
        let one = drain(&mut gen(), 0, 1);
        let mut three: Vec<_> = (0..3).flat_map(|s| drain(&mut gen(), s, 3)).collect();
        three.sort();
        assert_eq!(one.len(), 1000);
        assert_eq!(one, three);
        let other_seed = drain(&mut gen().with_seed(10), 0, 1);
        assert_ne!(one, other_seed);
    }

    #[test]
    fn restore_continues_and_rate_limits() {
        let mut g = gen();
        g.open(&RuntimeContext::for_test(0, 1)).unwrap();
        let mut out = Vec::new();
        g.poll_next(&mut out).unwrap();
        let pos = g.snapshot_state(CheckpointId(1)).unwrap();
        let mut h = gen();
        h.restore_state(pos).unwrap();
        out.extend(drain(&mut h, 0, 1));
        assert_eq!(out, drain(&mut gen(), 0, 1));

        let mut slow = gen().with_rate(100.0).unwrap();
        slow.open(&RuntimeContext::for_test(0, 1)).unwrap();
        let mut few = Vec::new();
        assert_eq!(slow.poll_next(&mut few).unwrap(), SourceStatus::MoreAvailable);
        assert!(matches!(slow.poll_next(&mut few).unwrap(), SourceStatus::Idle(_)));
        assert!(few.len() <= 2, "throttled: {}", few.len());
        assert!(gen().with_rate(0.0).is_err());
    }
}
