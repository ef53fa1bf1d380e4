//! Keyed state on both backends: the same operations give the same values,
//! snapshots restore across backends and key-group ranges, RocksDB
//! checkpoints are incremental, and retention keeps referenced shared files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sluice_checkpoint::metadata::{CheckpointMetadata, OperatorStateMeta};
use sluice_checkpoint::state::format::{KeyedStateSnapshot, StateData, StateSnapshot, UploadTarget, UploadedState};
use sluice_checkpoint::state::{
    CompactionStyle, KeyedStateStore, ListState, MapState, RocksDbTuning, SharedStore, StateBackendConfig,
    StateBackendKind, StateTtlConfig, TimeDomain, ValueState,
};
use sluice_checkpoint::storage::{self, SHARED_DIR};
use sluice_checkpoint::{CheckpointId, CheckpointKind, KeyGroupRange};
use std::path::{Path, PathBuf};
use std::time::Duration;

const ALL: KeyGroupRange = KeyGroupRange { start: 0, end: 127 };

fn config(kind: StateBackendKind, local: &Path) -> StateBackendConfig {
    StateBackendConfig {
        kind,
        local_dir: Some(local.to_path_buf()),
        cache_entries: 64,
        ..StateBackendConfig::default()
    }
}

fn store(kind: StateBackendKind, local: &Path, range: KeyGroupRange) -> KeyedStateStore {
    KeyedStateStore::new("op", &config(kind, local), 128, range).unwrap()
}

/// Runs the snapshot's upload like a task's upload thread; returns the
/// state bytes and the shared files it references.
fn take_snapshot(s: &mut KeyedStateStore, root: &Path, id: u64, kind: CheckpointKind) -> (PathBuf, UploadedState) {
    let dir = storage::checkpoint_dir(root, "job", CheckpointId(id));
    std::fs::create_dir_all(&dir).unwrap();
    let uploaded = match s.snapshot(id, vec![7]).unwrap() {
        StateSnapshot::Ready(bytes) => UploadedState { bytes, shared: vec![] },
        StateSnapshot::Upload(f) => f(&UploadTarget {
            checkpoint_dir: dir.clone(),
            shared_dir: root.join("job").join(SHARED_DIR),
            file_prefix: "op-0".into(),
            kind,
        })
        .unwrap(),
    };
    (dir, uploaded)
}

/// Writes the checkpoint's metadata as the coordinator would.
fn complete(dir: &Path, id: u64, up: &UploadedState) {
    let mut h = storage::write_state(dir, "op-0", 0, &up.bytes).unwrap();
    h.shared = up.shared.clone();
    let meta = CheckpointMetadata {
        job_id: "job".into(),
        job_name: "job".into(),
        checkpoint_id: CheckpointId(id),
        kind: CheckpointKind::Checkpoint,
        timestamp_ms: id,
        max_parallelism: 128,
        operators: vec![OperatorStateMeta {
            operator_id: "op".into(),
            name: "op".into(),
            parallelism: 1,
            keyed: true,
            subtasks: vec![h],
        }],
        job_operators: vec!["op".into()],
    };
    storage::write_metadata(dir, &meta).unwrap();
}

fn fill(shared: &SharedStore, keys: u32) {
    let count: ValueState<u64> = ValueState::register(shared, "count", None).unwrap();
    let seen: ListState<u32> = ListState::register(shared, "seen", None).unwrap();
    let last: MapState<String, u32> = MapState::register(shared, "last", None).unwrap();
    for i in 0..keys * 5 {
        let k = i % keys;
        shared.set_current_key(&format!("key-{k}")).unwrap();
        count.update(count.value().unwrap().unwrap_or(0) + 1).unwrap();
        seen.add(i).unwrap();
        last.put(format!("m{}", i / keys % 3), i).unwrap();
    }
}

/// Per key in range: (key, count, list length, map entries).
type KeyView = (u32, Option<u64>, usize, Vec<(String, u32)>);

fn read_all(shared: &SharedStore, keys: u32, range: KeyGroupRange) -> Vec<KeyView> {
    let count: ValueState<u64> = ValueState::register(shared, "count", None).unwrap();
    let seen: ListState<u32> = ListState::register(shared, "seen", None).unwrap();
    let last: MapState<String, u32> = MapState::register(shared, "last", None).unwrap();
    (0..keys)
        .filter(|k| range.contains(sluice_checkpoint::key_group::assign_to_key_group(&format!("key-{k}"), 128)))
        .map(|k| {
            shared.set_current_key(&format!("key-{k}")).unwrap();
            (k, count.value().unwrap(), seen.get().unwrap().len(), last.entries().unwrap())
        })
        .collect()
}

