//! Checkpoints that were damaged or crafted: a state handle naming a file
//! outside its directory is refused before anything is read or written
//! (heap and RocksDB), and a truncated or bit-flipped change file or RocksDB
//! file fails the restore, naming the file, before any of it is applied.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sluice_checkpoint::state::format::{KeyedStateSnapshot, StateData, StateSnapshot, StoredFile, UploadTarget};
use sluice_checkpoint::state::{KeyedStateStore, SharedStore, StateBackendConfig, StateBackendKind, ValueState};
use sluice_checkpoint::storage::{self, SHARED_DIR};
use sluice_checkpoint::{CheckpointId, CheckpointKind, Error, KeyGroupRange};
use std::path::{Path, PathBuf};

const ALL: KeyGroupRange = KeyGroupRange { start: 0, end: 127 };

fn store(kind: StateBackendKind, local: &Path) -> KeyedStateStore {
    let config = StateBackendConfig { kind, local_dir: Some(local.to_path_buf()), ..StateBackendConfig::default() };
    KeyedStateStore::new("op", &config, 128, ALL).unwrap()
}

/// A store with two states of `keys` keys each, snapshotted as `kind`:
/// the checkpoint's directory and the snapshot.
fn snapshot(backend: StateBackendKind, root: &Path, kind: CheckpointKind, keys: u32) -> (PathBuf, KeyedStateSnapshot) {
    let shared = SharedStore::new(store(backend, &root.join("local")));
    let a: ValueState<u64> = ValueState::register(&shared, "a", None).unwrap();
    let b: ValueState<String> = ValueState::register(&shared, "b", None).unwrap();
    for k in 0..keys {
        shared.set_current_key(&k).unwrap();
        a.update(u64::from(k)).unwrap();
        b.update(format!("value of {k}")).unwrap();
    }
    let dir = storage::checkpoint_dir(root, "job", CheckpointId(1));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = match shared.lock().unwrap().snapshot(1, Vec::new()).unwrap() {
        StateSnapshot::Ready(bytes) => bytes,
        StateSnapshot::Upload(f) => {
            let target = UploadTarget {
                checkpoint_dir: dir.clone(),
                shared_dir: root.join("job").join(SHARED_DIR),
                file_prefix: "op-0".into(),
                kind,
            };
            f(&target).unwrap().bytes
        }
    };
    (dir, postcard::from_bytes(&bytes).unwrap())
}

fn restore(backend: StateBackendKind, local: &Path, snap: &KeyedStateSnapshot, dir: &Path) -> Result<(), Error> {
    store(backend, local).restore(&postcard::to_stdvec(snap).unwrap(), dir).map(|_| ())
}

/// Every file below `dir`.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(files_below(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_heap_checkpoint_naming_files_outside_its_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, snap) = snapshot(StateBackendKind::HashMap, tmp.path(), CheckpointKind::Checkpoint, 20);
    let secret = tmp.path().join("outside").join("secret");
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    std::fs::write(&secret, b"not state").unwrap();
    for bad in [secret.to_str().unwrap(), "../x", "../../outside/secret", ""] {
        let mut crafted = snap.clone();
        let StateData::HeapChainV2(chain) = &mut crafted.data else { panic!("{:?}", crafted.data) };
        chain.files[0].name = bad.to_string();
        for backend in [StateBackendKind::HashMap, StateBackendKind::RocksDb] {
            let e = restore(backend, &tmp.path().join("restore"), &crafted, &dir).unwrap_err();
            assert!(matches!(e, Error::UnsafeName { .. }), "{backend}: {e}");
            let e = e.to_string();
            assert!(e.contains(&format!("'{bad}'")) && e.contains(dir.to_str().unwrap()), "{e}");
        }
    }
}

#[test]
fn a_rocksdb_savepoint_naming_files_outside_its_directory_writes_nothing_there() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, snap) = snapshot(StateBackendKind::RocksDb, tmp.path(), CheckpointKind::Savepoint, 20);
    let StateData::RocksDb(handle) = &snap.data else { panic!("{:?}", snap.data) };
    assert!(handle.files.iter().all(|(_, f)| matches!(f, StoredFile::Private(_))), "a savepoint stands alone");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let target = outside.join("x");
    let local = tmp.path().join("restore");
    let before = files_below(tmp.path());
    // A local name is where the restore writes; a stored name is what it reads.
    let crafted_local = [target.to_str().unwrap(), "../x", "../../outside/x", "."];
    let crafted_stored = ["/etc/hostname", "../chk-1/op-0", ".."];
    let mut cases = Vec::new();
    for bad in crafted_local {
        let mut c = snap.clone();
        let StateData::RocksDb(h) = &mut c.data else { unreachable!() };
        h.files[0].0 = bad.to_string();
        cases.push((bad, c));
    }
    for bad in crafted_stored {
        let mut c = snap.clone();
        let StateData::RocksDb(h) = &mut c.data else { unreachable!() };
        h.files[0].1 = StoredFile::Private(bad.to_string());
        cases.push((bad, c));
    }
    for (bad, crafted) in cases {
        for backend in [StateBackendKind::RocksDb, StateBackendKind::HashMap] {
            let e = restore(backend, &local, &crafted, &dir).unwrap_err();
            assert!(matches!(e, Error::UnsafeName { .. }), "{backend}, {bad}: {e}");
            assert!(e.to_string().contains(&format!("'{bad}'")), "{e}");
        }
        assert!(!target.exists(), "{bad}: a file was written outside the restore directory");
        assert!(!local.join("x").exists() && !tmp.path().join("x").exists(), "{bad}");
    }
    // Nothing was added anywhere but the RocksDB working directories.
    let after: Vec<PathBuf> = files_below(tmp.path()).into_iter().filter(|p| !p.starts_with(&local)).collect();
    assert_eq!(after, before);
    // The snapshot itself restores.
    restore(StateBackendKind::RocksDb, &local, &snap, &dir).unwrap();
}

