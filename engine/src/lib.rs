//! # Sluice
//!
//! A stream processing engine in the model of Apache Flink. A job is an
//! ordinary Rust `main`: it builds a dataflow on a
//! [`StreamExecutionEnvironment`] and calls
//! [`execute`](StreamExecutionEnvironment::execute), which turns the
//! recorded stream graph into a job graph (operators chained where possible),
//! expands it into parallel subtasks and runs them on a local mini cluster of
//! a JobManager and TaskManagers with slots.
//!
//! ```
//! use sluice::{RuntimeExecutionMode, StreamExecutionEnvironment};
//!
//! let env = StreamExecutionEnvironment::new();
//! env.set_parallelism(2).set_runtime_mode(RuntimeExecutionMode::Batch);
//! env.from_collection(vec!["to be or not to be".to_string()])
//!     .flat_map(|line: String| line.split(' ').map(|w| (w.to_string(), 1i64)).collect::<Vec<_>>())
//!     .key_by(|(word, _)| word.clone())
//!     .sum(|t: &mut (String, i64)| &mut t.1)
//!     .print();
//! env.execute("WordCount").unwrap();
//! ```
//!
//! Layout, following the architecture: [`api`] (what users write),
//! [`graph`] (stream → job → execution graph), [`runtime`] (what runs in a
//! subtask), [`cluster`] (JobManager, TaskManagers, protocol), [`source`] and
//! [`sink`] (connector contracts and the built-in ones), [`config`],
//! [`params`], [`metrics`].
#![deny(missing_docs)]

pub mod api;
pub mod cluster;
pub mod config;
pub mod error;
pub mod faults;
pub mod graph;
pub mod ids;
pub mod metrics;
pub mod params;
pub mod record;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod transport;

pub use api::datastream::{DataStream, DataStreamSink, KeyedStream};
pub use api::environment::{RuntimeExecutionMode, StreamExecutionEnvironment};
pub use api::functions::{KeyedContext, KeyedProcessFunction, ProcessContext, ProcessFunction};
pub use api::side_output::OutputTag;
pub use api::watermarks::WatermarkStrategy;
pub use api::windows::{TimeWindow, WindowAssigner, WindowedStream};
pub use cluster::{JobClient, JobExecutionResult, JobStatus};
pub use config::Configuration;
pub use error::{Error, FailureCause, Result};
pub use ids::JobId;
pub use params::ParameterTool;
pub use record::{Data, Key, RecordDisplay};
pub use runtime::{Collector, RuntimeContext, RuntimeMode, StateDescriptor, StreamOperator, TimeEvent, Watermark};
pub use sink::{FileSink, Sink, TwoPhaseCommitSink};
/// Keyed state: handles, TTL, backends (re-exported from `sluice-checkpoint`).
pub use sluice_checkpoint::state;
pub use sluice_checkpoint::CheckpointId;
pub use source::{Boundedness, Source, SourceStatus};
