//! A highly available cluster across test hosts: etcd, a Kafka broker, two
//! JobManagers and two TaskManagers each on a network namespace of its own
//! (`sluice_integration_tests::netns`, created and removed by the test), so
//! every connection crosses a real network interface, with mutual TLS
//! between the cluster's processes. Under the exactly-once Kafka WordCount
//! the leader is cut off from etcd alone (it still reaches its TaskManagers
//! and job processes): it must step down, another JobManager must resume
//! the job, and the committed output must stay exact. Then the new leader
//! is killed with SIGKILL. Needs root (the test hosts).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod common;

use common::cluster::{job_id_of, sluice_bin, TOKEN};
use common::KAFKA_WORDCOUNT;
use sluice_integration_tests::etcd::EtcdServer;
use sluice_integration_tests::netns::{TestHost, TestNetwork};
use sluice_integration_tests::wordcount::{check_output, create_topics, expected, feed};
use sluice_test_support::http;

const REST_PORT: u16 = 8081;
const RPC_PORT: u16 = 6123;
const KAFKA_PORT: u16 = 9092;

/// A Kafka broker started by `scripts/kafka-local.sh` on a test host,
/// stopped when dropped.
struct KafkaOnHost {
    host: TestHost,
    dir: PathBuf,
}

impl KafkaOnHost {
    fn command(host: &TestHost, dir: &Path, action: &str) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka-local.sh");
        let mut cmd = host.command("bash");
        cmd.arg(script)
            .arg(action)
            .env("KAFKA_LISTEN_HOST", "0.0.0.0")
            .env("KAFKA_ADVERTISED_HOST", &host.ip)
            .env("KAFKA_PORT", KAFKA_PORT.to_string())
            .env("KAFKA_NUM_PARTITIONS", "1")
            .env("SLUICE_KAFKA_DIR", dir);
        cmd
    }

    fn start(host: &TestHost, dir: &Path) -> Self {
        let out = Self::command(host, dir, "start").output().unwrap();
        assert!(out.status.success(), "Kafka on {}: {}", host.ip, String::from_utf8_lossy(&out.stderr));
        KafkaOnHost { host: host.clone(), dir: dir.to_path_buf() }
    }
}

impl Drop for KafkaOnHost {
    fn drop(&mut self) {
        let _ = Self::command(&self.host, &self.dir, "stop").output();
    }
}

/// The processes of the test, dropped (killed) before the network.
struct Processes {
    jms: Vec<(String, Child)>,
    tms: Vec<Child>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for c in self.tms.iter_mut().chain(self.jms.iter_mut().map(|(_, c)| c)) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn get(host: &TestHost, path: &str) -> serde_json::Value {
    match http::request((host.ip.as_str(), REST_PORT), "GET", path, Some(TOKEN), "") {
        Ok(r) => serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::Null,
    }
}

#[test]
fn a_leader_cut_off_from_etcd_steps_down_and_the_output_stays_exact() {
    let work = tempfile::tempdir().unwrap();
    let net = TestNetwork::create(&["etcd", "kafka", "jm-0", "jm-1", "tm-a", "tm-b"]).unwrap();
    let etcd = EtcdServer::start_on(net.host("etcd")).unwrap();
    let kafka = KafkaOnHost::start(net.host("kafka"), &work.path().join("kafka"));
    let bs = format!("{}:{KAFKA_PORT}", net.host("kafka").ip);
    let certs = work.path().join("certs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster-certs.sh");
    assert!(Command::new("bash").arg(script).arg(&certs).arg("node").output().unwrap().status.success());
    let settings: Vec<String> = vec![
        "high-availability.type=etcd".into(),
        format!("high-availability.etcd.endpoints={}", etcd.endpoint()),
        "high-availability.cluster-id=multi-host".into(),
        format!("high-availability.storageDir={}", work.path().join("ha").display()),
        "security.ssl.internal.enabled=true".into(),
        format!("security.ssl.internal.cert={}", certs.join("node.pem").display()),
        format!("security.ssl.internal.key={}", certs.join("node-key.pem").display()),
        format!("security.ssl.internal.trust-cert={}", certs.join("ca.pem").display()),
        format!("rest.token={TOKEN}"),
        "heartbeat.timeout=5s".into(),
    ];
    let start = |host: &TestHost, role: &str, extra: &[String]| -> Child {
        let log = std::fs::File::create(work.path().join(format!("{}.log", host.name))).unwrap();
        host.command(sluice_bin())
            .args(settings.iter().chain(extra).flat_map(|s| ["-D", s.as_str()]))
            .args(["-D", &format!("cluster.work-dir={}", work.path().join(&host.name).display())])
            .arg(role)
            .env_remove("SLUICE_CONF_DIR")
            .env("SLUICE_LOG", "info")
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let mut procs = Processes { jms: Vec::new(), tms: Vec::new() };
    for jm in ["jm-0", "jm-1"] {
        let h = net.host(jm);
        let extra = [
            format!("jobmanager.rpc.address={}", h.ip),
            format!("jobmanager.rpc.port={RPC_PORT}"),
            format!("rest.address={}", h.ip),
            format!("rest.port={REST_PORT}"),
            format!("jobmanager.resource-id={jm}"),
        ];
        procs.jms.push((jm.to_string(), start(h, "jobmanager", &extra)));
        // jm-0 leads: it campaigns first.
        std::thread::sleep(Duration::from_millis(500));
    }
    for tm in ["tm-a", "tm-b"] {
        let h = net.host(tm);
        let extra = [
            format!("taskmanager.host={}", h.ip),
            "taskmanager.numberOfTaskSlots=2".into(),
            format!("taskmanager.resource-id={tm}"),
        ];
        procs.tms.push(start(h, "taskmanager", &extra));
    }
    let leader = |hosts: &[&str]| -> Option<String> {
        hosts.iter().find(|jm| get(net.host(jm), "/overview")["leadership"]["role"] == "leader").map(|s| s.to_string())
    };
    let wait = |what: &str, within: Duration, ok: &dyn Fn() -> bool| {
        let deadline = Instant::now() + within;
        while !ok() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}; logs in {}", work.path().display());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("a leader with two TaskManagers", Duration::from_secs(60), &|| {
        leader(&["jm-0", "jm-1"]).is_some_and(|l| get(net.host(&l), "/overview")["taskmanagers"] == 2)
    });
    let first = leader(&["jm-0", "jm-1"]).unwrap();

