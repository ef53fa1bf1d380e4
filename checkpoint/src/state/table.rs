//! One registered state's typed entries: the heap backend's store, and the
//! write-back cache in front of RocksDB.
//!
//! Entries are keyed by the composite key (key group ‖ key ‖ namespace),
//! stored inline when short. They live in an [`Arena`] of chunks that never
//! move, and a hash index maps keys to arena positions, so an entry keeps
//! its position for its whole life: the heap backend marks a change with one
//! bit of an [`EntrySet`], and a snapshot hands the changed positions to the
//! upload thread, which encodes them while the task thread goes on (with
//! copy-on-write per entry, see [`arena`](crate::state::arena)).
//!
//! A slot may hold `None`: a deletion not yet written to RocksDB or to a
//! confirmed heap checkpoint (a *tombstone*), or a miss remembered so that
//! the next read of the same key costs no RocksDB read. The heap backend
//! frees tombstones once a confirmed checkpoint holds their deletion.

use crate::error::{Error, Result};
use crate::state::arena::{encode_entry, Arena, Entry, Read};
use crate::state::change_file::{ChangeWriter, SectionKind};
use crate::state::changelog::KeyList;
use crate::state::entry_set::EntrySet;
use crate::state::ttl::StateTtlConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::Any;
use std::hash::BuildHasher;
use std::sync::Arc;

/// What can be kept in keyed state: cloneable, sendable, shareable (a
/// snapshot reads it from the upload thread) and serializable.
pub trait StateValue: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static> StateValue for T {}

/// A composite key, inline up to 24 bytes.
pub(crate) type Key = smallvec::SmallVec<[u8; 24]>;

/// One entry of a table.
#[derive(Debug, Clone)]
pub(crate) struct Slot<T> {
    pub(crate) value: Option<T>,
    /// Changed since it was last written to RocksDB.
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

/// 32 bits of a key's hash, spread over the 64 the index wants (the low
/// bits pick the bucket, the top seven are the control byte).
fn spread(h: u32) -> u64 {
    (u64::from(h) << 32) | u64::from(h)
}

/// The 32-bit hash of a key that the index stores.
fn key_hash(hasher: &foldhash::fast::RandomState, key: &[u8]) -> u32 {
    let h = hasher.hash_one(key);
    (h ^ (h >> 32)) as u32
}

/// The typed entries of one state.
pub(crate) struct Table<T> {
    pub(crate) name: String,
    pub(crate) ttl: Option<StateTtlConfig>,
    /// (arena position, 32-bit hash of its key).
    index: hashbrown::HashTable<(u32, u32)>,
    entries: Arena<T>,
    free: Vec<u32>,
    hasher: foldhash::fast::RandomState,
    /// Heap backend: positions changed since the last snapshot.
    pub(crate) changed: EntrySet,
    /// Heap backend: positions that became `None` (may hold repeats).
    tombstones: Vec<u32>,
    /// Returned for reads of absent keys on the heap backend (never stored).
    miss: Slot<T>,
}

/// Encodes a table's part of a snapshot into a change file (runs on the
/// upload thread).
pub(crate) type SnapshotEncoder = Box<dyn FnOnce(&mut ChangeWriter) -> Result<()> + Send>;

impl<T: StateValue> Table<T> {
    pub(crate) fn new(name: &str, ttl: Option<StateTtlConfig>) -> Self {
        Table {
            name: name.to_string(),
            ttl,
            index: hashbrown::HashTable::new(),
            entries: Arena::default(),
            free: Vec::new(),
            hasher: foldhash::fast::RandomState::default(),
            changed: EntrySet::default(),
            tombstones: Vec::new(),
            miss: Slot::loaded(None, 0),
        }
    }

    fn hash(&self, key: &[u8]) -> u32 {
        key_hash(&self.hasher, key)
    }

    /// The position of `key`, if present.
    #[inline]
    pub(crate) fn find(&self, key: &[u8]) -> Option<u32> {
        let h = self.hash(key);
        let entries = &self.entries;
        self.index
            .find(spread(h), |&(i, eh)| eh == h && entries.get(i).is_some_and(|e| e.key.as_slice() == key))
            .map(|&(i, _)| i)
    }

    /// Adds `key` (which must be absent) and returns its position.
    pub(crate) fn insert(&mut self, key: &[u8], slot: Slot<T>) -> Result<u32> {
        let h = self.hash(key);
        let entry = Entry { key: Key::from_slice(key), slot, occupied: true };
        let pos = match self.free.pop() {
            Some(p) => {
                if let Some(e) = self.entries.get_mut(p) {
                    *e = entry;
                }
                p
            }
            None => self.entries.push(entry).map_err(|e| match e {
                Error::State { message, .. } => Error::State { state: self.name.clone(), message },
                other => other,
            })?,
        };
        self.index.insert_unique(spread(h), (pos, h), |&(_, eh)| spread(eh));
        Ok(pos)
    }

