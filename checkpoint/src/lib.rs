//! # sluice-checkpoint
//!
//! The vocabulary that Sluice's runtime and its checkpoint logic share, kept in
//! its own crate so that nothing depends in a cycle (see `ARCHITECTURE.md`):
//!
//! * [`barrier`]: checkpoint ids, the barrier that flows through the data
//!   channels, and the checkpoint options it carries.
//! * [`clock`]: the wall clock (milliseconds since the epoch) all of Sluice
//!   reads.
//! * [`key_group`]: how keys hash into key groups and how key groups map to
//!   subtasks, which is what lets keyed state be redistributed when a job is
//!   restored at another parallelism.
//! * [`coordinator`]: the checkpoint coordinator's decisions (when to
//!   trigger, when a checkpoint is complete, when to abort, when failures
//!   fail the job), free of I/O.
//! * [`pending`]: a checkpoint in flight, which accepts acknowledgements
//!   from its expected subtasks only and finalizes itself (writes its
//!   `_metadata`) once all are in.
//! * [`state`]: keyed state (value, list, map, reducing, aggregating, with
//!   TTL), timers, and the heap and RocksDB backends with incremental
//!   snapshots.
//! * [`names`]: the check that every name read from a checkpoint is one
//!   plain file name, and files created without following links.
//! * [`metadata`] and [`storage`]: completed checkpoints on disk
//!   (`<dir>/<job>/chk-<n>/`), written atomically and verified on restore.
//!
//! ```
//! use sluice_checkpoint::key_group::{assign_to_key_group, operator_index_for_key_group};
//! let group = assign_to_key_group(&"hello", 128);
//! let subtask = operator_index_for_key_group(128, 4, group);
//! assert!(group < 128 && subtask < 4);
//! ```
#![deny(missing_docs)]

pub mod barrier;
pub mod clock;
pub mod coordinator;
pub mod error;
pub mod key_group;
pub mod metadata;
pub mod names;
pub mod pending;
pub mod state;
pub mod storage;

pub use barrier::{CheckpointBarrier, CheckpointId, CheckpointKind, CheckpointingMode};
pub use error::{Error, Result};
pub use key_group::{KeyGroupRange, DEFAULT_MAX_PARALLELISM};
