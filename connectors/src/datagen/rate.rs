//! Pacing a source to a number of records per second.

use std::time::{Duration, Instant};

/// Paces emission to `rate` records per second, measured from the first
/// call: ask [`RateLimiter::budget`] before emitting, report with
/// [`RateLimiter::emitted`]. The default limiter is unlimited.
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    rate: Option<f64>,
    started: Option<Instant>,
    emitted: u64,
}

impl RateLimiter {
    /// A limiter for `rate` records per second (> 0).
    pub fn new(rate: f64) -> Self {
        Self::optional(Some(rate))
    }

    /// A limiter for `rate` records per second, or an unlimited one.
    pub fn optional(rate: Option<f64>) -> Self {
        RateLimiter { rate, started: None, emitted: 0 }
    }

    /// How many records may be emitted now (at most `max`), or, if none,
    /// how long to wait before asking again (at most 50 ms).
    pub fn budget(&mut self, max: u64) -> Result<u64, Duration> {
        let Some(rate) = self.rate else { return Ok(max) };
        let started = *self.started.get_or_insert_with(Instant::now);
        let allowed = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
        if self.emitted >= allowed {
            let wait = ((self.emitted + 1 - allowed) as f64 / rate).min(0.05);
            return Err(Duration::from_secs_f64(wait));
        }
        Ok(max.min(allowed - self.emitted))
    }

    /// Records that `n` more records were emitted.
    pub fn emitted(&mut self, n: u64) {
        self.emitted += n;
    }
}
