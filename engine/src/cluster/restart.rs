//! Applying a job's restart strategy ([`RestartStrategy`], configured with
//! `restart-strategy.*`) to its failures: whether and when it restarts from
//! its latest completed checkpoint.

use crate::config::RestartStrategy;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Applies a strategy to a job's failures.
#[derive(Debug)]
pub(crate) struct RestartTracker {
    strategy: RestartStrategy,
    restarts: u32,
    failures: VecDeque<Instant>,
    backoff: Option<Duration>,
}

impl RestartTracker {
    pub(crate) fn new(strategy: RestartStrategy) -> Self {
        RestartTracker { strategy, restarts: 0, failures: VecDeque::new(), backoff: None }
    }

    /// Restarts so far.
    pub(crate) fn restarts(&self) -> u32 {
        self.restarts
    }

    /// A failure happened at `now`: the wait before restarting, or `None`
    /// if the strategy gives up.
    pub(crate) fn on_failure(&mut self, now: Instant) -> Option<Duration> {
        let wait = match &self.strategy {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay } => (self.restarts < *attempts).then_some(*delay),
            RestartStrategy::ExponentialDelay { initial, max, multiplier, attempts } => {
                if attempts.is_some_and(|a| self.restarts >= a) {
                    None
                } else {
                    let next = match self.backoff {
                        None => *initial,
                        Some(b) => b.mul_f64(*multiplier).min(*max),
                    };
                    self.backoff = Some(next);
                    Some(next)
                }
            }
            RestartStrategy::FailureRate { max_failures, interval, delay } => {
                self.failures.push_back(now);
                while self.failures.front().is_some_and(|t| now.duration_since(*t) > *interval) {
                    self.failures.pop_front();
                }
                (self.failures.len() as u32 <= *max_failures).then_some(*delay)
            }
        };
        if wait.is_some() {
            self.restarts += 1;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn strategies_decide() {
        let t = Instant::now();
        let mut none = RestartTracker::new(RestartStrategy::None);
        assert_eq!(none.on_failure(t), None);

        let mut fixed =
            RestartTracker::new(RestartStrategy::FixedDelay { attempts: 2, delay: Duration::from_millis(5) });
        assert_eq!(fixed.on_failure(t), Some(Duration::from_millis(5)));
        assert_eq!(fixed.on_failure(t), Some(Duration::from_millis(5)));
        assert_eq!(fixed.on_failure(t), None);
        assert_eq!(fixed.restarts(), 2);

        let mut exp = RestartTracker::new(RestartStrategy::ExponentialDelay {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(25),
            multiplier: 2.0,
            attempts: None,
        });
        let waits: Vec<_> = (0..4).map(|_| exp.on_failure(t).unwrap().as_millis()).collect();
        assert_eq!(waits, [10, 20, 25, 25]);

        let mut rate = RestartTracker::new(RestartStrategy::FailureRate {
            max_failures: 2,
            interval: Duration::from_secs(60),
            delay: Duration::ZERO,
        });
        assert!(rate.on_failure(t).is_some());
        assert!(rate.on_failure(t).is_some());
        assert!(rate.on_failure(t).is_none(), "third failure within the interval");
        let later = t + Duration::from_secs(120);
        assert!(rate.on_failure(later).is_some(), "old failures age out");
    }
}
