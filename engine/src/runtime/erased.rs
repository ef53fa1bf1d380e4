//! Type erasure between the typed API and the untyped graphs.
//!
//! The DataStream API knows every record type; the stream and job graphs are
//! built from nodes of different types. Each node and edge therefore carries
//! small factory objects, created where the types were known, that build the
//! typed runtime pieces (channels, writers, chain links, task loops) and pass
//! them around as `Box<dyn Any>`. A downcast happens once per piece when a
//! task is built, never per record.

use crate::error::{Error, Result};
use crate::metrics::OperatorMetrics;
use crate::record::Data;
use crate::runtime::collector::{ChainInput, Discard, FanOut};
use crate::runtime::context::RuntimeContext;
use crate::runtime::element::StreamElement;
use crate::runtime::net::{self, InboundBridge, OutboundLink};
use crate::runtime::operator::StreamOperator;
use crate::runtime::operators::OperatorLink;
use crate::runtime::partitioning::Partitioning;
use crate::runtime::task::{InputTask, Invokable, SourceTask};
use crate::runtime::writer::{KeyHash, Partitioner, RecordWriter};
use crate::source::Source;
use crossbeam_channel::{Receiver, Sender};
use prometheus::IntCounter;
use std::any::Any;
use std::marker::PhantomData;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A type-erased runtime piece.
pub(crate) type AnyBox = Box<dyn Any + Send>;

/// The typed chain input of records of type `T`.
pub(crate) type ChainBox<T> = Box<dyn ChainInput<T>>;

pub(crate) fn downcast<T: 'static>(b: AnyBox, what: &str) -> Result<T> {
    b.downcast::<T>()
        .map(|b| *b)
        .map_err(|_| Error::InvalidGraph(format!("internal type mismatch while building {what}")))
}

/// Builds the runtime pieces that depend only on a stream's record type.
pub(crate) trait StreamType: Send + Sync {
    /// A bounded channel: (sender, receiver) of `StreamElement<T>`.
    fn new_channel(&self, capacity: usize) -> (AnyBox, AnyBox);
    /// A link handing records to several links.
    fn fan_out(&self, outputs: Vec<AnyBox>) -> Result<AnyBox>;
    /// A link that drops records (after a sink).
    fn discard(&self) -> AnyBox;
    /// The task loop reading `receivers` into the chain `head`.
    fn input_task(&self, receivers: Vec<AnyBox>, head: AnyBox) -> Result<Box<dyn Invokable>>;
    /// The consumer's end of a channel fed from another process: the
    /// `Receiver<StreamElement<T>>` (capacity `capacity`) and the bridge that
    /// decodes the channel's connection into it.
    fn inbound_bridge(&self, capacity: usize) -> (AnyBox, InboundBridge);
    /// The producer's end of a channel towards another process: the
    /// `Sender<StreamElement<T>>` (capacity `capacity`) and the running
    /// bridge thread that connects per `link` and forwards the elements.
    fn outbound_bridge(&self, capacity: usize, link: OutboundLink) -> Result<(AnyBox, JoinHandle<Result<()>>)>;
}

/// [`StreamType`] for records of type `T`.
pub(crate) struct TypedStream<T>(PhantomData<fn() -> T>);

impl<T: Data> TypedStream<T> {
    pub(crate) fn arc() -> Arc<dyn StreamType> {
        Arc::new(TypedStream::<T>(PhantomData))
    }
}

impl<T: Data> StreamType for TypedStream<T> {
    fn new_channel(&self, capacity: usize) -> (AnyBox, AnyBox) {
        let (tx, rx) = crossbeam_channel::bounded::<StreamElement<T>>(capacity);
        (Box::new(tx), Box::new(rx))
    }

    fn fan_out(&self, outputs: Vec<AnyBox>) -> Result<AnyBox> {
        let outputs =
            outputs.into_iter().map(|o| downcast::<ChainBox<T>>(o, "a fan-out")).collect::<Result<Vec<_>>>()?;
        Ok(Box::new(Box::new(FanOut { outputs }) as ChainBox<T>))
    }

    fn discard(&self) -> AnyBox {
        Box::new(Box::new(Discard) as ChainBox<T>)
    }

    fn input_task(&self, receivers: Vec<AnyBox>, head: AnyBox) -> Result<Box<dyn Invokable>> {
        let receivers = receivers
            .into_iter()
            .map(|r| downcast::<Receiver<StreamElement<T>>>(r, "an input channel"))
            .collect::<Result<Vec<_>>>()?;
        let head = downcast::<ChainBox<T>>(head, "a task input")?;
        Ok(Box::new(InputTask::new(receivers, head)))
    }

    fn inbound_bridge(&self, capacity: usize) -> (AnyBox, InboundBridge) {
        net::inbound::<T>(capacity)
    }

    fn outbound_bridge(&self, capacity: usize, link: OutboundLink) -> Result<(AnyBox, JoinHandle<Result<()>>)> {
        net::outbound::<T>(capacity, link)
    }
}

/// How a writer is to be built for one producing subtask.
pub(crate) struct WriterSpec {
    pub(crate) partitioning: Partitioning,
    pub(crate) max_parallelism: u32,
    pub(crate) subtask: u32,
    pub(crate) batch_size: usize,
    pub(crate) back_pressure: IntCounter,
    pub(crate) description: String,
    /// The subtask's cancel flag (a blocked send gives up when it is set).
    pub(crate) canceled: Arc<AtomicBool>,
}

/// Builds the record writer of one edge (knows the edge's key, if hashed).
pub(crate) trait WriterFactory: Send + Sync {
    fn build(&self, senders: Vec<AnyBox>, spec: WriterSpec) -> Result<AnyBox>;
}

