//! # sluice-connectors
//!
//! Sources and sinks for Sluice, one folder per connector, each the same
//! shape: a `mod.rs` with the connector's docs and its builder-style
//! constructor, the `Source`/`Sink` implementation, and unit tests beside it.
//!
//! * [`datagen`]: typed test data from a user function, with a rate limit, a
//!   bounded count, a deterministic seed and a resumable position.
//! * [`mysql`]: a MySQL / MariaDB table read as a snapshot, then followed by
//!   a growing tracking column, split over subtasks, resumable.
//! * [`kafka`]: a Kafka source with checkpointed offsets, and sinks with
//!   exactly-once (transactions, two-phase commit) or at-least-once delivery.
//! * [`nexmark`]: the Nexmark benchmark's auction events, parallel and
//!   resumable.
#![deny(missing_docs)]

pub mod datagen;
pub mod error;
pub mod kafka;
pub mod mysql;
pub mod nexmark;

pub use error::{Error, Result};