    /// The slot at `pos`, or the shared miss slot (`None`) if there is no
    /// entry there. (A snapshot that still needs the entry encodes it
    /// first.)
    #[inline]
    pub(crate) fn slot_mut(&mut self, pos: Option<u32>) -> &mut Slot<T>
    where
        T: Serialize,
    {
        match pos.and_then(|p| self.entries.get_mut(p)) {
            Some(e) => &mut e.slot,
            None => {
                self.miss.value = None;
                &mut self.miss
            }
        }
    }

    /// The slot at `pos` to read it, or the miss slot.
    #[inline]
    pub(crate) fn slot(&self, pos: Option<u32>) -> Option<&Slot<T>> {
        pos.and_then(|p| self.entries.get(p)).map(|e| &e.slot)
    }

    /// Heap backend: records a change of the entry at `pos`.
    #[inline]
    pub(crate) fn mark(&mut self, pos: u32) {
        self.changed.insert(pos);
    }

    /// Heap backend: the entry at `pos` became `None`; it is freed once a
    /// confirmed checkpoint holds the removal (or at once while no snapshot
    /// was taken, see [`Table::free_tombstones`]).
    pub(crate) fn note_tombstone(&mut self, pos: u32) {
        self.tombstones.push(pos);
        // Without checkpoints nothing is reclaimed: keep the list bounded.
        if self.tombstones.len() > 2 * self.entries.len() + 1024 {
            self.tombstones.sort_unstable();
            self.tombstones.dedup();
        }
    }

    /// Heap backend, before any snapshot: frees every noted tombstone that
    /// is still empty (no change file holds their keys, so no removal needs
    /// to be written).
    pub(crate) fn free_tombstones(&mut self) {
        for pos in std::mem::take(&mut self.tombstones) {
            if self.entries.get(pos).is_some_and(|e| e.occupied && e.slot.value.is_none()) {
                self.free_at(pos);
            }
        }
    }

    /// Frees the entry at `pos`.
    fn free_at(&mut self, pos: u32) {
        let Some(e) = self.entries.get(pos).filter(|e| e.occupied) else { return };
        let h = key_hash(&self.hasher, &e.key);
        if let Ok(found) = self.index.find_entry(spread(h), |&(i, _)| i == pos) {
            found.remove();
        }
        if let Some(e) = self.entries.get_mut(pos) {
            e.occupied = false;
            e.slot = Slot::loaded(None, 0);
            e.key = Key::new();
        }
        self.free.push(pos);
        self.changed.remove(pos);
    }

    /// The occupied entries: (position, key, slot).
    fn occupied(&self) -> impl Iterator<Item = (u32, &[u8], &Slot<T>)> {
        self.entries.iter().filter(|(_, e)| e.occupied).map(|(i, e)| (i, e.key.as_slice(), &e.slot))
    }

    /// Every occupied entry's key and slot.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &Slot<T>)> {
        self.occupied().map(|(_, k, s)| (k, s))
    }

