//! The DataStream API: what a job's `main` is written against.
//!
//! * [`environment`]: `StreamExecutionEnvironment`, sources, `execute`.
//! * [`datastream`]: `DataStream`, `KeyedStream` and sinks.
//! * [`functions`]: process functions and their contexts.
//! * [`side_output`]: side outputs (late window records).

pub mod datastream;
pub mod environment;
pub mod functions;
pub mod side_output;
pub mod watermarks;
pub mod windows;
