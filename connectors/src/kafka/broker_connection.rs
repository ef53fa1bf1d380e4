//! One connection of the raw protocol client ([`super::protocol`]) to a
//! broker, secured as the sink's client properties say, the way librdkafka
//! reads them: `security.protocol` (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`,
//! `SASL_SSL`), `ssl.ca.location` (PEM; the broker's certificate must match
//! its host name or IP), `sasl.mechanism` (`PLAIN`, `SCRAM-SHA-256`,
//! `SCRAM-SHA-512`), `sasl.username`, `sasl.password`.

use super::properties::ClientProperties;
use super::scram::Hash;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The largest response accepted from a broker (a peer's length prefix
/// must not allocate gigabytes).
pub const MAX_RESPONSE: usize = 16 << 20;

static CORRELATION: AtomicI32 = AtomicI32::new(1);

/// How to reach the brokers: TLS and SASL settings.
#[derive(Clone)]
pub struct BrokerSecurity {
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<Sasl>,
}

#[derive(Clone)]
struct Sasl {
    mechanism: Mechanism,
    username: String,
    password: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl std::fmt::Debug for BrokerSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerSecurity")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|s| (s.mechanism, s.username.as_str(), "***")))
            .finish()
    }
}

impl BrokerSecurity {
    /// Plain TCP.
    pub fn plaintext() -> Self {
        BrokerSecurity { tls: None, sasl: None }
    }

    /// From librdkafka-style client properties; an unsupported or
    /// incomplete setting is an error naming it.
    pub fn from_properties(p: &ClientProperties) -> Result<Self, String> {
        let protocol = p.get("security.protocol").unwrap_or("PLAINTEXT").to_ascii_uppercase();
        let (tls, sasl) = match protocol.as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => {
                return Err(format!(
                    "security.protocol '{other}' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
                ))
            }
        };
        let tls = if tls { Some(Arc::new(tls_config(p)?)) } else { None };
        let sasl = if sasl {
            let mechanism = match p.get("sasl.mechanism").or(p.get("sasl.mechanisms")).unwrap_or("GSSAPI") {
                m if m.eq_ignore_ascii_case("PLAIN") => Mechanism::Plain,
                m if m.eq_ignore_ascii_case("SCRAM-SHA-256") => Mechanism::ScramSha256,
                m if m.eq_ignore_ascii_case("SCRAM-SHA-512") => Mechanism::ScramSha512,
                other => {
                    return Err(format!(
                        "sasl.mechanism '{other}' is not supported by the exactly-once sink's transaction recovery; \
                         use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                    ))
                }
            };
            let field = |key: &str| {
                p.get(key).map(str::to_string).ok_or_else(|| format!("security.protocol {protocol} needs {key}"))
            };
            Some(Sasl { mechanism, username: field("sasl.username")?, password: field("sasl.password")? })
        } else {
            None
        };
        Ok(BrokerSecurity { tls, sasl })
    }

    /// Connects to `addr`, runs the TLS and SASL handshakes, and returns the
    /// connection, ready for requests.
    pub fn connect(&self, addr: &str, timeout: Duration) -> Result<Box<dyn Stream>, String> {
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("{addr} resolves to no address"))?;
        let tcp = TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        tcp.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        let mut stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(tcp),
            Some(config) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
                let name =
                    ServerName::try_from(host.to_string()).map_err(|e| format!("bad broker host '{host}': {e}"))?;
                let conn = rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
        };
        if let Some(sasl) = &self.sasl {
            authenticate(&mut *stream, sasl).map_err(|e| format!("SASL authentication with {addr} failed: {e}"))?;
        }
        Ok(stream)
    }
}

/// A byte stream to a broker.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn tls_config(p: &ClientProperties) -> Result<rustls::ClientConfig, String> {
    let ca = p
        .get("ssl.ca.location")
        .ok_or("security.protocol with SSL needs ssl.ca.location (a PEM file of the broker's CA)")?;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| format!("ssl.ca.location '{ca}': {e}"))?;
    for cert in certs {
        roots
            .add(cert.map_err(|e| format!("ssl.ca.location '{ca}': {e}"))?)
            .map_err(|e| format!("ssl.ca.location '{ca}': {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("ssl.ca.location '{ca}' holds no certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Sends `request` and reads its response on `stream`.
pub fn exchange<Req: Encodable, Resp: Decodable>(
    stream: &mut dyn Stream,
    key: ApiKey,
    version: i16,
    request: &Req,
) -> Result<Resp, String> {
    let correlation = CORRELATION.fetch_add(1, Ordering::Relaxed);
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("sluice")));
    let mut body = BytesMut::new();
    header.encode(&mut body, key.request_header_version(version)).map_err(|e| e.to_string())?;
    request.encode(&mut body, version).map_err(|e| e.to_string())?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(i32::try_from(body.len()).map_err(|_| "request too large".to_string())?);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).and_then(|()| stream.flush()).map_err(|e| format!("cannot send: {e}"))?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).map_err(|e| format!("no answer: {e}"))?;
    let len = usize::try_from(i32::from_be_bytes(len)).map_err(|_| "a negative response length".to_string())?;
    if len > MAX_RESPONSE {
        return Err(format!("a response of {len} bytes is over the {MAX_RESPONSE}-byte limit; not a Kafka broker?"));
    }
    let mut response = Vec::new();
    stream.take(len as u64).read_to_end(&mut response).map_err(|e| format!("truncated answer: {e}"))?;
    if response.len() < len {
        return Err("truncated answer".into());
    }
    let mut bytes = Bytes::from(response);
    let header = ResponseHeader::decode(&mut bytes, key.response_header_version(version)).map_err(|e| e.to_string())?;
    if header.correlation_id != correlation {
        return Err(format!("answer to another request ({} != {correlation})", header.correlation_id));
    }
    Resp::decode(&mut bytes, version).map_err(|e| e.to_string())
}

fn authenticate(stream: &mut dyn Stream, sasl: &Sasl) -> Result<(), String> {
    let name = match sasl.mechanism {
        Mechanism::Plain => "PLAIN",
        Mechanism::ScramSha256 => "SCRAM-SHA-256",
        Mechanism::ScramSha512 => "SCRAM-SHA-512",
    };
    let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(name));
    let answer: SaslHandshakeResponse = exchange(stream, ApiKey::SaslHandshake, 1, &handshake)?;
    if answer.error_code != 0 {
        let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(format!("the broker does not offer {name} (it offers {offered:?})"));
    }
    let mut step = |bytes: Vec<u8>| -> Result<Vec<u8>, String> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
        let answer: SaslAuthenticateResponse = exchange(stream, ApiKey::SaslAuthenticate, 1, &request)?;
        if answer.error_code != 0 {
            return Err(answer
                .error_message
                .map(|m| m.as_str().to_string())
                .unwrap_or_else(|| format!("error code {}", answer.error_code)));
        }
        Ok(answer.auth_bytes.to_vec())
    };
    match sasl.mechanism {
        Mechanism::Plain => {
            let mut msg = vec![0u8];
            msg.extend_from_slice(sasl.username.as_bytes());
            msg.push(0);
            msg.extend_from_slice(sasl.password.as_bytes());
            step(msg).map(|_| ())
        }
        Mechanism::ScramSha256 => super::scram::run(Hash::Sha256, &sasl.username, &sasl.password, &mut step),
        Mechanism::ScramSha512 => super::scram::run(Hash::Sha512, &sasl.username, &sasl.password, &mut step),
    }
}
