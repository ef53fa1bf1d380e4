//! Keyed state and its backends.
//!
//! A keyed operator owns one [`KeyedStateStore`]. Every piece of keyed state
//! (value, list, map, reducing, aggregating — see [`handles`]) is a named
//! *state* registered in that store; each entry is addressed by
//!
//! ```text
//! key group (2 bytes, big endian) ‖ key (postcard) ‖ namespace (postcard)
//! ```
//!
//! so that a contiguous range of key groups is a contiguous range of keys,
//! which is what lets a snapshot be cut by key group when a job restores at
//! another parallelism. The namespace is empty for plain keyed state and the
//! window for window state.
//!
//! Two backends, chosen by `state.backend`:
//!
//! * [`StateBackendKind::HashMap`]: typed values on the heap. Checkpoints
//!   are incremental ([`changelog`]) and copy-on-write: at a barrier the
//!   task thread only marks the entries changed since the last confirmed
//!   checkpoint; the upload thread encodes them into a change file while the
//!   task goes on (an entry the task changes first is encoded by the task
//!   thread, as it was); the upload thread also compacts long chains;
//!   savepoints hold every entry.
//! * [`StateBackendKind::RocksDb`]: one RocksDB instance per stateful
//!   subtask with a column family per state. In front of it sits a typed
//!   write-back cache (`state.backend.rocksdb.cache-entries` entries per
//!   state), so a hot key costs no RocksDB read or write per record; dirty
//!   entries are written in batches when the cache is full and at every
//!   snapshot. Keyed `reduce`/`sum` fetch the entries an input batch lacks
//!   with one `MultiGet` ([`KeyedStateStore::prefetch`]). Snapshots are
//!   incremental in two ways. A *materialization* makes a RocksDB checkpoint
//!   (hard links) and uploads only the SST files that no confirmed
//!   checkpoint already stored in `<job>/shared/`. Between materializations
//!   (`state.backend.changelog.*`, on by default) a checkpoint is the last
//!   materialization plus the log of every write since it
//!   ([`rocks_changelog`]), so a barrier flushes no memtable. Batches the
//!   cache evicts are written on a background thread (write-behind), and
//!   read from the batch until they have landed.
//!
//! Both backends write the same value encoding and restore from either
//! snapshot format, so a savepoint taken on one backend restores on the other.
//! Timers ([`timers`]) are kept on the heap for both backends and are part of
//! the same snapshot.

pub(crate) mod arena;
pub mod change_file;
pub mod changelog;
pub mod entry_set;
pub mod format;
pub mod handles;
pub(crate) mod local_dir;
pub mod rocks;
pub mod rocks_changelog;
pub(crate) mod rocks_files;
pub(crate) mod rocks_writer;
pub mod store;
pub mod table;
pub mod timers;
pub mod ttl;

