//! The RocksDB instance behind one stateful subtask, and its incremental
//! checkpoints.
//!
//! One instance per keyed operator subtask, in its own working directory
//! (removed when the subtask ends), one column family per state. Writes skip
//! the write-ahead log: durability comes from checkpoints, not from the
//! local files.
//!
//! Incremental checkpoints come in two kinds. With the changelog on (the
//! default), most checkpoints are the last materialization plus the log of
//! the writes since it ([`rocks_changelog`](crate::state::rocks_changelog));
//! what follows is a *materialization*, the native RocksDB checkpoint.
//!
//! At a materializing barrier the write-back cache is written into RocksDB
//! and a flush of the memtables is *started* (the synchronous part). The
//! RocksDB checkpoint (hard links next to the working directory) is made
//! once that flush is done, by whichever comes first: the next write of the
//! task (writes wait until it exists, so it holds exactly the state at the
//! barrier) or the upload thread. The upload then stores each SST file that
//! the last *confirmed* checkpoint did not already store in `<job>/shared/`
//! under a name unique to this instance, and references the others; the
//! small MANIFEST/CURRENT/OPTIONS files go to the checkpoint's own
//! directory. Files are stored by hard link where the checkpoint directory
//! is on the same file system (they never change), by copy otherwise. Only
//! files of a checkpoint that completed are reused (Flink does the same):
//! files uploaded for a checkpoint that was later aborted may be deleted by
//! the retention sweep at any time. With the changelog on, the small files
//! go to `shared/` as well (under names of their checkpoint), because later
//! log checkpoints reference them. Savepoints store every file in their own
//! directory, so they stand alone.

use crate::barrier::CheckpointKind;
use crate::error::{Error, Result};
use crate::names::{check_file_name, create_new};
use crate::state::format::{key_group_of, EntryVisitor, RestoreSink, RocksHandle, StateData, StoredFile, UploadTarget};
use crate::state::rocks_changelog::{self, Plan, RocksChangelog, Taken};
use crate::state::rocks_files::{store_checked, verify};
use crate::state::rocks_writer::{Entries, WriteBehind};
use crate::state::{ChangelogConfig, CompactionStyle, RocksDbTuning};
use crate::KeyGroupRange;
use rocksdb::{
    BlockBasedOptions, Cache, DBCompactionStyle, DBCompressionType, DBWithThreadMode, Direction, FlushOptions,
    IteratorMode, MultiThreaded, Options, ReadOptions, WriteBatch, WriteOptions, DB,
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

/// A checkpoint uploaded and not yet confirmed: how it was taken, and (if
/// it materialized) the SST files reusable once it is.
struct Pending {
    files: Option<FileMap>,
    taken: Taken,
}

/// The upload of a snapshot: the state data and the shared files it
/// references.
pub type RocksUpload = Box<dyn FnOnce(&UploadTarget) -> Result<(StateData, Vec<String>)> + Send>;

/// The live instance: shared with the uploads of deferred checkpoints, so
/// column families are created through `&self`.
type LiveDb = DBWithThreadMode<MultiThreaded>;

/// A RocksDB checkpoint whose memtable flush has started at a barrier and
/// whose hard links are still to be made.
struct Deferred {
    /// Where the checkpoint goes.
    dir: PathBuf,
    /// The column families at the barrier.
    cf_names: Vec<String>,
    /// Set once it has been made (or has failed).
    made: Arc<OnceLock<std::result::Result<(), String>>>,
}

/// The deferred checkpoints of one instance (at most one per checkpoint in
/// flight; several only if no write came between their barriers, in which
/// case they hold the same state).
type DeferredList = Arc<Mutex<Vec<Deferred>>>;

/// Makes every deferred checkpoint: waits for the flush started at its
/// barrier (flushing an empty memtable is free, so the wait covers exactly
/// the data written before the barrier), then hard-links the files.
fn settle(db: &LiveDb, deferred: &Mutex<Vec<Deferred>>) -> Result<()> {
    let mut list = lock_deferred(deferred)?;
    if list.is_empty() {
        return Ok(());
    }
    let names = list.last().map(|d| d.cf_names.as_slice()).unwrap_or_default();
    let made = flush_cfs(db, names, true).and_then(|()| {
        for d in list.iter() {
            let _ = std::fs::remove_dir_all(&d.dir);
            rocksdb::checkpoint::Checkpoint::new(db)
                .and_then(|c| c.create_checkpoint(&d.dir))
                .map_err(rocks_err(format!("create a RocksDB checkpoint in '{}'", d.dir.display())))?;
        }
        Ok(())
    });
    for d in list.drain(..) {
        let _ = d.made.set(made.as_ref().map(|_| ()).map_err(ToString::to_string));
    }
    made
}

/// The deferred list, or an error if an upload panicked while holding it.
fn lock_deferred(deferred: &Mutex<Vec<Deferred>>) -> Result<std::sync::MutexGuard<'_, Vec<Deferred>>> {
    deferred
        .lock()
        .map_err(|_| Error::State { state: String::new(), message: "a RocksDB checkpoint upload panicked".into() })
}

