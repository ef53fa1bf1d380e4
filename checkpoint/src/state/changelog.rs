//! Incremental snapshots of the heap backend: a chain of change files.
//!
//! A full snapshot of a large heap state costs seconds of serialization; at a
//! one-second checkpoint interval it would eat most of the task's time. So
//! the heap backend tracks which entries changed, and a checkpoint stores
//! only those:
//!
//! * The synchronous part clones the changed entries (and tombstones for
//!   removed ones) of every state; nothing is serialized on the task thread.
//! * The asynchronous part encodes them into one *change file* in the job's
//!   `shared/` directory. The checkpoint's handle is the chain of change
//!   files to apply in order: the chain of the last *confirmed* checkpoint
//!   plus the new file.
//! * A change file holds every entry changed since the last confirmed
//!   checkpoint, not only since the last snapshot, so the chain never
//!   depends on the files of a checkpoint that was aborted (the retention
//!   sweep may remove those at any time). Flink's incremental RocksDB
//!   checkpoints follow the same rule.
//! * When the chain holds more than twice as many entries as the state has,
//!   the upload thread merges it (reading the stored files back) into one
//!   new base file, so storage and restore time stay proportional to the
//!   state.
//! * Savepoints must stand alone: their upload merges the chain into a
//!   self-contained list of entries.
//!
//! Restoring applies the files of the chain in order.

use crate::error::{Error, Result};
use crate::state::format::{key_group_of, Entries, UploadTarget};
use crate::storage::write_atomically;
use crate::KeyGroupRange;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A chain is not merged before it holds this many entries.
const MIN_MERGE_ENTRIES: u64 = 10_000;

/// Changed entries of one state: (composite key, stored value or `None` for
/// a removal).
pub type Changes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The content of one change file: changes per state name.
pub type ChangeSet = Vec<(String, Changes)>;

/// One stored change file of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeFile {
    /// Its name in the job's `shared/` directory.
    pub name: String,
    /// How many entries (changes) it holds.
    pub entries: u64,
}

/// The handle of an incremental heap checkpoint: files to apply in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeChain {
    /// The files, oldest first (the first one is usually a merged base).
    pub files: Vec<ChangeFile>,
}

impl ChangeChain {
    fn entries(&self) -> u64 {
        self.files.iter().map(|f| f.entries).sum()
    }
}

/// Encodes changes produced on the upload thread (typed values are
/// serialized there, not on the task thread).
pub type ChangeEncoder = Box<dyn FnOnce() -> Result<Changes> + Send>;

/// The heap backend's bookkeeping of chains and of what changed since the
/// last confirmed checkpoint.
#[derive(Debug)]
pub struct Changelog {
    /// Unique per store, part of every file name.
    instance: String,
    /// The chain of the last confirmed checkpoint.
    confirmed: ChangeChain,
    /// Chains of uploaded checkpoints not yet confirmed (filled by uploads).
    uploaded: Arc<Mutex<BTreeMap<u64, ChangeChain>>>,
    /// Keys (per state index) taken at each snapshot not yet confirmed.
    unconfirmed: BTreeMap<u64, Vec<Vec<Vec<u8>>>>,
}

impl Changelog {
    /// A changelog with an empty chain.
    pub fn new(instance: String) -> Self {
        Changelog {
            instance,
            confirmed: ChangeChain::default(),
            uploaded: Arc::new(Mutex::new(BTreeMap::new())),
            unconfirmed: BTreeMap::new(),
        }
    }

    /// Records the keys that changed since the last snapshot (one list per
    /// state index) under checkpoint `id`, and returns, per state, every
    /// key changed since the last confirmed checkpoint (sorted, no
    /// duplicates).
    pub fn keys_for(&mut self, id: u64, taken: Vec<Vec<Vec<u8>>>) -> Vec<Vec<Vec<u8>>> {
        let states = taken.len();
        self.unconfirmed.insert(id, taken);
        let mut out: Vec<Vec<Vec<u8>>> = vec![Vec::new(); states];
        for lists in self.unconfirmed.values() {
            for (i, keys) in lists.iter().enumerate() {
                if let Some(o) = out.get_mut(i) {
                    o.extend(keys.iter().cloned());
                }
            }
        }
        for keys in &mut out {
            keys.sort_unstable();
            keys.dedup();
        }
        out
    }

    /// Checkpoint `id` completed: its chain is the base of later ones.
    pub fn confirm(&mut self, id: u64) {
        if let Ok(mut uploaded) = self.uploaded.lock() {
            if let Some(chain) = uploaded.remove(&id) {
                self.confirmed = chain;
            }
            uploaded.retain(|n, _| *n > id);
        }
        self.unconfirmed.retain(|n, _| *n > id);
    }