#[test]
fn both_backends_agree_and_restore_into_each_other_by_key_group() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("chk");
    let mut snapshots = Vec::new();
    for (n, kind) in [StateBackendKind::HashMap, StateBackendKind::RocksDb].into_iter().enumerate() {
        let shared = SharedStore::new(store(kind, tmp.path(), ALL));
        fill(&shared, 300);
        let all = read_all(&shared, 300, ALL);
        assert_eq!(all.len(), 300);
        assert!(all.iter().all(|(_, c, s, m)| *c == Some(5) && *s == 5 && m.len() == 3), "{kind}");
        let (dir, up) = take_snapshot(&mut shared.lock().unwrap(), &root, n as u64 + 1, CheckpointKind::Checkpoint);
        snapshots.push((dir, up.bytes));
    }
    // Each snapshot restores on either backend, split over two subtasks.
    let halves = [KeyGroupRange { start: 0, end: 63 }, KeyGroupRange { start: 64, end: 127 }];
    for (dir, bytes) in &snapshots {
        for kind in [StateBackendKind::HashMap, StateBackendKind::RocksDb] {
            let mut total = 0;
            for range in halves {
                let mut s = store(kind, tmp.path(), range);
                assert_eq!(s.restore(bytes, dir).unwrap(), vec![7]);
                let shared = SharedStore::new(s);
                let got = read_all(&shared, 300, range);
                assert!(got.iter().all(|(_, c, s, _)| *c == Some(5) && *s == 5), "{kind}");
                total += got.len();
                // A key of the other half is not here.
                let other = (0..300)
                    .map(|k| format!("key-{k}"))
                    .find(|k| !range.contains(sluice_checkpoint::key_group::assign_to_key_group(k, 128)))
                    .unwrap();
                shared.set_current_key(&other).unwrap();
                let count: ValueState<u64> = ValueState::register(&shared, "count", None).unwrap();
                assert_eq!(count.value().unwrap(), None);
            }
            assert_eq!(total, 300);
        }
    }
}

#[test]
fn rocksdb_tunings_keep_the_same_state() {
    // Tiny memtables force many flushes and compactions of both styles.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("chk");
    for (n, compaction) in [CompactionStyle::Level, CompactionStyle::Universal].into_iter().enumerate() {
        let mut config = config(StateBackendKind::RocksDb, tmp.path());
        config.rocksdb = RocksDbTuning {
            write_buffer_bytes: 64 << 10,
            write_buffer_count: 2,
            compaction,
            background_jobs: 1,
            ..RocksDbTuning::default()
        };
        let shared = SharedStore::new(KeyedStateStore::new("op", &config, 128, ALL).unwrap());
        fill(&shared, 3000);
        let before = read_all(&shared, 3000, ALL);
        assert_eq!(before.len(), 3000, "{compaction:?}");
        let (dir, up) = take_snapshot(&mut shared.lock().unwrap(), &root, n as u64 + 1, CheckpointKind::Checkpoint);
        let mut s = KeyedStateStore::new("op", &config, 128, ALL).unwrap();
        s.restore(&up.bytes, &dir).unwrap();
        assert_eq!(read_all(&SharedStore::new(s), 3000, ALL), before, "{compaction:?}");
    }
}

