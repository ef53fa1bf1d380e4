//! What a highly available JobManager keeps in its storage directory
//! (`<high-availability.storageDir>/<cluster-id>/`):
//!
//! - `artifacts/<sha256>`: each submitted job binary, once per content;
//! - `jobs/<job id>-<n>.json`: a [`JobRecord`] per change of a job's
//!   state, written to a fresh file (never overwritten), made durable, and
//!   only then pointed at from etcd by the leader's conditioned write. A
//!   deposed leader's late write thus leaves an orphaned file, never a
//!   changed record.
//!
//! Records are read as untrusted input: bounded in size, parsed strictly.

use super::HaError;
use serde::{Deserialize, Serialize};
use sluice::cluster::protocol::JobStatus;
use sluice::ids::JobId;
use sluice_checkpoint::storage::sync_dir;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Largest record file read back.
const MAX_RECORD_BYTES: u64 = 4 << 20;

/// A job as the JobManager needs it to restart it or to show it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRecord {
    /// The job's id (kept across leaders: its checkpoints are stored under it).
    pub id: JobId,
    /// The job's name (the binary's until its driver announces the graph's).
    pub name: String,
    /// The binary's file name as uploaded.
    pub artifact_name: String,
    /// SHA-256 of the binary (hex).
    pub artifact_sha256: String,
    /// The binary's size in bytes.
    pub artifact_size: u64,
    /// The job's program arguments.
    pub args: Vec<String>,
    /// The `key=value` lines the job's driver is started with.
    pub conf_lines: String,
    /// The state when the record was written (terminal ones are final).
    pub status: JobStatus,
    /// Submission time, ms since the epoch.
    pub start_time: i64,
    /// End time, ms since the epoch.
    pub end_time: Option<i64>,
    /// Why it failed.
    pub failure: Option<String>,
}

impl JobRecord {
    /// Where the binary is stored under `storage`.
    pub fn artifact_path(&self, storage: &Path) -> PathBuf {
        storage.join("artifacts").join(&self.artifact_sha256)
    }
}

/// Copies the binary at `from` (of hash `sha256`) into `storage` unless it
/// is there already; returns its stored path.
pub fn store_artifact(storage: &Path, from: &Path, sha256: &str) -> Result<PathBuf, HaError> {
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(HaError::Storage(format!("'{sha256}' is not a SHA-256")));
    }
    let to = storage.join("artifacts").join(sha256);
    if to.exists() {
        return Ok(to);
    }
    let tmp = storage.join("artifacts").join(format!(".{sha256}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let copy = || -> std::io::Result<()> {
        let mut src = std::fs::File::open(from)?;
        // Executable by its owner only: the driver is started from it.
        let mut dst = crate::create_owner_only(&tmp, 0o700)?;
        std::io::copy(&mut src, &mut dst)?;
        dst.sync_all()?;
        std::fs::rename(&tmp, &to)?;
        sync_dir(&storage.join("artifacts")).map_err(std::io::Error::other)
    };
    copy().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        HaError::Storage(format!("cannot store the job binary '{}' in '{}': {e}", from.display(), to.display()))
    })?;
    Ok(to)
}

/// Writes `record` to a fresh, durable file under `storage`; returns its path.
pub fn write_record(storage: &Path, record: &JobRecord) -> Result<String, HaError> {
    let dir = storage.join("jobs");
    let json = serde_json::to_vec_pretty(record).map_err(|e| HaError::Storage(e.to_string()))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let path = dir.join(format!("{}-{nanos}-{}.json", record.id, std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = crate::create_owner_only(&path, 0o600)?;
        f.write_all(&json)?;
        f.sync_all()?;
        sync_dir(&dir).map_err(std::io::Error::other)
    };
    write().map_err(|e| HaError::Storage(format!("cannot write the job record '{}': {e}", path.display())))?;
    Ok(path.display().to_string())
}

/// Reads the record at `path`, which must lie under `storage`.
pub fn read_record(storage: &Path, path: &str) -> Result<JobRecord, HaError> {
    let corrupt = |detail: String| HaError::Corrupt { at: path.to_string(), detail };
    let p = Path::new(path);
    if !p.starts_with(storage.join("jobs")) || p.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(corrupt(format!("not a record under '{}'", storage.display())));
    }
    let mut text = Vec::new();
    std::fs::File::open(p)
        .and_then(|f| f.take(MAX_RECORD_BYTES + 1).read_to_end(&mut text))
        .map_err(|e| HaError::Storage(format!("cannot read the job record '{path}': {e}")))?;
    if text.len() as u64 > MAX_RECORD_BYTES {
        return Err(corrupt(format!("larger than {MAX_RECORD_BYTES} bytes")));
    }
    serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))
}

/// Deletes a superseded record file (best effort).
pub fn remove_record(storage: &Path, path: &str) {
    if Path::new(path).starts_with(storage.join("jobs")) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record() -> JobRecord {
        JobRecord {
            id: JobId::generate(),
            name: "wc".into(),
            artifact_name: "wc".into(),
            artifact_sha256: "ab".repeat(32),
            artifact_size: 3,
            args: vec!["--password".into(), "x".into()],
            conf_lines: "parallelism.client=2\n".into(),
            status: JobStatus::Running,
            start_time: 1,
            end_time: None,
            failure: None,
        }
    }

    #[test]
    fn records_round_trip_and_hostile_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
        let r = record();
        let path = write_record(dir.path(), &r).unwrap();
        assert_eq!(read_record(dir.path(), &path).unwrap(), r);
        let second = write_record(dir.path(), &r).unwrap();
        assert_ne!(path, second, "each write goes to a fresh file");
        // Outside the storage directory, or not a record.
        assert!(matches!(read_record(dir.path(), "/etc/passwd"), Err(HaError::Corrupt { .. })));
        let traversal = format!("{}/jobs/../../x", dir.path().display());
        assert!(matches!(read_record(dir.path(), &traversal), Err(HaError::Corrupt { .. })));
        let junk = dir.path().join("jobs").join("junk.json");
        std::fs::write(&junk, b"{\"id\": 5}").unwrap();
        assert!(matches!(read_record(dir.path(), &junk.display().to_string()), Err(HaError::Corrupt { .. })));
    }

    #[test]
    fn artifacts_are_stored_once_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("artifacts")).unwrap();
        let src = dir.path().join("bin");
        std::fs::write(&src, b"abc").unwrap();
        let sha = "ab".repeat(32);
        let a = store_artifact(dir.path(), &src, &sha).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"abc");
        std::fs::write(&src, b"changed").unwrap();
        assert_eq!(store_artifact(dir.path(), &src, &sha).unwrap(), a);
        assert_eq!(std::fs::read(&a).unwrap(), b"abc");
        assert!(store_artifact(dir.path(), &src, "../x").is_err());
    }
}
