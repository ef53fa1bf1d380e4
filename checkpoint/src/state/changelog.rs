//! Incremental snapshots of the heap backend: a chain of change files.
//!
//! A full snapshot of a large heap state costs seconds of serialization; at a
//! one-second checkpoint interval it would eat most of the task's time. So
//! the heap backend tracks which entries changed, and a checkpoint stores
//! only those:
//!
//! * Each table marks the arena positions of the entries it changed since
//!   the last snapshot in a bitmap ([`EntrySet`]). At a barrier the bitmap is
//!   taken (no copy) and its positions are marked pending; the upload thread
//!   encodes the entries, in position order, into one reused buffer
//!   ([`ChangeWriter`], the format is in
//!   [`change_file`](crate::state::change_file)) while the task thread goes
//!   on, copy-on-write per entry (the arena module's protocol), and writes
//!   it as a *change file* in the job's `shared/` directory. The
//!   checkpoint's handle is the chain of change files to apply in order:
//!   the chain of the last *confirmed* checkpoint plus the new file.
//! * A change file holds every entry changed since the last confirmed
//!   checkpoint, not only since the last snapshot, so the chain never
//!   depends on the files of a checkpoint that was aborted (the retention
//!   sweep may remove those at any time). Flink's incremental RocksDB
//!   checkpoints follow the same rule.
//! * When the chain would hold more than twice as many entries as the state
//!   has, the upload thread compacts it: a streaming merge by arena position
//!   ([`change_file::merge`](crate::state::change_file::merge)) writes one
//!   base file with every live entry, which starts a new chain. The task
//!   thread never writes the whole state, so storage and restore time stay
//!   proportional to the state while the checkpoint's synchronous part stays
//!   proportional to the changes.
//! * Savepoints must stand alone: their upload merges the chain into a
//!   self-contained list of entries.
//!
//! Restoring applies the files of the chain in order. Chains written before
//! the position-keyed format ([`StateData::HeapChain`](crate::state::format::StateData))
//! still restore ([`replay`] reads both).

use crate::error::{Error, Result};
use crate::state::change_file::{self, EntriesOut, FileOut, Source};
use crate::state::entry_set::EntrySet;
use crate::state::format::{key_group_of, Entries, UploadTarget};
use crate::storage::write_atomically;
use crate::KeyGroupRange;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub use crate::state::change_file::ChangeWriter;

/// A chain is not compacted before it holds this many entries.
const MIN_REBASE_ENTRIES: u64 = 10_000;

/// Encode buffers kept for reuse (a fresh buffer costs page faults).
const POOLED_BUFFERS: usize = 2;

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

