//! Checkpoint storage in a directory (`state.checkpoints.dir`).
//!
//! Layout: `<dir>/<job-id>/chk-<n>/` holds one file per operator and subtask
//! with state, and `_metadata`, written last. Savepoints use the same layout
//! in a directory the user names, and are never deleted automatically.
//! Every file is written to a temporary name (created new, never through a
//! link), synced and renamed, and the directory is synced after every rename
//! and every directory made, so a crash or a power loss leaves either the
//! whole file or none. State files carry a small header (length and XXH64
//! checksum) so that a damaged file is detected on restore, and every name
//! read from `_metadata` must be a plain file name
//! ([`check_file_name`]).

use crate::barrier::CheckpointId;
use crate::error::{Error, Result};
use crate::metadata::{checksum, CheckpointMetadata, JobIdentity, SubtaskStateHandle, MAX_METADATA_BYTES};
use crate::names::{check_file_name, create_new, create_temporary, join_checked};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The directory next to the `chk-<n>` directories that holds files shared
/// by incremental checkpoints.
pub const SHARED_DIR: &str = "shared";

/// The name of the metadata file in a checkpoint directory.
pub const METADATA_FILE: &str = "_metadata";

pub(crate) fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Storage { action, path: path.to_path_buf(), source }
}

/// Writes `bytes` to `path` atomically and durably: a temporary file
/// (created new, never through a link), synced, renamed into place, then
/// the directory synced so that the rename itself survives a power loss.
/// Missing directories are created durably ([`create_dir_durable`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durable(parent)?;
    }
    let (mut f, tmp) = create_temporary(path)?;
    f.write_all(bytes).map_err(io_error("write", &tmp))?;
    f.sync_all().map_err(io_error("sync", &tmp))?;
    rename_durable(&tmp, path)
}

/// Renames `from` to `to` and syncs the directory of `to`, so that the new
/// name survives a power loss.
pub fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(io_error("rename", to))?;
    match to.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => sync_dir(Path::new(".")),
    }
}

/// Syncs a directory, so that the names created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = fs::File::open(dir).map_err(io_error("open", dir))?;
    d.sync_all().map_err(io_error("sync", dir))
}

/// Creates `dir` and its missing parents, syncing the parent of each
/// directory created (also of one another thread created at the same
/// time), so that the new directories survive a power loss.
pub fn create_dir_durable(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty()) {
        if fs::symlink_metadata(d).is_ok() {
            break;
        }
        missing.push(d);
        at = d.parent();
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(io_error("create", d)(e)),
        }
        match d.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => sync_dir(parent)?,
            None => sync_dir(Path::new("."))?,
        }
    }
    if !dir.is_dir() {
        return Err(Error::Storage {
            action: "create",
            path: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists and is not a directory"),
        });
    }
    Ok(())
}

/// Copies the files of a checkpoint directory into a new directory `to`,
/// durably (each file created new, synced, then the directory and its
/// parent). Subdirectories are not copied: a checkpoint directory holds
/// files only.
pub fn copy_checkpoint_files(from: &Path, to: &Path) -> Result<()> {
    create_dir_durable(to)?;
    for entry in fs::read_dir(from).map_err(io_error("list", from))? {
        let entry = entry.map_err(io_error("list", from))?;
        if !entry.file_type().map_err(io_error("inspect", &entry.path()))?.is_file() {
            continue;
        }
        let target = to.join(entry.file_name());
        let mut source = fs::File::open(entry.path()).map_err(io_error("open", &entry.path()))?;
        let mut out = create_new(&target)?;
        std::io::copy(&mut source, &mut out).map_err(io_error("copy to", &target))?;
        out.sync_all().map_err(io_error("sync", &target))?;
    }
    sync_dir(to)?;
    match to.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// The `shared/` directory next to the checkpoint directory `checkpoint_dir`.
pub fn shared_dir_of(checkpoint_dir: &Path) -> PathBuf {
    match checkpoint_dir.parent().filter(|p| !p.as_os_str().is_empty() && checkpoint_dir.file_name().is_some()) {
        Some(job_dir) => job_dir.join(SHARED_DIR),
        None => checkpoint_dir.join("..").join(SHARED_DIR),
    }
}

/// The directory of checkpoint `id` of job `job_id` under `root`.
pub fn checkpoint_dir(root: &Path, job_id: &str, id: CheckpointId) -> PathBuf {
    root.join(job_id).join(format!("chk-{}", id.0))
}

/// Writes one subtask's operator state into `dir` as `file`.
pub fn write_state(dir: &Path, file: &str, subtask: u32, bytes: &[u8]) -> Result<SubtaskStateHandle> {
    check_file_name(file, dir)?;
    let mut out = Vec::with_capacity(bytes.len() + 16);
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(bytes).to_le_bytes());
    out.extend_from_slice(bytes);
    write_atomically(&dir.join(file), &out)?;
    Ok(SubtaskStateHandle { subtask, file: file.to_string(), size: out.len() as u64, shared: Vec::new() })
}

