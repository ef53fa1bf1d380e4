//! The error type of the checkpoint crate.

/// Errors raised by checkpoint vocabulary and state snapshot handling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key-group range or max parallelism that cannot be valid.
    #[error("invalid key-group configuration: {0}")]
    InvalidKeyGroups(String),
    /// A snapshot could not be encoded or decoded.
    #[error("state snapshot of operator '{operator}' could not be {action}: {message}")]
    Snapshot {
        /// The operator whose state was being handled.
        operator: String,
        /// "encoded" or "decoded".
        action: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
