//! What a job master observes of its job beyond its status, for the web UI
//! and the REST API (Flink's execution graph views, checkpoint statistics
//! and exception history): the job's vertices and edges with each
//! subtask's state, place and rates; the recent checkpoints with each
//! subtask's part; the failures that restarted or ended the job.
//!
//! The job master keeps one [`JobObserver`] per job and hands a
//! [`JobView`] with every [`JobDetails`](super::protocol::JobDetails). A
//! view is plain data (serializable, compared to detect change); all
//! bounded: [`CHECKPOINT_HISTORY`] checkpoints and [`EXCEPTION_HISTORY`]
//! failures.

mod checkpoint_history;
mod exception_history;
mod subtask_rates;

pub use checkpoint_history::{
    CheckpointAck, CheckpointHistory, CheckpointRecord, CheckpointRecordStatus, CheckpointSettings, RestoredCheckpoint,
};
pub use exception_history::ExceptionEntry;
pub use subtask_rates::{SubtaskRates, SubtaskSample};

pub(crate) use checkpoint_history::CheckpointTracker;
pub(crate) use exception_history::ExceptionHistory;
pub(crate) use subtask_rates::RateTracker;

use super::protocol::ExecutionState;
use serde::{Deserialize, Serialize};

/// How many checkpoints a view lists (Flink's `web.checkpoints.history`).
pub const CHECKPOINT_HISTORY: usize = 10;
/// How many failures a view lists (Flink's `web.exception-history-size`
/// defaults to 16).
pub const EXCEPTION_HISTORY: usize = 16;

/// A job's shape and what its subtasks do now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// The vertices (chains of operators), in topological order.
    pub vertices: Vec<VertexView>,
    /// The edges between vertices.
    pub edges: Vec<EdgeView>,
    /// Recent checkpoints and their counts.
    pub checkpoints: CheckpointHistory,
    /// Failures, newest first.
    pub exceptions: Vec<ExceptionEntry>,
}

/// One vertex of the job graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VertexView {
    /// Its index in the job graph (the `vid` of the REST paths).
    pub id: u32,
    /// Its name (the chained operators' names joined by ` -> `).
    pub name: String,
    /// Its parallelism.
    pub parallelism: u32,
    /// The names of its chained operators, head first.
    pub operators: Vec<String>,
    /// Its subtasks in the current attempt.
    pub subtasks: Vec<SubtaskView>,
}

/// One subtask of the current attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtaskView {
    /// Its index (0-based).
    pub subtask: u32,
    /// The job attempt it belongs to.
    pub attempt: u32,
    /// Its state.
    pub state: ExecutionState,
    /// The TaskManager whose slot runs it.
    pub taskmanager: String,
    /// That TaskManager's data address (`host:port`), in cluster mode.
    pub host: Option<String>,
    /// Its rates, once its TaskManager reported twice.
    pub rates: Option<SubtaskRates>,
}

/// An edge between two vertices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeView {
    /// The producing vertex.
    pub source: u32,
    /// The consuming vertex.
    pub target: u32,
    /// How records are distributed: `FORWARD`, `HASH`, `REBALANCE` or
    /// `BROADCAST` (Flink's ship strategies).
    pub ship_strategy: String,
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The observations a job master keeps of one job.
#[derive(Debug, Default)]
pub(crate) struct JobObserver {
    pub(crate) checkpoints: CheckpointTracker,
    pub(crate) exceptions: ExceptionHistory,
    pub(crate) rates: RateTracker,
}

impl JobObserver {
    /// The view of `graph`'s current attempt: `executions` are its subtasks'
    /// states, `placement` where slot *i* is (subtask *i* of every vertex
    /// runs in slot *i*).
    pub(crate) fn view(
        &self,
        graph: &crate::graph::JobGraph,
        executions: &std::collections::HashMap<crate::ids::SubtaskId, ExecutionState>,
        placement: &crate::ids::Placement,
    ) -> JobView {
        let mut subtasks: Vec<_> = executions.iter().collect();
        subtasks.sort_by_key(|(s, _)| (s.vertex, s.subtask));
        let vertices = graph
            .vertices()
            .iter()
            .enumerate()
            .map(|(v, vertex)| VertexView {
                id: v as u32,
                name: vertex.name.clone(),
                parallelism: vertex.parallelism,
                operators: vertex.operators.iter().map(|o| o.name.clone()).collect(),
                subtasks: subtasks
                    .iter()
                    .filter(|(s, _)| s.vertex == v)
                    .map(|(s, state)| {
                        let slot = placement.of_subtask(s.subtask);
                        SubtaskView {
                            subtask: s.subtask,
                            attempt: s.attempt,
                            state: **state,
                            taskmanager: slot.map(|l| l.task_manager.to_string()).unwrap_or_default(),
                            host: slot.and_then(|l| l.data_address.clone()),
                            rates: self.rates.rates(s),
                        }
                    })
                    .collect(),
            })
            .collect();
        let edges = graph
            .edges
            .iter()
            .map(|e| EdgeView {
                source: e.source as u32,
                target: e.target as u32,
                ship_strategy: e.partitioning.to_string(),
            })
            .collect();
        JobView { vertices, edges, checkpoints: self.checkpoints.history(), exceptions: self.exceptions.entries() }
    }
}