/// Reads and verifies a state file written by [`write_state`].
pub fn read_state(dir: &Path, handle: &SubtaskStateHandle, checkpoint: CheckpointId) -> Result<Vec<u8>> {
    let path = join_checked(dir, &handle.file, &dir.join(METADATA_FILE))?;
    let damaged = |reason: String| Error::MissingState { checkpoint: checkpoint.0, path: path.clone(), reason };
    let size = fs::metadata(&path).map_err(|e| damaged(e.to_string()))?;
    if !size.is_file() || size.len() != handle.size {
        return Err(damaged(format!("{} bytes, the metadata says {}", size.len(), handle.size)));
    }
    let mut raw = Vec::with_capacity(usize::try_from(handle.size).unwrap_or(0));
    fs::File::open(&path)
        .and_then(|f| f.take(handle.size).read_to_end(&mut raw))
        .map_err(|e| damaged(e.to_string()))?;
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

/// Writes `_metadata` into `dir`, which marks the checkpoint complete:
/// durably, with the directory's own entry in its parent synced too, so
/// that once this returns the checkpoint survives a power loss.
pub fn write_metadata(dir: &Path, metadata: &CheckpointMetadata) -> Result<PathBuf> {
    let path = dir.join(METADATA_FILE);
    write_atomically(&path, &metadata.encode()?)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
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
    let size = fs::metadata(&file).map_err(io_error("inspect", &file))?;
    if !size.is_file() || size.len() > MAX_METADATA_BYTES {
        return Err(Error::CorruptMetadata {
            path: file,
            reason: format!("not a regular file of at most {MAX_METADATA_BYTES} bytes"),
        });
    }
    let mut bytes = Vec::new();
    fs::File::open(&file)
        .and_then(|f| f.take(MAX_METADATA_BYTES).read_to_end(&mut bytes))
        .map_err(io_error("read", &file))?;
    Ok((CheckpointMetadata::decode(&bytes, &file)?, dir))
}

/// Checks that every state file of a checkpoint exists with its size.
pub fn verify_files(metadata: &CheckpointMetadata, dir: &Path) -> Result<()> {
    let source = dir.join(METADATA_FILE);
    metadata.check_names(&source)?;
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
                let path = shared_dir_of(dir).join(name);
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

/// What a job finds to resume from under a checkpoint directory.
#[derive(Debug, Default)]
pub struct Latest {
    /// The checkpoint to restore, with its directory: the job's intact
    /// checkpoint with the highest id.
    pub restore: Option<(CheckpointMetadata, PathBuf)>,
    /// The job's checkpoints with higher ids that could not be used, and
    /// damaged ones whose job is unknown, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Completed checkpoints of other jobs, never restored, with whose
    /// they are.
    pub foreign: Vec<(PathBuf, String)>,
}

/// Finds the checkpoint job `job` resumes from under `root`
/// (`root/<job id>/chk-<n>/_metadata`): of the complete checkpoints whose
/// metadata says they belong to `job` ([`CheckpointMetadata::belongs_to`]:
/// the same job name and operators), the intact one with the highest
/// checkpoint id (ids go on across restores; of equal ids, the newer
/// metadata file). Checkpoints of other jobs are listed in
/// [`Latest::foreign`] and never restored; damaged ones are listed in
/// [`Latest::skipped`], so a caller can say that it fell back to an older
/// one. Fails with [`Error::NothingToRestore`] when checkpoints of `job`
/// (or of no known job) exist and every one is damaged.
pub fn find_latest(root: &Path, job: &JobIdentity) -> Result<Latest> {
    let mut latest = Latest::default();
    let jobs = match fs::read_dir(root) {
        Ok(j) => j,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(latest),
        Err(e) => return Err(Error::Storage { action: "list", path: root.to_path_buf(), source: e }),
    };
    // (checkpoint id, metadata write time, metadata, directory) of `job`'s.
    let mut own = Vec::new();
    for job_dir in jobs.flatten() {
        let Ok(chks) = fs::read_dir(job_dir.path()) else {
            continue;
        };
        for chk in chks.flatten() {
            let name = chk.file_name().to_string_lossy().into_owned();
            if !name.starts_with("chk-") {
                continue;
            }
            let dir = chk.path();
            let Ok(modified) = fs::metadata(dir.join(METADATA_FILE)).map(|m| m.modified().ok()) else {
                continue;
            };
            match read_metadata(&dir) {
                Ok((m, _)) => match m.belongs_to(job) {
                    Ok(()) => own.push((m.checkpoint_id, modified, m, dir)),
                    Err(whose) => latest.foreign.push((dir, whose)),
                },
                Err(e) => latest.skipped.push((dir, e.to_string())),
            }
        }
    }
    own.sort_by(|a, b| (b.0, b.1, &b.3).cmp(&(a.0, a.1, &a.3)));
    for (_, _, metadata, dir) in own {
        match verify_files(&metadata, &dir) {
            Ok(()) => {
                latest.restore = Some((metadata, dir));
                break;
            }
            Err(e) => latest.skipped.push((dir, e.to_string())),
        }
    }
    latest.foreign.sort();
    if latest.restore.is_none() && !latest.skipped.is_empty() {
        return Err(Error::NothingToRestore(root.to_path_buf()));
    }
    Ok(latest)
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
            job_operators: vec!["op".into()],
        }
    }

    fn job() -> JobIdentity {
        JobIdentity::new("job", ["op".to_string()])
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
        let latest = find_latest(root.path(), &job()).unwrap();
        let (m, dir) = latest.restore.unwrap();
        assert_eq!(m.checkpoint_id, CheckpointId(3));
        let h = &m.operators[0].subtasks[0];
        assert_eq!(read_state(&dir, h, CheckpointId(3)).unwrap(), b"three");

        // A missing state file in chk-3: fall back to chk-2 and say why.
        fs::remove_file(d3.join("op-0")).unwrap();
        let latest = find_latest(root.path(), &job()).unwrap();
        assert_eq!(latest.restore.unwrap().0.checkpoint_id, CheckpointId(2));
        assert!(latest.skipped[0].1.contains("op-0"), "{:?}", latest.skipped);

        // Truncated metadata in chk-2: fall back to chk-1.
        let m = d2.join(METADATA_FILE);
        let bytes = fs::read(&m).unwrap();
        fs::write(&m, &bytes[..bytes.len() / 2]).unwrap();
        let latest = find_latest(root.path(), &job()).unwrap();
        assert_eq!(latest.restore.unwrap().0.checkpoint_id, CheckpointId(1));
        assert!(latest.skipped.iter().any(|s| s.1.contains("truncated")), "{:?}", latest.skipped);

        retain(root.path(), "job", 1, true).unwrap();
        assert!(!d2.exists() && !root.path().join("job/chk-1").exists() && d3.exists());
    }

    fn complete_as(root: &Path, job_dir: &str, name: &str, id: u64) -> PathBuf {
        let dir = checkpoint_dir(root, job_dir, CheckpointId(id));
        let h = write_state(&dir, "op-0", 0, name.as_bytes()).unwrap();
        let mut m = meta(id, vec![h]);
        m.job_name = name.into();
        m.job_id = job_dir.into();
        write_metadata(&dir, &m).unwrap();
        dir
    }

    #[test]
    fn a_job_resumes_only_its_own_checkpoints_by_highest_id() {
        let root = tempfile::tempdir().unwrap();
        complete_as(root.path(), "run-1", "job", 5);
        // Written later, by another run of the same job that started from scratch.
        complete_as(root.path(), "run-2", "job", 2);
        // Another job, with a higher id and the same operators, written last.
        let other = complete_as(root.path(), "other-run", "other", 9);
        let latest = find_latest(root.path(), &job()).unwrap();
        let (m, dir) = latest.restore.unwrap();
        assert_eq!((m.checkpoint_id, m.job_id.as_str()), (CheckpointId(5), "run-1"), "the highest id, not the newest");
        assert!(dir.ends_with("run-1/chk-5"));
        assert_eq!(latest.foreign.len(), 1);
        assert_eq!(latest.foreign[0].0, other);
        assert!(latest.foreign[0].1.contains("'other'"), "{:?}", latest.foreign);
        // The other job alone: it never restores the first job's state.
        let alone = find_latest(root.path(), &JobIdentity::new("other", ["op".to_string()])).unwrap();
        assert_eq!(alone.restore.unwrap().0.checkpoint_id, CheckpointId(9));
        let stranger = find_latest(root.path(), &JobIdentity::new("stranger", ["op".to_string()])).unwrap();
        assert!(stranger.restore.is_none());
        assert_eq!(stranger.foreign.len(), 3);
        // Same name, other operators: not the same job either.
        let changed = find_latest(root.path(), &JobIdentity::new("job", ["op".to_string(), "x".to_string()])).unwrap();
        assert!(changed.restore.is_none() && changed.foreign.len() == 3);
    }

    #[test]
    fn names_in_metadata_never_reach_outside_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("chk");
        let mut h = write_state(&dir, "op-0", 0, b"x").unwrap();
        for bad in ["/etc/hostname", "../op-0"] {
            h.file = bad.into();
            let e = read_state(&dir, &h, CheckpointId(1)).unwrap_err();
            assert!(matches!(e, Error::UnsafeName { .. }), "{e}");
            let e = verify_files(&meta(1, vec![h.clone()]), &dir).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("_metadata"), "{e}");
        }
        assert!(write_state(&dir, "../escape", 0, b"x").is_err());
        assert!(!root.path().join("escape").exists());
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