/// Flushes the memtables of every column family; with `wait`, returns once
/// they (and any flushed before) are written. Without `wait` it only starts
/// the flush, unless RocksDB has stopped writes (too many files waiting for
/// compaction), where it refuses to start one: then it waits after all.
fn flush_cfs(db: &LiveDb, names: &[String], wait: bool) -> Result<()> {
    let mut started = FlushOptions::default();
    started.set_wait(wait);
    let mut waited = FlushOptions::default();
    waited.set_wait(true);
    for name in names {
        if let Some(cf) = db.cf_handle(name) {
            db.flush_cf_opt(&cf, &started)
                .or_else(|e| if wait { Err(e) } else { db.flush_cf_opt(&cf, &waited) })
                .map_err(rocks_err(format!("flush state '{name}'")))?;
        }
    }
    Ok(())
}

/// A unique name for a new instance (process id, time, counter).
pub(crate) fn instance_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
    format!("{:x}{:x}{n:x}", std::process::id(), t)
}

/// The block cache shared by every RocksDB instance of this process (its
/// size is set by the first instance opened: `state.backend.rocksdb.block.cache-size`).
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
/// usually reads no data block at all. Index and filter blocks are held with
/// their table files (or, if so configured, in the block cache); data blocks
/// live in the shared block cache, a lock-free HyperClockCache, and carry a
/// hash index, so a point lookup inside a block needs no binary search.
fn db_options(tuning: &RocksDbTuning) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    table.set_whole_key_filtering(true);
    table.set_data_block_index_type(rocksdb::DataBlockIndexType::BinaryAndHash);
    table.set_data_block_hash_ratio(0.75);
    table.set_block_cache(block_cache(tuning.block_cache_bytes));
    table.set_block_size(tuning.block_bytes.max(1));
    if tuning.cache_index_and_filters {
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    }
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(i32::try_from(tuning.background_jobs).unwrap_or(i32::MAX));
    opts.set_write_buffer_size(tuning.write_buffer_bytes);
    opts.set_max_write_buffer_number(i32::try_from(tuning.write_buffer_count).unwrap_or(i32::MAX));
    if tuning.compaction == CompactionStyle::Universal {
        opts.set_compaction_style(DBCompactionStyle::Universal);
    }
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
    db: Arc<LiveDb>,
    path: PathBuf,
    instance: String,
    write_opts: WriteOptions,
    /// Options of every read, made once: the crate's plain `get` makes and
    /// frees a set per call (an allocation per lookup).
    read_opts: ReadOptions,
    /// Files of the last confirmed checkpoint (reusable).
    confirmed: FileMap,
    /// Checkpoints uploaded and not yet confirmed (filled by uploads).
    pending: Arc<Mutex<BTreeMap<u64, Pending>>>,
    /// Options for new column families.
    cf_options: Options,
    /// Column families (flushed at each barrier).
    cf_names: Vec<String>,
    /// Checkpoints started at a barrier and not yet made.
    deferred: DeferredList,
    /// The log of writes between materializations.
    log: RocksChangelog,
    /// Applies evicted batches in the background.
    writer: WriteBehind,
}

impl std::fmt::Debug for RocksInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksInstance").field("path", &self.path).finish_non_exhaustive()
    }
}