#[test]
fn rocksdb_checkpoints_are_incremental_and_retention_keeps_referenced_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("chk");
    let shared = SharedStore::new(store(StateBackendKind::RocksDb, tmp.path(), ALL));
    fill(&shared, 2_000);
    let shared_dir = root.join("job").join(SHARED_DIR);
    let dir_size = |d: &Path| -> u64 {
        std::fs::read_dir(d).map(|e| e.flatten().map(|f| f.metadata().unwrap().len()).sum()).unwrap_or(0)
    };

    let (dir1, up1) = take_snapshot(&mut shared.lock().unwrap(), &root, 1, CheckpointKind::Checkpoint);
    complete(&dir1, 1, &up1);
    shared.lock().unwrap().notify_checkpoint_complete(1);
    let first = dir_size(&shared_dir);
    assert!(!up1.shared.is_empty() && first > 10_000, "the first checkpoint uploads the SST files ({first} bytes)");

    // Unchanged store: the second checkpoint references the same files.
    let (dir2, up2) = take_snapshot(&mut shared.lock().unwrap(), &root, 2, CheckpointKind::Checkpoint);
    complete(&dir2, 2, &up2);
    assert_eq!(dir_size(&shared_dir), first, "the second checkpoint copied no SST file");
    assert_eq!(up2.shared, up1.shared);
    assert!(dir_size(&dir2) < first / 4, "only small private files are in chk-2");

    // Dropping chk-1 keeps every file chk-2 references; chk-2 restores.
    storage::retain(&root, "job", 1, true).unwrap();
    assert!(!dir1.exists());
    assert_eq!(dir_size(&shared_dir), first);
    let (meta, d) = storage::read_metadata(&dir2).unwrap();
    storage::verify_files(&meta, &d).unwrap();
    let mut s = store(StateBackendKind::HashMap, tmp.path(), ALL);
    s.restore(&up2.bytes, &dir2).unwrap();
    let got = read_all(&SharedStore::new(s), 2_000, ALL);
    assert!(got.iter().all(|(_, c, _, _)| *c == Some(5)));

    // New data, a third checkpoint: only the new file is uploaded, and once
    // chk-2 is gone nothing unreferenced is left behind.
    shared.lock().unwrap().notify_checkpoint_complete(2);
    {
        let count: ValueState<u64> = ValueState::register(&shared, "count", None).unwrap();
        shared.set_current_key(&"fresh").unwrap();
        count.update(1).unwrap();
    }
    let (dir3, up3) = take_snapshot(&mut shared.lock().unwrap(), &root, 3, CheckpointKind::Checkpoint);
    complete(&dir3, 3, &up3);
    let added: Vec<_> = up3.shared.iter().filter(|f| !up2.shared.contains(f)).collect();
    assert!(!added.is_empty() && added.len() <= 3, "new SST files only: {added:?}");
    storage::retain(&root, "job", 1, true).unwrap();
    let left: std::collections::BTreeSet<String> = std::fs::read_dir(&shared_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, up3.shared.iter().cloned().collect());

    // A missing shared file is detected before a restore is attempted.
    std::fs::remove_file(shared_dir.join(&up3.shared[0])).unwrap();
    let (meta, d) = storage::read_metadata(&dir3).unwrap();
    let err = storage::verify_files(&meta, &d).unwrap_err().to_string();
    assert!(err.contains("shared file") && err.contains(&up3.shared[0]), "{err}");
}

#[test]
fn heap_checkpoints_are_incremental_and_survive_aborted_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("chk");
    let shared = SharedStore::new(store(StateBackendKind::HashMap, tmp.path(), ALL));
    fill(&shared, 2_000);
    let shared_dir = root.join("job").join(SHARED_DIR);
    let file_size = |name: &String| std::fs::metadata(shared_dir.join(name)).unwrap().len();

    let (dir1, up1) = take_snapshot(&mut shared.lock().unwrap(), &root, 1, CheckpointKind::Checkpoint);
    complete(&dir1, 1, &up1);
    shared.lock().unwrap().notify_checkpoint_complete(1);
    assert_eq!(up1.shared.len(), 1);
    let first = file_size(&up1.shared[0]);
    assert!(first > 10_000, "the first checkpoint holds every entry ({first} bytes)");

    // Unchanged store: the second checkpoint adds an (almost) empty file.
    let (dir2, up2) = take_snapshot(&mut shared.lock().unwrap(), &root, 2, CheckpointKind::Checkpoint);
    complete(&dir2, 2, &up2);
    assert_eq!(up2.shared.len(), 2);
    assert_eq!(up2.shared[0], up1.shared[0], "chk-2 references chk-1's file");
    assert!(file_size(&up2.shared[1]) < 64, "nothing changed, nothing stored");
    shared.lock().unwrap().notify_checkpoint_complete(2);

    // Checkpoint 3 changes one key and is aborted (never confirmed, its
    // files deleted); checkpoint 4 must still hold that change.
    let count: ValueState<u64> = ValueState::register(&shared, "count", None).unwrap();
    shared.set_current_key(&"k7").unwrap();
    count.update(1000).unwrap();
    let (_dir3, up3) = take_snapshot(&mut shared.lock().unwrap(), &root, 3, CheckpointKind::Checkpoint);
    let new3: Vec<_> = up3.shared.iter().filter(|f| !up2.shared.contains(f)).collect();
    assert_eq!(new3.len(), 1);
    std::fs::remove_file(shared_dir.join(new3[0])).unwrap();
    let (dir4, up4) = take_snapshot(&mut shared.lock().unwrap(), &root, 4, CheckpointKind::Checkpoint);
    complete(&dir4, 4, &up4);
    assert!(!up4.shared.contains(new3[0]), "chk-4 does not build on the aborted chk-3");
    storage::retain(&root, "job", 1, true).unwrap();
    let (meta, d) = storage::read_metadata(&dir4).unwrap();
    storage::verify_files(&meta, &d).unwrap();
    for kind in [StateBackendKind::HashMap, StateBackendKind::RocksDb] {
        let mut s = store(kind, tmp.path(), ALL);
        s.restore(&up4.bytes, &dir4).unwrap();
        let restored = SharedStore::new(s);
        let count: ValueState<u64> = ValueState::register(&restored, "count", None).unwrap();
        restored.set_current_key(&"k7").unwrap();
        assert_eq!(count.value().unwrap(), Some(1000), "{kind}: the change of the aborted checkpoint");
        let got = read_all(&restored, 2_000, ALL);
        assert!(got.iter().all(|(_, c, n, m)| *c == Some(5) && *n == 5 && m.len() == 3), "{kind}: every entry");
    }

    // A savepoint of the heap backend stands alone (its upload reads the
    // chain back from the job's shared directory).
    let (dir5, up5) = take_snapshot(&mut shared.lock().unwrap(), &root, 5, CheckpointKind::Savepoint);
    assert!(up5.shared.is_empty());
    let mut s = store(StateBackendKind::HashMap, tmp.path(), ALL);
    s.restore(&up5.bytes, &dir5).unwrap();
    assert!(read_all(&SharedStore::new(s), 2_000, ALL).iter().all(|(_, c, _, _)| *c == Some(5)));
}

