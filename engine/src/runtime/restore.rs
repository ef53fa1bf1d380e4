//! Restoring subtasks from a completed checkpoint or savepoint.
//!
//! A [`RestorePlan`] is a checkpoint's metadata and directory. Each subtask
//! reads only the state it needs: for keyed operators every old subtask's
//! file (the operator keeps the entries of its own key groups, which is how
//! a job restores at another parallelism); for other operators and sources
//! the file of the subtask with the same index.

use crate::error::{Error, Result};
use sluice_checkpoint::metadata::CheckpointMetadata;
use sluice_checkpoint::storage;
use std::path::PathBuf;

/// A checkpoint or savepoint to start from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RestorePlan {
    /// What it holds.
    pub metadata: CheckpointMetadata,
    /// Where its files are.
    pub dir: PathBuf,
}

impl RestorePlan {
    /// The state blobs subtask `subtask` of operator `operator_id` restores:
    /// all old subtasks' when `all` (keyed or union state), else its own —
    /// which is only sound at the parallelism the state was taken at, so
    /// another parallelism is an error rather than silently dropped or
    /// duplicated positions.
    pub(crate) fn blobs_for(
        &self,
        operator_id: &str,
        all: bool,
        subtask: u32,
        parallelism: u32,
    ) -> Result<Vec<Vec<u8>>> {
        let Some(op) = self.metadata.operators.iter().find(|o| o.operator_id == operator_id) else {
            return Ok(Vec::new());
        };
        if !all && op.parallelism != parallelism {
            return Err(Error::InvalidGraph(format!(
                "the state of operator '{}' in '{}' was taken at parallelism {} and cannot be split or merged \
                 (it is neither keyed nor union state); run that operator at parallelism {} (set_parallelism), \
                 or drop its state with a new uid() and --allow-non-restored-state",
                op.name,
                self.dir.display(),
                op.parallelism,
                op.parallelism
            )));
        }
        op.subtasks
            .iter()
            .filter(|h| all || h.subtask == subtask)
            .map(|h| storage::read_state(&self.dir, h, self.metadata.checkpoint_id).map_err(Error::from))
            .collect()
    }

    /// Checks that the plan fits a job whose operators `has_operator`
    /// recognises by id and whose max parallelism is `max_parallelism`:
    /// every operator state maps to an operator of the job (unless
    /// `allow_non_restored`), and keyed state was cut into the same number
    /// of key groups.
    pub(crate) fn check_compatible(
        &self,
        has_operator: impl Fn(&str) -> bool,
        max_parallelism: u32,
        allow_non_restored: bool,
    ) -> Result<()> {
        for op in &self.metadata.operators {
            match has_operator(&op.operator_id).then_some(()) {
                None if allow_non_restored => {
                    tracing::warn!(
                        "state of operator '{}' ({}) in {} maps to no operator of this job; skipped (--allow-non-restored-state)",
                        op.name,
                        op.operator_id,
                        self.dir.display()
                    );
                }
                None => {
                    return Err(Error::InvalidGraph(format!(
                        "the savepoint/checkpoint at '{}' holds state of operator '{}' (id {}) that this job does not have; \
                         give the operator the same uid() as before, or start with --allow-non-restored-state to drop that state",
                        self.dir.display(),
                        op.name,
                        op.operator_id
                    )))
                }
                Some(()) if op.keyed && self.metadata.max_parallelism != max_parallelism => {
                    return Err(Error::InvalidGraph(format!(
                        "the savepoint/checkpoint at '{}' was taken with pipeline.max-parallelism {}, this job uses {}; keyed state cannot be mapped — use the same max parallelism",
                        self.dir.display(),
                        self.metadata.max_parallelism,
                        max_parallelism
                    )))
                }
                Some(()) => {}
            }
        }
        Ok(())
    }
}
