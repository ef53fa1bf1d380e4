//! The error type of the checkpoint crate.

use std::path::PathBuf;

/// Errors raised by checkpoint vocabulary, storage and coordination.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key-group range or max parallelism that cannot be valid.
    #[error("invalid key-group configuration: {0}")]
    InvalidKeyGroups(String),
    /// A snapshot could not be encoded or decoded.
    #[error("state snapshot of operator '{operator}' could not be {action}: {message}")]
    Snapshot {
        /// The operator whose state was being handled.
        operator: String,
        /// "encoded" or "decoded".
        action: &'static str,
        /// What went wrong.
        message: String,
    },
    /// Reading or writing checkpoint storage failed.
    #[error("checkpoint storage: cannot {action} '{path}': {source}")]
    Storage {
        /// What was being done ("write", "read", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A metadata file is not a valid Sluice checkpoint.
    #[error("checkpoint metadata '{path}' is corrupt or truncated: {reason}")]
    CorruptMetadata {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A state file named by the metadata is missing or damaged.
    #[error("state file '{path}' of checkpoint {checkpoint} is missing or damaged: {reason}")]
    MissingState {
        /// The checkpoint.
        checkpoint: u64,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Keyed state was used wrongly (a name registered twice with different
    /// types, access without a current key) or could not be decoded.
    #[error("state '{state}': {message}")]
    State {
        /// The state's name.
        state: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// The RocksDB state backend failed.
    #[error("RocksDB state backend: cannot {action}: {message}")]
    RocksDb {
        /// What was being done.
        action: String,
        /// RocksDB's message.
        message: String,
    },
    /// A name read from a checkpoint (metadata, a state handle, a change
    /// file) is not a single plain file name: the checkpoint is damaged or
    /// was crafted to reach files outside its directory.
    #[error("checkpoint file '{file}' names '{name}', which is not a plain file name ({reason}); it is not restored")]
    UnsafeName {
        /// The file the name was read from.
        file: PathBuf,
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A savepoint path that is refused: it holds control characters, or
    /// lies outside `state.savepoints.dir`.
    #[error("savepoint path {path:?} is refused: {reason}")]
    SavepointPath {
        /// The path as given.
        path: String,
        /// Why.
        reason: String,
    },
    /// A local working directory another user could tamper with.
    #[error(
        "the local state directory '{path}' {reason}; set state.backend.rocksdb.localdir to a directory only this \
         user can write, or fix the directory (chown it, chmod 700 it)"
    )]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No completed checkpoint or savepoint exists where one was asked for.
    #[error("no completed checkpoint or savepoint found under '{0}'")]
    NothingToRestore(PathBuf),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
