//! `DataStream`, `KeyedStream` and `DataStreamSink`: the transformations a
//! job is built from.
//!
//! Each call records a node in the environment's stream graph and returns a
//! handle; nothing runs until `execute`. Settings such as
//! `set_parallelism`, `name` and `uid` apply to the operator the handle was
//! returned by.

use super::environment::{EnvState, StreamExecutionEnvironment};
use super::functions::{KeyedProcessFunction, ProcessFunction};
use super::side_output::{DecodeSide, OutputTag, SideRecord, Tagged};
use super::watermarks::{TimestampFn, TimestampsAndWatermarksOp, WatermarkStrategy};
use super::windows::{WindowAssigner, WindowedStream};
use crate::graph::stream_graph::{NodeKind, StreamEdge, StreamNode};
use crate::graph::Partitioning;
use crate::record::{Data, Key, RecordDisplay};
use crate::runtime::context::RuntimeContext;
use crate::runtime::element::Watermark;
use crate::runtime::erased::{TypedOperatorFactory, TypedStream, TypedWriterFactory};
use crate::runtime::keyed::{KeyedProcessOp, ReduceOp};
use crate::runtime::operator::StreamOperator;
use crate::runtime::operators::{FilterOp, FlatMapOp, MapOp, ProcessOp, SinkOp};
use crate::runtime::writer::KeyHash;
use crate::sink::two_phase::TwoPhaseCommitOp;
use crate::sink::{PrintSink, Sink, TextFileSink, TwoPhaseCommitSink};
use sluice_checkpoint::key_group::stable_hash;
use std::ops::AddAssign;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A registered side output: the operator's tagged stream and the side
/// records' timestamps.
type SideOutput<O, S> = (DataStream<Tagged<O, S>>, Option<TimestampFn<S>>);

struct Upstream<T> {
    node: usize,
    partitioning: Option<Partitioning>,
    key_hash: Option<KeyHash<T>>,
}

impl<T> Clone for Upstream<T> {
    fn clone(&self) -> Self {
        Upstream { node: self.node, partitioning: self.partitioning, key_hash: self.key_hash.clone() }
    }
}

/// A stream of records of type `T`.
pub struct DataStream<T> {
    env: StreamExecutionEnvironment,
    inputs: Vec<Upstream<T>>,
    /// The operator that produced this stream, if it is a single one.
    node: Option<usize>,
    /// How to read a record's event-time timestamp, if the stream has them.
    pub(crate) timestamps: Option<TimestampFn<T>>,
}

impl<T> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        DataStream {
            env: self.env.clone(),
            inputs: self.inputs.clone(),
            node: self.node,
            timestamps: self.timestamps.clone(),
        }
    }
}

