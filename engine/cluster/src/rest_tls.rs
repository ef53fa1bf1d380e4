//! TLS on the REST port (`security.ssl.rest.*`, as Flink's): the server's
//! certificate and key, and optionally a trust certificate whose holders
//! alone may connect (client authentication). The CLI trusts
//! `security.ssl.rest.trust-cert` and presents `security.ssl.rest.cert` /
//! `.key` when it connects to an `https://` JobManager.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sluice::config::Configuration;
use sluice::error::{Error, Result};
use std::sync::Arc;

/// `security.ssl.rest.enabled`.
pub const ENABLED_KEY: &str = "security.ssl.rest.enabled";
/// `security.ssl.rest.cert`: the REST server's (or client's) certificate chain (PEM).
pub const CERT_KEY: &str = "security.ssl.rest.cert";
/// `security.ssl.rest.key`: its private key (PEM).
pub const KEY_KEY: &str = "security.ssl.rest.key";
/// `security.ssl.rest.trust-cert`: the CA the server requires clients to
/// present a certificate of (client authentication), and the CA clients
/// trust the server with.
pub const TRUST_KEY: &str = "security.ssl.rest.trust-cert";

fn bad(path: &str, problem: impl std::fmt::Display) -> Error {
    Error::user(format!("{path}: {problem}; give PEM files (scripts/cluster-certs.sh makes them)"))
}

fn chain(path: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(path, e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(path, e))?;
    if certs.is_empty() {
        return Err(bad(path, "holds no certificate"));
    }
    Ok(certs)
}

fn required(conf: &Configuration, key: &str) -> Result<String> {
    conf.get_str(key)?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::user(format!("{ENABLED_KEY} is true but {key} is not set")))
}

/// The server's TLS configuration, if `security.ssl.rest.enabled`; with a
/// trust certificate, clients must present a certificate it signed.
pub fn server_config(conf: &Configuration) -> Result<Option<Arc<rustls::ServerConfig>>> {
    if !conf.get_bool(ENABLED_KEY)?.unwrap_or(false) {
        return Ok(None);
    }
    let (cert, key) = (required(conf, CERT_KEY)?, required(conf, KEY_KEY)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::user(format!("REST TLS: {e}")))?;
    let builder = match conf.get_str(TRUST_KEY)?.filter(|v| !v.is_empty()) {
        Some(trust) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in chain(&trust)? {
                roots.add(c).map_err(|e| bad(&trust, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad(&trust, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let private_key = PrivateKeyDer::from_pem_file(&key).map_err(|e| bad(&key, e))?;
    let config = builder
        .with_single_cert(chain(&cert)?, private_key)
        .map_err(|e| bad(&key, format!("does not match {cert}: {e}")))?;
    Ok(Some(Arc::new(config)))
}

/// Whether clients must present a certificate (a trust certificate is set).
pub fn requires_client_certificates(conf: &Configuration) -> Result<bool> {
    Ok(conf.get_bool(ENABLED_KEY)?.unwrap_or(false) && conf.get_str(TRUST_KEY)?.is_some_and(|v| !v.is_empty()))
}

/// The CLI's TLS settings for an `https://` JobManager: trust
/// `security.ssl.rest.trust-cert` (else the system's web PKI roots are not
/// used: a cluster's REST certificate comes from its own CA), and present
/// `security.ssl.rest.cert` / `.key` if both are set.
pub fn client_config(conf: &Configuration) -> Result<ureq::tls::TlsConfig> {
    use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};
    let read = |path: &str| std::fs::read(path).map_err(|e| bad(path, e));
    let mut builder = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()));
    if let Some(trust) = conf.get_str(TRUST_KEY)?.filter(|v| !v.is_empty()) {
        let pem = read(&trust)?;
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c.to_owned()),
                _ => None,
            })
            .collect();
        builder = builder.root_certs(RootCerts::new_with_certs(&certs));
    }
    let (cert, key) = (conf.get_str(CERT_KEY)?, conf.get_str(KEY_KEY)?);
    if let (Some(cert), Some(key)) = (cert.filter(|v| !v.is_empty()), key.filter(|v| !v.is_empty())) {
        let chain_pem = read(&cert)?;
        let chain: Vec<Certificate<'static>> = ureq::tls::parse_pem(&chain_pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c.to_owned()),
                _ => None,
            })
            .collect();
        let key_pem = read(&key)?;
        let private: PrivateKey<'static> = ureq::tls::parse_pem(&key_pem)
            .find_map(|item| match item {
                Ok(PemItem::PrivateKey(k)) => Some(k.to_owned()),
                _ => None,
            })
            .ok_or_else(|| bad(&key, "holds no private key"))?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, private)));
    }
    Ok(builder.build())
}