    let (input, output) = ("mh-in", "mh-out");
    create_topics(&bs, &[input, output], 3);
    let lines = 12_000;
    let feeder = {
        let bs = bs.clone();
        std::thread::spawn(move || feed(&bs, input, 0..lines, Some((100, Duration::from_millis(100)))))
    };
    let ckpt = work.path().join("checkpoints");
    let cli = Command::new(sluice_bin())
        .args(settings.iter().flat_map(|s| ["-D", s.as_str()]))
        .env("SLUICE_REST_TOKEN", TOKEN)
        .env_remove("SLUICE_CONF_DIR")
        .args(["run", "-d", "-p", "4", KAFKA_WORDCOUNT.as_str(), "--", "--bootstrap-servers", &bs])
        .args(["--input-topic", input, "--output-topic", output, "--checkpoint-dir", ckpt.to_str().unwrap()])
        .args(["--checkpoint-interval", "200ms", "-D", "restart-strategy.type=fixed-delay"])
        .args(["-D", "restart-strategy.fixed-delay.attempts=50", "-D", "restart-strategy.fixed-delay.delay=100ms"])
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let job = job_id_of(&cli);
    let running_on = |jm: &str| {
        let h = net.host(jm);
        get(h, "/overview")["leadership"]["role"] == "leader"
            && get(h, &format!("/jobs/{job}"))["state"] == "RUNNING"
            && get(h, &format!("/jobs/{job}/checkpoints"))["counts"]["completed"].as_u64().unwrap_or(0) > 0
    };
    wait("the job running and checkpointing", Duration::from_secs(60), &|| running_on(&first));
    std::thread::sleep(Duration::from_secs(2));

    // The leader loses etcd, and only etcd.
    let second = if first == "jm-0" { "jm-1" } else { "jm-0" };
    let cut_at = Instant::now();
    net.cut(&first, "etcd").unwrap();
    wait("the other JobManager to resume the job", Duration::from_secs(60), &|| running_on(second));
    eprintln!("leader {first} cut off from etcd -> job RUNNING on {second} after {:?}", cut_at.elapsed());
    assert_eq!(get(net.host(&first), "/overview")["leadership"]["role"], "standby", "the cut-off leader stepped down");
    net.heal(&first, "etcd").unwrap();
    std::thread::sleep(Duration::from_secs(2));

    // The new leader is killed; the healed one takes over again.
    let (_, mut killed) = procs.jms.remove(procs.jms.iter().position(|(id, _)| id == second).unwrap());
    let kill_at = Instant::now();
    killed.kill().unwrap();
    killed.wait().unwrap();
    wait("the healed JobManager to lead and resume the job", Duration::from_secs(60), &|| running_on(&first));
    eprintln!("SIGKILL of leader {second} -> job RUNNING on {first} after {:?}", kill_at.elapsed());

    feeder.join().unwrap();
    check_output(&bs, output, 3, &expected(lines), Duration::from_secs(240));
    drop(procs);
    drop(kafka);
    drop(etcd);
}