/// Clones a prototype per subtask from a shared, lockable original.
fn prototype<P: Clone + Send + 'static>(p: P) -> impl Fn() -> P + Send + Sync + 'static {
    let cell = Mutex::new(p);
    move || match cell.lock() {
        Ok(g) => g.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

impl<T: Data> DataStream<T> {
    pub(crate) fn from_node(env: StreamExecutionEnvironment, node: usize) -> Self {
        DataStream {
            env,
            inputs: vec![Upstream { node, partitioning: None, key_hash: None }],
            node: Some(node),
            timestamps: None,
        }
    }

    /// Splits the tagged output of this stream's operator into the main
    /// stream and side output `tag` (kept for [`get_side_output`](Self::get_side_output)).
    /// Settings on the returned main stream apply to the operator.
    pub(crate) fn split_side_output<O: Data, S: Data>(
        tagged: DataStream<Tagged<O, S>>,
        tag: &OutputTag<S>,
        side_timestamps: Option<TimestampFn<S>>,
    ) -> DataStream<O> {
        let key = tag.id().to_string();
        DataStream::<O>::main_of(tagged, move |state, operator, tagged| {
            let side: SideOutput<O, S> = (tagged, side_timestamps);
            state.side_outputs.insert((operator, key), Box::new(side));
        })
    }

    /// The main stream of a process function's operator, whose side
    /// outputs [`get_side_output`](Self::get_side_output) can then read.
    fn with_process_side_outputs<O: Data>(tagged: DataStream<Tagged<O, SideRecord>>) -> DataStream<O> {
        DataStream::<O>::main_of(tagged, |state, operator, tagged| {
            state.process_side_outputs.insert(operator, Box::new(tagged));
        })
    }

    /// The main stream of an operator with side outputs: a projection of
    /// its tagged output chained to it at its parallelism; settings on the
    /// returned stream apply to the operator. `keep` stores the tagged
    /// stream (by operator node) for [`get_side_output`](Self::get_side_output).
    fn main_of<S: Data>(
        tagged: DataStream<Tagged<T, S>>,
        keep: impl FnOnce(&mut EnvState, usize, DataStream<Tagged<T, S>>),
    ) -> DataStream<T> {
        let Some(operator) = tagged.node else {
            tagged.record_error("side outputs need a single operator");
            return DataStream::defective(&tagged.env);
        };
        let main = tagged.flat_map(Tagged::main).name("Main Output").inherit_parallelism(operator);
        keep(&mut tagged.env.state.borrow_mut(), operator, tagged.clone());
        DataStream { node: Some(operator), ..main }
    }

    /// An empty stream standing in for one a mistake (already recorded with
    /// [`record_error`](Self::record_error)) kept from being built.
    fn defective(env: &StreamExecutionEnvironment) -> DataStream<T> {
        DataStream { env: env.clone(), inputs: Vec::new(), node: None, timestamps: None }
    }

    /// The side output `tag` of this stream's operator (Flink's
    /// `getSideOutput`): records a process function sent there with
    /// `ctx.output(&tag, ..)`, or the late records of a window operator set
    /// up with [`side_output_late_data`](super::windows::WindowedStream::side_output_late_data).
    /// See [`super::side_output`].
    pub fn get_side_output<S: Data>(&self, tag: &OutputTag<S>) -> DataStream<S> {
        let found = self.node.and_then(|n| {
            let st = self.env.state.borrow();
            st.side_outputs.get(&(n, tag.id().to_string()))?.downcast_ref::<SideOutput<T, S>>().cloned()
        });
        if found.is_none() {
            let process = self.node.and_then(|n| {
                let st = self.env.state.borrow();
                let tagged = st.process_side_outputs.get(&n)?.downcast_ref::<DataStream<Tagged<T, SideRecord>>>()?;
                Some((n, tagged.clone()))
            });
            if let Some((operator, tagged)) = process {
                let decode = tag.clone();
                return tagged
                    .transform(&format!("Side Output({})", tag.id()), move |_| Box::new(DecodeSide::new(&decode)))
                    .inherit_parallelism(operator);
            }
        }
        let Some((tagged, timestamps)) = found else {
            self.record_error(&format!(
                "get_side_output('{}'): this operator has no side output with that tag and record type \
                 (side outputs come from process functions, with ctx.output, and from windows, with \
                 side_output_late_data)",
                tag.id()
            ));
            return DataStream::defective(&self.env);
        };
        let operator = tagged.node;
        let mut side = tagged.flat_map(Tagged::side).name(&format!("Side Output({})", tag.id()));
        if let Some(op) = operator {
            side = side.inherit_parallelism(op);
        }
        side.timestamps = timestamps;
        side
    }

    /// Without a parallelism of its own, this operator runs at `node`'s.
    fn inherit_parallelism(self, node: usize) -> Self {
        self.with_node("inherit_parallelism", |n| n.parallelism_of = Some(node))
    }

    /// Records a mistake in the job's definition; `execute` reports it.
    pub(crate) fn record_error(&self, message: &str) {
        self.env.state.borrow_mut().errors.push(message.to_string());
    }

    pub(crate) fn add_node<O: Data>(&self, name: &str, kind: NodeKind, keyed: bool) -> DataStream<O> {
        let mut st = self.env.state.borrow_mut();
        st.graph.nodes.push(StreamNode {
            name: name.to_string(),
            uid: None,
            parallelism: None,
            kind,
            out_type: TypedStream::<O>::arc(),
            chain_head: false,
            keyed,
            union_state: false,
            parallelism_of: None,
        });
        let target = st.graph.nodes.len() - 1;
        for up in &self.inputs {
            st.graph.edges.push(StreamEdge {
                source: up.node,
                target,
                partitioning: up.partitioning,
                stream_type: TypedStream::<T>::arc(),
                writer: Arc::new(TypedWriterFactory::<T> { key_hash: up.key_hash.clone() }),
            });
        }
        drop(st);
        DataStream::from_node(self.env.clone(), target)
    }

    /// Applies a custom [`StreamOperator`] built per subtask by `make`.
    pub fn transform<O, F>(&self, name: &str, make: F) -> DataStream<O>
    where
        O: Data,
        F: Fn(&RuntimeContext) -> Box<dyn StreamOperator<T, O>> + Send + Sync + 'static,
    {
        self.add_node(name, NodeKind::Operator(TypedOperatorFactory::arc(make)), false)
    }

    /// One output per record.
    pub fn map<O: Data, F: Fn(T) -> O + Send + Sync + 'static>(&self, f: F) -> DataStream<O> {
        let f = Arc::new(f);
        self.transform("Map", move |_| Box::new(MapOp(f.clone())))
    }

    /// Any number of outputs per record.
    pub fn flat_map<O, I, F>(&self, f: F) -> DataStream<O>
    where
        O: Data,
        I: IntoIterator<Item = O> + 'static,
        F: Fn(T) -> I + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.transform("Flat Map", move |_| Box::new(FlatMapOp(f.clone())))
    }

    /// Keeps the records for which `f` is true.
    pub fn filter<F: Fn(&T) -> bool + Send + Sync + 'static>(&self, f: F) -> DataStream<T> {
        let f = Arc::new(f);
        let mut out = self.transform("Filter", move |_| Box::new(FilterOp(f.clone())));
        out.timestamps = self.timestamps.clone();
        out
    }

    /// Reads each record's event-time timestamp and generates watermarks
    /// as `strategy` says (see [`super::watermarks`]).
    pub fn assign_timestamps_and_watermarks(&self, strategy: WatermarkStrategy<T>) -> DataStream<T> {
        let Some(timestamps) = strategy.timestamps.clone() else {
            self.record_error("assign_timestamps_and_watermarks needs WatermarkStrategy::with_timestamp_assigner(..)");
            return self.clone();
        };
        let ts = timestamps.clone();
        let mut out = self.transform("Timestamps/Watermarks", move |_| {
            Box::new(TimestampsAndWatermarksOp::new(&strategy, ts.clone()))
        });
        out.timestamps = Some(timestamps);
        out
    }

    /// Gives the records of this stream event-time timestamps without
    /// generating watermarks (the watermarks of upstream keep flowing), e.g.
    /// after a window whose results carry their window's time.
    pub fn with_timestamps(&self, f: impl Fn(&T) -> i64 + Send + Sync + 'static) -> DataStream<T> {
        let mut out = self.clone();
        out.timestamps = Some(Arc::new(f));
        out
    }

    /// Runs a [`ProcessFunction`]; each subtask gets a clone of `function`.
    /// Its side outputs (`ctx.output`) are read with
    /// [`get_side_output`](Self::get_side_output) on the returned stream.
    pub fn process<O: Data, P: ProcessFunction<T, O> + Clone>(&self, function: P) -> DataStream<O> {
        let make = prototype(function);
        let tagged = self.transform("Process", move |_| {
            Box::new(ProcessOp { function: make(), watermark: Watermark::MIN, subtask: 0 })
        });
        DataStream::<O>::with_process_side_outputs(tagged)
    }

    /// Partitions by key: records with equal keys go to the same subtask.
    pub fn key_by<K: Key, F: Fn(&T) -> K + Send + Sync + 'static>(&self, key_selector: F) -> KeyedStream<T, K> {
        let selector: Arc<dyn Fn(&T) -> K + Send + Sync> = Arc::new(key_selector);
        let s = selector.clone();
        let key_hash: KeyHash<T> = Arc::new(move |t: &T| stable_hash(&s(t)));
        let stream = self.repartition(Partitioning::Hash, Some(key_hash));
        KeyedStream { stream, selector }
    }

    fn repartition(&self, partitioning: Partitioning, key_hash: Option<KeyHash<T>>) -> DataStream<T> {
        DataStream {
            env: self.env.clone(),
            inputs: self
                .inputs
                .iter()
                .map(|u| Upstream { node: u.node, partitioning: Some(partitioning), key_hash: key_hash.clone() })
                .collect(),
            node: None,
            timestamps: self.timestamps.clone(),
        }
    }

    /// Distributes records round robin to the next operator's subtasks.
    pub fn rebalance(&self) -> DataStream<T> {
        self.repartition(Partitioning::Rebalance, None)
    }

    /// Sends every record to every subtask of the next operator.
    pub fn broadcast(&self) -> DataStream<T> {
        self.repartition(Partitioning::Broadcast, None)
    }

    /// Subtask *i* feeds subtask *i* of the next operator (equal parallelism).
    pub fn forward(&self) -> DataStream<T> {
        self.repartition(Partitioning::Forward, None)
    }

    /// Merges streams of the same type.
    pub fn union(&self, other: &DataStream<T>) -> DataStream<T> {
        let mut inputs = self.inputs.clone();
        inputs.extend(other.inputs.iter().cloned());
        let timestamps = if other.timestamps.is_some() { self.timestamps.clone() } else { None };
        DataStream { env: self.env.clone(), inputs, node: None, timestamps }
    }

    fn with_node(self, what: &str, f: impl FnOnce(&mut StreamNode)) -> Self {
        {
            let mut st = self.env.state.borrow_mut();
            match self.node {
                Some(n) => f(&mut st.graph.nodes[n]),
                None => st.errors.push(format!(
                    "{what} was called on a union or repartitioned stream, which is no single operator; call it on the operator before"
                )),
            }
        }
        self
    }

    /// Sets this operator's parallelism (level 1 of 5: wins over all others).
    pub fn set_parallelism(self, parallelism: u32) -> Self {
        self.with_node("set_parallelism", |n| n.parallelism = Some(parallelism))
    }

    /// Sets this operator's display name.
    pub fn name(self, name: &str) -> Self {
        self.with_node("name", |n| n.name = name.to_string())
    }

    /// Sets this operator's stable id, which maps its state on restore.
    pub fn uid(self, uid: &str) -> Self {
        self.with_node("uid", |n| n.uid = Some(uid.to_string()))
    }

    /// Starts a new chain at this operator (it is not chained to its input).
    pub fn start_new_chain(self) -> Self {
        self.with_node("start_new_chain", |n| n.chain_head = true)
    }

    /// Writes every record to a [`Sink`]; each subtask gets a clone of `sink`.
    pub fn add_sink<S: Sink<T> + Clone>(&self, sink: S) -> DataStreamSink {
        self.sink_named(sink, "Sink: Custom Sink")
    }

    fn sink_named<S: Sink<T> + Clone>(&self, sink: S, name: &str) -> DataStreamSink {
        let make = prototype(sink);
        let stream: DataStream<()> = self.add_node(
            name,
            NodeKind::Operator(TypedOperatorFactory::arc(move |_: &RuntimeContext| {
                Box::new(SinkOp(make())) as Box<dyn StreamOperator<T, ()>>
            })),
            false,
        );
        DataStreamSink { stream }
    }

    /// Writes every record through a [`TwoPhaseCommitSink`] (exactly-once
    /// with checkpoints); each subtask gets a clone of `sink`.
    pub fn sink_to<S: TwoPhaseCommitSink<T> + Clone>(&self, sink: S) -> DataStreamSink {
        let make = prototype(sink);
        let stream: DataStream<()> = self.add_node(
            "Sink: Two-Phase Commit",
            NodeKind::Operator(TypedOperatorFactory::arc(move |_: &RuntimeContext| {
                Box::new(TwoPhaseCommitOp::new(make())) as Box<dyn StreamOperator<T, ()>>
            })),
            false,
        );
        if let Some(n) = stream.node {
            self.env.state.borrow_mut().graph.nodes[n].union_state = true;
        }
        DataStreamSink { stream }
    }

    /// Prints records to stdout as Flink does: `2> (hello,3)` (prefix only
    /// with parallelism above 1).
    pub fn print(&self) -> DataStreamSink
    where
        T: RecordDisplay,
    {
        self.sink_named(PrintSink::new(), "Sink: Print to Std. Out")
    }

    /// Prints records to stderr.
    pub fn print_to_err(&self) -> DataStreamSink
    where
        T: RecordDisplay,
    {
        self.sink_named(PrintSink::to_stderr(), "Sink: Print to Std. Err")
    }

    /// Writes records as text lines: a file at parallelism 1, a directory of
    /// per-subtask files (`1`, `2`, ...) above.
    pub fn write_as_text(&self, path: impl Into<PathBuf>) -> DataStreamSink
    where
        T: RecordDisplay,
    {
        self.sink_named(TextFileSink::new(path), "Sink: Text File")
    }
}

