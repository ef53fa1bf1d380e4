//! The DataStream API: what a job's `main` is written against.
//!
//! * [`environment`]: `StreamExecutionEnvironment`, sources, `execute`.
//! * [`datastream`]: `DataStream`, `KeyedStream` and sinks.
//! * [`functions`]: process functions and their contexts.
//! * [`side_output`]: side outputs (late window records).

pub mod datastream;
pub mod environment;
pub mod windows;

// The function contracts, side outputs and watermark strategies are written
// against by users but called by the runtime, so they live below it there
// (the runtime imports nothing from `api`); their API paths stay.
pub use crate::runtime::{functions, side_output, watermarks};
