//! What a keyed operator's snapshot looks like, and how its asynchronous
//! part is handed to the uploader.
//!
//! An operator's snapshot is taken in two parts (see the checkpoint
//! lifecycle in `ARCHITECTURE.md`): the synchronous part runs on the task
//! thread while the barrier passes and must be short; what it returns is
//! either the finished bytes ([`StateSnapshot::Ready`]) or an
//! [`UploadFn`] that the subtask's upload thread runs afterwards (RocksDB:
//! copy the new SST files of a RocksDB checkpoint made of hard links).

use crate::barrier::CheckpointKind;
use crate::error::Result;
use crate::state::changelog::ChangeChain;
use crate::state::timers::{TimeDomain, Timer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the asynchronous part of a snapshot writes its files.
#[derive(Debug, Clone)]
pub struct UploadTarget {
    /// `<dir>/<job>/chk-<n>/`: files owned by this checkpoint alone.
    pub checkpoint_dir: PathBuf,
    /// `<dir>/<job>/shared/`: files that later checkpoints may reference.
    pub shared_dir: PathBuf,
    /// A prefix unique to the operator and subtask (`<operator>-<subtask>`).
    pub file_prefix: String,
    /// Checkpoint or savepoint: savepoints are self-contained (no shared files).
    pub kind: CheckpointKind,
}

/// The result of an upload: the bytes of the state handle and the shared
/// files it references (names relative to the shared directory).
#[derive(Debug, Clone, Default)]
pub struct UploadedState {
    /// The handle, stored as the subtask's state file of the operator.
    pub bytes: Vec<u8>,
    /// Shared files the handle references.
    pub shared: Vec<String>,
}

/// The asynchronous part of a snapshot.
pub type UploadFn = Box<dyn FnOnce(&UploadTarget) -> Result<UploadedState> + Send>;

/// What an operator hands over when a barrier passes.
pub enum StateSnapshot {
    /// Finished bytes.
    Ready(Vec<u8>),
    /// Work left for the upload thread.
    Upload(UploadFn),
}

impl std::fmt::Debug for StateSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateSnapshot::Ready(b) => write!(f, "Ready({} bytes)", b.len()),
            StateSnapshot::Upload(_) => f.write_str("Upload(..)"),
        }
    }
}

/// Where a stored RocksDB file lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StoredFile {
    /// In the checkpoint's own directory, under this name.
    Private(String),
    /// In the job's `shared/` directory, under this name.
    Shared(String),
}

/// A RocksDB checkpoint: the files of the instance, by their local name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RocksHandle {
    /// The instance that wrote it (for messages).
    pub instance: String,
    /// (local file name, where it is stored).
    pub files: Vec<(String, StoredFile)>,
}

impl StoredFile {
    /// Where it is, for a checkpoint stored in `checkpoint_dir`.
    pub fn path(&self, checkpoint_dir: &Path) -> PathBuf {
        match self {
            StoredFile::Private(name) => checkpoint_dir.join(name),
            StoredFile::Shared(name) => crate::storage::shared_dir_of(checkpoint_dir).join(name),
        }
    }
}

impl RocksHandle {
    /// The names of its files in the job's `shared/` directory.
    pub fn shared_files(&self) -> impl Iterator<Item = &str> {
        self.files.iter().filter_map(|(_, f)| match f {
            StoredFile::Shared(name) => Some(name.as_str()),
            StoredFile::Private(_) => None,
        })
    }
}

impl KeyedStateSnapshot {
    /// Checks that every file the snapshot names (change files, RocksDB
    /// files, logs) is one plain file name; `from` names where the snapshot
    /// was read in the error.
    pub fn check_names(&self, from: &Path) -> crate::error::Result<()> {
        use crate::names::check_file_name;
        let stored = |f: &StoredFile| match f {
            StoredFile::Private(name) | StoredFile::Shared(name) => check_file_name(name, from).map(|_| ()),
        };
        let rocks = |h: &RocksHandle| -> crate::error::Result<()> {
            for (local, file) in &h.files {
                check_file_name(local, from)?;
                stored(file)?;
            }
            Ok(())
        };
        match &self.data {
            StateData::Entries(_) => Ok(()),
            StateData::RocksDb(handle) => rocks(handle),
            StateData::RocksDbChangelog { base, logs } => {
                rocks(base)?;
                logs.iter().try_for_each(stored)
            }
            StateData::HeapChain(chain) | StateData::HeapChainV2(chain) => {
                chain.files.iter().try_for_each(|f| check_file_name(&f.name, from).map(|_| ()))
            }
        }
    }
}

/// (composite key, stored value) pairs of one state.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Receives entries: (key, value).
pub type EntryVisitor<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> Result<()>;

/// Receives restored entries: (state name, key, value).
pub type RestoreSink<'a> = &'a mut dyn FnMut(&str, &[u8], &[u8]) -> Result<()>;

/// The entries of all states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateData {
    /// (state name, [(composite key, stored value)]): the heap backend, and
    /// the canonical form any backend restores from.
    Entries(Vec<(String, Entries)>),
    /// A RocksDB checkpoint.
    RocksDb(RocksHandle),
    /// An incremental heap checkpoint in the legacy change file format
    /// (restored, no longer written).
    HeapChain(ChangeChain),
    /// An incremental heap checkpoint: change files (the position-keyed
    /// format of [`change_file`](crate::state::change_file)) to apply in
    /// order.
    HeapChainV2(ChangeChain),
    /// A RocksDB checkpoint of the changelog: a materialized RocksDB
    /// checkpoint and the change files of the writes after it, to apply in
    /// order (see [`rocks_changelog`](crate::state::rocks_changelog)).
    RocksDbChangelog {
        /// The materialization.
        base: RocksHandle,
        /// The logs since it, oldest first.
        logs: Vec<StoredFile>,
    },
}

/// One subtask's snapshot of a keyed operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedStateSnapshot {
    /// The states' entries.
    pub data: StateData,
    /// The registered timers.
    pub timers: Vec<(TimeDomain, Timer)>,
    /// The operator's own, non-keyed bytes.
    pub extra: Vec<u8>,
}

/// The key group of a composite key (its first two bytes).
pub fn key_group_of(composite: &[u8]) -> u32 {
    match composite {
        [a, b, ..] => u32::from(u16::from_be_bytes([*a, *b])),
        _ => u32::MAX,
    }
}