impl RocksInstance {
    /// Opens a fresh instance in a new directory below `base` (or a per-user
    /// directory in the system temp directory); `base` must belong to this
    /// user and be closed to others.
    pub fn open(base: Option<&Path>, label: &str, tuning: &RocksDbTuning, changelog: &ChangelogConfig) -> Result<Self> {
        let base = super::local_dir::private_base(base)?;
        let instance = instance_name();
        let path = base.join(format!("{label}-{instance}"));
        std::fs::create_dir_all(&path).map_err(io_err("create", &path))?;
        let cf_options = db_options(tuning);
        let db = LiveDb::open(&cf_options, &path).map_err(rocks_err(format!(
            "open a RocksDB instance in '{}' (state.backend.rocksdb.localdir)",
            path.display()
        )))?;
        let db = Arc::new(db);
        let deferred: DeferredList = Arc::new(Mutex::new(Vec::new()));
        let (wdb, wdeferred) = (Arc::clone(&db), Arc::clone(&deferred));
        let writer = WriteBehind::start(
            label,
            Box::new(move |cf: &str, entries: &Entries| apply_batch(&wdb, &wdeferred, &unlogged(), cf, entries)),
        )?;
        Ok(RocksInstance {
            db,
            path,
            instance,
            write_opts: unlogged(),
            read_opts: ReadOptions::default(),
            confirmed: FileMap::new(),
            pending: Arc::new(Mutex::new(BTreeMap::new())),
            cf_options,
            cf_names: vec!["default".into()],
            deferred,
            log: RocksChangelog::new(changelog),
            writer,
        })
    }

    /// Creates the column family of a state if it does not exist.
    pub fn ensure_cf(&mut self, name: &str) -> Result<()> {
        if self.db.cf_handle(name).is_none() {
            self.db.create_cf(name, &self.cf_options).map_err(rocks_err(format!("create column family '{name}'")))?;
            self.cf_names.push(name.to_string());
        }
        Ok(())
    }

