//! The `sluice/sluice` image as a cluster of containers: a JobManager and
//! two TaskManagers, each a container of the image built from this build's
//! binaries (`scripts/docker-images.sh sluice`), and a Kafka broker
//! container, on a Docker network the test creates. The containers find
//! each other by name (`jobmanager`, `tm-a`, `tm-b`) through Docker's DNS,
//! talk mutual TLS, and share one mounted checkpoint directory, as
//! TaskManagers on separate machines share a file system for checkpoints.
//! The exactly-once Kafka WordCount is submitted from this machine with the
//! CLI; each TaskManager container in turn is `docker kill`ed and started
//! again while input arrives: the job recovers from its latest checkpoint
//! and its committed output is exact. Needs a Docker engine
//! (`scripts/docker-images.sh engine`) and root (to hand the mounted
//! directories to the image's user).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::cluster::{job_id_of, sluice_bin, TOKEN};
use common::kafka_wordcount_args;
use sluice_integration_tests::docker::{docker, Container, DockerNetwork};
use sluice_integration_tests::images::kafka_image;
use sluice_integration_tests::wordcount::{
    check_output, create_topics, expected, feed_in_background, wait_for_committed,
};
use sluice_test_support::http;

/// The image's user (docker/sluice/Dockerfile).
const IMAGE_UID: &str = "9999";
const LINES: u64 = 30_000;