#[test]
fn cleared_heap_entries_are_freed_once_a_confirmed_checkpoint_holds_the_removal() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("chk");
    let shared = SharedStore::new(store(StateBackendKind::HashMap, tmp.path(), ALL));
    let count: ValueState<u64> = ValueState::register(&shared, "count", None).unwrap();
    let set = |keys: std::ops::Range<u32>, value: Option<u64>| {
        for k in keys {
            shared.set_current_key(&format!("key-{k}")).unwrap();
            match value {
                Some(v) => count.update(v).unwrap(),
                None => count.clear().unwrap(),
            }
        }
    };
    let in_memory = || shared.lock().unwrap().entries_in_memory();
    set(0..100, Some(1));
    // Reads of absent keys store nothing on the heap.
    shared.set_current_key(&"never-written").unwrap();
    assert_eq!(count.value().unwrap(), None);
    assert_eq!(in_memory(), 100);
    // Before any snapshot no change file holds a key: cleared entries are
    // freed at once (a job without checkpoints does not keep them).
    set(200..260, Some(1));
    assert_eq!(in_memory(), 160);
    set(200..260, None);
    assert_eq!(in_memory(), 100, "cleared before any snapshot: freed at once");
    let (_, _) = take_snapshot(&mut shared.lock().unwrap(), &root, 1, CheckpointKind::Checkpoint);
    shared.lock().unwrap().notify_checkpoint_complete(1);

    set(0..50, None);
    assert_eq!(in_memory(), 100, "the removals are not in any checkpoint yet");
    let (dir2, up2) = take_snapshot(&mut shared.lock().unwrap(), &root, 2, CheckpointKind::Checkpoint);
    assert_eq!(in_memory(), 100, "checkpoint 2 is not confirmed yet");
    // Checkpoint 3 removes one more key and is aborted; its removal must
    // stay in memory until a later checkpoint is confirmed.
    set(50..51, None);
    let (_, _) = take_snapshot(&mut shared.lock().unwrap(), &root, 3, CheckpointKind::Checkpoint);
    shared.lock().unwrap().notify_checkpoint_complete(2);
    assert_eq!(in_memory(), 50, "chk-2's 50 removals freed, chk-3's kept");
    let (dir4, up4) = take_snapshot(&mut shared.lock().unwrap(), &root, 4, CheckpointKind::Checkpoint);
    shared.lock().unwrap().notify_checkpoint_complete(4);
    assert_eq!(in_memory(), 49);
    // A freed position is reused by a new key without disturbing the others.
    set(1000..1010, Some(3));
    assert_eq!(in_memory(), 59);

    for (dir, up, live) in [(&dir2, &up2, 50..100), (&dir4, &up4, 51..100)] {
        let mut s = store(StateBackendKind::HashMap, tmp.path(), ALL);
        s.restore(&up.bytes, dir).unwrap();
        let restored = SharedStore::new(s);
        let count: ValueState<u64> = ValueState::register(&restored, "count", None).unwrap();
        for k in 0..100u32 {
            restored.set_current_key(&format!("key-{k}")).unwrap();
            let expected = live.contains(&k).then_some(1);
            assert_eq!(count.value().unwrap(), expected, "key-{k} restored from {}", dir.display());
        }
    }
}

