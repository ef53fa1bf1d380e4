//! The execution graph: the job graph expanded into subtasks, and the
//! construction of one subtask's runtime pieces (its chain, its writers and
//! its input channels) from it.

use super::job_graph::JobGraph;
use super::stream_graph::NodeKind;
use super::Partitioning;
use crate::error::Result;
use crate::ids::{JobId, Placement, SubtaskId};
use crate::metrics;
use crate::runtime::context::RuntimeContext;
use crate::runtime::erased::{AnyBox, WriterSpec};
use crate::runtime::restore::RestorePlan;
use crate::runtime::shuffle::{ChannelKey, Shuffle};
use crate::runtime::task::Invokable;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The subtasks of a job, vertex by vertex.
pub fn subtasks(job: &JobGraph, id: JobId, attempt: u32) -> Vec<SubtaskId> {
    job.vertices
        .iter()
        .flat_map(|v| (0..v.parallelism).map(move |s| SubtaskId { job: id, attempt, vertex: v.index, subtask: s }))
        .collect()
}

struct Builder<'a> {
    job: &'a JobGraph,
    id: SubtaskId,
    shuffle: &'a Shuffle,
    placement: &'a Placement,
    task_name: String,
    restore: Option<&'a RestorePlan>,
    canceled: &'a Arc<AtomicBool>,
}

impl Builder<'_> {
    fn context(&self, node: usize) -> RuntimeContext {
        let vertex = &self.job.vertices[self.id.vertex];
        let op = vertex.operators.iter().find(|o| o.node == node);
        RuntimeContext {
            job_id: self.id.job,
            job_name: self.job.name.clone(),
            task_name: self.task_name.clone(),
            operator_name: self.job.stream.nodes[node].name.clone(),
            operator_id: op.map(|o| o.id.clone()).unwrap_or_default(),
            subtask_index: self.id.subtask,
            parallelism: vertex.parallelism,
            max_parallelism: self.job.settings.max_parallelism,
            attempt: self.id.attempt,
            mode: self.job.settings.mode,
            checkpoint_interval: self.job.settings.checkpointing.as_ref().map(|c| c.interval),
            state_backend: self.job.settings.state_backend.clone(),
            watermark_interval: self.job.settings.watermark_interval,
            restore_dir: self.restore.map(|r| r.dir.clone()),
            keyed_state: None,
            clock: Default::default(),
        }
    }

    fn operator_metrics(&self, ctx: &RuntimeContext) -> metrics::OperatorMetrics {
        let job_id = ctx.job_id.to_string();
        let subtask = ctx.subtask_index.to_string();
        metrics::global().operator(&[&job_id, &ctx.job_name, &ctx.task_name, &ctx.operator_name, &subtask])
    }

    /// The state blobs `node` restores in this subtask.
    fn restored(&self, node: usize, ctx: &RuntimeContext) -> Result<Vec<Vec<u8>>> {
        match self.restore {
            Some(plan) => {
                let n = &self.job.stream.nodes[node];
                plan.blobs_for(&ctx.operator_id, n.keyed || n.union_state, self.id.subtask, ctx.parallelism)
            }
            None => Ok(Vec::new()),
        }
    }

    /// The chain input of `node` (an operator), with everything after it.
    fn node_input(&self, node: usize) -> Result<AnyBox> {
        let output = self.node_output(node)?;
        let ctx = self.context(node);
        let metrics = self.operator_metrics(&ctx);
        match &self.job.stream.nodes[node].kind {
            NodeKind::Operator(factory) => factory.build(&ctx, output, metrics, self.restored(node, &ctx)?),
            NodeKind::Source { .. } => Err(crate::Error::InvalidGraph(format!(
                "source '{}' cannot consume input",
                self.job.stream.nodes[node].name
            ))),
        }
    }

    /// Where the records `node` emits go: chained operators and writers.
    fn node_output(&self, node: usize) -> Result<AnyBox> {
        let job = self.job;
        let mut outputs = Vec::new();
        for (i, e) in job.stream.edges.iter().enumerate().filter(|(_, e)| e.source == node) {
            if job.chained[i] {
                outputs.push(self.node_input(e.target)?);
                continue;
            }
            let consumer = &job.vertices[job.node_vertex[e.target]];
            let partitioning = job.partitioning[i];
            let consumers: Vec<u32> = if partitioning == Partitioning::Forward {
                vec![self.id.subtask]
            } else {
                (0..consumer.parallelism).collect()
            };
            let senders = consumers
                .iter()
                .map(|&c| {
                    let key = self.channel(i, self.id.subtask, c);
                    self.shuffle.sender(key, e.stream_type.as_ref(), job.settings.channel_capacity, self.placement)
                })
                .collect::<Result<Vec<_>>>()?;
            let job_id = self.id.job.to_string();
            let subtask = self.id.subtask.to_string();
            let spec = WriterSpec {
                partitioning,
                max_parallelism: job.settings.max_parallelism,
                subtask: self.id.subtask,
                batch_size: job.settings.batch_size,
                back_pressure: metrics::global().back_pressure(&[&job_id, &job.name, &self.task_name, &subtask]),
                description: format!("output of '{}' to '{}'", job.stream.nodes[node].name, consumer.name),
                canceled: self.canceled.clone(),
            };
            outputs.push(e.writer.build(senders, spec)?);
        }
        let ty = &job.stream.nodes[node].out_type;
        Ok(match outputs.len() {
            0 => ty.discard(),
            1 => outputs.remove(0),
            _ => ty.fan_out(outputs)?,
        })
    }

    fn channel(&self, edge: usize, producer: u32, consumer: u32) -> ChannelKey {
        ChannelKey { job: self.id.job, attempt: self.id.attempt, edge, producer, consumer }
    }
}

