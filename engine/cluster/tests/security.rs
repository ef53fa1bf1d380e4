//! The cluster's ports against peers that are not what they claim: mutual
//! TLS keeps out everyone without a certificate of the cluster CA, job
//! secrets keep cluster members from hijacking another job's driver,
//! registration limits and connection caps keep a flood from hurting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::cluster::{ClusterUnderTest, TOKEN};
use common::{processes_under, run_batch_wordcount, running_socket_job, WORDCOUNT};
use sluice::cluster::remote::messages::{
    ArtifactFrame, ArtifactRequest, DriverHello, Hello, TaskManagerHello, ToTaskManagerProcess,
};
use sluice::cluster::remote::wire;
use sluice::error::RpcError;
use sluice::ids::{JobId, TaskManagerId};
use sluice::transport::{InternalTls, JobSecret, Security};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn make_certs(dir: &Path, nodes: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster-certs.sh");
    let out = Command::new("bash").arg(script).arg(dir).args(nodes).output().unwrap();
    assert!(out.status.success(), "cluster-certs.sh failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn tls_settings(dir: &Path, node: &str) -> Vec<String> {
    vec![
        "security.ssl.internal.enabled=true".into(),
        format!("security.ssl.internal.cert={}", dir.join(format!("{node}.pem")).display()),
        format!("security.ssl.internal.key={}", dir.join(format!("{node}-key.pem")).display()),
        format!("security.ssl.internal.trust-cert={}", dir.join("ca.pem").display()),
    ]
}

fn rpc(cluster: &ClusterUnderTest) -> String {
    format!("127.0.0.1:{}", cluster.rpc)
}

/// How the JobManager took a hello.
#[derive(Debug)]
enum Answer {
    /// It answered with a frame.
    Frame(ToTaskManagerProcess),
    /// It closed the connection (refused).
    Closed,
    /// It kept the connection open without a word (a driver it accepted).
    KeptOpen,
}

/// Sends `hello` on a fresh plain connection to the JobManager and returns
/// how it took it.
fn say_hello(cluster: &ClusterUnderTest, hello: &Hello) -> Answer {
    let mut stream =
        wire::connect(&rpc(cluster), "JobManager", Duration::from_secs(5), &Security::plaintext()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    if wire::write_frame(&mut stream, hello).is_err() {
        return Answer::Closed;
    }
    match wire::read_frame::<ToTaskManagerProcess>(&mut stream) {
        Ok(Some(frame)) => Answer::Frame(frame),
        Ok(None) => Answer::Closed,
        Err(sluice::Error::Rpc(RpcError::ConnectionBroken(e)))
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
        {
            Answer::KeptOpen
        }
        Err(_) => Answer::Closed,
    }
}

fn task_manager_ids(cluster: &ClusterUnderTest) -> Vec<String> {
    let (status, v) = cluster.get("/taskmanagers", Some(TOKEN));
    assert_eq!(status, 200);
    let mut ids: Vec<String> =
        v["taskmanagers"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

fn state(cluster: &ClusterUnderTest, job: &str) -> String {
    cluster.get(&format!("/jobs/{job}"), Some(TOKEN)).1["state"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_tls_cluster_runs_jobs_and_refuses_peers_without_the_cluster_certificate() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path(), &["node"]);
    let foreign = tempfile::tempdir().unwrap();
    make_certs(foreign.path(), &["intruder"]);
    let cluster = ClusterUnderTest::start_with("60s", &tls_settings(certs.path(), "node"));
    run_batch_wordcount(&cluster);
    let (job, mut input) = running_socket_job(&cluster, "2");
    let before = task_manager_ids(&cluster);

    // Plain TCP: a TaskManager registration and a driver hello go nowhere.
    let fake_tm =
        Hello::TaskManager(TaskManagerHello { id: TaskManagerId("evil".into()), slots: 2, metrics_address: None });
    assert!(matches!(say_hello(&cluster, &fake_tm), Answer::Closed), "a plain TaskManager was let in");
    let fake_driver = Hello::Driver(DriverHello {
        job: job.parse::<JobId>().unwrap(),
        name: "evil".into(),
        required_slots: 1,
        driver_address: "127.0.0.1:1".into(),
        vertices: Vec::new(),
        metrics_address: None,
        secret: JobSecret::generate().unwrap(),
    });
    assert!(matches!(say_hello(&cluster, &fake_driver), Answer::Closed), "a plain driver hello was let in");

    // TLS with a certificate of another CA: the handshake fails.
    let intruder = Security::with_tls(
        InternalTls::from_pem_files(
            &foreign.path().join("intruder.pem"),
            &foreign.path().join("intruder-key.pem"),
            &foreign.path().join("ca.pem"),
        )
        .unwrap(),
    );
    match wire::connect(&rpc(&cluster), "JobManager", Duration::from_secs(5), &intruder) {
        Err(e) => assert!(e.to_string().contains("handshake"), "{e}"),
        Ok(mut s) => {
            let _ = wire::write_frame(&mut s, &fake_tm);
            let mut byte = [0u8; 1];
            assert!(!matches!(s.read(&mut byte), Ok(n) if n > 0), "a foreign certificate was answered");
        }
    }
    assert_eq!(task_manager_ids(&cluster), before, "/taskmanagers changed");

    // The job kept running and counts exactly.
    assert_eq!(state(&cluster, &job), "RUNNING");
    input.write_all(b"tls tls\n").unwrap();
    wait_printed(&cluster, &job, &["(tls,1)", "(tls,2)"]);
}

/// What the socket job's task processes printed, sorted, once it holds `want`.
fn wait_printed(cluster: &ClusterUnderTest, job: &str, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut printed = Vec::new();
        for dirs in cluster.job_process_dirs(job).values() {
            for d in dirs {
                let text = std::fs::read_to_string(d.join("taskmanager.out")).unwrap_or_default();
                printed.extend(text.lines().map(|l| l.split_once("> ").map_or(l, |(_, r)| r).to_string()));
            }
        }
        printed.sort();
        if printed == want {
            return;
        }
        assert!(Instant::now() < deadline, "the job printed {printed:?}, not {want:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the JobManager's log names `what` (why it refused a peer).
fn wait_logged(cluster: &ClusterUnderTest, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = cluster.work.path().join("jobmanager.log");
    while !std::fs::read_to_string(&log).unwrap_or_default().contains(what) {
        assert!(Instant::now() < deadline, "the JobManager's log never said '{what}'");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The job secret in the environment of the job's driver.
fn driver_secret(cluster: &ClusterUnderTest, job: &str) -> JobSecret {
    let dir = cluster.work.path().join("jobmanager").join("jobs").join(job);
    let (pid, _, _) = processes_under(&dir)
        .into_iter()
        .find(|(_, cwd, _)| cwd.as_deref().is_some_and(|c| Path::new(c) == dir))
        .expect("the job's driver process");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let hex = environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("SLUICE_JOB_SECRET="))
        .expect("SLUICE_JOB_SECRET in the driver's environment");
    JobSecret::from_hex(hex).unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn cluster_members_cannot_hijack_a_job_or_exhaust_the_jobmanager() {
    let mut cluster = ClusterUnderTest::start("60s");
    let (job, mut input) = running_socket_job(&cluster, "2");
    let job_id: JobId = job.parse().unwrap();
    let hello = |secret: JobSecret| {
        Hello::Driver(DriverHello {
            job: job_id,
            name: "hijack".into(),
            required_slots: 1,
            driver_address: "127.0.0.1:1".into(),
            vertices: Vec::new(),
            metrics_address: None,
            secret,
        })
    };
    // Without the job's secret, and with it while the real driver is connected.
    let wrong = say_hello(&cluster, &hello(JobSecret::generate().unwrap()));
    assert!(matches!(wrong, Answer::Closed), "a driver hello without the job's secret: {wrong:?}");
    wait_logged(&cluster, "wrong or missing job secret");
    let second = say_hello(&cluster, &hello(driver_secret(&cluster, &job)));
    assert!(matches!(second, Answer::Closed), "a second driver hello for a running job: {second:?}");
    wait_logged(&cluster, "whose driver is already connected");
    // A job binary goes only to whoever proves the job's secret.
    let binary_hash = sluice::transport::sha256_hex(&std::fs::read(common::SOCKET.as_str()).unwrap());
    let fetch = |secret: JobSecret| {
        let mut s =
            wire::connect(&rpc(&cluster), "JobManager", Duration::from_secs(5), &Security::plaintext()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let request = ArtifactRequest { job: job_id, secret, sha256: binary_hash.clone() };
        wire::write_frame(&mut s, &Hello::FetchArtifact(request)).unwrap();
        wire::read_frame::<ArtifactFrame>(&mut s).unwrap()
    };
    assert!(
        matches!(fetch(JobSecret::generate().unwrap()), Some(ArtifactFrame::Refused(_))),
        "the binary went to a peer without the job's secret"
    );
    assert!(matches!(fetch(driver_secret(&cluster, &job)), Some(ArtifactFrame::Chunk(_))));

    // A TaskManager offering u32::MAX slots is refused and registers nothing.
    let greedy = Hello::TaskManager(TaskManagerHello {
        id: TaskManagerId("greedy".into()),
        slots: u32::MAX,
        metrics_address: None,
    });
    match say_hello(&cluster, &greedy) {
        Answer::Frame(ToTaskManagerProcess::Refused(why)) => assert!(why.contains("slots"), "{why}"),
        other => panic!("the greedy TaskManager got {other:?}"),
    }
    assert_eq!(task_manager_ids(&cluster), ["tm-a", "tm-b"]);

    // A flood of idle connections and a frame announcing 0x1FFFFFFF bytes.
    let jm = cluster.jm.id();
    let (fds_before, rss_before) = (open_fds(jm), rss_kib(jm));
    let mut liar = TcpStream::connect(rpc(&cluster)).unwrap();
    liar.write_all(&[0x1f, 0xff, 0xff, 0xff, 0, 1, 2, 3]).unwrap();
    let mut idle = Vec::new();
    for _ in 0..10_000 {
        if let Ok(s) = TcpStream::connect_timeout(&rpc(&cluster).parse().unwrap(), Duration::from_secs(2)) {
            idle.push(s);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    // Each admitted connection holds two descriptors (its reading and writing handles).
    let (fds, rss) = (open_fds(jm), rss_kib(jm));
    assert!(fds <= fds_before + 2 * sluice::transport::MAX_CONNECTIONS + 16, "{fds} open fds (before: {fds_before})");
    eprintln!("JobManager after {} connections: {fds} fds, {rss} KiB resident (before: {rss_before})", idle.len());
    assert!(rss < rss_before + 64 * 1024, "the JobManager's RSS grew from {rss_before} to {rss} KiB");
    assert!(cluster.jm.try_wait().unwrap().is_none(), "the JobManager died");
    drop(idle);
    drop(liar);

    // The job and the cluster carry on.
    assert_eq!(state(&cluster, &job), "RUNNING");
    assert_eq!(cluster.get("/overview", Some(TOKEN)).0, 200);
    input.write_all(b"still here\n").unwrap();
    wait_printed(&cluster, &job, &["(here,1)", "(still,1)"]);
}

#[test]
fn plaintext_clusters_refuse_network_addresses_unless_allowed() {
    let work = tempfile::tempdir().unwrap();
    let port = sluice_test_support::free_port().unwrap().to_string();
    let jm = |extra: &[&str]| {
        Command::new(common::cluster::sluice_bin())
            .args(["-D", "jobmanager.rpc.address=0.0.0.0", "-D", &format!("jobmanager.rpc.port={port}")])
            .args(["-D", "rest.port=0", "-D", &format!("cluster.work-dir={}", work.path().display())])
            .args(extra)
            .arg("jobmanager")
            .env_remove("SLUICE_CONF_DIR")
            .output()
            .unwrap()
    };
    let refused = jm(&[]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("without TLS") && err.contains("security.internal.allow-plaintext-network"), "{err}");
}

/// A TaskManager whose job processes could not bind their data servers
/// stops at start with an error naming the key: an address not of this
/// host, or every interface without TLS.
#[test]
fn taskmanager_bind_addresses_are_checked_at_start() {
    let work = tempfile::tempdir().unwrap();
    let tm = |settings: &[&str]| {
        let out = Command::new(common::cluster::sluice_bin())
            .args(["-D", &format!("cluster.work-dir={}", work.path().display())])
            .args(settings.iter().flat_map(|s| ["-D", s]))
            .arg("taskmanager")
            .env_remove("SLUICE_CONF_DIR")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // 192.0.2.1 (TEST-NET-1) is no address of this host: binding it fails
    // without sending anything.
    let err = tm(&["taskmanager.bind-host=192.0.2.1", "security.internal.allow-plaintext-network=true"]);
    assert!(err.contains("taskmanager.bind-host '192.0.2.1' cannot be bound"), "{err}");
    let err = tm(&["taskmanager.host=192.0.2.1", "security.internal.allow-plaintext-network=true"]);
    assert!(err.contains("taskmanager.host '192.0.2.1' cannot be bound"), "{err}");
    let err = tm(&["taskmanager.bind-host=0.0.0.0"]);
    assert!(err.contains("without TLS") && err.contains("security.internal.allow-plaintext-network"), "{err}");
}

/// Uploads are kept on disk only up to `web.upload.retained`: each further
/// upload deletes the oldest one (its listing and its file) that no
/// unfinished job runs from.
#[test]
fn uploads_beyond_the_retained_number_are_deleted_oldest_first() {
    let cluster = ClusterUnderTest::start_with("10s", &["web.upload.retained=2".to_string()]);
    let host = format!("127.0.0.1:{}", cluster.rest);
    // Only the ELF magic is checked at upload.
    let mut fake = b"\x7fELF".to_vec();
    fake.resize(4096, 0);
    let mut ids = Vec::new();
    for i in 0..4 {
        let upload = format!(
            "POST /jars/upload?filename=job{i} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\
             X-Sluice-Client: test\r\nContent-Type: application/octet-stream\r\n"
        );
        assert_eq!(raw_http(cluster.rest, &upload, &fake), 200);
        let files = cluster.get("/jars", Some(TOKEN)).1["files"].as_array().unwrap().clone();
        let newest = files.iter().find(|f| f["name"] == format!("job{i}")).expect("the upload is listed");
        ids.push(newest["id"].as_str().unwrap().to_string());
        // Distinct upload times.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let files = cluster.get("/jars", Some(TOKEN)).1["files"].as_array().unwrap().clone();
    let listed: Vec<&str> = files.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), 2, "{files:?}");
    assert!(listed.contains(&ids[2].as_str()) && listed.contains(&ids[3].as_str()), "{files:?}");
    let artifacts = cluster.work.path().join("jobmanager").join("artifacts");
    let mut on_disk: Vec<String> =
        std::fs::read_dir(&artifacts).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    on_disk.sort();
    let mut kept = vec![ids[2].clone(), ids[3].clone()];
    kept.sort();
    assert_eq!(on_disk, kept, "the deleted uploads' files are gone");
}

/// One raw HTTP/1.0 request as a browser page on another site could send it.
fn raw_http(port: u16, head: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("{head}Content-Length: {}\r\n\r\n", body.len()).as_bytes()).unwrap();
    // A refusal may come (and the connection close) before the body is sent.
    let _ = s.write_all(body);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn cross_site_requests_and_foreign_hosts_start_nothing() {
    let cluster = ClusterUnderTest::start("60s");
    let binary = std::fs::read(WORDCOUNT.as_str()).unwrap();
    let host = format!("127.0.0.1:{}", cluster.rest);
    // A `fetch(..., {mode: 'no-cors', method: 'POST'})` from evil.example:
    // simple content types only, no custom header (and here even the token).
    let upload = format!(
        "POST /jars/upload?filename=wordcount HTTP/1.0\r\nHost: {host}\r\nOrigin: http://evil.example\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Type: text/plain\r\n"
    );
    assert_eq!(raw_http(cluster.rest, &upload, &binary), 403);
    let run = format!(
        "POST /jars/anything/run HTTP/1.0\r\nHost: {host}\r\nOrigin: http://evil.example\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Type: text/plain\r\n"
    );
    assert_eq!(raw_http(cluster.rest, &run, b"{}"), 403);
    // The same without an Origin (a form post): still no client header.
    let form = format!(
        "POST /jars/upload?filename=wordcount HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n"
    );
    assert_eq!(raw_http(cluster.rest, &form, &binary), 403);
    // DNS rebinding: the page's own name, pointed at 127.0.0.1.
    let rebound =
        format!("GET /jobs HTTP/1.0\r\nHost: evil.example:{}\r\nAuthorization: Bearer {TOKEN}\r\n", cluster.rest);
    assert_eq!(raw_http(cluster.rest, &rebound, b""), 403);

    assert_eq!(cluster.get("/jars", Some(TOKEN)).1["files"].as_array().unwrap().len(), 0, "an upload was stored");
    assert_eq!(cluster.get("/jobs", Some(TOKEN)).1["jobs"].as_array().unwrap().len(), 0, "a job was started");
    assert!(common::job_processes_under(cluster.work.path()).is_empty(), "a job process runs");
    // The CLI, which sends what the API asks, still works.
    run_batch_wordcount(&cluster);
}

#[test]
fn rest_over_tls_with_client_certificates() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path(), &["rest=IP:127.0.0.1", "cli"]);
    let file = |name: &str| certs.path().join(name).display().to_string();
    // Every process of the harness gets these: the JobManager serves HTTPS
    // and requires a client certificate of the CA; the CLI presents one.
    let settings = vec![
        "security.ssl.rest.enabled=true".to_string(),
        format!("security.ssl.rest.cert={}", file("rest.pem")),
        format!("security.ssl.rest.key={}", file("rest-key.pem")),
        format!("security.ssl.rest.trust-cert={}", file("ca.pem")),
    ];
    let cluster = ClusterUnderTest::start_processes("60s", &settings);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cluster.cli(&["list"]);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the CLI never reached the HTTPS REST API: {out:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A job runs through the CLI over HTTPS.
    run_batch_wordcount(&cluster);
    // Plain HTTP gets no HTTP answer; TLS without a client certificate is refused.
    let host = format!("127.0.0.1:{}", cluster.rest);
    let plain = raw_http(
        cluster.rest,
        &format!("GET /overview HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"),
        b"",
    );
    assert_eq!(plain, 0, "plain HTTP was answered");
    let mut no_client_cert = sluice::config::Configuration::new();
    no_client_cert.set("security.ssl.rest.trust-cert", &file("ca.pem")).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(sluice_cluster::rest_tls::client_config(&no_client_cert).unwrap())
        .build()
        .into();
    let refused =
        agent.get(&format!("https://{host}/overview")).header("Authorization", format!("Bearer {TOKEN}")).call();
    assert!(refused.is_err(), "a client without a certificate was answered: {refused:?}");
}
