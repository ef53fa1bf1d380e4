//! The stream graph: one node per transformation, recorded by the API.

use super::Partitioning;
use crate::runtime::erased::{OperatorFactory, SourceFactory, StreamType, WriterFactory};
use std::sync::Arc;

/// What a node runs.
#[derive(Clone)]
pub(crate) enum NodeKind {
    Source { factory: Arc<dyn SourceFactory>, bounded: bool, parallel: bool },
    Operator(Arc<dyn OperatorFactory>),
}

/// One transformation.
#[derive(Clone)]
pub(crate) struct StreamNode {
    pub(crate) name: String,
    pub(crate) uid: Option<String>,
    pub(crate) parallelism: Option<u32>,
    pub(crate) kind: NodeKind,
    pub(crate) out_type: Arc<dyn StreamType>,
    /// The user asked this node to start a new chain.
    pub(crate) chain_head: bool,
    /// The node keeps keyed state (its parallelism is bounded by max parallelism).
    pub(crate) keyed: bool,
    /// On restore every subtask is given the state of all old subtasks
    /// (Flink's union list state), e.g. a sink's pending transactions.
    pub(crate) union_state: bool,
    /// Without a parallelism of its own, the node runs at the parallelism
    /// of this (earlier) node, e.g. the projections of a side output.
    pub(crate) parallelism_of: Option<usize>,
}

/// A connection between two nodes.
#[derive(Clone)]
pub(crate) struct StreamEdge {
    pub(crate) source: usize,
    pub(crate) target: usize,
    /// `None`: forward if the parallelism matches, rebalance otherwise.
    pub(crate) partitioning: Option<Partitioning>,
    pub(crate) stream_type: Arc<dyn StreamType>,
    pub(crate) writer: Arc<dyn WriterFactory>,
}

/// All nodes and edges, in creation order (which is a topological order).
#[derive(Default, Clone)]
pub(crate) struct StreamGraph {
    pub(crate) nodes: Vec<StreamNode>,
    pub(crate) edges: Vec<StreamEdge>,
}