#[test]
fn rocksdb_prefetch_loads_a_batch_into_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("chk");
    let shared = SharedStore::new(store(StateBackendKind::RocksDb, tmp.path(), ALL));
    fill(&shared, 2_000);
    // Restored into a new instance, whose cache is empty.
    let (dir, up) = take_snapshot(&mut shared.lock().unwrap(), &root, 1, CheckpointKind::Checkpoint);
    let mut s = store(StateBackendKind::RocksDb, tmp.path(), ALL);
    s.restore(&up.bytes, &dir).unwrap();
    let id = s.register::<u64>("count", None).unwrap();
    assert_eq!(s.entries_in_memory(), 0);
    let keys: Vec<String> = (0..40).map(|k| format!("key-{}", k * 37)).chain(["absent".to_string()]).collect();
    s.prefetch::<u64, String>(id, &keys).unwrap();
    assert_eq!(s.entries_in_memory(), keys.len(), "the batch is cached, the miss remembered");
    for k in &keys {
        s.set_current_key(k).unwrap();
        let expected = (k != "absent").then_some(5);
        assert_eq!(s.get::<u64>(id).unwrap(), expected, "{k}");
    }
    assert_eq!(s.entries_in_memory(), keys.len(), "the reads found every entry cached");
    // The heap backend has nothing to fetch.
    let mut heap = store(StateBackendKind::HashMap, tmp.path(), ALL);
    let hid = heap.register::<u64>("count", None).unwrap();
    heap.prefetch::<u64, String>(hid, &keys).unwrap();
    assert_eq!(heap.entries_in_memory(), 0);
}

#[test]
fn savepoints_of_rocksdb_stand_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("chk");
    let shared = SharedStore::new(store(StateBackendKind::RocksDb, tmp.path(), ALL));
    fill(&shared, 500);
    let (dir, up) = take_snapshot(&mut shared.lock().unwrap(), &root, 1, CheckpointKind::Savepoint);
    assert!(up.shared.is_empty());
    assert!(!root.join("job").join(SHARED_DIR).exists());
    let mut s = store(StateBackendKind::RocksDb, tmp.path(), ALL);
    s.restore(&up.bytes, &dir).unwrap();
    assert_eq!(read_all(&SharedStore::new(s), 500, ALL).len(), 500);
}

#[test]
fn ttl_expires_entries_on_both_backends() {
    let tmp = tempfile::tempdir().unwrap();
    for kind in [StateBackendKind::HashMap, StateBackendKind::RocksDb] {
        let mut s = store(kind, tmp.path(), ALL);
        let short = s.register::<u32>("short", Some(StateTtlConfig::new(Duration::from_millis(30)))).unwrap();
        let long = s.register::<u32>("long", None).unwrap();
        s.set_current_key(&1u32).unwrap();
        s.update(short, |v| *v = Some(1u32)).unwrap();
        s.update(long, |v| *v = Some(2u32)).unwrap();
        assert_eq!(s.get::<u32>(short).unwrap(), Some(1), "{kind}: fresh");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(s.get::<u32>(short).unwrap(), None, "{kind}: expired");
        assert_eq!(s.get::<u32>(long).unwrap(), Some(2), "{kind}: no TTL");
    }
}

#[test]
fn timers_restore_by_key_group() {
    let tmp = tempfile::tempdir().unwrap();
    let group = |k: &u32| sluice_checkpoint::key_group::assign_to_key_group(k, 128);
    let g1 = group(&1);
    let other = (2u32..).find(|k| group(k) != g1).unwrap();
    let mut s = store(StateBackendKind::HashMap, tmp.path(), ALL);
    s.set_current_key(&1u32).unwrap();
    s.register_timer(TimeDomain::EventTime, 100);
    s.register_timer(TimeDomain::EventTime, 100);
    s.set_current_key(&other).unwrap();
    s.register_timer(TimeDomain::ProcessingTime, 50);
    let (dir, up) = take_snapshot(&mut s, &tmp.path().join("chk"), 1, CheckpointKind::Checkpoint);
    let mut only_1 = store(StateBackendKind::HashMap, tmp.path(), KeyGroupRange { start: g1, end: g1 });
    only_1.restore(&up.bytes, &dir).unwrap();
    assert_eq!(only_1.timers.len(TimeDomain::EventTime), 1);
    assert_eq!(only_1.timers.len(TimeDomain::ProcessingTime), 0);
    let t = only_1.timers.pop_due(TimeDomain::EventTime, 100).unwrap();
    only_1.set_current_timer(&t);
    assert_eq!(postcard::from_bytes::<u32>(only_1.current_key_bytes()).unwrap(), 1);
}