/// Builds the runnable subtask `id` of `job`, taking its channel ends from
/// `shuffle`. An operator subtask claims its input channels before it opens
/// its chain, so that if opening fails its inputs close with it and its
/// producers see a closed channel rather than one that never drains.
/// `canceled` is the subtask's cancel flag (its writers watch it while
/// blocked).
pub(crate) fn build_subtask(
    job: &JobGraph,
    id: SubtaskId,
    shuffle: &Shuffle,
    placement: &Placement,
    restore: Option<&RestorePlan>,
    canceled: &Arc<AtomicBool>,
) -> Result<Box<dyn Invokable>> {
    let vertex = &job.vertices[id.vertex];
    let builder = Builder { job, id, shuffle, placement, task_name: vertex.name.clone(), restore, canceled };
    let head = vertex.operators[0].node;
    match &job.stream.nodes[head].kind {
        NodeKind::Source { factory, .. } => {
            let output = builder.node_output(head)?;
            let ctx = builder.context(head);
            let metrics = builder.operator_metrics(&ctx);
            // Its own subtask's saved position, or every old subtask's when
            // the source asks for union state (to restore at another parallelism).
            let restore = match restore {
                Some(plan) => plan.blobs_for(&ctx.operator_id, factory.union_state(), id.subtask, ctx.parallelism)?,
                None => Vec::new(),
            };
            factory.build(ctx, output, metrics, restore)
        }
        NodeKind::Operator(_) => {
            let mut receivers = Vec::new();
            let mut stream_type = None;
            for e in job.edges.iter().filter(|e| e.target == id.vertex) {
                let se = &job.stream.edges[e.stream_edge];
                stream_type = Some(se.stream_type.clone());
                let producers: Vec<u32> = if e.partitioning == Partitioning::Forward {
                    vec![id.subtask]
                } else {
                    (0..job.vertices[e.source].parallelism).collect()
                };
                for p in producers {
                    let key = builder.channel(e.stream_edge, p, id.subtask);
                    receivers.push(shuffle.receiver(
                        key,
                        se.stream_type.as_ref(),
                        job.settings.channel_capacity,
                        placement,
                    )?);
                }
            }
            let ty = stream_type.ok_or_else(|| {
                crate::Error::InvalidGraph(format!("operator '{}' has no input", job.stream.nodes[head].name))
            })?;
            let input = builder.node_input(head)?;
            ty.input_task(receivers, input)
        }
    }
}
