//! Checkpoint metadata: what a completed checkpoint or savepoint consists of.
//!
//! The job master writes `_metadata` into the checkpoint's directory when a
//! checkpoint is complete (every expected subtask has acknowledged and its
//! state is stored), so its presence marks a checkpoint as complete. On disk it is a small envelope — magic bytes, a format
//! version, the body's length and an XXH64 checksum — around a `postcard`
//! encoding of [`CheckpointMetadata`]; a truncated or damaged file is
//! detected and named, never half-read.

use crate::barrier::{CheckpointId, CheckpointKind};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::hash::Hasher;
use std::path::Path;
use twox_hash::XxHash64;

const MAGIC: &[u8; 8] = b"SLUICEMD";
/// The metadata format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 2;

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
        if version != FORMAT_VERSION {
            return Err(corrupt(format!("format version {version}, this build reads version {FORMAT_VERSION}")));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[10..18]);
        let len = u64::from_le_bytes(len) as usize;
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&bytes[18..26]);
        let body = &bytes[26..];
        if body.len() != len {
            return Err(corrupt(format!("body is {} bytes, the header says {len} (truncated?)", body.len())));
        }
        if checksum(body) != u64::from_le_bytes(sum) {
            return Err(corrupt("checksum mismatch".into()));
        }
        postcard::from_bytes(body).map_err(|e| corrupt(format!("cannot decode: {e}")))
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
        }
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