    /// Reads one entry (from a batch in flight if it holds the key).
    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Stored<'_>>> {
        if let Some(pending) = self.writer.lookup(cf, key) {
            return Ok(pending.map(Stored::InFlight));
        }
        let handle = self.db.cf_handle(cf).ok_or_else(|| missing_cf(cf))?;
        let value = self
            .db
            .get_pinned_cf_opt(&handle, key, &self.read_opts)
            .map_err(|e| rocks_err(format!("read state '{cf}'"))(e))?;
        Ok(value.map(Stored::Db))
    }

    /// Reads `keys` (sorted) of one column family with one batched lookup
    /// (`MultiGet`: the bloom filter and index probes of all keys are done
    /// level by level together); calls `found(i, value)` for each key. Keys
    /// of the batches in flight are answered from them.
    pub fn multi_get(&self, cf: &str, keys: &[Vec<u8>], found: MultiGetSink<'_>) -> Result<()> {
        let handle = self.db.cf_handle(cf).ok_or_else(|| missing_cf(cf))?;
        let mut rest = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            match self.writer.lookup(cf, key) {
                Some(pending) => found(i, pending)?,
                None => rest.push(i),
            }
        }
        let wanted = rest.iter().filter_map(|&i| keys.get(i));
        for (&i, r) in rest.iter().zip(self.db.batched_multi_get_cf_opt(&handle, wanted, true, &self.read_opts)) {
            let value = r.map_err(|e| rocks_err(format!("read state '{cf}'"))(e))?;
            found(i, value.as_deref())?;
        }
        Ok(())
    }

    /// Writes a batch of (key, value or deletion) into one column family,
    /// after making the checkpoints deferred at earlier barriers (which must
    /// not see it), and logs it. Of two entries of one key, the later one
    /// wins.
    pub fn write(&mut self, cf: &str, entries: Entries) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.writer.wait()?;
        self.log.record(cf, &entries);
        apply_batch(&self.db, &self.deferred, &self.write_opts, cf, &entries)
    }

    /// Like [`write`](Self::write), but the batch is applied on the writer
    /// thread while the caller goes on ([`rocks_writer`](crate::state::rocks_writer)):
    /// for batches the cache evicts.
    pub fn write_behind(&mut self, cf: &str, entries: Entries) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.log.record(cf, &entries);
        self.writer.send(cf, entries)
    }

    /// Calls `f` for every entry of a column family, in key order.
    pub fn for_each(&mut self, cf: &str, f: EntryVisitor<'_>) -> Result<()> {
        self.writer.wait()?;
        let handle = self.db.cf_handle(cf).ok_or_else(|| missing_cf(cf))?;
        for item in self.db.iterator_cf(&handle, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| rocks_err(format!("iterate state '{cf}'"))(e))?;
            f(&k, &v)?;
        }
        Ok(())
    }

    /// The synchronous part of a snapshot (after the cache was written
    /// back): cuts the log, and either takes the checkpoint from it or
    /// starts a materialization. Returns the upload to run afterwards.
    /// A checkpoint from the log does not read RocksDB, so it does not wait
    /// for the batch in flight; a materialization does.
    pub fn snapshot(&mut self, checkpoint: u64) -> Result<RocksUpload> {
        match self.log.barrier(checkpoint) {
            Plan::Materialize => {
                tracing::debug!(checkpoint, instance = %self.instance, "RocksDB checkpoint: materialization");
                self.writer.wait()?;
                self.materialize(checkpoint)
            }
            Plan::Log(plan) => {
                tracing::debug!(checkpoint, instance = %self.instance, "RocksDB checkpoint: from the changelog");
                let pending = Arc::clone(&self.pending);
                let instance = self.instance.clone();
                Ok(Box::new(move |target: &UploadTarget| {
                    let (base, logs, shared, taken) = rocks_changelog::upload(plan, &instance, checkpoint, target)?;
                    if target.kind == CheckpointKind::Checkpoint {
                        if let Ok(mut p) = pending.lock() {
                            p.insert(checkpoint, Pending { files: None, taken });
                        }
                    }
                    Ok((StateData::RocksDbChangelog { base, logs }, shared))
                }))
            }
        }
    }

    /// A materialization: starts a flush of the memtables and defers the
    /// RocksDB checkpoint (see the module doc); returns the upload to run
    /// afterwards, which makes the checkpoint itself if the task has not
    /// written since.
    fn materialize(&self, checkpoint: u64) -> Result<RocksUpload> {
        // A checkpoint deferred at an earlier barrier is still unmade only
        // if nothing was written since, so it holds the same state as this one.
        flush_cfs(&self.db, &self.cf_names, false)?;
        let dir = self.path.with_extension(format!("chk-{checkpoint}"));
        let made = Arc::new(OnceLock::new());
        lock_deferred(&self.deferred)?.push(Deferred {
            dir: dir.clone(),
            cf_names: self.cf_names.clone(),
            made: Arc::clone(&made),
        });
        let db = Arc::clone(&self.db);
        let deferred = Arc::clone(&self.deferred);
        let reusable = self.confirmed.clone();
        let pending = Arc::clone(&self.pending);
        let instance = self.instance.clone();
        let all_shared = self.log.enabled();
        Ok(Box::new(move |target: &UploadTarget| {
            let result = settle(&db, &deferred)
                .and_then(|()| match made.get() {
                    Some(Ok(())) => Ok(()),
                    Some(Err(message)) => Err(Error::RocksDb {
                        action: format!("make RocksDB checkpoint {checkpoint}"),
                        message: message.clone(),
                    }),
                    None => Err(Error::State {
                        state: String::new(),
                        message: format!("RocksDB checkpoint {checkpoint} was never made"),
                    }),
                })
                .and_then(|()| upload(&dir, &instance, &reusable, target, all_shared.then_some(checkpoint)));
            drop(db);
            let _ = std::fs::remove_dir_all(&dir);
            let (handle, uploaded) = result?;
            let mut shared: Vec<String> = handle.shared_files().map(str::to_string).collect();
            shared.sort();
            if target.kind == CheckpointKind::Checkpoint {
                if let Ok(mut p) = pending.lock() {
                    p.insert(
                        checkpoint,
                        Pending { files: Some(uploaded), taken: Taken::Materialized(handle.files.clone()) },
                    );
                }
            }
            Ok((StateData::RocksDb(handle), shared))
        }))
    }

    /// Checkpoint `id` is complete: its files become reusable.
    pub fn notify_complete(&mut self, id: u64) {
        let Ok(mut pending) = self.pending.lock() else { return };
        // Only checkpoints have an entry: a savepoint stores nothing that
        // later checkpoints could reference.
        if let Some(p) = pending.remove(&id) {
            if let Some(files) = p.files {
                self.confirmed = files;
            }
            self.log.confirm(id, p.taken);
        }
        pending.retain(|n, _| *n > id);
    }

    /// Copies the entries of the key groups in `range` from a stored
    /// RocksDB checkpoint into `sink(state, key, value)`. Each file is
    /// checked against the size and checksum its stored name carries, then
    /// linked or copied into a new private directory below `local`
    /// (`state.backend.rocksdb.localdir`, else a per-user directory in the
    /// system temp directory; either must belong to this user and be closed
    /// to others);
    /// every name must be a plain file name, and every file is created new
    /// there, never through a link.
    pub fn restore_from(
        handle: &RocksHandle,
        checkpoint_dir: &Path,
        local: Option<&Path>,
        range: KeyGroupRange,
        sink: RestoreSink<'_>,
    ) -> Result<()> {
        let from_handle = checkpoint_dir.join(format!("(RocksDB instance {})", handle.instance));
        for (local, stored) in &handle.files {
            check_file_name(local, &from_handle)?;
            let (StoredFile::Private(name) | StoredFile::Shared(name)) = stored;
            check_file_name(name, &from_handle)?;
        }
        let base = super::local_dir::private_base(local)?;
        let tmp = base.join(format!("restore-{}", instance_name()));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(&tmp).map_err(io_err("create", &tmp))?;
        }
        let result = (|| {
            for (local, stored) in &handle.files {
                let from = stored.path(checkpoint_dir);
                // Its size and checksum first: RocksDB does not check all files.
                verify(&from, &handle.instance)?;
                let to = tmp.join(local);
                // A hard link never replaces or follows what is at `to`.
                if std::fs::hard_link(&from, &to).is_err() {
                    let unreadable = |e: String| Error::MissingState {
                        checkpoint: 0,
                        path: from.clone(),
                        reason: format!("RocksDB file of instance {} cannot be read: {e}", handle.instance),
                    };
                    let mut source = std::fs::File::open(&from).map_err(|e| unreadable(e.to_string()))?;
                    let mut target = create_new(&to)?;
                    std::io::copy(&mut source, &mut target).map_err(|e| unreadable(e.to_string()))?;
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
        self.writer.stop();
        // Uploads still to run find their checkpoints made.
        let _ = settle(&self.db, &self.deferred);
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A stored value: read from RocksDB, or from a batch in flight. Either
/// way it derefs to the value's bytes, and it borrows the instance (a value
/// read from RocksDB stays pinned, uncopied, until it is dropped).
///
/// ```
/// use sluice_checkpoint::state::rocks::{RocksInstance, Stored};
/// use sluice_checkpoint::state::{ChangelogConfig, RocksDbTuning};
///
/// let dir = tempfile::tempdir()?;
/// let mut db = RocksInstance::open(Some(dir.path()), "doc", &RocksDbTuning::default(), &ChangelogConfig::default())?;
/// db.ensure_cf("counts")?;
/// // A write-behind batch is answered from memory until it lands...
/// db.write_behind("counts", vec![(b"apple".to_vec(), Some(b"3".to_vec()))])?;
/// let seen = db.get("counts", b"apple")?.map(|v| v.to_vec());
/// assert_eq!(seen.as_deref(), Some(&b"3"[..]));
/// // ...and a synchronous write lands before `write` returns: read from RocksDB.
/// db.write("counts", vec![(b"pear".to_vec(), Some(b"5".to_vec()))])?;
/// assert!(matches!(db.get("counts", b"pear")?, Some(Stored::Db(ref v)) if &v[..] == b"5"));
/// assert!(db.get("counts", b"plum")?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub enum Stored<'a> {
    /// Read from RocksDB.
    Db(rocksdb::DBPinnableSlice<'a>),
    /// Not yet written: from a batch in flight.
    InFlight(&'a [u8]),
}

impl std::fmt::Debug for Stored<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stored({} bytes)", self.len())
    }
}

impl std::ops::Deref for Stored<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Stored::Db(slice) => slice,
            Stored::InFlight(bytes) => bytes,
        }
    }
}