    /// The asynchronous part of snapshot `id`: encodes the changes, writes
    /// a change file (or merges the chain into a new base when it has grown
    /// past twice `live_entries`), and returns the handle data and the
    /// shared files it references. Savepoints get the merged entries.
    pub fn upload(
        &self,
        id: u64,
        live_entries: u64,
        states: Vec<(String, ChangeEncoder)>,
    ) -> impl FnOnce(&UploadTarget) -> Result<(HeapHandle, Vec<String>)> + Send + 'static {
        let chain = self.confirmed.clone();
        let uploaded = Arc::clone(&self.uploaded);
        let instance = self.instance.clone();
        move |target: &UploadTarget| {
            let mut changes: ChangeSet = Vec::with_capacity(states.len());
            for (name, encode) in states {
                changes.push((name, encode()?));
            }
            if target.kind == crate::barrier::CheckpointKind::Savepoint {
                let merged = merge(&target.shared_dir, &chain, changes)?;
                return Ok((HeapHandle::Entries(merged), Vec::new()));
            }
            let new_entries: u64 = changes.iter().map(|(_, c)| c.len() as u64).sum();
            let (mut next, changes) = if chain.entries() + new_entries > 2 * live_entries.max(MIN_MERGE_ENTRIES / 2) {
                let merged = merge(&target.shared_dir, &chain, changes)?;
                let as_changes: ChangeSet = merged
                    .into_iter()
                    .map(|(name, entries)| (name, entries.into_iter().map(|(k, v)| (k, Some(v))).collect()))
                    .collect();
                (ChangeChain::default(), as_changes)
            } else {
                (chain, changes)
            };
            let entries: u64 = changes.iter().map(|(_, c)| c.len() as u64).sum();
            let name = format!("{}-{instance}-heap-{id}", target.file_prefix);
            let bytes = postcard::to_stdvec(&changes).map_err(|e| Error::Snapshot {
                operator: target.file_prefix.clone(),
                action: "encoded",
                message: e.to_string(),
            })?;
            write_atomically(&target.shared_dir.join(&name), &bytes)?;
            next.files.push(ChangeFile { name, entries });
            if let Ok(mut u) = uploaded.lock() {
                u.insert(id, next.clone());
            }
            let shared = next.files.iter().map(|f| f.name.clone()).collect();
            Ok((HeapHandle::Chain(next), shared))
        }
    }
}

/// What the upload of a heap snapshot produced.
#[derive(Debug)]
pub enum HeapHandle {
    /// A checkpoint: the chain of change files.
    Chain(ChangeChain),
    /// A savepoint: every entry.
    Entries(Vec<(String, Entries)>),
}

/// Reads one change file of a chain.
fn read_file(shared_dir: &Path, file: &ChangeFile) -> Result<ChangeSet> {
    let path = shared_dir.join(&file.name);
    let bytes = std::fs::read(&path).map_err(|e| Error::MissingState {
        checkpoint: 0,
        path: path.clone(),
        reason: format!("change file of an incremental heap checkpoint cannot be read: {e}"),
    })?;
    postcard::from_bytes(&bytes).map_err(|e| Error::MissingState {
        checkpoint: 0,
        path,
        reason: format!("change file of an incremental heap checkpoint is damaged: {e}"),
    })
}

