//! The data generator source (Flink's `DataGeneratorSource`).
//!
//! Records are made by a user function from their *index* (0, 1, 2, ...) and
//! a random generator seeded from `(seed, index)`, so the same seed gives the
//! same records whatever the parallelism: subtask *i* of *p* generates the
//! indices *i*, *i + p*, *i + 2p*, .... The position saved in checkpoints is
//! the next index, so a restored job continues the same sequence.
//!
//! ```
//! use sluice_connectors::datagen::DataGeneratorSource;
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Order { id: u64, amount_cents: u64 }
//!
//! let source = DataGeneratorSource::new(|index, rng| Order { id: index, amount_cents: rng.next_u64() % 10_000 })
//!     .with_seed(7)
//!     .with_count(1_000)
//!     .with_rate(500.0)
//!     .unwrap();
//! # let _ = source;
//! ```

mod rate;
mod rng;
mod source;
mod stride;

pub use rate::RateLimiter;
pub use rng::SplitMix64;
pub use source::DataGeneratorSource;
pub use stride::Stride;
