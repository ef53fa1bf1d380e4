//! Checkpoint storage in a directory (`state.checkpoints.dir`).
//!
//! Layout: `<dir>/<job-id>/chk-<n>/` holds one file per operator and subtask
//! with state, and `_metadata`, written last. Savepoints use the same layout
//! in a directory the user names, and are never deleted automatically.
//! Every file is written to a temporary name, synced and renamed, so a crash
//! leaves either the whole file or none. State files carry a small header
//! (length and XXH64 checksum) so that a damaged file is detected on restore.

use crate::barrier::CheckpointId;
use crate::error::{Error, Result};
use crate::metadata::{checksum, CheckpointMetadata, SubtaskStateHandle};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The directory next to the `chk-<n>` directories that holds files shared
/// by incremental checkpoints.
pub const SHARED_DIR: &str = "shared";

/// The name of the metadata file in a checkpoint directory.
pub const METADATA_FILE: &str = "_metadata";

pub(crate) fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Storage { action, path: path.to_path_buf(), source }
}

/// Writes `bytes` to `path` atomically and durably: a temporary file,
/// synced, renamed into place, then the directory synced so that the
/// rename itself survives a power loss.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_error("create", parent))?;
    }
    let tmp = path.with_extension("inprogress");
    let mut f = fs::File::create(&tmp).map_err(io_error("create", &tmp))?;
    f.write_all(bytes).map_err(io_error("write", &tmp))?;
    f.sync_all().map_err(io_error("sync", &tmp))?;
    fs::rename(&tmp, path).map_err(io_error("rename", path))?;
    match path.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Syncs a directory, so that the names created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = fs::File::open(dir).map_err(io_error("open", dir))?;
    d.sync_all().map_err(io_error("sync", dir))
}

/// Copies the files of a checkpoint directory into a new directory `to`,
/// durably (each file synced, then the directory). Subdirectories are not
/// copied: a checkpoint directory holds files only.
pub fn copy_checkpoint_files(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(io_error("create", to))?;
    for entry in fs::read_dir(from).map_err(io_error("list", from))? {
        let entry = entry.map_err(io_error("list", from))?;
        if !entry.file_type().map_err(io_error("inspect", &entry.path()))?.is_file() {
            continue;
        }
        let target = to.join(entry.file_name());
        fs::copy(entry.path(), &target).map_err(io_error("copy to", &target))?;
        fs::File::open(&target).and_then(|f| f.sync_all()).map_err(io_error("sync", &target))?;
    }
    sync_dir(to)?;
    match to.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// The directory of checkpoint `id` of job `job_id` under `root`.
pub fn checkpoint_dir(root: &Path, job_id: &str, id: CheckpointId) -> PathBuf {
    root.join(job_id).join(format!("chk-{}", id.0))
}

/// Writes one subtask's operator state into `dir` as `file`.
pub fn write_state(dir: &Path, file: &str, subtask: u32, bytes: &[u8]) -> Result<SubtaskStateHandle> {
    let mut out = Vec::with_capacity(bytes.len() + 16);
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(bytes).to_le_bytes());
    out.extend_from_slice(bytes);
    write_atomically(&dir.join(file), &out)?;
    Ok(SubtaskStateHandle { subtask, file: file.to_string(), size: out.len() as u64, shared: Vec::new() })
}

/// Reads and verifies a state file written by [`write_state`].
pub fn read_state(dir: &Path, handle: &SubtaskStateHandle, checkpoint: CheckpointId) -> Result<Vec<u8>> {
    let path = dir.join(&handle.file);
    let damaged = |reason: String| Error::MissingState { checkpoint: checkpoint.0, path: path.clone(), reason };
    let raw = fs::read(&path).map_err(|e| damaged(e.to_string()))?;
    if raw.len() as u64 != handle.size || raw.len() < 16 {
        return Err(damaged(format!("{} bytes, the metadata says {}", raw.len(), handle.size)));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&raw[..8]);
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&raw[8..16]);
    let body = &raw[16..];
    if body.len() as u64 != u64::from_le_bytes(n) || checksum(body) != u64::from_le_bytes(sum) {
        return Err(damaged("checksum mismatch".into()));
    }
    Ok(body.to_vec())
}

