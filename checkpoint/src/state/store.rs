//! The keyed state of one operator subtask: the current key, the
//! registered states, the timers, and the backend behind them.
//!
//! The operator sets the current key (and namespace) before it touches
//! state; every access then goes to that key's entry. Values are typed in
//! [`Table`]s; with RocksDB the tables are a bounded write-back cache.
//!
//! ```
//! use sluice_checkpoint::state::{KeyedStateStore, StateBackendConfig};
//! use sluice_checkpoint::KeyGroupRange;
//! let mut store = KeyedStateStore::new("counts", &StateBackendConfig::default(), 128, KeyGroupRange { start: 0, end: 127 }).unwrap();
//! let count = store.register::<u64>("count", None).unwrap();
//! store.set_current_key(&"hello").unwrap();
//! store.update(count, |c: &mut Option<u64>| *c = Some(c.unwrap_or(0) + 1)).unwrap();
//! assert_eq!(store.get::<u64>(count).unwrap(), Some(1));
//! ```

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::key_group::assign_to_key_group;
use crate::state::change_file::{replay_file, SectionKind, Source};
use crate::state::changelog::{self, ChainFormat, Changelog, HeapHandle, KeyList};
use crate::state::format::{
    key_group_of, Entries, KeyedStateSnapshot, RocksHandle, StateData, StateSnapshot, StoredFile, UploadedState,
};
use crate::state::rocks::{instance_name, RocksInstance};
use crate::state::table::{decode_value, AnyTable, Slot, SnapshotEncoder, StateValue, Table};
use crate::state::timers::{TimeDomain, Timer, TimerService};
use crate::state::ttl::{StateTtlConfig, TtlUpdateType};
use crate::state::{StateBackendConfig, StateBackendKind};
use crate::KeyGroupRange;
use serde::Serialize;
use std::collections::HashMap;
use std::hash::Hash;
use std::path::Path;

/// Identifies a registered state within its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateId(pub(crate) usize);

/// Keyed state of one operator subtask. See the module docs.
pub struct KeyedStateStore {
    operator: String,
    max_parallelism: u32,
    range: KeyGroupRange,
    tables: Vec<Box<dyn AnyTable>>,
    /// Heap backend: restored entries of states not registered yet.
    raw: HashMap<String, Entries>,
    rocks: Option<RocksInstance>,
    /// Heap backend: the chain of incremental checkpoints.
    changelog: Option<Changelog>,
    cache_entries: usize,
    /// Where RocksDB working files go (`state.backend.rocksdb.localdir`),
    /// also those of a restore.
    local_dir: Option<std::path::PathBuf>,
    /// key group ‖ key ‖ namespace of the current entry.
    current: Vec<u8>,
    /// Length of key group ‖ key within `current`.
    key_len: usize,
    /// The registered timers.
    pub timers: TimerService,
}

impl std::fmt::Debug for KeyedStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStateStore")
            .field("operator", &self.operator)
            .field("states", &self.tables.iter().map(|t| t.name().to_string()).collect::<Vec<_>>())
            .field("rocksdb", &self.rocks.is_some())
            .finish_non_exhaustive()
    }
}

/// Appends key group ‖ key (postcard) of `key` to `out`.
fn encode_key<K: Serialize + Hash + ?Sized>(key: &K, max_parallelism: u32, out: &mut Vec<u8>) -> Result<()> {
    let group = assign_to_key_group(key, max_parallelism);
    out.extend_from_slice(&(group as u16).to_be_bytes());
    encode_into(key, out, "key")
}

fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>, what: &str) -> Result<()> {
    let buf = std::mem::take(out);
    *out = postcard::to_extend(value, buf)
        .map_err(|e| Error::State { state: what.to_string(), message: format!("cannot encode the {what}: {e}") })?;
    Ok(())
}

