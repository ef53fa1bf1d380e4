//! Checkpoint metadata: what a completed checkpoint or savepoint consists of.
//!
//! The job master writes `_metadata` into the checkpoint's directory when a
//! checkpoint is complete (every expected subtask has acknowledged and its
//! state is stored), so its presence marks a checkpoint as complete. On disk it is a small envelope — magic bytes, a format
//! version, the body's length and an XXH64 checksum — around a `postcard`
//! encoding of [`CheckpointMetadata`]; a truncated or damaged file is
//! detected and named, never half-read, and every file name it holds is
//! checked to be one plain name ([`check_file_name`]).
//!
//! Version 3 records the job's identity (its name and the ids of all its
//! operators, [`JobIdentity`]), so that a job resumes only its own
//! checkpoints. Version 2 files (without it) are still read; their identity
//! is the job name and the operators that have state.

use crate::barrier::{CheckpointId, CheckpointKind};
use crate::error::{Error, Result};
use crate::names::check_file_name;
use serde::{Deserialize, Serialize};
use std::hash::Hasher;
use std::path::Path;
use twox_hash::XxHash64;

const MAGIC: &[u8; 8] = b"SLUICEMD";
/// The metadata format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 3;

/// The older version this build still reads.
const FORMAT_VERSION_2: u16 = 2;

/// The largest `_metadata` file read (the metadata of a job with thousands
/// of operators and subtasks is a few MiB).
pub const MAX_METADATA_BYTES: u64 = 256 << 20;

/// One subtask's state file of one operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskStateHandle {
    /// The subtask that wrote it.
    pub subtask: u32,
    /// File name, relative to the checkpoint directory.
    pub file: String,
    /// Size in bytes (checked on restore).
    pub size: u64,
    /// Files in the job's `shared/` directory that the state references
    /// (incremental RocksDB checkpoints); kept while any retained
    /// checkpoint names them.
    pub shared: Vec<String>,
}

/// The state of one operator across its subtasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorStateMeta {
    /// The operator's stable id.
    pub operator_id: String,
    /// Its display name (for messages).
    pub name: String,
    /// Parallelism when the snapshot was taken.
    pub parallelism: u32,
    /// Whether the state is keyed (redistributable by key group).
    pub keyed: bool,
    /// One handle per subtask that had state.
    pub subtasks: Vec<SubtaskStateHandle>,
}

/// Everything needed to restore a job from one checkpoint or savepoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// The job that took it.
    pub job_id: String,
    /// The job's name.
    pub job_name: String,
    /// The checkpoint's id.
    pub checkpoint_id: CheckpointId,
    /// Checkpoint or savepoint.
    pub kind: CheckpointKind,
    /// When it was triggered (ms since the Unix epoch).
    pub timestamp_ms: u64,
    /// The max parallelism (number of key groups) of the job.
    pub max_parallelism: u32,
    /// Per operator, its state handles.
    pub operators: Vec<OperatorStateMeta>,
    /// The ids of every operator of the job, sorted (stateless ones too):
    /// with the job name, the identity a resuming job must match. Empty in
    /// version 2 files.
    pub job_operators: Vec<String>,
}

/// The metadata of format version 2 (no job operators).
#[derive(Deserialize)]
struct MetadataV2 {
    job_id: String,
    job_name: String,
    checkpoint_id: CheckpointId,
    kind: CheckpointKind,
    timestamp_ms: u64,
    max_parallelism: u32,
    operators: Vec<OperatorStateMeta>,
}

/// What makes a checkpoint a given job's: the job's name and the ids of
/// all its operators (and, for a job in a cluster, its job id). A job
/// resumes automatically only from checkpoints with the same identity
/// ([`CheckpointMetadata::belongs_to`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobIdentity {
    /// The job's name (`execute(name)`).
    pub name: String,
    /// The ids of all its operators, sorted.
    pub operators: Vec<String>,
    /// If set, only checkpoints this job id took are its own (a job
    /// submitted to a cluster gets a new id, and does not take over the
    /// checkpoints of another submission, even of the same program).
    pub job_id: Option<String>,
}

