#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;

/// Runs scripts/cluster-certs.sh into a fresh directory.
pub(crate) fn make_certs(dir: &Path, nodes: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster-certs.sh");
    let out = Command::new("bash").arg(script).arg(dir).args(nodes).output().unwrap();
    assert!(out.status.success(), "cluster-certs.sh failed: {}", String::from_utf8_lossy(&out.stderr));
}

pub(crate) fn tls(dir: &Path, node: &str) -> Security {
    Security::with_tls(
        InternalTls::from_pem_files(
            &dir.join(format!("{node}.pem")),
            &dir.join(format!("{node}-key.pem")),
            &dir.join("ca.pem"),
        )
        .unwrap(),
    )
}

/// A connected pair: (client side, server side result).
fn pair(client: &Security, server: &Security) -> (std::io::Result<SecureStream>, std::io::Result<SecureStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server.clone();
    let accepted = std::thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        server.accept(socket)
    });
    let connected = client.connect(TcpStream::connect(addr).unwrap());
    (connected, accepted.join().unwrap())
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Each side writes `len` bytes from one thread while another reads the
/// peer's, through clones of one stream: the way RPC links and data channels
/// use a connection.
fn exchange(a: SecureStream, b: SecureStream, len: usize) {
    let run = |s: SecureStream, seed: u8, peer_seed: u8| {
        std::thread::spawn(move || {
            let writer = s.try_clone().unwrap();
            let sent = std::thread::spawn(move || {
                let data = pattern(seed, len);
                for chunk in data.chunks(7919) {
                    (&writer).write_all(chunk).unwrap();
                }
                (&writer).flush().unwrap();
                writer.shutdown(Shutdown::Write).unwrap();
            });
            let mut got = Vec::new();
            (&s).read_to_end(&mut got).unwrap();
            sent.join().unwrap();
            assert_eq!(got.len(), len);
            assert!(got == pattern(peer_seed, len), "bytes differ");
        })
    };
    let x = run(a, 1, 2);
    let y = run(b, 2, 1);
    x.join().unwrap();
    y.join().unwrap();
}

#[test]
fn mutual_tls_carries_both_directions_at_once() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &["a", "b"]);
    let (client, server) = pair(&tls(dir.path(), "a"), &tls(dir.path(), "b"));
    let (client, server) = (client.unwrap(), server.unwrap());
    assert!(client.is_mutual_tls() && server.is_mutual_tls());
    exchange(client, server, 8 << 20);
}

#[test]
fn plaintext_streams_work_the_same_way() {
    let (client, server) = pair(&Security::plaintext(), &Security::plaintext());
    let (client, server) = (client.unwrap(), server.unwrap());
    assert!(!client.is_mutual_tls());
    exchange(client, server, 1 << 20);
}

#[test]
fn peers_without_a_certificate_of_the_cluster_ca_are_refused() {
    let ours = tempfile::tempdir().unwrap();
    make_certs(ours.path(), &["tm"]);
    let theirs = tempfile::tempdir().unwrap();
    make_certs(theirs.path(), &["intruder"]);
    let cluster = tls(ours.path(), "tm");
    let intruder = tls(theirs.path(), "intruder");

    // A certificate from another CA, either way round.
    let (c, s) = pair(&intruder, &cluster);
    assert!(s.is_err(), "the server accepted a foreign certificate");
    // The client may finish its side first (TLS 1.3); it then reads the refusal.
    if let Ok(c) = c {
        assert!((&c).read(&mut [0u8; 1]).is_err(), "the refused client can read");
    }
    let (c, _s) = pair(&cluster, &intruder);
    assert!(c.is_err(), "the client accepted a server with a foreign certificate");

    // No TLS at all: the server's handshake fails on the plain bytes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = cluster.clone();
    let accepted = std::thread::spawn(move || server.accept(listener.accept().unwrap().0));
    let mut plain = TcpStream::connect(addr).unwrap();
    plain.write_all(b"SLUICEDP\x01\x00\x00\x00\x00\x10").unwrap();
    assert!(accepted.join().unwrap().is_err(), "the server accepted a plaintext peer");
    drop(plain);

    // TLS that trusts the cluster CA but presents no client certificate.
    let roots = {
        use rustls::pki_types::pem::PemObject;
        let mut r = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(ours.path().join("ca.pem")).unwrap() {
            r.add(c.unwrap()).unwrap();
        }
        r
    };
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || cluster.accept(listener.accept().unwrap().0));
    let name = rustls::pki_types::ServerName::try_from("tm").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut socket = TcpStream::connect(addr).unwrap();
    let mut stream = rustls::Stream::new(&mut conn, &mut socket);
    let _ = stream.write_all(b"hello");
    let _ = stream.flush();
    assert!(server.join().unwrap().is_err(), "the server accepted a client without a certificate");
}

#[test]
fn plaintext_servers_bind_to_loopback_only_unless_allowed() {
    let plain = Security::plaintext();
    plain.check_bind("data server", "127.0.0.1:0").unwrap();
    plain.check_bind("data server", "localhost:0").unwrap();
    let refused = plain.check_bind("JobManager RPC endpoint", "0.0.0.0:6123").unwrap_err();
    assert!(matches!(refused, SecurityError::PlaintextOnNetwork { .. }));
    assert!(refused.to_string().contains(ALLOW_PLAINTEXT_KEY), "{refused}");
    Security::plaintext().allowing_plaintext_network().check_bind("x", "0.0.0.0:6123").unwrap();
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &["n"]);
    tls(dir.path(), "n").check_bind("x", "0.0.0.0:6123").unwrap();
}

#[test]
fn settings_come_from_the_configuration_and_pass_to_child_processes() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &["n"]);
    let mut conf = crate::config::Configuration::new();
    conf.set(TLS_ENABLED_KEY, "true").unwrap();
    let incomplete = Security::from_config(&conf).unwrap_err();
    assert!(incomplete.to_string().contains(TLS_TRUST_KEY), "{incomplete}");
    conf.set(TLS_CERT_KEY, &dir.path().join("n.pem").display().to_string()).unwrap();
    conf.set(TLS_KEY_KEY, &dir.path().join("n-key.pem").display().to_string()).unwrap();
    conf.set(TLS_TRUST_KEY, &dir.path().join("missing.pem").display().to_string()).unwrap();
    let missing = Security::from_config(&conf).unwrap_err();
    assert!(matches!(&missing, SecurityError::Pem { path, .. } if path.ends_with("missing.pem")), "{missing}");
    conf.set(TLS_TRUST_KEY, &dir.path().join("ca.pem").display().to_string()).unwrap();
    let security = Security::from_config(&conf).unwrap();
    assert!(security.tls().is_some());
    let mut child = crate::config::Configuration::new();
    for (k, v) in security.config_lines() {
        child.set(&k, &v).unwrap();
    }
    assert!(Security::from_config(&child).unwrap().tls().is_some());
}
