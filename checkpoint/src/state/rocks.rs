//! The RocksDB instance behind one stateful subtask, and its incremental
//! checkpoints.
//!
//! One instance per keyed operator subtask, in its own working directory
//! (removed when the subtask ends), one column family per state. Writes skip
//! the write-ahead log: durability comes from checkpoints, not from the
//! local files.
//!
//! Incremental checkpoints: at a barrier the memtables are flushed and a
//! RocksDB checkpoint is made next to the working directory (hard links —
//! the short synchronous part). The upload then copies each SST file that
//! the last *confirmed* checkpoint did not already store into
//! `<job>/shared/` under a name unique to this instance, and references the
//! others; the small MANIFEST/CURRENT/OPTIONS files go to the checkpoint's
//! own directory. Only files of a checkpoint that completed are reused
//! (Flink does the same): files uploaded for a checkpoint that was later
//! aborted may be deleted by the retention sweep at any time. Savepoints
//! copy every file into their own directory, so they stand alone.

use crate::barrier::CheckpointKind;
use crate::error::{Error, Result};
use crate::state::format::{key_group_of, EntryVisitor, RestoreSink, RocksHandle, StoredFile, UploadTarget};
use crate::storage::write_atomically;
use crate::KeyGroupRange;
use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, Direction, FlushOptions, IteratorMode, Options, WriteBatch,
    WriteOptions, DB,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

fn rocks_err(action: impl Into<String>) -> impl FnOnce(rocksdb::Error) -> Error {
    let action = action.into();
    move |e| Error::RocksDb { action, message: e.to_string() }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Storage { action, path: path.to_path_buf(), source }
}

/// Local SST name → stored shared name, per checkpoint.
type FileMap = HashMap<String, String>;

/// A unique name for a new instance (process id, time, counter).
pub(crate) fn instance_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
    format!("{:x}{:x}{n:x}", std::process::id(), t)
}

/// The block cache shared by every RocksDB instance of this process (its
/// size is set by the first instance opened: `state.backend.rocksdb.block-cache-size`).
fn block_cache(bytes: usize) -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Cache::new_hyper_clock_cache(bytes, 0))
}

/// Receives the results of [`RocksInstance::multi_get`]: (key index, value).
pub type MultiGetSink<'a> = &'a mut dyn FnMut(usize, Option<&[u8]>) -> Result<()>;

/// Options for the instance and each column family.
///
/// Keyed state is read by point lookups of single keys, and most lookups of
/// a key seen for the first time find nothing, so every level and the
/// memtable carry a whole-key bloom filter: a lookup of an absent key
/// usually reads no data block at all. Index and filter blocks live in the
/// shared block cache, a lock-free HyperClockCache; data blocks carry a hash
/// index, so a point lookup inside a block needs no binary search.
fn db_options(block_cache_bytes: usize) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    table.set_whole_key_filtering(true);
    table.set_data_block_index_type(rocksdb::DataBlockIndexType::BinaryAndHash);
    table.set_data_block_hash_ratio(0.75);
    table.set_block_cache(block_cache(block_cache_bytes));
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    opts.set_write_buffer_size(64 << 20);
    opts.set_max_write_buffer_number(3);
    opts.set_memtable_prefix_bloom_ratio(0.1);
    opts.set_memtable_whole_key_filtering(true);
    opts.set_level_compaction_dynamic_level_bytes(true);
    // The newest levels change most; leave them uncompressed (cheaper reads).
    opts.set_compression_per_level(&[
        DBCompressionType::None,
        DBCompressionType::None,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
    ]);
    opts.set_block_based_table_factory(&table);
    opts
}

/// One subtask's RocksDB instance.
pub struct RocksInstance {
    db: DB,
    path: PathBuf,
    instance: String,
    write_opts: WriteOptions,
    /// Files of the last confirmed checkpoint (reusable).
    confirmed: FileMap,
    /// Files referenced by checkpoints not yet confirmed (filled by uploads).
    pending: Arc<Mutex<BTreeMap<u64, FileMap>>>,
    /// Options for new column families.
    cf_options: Options,
}

impl std::fmt::Debug for RocksInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksInstance").field("path", &self.path).finish_non_exhaustive()
    }
}