impl JobIdentity {
    /// The identity of job `name` with operators `operators` (any order).
    pub fn new(name: impl Into<String>, operators: impl IntoIterator<Item = String>) -> Self {
        let mut operators: Vec<String> = operators.into_iter().collect();
        operators.sort();
        operators.dedup();
        JobIdentity { name: name.into(), operators, job_id: None }
    }
}

impl CheckpointMetadata {
    /// Encodes into the on-disk envelope.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let body = postcard::to_stdvec(self).map_err(|e| Error::Snapshot {
            operator: "_metadata".into(),
            action: "encoded",
            message: e.to_string(),
        })?;
        let mut out = Vec::with_capacity(body.len() + 26);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&checksum(&body).to_le_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decodes the envelope; `path` only names the file in errors.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        let corrupt = |reason: String| Error::CorruptMetadata { path: path.to_path_buf(), reason };
        if bytes.len() < 26 || &bytes[..8] != MAGIC {
            return Err(corrupt("not a Sluice checkpoint metadata file (bad magic or too short)".into()));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION && version != FORMAT_VERSION_2 {
            return Err(corrupt(format!(
                "format version {version}, this build reads versions {FORMAT_VERSION_2} and {FORMAT_VERSION}"
            )));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[10..18]);
        let len = u64::from_le_bytes(len);
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&bytes[18..26]);
        let body = &bytes[26..];
        if body.len() as u64 != len {
            return Err(corrupt(format!("body is {} bytes, the header says {len} (truncated?)", body.len())));
        }
        if checksum(body) != u64::from_le_bytes(sum) {
            return Err(corrupt("checksum mismatch".into()));
        }
        let metadata = if version == FORMAT_VERSION_2 {
            let m: MetadataV2 = postcard::from_bytes(body).map_err(|e| corrupt(format!("cannot decode: {e}")))?;
            CheckpointMetadata {
                job_id: m.job_id,
                job_name: m.job_name,
                checkpoint_id: m.checkpoint_id,
                kind: m.kind,
                timestamp_ms: m.timestamp_ms,
                max_parallelism: m.max_parallelism,
                operators: m.operators,
                job_operators: Vec::new(),
            }
        } else {
            postcard::from_bytes(body).map_err(|e| corrupt(format!("cannot decode: {e}")))?
        };
        metadata.check_names(path)?;
        Ok(metadata)
    }

    /// Checks that every file it names (state files, shared files) is one
    /// plain file name; `path` names the metadata file in the error.
    pub fn check_names(&self, path: &Path) -> Result<()> {
        for h in self.operators.iter().flat_map(|o| &o.subtasks) {
            check_file_name(&h.file, path)?;
            for name in &h.shared {
                check_file_name(name, path)?;
            }
        }
        Ok(())
    }

    /// Whether this checkpoint is `job`'s: the same job name and the same
    /// operators (for a version 2 file, which does not record them: every
    /// operator with state is one of `job`'s). `Err` says whose it is.
    pub fn belongs_to(&self, job: &JobIdentity) -> std::result::Result<(), String> {
        let whose = || format!("it belongs to job '{}' (id {})", self.job_name, self.job_id);
        if self.job_name != job.name {
            return Err(whose());
        }
        if job.job_id.as_ref().is_some_and(|id| *id != self.job_id) {
            return Err(format!(
                "{}, and a job submitted to a cluster resumes only its own checkpoints \
                 (start it from a savepoint or a retained checkpoint with -s PATH)",
                whose()
            ));
        }
        let same_operators = if self.job_operators.is_empty() {
            self.operators.iter().all(|o| job.operators.binary_search(&o.operator_id).is_ok())
        } else {
            self.job_operators == job.operators
        };
        if !same_operators {
            return Err(format!("{}, whose operators differ from this job's", whose()));
        }
        Ok(())
    }
}