/// A stream partitioned by key; keyed operators keep state per key.
pub struct KeyedStream<T, K> {
    pub(crate) stream: DataStream<T>,
    pub(crate) selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
}

impl<T: Data, K: Key> KeyedStream<T, K> {
    /// Adds a keyed operator (its state is cut by key group on restore).
    pub(crate) fn keyed_node<O: Data, F>(&self, name: &str, make: F) -> DataStream<O>
    where
        F: Fn(&RuntimeContext) -> Box<dyn StreamOperator<T, O>> + Send + Sync + 'static,
    {
        self.stream.add_node(name, NodeKind::Operator(TypedOperatorFactory::arc(make)), true)
    }

    fn reducing<F: Fn(&mut T, T) + Send + Sync + 'static>(&self, name: &str, f: F) -> DataStream<T> {
        let f = Arc::new(f);
        let selector = self.selector.clone();
        self.keyed_node(name, move |_| Box::new(ReduceOp::new(f.clone(), selector.clone())))
    }

    /// Cuts the keyed stream into windows (see [`super::windows`]).
    pub fn window(&self, assigner: WindowAssigner) -> WindowedStream<T, K> {
        WindowedStream {
            keyed: KeyedStream { stream: self.stream.clone(), selector: self.selector.clone() },
            assigner,
            allowed_lateness: std::time::Duration::ZERO,
            late_data: None,
        }
    }

    /// Combines each record with its key's accumulated value. Streaming
    /// mode emits every new value; batch mode emits each key's final value.
    pub fn reduce<F: Fn(T, T) -> T + Send + Sync + 'static>(&self, f: F) -> DataStream<T> {
        self.reducing("Keyed Reduce", move |acc: &mut T, v: T| *acc = f(acc.clone(), v))
    }

    /// Adds up the numeric field `field` per key, keeping the other fields
    /// of the first record (Flink's `sum`). `field` selects the field, e.g.
    /// `|t: &mut (String, i64)| &mut t.1`.
    pub fn sum<N, F>(&self, field: F) -> DataStream<T>
    where
        N: AddAssign + Copy + 'static,
        F: Fn(&mut T) -> &mut N + Send + Sync + 'static,
    {
        self.reducing("Keyed Aggregation", move |acc: &mut T, mut v: T| {
            let add = *field(&mut v);
            *field(acc) += add;
        })
    }

    /// Runs a [`KeyedProcessFunction`] with per-key state and timers.
    /// Its side outputs (`ctx.output`) are read with
    /// [`get_side_output`](DataStream::get_side_output) on the returned stream.
    pub fn process<O: Data, P: KeyedProcessFunction<K, T, O> + Clone>(&self, function: P) -> DataStream<O> {
        let make = prototype(function);
        let selector = self.selector.clone();
        let timestamps = self.stream.timestamps.clone();
        let tagged = self.keyed_node("Keyed Process", move |_| {
            Box::new(KeyedProcessOp::new(make(), selector.clone(), timestamps.clone()))
        });
        DataStream::<O>::with_process_side_outputs(tagged)
    }
}

/// The handle of a sink, to set its parallelism, name and uid.
pub struct DataStreamSink {
    stream: DataStream<()>,
}

impl DataStreamSink {
    /// Sets the sink's parallelism.
    pub fn set_parallelism(self, parallelism: u32) -> Self {
        DataStreamSink { stream: self.stream.set_parallelism(parallelism) }
    }

    /// Sets the sink's display name.
    pub fn name(self, name: &str) -> Self {
        DataStreamSink { stream: self.stream.name(name) }
    }

    /// Sets the sink's stable id.
    pub fn uid(self, uid: &str) -> Self {
        DataStreamSink { stream: self.stream.uid(uid) }
    }
}