#[test]
fn long_heap_chains_are_compacted_by_the_upload_and_restore_at_any_range() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("chk");
    let shared = SharedStore::new(store(StateBackendKind::HashMap, tmp.path(), ALL));
    let count: ValueState<u64> = ValueState::register(&shared, "count", None).unwrap();
    let keys = 12_000u32;
    let key = |k: u32| format!("key-{k}");
    let mut chains = Vec::new();
    for id in 1..=3u64 {
        for k in 0..keys {
            shared.set_current_key(&key(k)).unwrap();
            match (id, k) {
                // Cleared at 2 (their positions are freed once 2 is
                // confirmed) ...
                (2, 0..100) => count.clear().unwrap(),
                (3, 0..100) => {}
                _ => count.update(id).unwrap(),
            }
        }
        if id == 3 {
            // ... and reused by new keys at 3.
            for k in 0..100 {
                shared.set_current_key(&format!("new-{k}")).unwrap();
                count.update(30).unwrap();
            }
        }
        let (dir, up) = take_snapshot(&mut shared.lock().unwrap(), &root, id, CheckpointKind::Checkpoint);
        complete(&dir, id, &up);
        shared.lock().unwrap().notify_checkpoint_complete(id);
        chains.push((dir, up));
    }
    assert_eq!(shared.lock().unwrap().entries_in_memory(), keys as usize, "freed positions were reused");
    let (dir3, up3) = &chains[2];
    assert_eq!(chains[1].1.shared.len(), 2, "checkpoint 2 extends the chain");
    assert_eq!(up3.shared.len(), 1, "checkpoint 3 is compacted into one base file: {:?}", up3.shared);
    assert!(!chains[1].1.shared.contains(&up3.shared[0]));
    // Retention keeps only the base; it restores alone, at any range and
    // into either backend.
    storage::retain(&root, "job", 1, true).unwrap();
    let (meta, d) = storage::read_metadata(dir3).unwrap();
    storage::verify_files(&meta, &d).unwrap();
    let halves = [KeyGroupRange { start: 0, end: 63 }, KeyGroupRange { start: 64, end: 127 }];
    for (kind, range) in [
        (StateBackendKind::HashMap, ALL),
        (StateBackendKind::HashMap, halves[0]),
        (StateBackendKind::RocksDb, halves[1]),
    ] {
        let mut s = store(kind, tmp.path(), range);
        s.restore(&up3.bytes, dir3).unwrap();
        let restored = SharedStore::new(s);
        let count: ValueState<u64> = ValueState::register(&restored, "count", None).unwrap();
        let in_range = |name: &str| range.contains(sluice_checkpoint::key_group::assign_to_key_group(name, 128));
        let mut seen = 0;
        for k in 0..keys {
            for (name, want) in
                [(key(k), if k < 100 { None } else { Some(3) }), (format!("new-{k}"), (k < 100).then_some(30))]
            {
                if in_range(&name) {
                    restored.set_current_key(&name).unwrap();
                    assert_eq!(count.value().unwrap(), want, "{kind} {range:?}: {name}");
                    seen += usize::from(want.is_some());
                }
            }
        }
        assert!(seen > 1000, "{kind} {range:?}: {seen} keys checked");
    }
}

/// A tiny deterministic random number generator (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

type Model = std::collections::BTreeMap<u64, (String, u64)>;

/// Random changes to state `id` of `s`, mirrored in `model`: updates,
/// clears and new keys.
fn churn(s: &mut KeyedStateStore, id: sluice_checkpoint::state::StateId, model: &mut Model, rng: &mut Rng, ops: u32) {
    for _ in 0..ops {
        let k = rng.below(30_000);
        s.set_current_key(&k).unwrap();
        if rng.below(10) == 0 {
            s.clear::<(String, u64)>(id).unwrap();
            model.remove(&k);
        } else {
            let v = s
                .update::<(String, u64), _>(id, |v| {
                    let next = (format!("word-{k}"), v.as_ref().map_or(0, |(_, n)| n + 1));
                    *v = Some(next.clone());
                    next
                })
                .unwrap();
            model.insert(k, v);
        }
    }
}

/// Restores `up` into a fresh heap store and compares it with `model`.
fn check_restored(tmp: &Path, dir: &Path, up: &UploadedState, model: &Model, what: &str) {
    check_restored_into(StateBackendKind::HashMap, ALL, tmp, dir, up, model, what);
}

/// Restores key groups `range` of `up` into a fresh store of `kind` and
/// compares them with `model`.
fn check_restored_into(
    kind: StateBackendKind,
    range: KeyGroupRange,
    tmp: &Path,
    dir: &Path,
    up: &UploadedState,
    model: &Model,
    what: &str,
) {
    let mut r = store(kind, tmp, range);
    r.restore(&up.bytes, dir).unwrap();
    let id = r.register::<(String, u64)>("count", None).unwrap();
    for k in 0..30_000u64 {
        if !range.contains(sluice_checkpoint::key_group::assign_to_key_group(&k, 128)) {
            continue;
        }
        r.set_current_key(&k).unwrap();
        assert_eq!(r.get::<(String, u64)>(id).unwrap().as_ref(), model.get(&k), "{what}: key {k}");
    }
}