impl RocksInstance {
    /// Opens a fresh instance in a new directory below `base` (or the
    /// system temp directory).
    pub fn open(base: Option<&Path>, label: &str, block_cache_bytes: usize) -> Result<Self> {
        let base = base.map(Path::to_path_buf).unwrap_or_else(|| std::env::temp_dir().join("sluice-rocksdb"));
        let instance = instance_name();
        let path = base.join(format!("{label}-{instance}"));
        std::fs::create_dir_all(&path).map_err(io_err("create", &path))?;
        let cf_options = db_options(block_cache_bytes);
        let db = DB::open(&cf_options, &path).map_err(rocks_err(format!(
            "open a RocksDB instance in '{}' (state.backend.rocksdb.localdir)",
            path.display()
        )))?;
        let mut write_opts = WriteOptions::default();
        write_opts.disable_wal(true);
        Ok(RocksInstance {
            db,
            path,
            instance,
            write_opts,
            confirmed: FileMap::new(),
            pending: Arc::new(Mutex::new(BTreeMap::new())),
            cf_options,
        })
    }

    /// Creates the column family of a state if it does not exist.
    pub fn ensure_cf(&mut self, name: &str) -> Result<()> {
        if self.db.cf_handle(name).is_none() {
            self.db.create_cf(name, &self.cf_options).map_err(rocks_err(format!("create column family '{name}'")))?;
        }
        Ok(())
    }

    /// Reads one entry.
    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<rocksdb::DBPinnableSlice<'_>>> {
        let handle = self.db.cf_handle(cf).ok_or_else(|| missing_cf(cf))?;
        self.db.get_pinned_cf(handle, key).map_err(|e| rocks_err(format!("read state '{cf}'"))(e))
    }

    /// Reads `keys` (sorted) of one column family with one batched lookup
    /// (`MultiGet`: the bloom filter and index probes of all keys are done
    /// level by level together); calls `found(i, value)` for each key.
    pub fn multi_get(&self, cf: &str, keys: &[Vec<u8>], found: MultiGetSink<'_>) -> Result<()> {
        let handle = self.db.cf_handle(cf).ok_or_else(|| missing_cf(cf))?;
        for (i, r) in self.db.batched_multi_get_cf(handle, keys, true).into_iter().enumerate() {
            let value = r.map_err(|e| rocks_err(format!("read state '{cf}'"))(e))?;
            found(i, value.as_deref())?;
        }
        Ok(())
    }

    /// Writes a batch of (key, value or deletion) into one column family.
    /// The batch is sorted first: inserting keys in order into the memtable's
    /// skip list reuses the search path of the previous key, which makes a
    /// large batch of scattered keys several times cheaper to apply.
    pub fn write(&self, cf: &str, mut entries: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let handle = self.db.cf_handle(cf).ok_or_else(|| missing_cf(cf))?;
        let mut batch = WriteBatch::default();
        for (k, v) in entries {
            match v {
                Some(v) => batch.put_cf(handle, k, v),
                None => batch.delete_cf(handle, k),
            }
        }
        self.db.write_opt(batch, &self.write_opts).map_err(rocks_err(format!("write state '{cf}'")))
    }

    /// Calls `f` for every entry of a column family, in key order.
    pub fn for_each(&self, cf: &str, f: EntryVisitor<'_>) -> Result<()> {
        let handle = self.db.cf_handle(cf).ok_or_else(|| missing_cf(cf))?;
        for item in self.db.iterator_cf(handle, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| rocks_err(format!("iterate state '{cf}'"))(e))?;
            f(&k, &v)?;
        }
        Ok(())
    }

    /// The synchronous part of a snapshot: flush and hard-link a RocksDB
    /// checkpoint; returns the upload to run afterwards.
    pub fn snapshot(
        &self,
        checkpoint: u64,
    ) -> Result<impl FnOnce(&UploadTarget) -> Result<(RocksHandle, Vec<String>)> + Send + 'static> {
        let names = DB::list_cf(&Options::default(), &self.path).map_err(rocks_err("list column families"))?;
        let mut flush = FlushOptions::default();
        flush.set_wait(true);
        for name in &names {
            if let Some(cf) = self.db.cf_handle(name) {
                self.db.flush_cf_opt(cf, &flush).map_err(rocks_err(format!("flush state '{name}'")))?;
            }
        }
        let dir = self.path.with_extension(format!("chk-{checkpoint}"));
        let _ = std::fs::remove_dir_all(&dir);
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(&dir))
            .map_err(rocks_err(format!("create a RocksDB checkpoint in '{}'", dir.display())))?;
        let reusable = self.confirmed.clone();
        let pending = Arc::clone(&self.pending);
        let instance = self.instance.clone();
        Ok(move |target: &UploadTarget| {
            let result = upload(&dir, &instance, &reusable, target);
            let _ = std::fs::remove_dir_all(&dir);
            let (handle, uploaded) = result?;
            if target.kind == CheckpointKind::Checkpoint {
                if let Ok(mut p) = pending.lock() {
                    p.insert(checkpoint, uploaded.clone());
                }
            }
            let mut shared: Vec<String> = uploaded.into_values().collect();
            shared.sort();
            Ok((handle, shared))
        })
    }

    /// Checkpoint `id` is complete: its files become reusable.
    pub fn notify_complete(&mut self, id: u64) {
        let Ok(mut pending) = self.pending.lock() else { return };
        if let Some(files) = pending.remove(&id) {
            self.confirmed = files;
        }
        pending.retain(|n, _| *n > id);
    }

    /// Copies the entries of the key groups in `range` from a stored
    /// RocksDB checkpoint into `sink(state, key, value)`.
    pub fn restore_from(
        handle: &RocksHandle,
        checkpoint_dir: &Path,
        range: KeyGroupRange,
        sink: RestoreSink<'_>,
    ) -> Result<()> {
        let shared = checkpoint_dir.join("..").join("shared");
        let tmp = std::env::temp_dir().join("sluice-rocksdb").join(format!("restore-{}", instance_name()));
        std::fs::create_dir_all(&tmp).map_err(io_err("create", &tmp))?;
        let result = (|| {
            for (local, stored) in &handle.files {
                let from = match stored {
                    StoredFile::Private(name) => checkpoint_dir.join(name),
                    StoredFile::Shared(name) => shared.join(name),
                };
                let to = tmp.join(local);
                if std::fs::hard_link(&from, &to).is_err() {
                    std::fs::copy(&from, &to).map_err(|e| Error::MissingState {
                        checkpoint: 0,
                        path: from.clone(),
                        reason: format!("RocksDB file of instance {} cannot be read: {e}", handle.instance),
                    })?;
                }
            }
            let names = DB::list_cf(&Options::default(), &tmp).map_err(rocks_err("list restored column families"))?;
            let db = DB::open_cf_for_read_only(&Options::default(), &tmp, &names, false)
                .map_err(rocks_err("open a restored RocksDB checkpoint"))?;
            let start = (range.start as u16).to_be_bytes();
            for name in names.iter().filter(|n| n.as_str() != "default") {
                let Some(cf) = db.cf_handle(name) else { continue };
                for item in db.iterator_cf(cf, IteratorMode::From(&start, Direction::Forward)) {
                    let (k, v) = item.map_err(|e| rocks_err(format!("read restored state '{name}'"))(e))?;
                    if key_group_of(&k) > range.end {
                        break;
                    }
                    sink(name, &k, &v)?;
                }
            }
            Ok(())
        })();
        let _ = std::fs::remove_dir_all(&tmp);
        result
    }
}

