//! The job graph: vertices of chained operators with a resolved parallelism.
//!
//! Parallelism is resolved per operator in this order, the first that is set
//! wins: the operator's `set_parallelism` → the environment's
//! `set_parallelism` → `-p` at submission → `parallelism.default` from the
//! configuration → the number of cores. Non-parallel sources (a socket) run
//! with parallelism 1.
//!
//! Two operators are chained into one vertex (one task, direct calls, no
//! channel) when the edge between them is forward, their parallelism is
//! equal, the downstream one has no other input, it did not ask to start a
//! new chain, and chaining is enabled.

use super::stream_graph::{NodeKind, StreamGraph};
use super::Partitioning;
use crate::config::RestartStrategy;
use crate::error::{Error, Result};
use crate::faults::Faults;
use crate::runtime::context::RuntimeMode;
use crate::runtime::restore::RestorePlan;
use sluice_checkpoint::coordinator::CheckpointConfig;
use sluice_checkpoint::key_group::stable_hash;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The parallelism levels below the operator's own, as the environment saw them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParallelismDefaults {
    /// Set on the environment in code.
    pub environment: Option<u32>,
    /// `-p` given at submission (command line).
    pub command_line: Option<u32>,
    /// `parallelism.default` from the configuration.
    pub config: Option<u32>,
    /// The machine's cores.
    pub cores: u32,
}

/// Runtime settings that travel with the job.
#[derive(Debug, Clone)]
pub(crate) struct JobSettings {
    pub(crate) max_parallelism: u32,
    pub(crate) mode: RuntimeMode,
    pub(crate) batch_size: usize,
    pub(crate) channel_capacity: usize,
    pub(crate) buffer_timeout: Duration,
    pub(crate) slot_request_timeout: Duration,
    /// Periodic checkpoints, if enabled.
    pub(crate) checkpointing: Option<CheckpointConfig>,
    /// Where checkpoints go (tasks write there, the coordinator adds metadata).
    pub(crate) checkpoint_root: PathBuf,
    /// `state.savepoints.dir`: if set, savepoints are written below it only.
    pub(crate) savepoints_dir: Option<PathBuf>,
    /// Completed checkpoints kept.
    pub(crate) retained: usize,
    /// Keyed state backend.
    pub(crate) state_backend: sluice_checkpoint::state::StateBackendConfig,
    /// How often watermark generators emit.
    pub(crate) watermark_interval: Duration,
    pub(crate) restart: RestartStrategy,
    /// The checkpoint or savepoint the job starts from.
    pub(crate) restore: Option<Arc<RestorePlan>>,
    pub(crate) faults: Faults,
}

/// An operator as placed in a vertex.
#[derive(Debug, Clone)]
pub struct OperatorInfo {
    /// Display name, e.g. `Flat Map`.
    pub name: String,
    /// Stable id: from `uid`, or derived from the graph's structure.
    pub id: String,
    /// Index of the stream node.
    pub(crate) node: usize,
}

/// One task of the job graph: a chain of operators run by each subtask.
#[derive(Debug, Clone)]
pub struct JobVertex {
    /// Index of the vertex.
    pub index: usize,
    /// The chained operators' names joined by ` -> `.
    pub name: String,
    /// Number of parallel subtasks.
    pub parallelism: u32,
    /// The chained operators, head first.
    pub operators: Vec<OperatorInfo>,
    /// Whether the head is a source.
    pub is_source: bool,
}

/// A channel-carrying edge between two vertices.
#[derive(Debug, Clone)]
pub struct JobEdge {
    /// Producing vertex.
    pub source: usize,
    /// Consuming vertex.
    pub target: usize,
    /// How records are distributed.
    pub partitioning: Partitioning,
    /// The stream edge behind it.
    pub(crate) stream_edge: usize,
}

/// The job graph. Built by [`StreamExecutionEnvironment::job_graph`](crate::StreamExecutionEnvironment::job_graph)
/// and by `execute`.
pub struct JobGraph {
    pub(crate) name: String,
    pub(crate) stream: StreamGraph,
    pub(crate) vertices: Vec<JobVertex>,
    pub(crate) edges: Vec<JobEdge>,
    /// Per stream node: its vertex and resolved parallelism.
    pub(crate) node_vertex: Vec<usize>,
    /// Per stream edge: whether it is chained (inside a vertex).
    pub(crate) chained: Vec<bool>,
    pub(crate) partitioning: Vec<Partitioning>,
    pub(crate) settings: JobSettings,
}