fn decode(up: &UploadedState) -> StateData {
    postcard::from_bytes::<KeyedStateSnapshot>(&up.bytes).unwrap().data
}

fn file_names(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn rocksdb_changelog_checkpoints_upload_the_log_and_restore_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("chk");
    let shared_dir = root.join("job").join(SHARED_DIR);
    let mut s = store(StateBackendKind::RocksDb, tmp.path(), ALL);
    let id = s.register::<(String, u64)>("count", None).unwrap();
    let (mut model, mut rng) = (Model::new(), Rng(0x2545_F491_4F6C_DD1D));
    churn(&mut s, id, &mut model, &mut rng, 20_000);
    let (dir1, up1) = take_snapshot(&mut s, &root, 1, CheckpointKind::Checkpoint);
    assert!(matches!(decode(&up1), StateData::RocksDb(_)), "the first checkpoint materializes");
    complete(&dir1, 1, &up1);
    s.notify_checkpoint_complete(1);
    let materialized = file_names(&shared_dir);

    // The next checkpoint is the materialization plus one log file.
    churn(&mut s, id, &mut model, &mut rng, 2_000);
    let at_2 = model.clone();
    let (dir2, up2) = take_snapshot(&mut s, &root, 2, CheckpointKind::Checkpoint);
    let StateData::RocksDbChangelog { logs, .. } = decode(&up2) else { panic!("checkpoint 2 is a log checkpoint") };
    assert_eq!(logs.len(), 1);
    let added: Vec<String> = file_names(&shared_dir).difference(&materialized).cloned().collect();
    assert!(added.len() == 1 && added[0].contains("-log2-"), "one log file and no SST file: {added:?}");
    complete(&dir2, 2, &up2);
    s.notify_checkpoint_complete(2);
    check_restored(tmp.path(), &dir2, &up2, &at_2, "log checkpoint 2");

    // Checkpoint 3 is never completed (aborted); checkpoint 4 uploads its
    // segment again.
    churn(&mut s, id, &mut model, &mut rng, 2_000);
    let _aborted = take_snapshot(&mut s, &root, 3, CheckpointKind::Checkpoint);
    churn(&mut s, id, &mut model, &mut rng, 2_000);
    let at_4 = model.clone();
    let (dir4, up4) = take_snapshot(&mut s, &root, 4, CheckpointKind::Checkpoint);
    let StateData::RocksDbChangelog { logs, .. } = decode(&up4) else { panic!("checkpoint 4 is a log checkpoint") };
    assert_eq!(logs.len(), 3, "segments 2 (stored), 3 and 4: {logs:?}");
    complete(&dir4, 4, &up4);
    s.notify_checkpoint_complete(4);

    // Retention drops chk-1 and chk-2 but keeps the files chk-4 references.
    storage::retain(&root, "job", 1, true).unwrap();
    assert!(!dir1.exists() && !dir2.exists());
    let (meta, d) = storage::read_metadata(&dir4).unwrap();
    storage::verify_files(&meta, &d).unwrap();
    check_restored(tmp.path(), &dir4, &up4, &at_4, "log checkpoint 4 after retention");
    for range in [KeyGroupRange { start: 0, end: 63 }, KeyGroupRange { start: 64, end: 127 }] {
        check_restored_into(StateBackendKind::RocksDb, range, tmp.path(), &dir4, &up4, &at_4, "checkpoint 4 by half");
    }

    // A savepoint taken from the log stands alone.
    churn(&mut s, id, &mut model, &mut rng, 1_000);
    let at_5 = model.clone();
    let (dir5, up5) = take_snapshot(&mut s, &root, 5, CheckpointKind::Savepoint);
    assert!(matches!(decode(&up5), StateData::RocksDbChangelog { .. }) && up5.shared.is_empty());
    // The savepoint does not count as confirmed: checkpoint 6 still holds
    // segment 5 (in a new log file).
    churn(&mut s, id, &mut model, &mut rng, 1_000);
    let at_6 = model.clone();
    let (dir6, up6) = take_snapshot(&mut s, &root, 6, CheckpointKind::Checkpoint);
    complete(&dir6, 6, &up6);
    s.notify_checkpoint_complete(6);
    check_restored(tmp.path(), &dir6, &up6, &at_6, "log checkpoint 6 after a savepoint");
    let saved = tmp.path().join("moved");
    std::fs::rename(&root, &saved).unwrap();
    let dir5 = saved.join("job").join(dir5.file_name().unwrap());
    check_restored(tmp.path(), &dir5, &up5, &at_5, "savepoint 5 without the shared files");

    // A missing log file is a clear error.
    let dir6 = saved.join("job").join(dir6.file_name().unwrap());
    let log = up6.shared.iter().find(|f| f.contains("-log6-")).unwrap();
    std::fs::remove_file(saved.join("job").join(SHARED_DIR).join(log)).unwrap();
    let mut r = store(StateBackendKind::HashMap, tmp.path(), ALL);
    let err = r.restore(&up6.bytes, &dir6).unwrap_err().to_string();
    assert!(err.contains(log.as_str()) && err.contains("cannot be read"), "{err}");
}

