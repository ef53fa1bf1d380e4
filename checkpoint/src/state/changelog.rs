//! Incremental snapshots of the heap backend: a chain of change files.
//!
//! A full snapshot of a large heap state costs seconds of serialization; at a
//! one-second checkpoint interval it would eat most of the task's time. So
//! the heap backend tracks which entries changed, and a checkpoint stores
//! only those:
//!
//! * Each table marks the arena positions of the entries it changed since
//!   the last snapshot in a bitmap ([`EntrySet`]). At a barrier the bitmap is
//!   taken (no copy) and the current values of those entries are encoded, in
//!   memory order, straight into one buffer ([`ChangeWriter`]); the
//!   upload thread only writes that buffer as a *change file* in the job's
//!   `shared/` directory. The checkpoint's handle is the chain of change
//!   files to apply in order: the chain of the last *confirmed* checkpoint
//!   plus the new file.
//! * A change file holds every entry changed since the last confirmed
//!   checkpoint, not only since the last snapshot, so the chain never
//!   depends on the files of a checkpoint that was aborted (the retention
//!   sweep may remove those at any time). Flink's incremental RocksDB
//!   checkpoints follow the same rule.
//! * When the chain would hold more than twice as many entries as the state
//!   has, the snapshot writes every entry instead and starts a new chain, so
//!   storage and restore time stay proportional to the state.
//! * Savepoints must stand alone: their upload merges the chain into a
//!   self-contained list of entries.
//!
//! Restoring applies the files of the chain in order.
//!
//! A change file is a sequence of sections, each a postcard-encoded
//! `(state name, entry count)` followed by that many postcard-encoded
//! `(composite key, Option<stored value>)` entries (`None`: removed).

use crate::error::{Error, Result};
use crate::state::entry_set::EntrySet;
use crate::state::format::{key_group_of, Entries, UploadTarget};
use crate::storage::write_atomically;
use crate::KeyGroupRange;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A chain is not rebased before it holds this many entries.
const MIN_REBASE_ENTRIES: u64 = 10_000;

/// (composite key, stored value or `None` for a removal) pairs of one state.
pub type Changes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Decoded change sets: changes per state name.
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
    /// The files, oldest first (the first one is usually a full base).
    pub files: Vec<ChangeFile>,
}

impl ChangeChain {
    fn entries(&self) -> u64 {
        self.files.iter().map(|f| f.entries).sum()
    }
}

/// Entries (arena positions) a table changed between two snapshots, shared
/// between the changelog (until the checkpoint is confirmed) and the
/// snapshot.
pub type KeyList = Arc<EntrySet>;

/// Encodes one change file into a single buffer.
#[derive(Debug, Default)]
pub struct ChangeWriter {
    buf: Vec<u8>,
    scratch: Vec<u8>,
    entries: u64,
}

fn encode_err(e: postcard::Error) -> Error {
    Error::State { state: String::new(), message: format!("cannot encode a change file: {e}") }
}

impl ChangeWriter {
    /// A writer with room for about `entries` entries.
    pub fn with_capacity(entries: u64) -> Self {
        ChangeWriter { buf: Vec::with_capacity((entries.min(1 << 26) * 48) as usize), ..Default::default() }
    }

    /// Starts the section of state `name` with `count` entries.
    pub fn section(&mut self, name: &str, count: u64) -> Result<()> {
        self.buf = postcard::to_extend(&(name, count), std::mem::take(&mut self.buf)).map_err(encode_err)?;
        Ok(())
    }

    /// Adds an entry whose stored value is already encoded (`None`: the
    /// entry is removed). Written by hand in postcard's encoding of
    /// `(&[u8], Option<&[u8]>)`: serde would write a byte slice one element
    /// at a time.
    pub fn entry_encoded(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.entries += 1;
        put_bytes(&mut self.buf, key);
        match value {
            Some(v) => {
                self.buf.push(1);
                put_bytes(&mut self.buf, v);
            }
            None => self.buf.push(0),
        }
        Ok(())
    }

    /// Adds an entry with its value and timestamp, stored as
    /// [`encode_value`](crate::state::table) writes them.
    pub fn entry<V: Serialize>(&mut self, key: &[u8], stamp: i64, value: &V) -> Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch = postcard::to_extend(&(stamp, value), scratch).map_err(encode_err)?;
        let result = self.entry_encoded(key, Some(&scratch));
        self.scratch = scratch;
        result
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }
}

/// Appends `bytes` as postcard encodes a byte slice: its length as a
/// varint, then the bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut n = bytes.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(bytes);
}

