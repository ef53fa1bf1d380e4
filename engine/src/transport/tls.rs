//! Mutual TLS inside the cluster (`security.ssl.internal.*`): every process
//! presents a certificate signed by the cluster's CA and accepts only peers
//! that do the same. Certificates and keys come from PEM files
//! (`scripts/cluster-certs.sh` makes a CA and node certificates).
//!
//! As Flink's internal SSL, trust is the cluster CA itself, not host names:
//! a peer's certificate chain must verify against the trust certificate, and
//! the name in it is not checked (TaskManagers come and go on any host).
//! Which *job* a peer may touch is decided above TLS, by the job's secret
//! (see [`super::JobSecret`]).

use super::SecurityError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The server name a client asks for; certificates need not carry it.
pub(crate) const CLUSTER_SERVER_NAME: &str = "sluice-cluster";

/// The rustls configurations of one process: as a server (accepting) and as
/// a client (connecting), both with this process's certificate.
#[derive(Clone)]
pub struct InternalTls {
    pub(crate) server: Arc<ServerConfig>,
    pub(crate) client: Arc<ClientConfig>,
    files: [PathBuf; 3],
}

impl std::fmt::Debug for InternalTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalTls")
            .field("cert", &self.files[0])
            .field("key", &self.files[1])
            .field("trust_cert", &self.files[2])
            .finish()
    }
}

impl InternalTls {
    /// Loads this process's certificate chain and private key and the
    /// cluster's trust (CA) certificate from PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path, trust_cert: &Path) -> Result<Self, SecurityError> {
        let bad = |path: &Path, problem: String| SecurityError::Pem { path: path.to_path_buf(), problem };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad(cert, e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(bad(cert, "holds no certificate".into()));
        }
        let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
        let mut roots = RootCertStore::empty();
        let mut trusted = 0;
        for c in CertificateDer::pem_file_iter(trust_cert).map_err(|e| bad(trust_cert, e.to_string()))? {
            let c = c.map_err(|e| bad(trust_cert, e.to_string()))?;
            roots.add(c).map_err(|e| bad(trust_cert, e.to_string()))?;
            trusted += 1;
        }
        if trusted == 0 {
            return Err(bad(trust_cert, "holds no certificate".into()));
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(ring::default_provider());
        let tls = |e: rustls::Error| SecurityError::Tls(e.to_string());

        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| SecurityError::Tls(format!("cannot verify clients with {}: {e}", trust_cert.display())))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), private_key.clone_key())
            .map_err(|e| bad(key, format!("does not match {}: {e}", cert.display())))?;
        // No session tickets: they would be the only post-handshake writes of
        // a server, and connections are long-lived.
        server.send_tls13_tickets = 0;

        let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| SecurityError::Tls(format!("cannot verify servers with {}: {e}", trust_cert.display())))?;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ClusterCa(server_verifier)))
            .with_client_auth_cert(chain, private_key)
            .map_err(|e| bad(key, format!("does not match {}: {e}", cert.display())))?;
        client.resumption = Resumption::disabled();
        Ok(InternalTls {
            server: Arc::new(server),
            client: Arc::new(client),
            files: [cert.to_path_buf(), key.to_path_buf(), trust_cert.to_path_buf()],
        })
    }

    /// The PEM files this was loaded from: certificate, key, trust certificate.
    pub fn files(&self) -> &[PathBuf; 3] {
        &self.files
    }
}

/// Verifies a server's chain against the cluster CA, ignoring the name.
#[derive(Debug)]
struct ClusterCa(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ClusterCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(v) => Ok(v),
            // The chain verified; only the name differs, which we do not check.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Fills `buf` from the operating system's secure random source.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<(), SecurityError> {
    ring::default_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| SecurityError::Tls("the system's secure random source failed".into()))
}
