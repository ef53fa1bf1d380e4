//! How Sluice's processes connect: every control (RPC) and data connection
//! of a cluster is a [`SecureStream`] made by one [`Security`], plain TCP on
//! a trusted host or mutual TLS ([`InternalTls`], `security.ssl.internal.*`)
//! on a network. A [`JobSecret`] proves, above TLS, that a peer belongs to a
//! job: a driver to the JobManager, a data connection to its consumer.
//!
//! This is the bottom layer of the cluster's networking: it knows no
//! messages, only streams (`cluster::remote::wire` frames the RPC on top,
//! `runtime::net` the data channels).

mod admission;
mod secret;
mod security;
mod stream;
mod tls;

#[cfg(test)]
pub(crate) mod tests;

pub use admission::{Admission, Admitted};
pub use secret::{random_hex, sha256_hex, JobSecret};
pub use security::{Security, ALLOW_PLAINTEXT_KEY, TLS_CERT_KEY, TLS_ENABLED_KEY, TLS_KEY_KEY, TLS_TRUST_KEY};
pub use stream::SecureStream;
pub use tls::InternalTls;

use std::path::PathBuf;
use std::time::Duration;

/// How many connections one server of a cluster process serves at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// The stack of a thread serving one control connection: its frames are
/// shallow, and a thousand of them must stay cheap.
pub const CONNECTION_THREAD_STACK: usize = 256 * 1024;
/// How long an accepted connection may take for its first message.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a secure connection could not be set up or was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A PEM file could not be used.
    #[error("{}: {problem}; give PEM files made by scripts/cluster-certs.sh (or your CA)", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The TLS settings are incomplete or inconsistent.
    #[error("security.ssl.internal: {0}")]
    Settings(String),
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Tls(String),
    /// A peer did not prove that it belongs to the job it named.
    #[error("{peer} did not prove it belongs to job {job}: wrong or missing job secret")]
    WrongJobSecret {
        /// The peer's address.
        peer: String,
        /// The job it named.
        job: String,
    },
    /// A server would listen on a network address without TLS.
    #[error(
        "refusing to bind the {what} to {addr} without TLS: peers on the network could run code in this \
         cluster. Set security.ssl.internal.enabled: true with certificates (scripts/cluster-certs.sh), bind \
         to 127.0.0.1, or set {key}: true on a network you trust"
    )]
    PlaintextOnNetwork {
        /// The server.
        what: String,
        /// The address asked for.
        addr: String,
        /// The switch that allows it.
        key: &'static str,
    },
}
