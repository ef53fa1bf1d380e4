//! A highly available cluster across test hosts: etcd, a Kafka broker, two
//! JobManagers and two TaskManagers each on a network namespace of its own
//! (`sluice_integration_tests::netns`, created and removed by the test), so
//! every connection crosses a real network interface, with mutual TLS
//! between the cluster's processes. Under the exactly-once Kafka WordCount
//! the leader is cut off from etcd alone (it still reaches its TaskManagers
//! and job processes): it must step down, another JobManager must resume
//! the job, and the committed output must stay exact; then the new leader
//! is killed with SIGKILL. And a split brain in the making: the network
//! splits into two sides that could each run the job; only the side with
//! etcd may. Needs root (the test hosts).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod common;

use common::cluster::{job_id_of, sluice_bin, TOKEN};
use common::kafka_wordcount_args;
use sluice_integration_tests::etcd::EtcdServer;
use sluice_integration_tests::netns::{TestHost, TestNetwork};
use sluice_integration_tests::wordcount::{check_output, create_topics, expected, feed_in_background};
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

/// Two JobManagers and two TaskManagers with etcd and Kafka, each on its
/// own test host, mutual TLS inside the cluster; fields drop (processes
/// first) before the network.
struct MultiHost {
    procs: Processes,
    /// Kept for its drop (stops the broker).
    _kafka: KafkaOnHost,
    /// Kept for its drop (kills etcd).
    _etcd: EtcdServer,
    net: TestNetwork,
    settings: Vec<String>,
    bs: String,
    work: tempfile::TempDir,
}

impl Drop for MultiHost {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep the logs for the failure report.
            let path = std::mem::replace(&mut self.work, tempfile::tempdir().unwrap()).keep();
            eprintln!("logs kept in {}", path.display());
        }
    }
}

impl MultiHost {
    fn start() -> Self {
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
        let mut c = MultiHost {
            procs: Processes { jms: Vec::new(), tms: Vec::new() },
            _kafka: kafka,
            _etcd: etcd,
            net,
            settings,
            bs,
            work,
        };
        for jm in ["jm-0", "jm-1"] {
            let h = c.net.host(jm).clone();
            // Bound to every address of the host, advertised at its own.
            let extra = [
                format!("jobmanager.rpc.address={}", h.ip),
                "jobmanager.bind-host=0.0.0.0".into(),
                format!("jobmanager.rpc.port={RPC_PORT}"),
                format!("rest.address={}", h.ip),
                "rest.bind-address=0.0.0.0".into(),
                format!("rest.port={REST_PORT}"),
                format!("jobmanager.resource-id={jm}"),
            ];
            let child = c.spawn(&h, "jobmanager", &extra);
            c.procs.jms.push((jm.to_string(), child));
            // jm-0 campaigns first and leads.
            std::thread::sleep(Duration::from_millis(500));
        }
        for tm in ["tm-a", "tm-b"] {
            let h = c.net.host(tm).clone();
            // Bound to every address of the host, advertised at its own.
            let extra = [
                format!("taskmanager.host={}", h.ip),
                "taskmanager.bind-host=0.0.0.0".into(),
                "taskmanager.numberOfTaskSlots=2".into(),
                format!("taskmanager.resource-id={tm}"),
            ];
            let child = c.spawn(&h, "taskmanager", &extra);
            c.procs.tms.push(child);
        }
        c.wait("jm-0 leading with two TaskManagers", Duration::from_secs(60), &|c| {
            c.leader().as_deref() == Some("jm-0") && get(c.net.host("jm-0"), "/overview")["taskmanagers"] == 2
        });
        c
    }

