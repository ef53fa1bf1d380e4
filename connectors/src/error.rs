//! The error type of the connectors crate.

/// Errors of the connectors: bad options, and what a connector found while
/// running (which reaches the job through `sluice::Error`, which this
/// converts into).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A connector option has a value that cannot work.
    #[error("invalid option '{option}' for the {connector} connector: {message}")]
    InvalidOption {
        /// The connector, e.g. "datagen".
        connector: &'static str,
        /// The option.
        option: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// The MySQL source failed (see [`MySqlError`](crate::mysql::MySqlError)).
    #[error(transparent)]
    MySql(#[from] crate::mysql::MySqlError),
    /// The MySQL CDC source failed (see
    /// [`CdcError`](crate::mysql::cdc::CdcError)).
    #[error(transparent)]
    MySqlCdc(#[from] crate::mysql::cdc::CdcError),
    /// A Kafka connector failed (see [`KafkaError`](crate::kafka::KafkaError)).
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaError),
}

impl From<Error> for sluice::Error {
    fn from(e: Error) -> Self {
        match e {
            // A broken invariant of the connector, not a fault of the job.
            Error::MySql(e @ crate::mysql::MySqlError::NotOpen(_)) => sluice::Error::internal(e.to_string()),
            Error::MySqlCdc(e @ crate::mysql::cdc::CdcError::NotOpen(_)) => sluice::Error::internal(e.to_string()),
            e => sluice::Error::user(e.to_string()),
        }
    }
}

/// Result alias of the connectors crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