/// One encoded entry of a change file: (key, stored value or `None`).
type StoredChange<'a> = (&'a [u8], Option<&'a [u8]>);

/// Receives replayed changes: (state, key, value or `None` for a removal).
pub type ReplaySink<'a> = &'a mut dyn FnMut(&str, &[u8], Option<&[u8]>) -> Result<()>;

/// Decodes a change file.
pub fn decode(bytes: &[u8]) -> std::result::Result<ChangeSet, postcard::Error> {
    let mut rest = bytes;
    let mut out = ChangeSet::new();
    while !rest.is_empty() {
        let ((name, count), r): ((String, u64), &[u8]) = postcard::take_from_bytes(rest)?;
        rest = r;
        let mut changes = Changes::with_capacity(count.min(1 << 20) as usize);
        for _ in 0..count {
            let (entry, r): (StoredChange<'_>, &[u8]) = postcard::take_from_bytes(rest)?;
            let (k, v) = entry;
            rest = r;
            changes.push((k.to_vec(), v.map(<[u8]>::to_vec)));
        }
        out.push((name, changes));
    }
    Ok(out)
}

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
    unconfirmed: BTreeMap<u64, Vec<KeyList>>,
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
    /// state index) under checkpoint `id`, and returns, per state, the lists
    /// of every key changed since the last confirmed checkpoint (oldest
    /// first; a key may be in several lists).
    pub fn keys_for(&mut self, id: u64, taken: Vec<KeyList>) -> Vec<Vec<KeyList>> {
        let states = taken.len();
        self.unconfirmed.insert(id, taken);
        let mut out: Vec<Vec<KeyList>> = vec![Vec::new(); states];
        for lists in self.unconfirmed.values() {
            for (i, keys) in lists.iter().enumerate() {
                if let Some(o) = out.get_mut(i) {
                    o.push(Arc::clone(keys));
                }
            }
        }
        out
    }

    /// The change sets of state `state` taken by snapshots not confirmed yet.
    pub fn pending(&self, state: usize) -> Vec<&KeyList> {
        self.unconfirmed.values().filter_map(|lists| lists.get(state)).collect()
    }

    /// Whether this snapshot should write every entry and start a new chain
    /// (the chain plus `changes` would exceed twice `live` entries).
    pub fn needs_rebase(&self, changes: u64, live: u64) -> bool {
        self.confirmed.files.is_empty() || self.confirmed.entries() + changes > 2 * live.max(MIN_REBASE_ENTRIES / 2)
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

    /// The asynchronous part of snapshot `id`: writes the encoded change
    /// file (`rebase`: it holds every entry and starts a new chain) and
    /// returns the handle data and the shared files it references.
    /// Savepoints get the merged entries instead.
    pub fn upload(
        &self,
        id: u64,
        file: ChangeWriter,
        rebase: bool,
    ) -> impl FnOnce(&UploadTarget) -> Result<(HeapHandle, Vec<String>)> + Send + 'static {
        let chain = if rebase { ChangeChain::default() } else { self.confirmed.clone() };
        let uploaded = Arc::clone(&self.uploaded);
        let instance = self.instance.clone();
        move |target: &UploadTarget| {
            if target.kind == crate::barrier::CheckpointKind::Savepoint {
                let last = decode(&file.buf).map_err(encode_err)?;
                let merged = merge(&target.shared_dir, &chain, last)?;
                return Ok((HeapHandle::Entries(merged), Vec::new()));
            }
            let name = format!("{}-{instance}-heap-{id}", target.file_prefix);
            write_atomically(&target.shared_dir.join(&name), &file.buf)?;
            let mut next = chain;
            next.files.push(ChangeFile { name, entries: file.entries });
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
    decode(&bytes).map_err(|e| Error::MissingState {
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
pub fn replay(chain: &ChangeChain, shared_dir: &Path, range: KeyGroupRange, sink: ReplaySink<'_>) -> Result<()> {
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
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
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

    fn file(pairs: &[(&[u8], Option<&[u8]>)]) -> ChangeWriter {
        let mut w = ChangeWriter::default();
        w.section("s", pairs.len() as u64).unwrap();
        for (k, v) in pairs {
            w.entry_encoded(k, *v).unwrap();
        }
        w
    }

    fn list(positions: &[u32]) -> KeyList {
        Arc::new(positions.iter().copied().collect())
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
    fn change_files_round_trip() {
        let mut w = file(&[(b"\0\x01a", Some(b"1")), (b"\0\x01b", None)]);
        w.section("t", 1).unwrap();
        w.entry(b"\0\x02c", 7, &("x".to_string(), 3u64)).unwrap();
        assert_eq!(w.entries(), 3);
        let set = decode(&w.buf).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set[0].1, vec![(b"\0\x01a".to_vec(), Some(b"1".to_vec())), (b"\0\x01b".to_vec(), None)]);
        let stored = set[1].1[0].1.clone().unwrap();
        assert_eq!(stored, crate::state::table::encode_value("t", 7, &("x".to_string(), 3u64)).unwrap());
        assert!(decode(&w.buf[..w.buf.len() - 1]).is_err(), "a truncated file is an error");
        // The hand-written entry encoding is postcard's.
        let long = vec![7u8; 300];
        let mut w = ChangeWriter::default();
        w.entry_encoded(&long, Some(b"v")).unwrap();
        w.entry_encoded(b"k", None).unwrap();
        let mut expected = postcard::to_stdvec(&(&long[..], Some(&b"v"[..]))).unwrap();
        expected.extend(postcard::to_stdvec(&(&b"k"[..], None::<&[u8]>)).unwrap());
        assert_eq!(w.buf, expected);
    }

    #[test]
    fn chain_grows_from_confirmed_checkpoints_and_replays_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Changelog::new("i".into());
        assert!(log.needs_rebase(0, 1_000_000), "the first snapshot starts a chain");
        let keys = log.keys_for(1, vec![list(&[0, 1])]);
        assert_eq!(keys[0].len(), 1);
        let up = log.upload(1, file(&[(b"\0\x01a", Some(b"1")), (b"\0\x01b", Some(b"2"))]), true);
        let (HeapHandle::Chain(c1), _) = up(&target(dir.path(), CheckpointKind::Checkpoint)).unwrap() else { panic!() };
        log.confirm(1);
        assert!(!log.needs_rebase(2, 1_000_000));
        // Checkpoint 2 changes a and removes b; it is never confirmed.
        log.keys_for(2, vec![list(&[0, 1])]);
        let up = log.upload(2, file(&[(b"\0\x01a", Some(b"3")), (b"\0\x01b", None)]), false);
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
        let keys = log.keys_for(3, vec![list(&[2])]);
        let all: Vec<u32> = keys[0].iter().flat_map(|l| l.iter()).collect();
        assert_eq!(all, vec![0, 1, 2]);
        assert_eq!(log.pending(0).len(), 2);
        log.confirm(3);
        let keys = log.keys_for(4, vec![list(&[])]);
        assert!(keys[0].iter().all(|l| l.is_empty()), "confirmed keys are not carried on");
    }

    #[test]
    fn long_chains_are_rebased_and_savepoints_stand_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Changelog::new("i".into());
        assert!(!log.needs_rebase(0, 0) || log.confirmed.files.is_empty());
        let live = 6_000u64;
        let mut rebased = 0;
        for id in 1..=6u64 {
            log.keys_for(id, vec![list(&[])]);
            let rebase = log.needs_rebase(live, live);
            rebased += u32::from(rebase);
            let mut w = ChangeWriter::default();
            w.section("s", live).unwrap();
            for k in 0..live {
                w.entry_encoded(&k.to_be_bytes(), Some(&id.to_be_bytes())).unwrap();
            }
            let (HeapHandle::Chain(c), _) =
                log.upload(id, w, rebase)(&target(dir.path(), CheckpointKind::Checkpoint)).unwrap()
            else {
                panic!()
            };
            log.confirm(id);
            assert!(c.entries() <= 2 * live, "never more than twice the state in the chain: {c:?}");
        }
        assert_eq!(rebased, 3, "rebased at 1, 3 and 5");
        let state = replayed(&log.confirmed, dir.path());
        assert_eq!(state.len(), live as usize);
        assert!(state.values().all(|v| v.as_slice() == 6u64.to_be_bytes()));
        log.keys_for(7, vec![list(&[])]);
        let up = log.upload(7, file(&[(b"\xff\xffz", Some(b"z"))]), false);
        let (HeapHandle::Entries(all), shared) = up(&target(dir.path(), CheckpointKind::Savepoint)).unwrap() else {
            panic!()
        };
        assert!(shared.is_empty());
        assert_eq!(all[0].1.len(), live as usize + 1);
    }

    #[test]
    fn a_missing_change_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let chain = ChangeChain { files: vec![ChangeFile { name: "gone".into(), entries: 1 }] };
        let err = replay(&chain, dir.path(), KeyGroupRange { start: 0, end: 10 }, &mut |_, _, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("gone") && err.to_string().contains("missing"), "{err}");
    }
}