impl Drop for RocksInstance {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn missing_cf(cf: &str) -> Error {
    Error::State {
        state: cf.to_string(),
        message: "no such column family (state used before it was registered)".into(),
    }
}

/// Stores the files of a RocksDB checkpoint directory.
fn upload(dir: &Path, instance: &str, reusable: &FileMap, target: &UploadTarget) -> Result<(RocksHandle, FileMap)> {
    let mut files = Vec::new();
    let mut shared = FileMap::new();
    let entries = std::fs::read_dir(dir).map_err(io_err("list", dir))?;
    for entry in entries.flatten() {
        let local = entry.file_name().to_string_lossy().into_owned();
        let is_sst = local.ends_with(".sst");
        if is_sst && target.kind == CheckpointKind::Checkpoint {
            let stored = match reusable.get(&local) {
                Some(stored) => stored.clone(),
                None => {
                    let stored = format!("{}-{instance}-{local}", target.file_prefix);
                    copy_atomically(&entry.path(), &target.shared_dir.join(&stored))?;
                    stored
                }
            };
            shared.insert(local.clone(), stored.clone());
            files.push((local, StoredFile::Shared(stored)));
        } else {
            let stored = format!("{}.rocks.{local}", target.file_prefix);
            copy_atomically(&entry.path(), &target.checkpoint_dir.join(&stored))?;
            files.push((local, StoredFile::Private(stored)));
        }
    }
    files.sort();
    Ok((RocksHandle { instance: instance.to_string(), files }, shared))
}

fn copy_atomically(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).map_err(io_err("read", from))?;
    write_atomically(to, &bytes)
}
