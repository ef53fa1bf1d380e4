//! One registered state's typed entries: the heap backend's store, and the
//! write-back cache in front of RocksDB.
//!
//! Entries are keyed by the composite key (key group ‖ key ‖ namespace).
//! A slot may hold `None`: a deletion not yet written to RocksDB, or a miss
//! remembered so that the next read of the same key costs no RocksDB read.

use crate::error::{Error, Result};
use crate::state::changelog::{ChangeWriter, KeyList};
use crate::state::ttl::StateTtlConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::Any;

/// What can be kept in keyed state: cloneable, sendable and serializable.
pub trait StateValue: Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Serialize + DeserializeOwned + 'static> StateValue for T {}

/// One entry of a table.
#[derive(Debug)]
pub(crate) struct Slot<T> {
    pub(crate) value: Option<T>,
    /// Changed since it was last written to the backing store.
    pub(crate) dirty: bool,
    /// Processing time of the last write (or read, see TTL), ms.
    pub(crate) stamp: i64,
    /// Used again since it was loaded or since the last eviction sweep
    /// (the "second chance" of the RocksDB cache).
    pub(crate) touched: bool,
    /// Heap backend: the table's snapshot epoch in which the key was last
    /// put on the changed list (0: never).
    pub(crate) epoch: u32,
}

impl<T> Slot<T> {
    /// A clean entry as loaded from the backing store (or a miss).
    pub(crate) fn loaded(value: Option<T>, stamp: i64) -> Self {
        Slot { value, dirty: false, stamp, touched: false, epoch: 0 }
    }
}

pub(crate) type SlotMap<T> = hashbrown::HashMap<Vec<u8>, Slot<T>, foldhash::fast::RandomState>;

/// The typed entries of one state.
pub(crate) struct Table<T> {
    pub(crate) name: String,
    pub(crate) map: SlotMap<T>,
    pub(crate) ttl: Option<StateTtlConfig>,
    /// Heap backend: keys of the entries marked dirty since the last
    /// snapshot (for incremental snapshots, see `changelog`).
    pub(crate) changed: Vec<Vec<u8>>,
    /// Heap backend: the current snapshot epoch (starts at 1; a snapshot
    /// moves it on, which makes every entry clean at once).
    pub(crate) epoch: u32,
}

impl<T> Table<T> {
    pub(crate) fn new(name: &str, ttl: Option<StateTtlConfig>) -> Self {
        Table { name: name.to_string(), map: SlotMap::default(), ttl, changed: Vec::new(), epoch: 1 }
    }
}

/// The stored form of a value: its timestamp, then the value (postcard).
pub(crate) fn encode_value<T: Serialize>(state: &str, stamp: i64, value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(&(stamp, value))
        .map_err(|e| Error::State { state: state.to_string(), message: format!("cannot encode a value: {e}") })
}

/// Decodes what [`encode_value`] wrote.
pub(crate) fn decode_value<T: DeserializeOwned>(state: &str, bytes: &[u8]) -> Result<(i64, T)> {
    postcard::from_bytes(bytes).map_err(|e| Error::State {
        state: state.to_string(),
        message: format!(
            "cannot decode a stored value: {e} (was the state written by a job with another type for this state name?)"
        ),
    })
}

/// A table seen without its value type, for snapshots and cache eviction.
pub(crate) trait AnyTable: Send {
    fn name(&self) -> &str;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn len(&self) -> usize;
    /// Encodes the entries changed since the last call (`None`: deleted)
    /// and marks them clean.
    fn take_dirty(&mut self, out: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()>;
    /// Adds a restored entry.
    fn load(&mut self, key: Vec<u8>, bytes: &[u8]) -> Result<()>;
    /// Removes an entry (a restored removal).
    fn remove(&mut self, key: &[u8]);
    /// Heap backend: the keys changed since the last call; marks them clean.
    fn take_changed(&mut self) -> KeyList;
    /// Heap backend: marks every entry changed (after a restore, so that the
    /// next snapshot holds all of them).
    fn mark_all_changed(&mut self);
    /// Heap backend: writes a section with the current values of the keys
    /// in `lists` (a removal where there is none or it expired).
    fn write_changes(&self, lists: &[KeyList], now: i64, out: &mut ChangeWriter) -> Result<()>;
    /// Heap backend: writes a section with every entry.
    fn write_all(&self, now: i64, out: &mut ChangeWriter) -> Result<()>;
    /// Eviction sweep of the RocksDB cache (all entries must be clean):
    /// forgets the entries not used again since the last sweep and clears
    /// the mark of the others; if more than `keep` remain, forgets all.
    fn evict(&mut self, keep: usize);
}

impl<T> Table<T> {
    /// The value of a slot and its timestamp, unless absent or expired.
    fn live<'a>(&self, slot: &'a Slot<T>, now: i64) -> Option<(i64, &'a T)> {
        if self.ttl.is_some_and(|t| t.is_expired(slot.stamp, now)) {
            return None;
        }
        slot.value.as_ref().map(|v| (slot.stamp, v))
    }
}

impl<T: StateValue> AnyTable for Table<T> {
    fn name(&self) -> &str {
        &self.name
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn take_dirty(&mut self, out: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()> {
        for (k, slot) in self.map.iter_mut().filter(|(_, s)| s.dirty) {
            let bytes = match &slot.value {
                Some(v) => Some(encode_value(&self.name, slot.stamp, v)?),
                None => None,
            };
            out.push((k.clone(), bytes));
            slot.dirty = false;
        }
        Ok(())
    }
    fn load(&mut self, key: Vec<u8>, bytes: &[u8]) -> Result<()> {
        let (stamp, value) = decode_value::<T>(&self.name, bytes)?;
        self.map.insert(key, Slot::loaded(Some(value), stamp));
        Ok(())
    }
    fn remove(&mut self, key: &[u8]) {
        self.map.remove(key);
    }
    fn take_changed(&mut self) -> KeyList {
        self.epoch = self.epoch.wrapping_add(1).max(1);
        let capacity = self.changed.len() + self.changed.len() / 4;
        std::sync::Arc::new(std::mem::replace(&mut self.changed, Vec::with_capacity(capacity)))
    }
    fn mark_all_changed(&mut self) {
        let epoch = self.epoch;
        for (k, slot) in self.map.iter_mut().filter(|(_, s)| s.epoch != epoch) {
            slot.epoch = epoch;
            self.changed.push(k.clone());
        }
    }
    fn write_changes(&self, lists: &[KeyList], now: i64, out: &mut ChangeWriter) -> Result<()> {
        out.section(&self.name, lists.iter().map(|l| l.len() as u64).sum())?;
        for key in lists.iter().flat_map(|l| l.iter()) {
            match self.map.get(key.as_slice()).and_then(|s| self.live(s, now)) {
                Some((stamp, v)) => out.entry(key, stamp, v)?,
                None => out.entry_encoded(key, None)?,
            }
        }
        Ok(())
    }
    fn write_all(&self, now: i64, out: &mut ChangeWriter) -> Result<()> {
        out.section(&self.name, self.map.len() as u64)?;
        for (key, slot) in &self.map {
            match self.live(slot, now) {
                Some((stamp, v)) => out.entry(key, stamp, v)?,
                None => out.entry_encoded(key, None)?,
            }
        }
        Ok(())
    }
    fn evict(&mut self, keep: usize) {
        self.map.retain(|_, slot| std::mem::replace(&mut slot.touched, false));
        if self.map.len() > keep {
            self.map.clear();
        }
    }
}
