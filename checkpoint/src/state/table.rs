//! One registered state's typed entries: the heap backend's store, and the
//! write-back cache in front of RocksDB.
//!
//! Entries are keyed by the composite key (key group ‖ key ‖ namespace).
//! A slot may hold `None`: a deletion not yet written to RocksDB, or a miss
//! remembered so that the next read of the same key costs no RocksDB read.

use crate::error::{Error, Result};
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
}

pub(crate) type SlotMap<T> = hashbrown::HashMap<Vec<u8>, Slot<T>, foldhash::fast::RandomState>;

/// The typed entries of one state.
pub(crate) struct Table<T> {
    pub(crate) name: String,
    pub(crate) map: SlotMap<T>,
    pub(crate) ttl: Option<StateTtlConfig>,
}

impl<T> Table<T> {
    pub(crate) fn new(name: &str, ttl: Option<StateTtlConfig>) -> Self {
        Table { name: name.to_string(), map: SlotMap::default(), ttl }
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
    /// Encodes every live, unexpired entry (the heap backend's snapshot).
    fn entries(&self, now: i64, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<()>;
    /// Adds a restored entry.
    fn load(&mut self, key: Vec<u8>, bytes: &[u8]) -> Result<()>;
    /// Forgets all cached entries (they must be clean).
    fn clear(&mut self);
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
    fn entries(&self, now: i64, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        for (k, slot) in &self.map {
            let Some(v) = &slot.value else { continue };
            if self.ttl.is_some_and(|t| t.is_expired(slot.stamp, now)) {
                continue;
            }
            out.push((k.clone(), encode_value(&self.name, slot.stamp, v)?));
        }
        Ok(())
    }
    fn load(&mut self, key: Vec<u8>, bytes: &[u8]) -> Result<()> {
        let (stamp, value) = decode_value::<T>(&self.name, bytes)?;
        self.map.insert(key, Slot { value: Some(value), dirty: false, stamp });
        Ok(())
    }
    fn clear(&mut self) {
        self.map.clear();
    }
}
