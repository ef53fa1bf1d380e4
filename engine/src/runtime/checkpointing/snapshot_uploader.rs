//! The asynchronous part of a subtask's checkpoint, and the contract
//! through which a subtask reports its part of a checkpoint.
//!
//! Lifecycle of one checkpoint in a subtask: the task thread takes the
//! synchronous snapshot of its chain when barrier *n* is aligned, then hands
//! it to the [`SnapshotUploader`], which writes it under the checkpoint's
//! directory on a background thread and reports through the subtask's
//! [`CheckpointResponder`]: [`acknowledge`](CheckpointResponder::acknowledge)
//! with the stored state handles, or [`decline`](CheckpointResponder::decline)
//! with the reason the state could not be stored. Exactly one of the two is
//! called per checkpoint the uploader is given. The job master completes
//! checkpoint *n* once every subtask acknowledged it, and aborts it on the
//! first decline.

use crate::faults;
use crate::ids::SubtaskId;
use crate::runtime::collector::ChainStates;
use serde::{Deserialize, Serialize};
use sluice_checkpoint::metadata::SubtaskStateHandle;
use sluice_checkpoint::state::format::{StateSnapshot, UploadTarget, UploadedState};
use sluice_checkpoint::storage;
use sluice_checkpoint::{CheckpointBarrier, CheckpointId};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one subtask's part of a checkpoint cost (Flink's per-subtask
/// checkpoint statistics), reported with its acknowledgement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskCheckpointMetrics {
    /// From the first barrier to the last one at this subtask's inputs, ms
    /// (0 for a source).
    pub alignment_ms: u64,
    /// The synchronous snapshot on the task thread, ms.
    pub sync_ms: u64,
    /// Writing the snapshot (the upload thread), ms.
    pub async_ms: u64,
}

/// Where a subtask reports the outcome of its part of a checkpoint (Flink's
/// `CheckpointResponder`). The runtime knows nothing else of the job master:
/// a TaskManager implements this over its gateway, a test over a channel.
///
/// Both calls are made from upload threads, never from the task thread, and
/// must not block for long; a report that cannot be delivered (the job
/// master is gone) is dropped, since nobody is left to complete the
/// checkpoint.
pub trait CheckpointResponder: Send + Sync {
    /// `subtask` stored its state of `checkpoint`; `handles` names it, per
    /// operator id.
    /// `metrics` says what the subtask's part cost.
    fn acknowledge(
        &self,
        subtask: SubtaskId,
        checkpoint: CheckpointId,
        handles: Vec<(String, SubtaskStateHandle)>,
        metrics: SubtaskCheckpointMetrics,
    );

    /// `subtask` could not store its state of `checkpoint`, because of `reason`.
    fn decline(&self, subtask: SubtaskId, checkpoint: CheckpointId, reason: String);
}

/// Stores a subtask's snapshot (the asynchronous part of a checkpoint) and
/// reports the outcome through a [`CheckpointResponder`].
#[derive(Clone)]
pub(crate) struct SnapshotUploader {
    pub(crate) subtask: SubtaskId,
    pub(crate) root: PathBuf,
    pub(crate) responder: Arc<dyn CheckpointResponder>,
    pub(crate) abort_after_snapshot: Option<u64>,
}

impl SnapshotUploader {
    /// Writes `states` under the checkpoint's directory on a background
    /// thread (the asynchronous part), then acknowledges or declines.
    /// `alignment` and `sync` are what the task thread spent on it.
    pub(crate) fn acknowledge(
        &self,
        barrier: CheckpointBarrier,
        states: ChainStates,
        alignment: Duration,
        sync: Duration,
    ) {
        let this = self.clone();
        let spawned = std::thread::Builder::new().name("checkpoint-upload".into()).spawn(move || {
            let started = Instant::now();
            lower_upload_priority();
            let job_dir = this.root.join(this.subtask.job.to_string());
            let dir = storage::checkpoint_dir(&this.root, &this.subtask.job.to_string(), barrier.id);
            let mut handles = Vec::with_capacity(states.len());
            for (operator, snapshot) in states {
                let file = format!("{operator}-{}", this.subtask.subtask);
                let uploaded = match snapshot {
                    StateSnapshot::Ready(bytes) => Ok(UploadedState { bytes, shared: Vec::new() }),
                    StateSnapshot::Upload(upload) => upload(&UploadTarget {
                        checkpoint_dir: dir.clone(),
                        shared_dir: job_dir.join(storage::SHARED_DIR),
                        file_prefix: file.clone(),
                        kind: barrier.kind,
                    }),
                };
                match uploaded.and_then(|u| {
                    let mut h = storage::write_state(&dir, &file, this.subtask.subtask, &u.bytes)?;
                    h.shared = u.shared;
                    Ok(h)
                }) {
                    Ok(h) => handles.push((operator, h)),
                    Err(e) => return this.decline(barrier.id, e.to_string()),
                }
            }
            if this.abort_after_snapshot == Some(barrier.id.0) {
                faults::abort_process(&format!("after the snapshot of checkpoint {}", barrier.id));
            }
            let metrics = SubtaskCheckpointMetrics {
                alignment_ms: alignment.as_millis() as u64,
                sync_ms: sync.as_millis() as u64,
                async_ms: started.elapsed().as_millis() as u64,
            };
            this.responder.acknowledge(this.subtask, barrier.id, handles, metrics);
        });
        if let Err(e) = spawned {
            self.decline(barrier.id, format!("cannot start the upload thread: {e}"));
        }
    }

    fn decline(&self, checkpoint: CheckpointId, reason: String) {
        self.responder.decline(self.subtask, checkpoint, reason);
    }
}

/// The nice value of upload threads (see [`lower_upload_priority`]).
const UPLOAD_NICE: i32 = 10;

/// Lowers the calling upload thread's scheduling priority, so that on a
/// busy machine an upload yields the CPU to the task threads (measured on 2
/// cores, heap WordCount with 1 s checkpoints: the keyed task waited for a
/// CPU 3.7 % of the run at the same priority, 3.2–3.4 % at nice 10). Nice
/// 10 still leaves an upload about a tenth of a CPU that task threads keep
/// busy, so checkpoints go on completing. Linux only; elsewhere, or if the
/// call fails, the thread keeps its priority.
fn lower_upload_priority() {
    #[cfg(target_os = "linux")]
    {
        if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), UPLOAD_NICE) {
            tracing::debug!("cannot lower the upload thread's priority: {e}");
        }
    }
}
