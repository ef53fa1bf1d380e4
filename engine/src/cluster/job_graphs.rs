//! Where a TaskManager finds the graph of a job it deploys subtasks of.
//!
//! The job graph never travels in a control message: a
//! [`TaskDeploymentDescriptor`](super::protocol::TaskDeploymentDescriptor)
//! names a subtask by ids, and the TaskManager looks its job up here. In the
//! mini cluster the dispatcher registers each submitted graph (every
//! TaskManager thread shares the registry); in a cluster the job's binary
//! rebuilt the graph itself, so a task process's registry holds that one
//! graph from the start.
//!
//! Lifecycle: a graph is registered before its job's first deployment and
//! removed when the job has ended (after its last `ReleaseJob`). A
//! deployment for an unknown job fails that subtask with a clear cause.

use crate::graph::JobGraph;
use crate::ids::JobId;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A registry of job graphs by job id, shared within one process.
#[derive(Clone, Default)]
pub struct JobGraphs {
    graphs: Arc<RwLock<HashMap<JobId, Arc<JobGraph>>>>,
}

impl std::fmt::Debug for JobGraphs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.graphs.read().map(|g| g.len()).unwrap_or(0);
        write!(f, "JobGraphs({n} jobs)")
    }
}

impl JobGraphs {
    /// A registry holding one job's graph (a task process).
    pub fn single(job: JobId, graph: Arc<JobGraph>) -> Self {
        let graphs = JobGraphs::default();
        graphs.insert(job, graph);
        graphs
    }

    /// Registers a job's graph.
    pub fn insert(&self, job: JobId, graph: Arc<JobGraph>) {
        // A poisoned lock still holds a consistent map (inserts and removes
        // cannot panic half-way).
        let mut graphs = self.graphs.write().unwrap_or_else(|p| p.into_inner());
        graphs.insert(job, graph);
    }

    /// Forgets an ended job's graph.
    pub fn remove(&self, job: JobId) {
        let mut graphs = self.graphs.write().unwrap_or_else(|p| p.into_inner());
        graphs.remove(&job);
    }

    /// The graph of `job`, if registered.
    pub fn get(&self, job: JobId) -> Option<Arc<JobGraph>> {
        let graphs = self.graphs.read().unwrap_or_else(|p| p.into_inner());
        graphs.get(&job).cloned()
    }
}