/// XXH64 of `bytes`, used to detect damaged files.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut h = XxHash64::with_seed(0);
    h.write(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn sample() -> CheckpointMetadata {
        CheckpointMetadata {
            job_id: "j".into(),
            job_name: "job".into(),
            checkpoint_id: CheckpointId(3),
            kind: CheckpointKind::Checkpoint,
            timestamp_ms: 1,
            max_parallelism: 128,
            operators: vec![OperatorStateMeta {
                operator_id: "op".into(),
                name: "Map".into(),
                parallelism: 2,
                keyed: true,
                subtasks: vec![SubtaskStateHandle { subtask: 0, file: "op-0".into(), size: 5, shared: vec![] }],
            }],
            job_operators: vec!["op".into(), "sink".into()],
        }
    }

    fn with_names(file: &str, shared: &str) -> Vec<u8> {
        let mut m = sample();
        m.operators[0].subtasks[0].file = file.into();
        m.operators[0].subtasks[0].shared = vec![shared.into()];
        m.encode().unwrap()
    }

    #[test]
    fn names_that_leave_the_directory_are_refused() {
        let p = Path::new("sp/_metadata");
        assert!(CheckpointMetadata::decode(&with_names("op-0", "x.sst"), p).is_ok());
        for (file, shared) in [("/tmp/x", "s"), ("../x", "s"), ("op-0", "../../etc/passwd"), ("", "s")] {
            let e = CheckpointMetadata::decode(&with_names(file, shared), p).unwrap_err();
            assert!(matches!(e, Error::UnsafeName { .. }), "{e}");
            let e = e.to_string();
            assert!(e.contains("sp/_metadata"), "{e}");
        }
    }

    #[test]
    fn version_2_files_are_read_and_identity_is_checked() {
        let m = sample();
        let v2 = (&m.job_id, &m.job_name, m.checkpoint_id, m.kind, m.timestamp_ms, m.max_parallelism, &m.operators);
        let body = postcard::to_stdvec(&v2).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&checksum(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        let old = CheckpointMetadata::decode(&bytes, Path::new("_metadata")).unwrap();
        assert!(old.job_operators.is_empty());
        let job = JobIdentity::new("job", ["sink".to_string(), "op".to_string()]);
        assert!(m.belongs_to(&job).is_ok());
        assert!(old.belongs_to(&job).is_ok(), "v2: its stateful operators are the job's");
        let other = JobIdentity::new("other", ["sink".to_string(), "op".to_string()]);
        assert!(m.belongs_to(&other).unwrap_err().contains("'job'"));
        let more = JobIdentity::new("job", ["sink".to_string(), "op".to_string(), "map".to_string()]);
        assert!(m.belongs_to(&more).unwrap_err().contains("operators differ"));
        assert!(old.belongs_to(&more).is_ok());
        assert!(old.belongs_to(&JobIdentity::new("job", ["sink".to_string()])).is_err());
        let submitted = JobIdentity { job_id: Some("other id".into()), ..job.clone() };
        assert!(m.belongs_to(&submitted).unwrap_err().contains("-s PATH"));
        assert!(m.belongs_to(&JobIdentity { job_id: Some("j".into()), ..job }).is_ok());
    }

    #[test]
    fn round_trips_and_detects_damage() {
        let p = Path::new("x/_metadata");
        let bytes = sample().encode().unwrap();
        assert_eq!(CheckpointMetadata::decode(&bytes, p).unwrap(), sample());
        let e = CheckpointMetadata::decode(&bytes[..bytes.len() - 3], p).unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains("x/_metadata"), "{e}");
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(CheckpointMetadata::decode(&flipped, p).unwrap_err().to_string().contains("checksum"));
        assert!(CheckpointMetadata::decode(b"garbage", p).unwrap_err().to_string().contains("magic"));
    }
}
