//! The `high-availability.*` keys, checked, and the services they make.

use super::etcd::EtcdHa;
use super::{HaError, HighAvailabilityServices};
use sluice::config::Configuration;
use sluice::error::{Error, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The default `high-availability.etcd.lease-ttl`: a killed leader is
/// replaced within about this long (Flink's ZooKeeper session and
/// Kubernetes lease default to 15 s; 3 s keeps fail-over under 5 s).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(3);

/// High-availability settings of a JobManager, TaskManager or CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaSettings {
    /// `high-availability.type: none` (the default): one JobManager whose
    /// loss ends its jobs.
    None,
    /// `high-availability.type: etcd`.
    Etcd {
        /// `high-availability.etcd.endpoints`, e.g. `http://10.0.0.5:2379`.
        endpoints: Vec<String>,
        /// `high-availability.cluster-id`.
        cluster_id: String,
        /// `high-availability.storageDir` (JobManagers only need it).
        storage_dir: Option<PathBuf>,
        /// `high-availability.etcd.lease-ttl`.
        lease_ttl: Duration,
        /// `high-availability.etcd.ssl.*`: TLS towards etcd (https://
        /// endpoints).
        tls: Option<EtcdTls>,
    },
}

/// TLS towards etcd: the CA that signed its server certificate, and the
/// certificate and key Sluice presents when etcd checks clients
/// (`--client-cert-auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// `high-availability.etcd.ssl.trust-cert`.
    pub trust_cert: PathBuf,
    /// `high-availability.etcd.ssl.cert` and `.key`.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// `high-availability.etcd.ssl.server-name`.
    pub server_name: Option<String>,
}

impl EtcdTls {
    /// From `conf`, for `endpoints`: TLS when they are https:// (then a
    /// trust certificate is required); each problem names its key.
    fn from_config(conf: &Configuration, endpoints: &[String]) -> Result<Option<Self>> {
        let https = endpoints.iter().filter(|e| e.starts_with("https://")).count();
        let trust = conf.get_str("high-availability.etcd.ssl.trust-cert")?;
        let cert = conf.get_str("high-availability.etcd.ssl.cert")?;
        let key = conf.get_str("high-availability.etcd.ssl.key")?;
        let server_name = conf.get_str("high-availability.etcd.ssl.server-name")?;
        if https == 0 {
            if trust.is_some() || cert.is_some() || key.is_some() {
                return Err(Error::user(
                    "high-availability.etcd.ssl.* is set but high-availability.etcd.endpoints are not https:// \
                     URLs: write them as https://HOST:PORT to talk TLS to etcd",
                ));
            }
            return Ok(None);
        }
        if https != endpoints.len() {
            return Err(Error::user(
                "high-availability.etcd.endpoints mixes http:// and https:// URLs: use https:// for all of them",
            ));
        }
        let trust_cert = trust.map(PathBuf::from).ok_or_else(|| {
            Error::user(
                "high-availability.etcd.endpoints are https:// but high-availability.etcd.ssl.trust-cert is not set: \
                 name the PEM file of the CA that signed etcd's certificate",
            )
        })?;
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            _ => {
                return Err(Error::user(
                    "set both high-availability.etcd.ssl.cert and high-availability.etcd.ssl.key, or neither",
                ))
            }
        };
        Ok(Some(EtcdTls { trust_cert, identity, server_name }))
    }
}

impl HaSettings {
    /// From `conf`; each problem names its key.
    pub fn from_config(conf: &Configuration) -> Result<Self> {
        match conf.get_str("high-availability.type")?.as_deref() {
            None | Some("none") | Some("NONE") => Ok(HaSettings::None),
            Some("etcd") => {
                let endpoints: Vec<String> = conf
                    .get_str("high-availability.etcd.endpoints")?
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(|e| if e.contains("://") { e.to_string() } else { format!("http://{e}") })
                    .collect();
                if endpoints.is_empty() {
                    return Err(Error::user(
                        "high-availability.type is etcd but high-availability.etcd.endpoints is not set \
                         (e.g. http://127.0.0.1:2379)",
                    ));
                }
                let cluster_id = conf.get_str("high-availability.cluster-id")?.unwrap_or_else(|| "default".into());
                if cluster_id.is_empty()
                    || !cluster_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                {
                    return Err(Error::user(format!(
                        "high-availability.cluster-id '{cluster_id}' must be letters, digits, '-', '_' or '.'"
                    )));
                }
                let lease_ttl = conf.get_duration("high-availability.etcd.lease-ttl")?.unwrap_or(DEFAULT_LEASE_TTL);
                if lease_ttl < Duration::from_secs(1) {
                    return Err(Error::user(format!(
                        "high-availability.etcd.lease-ttl is {lease_ttl:?}; etcd leases last whole seconds, at least 1s"
                    )));
                }
                let tls = EtcdTls::from_config(conf, &endpoints)?;
                Ok(HaSettings::Etcd {
                    endpoints,
                    cluster_id,
                    storage_dir: conf.get_str("high-availability.storageDir")?.map(PathBuf::from),
                    lease_ttl,
                    tls,
                })
            }
            Some(other) => Err(Error::user(format!("high-availability.type '{other}' is not one of: none, etcd"))),
        }
    }

    /// Whether high availability is on.
    pub fn enabled(&self) -> bool {
        !matches!(self, HaSettings::None)
    }

    /// Connects to the coordination service (`None` without high
    /// availability). Fails with an error naming the endpoints key if it
    /// cannot be reached.
    pub fn services(&self) -> std::result::Result<Option<Arc<dyn HighAvailabilityServices>>, HaError> {
        match self {
            HaSettings::None => Ok(None),
            HaSettings::Etcd { endpoints, cluster_id, lease_ttl, tls, .. } => {
                Ok(Some(Arc::new(EtcdHa::connect(endpoints, cluster_id, *lease_ttl, tls.as_ref())?)))
            }
        }
    }

    /// The storage directory of this cluster id, created and checked
    /// writable (a JobManager's start).
    pub fn storage(&self) -> std::result::Result<Option<PathBuf>, HaError> {
        let HaSettings::Etcd { storage_dir, cluster_id, .. } = self else { return Ok(None) };
        let base = storage_dir.as_ref().ok_or_else(|| {
            HaError::Storage(
                "not set; JobManagers keep job records there (a directory every JobManager host shares)".into(),
            )
        })?;
        let dir = base.join(cluster_id);
        std::fs::create_dir_all(dir.join("jobs"))
            .and_then(|()| std::fs::create_dir_all(dir.join("artifacts")))
            .map_err(|e| HaError::Storage(format!("cannot create '{}': {e}", dir.display())))?;
        let probe = dir.join(format!(".probe-{}", std::process::id()));
        std::fs::write(&probe, b"probe")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| HaError::Storage(format!("'{}' is not writable: {e}", dir.display())))?;
        Ok(Some(dir))
    }
}