/// Builds the image from the binaries of this build (tag
/// `sluice/sluice:<version>-test`); returns the tag.
fn build_image() -> String {
    let bin_dir = sluice_bin().parent().unwrap().to_path_buf();
    let tag = format!("sluice/sluice:{}-test", env!("CARGO_PKG_VERSION"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/docker-images.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg("sluice")
        .env("SLUICE_BIN_DIR", &bin_dir)
        .env("SLUICE_IMAGE", &tag)
        .output()
        .unwrap();
    assert!(out.status.success(), "building {tag}: {}", String::from_utf8_lossy(&out.stderr));
    tag
}

/// What every container of a test mounts: the configuration, the
/// certificates and a shared directory (checkpoints, files), handed to the
/// image's user; and the image.
struct Setup {
    image: String,
    mounts: Vec<String>,
    shared: std::path::PathBuf,
    /// Kept for its drop (the mounted directories).
    _work: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let image = build_image();
        let work = tempfile::tempdir().unwrap();
        let (conf, certs, shared) = (work.path().join("conf"), work.path().join("certs"), work.path().join("shared"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster-certs.sh");
        assert!(Command::new("bash").arg(script).arg(&certs).arg("node").output().unwrap().status.success());
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::create_dir_all(&shared).unwrap();
        // The configuration every container mounts: the names it advertises
        // are the containers' names on the network.
        std::fs::write(
            conf.join("sluice.yaml"),
            format!(
                "jobmanager.rpc.address: jobmanager\n\
                 jobmanager.bind-host: 0.0.0.0\n\
                 rest.address: jobmanager\n\
                 rest.bind-address: 0.0.0.0\n\
                 rest.token: {TOKEN}\n\
                 cluster.work-dir: /opt/sluice/work\n\
                 taskmanager.numberOfTaskSlots: 2\n\
                 heartbeat.timeout: 5s\n\
                 security.ssl.internal.enabled: true\n\
                 security.ssl.internal.cert: /opt/sluice/certs/node.pem\n\
                 security.ssl.internal.key: /opt/sluice/certs/node-key.pem\n\
                 security.ssl.internal.trust-cert: /opt/sluice/certs/ca.pem\n"
            ),
        )
        .unwrap();
        for dir in [&certs, &shared] {
            let chown = Command::new("chown").args(["-R", &format!("{IMAGE_UID}:{IMAGE_UID}")]).arg(dir).status();
            assert!(chown.unwrap().success(), "chown {} (the test needs root)", dir.display());
        }
        let mounts = vec![
            "-v".to_string(),
            format!("{}:/opt/sluice/conf:ro", conf.display()),
            "-v".into(),
            format!("{}:/opt/sluice/certs:ro", certs.display()),
            "-v".into(),
            format!("{}:/shared", shared.display()),
            "-e".into(),
            "SLUICE_LOG=info".into(),
        ];
        Setup { image, mounts, shared, _work: work }
    }

    /// Starts TaskManager container `tm` at address `ip` of `net`.
    fn taskmanager(&self, net: &DockerNetwork, tm: &str, ip: &str) -> Container {
        // Advertised by name, bound to every interface of the container.
        let settings = [
            format!("taskmanager.host={tm}"),
            "taskmanager.bind-host=0.0.0.0".into(),
            format!("taskmanager.resource-id={tm}"),
        ];
        let args: Vec<String> =
            settings.iter().flat_map(|s| ["-D".to_string(), s.clone()]).chain(["taskmanager".to_string()]).collect();
        net.run(tm, ip, &self.mounts, &self.image, &args).unwrap()
    }
}

/// Containers (dropped first) on their network.
struct DockerCluster {
    tms: Vec<Container>,
    jm: Container,
    _kafka: Container,
    net: DockerNetwork,
    /// Kept for its drop (the mounted directories).
    _setup: Setup,
}

impl DockerCluster {
    fn start() -> Self {
        let setup = Setup::new();
        let net = DockerNetwork::create("docker-cluster").unwrap();
        let kafka_ip = net.ip(2);
        let (kname, ktag) = kafka_image();
        let kafka = net
            .run(
                "kafka",
                &kafka_ip,
                &["-e".into(), format!("KAFKA_ADVERTISED_HOST={kafka_ip}")],
                &format!("{kname}:{ktag}"),
                &[],
            )
            .unwrap();
        let jm = net.run("jobmanager", &net.ip(3), &setup.mounts, &setup.image, &["jobmanager".into()]).unwrap();
        let tms = vec![setup.taskmanager(&net, "tm-a", &net.ip(4)), setup.taskmanager(&net, "tm-b", &net.ip(5))];
        let c = DockerCluster { tms, jm, _kafka: kafka, net, _setup: setup };
        kafka_ready(&c);
        c.wait("two TaskManagers registered", Duration::from_secs(60), &|c| c.get("/overview")["taskmanagers"] == 2);
        c
    }

    fn bootstrap(&self) -> String {
        format!("{}:9092", self.net.ip(2))
    }

    fn rest(&self) -> String {
        format!("{}:8081", self.net.ip(3))
    }

    fn get(&self, path: &str) -> serde_json::Value {
        match http::request((self.net.ip(3).as_str(), 8081), "GET", path, Some(TOKEN), "") {
            Ok(r) => serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null),
            Err(_) => serde_json::Value::Null,
        }
    }

    fn wait(&self, what: &str, within: Duration, ok: &dyn Fn(&Self) -> bool) {
        let deadline = Instant::now() + within;
        while !ok(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", self.all_logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn all_logs(&self) -> String {
        std::iter::once(&self.jm)
            .chain(&self.tms)
            .map(|c| format!("--- {} ---\n{}", c.name, tail(&c.logs(), 40)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The number of completed checkpoints of `job`.
    fn completed(&self, job: &str) -> u64 {
        self.get(&format!("/jobs/{job}/checkpoints"))["counts"]["completed"].as_u64().unwrap_or(0)
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn kafka_ready(c: &DockerCluster) {
    c._kafka.wait_for_log("Kafka Server started", Duration::from_secs(120)).unwrap();
}

/// One JobManager and two TaskManager containers of the image run the
/// exactly-once Kafka WordCount at p=2 against a Kafka container; each
/// TaskManager container is killed (`docker kill`) and started again while
/// input arrives; the job recovers each time and its committed output
/// holds, for every word, exactly 1..n.
#[test]
fn a_cluster_of_containers_recovers_from_killed_taskmanagers_exactly_once() {
    let c = DockerCluster::start();
    let bs = c.bootstrap();
    let (input, output) = ("docker-in", "docker-out");
    create_topics(&bs, &[input, output], 2);
    let feeder = feed_in_background(&bs, input, 0..LINES, 500, Duration::from_millis(100));
    // Submitted from this machine; the job binary is uploaded to the
    // JobManager container, which hands it to the TaskManager containers.
    let work = tempfile::tempdir().unwrap();
    let cli = Command::new(sluice_bin())
        .current_dir(work.path())
        .env_remove("SLUICE_CONF_DIR")
        .env("SLUICE_REST_TOKEN", TOKEN)
        .args(["-m", &c.rest(), "run", "-d", "-p", "2"])
        .args(kafka_wordcount_args(&bs, input, output, "/shared/checkpoints", "500ms"))
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}\n{}", String::from_utf8_lossy(&cli.stderr), c.all_logs());
    let job = job_id_of(&cli);
    c.wait("the job running with a checkpoint", Duration::from_secs(90), &|c| {
        c.get(&format!("/jobs/{job}"))["state"] == "RUNNING" && c.completed(&job) > 0
    });
    wait_for_committed(&bs, output, 2, 100, Duration::from_secs(60));
    for tm in &c.tms {
        let before = c.completed(&job);
        tm.kill().unwrap();
        // Running again (on the other container) with a new checkpoint.
        c.wait(&format!("a checkpoint after killing {}", tm.name), Duration::from_secs(120), &|c| {
            c.get(&format!("/jobs/{job}"))["state"] == "RUNNING" && c.completed(&job) > before
        });
        tm.start().unwrap();
        c.wait(&format!("{} registered again", tm.name), Duration::from_secs(60), &|c| {
            c.get("/overview")["taskmanagers"] == 2
        });
    }
    feeder.join().unwrap();
    check_output(&bs, output, 2, &expected(LINES), Duration::from_secs(180));
    // The kills reached the job: its driver restarted it from a checkpoint.
    let driver_log =
        docker(&["exec", &c.jm.name, "sh", "-c", &format!("cat /opt/sluice/work/*/jobs/{job}/driver.log")])
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
    let restarts = driver_log.lines().filter(|l| l.contains("; restart ") && l.contains(" from checkpoint ")).count();
    assert!(restarts >= 1, "the job never restarted from a checkpoint:\n{}", tail(&driver_log, 60));
}

/// Application mode in containers: a JobManager container running
/// `sluice standalone-job` on the batch WordCount the image ships, and a
/// TaskManager container; the JobManager exits 0 when the job has finished
/// and the counts are exact.
#[test]
fn a_standalone_job_container_runs_the_image_s_example_and_exits() {
    let setup = Setup::new();
    let net = DockerNetwork::create("docker-application").unwrap();
    let text = common::corpus();
    std::fs::write(setup.shared.join("in.txt"), &text).unwrap();
    let args: Vec<String> = ["standalone-job", "-p", "2", "/opt/sluice/examples/wordcount", "--"]
        .iter()
        .chain(&["--input", "/shared/in.txt", "--output", "/shared/out.txt"])
        .map(|s| s.to_string())
        .collect();
    let jm = net.run("jobmanager", &net.ip(2), &setup.mounts, &setup.image, &args).unwrap();
    let tm = setup.taskmanager(&net, "tm-a", &net.ip(3));
    let deadline = Instant::now() + Duration::from_secs(120);
    while jm.running() {
        assert!(Instant::now() < deadline, "the JobManager did not exit:\n{}\n{}", jm.logs(), tm.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", &jm.name]).unwrap();
    assert_eq!(String::from_utf8_lossy(&code.stdout).trim(), "0", "{}\n{}", jm.logs(), tm.logs());
    assert!(jm.logs().contains("ended: FINISHED"), "{}", jm.logs());
    assert_eq!(common::read_counts(&setup.shared.join("out.txt")), common::reference_counts(&text));
    drop((tm, jm));
}