pub use handles::{AggregateFunction, AggregatingState, ListState, MapState, ReducingState, SharedStore, ValueState};
pub use store::{KeyedStateStore, StateId};
pub use table::StateValue;
pub use timers::{TimeDomain, Timer};
pub use ttl::{StateTtlConfig, TtlUpdateType};

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Which keyed-state backend a job uses (`state.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateBackendKind {
    /// Typed values on the heap (`hashmap`, the default).
    #[default]
    HashMap,
    /// RocksDB with incremental checkpoints (`rocksdb`).
    RocksDb,
}

impl FromStr for StateBackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hashmap" | "heap" | "memory" => Ok(StateBackendKind::HashMap),
            "rocksdb" => Ok(StateBackendKind::RocksDb),
            other => Err(format!("unknown state backend '{other}'; use 'hashmap' or 'rocksdb'")),
        }
    }
}

impl std::fmt::Display for StateBackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StateBackendKind::HashMap => "hashmap",
            StateBackendKind::RocksDb => "rocksdb",
        })
    }
}

/// The keyed-state settings of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateBackendConfig {
    /// Which backend.
    pub kind: StateBackendKind,
    /// Where RocksDB keeps its working files (`state.backend.rocksdb.localdir`;
    /// default: the system temp directory). Each subtask uses its own
    /// directory below it, removed when the subtask ends.
    pub local_dir: Option<PathBuf>,
    /// Entries per state held in the typed cache in front of RocksDB
    /// (`state.backend.rocksdb.cache-entries`).
    pub cache_entries: usize,
    /// How the RocksDB instances are tuned.
    pub rocksdb: RocksDbTuning,
    /// How RocksDB checkpoints log writes between materializations.
    pub changelog: ChangelogConfig,
}

/// The changelog of RocksDB checkpoints, named after Flink's changelog
/// state backend (`state.backend.changelog.*`, see [`rocks_changelog`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogConfig {
    /// Log writes and make checkpoints of the log between materializations
    /// (`state.backend.changelog.enabled`; default on). Off: every
    /// checkpoint flushes the memtables and makes a RocksDB checkpoint.
    pub enabled: bool,
    /// Materialize at least this often
    /// (`state.backend.changelog.periodic-materialize.interval`).
    pub materialize_interval: Duration,
    /// Materialize once the log since the last materialization holds this
    /// many bytes (`state.backend.changelog.materialize-after-size`). It
    /// bounds the replay at a restore, and the memory the log takes if
    /// checkpoints keep failing.
    pub materialize_after_bytes: u64,
}

impl Default for ChangelogConfig {
    fn default() -> Self {
        ChangelogConfig {
            enabled: true,
            materialize_interval: Duration::from_secs(600),
            materialize_after_bytes: 256 << 20,
        }
    }
}

impl Default for StateBackendConfig {
    fn default() -> Self {
        StateBackendConfig {
            kind: StateBackendKind::HashMap,
            local_dir: None,
            cache_entries: 100_000,
            rocksdb: RocksDbTuning::default(),
            changelog: ChangelogConfig::default(),
        }
    }
}

/// RocksDB's compaction style (`state.backend.rocksdb.compaction.style`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompactionStyle {
    /// Leveled compaction: the fewest files per lookup (the default).
    #[default]
    Level,
    /// Universal compaction: less rewriting of data, more files per lookup.
    Universal,
}

impl FromStr for CompactionStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "level" => Ok(CompactionStyle::Level),
            "universal" => Ok(CompactionStyle::Universal),
            other => Err(format!("unknown RocksDB compaction style '{other}'; use 'level' or 'universal'")),
        }
    }
}

/// The RocksDB settings of a job, named after Flink's
/// `state.backend.rocksdb.*` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RocksDbTuning {
    /// Size in bytes of the block cache shared by all instances of the
    /// process (`state.backend.rocksdb.block.cache-size`; the first instance
    /// opened sets it).
    pub block_cache_bytes: usize,
    /// Approximate size in bytes of a data block
    /// (`state.backend.rocksdb.block.blocksize`).
    pub block_bytes: usize,
    /// Index and filter blocks live in the block cache, which bounds their
    /// memory, instead of pinned in memory with their table files, which
    /// spares a cache lookup per probe
    /// (`state.backend.rocksdb.block.cache-index-and-filter-blocks`).
    pub cache_index_and_filters: bool,
    /// Size in bytes of one memtable per column family
    /// (`state.backend.rocksdb.writebuffer.size`).
    pub write_buffer_bytes: usize,
    /// Memtables per column family, the active one included
    /// (`state.backend.rocksdb.writebuffer.count`).
    pub write_buffer_count: usize,
    /// Compaction style (`state.backend.rocksdb.compaction.style`).
    pub compaction: CompactionStyle,
    /// Background flush and compaction jobs per instance
    /// (`state.backend.rocksdb.thread.num`).
    pub background_jobs: usize,
}

impl Default for RocksDbTuning {
    fn default() -> Self {
        RocksDbTuning {
            block_cache_bytes: 256 << 20,
            block_bytes: 4 << 10,
            cache_index_and_filters: false,
            write_buffer_bytes: 64 << 20,
            write_buffer_count: 3,
            compaction: CompactionStyle::Level,
            background_jobs: 2,
        }
    }
}