/// Applies a chain and then `last` into one map per state.
fn merge(shared_dir: &Path, chain: &ChangeChain, last: ChangeSet) -> Result<Vec<(String, Entries)>> {
    let mut states: HashMap<String, HashMap<Vec<u8>, Vec<u8>>> = HashMap::new();
    let mut apply = |set: ChangeSet| {
        for (name, changes) in set {
            let state = states.entry(name).or_default();
            for (k, v) in changes {
                match v {
                    Some(v) => state.insert(k, v),
                    None => state.remove(&k),
                };
            }
        }
    };
    for file in &chain.files {
        apply(read_file(shared_dir, file)?);
    }
    apply(last);
    let mut out: Vec<(String, Entries)> =
        states.into_iter().map(|(name, entries)| (name, entries.into_iter().collect())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Replays a stored chain for the key groups in `range`, in order:
/// `sink(state, key, value or None for a removal)`.
pub fn replay(
    chain: &ChangeChain,
    shared_dir: &Path,
    range: KeyGroupRange,
    sink: &mut dyn FnMut(&str, &[u8], Option<&[u8]>) -> Result<()>,
) -> Result<()> {
    for file in &chain.files {
        for (name, changes) in read_file(shared_dir, file)? {
            for (k, v) in changes.iter().filter(|(k, _)| range.contains(key_group_of(k))) {
                sink(&name, k, v.as_deref())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::barrier::CheckpointKind;

    fn target(dir: &Path, kind: CheckpointKind) -> UploadTarget {
        UploadTarget {
            checkpoint_dir: dir.join("chk"),
            shared_dir: dir.join("shared"),
            file_prefix: "op-0".into(),
            kind,
        }
    }

    fn changes(pairs: &[(&[u8], Option<&[u8]>)]) -> ChangeEncoder {
        let owned: Changes = pairs.iter().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect();
        Box::new(move || Ok(owned))
    }

    fn replayed(chain: &ChangeChain, dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut out = BTreeMap::new();
        replay(chain, &dir.join("shared"), KeyGroupRange { start: 0, end: u32::MAX - 1 }, &mut |_, k, v| {
            match v {
                Some(v) => out.insert(k.to_vec(), v.to_vec()),
                None => out.remove(k),
            };
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn chain_grows_from_confirmed_checkpoints_and_replays_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Changelog::new("i".into());
        let keys = log.keys_for(1, vec![vec![b"\0\x01a".to_vec(), b"\0\x01b".to_vec()]]);
        assert_eq!(keys[0].len(), 2);
        let up = log.upload(
            1,
            1_000_000,
            vec![("s".into(), changes(&[(b"\0\x01a", Some(b"1")), (b"\0\x01b", Some(b"2"))]))],
        );
        let (HeapHandle::Chain(c1), _) = up(&target(dir.path(), CheckpointKind::Checkpoint)).unwrap() else { panic!() };
        log.confirm(1);
        // Checkpoint 2 changes a and removes b; it is never confirmed.
        log.keys_for(2, vec![vec![b"\0\x01a".to_vec(), b"\0\x01b".to_vec()]]);
        let up = log.upload(2, 1_000_000, vec![("s".into(), changes(&[(b"\0\x01a", Some(b"3")), (b"\0\x01b", None)]))]);
        let (HeapHandle::Chain(c2), shared) = up(&target(dir.path(), CheckpointKind::Checkpoint)).unwrap() else {
            panic!()
        };
        assert_eq!(c2.files.len(), 2);
        assert_eq!(shared.len(), 2);
        assert_eq!(replayed(&c1, dir.path()).len(), 2);
        let after = replayed(&c2, dir.path());
        assert_eq!(after.get(&b"\0\x01a"[..]).map(Vec::as_slice), Some(&b"3"[..]));
        assert!(!after.contains_key(&b"\0\x01b"[..]));
        // Checkpoint 3 (2 was never confirmed) must still carry 2's keys.
        let keys = log.keys_for(3, vec![vec![b"\0\x01c".to_vec()]]);
        assert_eq!(keys[0], vec![b"\0\x01a".to_vec(), b"\0\x01b".to_vec(), b"\0\x01c".to_vec()]);
        log.confirm(3);
        let keys = log.keys_for(4, vec![vec![]]);
        assert!(keys[0].is_empty(), "confirmed keys are not carried on");
    }

    #[test]
    fn long_chains_are_merged_and_savepoints_stand_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Changelog::new("i".into());
        let mut last = ChangeChain::default();
        let keys = 6_000u32;
        for id in 1..=5u64 {
            log.keys_for(id, vec![vec![]]);
            let encode: ChangeEncoder = Box::new(move || {
                Ok((0..keys).map(|k| (k.to_be_bytes().to_vec(), Some(id.to_be_bytes().to_vec()))).collect())
            });
            let up = log.upload(id, u64::from(keys), vec![("s".into(), encode)]);
            let (HeapHandle::Chain(c), _) = up(&target(dir.path(), CheckpointKind::Checkpoint)).unwrap() else {
                panic!()
            };
            log.confirm(id);
            // Never more than twice the state's entries in the chain.
            assert!(c.entries() <= 2 * u64::from(keys), "{c:?}");
            last = c;
        }
        let state = replayed(&last, dir.path());
        assert_eq!(state.len(), keys as usize);
        assert!(state.values().all(|v| v.as_slice() == 5u64.to_be_bytes()));
        log.keys_for(6, vec![vec![]]);
        let up = log.upload(6, 0, vec![("s".into(), changes(&[(b"\xff\xffz", Some(b"z"))]))]);
        let (HeapHandle::Entries(all), shared) = up(&target(dir.path(), CheckpointKind::Savepoint)).unwrap() else {
            panic!()
        };
        assert!(shared.is_empty());
        assert_eq!(all[0].1.len(), keys as usize + 1);
    }

    #[test]
    fn a_missing_change_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let chain = ChangeChain { files: vec![ChangeFile { name: "gone".into(), entries: 1 }] };
        let err = replay(&chain, dir.path(), KeyGroupRange { start: 0, end: 10 }, &mut |_, _, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("gone") && err.to_string().contains("missing"), "{err}");
    }
}