impl JobGraph {
    pub(crate) fn build(
        name: &str,
        stream: StreamGraph,
        defaults: ParallelismDefaults,
        chaining: bool,
        settings: JobSettings,
    ) -> Result<Self> {
        if stream.nodes.is_empty() {
            return Err(Error::InvalidGraph(
                "the job has no operators; add a source and a sink before execute()".into(),
            ));
        }
        let fallback =
            defaults.environment.or(defaults.command_line).or(defaults.config).unwrap_or(defaults.cores.max(1));
        let mut parallelism = Vec::with_capacity(stream.nodes.len());
        for node in &stream.nodes {
            let p = match (&node.kind, node.parallelism) {
                (NodeKind::Source { parallel: false, .. }, Some(p)) if p != 1 => {
                    return Err(Error::InvalidGraph(format!(
                        "'{}' is a non-parallel source: its parallelism must be 1, not {p}",
                        node.name
                    )))
                }
                (NodeKind::Source { parallel: false, .. }, _) => 1,
                (_, Some(p)) => p,
                (_, None) => node.parallelism_of.and_then(|n| parallelism.get(n).copied()).unwrap_or(fallback),
            };
            if p == 0 {
                return Err(Error::InvalidGraph(format!("parallelism of '{}' must be at least 1", node.name)));
            }
            if node.keyed && p > settings.max_parallelism {
                return Err(Error::InvalidGraph(format!(
                    "parallelism {p} of keyed operator '{}' exceeds pipeline.max-parallelism {}",
                    node.name, settings.max_parallelism
                )));
            }
            parallelism.push(p);
        }
        if settings.mode == RuntimeMode::Batch {
            for node in &stream.nodes {
                if let NodeKind::Source { bounded: false, .. } = node.kind {
                    return Err(Error::InvalidGraph(format!(
                        "execution.runtime-mode BATCH needs bounded sources, but '{}' is unbounded; use STREAMING",
                        node.name
                    )));
                }
            }
        }
        let mut in_degree = vec![0usize; stream.nodes.len()];
        for e in &stream.edges {
            in_degree[e.target] += 1;
        }
        let mut partitioning = Vec::with_capacity(stream.edges.len());
        let mut chained = Vec::with_capacity(stream.edges.len());
        for e in &stream.edges {
            let same = parallelism[e.source] == parallelism[e.target];
            let part = match e.partitioning {
                Some(Partitioning::Forward) if !same => {
                    return Err(Error::InvalidGraph(format!(
                        "forward partitioning from '{}' (parallelism {}) to '{}' (parallelism {}) needs equal parallelism; use rebalance()",
                        stream.nodes[e.source].name, parallelism[e.source], stream.nodes[e.target].name, parallelism[e.target]
                    )))
                }
                Some(p) => p,
                None if same => Partitioning::Forward,
                None => Partitioning::Rebalance,
            };
            partitioning.push(part);
            chained.push(
                chaining
                    && part == Partitioning::Forward
                    && same
                    && in_degree[e.target] == 1
                    && !stream.nodes[e.target].chain_head,
            );
        }
        // Nodes are in topological order: a chained node joins its input's vertex.
        let mut node_vertex = vec![usize::MAX; stream.nodes.len()];
        let mut vertices: Vec<JobVertex> = Vec::new();
        for (n, node) in stream.nodes.iter().enumerate() {
            let upstream = stream.edges.iter().enumerate().find(|(i, e)| e.target == n && chained[*i]);
            let id = match &node.uid {
                Some(uid) => format!("{:016x}", stable_hash(uid)),
                None => format!("{:016x}", stable_hash(&(n, &node.name))),
            };
            let info = OperatorInfo { name: node.name.clone(), id, node: n };
            match upstream {
                Some((_, e)) => {
                    let v = node_vertex[e.source];
                    node_vertex[n] = v;
                    vertices[v].operators.push(info);
                }
                None => {
                    node_vertex[n] = vertices.len();
                    vertices.push(JobVertex {
                        index: vertices.len(),
                        name: String::new(),
                        parallelism: parallelism[n],
                        operators: vec![info],
                        is_source: matches!(node.kind, NodeKind::Source { .. }),
                    });
                }
            }
        }
        for v in &mut vertices {
            v.name = v.operators.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(" -> ");
        }
        let edges = stream
            .edges
            .iter()
            .enumerate()
            .filter(|(i, _)| !chained[*i])
            .map(|(i, e)| JobEdge {
                source: node_vertex[e.source],
                target: node_vertex[e.target],
                partitioning: partitioning[i],
                stream_edge: i,
            })
            .collect();
        Ok(JobGraph { name: name.to_string(), stream, vertices, edges, node_vertex, chained, partitioning, settings })
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The vertices (tasks), sources first.
    pub fn vertices(&self) -> &[JobVertex] {
        &self.vertices
    }

    /// The edges between vertices.
    pub fn edges(&self) -> &[JobEdge] {
        &self.edges
    }

    /// Slots the job needs with slot sharing: its largest parallelism.
    pub fn required_slots(&self) -> u32 {
        self.vertices.iter().map(|v| v.parallelism).max().unwrap_or(1)
    }

    /// The operator with stable id `id`: (name, parallelism, keyed).
    pub fn operator(&self, id: &str) -> Option<(&str, u32, bool)> {
        self.vertices.iter().find_map(|v| {
            v.operators
                .iter()
                .find(|o| o.id == id)
                .map(|o| (o.name.as_str(), v.parallelism, self.stream.nodes[o.node].keyed))
        })
    }

    /// What makes a checkpoint this job's: its name and the ids of all its
    /// operators (a job resumes automatically only from its own).
    pub fn identity(&self) -> sluice_checkpoint::metadata::JobIdentity {
        let ids = self.vertices.iter().flat_map(|v| v.operators.iter().map(|o| o.id.clone()));
        sluice_checkpoint::metadata::JobIdentity::new(self.name.clone(), ids)
    }

    /// Total number of subtasks.
    pub fn subtask_count(&self) -> usize {
        self.vertices.iter().map(|v| v.parallelism as usize).sum()
    }
}

impl fmt::Debug for JobGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for JobGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Job '{}':", self.name)?;
        for v in &self.vertices {
            writeln!(f, "  [{}] {} (parallelism {})", v.index, v.name, v.parallelism)?;
        }
        for e in &self.edges {
            writeln!(f, "  [{}] -> [{}] {}", e.source, e.target, e.partitioning)?;
        }
        Ok(())
    }
}