    /// Keeps only the entries `keep` accepts, and packs the arena (RocksDB
    /// cache only: positions change).
    fn retain_packed(&mut self, mut keep: impl FnMut(&mut Slot<T>) -> bool)
    where
        T: Clone,
    {
        let old = self.entries.take_all();
        self.index.clear();
        self.free.clear();
        for mut e in old.into_iter().filter(|e| e.occupied) {
            if keep(&mut e.slot) {
                let h = self.hash(&e.key);
                // Fewer entries than the arena held: a position always exists.
                let Ok(pos) = self.entries.push(e) else { break };
                self.index.insert_unique(spread(h), (pos, h), |&(_, eh)| spread(eh));
            }
        }
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
    /// Adds (or replaces) a restored entry.
    fn load(&mut self, key: &[u8], bytes: &[u8]) -> Result<()>;
    /// Removes an entry (a restored removal).
    fn remove(&mut self, key: &[u8]);
    /// Heap backend: the entries changed since the last call.
    fn take_changed(&mut self) -> KeyList;
    /// Heap backend: marks every entry changed (after a restore, so that the
    /// next snapshot holds all of them).
    fn mark_all_changed(&mut self);
    /// Heap backend: starts a snapshot of the entries in `lists` as they
    /// are now; the returned encoder writes their section (by position; a
    /// removal where there is none or it expired) on the upload thread while
    /// this table goes on changing.
    fn begin_snapshot(&mut self, lists: &[KeyList], now: i64) -> SnapshotEncoder;
    /// Heap backend: frees the tombstones whose removal no pending
    /// snapshot (`pending`, not yet confirmed) or later change still needs.
    fn reclaim(&mut self, pending: &[&KeyList]);
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
        self.index.len()
    }
    fn take_dirty(&mut self, out: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()> {
        let mut cleaned = Vec::new();
        for (p, key, slot) in self.occupied().filter(|(_, _, s)| s.dirty) {
            let bytes = match &slot.value {
                Some(v) => Some(encode_value(&self.name, slot.stamp, v)?),
                None => None,
            };
            out.push((key.to_vec(), bytes));
            cleaned.push(p);
        }
        for p in cleaned {
            if let Some(e) = self.entries.get_mut(p) {
                e.slot.dirty = false;
            }
        }
        Ok(())
    }
    fn load(&mut self, key: &[u8], bytes: &[u8]) -> Result<()> {
        let (stamp, value) = decode_value::<T>(&self.name, bytes)?;
        match self.find(key) {
            Some(pos) => *self.slot_mut(Some(pos)) = Slot::loaded(Some(value), stamp),
            None => {
                self.insert(key, Slot::loaded(Some(value), stamp))?;
            }
        }
        Ok(())
    }
    fn remove(&mut self, key: &[u8]) {
        if let Some(pos) = self.find(key) {
            self.free_at(pos);
        }
    }
    fn take_changed(&mut self) -> KeyList {
        let next = EntrySet::with_capacity(self.changed.span());
        std::sync::Arc::new(std::mem::replace(&mut self.changed, next))
    }
    fn mark_all_changed(&mut self) {
        let positions: Vec<u32> = self.occupied().filter(|(_, _, s)| s.value.is_some()).map(|(p, _, _)| p).collect();
        for p in positions {
            self.changed.insert(p);
        }
    }
    fn begin_snapshot(&mut self, lists: &[KeyList], now: i64) -> SnapshotEncoder {
        let set = match lists {
            [one] => Arc::clone(one),
            _ => Arc::new(EntrySet::union(lists.iter().map(|l| l.as_ref()))),
        };
        let reader = self.entries.begin_snapshot(set, now, self.ttl);
        let (name, ttl) = (self.name.clone(), self.ttl);
        Box::new(move |out: &mut ChangeWriter| {
            out.section(&name, SectionKind::Positioned);
            let declined = |what: String| Error::State {
                state: name.clone(),
                message: format!("{what}; the snapshot is declined"),
            };
            reader.for_each(|p, read| match read {
                Read::Entry(Some(e)) if e.occupied => out.entry_with(|buf| encode_entry(buf, p, e, ttl, now)),
                // A set never holds a free position (positions are freed
                // only when no set holds them).
                Read::Entry(_) => Err(declined(format!("internal error: changed entry {p} has been freed"))),
                Read::Encoded(bytes) if !bytes.is_empty() => {
                    out.raw_entry(&bytes);
                    Ok(())
                }
                Read::Encoded(_) => Err(declined(format!("entry {p} could not be encoded"))),
            })
        })
    }
    fn reclaim(&mut self, pending: &[&KeyList]) {
        let candidates = std::mem::take(&mut self.tombstones);
        for pos in candidates {
            let Some(e) = self.entries.get(pos) else { continue };
            if !e.occupied || e.slot.value.is_some() {
                continue;
            }
            if self.changed.contains(pos) || pending.iter().any(|l| l.contains(pos)) {
                self.tombstones.push(pos);
            } else {
                self.free_at(pos);
            }
        }
        self.tombstones.sort_unstable();
        self.tombstones.dedup();
    }
    fn evict(&mut self, keep: usize) {
        self.retain_packed(|slot| std::mem::replace(&mut slot.touched, false));
        if self.index.len() > keep {
            self.retain_packed(|_| false);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn positions_are_stable_and_freed_positions_are_reused() {
        let mut t: Table<u64> = Table::new("t", None);
        let a = t.insert(b"a", Slot::loaded(Some(1), 0)).unwrap();
        let long = [7u8; 40];
        let b = t.insert(&long, Slot::loaded(Some(2), 0)).unwrap();
        for i in 0..1000u32 {
            t.insert(&i.to_be_bytes(), Slot::loaded(Some(u64::from(i)), 0)).unwrap();
        }
        assert_eq!(t.find(b"a"), Some(a));
        assert_eq!(t.find(&long), Some(b));
        assert_eq!(t.slot_mut(Some(b)).value, Some(2));
        assert_eq!(AnyTable::len(&t), 1002);
        AnyTable::remove(&mut t, b"a");
        assert_eq!(t.find(b"a"), None);
        assert_eq!(t.slot_mut(None).value, None, "absent keys read as None");
        let c = t.insert(b"c", Slot::loaded(Some(3), 0)).unwrap();
        assert_eq!(c, a, "the freed position is reused");
        assert_eq!(t.find(&long), Some(b));
        assert_eq!(t.find(&5u32.to_be_bytes()).map(|p| t.slot_mut(Some(p)).value), Some(Some(5)));
    }

    #[test]
    fn tombstones_are_freed_only_when_no_pending_snapshot_needs_them() {
        let mut t: Table<u64> = Table::new("t", None);
        let a = t.insert(b"a", Slot::loaded(None, 0)).unwrap();
        t.mark(a);
        t.note_tombstone(a);
        let taken = t.take_changed();
        t.reclaim(&[&taken]);
        assert_eq!(t.find(b"a"), Some(a), "kept while its snapshot is not confirmed");
        t.reclaim(&[]);
        assert_eq!(t.find(b"a"), None, "freed once confirmed");
        let b = t.insert(b"b", Slot::loaded(None, 0)).unwrap();
        t.note_tombstone(b);
        t.slot_mut(Some(b)).value = Some(9);
        t.reclaim(&[]);
        assert_eq!(t.find(b"b"), Some(b), "a revived entry stays");
    }
}
