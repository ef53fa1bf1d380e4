//! Time-to-live of keyed state entries.
//!
//! Every stored value carries the processing time of its last write (or
//! read, see [`TtlUpdateType`]). With a TTL configured, an entry older than
//! the TTL reads as absent and is removed when it is next touched.
//! Snapshots keep each entry's timestamp, so an entry that had expired
//! before a checkpoint or savepoint reads as absent after a restore too
//! (`engine/tests/state_kinds.rs`).
//!
//! Expired entries are not always left out of snapshots: the heap backend
//! drops the ones it encodes into a snapshot, but an entry already stored
//! in an earlier change file of the chain, and any entry in RocksDB's
//! files (checkpoints and savepoints alike), stays stored with its old
//! timestamp until it is written or removed. A job restored with a longer
//! TTL for the state can therefore read such an entry again.

use std::time::Duration;

/// When the timestamp of an entry is refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TtlUpdateType {
    /// On creation and on every write (Flink's default).
    #[default]
    OnCreateAndWrite,
    /// Also on every read.
    OnReadAndWrite,
}

/// A state's time-to-live. Expired values are never returned.
///
/// ```
/// use sluice_checkpoint::state::{StateTtlConfig, TtlUpdateType};
/// use std::time::Duration;
/// let ttl = StateTtlConfig::new(Duration::from_secs(60)).update_type(TtlUpdateType::OnReadAndWrite);
/// assert!(ttl.is_expired(0, 61_000));
/// assert!(!ttl.is_expired(0, 60_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateTtlConfig {
    /// How long an entry lives after its timestamp.
    pub ttl: Duration,
    /// When its timestamp is refreshed.
    pub update_type: TtlUpdateType,
}

impl StateTtlConfig {
    /// Entries expire `ttl` after they were last written.
    pub fn new(ttl: Duration) -> Self {
        StateTtlConfig { ttl, update_type: TtlUpdateType::OnCreateAndWrite }
    }

    /// Sets when the timestamp is refreshed.
    pub fn update_type(mut self, update_type: TtlUpdateType) -> Self {
        self.update_type = update_type;
        self
    }

    /// Whether an entry stamped at `stamp_ms` has expired at `now_ms`.
    pub fn is_expired(&self, stamp_ms: i64, now_ms: i64) -> bool {
        now_ms.saturating_sub(stamp_ms) > self.ttl.as_millis() as i64
    }
}
