//! [`Security`]: how this process makes and accepts cluster connections.

use super::stream::SecureStream;
use super::tls::{InternalTls, CLUSTER_SERVER_NAME};
use super::SecurityError;
use crate::config::Configuration;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, Connection, ServerConnection};
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// `security.ssl.internal.enabled`: mutual TLS on every RPC and data connection.
pub const TLS_ENABLED_KEY: &str = "security.ssl.internal.enabled";
/// `security.ssl.internal.cert`: this process's certificate chain (PEM).
pub const TLS_CERT_KEY: &str = "security.ssl.internal.cert";
/// `security.ssl.internal.key`: its private key (PEM).
pub const TLS_KEY_KEY: &str = "security.ssl.internal.key";
/// `security.ssl.internal.trust-cert`: the cluster CA's certificate (PEM).
pub const TLS_TRUST_KEY: &str = "security.ssl.internal.trust-cert";
/// `security.internal.allow-plaintext-network`: let servers without TLS bind
/// to non-loopback addresses (a network the user trusts).
pub const ALLOW_PLAINTEXT_KEY: &str = "security.internal.allow-plaintext-network";

/// How long a peer may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How this process makes and accepts cluster connections: plain TCP (on
/// loopback, or where the user allowed it) or mutual TLS.
#[derive(Debug, Clone, Default)]
pub struct Security {
    tls: Option<Arc<InternalTls>>,
    allow_plaintext_network: bool,
}

impl Security {
    /// Plain TCP; servers may bind to loopback only.
    pub fn plaintext() -> Self {
        Security::default()
    }

    /// Mutual TLS with `tls`.
    pub fn with_tls(tls: InternalTls) -> Self {
        Security { tls: Some(Arc::new(tls)), allow_plaintext_network: false }
    }

    /// Allows plain TCP servers on non-loopback addresses.
    pub fn allowing_plaintext_network(mut self) -> Self {
        self.allow_plaintext_network = true;
        self
    }

    /// From `security.ssl.internal.*` and [`ALLOW_PLAINTEXT_KEY`].
    pub fn from_config(conf: &Configuration) -> Result<Self, SecurityError> {
        let setting = |e: crate::config::ConfigError| SecurityError::Settings(e.to_string());
        let allow = conf.get_bool(ALLOW_PLAINTEXT_KEY).map_err(setting)?.unwrap_or(false);
        let enabled = conf.get_bool(TLS_ENABLED_KEY).map_err(setting)?.unwrap_or(false);
        let file = |key: &str| -> Result<Option<String>, SecurityError> {
            Ok(conf.get_str(key).map_err(setting)?.filter(|v| !v.trim().is_empty()))
        };
        let (cert, key, trust) = (file(TLS_CERT_KEY)?, file(TLS_KEY_KEY)?, file(TLS_TRUST_KEY)?);
        let mut security = if enabled {
            let (Some(cert), Some(key), Some(trust)) = (cert, key, trust) else {
                return Err(SecurityError::Settings(format!(
                    "{TLS_ENABLED_KEY} is true but {TLS_CERT_KEY}, {TLS_KEY_KEY} and {TLS_TRUST_KEY} must all \
                     name PEM files (scripts/cluster-certs.sh makes them)"
                )));
            };
            Security::with_tls(InternalTls::from_pem_files(Path::new(&cert), Path::new(&key), Path::new(&trust))?)
        } else {
            if cert.is_some() || key.is_some() || trust.is_some() {
                tracing::warn!("security.ssl.internal.* files are set but {TLS_ENABLED_KEY} is not true: no TLS");
            }
            Security::plaintext()
        };
        security.allow_plaintext_network = allow;
        Ok(security)
    }

    /// The TLS settings, if connections use TLS.
    pub fn tls(&self) -> Option<&InternalTls> {
        self.tls.as_deref()
    }

    /// The configuration lines that give a child process the same security
    /// (for job processes started by the JobManager or a TaskManager).
    pub fn config_lines(&self) -> Vec<(String, String)> {
        let mut lines = Vec::new();
        if let Some(tls) = &self.tls {
            let [cert, key, trust] = tls.files();
            lines.push((TLS_ENABLED_KEY.to_string(), "true".to_string()));
            lines.push((TLS_CERT_KEY.to_string(), cert.display().to_string()));
            lines.push((TLS_KEY_KEY.to_string(), key.display().to_string()));
            lines.push((TLS_TRUST_KEY.to_string(), trust.display().to_string()));
        }
        if self.allow_plaintext_network {
            lines.push((ALLOW_PLAINTEXT_KEY.to_string(), "true".to_string()));
        }
        lines
    }

    /// Checks that a server of this process may listen on `addr`
    /// (`host:port`): always with TLS; without, only on loopback unless
    /// the user allowed a plain network (then it logs a warning).
    pub fn check_bind(&self, what: &str, addr: &str) -> Result<(), SecurityError> {
        if self.tls.is_some() {
            return Ok(());
        }
        let loopback = addr
            .to_socket_addrs()
            .map(|addrs| {
                let addrs: Vec<_> = addrs.collect();
                !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
            })
            .unwrap_or(false);
        if loopback {
            return Ok(());
        }
        if self.allow_plaintext_network {
            tracing::warn!(
                "the {what} listens on {addr} without TLS ({ALLOW_PLAINTEXT_KEY}: true): anyone who can reach it \
                 can join the cluster"
            );
            return Ok(());
        }
        Err(SecurityError::PlaintextOnNetwork { what: what.into(), addr: addr.into(), key: ALLOW_PLAINTEXT_KEY })
    }

    /// The server side of an accepted connection (the TLS handshake, which
    /// requires the peer's certificate).
    pub fn accept(&self, socket: TcpStream) -> io::Result<SecureStream> {
        match &self.tls {
            None => Ok(SecureStream::plain(socket)),
            Some(tls) => {
                let conn = ServerConnection::new(tls.server.clone()).map_err(io::Error::other)?;
                SecureStream::handshake(socket, Connection::Server(conn), HANDSHAKE_TIMEOUT)
            }
        }
    }

    /// The client side of a connection this process made.
    pub fn connect(&self, socket: TcpStream) -> io::Result<SecureStream> {
        match &self.tls {
            None => Ok(SecureStream::plain(socket)),
            Some(tls) => {
                let name = ServerName::try_from(CLUSTER_SERVER_NAME).map_err(io::Error::other)?;
                let conn = ClientConnection::new(tls.client.clone(), name).map_err(io::Error::other)?;
                SecureStream::handshake(socket, Connection::Client(conn), HANDSHAKE_TIMEOUT)
            }
        }
    }
}