/// Write options of the live instance: no write-ahead log (checkpoints
/// make state durable).
fn unlogged() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.disable_wal(true);
    opts
}

/// Writes `entries` into column family `cf`, after making the checkpoints
/// deferred at earlier barriers (which must not see them). They go in key
/// order (sorted stably: of two entries of one key, the later one wins):
/// inserting keys in order into the memtable's skip list reuses the search
/// path of the previous key, which makes a large batch of scattered keys
/// several times cheaper to apply. With write-behind the sort, too, runs on
/// the writer thread.
fn apply_batch(
    db: &LiveDb,
    deferred: &Mutex<Vec<Deferred>>,
    opts: &WriteOptions,
    cf: &str,
    entries: &Entries,
) -> Result<()> {
    settle(db, deferred)?;
    let handle = db.cf_handle(cf).ok_or_else(|| missing_cf(cf))?;
    let mut ordered: Vec<&(Vec<u8>, Option<Vec<u8>>)> = entries.iter().collect();
    ordered.sort_by(|a, b| a.0.cmp(&b.0));
    let mut batch = WriteBatch::default();
    for (k, v) in ordered {
        match v {
            Some(v) => batch.put_cf(&handle, k, v),
            None => batch.delete_cf(&handle, k),
        }
    }
    db.write_opt(batch, opts).map_err(rocks_err(format!("write state '{cf}'")))
}

