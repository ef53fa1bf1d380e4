//! One registered state's typed entries: the heap backend's store, and the
//! write-back cache in front of RocksDB.
//!
//! Entries are keyed by the composite key (key group ‖ key ‖ namespace).
//! A slot may hold `None`: a deletion not yet written to RocksDB, or a miss
//! remembered so that the next read of the same key costs no RocksDB read.

use crate::error::{Error, Result};
use crate::state::changelog::ChangeEncoder;
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
}

impl<T> Slot<T> {
    /// A clean entry as loaded from the backing store (or a miss).
    pub(crate) fn loaded(value: Option<T>, stamp: i64) -> Self {
        Slot { value, dirty: false, stamp, touched: false }
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
}

impl<T> Table<T> {
    pub(crate) fn new(name: &str, ttl: Option<StateTtlConfig>) -> Self {
        Table { name: name.to_string(), map: SlotMap::default(), ttl, changed: Vec::new() }
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
    fn take_changed(&mut self) -> Vec<Vec<u8>>;
    /// Heap backend: marks every entry changed (after a restore, so that the
    /// next snapshot holds all of them).
    fn mark_all_changed(&mut self);
    /// Heap backend: clones the current values of `keys` (a removal where
    /// there is none or it expired); they are encoded later, off the task
    /// thread.
    fn changes(&self, keys: &[Vec<u8>], now: i64) -> ChangeEncoder;
    /// Eviction sweep of the RocksDB cache (all entries must be clean):
    /// forgets the entries not used again since the last sweep and clears
    /// the mark of the others; if more than `keep` remain, forgets all.
    fn evict(&mut self, keep: usize);
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
    fn take_changed(&mut self) -> Vec<Vec<u8>> {
        let keys = std::mem::take(&mut self.changed);
        for k in &keys {
            if let Some(slot) = self.map.get_mut(k.as_slice()) {
                slot.dirty = false;
            }
        }
        keys
    }
    fn mark_all_changed(&mut self) {
        for (k, slot) in self.map.iter_mut().filter(|(_, s)| !s.dirty) {
            slot.dirty = true;
            self.changed.push(k.clone());
        }
    }
    fn changes(&self, keys: &[Vec<u8>], now: i64) -> ChangeEncoder {
        let ttl = self.ttl;
        let values: Vec<(Vec<u8>, Option<(i64, T)>)> = keys
            .iter()
            .map(|k| {
                let value = self
                    .map
                    .get(k.as_slice())
                    .filter(|s| !ttl.is_some_and(|t| t.is_expired(s.stamp, now)))
                    .and_then(|s| s.value.clone().map(|v| (s.stamp, v)));
                (k.clone(), value)
            })
            .collect();
        let name = self.name.clone();
        Box::new(move || {
            values
                .into_iter()
                .map(|(k, v)| match v {
                    Some((stamp, v)) => Ok((k, Some(encode_value(&name, stamp, &v)?))),
                    None => Ok((k, None)),
                })
                .collect()
        })
    }
    fn evict(&mut self, keep: usize) {
        self.map.retain(|_, slot| std::mem::replace(&mut slot.touched, false));
        if self.map.len() > keep {
            self.map.clear();
        }
    }
}
