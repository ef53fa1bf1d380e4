//! High availability with TLS towards etcd: an etcd that serves clients
//! over TLS only and requires their certificates (`--client-cert-auth`).
//! A JobManager and TaskManagers with `high-availability.etcd.ssl.*` elect,
//! record and find the leader through it and run a job; without a client
//! certificate etcd refuses the connection; inconsistent settings are
//! errors naming the key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

mod common;

use common::cluster::sluice_bin;
use common::{corpus, read_counts, reference_counts, standalone_wordcount};
use sluice_integration_tests::etcd::EtcdServer;

/// A CA with a server certificate for etcd on 127.0.0.1 and a client
/// certificate `node`.
fn certificates(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster-certs.sh");
    let out = Command::new("bash").arg(script).arg(dir).args(["etcd=IP:127.0.0.1", "node"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn ha_settings(etcd: &EtcdServer, work: &Path, certs: &Path, client_cert: bool) -> Vec<String> {
    let mut s = vec![
        "high-availability.type=etcd".to_string(),
        format!("high-availability.etcd.endpoints={}", etcd.endpoint()),
        "high-availability.cluster-id=tls".into(),
        format!("high-availability.storageDir={}", work.join("ha").display()),
        format!("high-availability.etcd.ssl.trust-cert={}", certs.join("ca.pem").display()),
    ];
    if client_cert {
        s.push(format!("high-availability.etcd.ssl.cert={}", certs.join("node.pem").display()));
        s.push(format!("high-availability.etcd.ssl.key={}", certs.join("node-key.pem").display()));
    }
    s
}

/// `sluice -D ... jobmanager` that must fail; its stderr.
fn failing_jobmanager(work: &Path, settings: &[String]) -> String {
    let out = Command::new(sluice_bin())
        .current_dir(work)
        .env_remove("SLUICE_CONF_DIR")
        .args(["-D", "rest.port=0", "-D", "jobmanager.rpc.port=0"])
        .args(["-D", &format!("cluster.work-dir={}", work.join("cluster").display())])
        .args(settings.iter().flat_map(|s| ["-D", s.as_str()]))
        .arg("jobmanager")
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Election, job store and leader lookup over mutual TLS to etcd: an
/// application cluster's job runs to its end with exact counts.
#[test]
fn high_availability_runs_over_mutual_tls_to_etcd() {
    let work = tempfile::tempdir().unwrap();
    let certs = work.path().join("certs");
    certificates(&certs);
    let etcd = EtcdServer::start_tls(&certs).unwrap();
    assert!(etcd.endpoint().starts_with("https://"));
    let (input, output) = (work.path().join("in.txt"), work.path().join("out.txt"));
    let text = corpus();
    std::fs::write(&input, &text).unwrap();
    let out = standalone_wordcount(work.path(), &ha_settings(&etcd, work.path(), &certs, true), &input, &output);
    let log = std::fs::read_to_string(work.path().join("jobmanager.log")).unwrap_or_default();
    assert!(out.status.success(), "{}\n{log}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(read_counts(&output), reference_counts(&text));
}

/// etcd requires client certificates: a JobManager without one cannot
/// reach it, and says which key's endpoints it could not reach.
#[test]
fn etcd_refuses_a_jobmanager_without_a_client_certificate() {
    let work = tempfile::tempdir().unwrap();
    let certs = work.path().join("certs");
    certificates(&certs);
    let etcd = EtcdServer::start_tls(&certs).unwrap();
    let err = failing_jobmanager(work.path(), &ha_settings(&etcd, work.path(), &certs, false));
    assert!(err.contains("cannot reach etcd") && err.contains("high-availability.etcd.endpoints"), "{err}");
}

/// Inconsistent TLS settings are errors naming the key, before any
/// connection is tried.
#[test]
fn inconsistent_etcd_tls_settings_name_the_key() {
    let work = tempfile::tempdir().unwrap();
    let base = |endpoint: &str| {
        vec![
            "high-availability.type=etcd".to_string(),
            format!("high-availability.etcd.endpoints={endpoint}"),
            format!("high-availability.storageDir={}", work.path().join("ha").display()),
        ]
    };
    let mut https_without_ca = base("https://127.0.0.1:1");
    let err = failing_jobmanager(work.path(), &https_without_ca);
    assert!(err.contains("high-availability.etcd.ssl.trust-cert is not set"), "{err}");
    https_without_ca.push("high-availability.etcd.ssl.trust-cert=/nonexistent/ca.pem".into());
    let err = failing_jobmanager(work.path(), &https_without_ca);
    assert!(err.contains("high-availability.etcd.ssl.trust-cert '/nonexistent/ca.pem'"), "{err}");
    let mut plain_with_ssl = base("http://127.0.0.1:1");
    plain_with_ssl.push("high-availability.etcd.ssl.trust-cert=/tmp/ca.pem".into());
    let err = failing_jobmanager(work.path(), &plain_with_ssl);
    assert!(err.contains("are not https:// URLs"), "{err}");
    let mut half_identity = base("https://127.0.0.1:1");
    half_identity.push("high-availability.etcd.ssl.trust-cert=/tmp/ca.pem".into());
    half_identity.push("high-availability.etcd.ssl.cert=/tmp/node.pem".into());
    let err = failing_jobmanager(work.path(), &half_identity);
    assert!(err.contains("set both high-availability.etcd.ssl.cert and high-availability.etcd.ssl.key"), "{err}");
}