/// The heap checkpoint's change files in `shared/`.
fn change_files(root: &Path) -> Vec<PathBuf> {
    files_below(&root.join("job").join(SHARED_DIR))
}

#[test]
fn a_truncated_or_bit_flipped_change_file_fails_the_restore_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, snap) = snapshot(StateBackendKind::HashMap, tmp.path(), CheckpointKind::Checkpoint, 12);
    let files = change_files(tmp.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    let good = std::fs::read(file).unwrap();
    restore(StateBackendKind::HashMap, &tmp.path().join("l"), &snap, &dir).unwrap();
    // (Every case on the heap backend; every 32nd on RocksDB too, whose
    // instances are slower to open.)
    let check = |bytes: &[u8], what: &str, n: usize| {
        std::fs::write(file, bytes).unwrap();
        let backends: &[StateBackendKind] = if n % 32 == 0 {
            &[StateBackendKind::HashMap, StateBackendKind::RocksDb]
        } else {
            &[StateBackendKind::HashMap]
        };
        for &backend in backends {
            let e = restore(backend, &tmp.path().join("l"), &snap, &dir).expect_err(what).to_string();
            assert!(e.contains(file.to_str().unwrap()) && e.contains("damaged or truncated"), "{what}: {e}");
        }
    };
    // Cut anywhere, at section and entry boundaries too.
    for cut in (0..good.len()).rev() {
        check(&good[..cut], &format!("cut at {cut} of {}", good.len()), cut);
    }
    // One bit flipped anywhere.
    for at in 0..good.len() {
        let mut flipped = good.clone();
        flipped[at] ^= 0x10;
        check(&flipped, &format!("bit flipped at {at}"), at);
    }
    std::fs::write(file, &good).unwrap();
    restore(StateBackendKind::HashMap, &tmp.path().join("l"), &snap, &dir).unwrap();
}

#[test]
fn a_truncated_or_bit_flipped_rocksdb_file_fails_the_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, snap) = snapshot(StateBackendKind::RocksDb, tmp.path(), CheckpointKind::Savepoint, 2_000);
    let StateData::RocksDb(handle) = &snap.data else { panic!("{:?}", snap.data) };
    let sst = handle.files.iter().find(|(local, _)| local.ends_with(".sst")).expect("an SST file");
    let StoredFile::Private(name) = &sst.1 else { panic!("{sst:?}") };
    let file = dir.join(name);
    let good = std::fs::read(&file).unwrap();
    let local = tmp.path().join("restore");
    let damaged: Vec<(String, Vec<u8>)> = vec![
        ("cut in half".into(), good[..good.len() / 2].to_vec()),
        ("cut by one byte".into(), good[..good.len() - 1].to_vec()),
        ("a bit flipped in a data block".into(), {
            let mut b = good.clone();
            b[good.len() / 3] ^= 0x04;
            b
        }),
    ];
    for (what, bytes) in damaged {
        // A savepoint's files may be hard links of each other's: write a new file.
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, &bytes).unwrap();
        for backend in [StateBackendKind::RocksDb, StateBackendKind::HashMap] {
            let e = restore(backend, &local, &snap, &dir).expect_err(&what).to_string();
            assert!(e.contains(name) && e.contains("damaged"), "{what}: {e}");
        }
    }
    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, &good).unwrap();
    restore(StateBackendKind::RocksDb, &local, &snap, &dir).unwrap();
    // Every file of the instance (MANIFEST and OPTIONS too, which RocksDB
    // itself reads up to a cut without complaint), cut by a byte or in half.
    for (_, stored) in &handle.files {
        let StoredFile::Private(name) = stored else { panic!("{stored:?}") };
        let file = dir.join(name);
        let good = std::fs::read(&file).unwrap();
        if good.is_empty() {
            continue;
        }
        for cut in [good.len() - 1, good.len() / 2] {
            std::fs::remove_file(&file).unwrap();
            std::fs::write(&file, &good[..cut]).unwrap();
            let e = restore(StateBackendKind::RocksDb, &local, &snap, &dir).expect_err(name).to_string();
            assert!(e.contains(name) && e.contains("truncated"), "{name} cut at {cut}: {e}");
        }
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, &good).unwrap();
    }
    restore(StateBackendKind::HashMap, &local, &snap, &dir).unwrap();
}
