//! The failures of a job, newest first (Flink's exception history).

use super::EXCEPTION_HISTORY;
use crate::error::FailureCause;
use crate::ids::{SlotId, SubtaskId};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// One failure of the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionEntry {
    /// When the job master learnt of it, ms since the epoch.
    pub timestamp: i64,
    /// What failed.
    pub cause: FailureCause,
    /// The failed task's name, if a task failed.
    pub task: Option<String>,
    /// The failed subtask, if a task failed.
    pub subtask: Option<u32>,
    /// The TaskManager that ran it, if known.
    pub taskmanager: Option<String>,
    /// The job attempt that failed.
    pub attempt: u32,
}

impl ExceptionEntry {
    /// The entry of `cause`, seen now in `attempt`: `origin` is the subtask
    /// that reported it, if one did (its TaskManager is that of its slot in
    /// `slots`).
    pub(crate) fn of(cause: &FailureCause, origin: Option<SubtaskId>, slots: &[SlotId], attempt: u32) -> Self {
        let (task, subtask) = match cause {
            FailureCause::TaskFailed { task, subtask, .. }
            | FailureCause::TaskPanicked { task, subtask, .. }
            | FailureCause::ChannelClosed { task, subtask, .. } => (Some(task.clone()), Some(*subtask)),
            _ => (None, origin.map(|s| s.subtask)),
        };
        let taskmanager = origin
            .and_then(|s| slots.get(s.subtask as usize))
            .map(|slot| slot.task_manager.to_string())
            .or_else(|| match cause {
                FailureCause::TaskManagerLost(tm) => Some(tm.clone()),
                _ => None,
            });
        ExceptionEntry { timestamp: super::now_ms(), cause: cause.clone(), task, subtask, taskmanager, attempt }
    }
}

/// The last [`EXCEPTION_HISTORY`] failures.
#[derive(Debug, Default)]
pub(crate) struct ExceptionHistory {
    entries: VecDeque<ExceptionEntry>,
}

impl ExceptionHistory {
    /// Records a failure; the oldest goes when the history is full.
    pub(crate) fn record(&mut self, entry: ExceptionEntry) {
        self.entries.push_front(entry);
        self.entries.truncate(EXCEPTION_HISTORY);
    }

    /// Newest first.
    pub(crate) fn entries(&self) -> Vec<ExceptionEntry> {
        self.entries.iter().cloned().collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(n: i64) -> ExceptionEntry {
        ExceptionEntry {
            timestamp: n,
            cause: FailureCause::TaskManagerLost(format!("tm-{n}")),
            task: None,
            subtask: None,
            taskmanager: None,
            attempt: n as u32,
        }
    }

    #[test]
    fn keeps_the_newest_first_and_is_bounded() {
        let mut h = ExceptionHistory::default();
        for n in 0..(EXCEPTION_HISTORY as i64 + 5) {
            h.record(entry(n));
        }
        let e = h.entries();
        assert_eq!(e.len(), EXCEPTION_HISTORY);
        assert_eq!(e[0].timestamp, EXCEPTION_HISTORY as i64 + 4);
        assert_eq!(e[EXCEPTION_HISTORY - 1].timestamp, 5);
    }
}