/// Writes `_metadata` into `dir`, which marks the checkpoint complete.
pub fn write_metadata(dir: &Path, metadata: &CheckpointMetadata) -> Result<PathBuf> {
    let path = dir.join(METADATA_FILE);
    write_atomically(&path, &metadata.encode()?)?;
    Ok(path)
}

/// Reads the metadata of the checkpoint or savepoint at `path` (its
/// directory or its `_metadata` file); returns it with its directory.
pub fn read_metadata(path: &Path) -> Result<(CheckpointMetadata, PathBuf)> {
    let (file, dir) = if path.is_dir() {
        (path.join(METADATA_FILE), path.to_path_buf())
    } else {
        (path.to_path_buf(), path.parent().map(Path::to_path_buf).unwrap_or_default())
    };
    if !file.exists() {
        return Err(Error::NothingToRestore(path.to_path_buf()));
    }
    let bytes = fs::read(&file).map_err(io_error("read", &file))?;
    Ok((CheckpointMetadata::decode(&bytes, &file)?, dir))
}

/// Checks that every state file of a checkpoint exists with its size.
pub fn verify_files(metadata: &CheckpointMetadata, dir: &Path) -> Result<()> {
    for op in &metadata.operators {
        for h in &op.subtasks {
            let path = dir.join(&h.file);
            let size = fs::metadata(&path).map(|m| m.len()).map_err(|e| Error::MissingState {
                checkpoint: metadata.checkpoint_id.0,
                path: path.clone(),
                reason: e.to_string(),
            })?;
            if size != h.size {
                return Err(Error::MissingState {
                    checkpoint: metadata.checkpoint_id.0,
                    path,
                    reason: format!("{size} bytes, the metadata says {}", h.size),
                });
            }
            for name in &h.shared {
                let path = dir.join("..").join(SHARED_DIR).join(name);
                if !path.is_file() {
                    return Err(Error::MissingState {
                        checkpoint: metadata.checkpoint_id.0,
                        path,
                        reason: "a shared file of an incremental checkpoint is missing".into(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The newest usable checkpoint under `root`, and the newer ones skipped.
#[derive(Debug)]
pub struct Latest {
    /// The checkpoint to restore.
    pub metadata: CheckpointMetadata,
    /// Its directory.
    pub dir: PathBuf,
    /// Newer checkpoints that could not be used, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Finds the newest complete, intact checkpoint of any job under `root`
/// (`root/<job>/chk-<n>/_metadata`). Damaged ones are skipped and listed,
/// so a caller can say that it fell back to an older one.
pub fn find_latest(root: &Path) -> Result<Option<Latest>> {
    let mut candidates = Vec::new();
    let jobs = match fs::read_dir(root) {
        Ok(j) => j,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Storage { action: "list", path: root.to_path_buf(), source: e }),
    };
    for job in jobs.flatten() {
        let Ok(chks) = fs::read_dir(job.path()) else {
            continue;
        };
        for chk in chks.flatten() {
            let name = chk.file_name().to_string_lossy().into_owned();
            if !name.starts_with("chk-") {
                continue;
            }
            let meta = chk.path().join(METADATA_FILE);
            if let Ok(m) = fs::metadata(&meta) {
                let modified = m.modified().ok();
                candidates.push((modified, chk.path()));
            }
        }
    }
    // Newest first: by write time of the metadata, then by path.
    candidates.sort_by(|a, b| b.cmp(a));
    let mut skipped = Vec::new();
    for (_, dir) in candidates {
        match read_metadata(&dir).and_then(|(m, d)| verify_files(&m, &d).map(|_| (m, d))) {
            Ok((metadata, dir)) => return Ok(Some(Latest { metadata, dir, skipped })),
            Err(e) => skipped.push((dir, e.to_string())),
        }
    }
    match skipped.first() {
        None => Ok(None),
        Some(_) => Err(Error::NothingToRestore(root.to_path_buf())),
    }
}

/// Deletes the oldest completed checkpoints of `job_id` beyond the newest
/// `keep`, and any incomplete checkpoint directory older than the newest
/// completed one. With `sweep_shared` (no other checkpoint in progress,
/// whose uploads nothing names yet), also deletes the files in `shared/`
/// that no remaining checkpoint references.
pub fn retain(root: &Path, job_id: &str, keep: usize, sweep_shared: bool) -> Result<()> {
    let job_dir = root.join(job_id);
    let mut chks: Vec<(u64, PathBuf, bool)> = Vec::new();
    let entries = fs::read_dir(&job_dir).map_err(io_error("list", &job_dir))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix("chk-").and_then(|n| n.parse::<u64>().ok()) {
            let complete = e.path().join(METADATA_FILE).exists();
            chks.push((n, e.path(), complete));
        }
    }
    chks.sort();
    let complete: Vec<u64> = chks.iter().filter(|c| c.2).map(|c| c.0).collect();
    let keep_from = complete.len().saturating_sub(keep.max(1));
    let oldest_kept = complete.get(keep_from).copied().unwrap_or(u64::MAX);
    for (n, path, _) in chks {
        if n < oldest_kept {
            fs::remove_dir_all(&path).map_err(io_error("remove", &path))?;
        }
    }
    let shared_dir = job_dir.join(SHARED_DIR);
    if !sweep_shared || !shared_dir.is_dir() {
        return Ok(());
    }
    let mut referenced = std::collections::HashSet::new();
    for n in complete.iter().filter(|n| **n >= oldest_kept) {
        let (meta, _) = read_metadata(&job_dir.join(format!("chk-{n}")))?;
        referenced.extend(meta.operators.into_iter().flat_map(|o| o.subtasks).flat_map(|h| h.shared));
    }
    let entries = fs::read_dir(&shared_dir).map_err(io_error("list", &shared_dir))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !referenced.contains(&name) {
            let path = e.path();
            fs::remove_file(&path).map_err(io_error("remove", &path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::barrier::CheckpointKind;
    use crate::metadata::OperatorStateMeta;

    fn meta(id: u64, handles: Vec<SubtaskStateHandle>) -> CheckpointMetadata {
        CheckpointMetadata {
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
                keyed: false,
                subtasks: handles,
            }],
        }
    }

    fn complete(root: &Path, id: u64, payload: &[u8]) -> PathBuf {
        let dir = checkpoint_dir(root, "job", CheckpointId(id));
        let h = write_state(&dir, "op-0", 0, payload).unwrap();
        write_metadata(&dir, &meta(id, vec![h])).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        dir
    }

    #[test]
    fn latest_falls_back_past_damage_and_retain_keeps_newest() {
        let root = tempfile::tempdir().unwrap();
        complete(root.path(), 1, b"one");
        let d2 = complete(root.path(), 2, b"two");
        let d3 = complete(root.path(), 3, b"three");
        let latest = find_latest(root.path()).unwrap().unwrap();
        assert_eq!(latest.metadata.checkpoint_id, CheckpointId(3));
        let h = &latest.metadata.operators[0].subtasks[0];
        assert_eq!(read_state(&latest.dir, h, CheckpointId(3)).unwrap(), b"three");

        // A missing state file in chk-3: fall back to chk-2 and say why.
        fs::remove_file(d3.join("op-0")).unwrap();
        let latest = find_latest(root.path()).unwrap().unwrap();
        assert_eq!(latest.metadata.checkpoint_id, CheckpointId(2));
        assert!(latest.skipped[0].1.contains("op-0"), "{:?}", latest.skipped);

        // Truncated metadata in chk-2: fall back to chk-1.
        let m = d2.join(METADATA_FILE);
        let bytes = fs::read(&m).unwrap();
        fs::write(&m, &bytes[..bytes.len() / 2]).unwrap();
        let latest = find_latest(root.path()).unwrap().unwrap();
        assert_eq!(latest.metadata.checkpoint_id, CheckpointId(1));
        assert!(latest.skipped.iter().any(|s| s.1.contains("truncated")), "{:?}", latest.skipped);

        retain(root.path(), "job", 1, true).unwrap();
        assert!(!d2.exists() && !root.path().join("job/chk-1").exists() && d3.exists());
    }

    #[test]
    fn damaged_state_is_named() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("chk");
        let h = write_state(&dir, "f", 0, b"payload").unwrap();
        let mut raw = fs::read(dir.join("f")).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        fs::write(dir.join("f"), raw).unwrap();
        let e = read_state(&dir, &h, CheckpointId(9)).unwrap_err().to_string();
        assert!(e.contains("checksum") && e.contains("checkpoint 9"), "{e}");
    }
}