#[test]
fn snapshots_hold_the_state_at_their_barrier_while_the_task_goes_on() {
    // Heap: entries are encoded on the upload thread while the task changes
    // them. RocksDB (a 64-entry cache, so the task writes back all the
    // time): the native checkpoint is made after the barrier, by the upload
    // or before the task's next write.
    // RocksDB runs with the changelog off (every checkpoint materializes),
    // on, and on with a small size limit (materializations and log
    // checkpoints alternate, logs outgrow the limit).
    let tmp = tempfile::tempdir().unwrap();
    let heap = config(StateBackendKind::HashMap, tmp.path());
    let rocks = config(StateBackendKind::RocksDb, tmp.path());
    let mut off = rocks.clone();
    off.changelog.enabled = false;
    let mut small = rocks.clone();
    small.changelog.materialize_after_bytes = 300_000;
    for (what, config) in [("heap", heap), ("rocksdb", off), ("rocksdb changelog", rocks), ("rocksdb small log", small)]
    {
        snapshots_hold_the_state_at_their_barrier(what, &config);
    }
}

fn snapshots_hold_the_state_at_their_barrier(kind: &str, config: &StateBackendConfig) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("chk");
    let mut s = KeyedStateStore::new("op", config, 128, ALL).unwrap();
    let id = s.register::<(String, u64)>("count", None).unwrap();
    let mut model = Model::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let upload_of = |s: &mut KeyedStateStore, n: u64| {
        let dir = storage::checkpoint_dir(&root, "job", CheckpointId(n));
        std::fs::create_dir_all(&dir).unwrap();
        let StateSnapshot::Upload(upload) = s.snapshot(n, vec![]).unwrap() else { panic!("{kind} snapshots upload") };
        let target = UploadTarget {
            checkpoint_dir: dir.clone(),
            shared_dir: root.join("job").join(SHARED_DIR),
            file_prefix: "op-0".into(),
            kind: CheckpointKind::Checkpoint,
        };
        (dir, move || upload(&target).unwrap())
    };
    churn(&mut s, id, &mut model, &mut rng, 40_000);
    for n in 1..=6u64 {
        // The upload runs on its own thread while the task goes on changing
        // (and clearing, and adding) entries the snapshot holds.
        let at_barrier = model.clone();
        let (dir, upload) = upload_of(&mut s, n);
        let thread = std::thread::spawn(upload);
        churn(&mut s, id, &mut model, &mut rng, 20_000);
        let up = thread.join().unwrap();
        complete(&dir, n, &up);
        s.notify_checkpoint_complete(n);
        check_restored(tmp.path(), &dir, &up, &at_barrier, &format!("{kind} checkpoint {n}"));
    }
    // Overlapping snapshots: the next barrier comes before the upload of the
    // previous one ran; the task thread then encodes what that upload needs.
    let at_7 = model.clone();
    let (dir7, upload7) = upload_of(&mut s, 7);
    churn(&mut s, id, &mut model, &mut rng, 5_000);
    let at_8 = model.clone();
    let (dir8, upload8) = upload_of(&mut s, 8);
    let thread = std::thread::spawn(upload8);
    churn(&mut s, id, &mut model, &mut rng, 5_000);
    let up7 = upload7();
    let up8 = thread.join().unwrap();
    complete(&dir7, 7, &up7);
    complete(&dir8, 8, &up8);
    check_restored(tmp.path(), &dir7, &up7, &at_7, &format!("{kind} checkpoint 7"));
    check_restored(tmp.path(), &dir8, &up8, &at_8, &format!("{kind} checkpoint 8"));
    // Two barriers with nothing written between them, then more changes
    // before either upload runs: both hold the state at the first barrier.
    let at_9 = model.clone();
    let (dir9, upload9) = upload_of(&mut s, 9);
    let (dir10, upload10) = upload_of(&mut s, 10);
    churn(&mut s, id, &mut model, &mut rng, 5_000);
    let (up9, up10) = (upload9(), upload10());
    complete(&dir9, 9, &up9);
    complete(&dir10, 10, &up10);
    check_restored(tmp.path(), &dir9, &up9, &at_9, &format!("{kind} checkpoint 9"));
    check_restored(tmp.path(), &dir10, &up10, &at_9, &format!("{kind} checkpoint 10"));
}