/// [`WriterFactory`] for records of type `T`.
pub(crate) struct TypedWriterFactory<T> {
    pub(crate) key_hash: Option<KeyHash<T>>,
}

impl<T: Data> WriterFactory for TypedWriterFactory<T> {
    fn build(&self, senders: Vec<AnyBox>, spec: WriterSpec) -> Result<AnyBox> {
        let senders = senders
            .into_iter()
            .map(|s| downcast::<Sender<StreamElement<T>>>(s, "an output channel"))
            .collect::<Result<Vec<_>>>()?;
        let partitioner =
            Partitioner::new(spec.partitioning, self.key_hash.clone(), spec.max_parallelism, spec.subtask)?;
        let writer = RecordWriter::new(
            senders,
            partitioner,
            spec.batch_size,
            spec.back_pressure,
            spec.description,
            spec.canceled,
        );
        Ok(Box::new(Box::new(writer) as ChainBox<T>))
    }
}

/// Builds an operator's chain link for one subtask.
pub(crate) trait OperatorFactory: Send + Sync {
    /// Builds the operator, restores `restore` (snapshots, see
    /// [`StreamOperator::restore_state`]), opens it and wraps it in a link.
    fn build(
        &self,
        ctx: &RuntimeContext,
        next: AnyBox,
        metrics: OperatorMetrics,
        restore: Vec<Vec<u8>>,
    ) -> Result<AnyBox>;
}

/// [`OperatorFactory`] from a typed constructor.
pub(crate) struct TypedOperatorFactory<I, O, F> {
    make: F,
    _types: PhantomData<fn(I) -> O>,
}

impl<I, O, F> TypedOperatorFactory<I, O, F>
where
    I: Data,
    O: Data,
    F: Fn(&RuntimeContext) -> Box<dyn StreamOperator<I, O>> + Send + Sync + 'static,
{
    pub(crate) fn arc(make: F) -> Arc<dyn OperatorFactory> {
        Arc::new(TypedOperatorFactory { make, _types: PhantomData })
    }
}

impl<I, O, F> OperatorFactory for TypedOperatorFactory<I, O, F>
where
    I: Data,
    O: Data,
    F: Fn(&RuntimeContext) -> Box<dyn StreamOperator<I, O>> + Send + Sync,
{
    fn build(
        &self,
        ctx: &RuntimeContext,
        next: AnyBox,
        metrics: OperatorMetrics,
        restore: Vec<Vec<u8>>,
    ) -> Result<AnyBox> {
        let next = downcast::<ChainBox<O>>(next, &format!("the output of '{}'", ctx.operator_name))?;
        let mut op = (self.make)(ctx);
        if !restore.is_empty() {
            let started = std::time::Instant::now();
            for bytes in &restore {
                op.restore_state(ctx, bytes)?;
            }
            let (job_id, subtask) = (ctx.job_id.to_string(), ctx.subtask_index.to_string());
            crate::metrics::global()
                .restore_duration(&[&job_id, &ctx.job_name, &ctx.task_name, &ctx.operator_name, &subtask])
                .set(started.elapsed().as_millis() as i64);
        }
        op.open(ctx)?;
        let link = OperatorLink::new(op, next, metrics, ctx.operator_id.clone());
        Ok(Box::new(Box::new(link) as ChainBox<I>))
    }
}

/// Builds a source subtask.
pub(crate) trait SourceFactory: Send + Sync {
    /// Whether the source restores from every old subtask's state
    /// ([`Source::union_state`]).
    fn union_state(&self) -> bool;

    /// Builds the source subtask, restoring its position from the saved
    /// states in `restore` (at most one unless [`Self::union_state`]).
    fn build(
        &self,
        ctx: RuntimeContext,
        head: AnyBox,
        metrics: OperatorMetrics,
        restore: Vec<Vec<u8>>,
    ) -> Result<Box<dyn Invokable>>;
}

/// [`SourceFactory`] cloning a prototype source per subtask.
pub(crate) struct TypedSourceFactory<T, S> {
    prototype: Mutex<S>,
    _types: PhantomData<fn() -> T>,
}

impl<T: Data, S: Source<T> + Clone> TypedSourceFactory<T, S> {
    pub(crate) fn arc(prototype: S) -> Arc<dyn SourceFactory> {
        Arc::new(TypedSourceFactory { prototype: Mutex::new(prototype), _types: PhantomData })
    }
}

impl<T: Data, S: Source<T> + Clone> SourceFactory for TypedSourceFactory<T, S> {
    fn union_state(&self) -> bool {
        // A poisoned prototype fails in `build` with a message.
        self.prototype.lock().map(|p| p.union_state()).unwrap_or(false)
    }

    fn build(
        &self,
        ctx: RuntimeContext,
        head: AnyBox,
        metrics: OperatorMetrics,
        restore: Vec<Vec<u8>>,
    ) -> Result<Box<dyn Invokable>> {
        let head = downcast::<ChainBox<T>>(head, "a source output")?;
        let mut source = self
            .prototype
            .lock()
            .map_err(|_| Error::internal("a source prototype was poisoned by an earlier panic"))?
            .clone();
        let restored = !restore.is_empty();
        for bytes in restore {
            let state: S::State = postcard::from_bytes(&bytes).map_err(|e| {
                Error::user(format!(
                    "cannot decode the saved position of '{}': {e} (was the savepoint taken by another kind of source?)",
                    ctx.operator_name
                ))
            })?;
            source.restore_state(state)?;
        }
        if restored {
            tracing::info!("{} (subtask {}) restored its position", ctx.operator_name, ctx.subtask_index);
        }
        Ok(Box::new(SourceTask::new(source, head, ctx, metrics)))
    }
}