fn missing_cf(cf: &str) -> Error {
    Error::State {
        state: cf.to_string(),
        message: "no such column family (state used before it was registered)".into(),
    }
}

/// Stores the files of a RocksDB checkpoint directory, each under a name
/// with its size and checksum ([`rocks_files`](crate::state::rocks_files));
/// returns the handle and the SST files stored in `shared/`. With `all_shared` (the changelog
/// is on; the checkpoint's id), the small files go to `shared/` as well,
/// under names of this checkpoint.
fn upload(
    dir: &Path,
    instance: &str,
    reusable: &FileMap,
    target: &UploadTarget,
    all_shared: Option<u64>,
) -> Result<(RocksHandle, FileMap)> {
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
                    let name = format!("{}-{instance}-{local}", target.file_prefix);
                    store_checked(&entry.path(), &target.shared_dir, &name)?
                }
            };
            shared.insert(local.clone(), stored.clone());
            files.push((local, StoredFile::Shared(stored)));
        } else if let (Some(n), CheckpointKind::Checkpoint) = (all_shared, target.kind) {
            let name = format!("{}-{instance}-c{n}-{local}", target.file_prefix);
            let stored = store_checked(&entry.path(), &target.shared_dir, &name)?;
            files.push((local, StoredFile::Shared(stored)));
        } else {
            let name = format!("{}.rocks.{local}", target.file_prefix);
            let stored = store_checked(&entry.path(), &target.checkpoint_dir, &name)?;
            files.push((local, StoredFile::Private(stored)));
        }
    }
    files.sort();
    sync_dir(&target.shared_dir)?;
    sync_dir(&target.checkpoint_dir)?;
    Ok((RocksHandle { instance: instance.to_string(), files }, shared))
}

/// Makes the names of files stored in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    match std::fs::File::open(dir) {
        Ok(d) => d.sync_all().map_err(io_err("sync", dir)),
        // Nothing was stored there.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("open", dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn read(db: &RocksInstance, key: &[u8]) -> Option<Vec<u8>> {
        db.get("s", key).unwrap().map(|v| v.to_vec())
    }

    fn read_all(db: &RocksInstance, keys: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
        let mut got = vec![None; keys.len()];
        db.multi_get("s", keys, &mut |i, v| {
            got[i] = v.map(<[u8]>::to_vec);
            Ok(())
        })
        .unwrap();
        got
    }

    #[test]
    fn reads_see_a_write_behind_batch_before_and_after_it_lands() {
        let dir = tempfile::tempdir().unwrap();
        let mut db =
            RocksInstance::open(Some(dir.path()), "t", &RocksDbTuning::default(), &ChangelogConfig::default()).unwrap();
        db.ensure_cf("s").unwrap();
        let v = |s: &str| Some(s.as_bytes().to_vec());
        db.write("s", vec![(b"a".to_vec(), v("old")), (b"b".to_vec(), v("old"))]).unwrap();
        let keys: Vec<Vec<u8>> = [&b"a"[..], b"b", b"c", b"d"].iter().map(|k| k.to_vec()).collect();
        let expected = vec![v("new"), None, v("new"), None];
        let gate = db.writer.gate();
        let held = gate.lock().unwrap();
        db.write_behind("s", vec![(b"c".to_vec(), v("new")), (b"a".to_vec(), v("new")), (b"b".to_vec(), None)])
            .unwrap();
        // Not in RocksDB yet: the reads are answered from the batch.
        assert_eq!(read(&db, b"a"), v("new"));
        assert_eq!(read(&db, b"b"), None, "a deletion in flight hides the old value");
        assert_eq!(read_all(&db, &keys), expected);
        drop(held);
        db.writer.wait().unwrap();
        assert_eq!(db.writer.lookup("s", b"a"), None);
        assert_eq!(read_all(&db, &keys), expected, "landed in RocksDB");
        assert_eq!(read(&db, b"c"), v("new"));
    }
}