/// Receives replayed changes: (state, key, value or `None` for a removal).
pub type ReplaySink<'a> = &'a mut dyn FnMut(&str, &[u8], Option<&[u8]>) -> Result<()>;

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
    /// Encode buffers handed back by uploads.
    buffers: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Changelog {
    /// A changelog with an empty chain.
    pub fn new(instance: String) -> Self {
        Changelog {
            instance,
            confirmed: ChangeChain::default(),
            uploaded: Arc::new(Mutex::new(BTreeMap::new())),
            unconfirmed: BTreeMap::new(),
            buffers: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A writer for the next change file, encoding into a reused buffer.
    pub fn writer(&self) -> ChangeWriter {
        let buf = self.buffers.lock().ok().and_then(|mut b| b.pop()).unwrap_or_default();
        ChangeWriter::new(buf)
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

    /// Whether the upload of this snapshot should compact the chain into a
    /// new base (the chain plus `changes` would exceed twice `live` entries).
    pub fn needs_rebase(&self, changes: u64, live: u64) -> bool {
        !self.confirmed.files.is_empty() && self.confirmed.entries() + changes > 2 * live.max(MIN_REBASE_ENTRIES / 2)
    }

    /// Whether no snapshot was taken yet: no change file holds any key, so
    /// removals need not be kept for one (the first snapshot holds every
    /// change since the start).
    pub fn is_untracked(&self) -> bool {
        self.confirmed.files.is_empty() && self.unconfirmed.is_empty()
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
    /// file, or (`rebase`) merges the confirmed chain and it into a new
    /// base, and returns the handle data and the shared files it
    /// references. Savepoints get the merged entries instead.
    pub fn upload(
        &self,
        id: u64,
        rebase: bool,
    ) -> impl FnOnce(ChangeWriter, &UploadTarget) -> Result<(HeapHandle, Vec<String>)> + Send + 'static {
        let chain = self.confirmed.clone();
        let uploaded = Arc::clone(&self.uploaded);
        let buffers = Arc::clone(&self.buffers);
        let instance = self.instance.clone();
        move |file: ChangeWriter, target: &UploadTarget| {
            let (buf, entries) = file.finish();
            let result = store(id, &instance, &chain, &buf, entries, rebase, target);
            // The buffer is kept for the next snapshot unless it is mostly
            // empty (one large file must not pin its size for good).
            if let Ok(mut pool) = buffers.lock() {
                if pool.len() < POOLED_BUFFERS && buf.len() * 4 >= buf.capacity() {
                    pool.push(buf);
                }
            }
            let (handle, next) = result?;
            if let Some(next) = next {
                if let Ok(mut u) = uploaded.lock() {
                    u.insert(id, next);
                }
            }
            Ok(handle)
        }
    }
}

/// The handle data of an upload and the shared files it references.
type Stored = (HeapHandle, Vec<String>);

/// Stores one snapshot's change file; returns the handle data and shared
/// files, and the chain later snapshots build on once it is confirmed.
fn store(
    id: u64,
    instance: &str,
    chain: &ChangeChain,
    buf: &[u8],
    entries: u64,
    rebase: bool,
    target: &UploadTarget,
) -> Result<(Stored, Option<ChangeChain>)> {
    let shared_dir = &target.shared_dir;
    let paths: Vec<_> = chain.files.iter().map(|f| shared_dir.join(&f.name)).collect();
    let mut sources: Vec<Source<'_>> = paths.iter().map(|p| Source::File(p)).collect();
    sources.push(Source::Bytes(buf));
    if target.kind == crate::barrier::CheckpointKind::Savepoint {
        let mut out = EntriesOut::default();
        change_file::merge(&sources, &mut out)?;
        return Ok(((HeapHandle::Entries(out.0), Vec::new()), None));
    }
    let name = format!("{}-{instance}-heap-{id}", target.file_prefix);
    let path = shared_dir.join(&name);
    let next = if rebase {
        crate::storage::create_dir_durable(shared_dir)?;
        let mut out = FileOut::create(&path)?;
        change_file::merge(&sources, &mut out)?;
        ChangeChain { files: vec![ChangeFile { name, entries: out.finish()? }] }
    } else {
        write_atomically(&path, buf)?;
        let mut next = chain.clone();
        next.files.push(ChangeFile { name, entries });
        next
    };
    let shared = next.files.iter().map(|f| f.name.clone()).collect();
    Ok(((HeapHandle::Chain(next.clone()), shared), Some(next)))
}

/// What the upload of a heap snapshot produced.
#[derive(Debug)]
pub enum HeapHandle {
    /// A checkpoint: the chain of change files.
    Chain(ChangeChain),
    /// A savepoint: every entry.
    Entries(Vec<(String, Entries)>),
}

/// The format of a stored chain's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainFormat {
    /// Postcard `(state, count)` sections of `(key, Option<value>)` entries
    /// (written by Sluice before the position-keyed format).
    Legacy,
    /// The position-keyed format of [`change_file`].
    Positioned,
}

/// Replays a stored chain for the key groups in `range`, in order:
/// `sink(state, key, value or None for a removal)`. Each file's name must
/// be a plain file name, and (in the positioned format) its size and
/// checksum are verified before it is applied.
pub fn replay(
    chain: &ChangeChain,
    format: ChainFormat,
    shared_dir: &Path,
    range: KeyGroupRange,
    sink: ReplaySink<'_>,
) -> Result<()> {
    for file in &chain.files {
        let path = crate::names::join_checked(shared_dir, &file.name, shared_dir)?;
        match format {
            ChainFormat::Positioned => change_file::replay_file(Source::File(&path), range, sink)?,
            ChainFormat::Legacy => replay_legacy(&path, range, sink)?,
        }
    }
    Ok(())
}

/// One entry of a legacy change file: (key, stored value or `None`).
type LegacyEntry<'a> = (&'a [u8], Option<&'a [u8]>);

/// Replays one file of the legacy format.
fn replay_legacy(path: &Path, range: KeyGroupRange, sink: ReplaySink<'_>) -> Result<()> {
    let missing = |reason: String| Error::MissingState { checkpoint: 0, path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path)
        .map_err(|e| missing(format!("change file of an incremental heap checkpoint cannot be read: {e}")))?;
    let damaged =
        |e: postcard::Error| missing(format!("change file of an incremental heap checkpoint is damaged: {e}"));
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let ((name, count), r): ((String, u64), &[u8]) = postcard::take_from_bytes(rest).map_err(damaged)?;
        rest = r;
        for _ in 0..count {
            let ((k, v), r): (LegacyEntry<'_>, &[u8]) = postcard::take_from_bytes(rest).map_err(damaged)?;
            rest = r;
            if range.contains(key_group_of(k)) {
                sink(&name, k, v)?;
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
    use crate::state::change_file::SectionKind;

    fn target(dir: &Path, kind: CheckpointKind) -> UploadTarget {
        UploadTarget {
            checkpoint_dir: dir.join("chk"),
            shared_dir: dir.join("shared"),
            file_prefix: "op-0".into(),
            kind,
        }
    }

    type Change<'a> = (u32, &'a [u8], Option<&'a [u8]>);

    fn file(log: &Changelog, pairs: &[Change<'_>]) -> ChangeWriter {
        let mut w = log.writer();
        w.section("s", SectionKind::Positioned);
        for (p, k, v) in pairs {
            w.entry_encoded(*p, k, *v);
        }
        w
    }

    fn list(positions: &[u32]) -> KeyList {
        Arc::new(positions.iter().copied().collect())
    }

    fn replayed_as(chain: &ChangeChain, format: ChainFormat, dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut out = BTreeMap::new();
        let all = KeyGroupRange { start: 0, end: u32::MAX - 1 };
        replay(chain, format, &dir.join("shared"), all, &mut |_, k, v| {
            match v {
                Some(v) => out.insert(k.to_vec(), v.to_vec()),
                None => out.remove(k),
            };
            Ok(())
        })
        .unwrap();
        out
    }

    fn replayed(chain: &ChangeChain, dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
        replayed_as(chain, ChainFormat::Positioned, dir)
    }

    #[test]
    fn chain_grows_from_confirmed_checkpoints_and_replays_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Changelog::new("i".into());
        assert!(!log.needs_rebase(0, 1_000_000), "the first file is the base: nothing to compact");
        let keys = log.keys_for(1, vec![list(&[0, 1])]);
        assert_eq!(keys[0].len(), 1);
        let w = file(&log, &[(0, b"\0\x01a", Some(b"1")), (1, b"\0\x01b", Some(b"2"))]);
        let (HeapHandle::Chain(c1), _) =
            log.upload(1, false)(w, &target(dir.path(), CheckpointKind::Checkpoint)).unwrap()
        else {
            panic!()
        };
        log.confirm(1);
        assert!(!log.needs_rebase(2, 1_000_000));
        // Checkpoint 2 changes a and removes b; it is never confirmed.
        log.keys_for(2, vec![list(&[0, 1])]);
        let w = file(&log, &[(0, b"\0\x01a", Some(b"3")), (1, b"\0\x01b", None)]);
        let (HeapHandle::Chain(c2), shared) =
            log.upload(2, false)(w, &target(dir.path(), CheckpointKind::Checkpoint)).unwrap()
        else {
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
        // The encode buffers come back for reuse.
        assert!(log.writer().finish().0.capacity() > 4, "a used buffer is reused");
    }

    #[test]
    fn long_chains_are_compacted_by_the_upload_and_savepoints_stand_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Changelog::new("i".into());
        let live = 6_000u32;
        let mut rebased = 0;
        for id in 1..=6u64 {
            log.keys_for(id, vec![list(&[])]);
            let rebase = log.needs_rebase(u64::from(live), u64::from(live));
            rebased += u32::from(rebase);
            let mut w = log.writer();
            w.section("s", SectionKind::Positioned);
            for k in 0..live {
                // Every other key changes; key 7 is removed at checkpoint 5.
                if k % 2 == (id % 2) as u32 || id == 1 {
                    let value = (k != 7 || id < 5).then(|| id.to_be_bytes());
                    w.entry_encoded(k, &k.to_be_bytes(), value.as_ref().map(|v| &v[..]));
                }
            }
            let (HeapHandle::Chain(c), _) =
                log.upload(id, rebase)(w, &target(dir.path(), CheckpointKind::Checkpoint)).unwrap()
            else {
                panic!()
            };
            log.confirm(id);
            if rebase {
                assert_eq!(c.files.len(), 1, "a compacted chain is one base file");
                assert_eq!(c.entries(), u64::from(live) - u64::from(id >= 5), "a base holds only live entries");
            }
            assert!(c.entries() <= 2 * u64::from(live) + 3_000, "never much more than twice the state: {c:?}");
            let state = replayed(&c, dir.path());
            assert_eq!(state.len(), live as usize - usize::from(id >= 5));
            let odd_id = if id % 2 == 1 { id } else { id - 1 };
            let even_id = if id % 2 == 0 { id } else { id - 1 };
            assert_eq!(state[&3u32.to_be_bytes()[..]], odd_id.to_be_bytes(), "after checkpoint {id}");
            assert_eq!(state[&4u32.to_be_bytes()[..]], even_id.max(1).to_be_bytes(), "after checkpoint {id}");
        }
        assert!(rebased >= 2, "compacted {rebased} times");
        log.keys_for(7, vec![list(&[])]);
        let w = file(&log, &[(live + 1, b"\xff\xffz", Some(b"z"))]);
        let (HeapHandle::Entries(all), shared) =
            log.upload(7, false)(w, &target(dir.path(), CheckpointKind::Savepoint)).unwrap()
        else {
            panic!()
        };
        assert!(shared.is_empty());
        assert_eq!(all[0].1.len(), live as usize);
    }

    #[test]
    fn legacy_chains_still_replay() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("shared")).unwrap();
        let mut bytes = postcard::to_stdvec(&("s", 2u64)).unwrap();
        bytes.extend(postcard::to_stdvec(&(&b"\0\x01a"[..], Some(&b"1"[..]))).unwrap());
        bytes.extend(postcard::to_stdvec(&(&b"\0\x01b"[..], None::<&[u8]>)).unwrap());
        std::fs::write(dir.path().join("shared").join("old"), bytes).unwrap();
        let chain = ChangeChain { files: vec![ChangeFile { name: "old".into(), entries: 2 }] };
        let state = replayed_as(&chain, ChainFormat::Legacy, dir.path());
        assert_eq!(state.into_iter().collect::<Vec<_>>(), vec![(b"\0\x01a".to_vec(), b"1".to_vec())]);
    }

    #[test]
    fn a_missing_change_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let chain = ChangeChain { files: vec![ChangeFile { name: "gone".into(), entries: 1 }] };
        for format in [ChainFormat::Positioned, ChainFormat::Legacy] {
            let err = replay(&chain, format, dir.path(), KeyGroupRange { start: 0, end: 10 }, &mut |_, _, _| Ok(()))
                .unwrap_err();
            assert!(err.to_string().contains("gone") && err.to_string().contains("missing"), "{err}");
        }
    }
}