impl KeyedStateStore {
    /// A store for subtask key groups `range` of `operator`.
    pub fn new(
        operator: &str,
        config: &StateBackendConfig,
        max_parallelism: u32,
        range: KeyGroupRange,
    ) -> Result<Self> {
        let rocks = match config.kind {
            StateBackendKind::HashMap => None,
            StateBackendKind::RocksDb => {
                let label: String =
                    operator.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(40).collect();
                Some(RocksInstance::open(config.local_dir.as_deref(), &label, &config.rocksdb, &config.changelog)?)
            }
        };
        Ok(KeyedStateStore {
            operator: operator.to_string(),
            max_parallelism,
            range,
            tables: Vec::new(),
            raw: HashMap::new(),
            changelog: rocks.is_none().then(|| Changelog::new(instance_name())),
            rocks,
            cache_entries: config.cache_entries.max(1),
            local_dir: config.local_dir.clone(),
            current: Vec::with_capacity(64),
            key_len: 0,
            timers: TimerService::default(),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> StateBackendKind {
        if self.rocks.is_some() {
            StateBackendKind::RocksDb
        } else {
            StateBackendKind::HashMap
        }
    }

    /// Entries held in memory over all states: the whole state on the heap
    /// backend (including removals not yet in a confirmed checkpoint), the
    /// cache on RocksDB.
    pub fn entries_in_memory(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum()
    }

    /// Registers a state (or returns the one registered under `name`).
    pub fn register<T: StateValue>(&mut self, name: &str, ttl: Option<StateTtlConfig>) -> Result<StateId> {
        if let Some(i) = self.tables.iter().position(|t| t.name() == name) {
            return if self.tables[i].as_any_mut().is::<Table<T>>() {
                Ok(StateId(i))
            } else {
                Err(Error::State {
                    state: name.to_string(),
                    message: "registered twice with different value types; give each state its own name".into(),
                })
            };
        }
        let mut table: Table<T> = Table::new(name, ttl);
        if let Some(rocks) = &mut self.rocks {
            rocks.ensure_cf(name)?;
        } else if let Some(entries) = self.raw.remove(name) {
            for (k, v) in entries {
                table.load_entry(&k, &v)?;
            }
            table.mark_all_changed();
        }
        self.tables.push(Box::new(table));
        Ok(StateId(self.tables.len() - 1))
    }

    /// Makes `key` the current key (empty namespace).
    pub fn set_current_key<K: Serialize + Hash + ?Sized>(&mut self, key: &K) -> Result<()> {
        self.current.clear();
        encode_key(key, self.max_parallelism, &mut self.current)?;
        self.key_len = self.current.len();
        Ok(())
    }

    /// RocksDB backend: loads the entries of state `id` (empty namespace)
    /// for `keys` that the cache lacks, with one batched read, so that the
    /// records of an input batch then find their state in the cache. Does
    /// nothing on the heap backend.
    pub fn prefetch<T: StateValue, K: Serialize + Hash>(&mut self, id: StateId, keys: &[K]) -> Result<()> {
        let KeyedStateStore { tables, rocks, cache_entries, max_parallelism, .. } = self;
        let Some(rocks) = rocks.as_mut() else { return Ok(()) };
        let any = tables.get_mut(id.0).ok_or_else(|| wrong_type(&format!("#{}", id.0)))?;
        let mut wanted: Vec<Vec<u8>> = Vec::with_capacity(keys.len());
        {
            let table = any.as_any_mut().downcast_mut::<Table<T>>().ok_or_else(|| wrong_type(""))?;
            for key in keys {
                let mut composite = Vec::with_capacity(24);
                encode_key(key, *max_parallelism, &mut composite)?;
                if table.find(&composite).is_none() {
                    wanted.push(composite);
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        wanted.sort_unstable();
        wanted.dedup();
        // Make room first, so that the sweep does not drop the batch while
        // its records are processed.
        if any.len() + wanted.len() >= *cache_entries {
            write_back_and_evict(any.as_mut(), rocks, *cache_entries / 2)?;
        }
        let table = any.as_any_mut().downcast_mut::<Table<T>>().ok_or_else(|| wrong_type(""))?;
        rocks.multi_get(&table.name.clone(), &wanted, &mut |i, bytes| {
            let slot = stored_slot::<T>(&table.name, bytes)?;
            if let Some(key) = wanted.get(i) {
                table.insert(key, slot)?;
            }
            Ok(())
        })
    }

    /// Makes a timer's key and namespace current.
    pub fn set_current_timer(&mut self, timer: &Timer) {
        self.current.clear();
        self.current.extend_from_slice(&timer.key);
        self.key_len = self.current.len();
        self.current.extend_from_slice(&timer.namespace);
    }

    /// Sets the namespace of the current key (a window).
    pub fn set_namespace<N: Serialize + ?Sized>(&mut self, namespace: &N) -> Result<()> {
        self.current.truncate(self.key_len);
        encode_into(namespace, &mut self.current, "namespace")
    }

    /// Back to the empty namespace.
    pub fn clear_namespace(&mut self) {
        self.current.truncate(self.key_len);
    }

    /// The current key, postcard-encoded (without its key group).
    pub fn current_key_bytes(&self) -> &[u8] {
        self.current.get(2..self.key_len).unwrap_or(&[])
    }

    /// The current namespace, postcard-encoded.
    pub fn current_namespace_bytes(&self) -> &[u8] {
        self.current.get(self.key_len..).unwrap_or(&[])
    }

    fn check_key(&self, id: StateId) -> Result<()> {
        if self.key_len == 0 {
            return Err(Error::State {
                state: self.tables.get(id.0).map(|t| t.name().to_string()).unwrap_or_default(),
                message: "accessed without a current key (keyed state is only available on a keyed stream, while \
                          a record or timer of a key is being processed)"
                    .into(),
            });
        }
        Ok(())
    }

    /// Finds (or loads) the current entry of state `id`. Returns its
    /// position (`None`: a read of an absent key on the heap backend, which
    /// stores nothing) and whether the state has a TTL.
    fn locate<T: StateValue>(&mut self, id: StateId, read: bool) -> Result<(Option<u32>, bool)> {
        self.check_key(id)?;
        let KeyedStateStore { tables, rocks, current, cache_entries, .. } = self;
        let any = tables.get_mut(id.0).ok_or_else(|| Error::State {
            state: format!("#{}", id.0),
            message: "not registered in this operator".into(),
        })?;
        if let Some(rocks) = rocks.as_mut() {
            if any.len() >= *cache_entries {
                write_back_and_evict(any.as_mut(), rocks, *cache_entries / 2)?;
            }
        }
        if !any.as_any_mut().is::<Table<T>>() {
            return Err(wrong_type(any.name()));
        }
        let Some(table) = any.as_any_mut().downcast_mut::<Table<T>>() else {
            return Err(wrong_type(""));
        };
        let heap = rocks.is_none();
        let pos = match table.find(current) {
            Some(p) => {
                if !heap {
                    table.slot_mut(Some(p)).touched = true;
                }
                p
            }
            None if heap && read => return Ok((None, table.ttl.is_some())),
            None => {
                let stored = rocks.as_ref().map(|r| r.get(&table.name, current)).transpose()?.flatten();
                let slot = stored_slot::<T>(&table.name, stored.as_deref())?;
                table.insert(current, slot)?
            }
        };
        // Changed: to be written back (RocksDB) or in the next snapshot.
        let mut changed = !read;
        let ttl = table.ttl;
        if let Some(ttl) = ttl {
            let now = now_ms();
            let slot = table.slot_mut(Some(pos));
            if slot.value.is_some() && ttl.is_expired(slot.stamp, now) {
                slot.value = None;
                changed = true;
                if heap {
                    table.note_tombstone(pos);
                }
            } else if read && slot.value.is_some() && ttl.update_type == TtlUpdateType::OnReadAndWrite {
                slot.stamp = now;
                changed = true;
            }
        }
        if changed {
            if heap {
                table.mark(pos);
            } else {
                table.slot_mut(Some(pos)).dirty = true;
            }
        }
        Ok((Some(pos), ttl.is_some()))
    }

    /// The typed table of state `id`.
    fn table_mut<T: StateValue>(&mut self, id: StateId) -> Result<&mut Table<T>> {
        self.tables
            .get_mut(id.0)
            .and_then(|t| t.as_any_mut().downcast_mut::<Table<T>>())
            .ok_or_else(|| wrong_type(&format!("#{}", id.0)))
    }

    /// The current key's value of state `id` (a clone).
    pub fn get<T: StateValue>(&mut self, id: StateId) -> Result<Option<T>> {
        let (pos, _) = self.locate::<T>(id, true)?;
        Ok(self.table_mut::<T>(id)?.slot(pos).and_then(|s| s.value.clone()))
    }

    /// Reads the current key's value of state `id` without cloning it.
    pub fn read<T: StateValue, R>(&mut self, id: StateId, f: impl FnOnce(Option<&T>) -> R) -> Result<R> {
        let (pos, _) = self.locate::<T>(id, true)?;
        Ok(f(self.table_mut::<T>(id)?.slot(pos).and_then(|s| s.value.as_ref())))
    }

    /// Changes the current key's value of state `id` in place (`None` =
    /// absent; set it to `None` to clear).
    pub fn update<T: StateValue, R>(&mut self, id: StateId, f: impl FnOnce(&mut Option<T>) -> R) -> Result<R> {
        let (pos, timed) = self.locate::<T>(id, false)?;
        let heap = self.rocks.is_none();
        // No snapshot has been taken since the store started (or restored):
        // no change file holds any key yet, so a removal need not be kept.
        let untracked = self.changelog.as_ref().is_some_and(Changelog::is_untracked);
        let table = self.table_mut::<T>(id)?;
        let slot = table.slot_mut(pos);
        let r = f(&mut slot.value);
        if timed {
            slot.stamp = now_ms();
        }
        if heap && slot.value.is_none() {
            if let Some(p) = pos {
                table.note_tombstone(p);
                if untracked {
                    table.free_tombstones();
                }
            }
        }
        Ok(r)
    }

    /// Removes the current key's value of state `id`.
    pub fn clear<T: StateValue>(&mut self, id: StateId) -> Result<()> {
        self.update::<T, ()>(id, |v| *v = None)
    }

    /// Calls `f(key ‖ namespace bytes without key group, value)` for every
    /// live entry of state `id` (batch results at end of input).
    pub fn for_each<T: StateValue>(&mut self, id: StateId, mut f: impl FnMut(&[u8], T) -> Result<()>) -> Result<()> {
        let KeyedStateStore { tables, rocks, .. } = self;
        let Some(any) = tables.get_mut(id.0) else { return Ok(()) };
        let name = any.name().to_string();
        match rocks.as_mut() {
            Some(rocks) => {
                let mut dirty = Vec::new();
                any.take_dirty(&mut dirty)?;
                rocks.write(&name, dirty)?;
                rocks.for_each(&name, &mut |k, v| {
                    let (_, value) = decode_value::<T>(&name, v)?;
                    f(k.get(2..).unwrap_or(&[]), value)
                })
            }
            None => {
                let table = any.as_any_mut().downcast_mut::<Table<T>>().ok_or_else(|| Error::State {
                    state: name.clone(),
                    message: "accessed with another value type than it was registered with".into(),
                })?;
                for (k, slot) in table.iter() {
                    if let Some(v) = &slot.value {
                        f(k.get(2..).unwrap_or(&[]), v.clone())?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Registers a timer for the current key and namespace.
    pub fn register_timer(&mut self, domain: TimeDomain, timestamp: i64) {
        let timer = self.current_timer(timestamp);
        self.timers.register(domain, timer);
    }

    /// Deletes a timer of the current key and namespace.
    pub fn delete_timer(&mut self, domain: TimeDomain, timestamp: i64) {
        let timer = self.current_timer(timestamp);
        self.timers.delete(domain, &timer);
    }

    fn current_timer(&self, timestamp: i64) -> Timer {
        Timer {
            timestamp,
            key: self.current.get(..self.key_len).unwrap_or(&[]).to_vec(),
            namespace: self.current_namespace_bytes().to_vec(),
        }
    }

    /// The synchronous part of a snapshot; `extra` is the operator's own
    /// non-keyed state, stored alongside.
    pub fn snapshot(&mut self, checkpoint: u64, extra: Vec<u8>) -> Result<StateSnapshot> {
        let timers = self.timers.snapshot();
        match &mut self.rocks {
            None => {
                let now = now_ms();
                let Some(log) = self.changelog.as_mut() else {
                    return Err(Error::State {
                        state: String::new(),
                        message: "heap backend without changelog".into(),
                    });
                };
                let taken: Vec<KeyList> = self.tables.iter_mut().map(|t| t.take_changed()).collect();
                let lists = log.keys_for(checkpoint, taken);
                let changes: u64 = lists.iter().flatten().map(|l| l.len() as u64).sum();
                let live: u64 = self.tables.iter().map(|t| t.len() as u64).sum();
                let rebase = log.needs_rebase(changes, live);
                // The task thread only marks what the snapshot needs; the
                // upload thread encodes it (copy-on-write per entry).
                let encoders: Vec<SnapshotEncoder> =
                    self.tables.iter_mut().zip(&lists).map(|(t, lists)| t.begin_snapshot(lists, now)).collect();
                // Restored entries of states not registered yet: in every
                // change file until they are (they are few and short-lived).
                let raw: Vec<(String, Entries)> = self.raw.iter().map(|(n, e)| (n.clone(), e.clone())).collect();
                let file = log.writer();
                let upload = log.upload(checkpoint, rebase);
                let operator = self.operator.clone();
                Ok(StateSnapshot::Upload(Box::new(move |target| {
                    let mut file = file;
                    for encode in encoders {
                        encode(&mut file)?;
                    }
                    for (name, entries) in &raw {
                        file.section(name, SectionKind::Complete);
                        for (k, v) in entries {
                            file.entry_encoded(0, k, Some(v));
                        }
                    }
                    let (handle, shared) = upload(file, target)?;
                    let data = match handle {
                        HeapHandle::Chain(chain) => StateData::HeapChainV2(chain),
                        HeapHandle::Entries(entries) => StateData::Entries(entries),
                    };
                    let snap = KeyedStateSnapshot { data, timers, extra };
                    Ok(UploadedState { bytes: encode_snapshot(&operator, &snap)?, shared })
                })))
            }
            Some(rocks) => {
                for t in &mut self.tables {
                    let mut dirty = Vec::new();
                    t.take_dirty(&mut dirty)?;
                    rocks.write_behind(t.name(), dirty)?;
                }
                let upload = rocks.snapshot(checkpoint)?;
                let operator = self.operator.clone();
                Ok(StateSnapshot::Upload(Box::new(move |target| {
                    let (data, shared) = upload(target)?;
                    let snap = KeyedStateSnapshot { data, timers, extra };
                    Ok(UploadedState { bytes: encode_snapshot(&operator, &snap)?, shared })
                })))
            }
        }
    }

    /// Checkpoint `id` completed (RocksDB: its files become reusable).
    pub fn notify_checkpoint_complete(&mut self, id: u64) {
        if let Some(rocks) = &mut self.rocks {
            rocks.notify_complete(id);
        }
        if let Some(log) = &mut self.changelog {
            log.confirm(id);
            for (i, t) in self.tables.iter_mut().enumerate() {
                t.reclaim(&log.pending(i));
            }
        }
    }

    /// Restores the key groups of this subtask from one old subtask's
    /// snapshot (call once per old subtask); returns its `extra` bytes.
    /// `checkpoint_dir` is where the snapshot's checkpoint lives.
    pub fn restore(&mut self, bytes: &[u8], checkpoint_dir: &Path) -> Result<Vec<u8>> {
        let snap: KeyedStateSnapshot = postcard::from_bytes(bytes).map_err(|e| Error::Snapshot {
            operator: self.operator.clone(),
            action: "decoded",
            message: format!("{e} (is it a savepoint of another job or Sluice version?)"),
        })?;
        // Before anything is read or written: no name may leave its directory.
        snap.check_names(&checkpoint_dir.join(format!("(state of operator {})", self.operator)))?;
        let range = self.range;
        for (domain, timer) in snap.timers {
            if range.contains(timer.key_group()) {
                self.timers.register(domain, timer);
            }
        }
        match &snap.data {
            StateData::Entries(states) => {
                for (name, entries) in states {
                    for (k, v) in entries.iter().filter(|(k, _)| range.contains(key_group_of(k))) {
                        self.put_raw(name, k, v)?;
                    }
                }
            }
            StateData::RocksDb(handle) => self.restore_rocks(handle, &[], checkpoint_dir)?,
            StateData::RocksDbChangelog { base, logs } => self.restore_rocks(base, logs, checkpoint_dir)?,
            StateData::HeapChain(chain) | StateData::HeapChainV2(chain) => {
                let format = match &snap.data {
                    StateData::HeapChain(_) => ChainFormat::Legacy,
                    _ => ChainFormat::Positioned,
                };
                let shared = crate::storage::shared_dir_of(checkpoint_dir);
                let mut batch = RestoreBatch::default();
                changelog::replay(chain, format, &shared, range, &mut |name, k, v| batch.push(self, name, k, v))?;
                batch.flush(self)?;
            }
        }
        // The next heap snapshot must hold every restored entry.
        if self.rocks.is_none() {
            for t in &mut self.tables {
                t.mark_all_changed();
            }
        }
        Ok(snap.extra)
    }

    /// Restores a RocksDB materialization, then replays the logs after it.
    fn restore_rocks(&mut self, base: &RocksHandle, logs: &[StoredFile], checkpoint_dir: &Path) -> Result<()> {
        let range = self.range;
        let mut batch = RestoreBatch::default();
        let local = self.local_dir.clone();
        RocksInstance::restore_from(base, checkpoint_dir, local.as_deref(), range, &mut |name, k, v| {
            batch.push(self, name, k, Some(v))
        })?;
        for log in logs {
            let path = log.path(checkpoint_dir);
            replay_file(Source::File(&path), range, &mut |name, k, v| batch.push(self, name, k, v))?;
        }
        batch.flush(self)
    }

    fn put_batch(&mut self, name: &str, batch: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(rocks) = &mut self.rocks {
            rocks.ensure_cf(name)?;
            return rocks.write(name, batch);
        }
        for (k, v) in batch {
            match v {
                Some(v) => self.put_raw(name, &k, &v)?,
                None => self.remove_raw(name, &k),
            }
        }
        Ok(())
    }

    /// Heap backend: removes a restored entry.
    fn remove_raw(&mut self, name: &str, key: &[u8]) {
        match self.tables.iter_mut().find(|t| t.name() == name) {
            Some(t) => t.remove(key),
            None => {
                if let Some(entries) = self.raw.get_mut(name) {
                    entries.retain(|(k, _)| k.as_slice() != key);
                }
            }
        }
    }

    fn put_raw(&mut self, name: &str, key: &[u8], value: &[u8]) -> Result<()> {
        if let Some(rocks) = &mut self.rocks {
            rocks.ensure_cf(name)?;
            return rocks.write(name, vec![(key.to_vec(), Some(value.to_vec()))]);
        }
        match self.tables.iter_mut().find(|t| t.name() == name) {
            Some(t) => t.load(key, value),
            None => {
                self.raw.entry(name.to_string()).or_default().push((key.to_vec(), value.to_vec()));
                Ok(())
            }
        }
    }
}

impl<T: StateValue> Table<T> {
    fn load_entry(&mut self, key: &[u8], bytes: &[u8]) -> Result<()> {
        AnyTable::load(self, key, bytes)
    }
}

/// Restored entries collected per state and written in batches of up to
/// 10 000 (one RocksDB write batch each).
#[derive(Default)]
struct RestoreBatch {
    state: String,
    entries: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl RestoreBatch {
    fn push(&mut self, store: &mut KeyedStateStore, state: &str, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        if state != self.state || self.entries.len() >= 10_000 {
            self.flush(store)?;
            self.state = state.to_string();
        }
        self.entries.push((key.to_vec(), value.map(<[u8]>::to_vec)));
        Ok(())
    }

    fn flush(&mut self, store: &mut KeyedStateStore) -> Result<()> {
        store.put_batch(&self.state, std::mem::take(&mut self.entries))
    }
}

/// A cache slot for what RocksDB holds under a key (`None`: a miss, kept so
/// that the next read of the key costs no RocksDB read).
fn stored_slot<T: StateValue>(state: &str, bytes: Option<&[u8]>) -> Result<Slot<T>> {
    Ok(match bytes {
        Some(bytes) => {
            let (stamp, value) = decode_value::<T>(state, bytes)?;
            Slot::loaded(Some(value), stamp)
        }
        None => Slot::loaded(None, 0),
    })
}

/// The RocksDB cache is full: writes back every dirty entry in one batch,
/// then keeps only the entries used more than once (hot keys stay cached),
/// at most `keep`.
fn write_back_and_evict(table: &mut dyn AnyTable, rocks: &mut RocksInstance, keep: usize) -> Result<()> {
    let mut dirty = Vec::new();
    table.take_dirty(&mut dirty)?;
    rocks.write_behind(table.name(), dirty)?;
    table.evict(keep);
    Ok(())
}

fn wrong_type(state: &str) -> Error {
    Error::State {
        state: state.to_string(),
        message: "accessed with another value type than it was registered with".into(),
    }
}

fn encode_snapshot(operator: &str, snap: &KeyedStateSnapshot) -> Result<Vec<u8>> {
    postcard::to_stdvec(snap).map_err(|e| Error::Snapshot {
        operator: operator.to_string(),
        action: "encoded",
        message: e.to_string(),
    })
}
