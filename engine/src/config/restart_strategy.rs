//! Restart strategies: whether and when a failed job restarts from its
//! latest completed checkpoint (`restart-strategy.*`, Flink's names). The
//! job master applies them (`cluster::restart`).

use super::Configuration;
use crate::error::Result;
use std::time::Duration;

/// How a failed job is restarted.
#[derive(Debug, Clone, PartialEq)]
pub enum RestartStrategy {
    /// Never: the first failure fails the job.
    None,
    /// Up to `attempts` restarts, each after `delay`.
    FixedDelay {
        /// Restarts before giving up.
        attempts: u32,
        /// Wait before each restart.
        delay: Duration,
    },
    /// Restarts with a wait that grows by `multiplier` up to `max`.
    ExponentialDelay {
        /// First wait.
        initial: Duration,
        /// Longest wait.
        max: Duration,
        /// Growth factor.
        multiplier: f64,
        /// Restarts before giving up (`None`: unlimited).
        attempts: Option<u32>,
    },
    /// Restarts unless more than `max_failures` happen within `interval`.
    FailureRate {
        /// Failures tolerated per interval.
        max_failures: u32,
        /// The interval.
        interval: Duration,
        /// Wait before each restart.
        delay: Duration,
    },
}

impl RestartStrategy {
    /// Reads `restart-strategy.*`; the default is exponential-delay when
    /// checkpointing is on and none otherwise (as in Flink).
    pub fn from_config(conf: &Configuration, checkpointing: bool) -> Result<Self> {
        let dur = |k: &str| -> Result<Duration> { Ok(conf.get_duration(k)?.unwrap_or_default()) };
        let kind = conf.get_str("restart-strategy.type")?;
        let kind = kind.as_deref().unwrap_or(if checkpointing { "exponential-delay" } else { "none" });
        Ok(match kind {
            "fixed-delay" => RestartStrategy::FixedDelay {
                attempts: conf.get_u32("restart-strategy.fixed-delay.attempts")?.unwrap_or(1),
                delay: dur("restart-strategy.fixed-delay.delay")?,
            },
            "exponential-delay" => RestartStrategy::ExponentialDelay {
                initial: dur("restart-strategy.exponential-delay.initial-backoff")?,
                max: dur("restart-strategy.exponential-delay.max-backoff")?,
                multiplier: conf.get_f64("restart-strategy.exponential-delay.backoff-multiplier")?.unwrap_or(2.0),
                attempts: conf.get_u32("restart-strategy.exponential-delay.attempts-before-reset-backoff")?,
            },
            "failure-rate" => RestartStrategy::FailureRate {
                max_failures: conf.get_u32("restart-strategy.failure-rate.max-failures-per-interval")?.unwrap_or(1),
                interval: dur("restart-strategy.failure-rate.failure-rate-interval")?,
                delay: dur("restart-strategy.failure-rate.delay")?,
            },
            _ => RestartStrategy::None,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn defaults_follow_checkpointing() {
        let c = Configuration::new();
        assert_eq!(RestartStrategy::from_config(&c, false).unwrap(), RestartStrategy::None);
        assert!(matches!(RestartStrategy::from_config(&c, true).unwrap(), RestartStrategy::ExponentialDelay { .. }));
    }
}
