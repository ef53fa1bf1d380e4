//! Kafka connectors: a source with checkpointed offsets and sinks with
//! exactly-once (transactions) or at-least-once delivery.
//!
//! ```no_run
//! use sluice::StreamExecutionEnvironment;
//! use sluice_connectors::kafka::{KafkaSource, KafkaTransactionalSink, StartingOffsets};
//! use std::time::Duration;
//!
//! let env = StreamExecutionEnvironment::new();
//! env.enable_checkpointing(Duration::from_secs(1))?;
//! let lines = env.add_source(
//!     KafkaSource::strings("127.0.0.1:9092", &["lines"]).starting_offsets(StartingOffsets::Earliest),
//! );
//! lines
//!     .map(|l: String| l.to_uppercase())
//!     .sink_to(KafkaTransactionalSink::new("127.0.0.1:9092", "upper", "upper-job", |v: &String| {
//!         (None, v.clone().into_bytes())
//!     }));
//! env.execute("upper")?;
//! # Ok::<(), sluice::Error>(())
//! ```
//!
//! See [`source`] and [`sink`] for the guarantees and their limits.

pub mod broker_connection;
mod discovery;
pub mod metrics;
pub mod phases;
pub mod properties;
pub mod protocol;
mod scram;
pub mod sink;
pub mod source;
mod txn_producers;

pub use properties::ClientProperties;
pub use sink::{KafkaSink, KafkaTransaction, KafkaTransactionalSink};
pub use source::{BadRecordPolicy, KafkaSource, StartingOffsets};

/// Errors of the Kafka connectors.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The broker or the client library refused or failed an operation.
    #[error("Kafka: {0}")]
    Client(String),
    /// A topic the job reads does not exist.
    #[error("Kafka topic '{topic}' does not exist on {bootstrap}; create it first (or check the name)")]
    MissingTopic {
        /// The topic.
        topic: String,
        /// The cluster.
        bootstrap: String,
    },
    /// The source was given neither a topic nor a topic pattern.
    #[error("the Kafka source on {bootstrap} has no topics: list topics or set a topic pattern")]
    NoTopics {
        /// The cluster.
        bootstrap: String,
    },
    /// A topic pattern is not a valid regular expression.
    #[error("bad Kafka topic pattern '{pattern}': {message}")]
    BadTopicPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
    /// No broker answered.
    #[error(
        "cannot reach Kafka at {bootstrap} after {attempts} attempts: {message} \
         (is the broker running? locally: scripts/kafka-local.sh start)"
    )]
    Unreachable {
        /// The bootstrap servers.
        bootstrap: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        message: String,
    },
    /// A record could not be deserialized and the policy is to fail.
    #[error(
        "malformed record in {topic} partition {partition} at offset {offset}: {message} \
         (choose BadRecordPolicy::Skip or DeadLetter to go on)"
    )]
    Malformed {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// Why.
        message: String,
    },
}

impl From<KafkaError> for sluice::Error {
    fn from(e: KafkaError) -> Self {
        sluice::Error::user(e.to_string())
    }
}