    fn spawn(&self, host: &TestHost, role: &str, extra: &[String]) -> Child {
        let log = std::fs::File::create(self.work.path().join(format!("{}.log", host.name))).unwrap();
        host.command(sluice_bin())
            .args(self.settings.iter().chain(extra).flat_map(|s| ["-D", s.as_str()]))
            .args(["-D", &format!("cluster.work-dir={}", self.work.path().join(&host.name).display())])
            .arg(role)
            .env_remove("SLUICE_CONF_DIR")
            .env("SLUICE_LOG", "info")
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn leader(&self) -> Option<String> {
        ["jm-0", "jm-1"]
            .iter()
            .find(|jm| get(self.net.host(jm), "/overview")["leadership"]["role"] == "leader")
            .map(|s| s.to_string())
    }

    fn wait(&self, what: &str, within: Duration, ok: &dyn Fn(&Self) -> bool) {
        let deadline = Instant::now() + within;
        while !ok(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}; logs in {}", self.work.path().display());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Submits the exactly-once Kafka WordCount at parallelism `p` from
    /// this machine (the CLI finds the leader in etcd); returns the job id.
    fn submit(&self, input: &str, output: &str, p: &str) -> String {
        let ckpt = self.work.path().join("checkpoints").display().to_string();
        let cli = Command::new(sluice_bin())
            .args(self.settings.iter().flat_map(|s| ["-D", s.as_str()]))
            .env("SLUICE_REST_TOKEN", TOKEN)
            .env_remove("SLUICE_CONF_DIR")
            .args(["run", "-d", "-p", p])
            .args(kafka_wordcount_args(&self.bs, input, output, &ckpt, "200ms"))
            .output()
            .unwrap();
        assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
        job_id_of(&cli)
    }

    /// Whether `jm` leads and runs `job` with a completed checkpoint.
    fn running_on(&self, jm: &str, job: &str) -> bool {
        let h = self.net.host(jm);
        get(h, "/overview")["leadership"]["role"] == "leader"
            && get(h, &format!("/jobs/{job}"))["state"] == "RUNNING"
            && get(h, &format!("/jobs/{job}/checkpoints"))["counts"]["completed"].as_u64().unwrap_or(0) > 0
    }

    /// The checkpoint `jm`'s log says it resumed `job` from.
    fn resumed_from(&self, jm: &str) -> u64 {
        std::fs::read_to_string(self.work.path().join(format!("{jm}.log")))
            .unwrap()
            .lines()
            .filter_map(|l| {
                l.split_once("from its latest completed checkpoint ")
                    .and_then(|(_, r)| r.split(' ').next()?.parse().ok())
            })
            .next_back()
            .unwrap_or_else(|| panic!("{jm} did not say which checkpoint it resumed from"))
    }

    /// The checkpoints the job master `jm` started for `job` completed.
    fn completed_by(&self, jm: &str, job: &str) -> Vec<u64> {
        let log = self.work.path().join(jm).join(format!("jobmanager-{jm}")).join("jobs").join(job).join("driver.log");
        std::fs::read_to_string(&log)
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
            .lines()
            .filter_map(|l| l.split_once("Completed checkpoint ").and_then(|(_, r)| r.split(' ').next()?.parse().ok()))
            .collect()
    }
}

#[test]
fn a_leader_cut_off_from_etcd_steps_down_and_the_output_stays_exact() {
    let mut c = MultiHost::start();
    let (input, output) = ("mh-in", "mh-out");
    create_topics(&c.bs, &[input, output], 3);
    let lines = 12_000;
    let feeder = feed_in_background(&c.bs, input, 0..lines, 100, Duration::from_millis(100));
    let job = c.submit(input, output, "4");
    c.wait("the job running and checkpointing", Duration::from_secs(60), &|c| c.running_on("jm-0", &job));
    std::thread::sleep(Duration::from_secs(2));

    // The leader loses etcd, and only etcd.
    let cut_at = Instant::now();
    c.net.cut("jm-0", "etcd").unwrap();
    c.wait("jm-1 to resume the job", Duration::from_secs(60), &|c| c.running_on("jm-1", &job));
    eprintln!("leader jm-0 cut off from etcd -> job RUNNING on jm-1 after {:?}", cut_at.elapsed());
    assert_eq!(
        get(c.net.host("jm-0"), "/overview")["leadership"]["role"],
        "standby",
        "the cut-off leader stepped down"
    );
    let old = c.completed_by("jm-0", &job);
    let resumed = c.resumed_from("jm-1");
    assert!(old.iter().all(|cp| *cp <= resumed), "jm-0's job master completed {old:?} past {resumed}");
    c.net.heal("jm-0", "etcd").unwrap();
    std::thread::sleep(Duration::from_secs(2));

    // The new leader is killed; the healed one takes over again.
    let (_, mut killed) = c.procs.jms.remove(1);
    let kill_at = Instant::now();
    killed.kill().unwrap();
    killed.wait().unwrap();
    c.wait("jm-0 to lead and resume the job again", Duration::from_secs(60), &|c| c.running_on("jm-0", &job));
    eprintln!("SIGKILL of leader jm-1 -> job RUNNING on jm-0 after {:?}", kill_at.elapsed());

    feeder.join().unwrap();
    check_output(&c.bs, output, 3, &expected(lines), Duration::from_secs(240));
}

/// A split brain in the making: the network splits into {jm-0 (the
/// leader), tm-a} and {etcd, jm-1, tm-b}, Kafka reachable from both. The
/// job (p=2) fits on either TaskManager, so both sides could run it; only
/// the side that holds etcd may. jm-0 must stop (it cannot renew its
/// lease, and its job master can complete no checkpoint without etcd),
/// jm-1 resumes the job on tm-b, and the committed output stays exact.
#[test]
fn a_split_brain_partition_leaves_one_side_running_and_the_output_exact() {
    let c = MultiHost::start();
    let (input, output) = ("sb-in", "sb-out");
    create_topics(&c.bs, &[input, output], 3);
    let lines = 12_000;
    let feeder = feed_in_background(&c.bs, input, 0..lines, 100, Duration::from_millis(100));
    let job = c.submit(input, output, "2");
    c.wait("the job running and checkpointing", Duration::from_secs(60), &|c| c.running_on("jm-0", &job));
    std::thread::sleep(Duration::from_secs(2));
    let sides =
        [("jm-0", "etcd"), ("jm-0", "jm-1"), ("jm-0", "tm-b"), ("tm-a", "etcd"), ("tm-a", "jm-1"), ("tm-a", "tm-b")];
    let cut_at = Instant::now();
    for (a, b) in sides {
        c.net.cut(a, b).unwrap();
    }
    c.wait("jm-1 to resume the job on tm-b", Duration::from_secs(60), &|c| c.running_on("jm-1", &job));
    eprintln!("split {{jm-0, tm-a}} | {{etcd, jm-1, tm-b}} -> job RUNNING on jm-1 after {:?}", cut_at.elapsed());
    // Both sides run for a while: only one may commit.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(get(c.net.host("jm-0"), "/overview")["leadership"]["role"], "standby", "jm-0 stepped down");
    let old = c.completed_by("jm-0", &job);
    let resumed = c.resumed_from("jm-1");
    assert!(old.iter().all(|cp| *cp <= resumed), "jm-0's job master completed {old:?} past {resumed}");
    for (a, b) in sides {
        c.net.heal(a, b).unwrap();
    }
    feeder.join().unwrap();
    check_output(&c.bs, output, 3, &expected(lines), Duration::from_secs(240));
}
