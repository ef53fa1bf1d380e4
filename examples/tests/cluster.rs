//! Cluster mode with real processes on loopback: one `sluice jobmanager`,
//! two `sluice taskmanager`s with two slots each, jobs submitted with
//! `sluice run`, followed with `sluice list`, stopped with `sluice cancel`;
//! a TaskManager killed with SIGKILL under an exactly-once Kafka job.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::kafka::{check_output, create_topics, expected, feed};
use sluice_integration_tests::kafka::KafkaContainer;

const WORDCOUNT: &str = env!("CARGO_BIN_EXE_wordcount");
const KAFKA_WORDCOUNT: &str = env!("CARGO_BIN_EXE_kafka_wordcount");
const SOCKET: &str = env!("CARGO_BIN_EXE_socket_wordcount");
const TOKEN: &str = "s3cret";

/// The `sluice` binary, built by the same `cargo test --workspace` run.
fn sluice_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("sluice");
    assert!(bin.is_file(), "{} missing: build the workspace (cargo build --workspace) first", bin.display());
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct ClusterUnderTest {
    work: tempfile::TempDir,
    rest: u16,
    rpc: u16,
    jm: Child,
    tms: BTreeMap<String, Child>,
}

impl ClusterUnderTest {
    fn start(slot_timeout: &str) -> Self {
        let work = tempfile::tempdir().unwrap();
        let (rest, rpc) = (free_port(), free_port());
        let mut c =
            ClusterUnderTest { work, rest, rpc, jm: Command::new("true").spawn().unwrap(), tms: BTreeMap::new() };
        c.jm = c
            .base(Command::new(sluice_bin()))
            .args(["-D", &format!("slot.request.timeout={slot_timeout}"), "-D", &format!("rest.token={TOKEN}")])
            .arg("jobmanager")
            .stderr(log(c.work.path(), "jobmanager.log"))
            .spawn()
            .unwrap();
        for tm in ["tm-a", "tm-b"] {
            c.start_tm(tm);
        }
        c.wait_for(|o| o["taskmanagers"] == 2, "two TaskManagers registered");
        c
    }

    fn base(&self, mut cmd: Command) -> Command {
        cmd.args(["-D", &format!("rest.port={}", self.rest), "-D", &format!("jobmanager.rpc.port={}", self.rpc)])
            .args(["-D", &format!("cluster.work-dir={}", self.work.path().display())])
            .env_remove("SLUICE_CONF_DIR")
            .current_dir(self.work.path());
        cmd
    }

    fn start_tm(&mut self, id: &str) {
        let child = self
            .base(Command::new(sluice_bin()))
            .args(["-D", "taskmanager.numberOfTaskSlots=2", "-D", &format!("taskmanager.resource-id={id}")])
            .arg("taskmanager")
            .stderr(log(self.work.path(), &format!("{id}.log")))
            .spawn()
            .unwrap();
        self.tms.insert(id.to_string(), child);
    }

    /// `sluice ARGS` as a client, with the token.
    fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = self.base(Command::new(sluice_bin()));
        cmd.env("SLUICE_REST_TOKEN", TOKEN).args(args).output().unwrap()
    }

    fn get(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        http(self.rest, "GET", path, token, "")
    }

    fn wait_for(&self, ok: impl Fn(&serde_json::Value) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let (200, v) = self.get("/overview", Some(TOKEN)) {
                if ok(&v) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; logs in {}", self.work.path().display());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The directories of a job's processes on each TaskManager.
    fn job_process_dirs(&self, job: &str) -> BTreeMap<String, Vec<PathBuf>> {
        let mut out = BTreeMap::new();
        for tm in self.tms.keys() {
            let jobs = self.work.path().join(tm).join("jobs");
            let dirs: Vec<PathBuf> = std::fs::read_dir(&jobs)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(job))
                        .collect()
                })
                .unwrap_or_default();
            out.insert(tm.clone(), dirs);
        }
        out
    }
}

impl Drop for ClusterUnderTest {
    fn drop(&mut self) {
        for c in self.tms.values_mut().chain(std::iter::once(&mut self.jm)) {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            // Keep the logs for the failure report.
            let path = std::mem::replace(&mut self.work, tempfile::tempdir().unwrap()).keep();
            eprintln!("cluster logs kept in {}", path.display());
        }
    }
}

fn log(dir: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(name)).unwrap()
}

/// A minimal HTTP/1.0 request (the test should not share the CLI's client).
fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, serde_json::Value::Null); // not listening (yet)
    };
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.0\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

fn job_id_of(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Job has been submitted with JobID "))
        .unwrap_or_else(|| panic!("no job id in {text} / {}", String::from_utf8_lossy(&out.stderr)))
        .trim()
        .to_string()
}

fn reference_counts(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for w in text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        *counts.entry(w.to_string()).or_insert(0) += 1;
    }
    counts
}

fn corpus() -> String {
    let words = ["stream", "Sluice", "flink", "kafka", "état", "слот", "barrier", "checkpoint", "slot", "task"];
    (0..4000).map(|i| format!("{} {} {}\n", words[i % 10], words[(i * 7) % 10], words[(i * 3 + 1) % 10])).collect()
}

#[test]
fn batch_and_socket_wordcount_run_at_parallelism_4_across_two_taskmanagers() {
    let cluster = ClusterUnderTest::start("60s");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let output = dir.path().join("out.txt");
    let text = corpus();
    std::fs::write(&input, &text).unwrap();

    // Batch WordCount, attached: the CLI waits and reports the end.
    let out = cluster.cli(&[
        "run",
        "-p",
        "4",
        WORDCOUNT,
        "--",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let job = job_id_of(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("has finished"));
    let got: BTreeMap<String, u64> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| {
            let (w, c) = l.rsplit_once(',').unwrap();
            (w.to_string(), c.parse().unwrap())
        })
        .collect();
    assert_eq!(got, reference_counts(&text));
    let placed = cluster.job_process_dirs(&job);
    assert!(placed.values().all(|d| !d.is_empty()), "subtasks ran on both TaskManagers: {placed:?}");

    // Socket WordCount at -p 4: running counts, printed by the task processes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let run = cluster
        .base(Command::new(sluice_bin()))
        .env("SLUICE_REST_TOKEN", TOKEN)
        .args(["run", "-p", "4", SOCKET, "--", "--host", "127.0.0.1", "--port", &port])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all(b"Hello world\nhello, Sluice!\nHELLO world\n").unwrap();
    // While it runs, `list` shows it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = cluster.cli(&["list"]);
        let text = String::from_utf8_lossy(&l.stdout).to_string();
        if text.contains("(RUNNING)") && text.contains("Socket") {
            break;
        }
        assert!(Instant::now() < deadline, "the socket job never showed as RUNNING: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(conn);
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let job = job_id_of(&out);
    let mut printed = Vec::new();
    for dirs in cluster.job_process_dirs(&job).values() {
        for d in dirs {
            let text = std::fs::read_to_string(d.join("taskmanager.out")).unwrap_or_default();
            printed.extend(text.lines().map(|l| l.split_once("> ").map(|(_, r)| r.to_string()).unwrap_or_default()));
        }
    }
    printed.sort();
    assert_eq!(printed, ["(hello,1)", "(hello,2)", "(hello,3)", "(sluice,1)", "(world,1)", "(world,2)"]);
}

#[test]
fn too_few_slots_waits_visibly_then_fails_naming_the_numbers() {
    let cluster = ClusterUnderTest::start("4s");
    let out = cluster.cli(&["run", "-d", "-p", "5", WORDCOUNT, "--", "--input", "/etc/hostname"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job = job_id_of(&out);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen_scheduled = false;
    loop {
        let text = String::from_utf8_lossy(&cluster.cli(&["list", "-a"]).stdout).to_string();
        if text.contains(&format!("{job} : Batch WordCount (CREATED)")) {
            seen_scheduled = true;
        }
        if text.contains(&format!("{job} : Batch WordCount (FAILED)")) {
            break;
        }
        assert!(Instant::now() < deadline, "the job did not fail after the slot timeout: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(seen_scheduled, "`sluice list` showed the waiting job as scheduled (CREATED)");
    let (_, v) = cluster.get(&format!("/jobs/{job}"), Some(TOKEN));
    let failure = v["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("could not get 5 slots") && failure.contains("has 4 slots"), "{failure}");
    // The cluster still serves and its slots are free again.
    cluster.wait_for(|o| o["slots-available"] == 4, "all slots free");
}

#[test]
fn bad_input_gets_clear_errors_and_the_cluster_keeps_serving() {
    let cluster = ClusterUnderTest::start("60s");
    // Not executable.
    let dir = tempfile::tempdir().unwrap();
    let text_file = dir.path().join("job.txt");
    std::fs::write(&text_file, "not a program").unwrap();
    let out = cluster.cli(&["run", text_file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an executable file"), "{out:?}");
    // A job binary that fails at start (missing --input): FAILED, with its own message.
    let out = cluster.cli(&["run", WORDCOUNT]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAILED") && stdout.contains("input"), "{stdout}");
    // Wrong or missing token.
    let (status, v) = cluster.get("/jobs/overview", Some("wrong"));
    assert_eq!(status, 401, "{v}");
    let mut cmd = cluster.base(Command::new(sluice_bin()));
    let out = cmd.env_remove("SLUICE_REST_TOKEN").arg("list").output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("bearer token"), "{out:?}");
    // Malformed requests.
    let (status, v) = http(cluster.rest, "POST", "/jars/nope/run", Some(TOKEN), "{not json");
    assert_eq!(status, 400, "{v}");
    assert!(v["errors"][0].as_str().unwrap().contains("malformed JSON"), "{v}");
    let (status, _) = http(cluster.rest, "PATCH", "/jobs/xyz?mode=cancel", Some(TOKEN), "");
    assert_eq!(status, 400);
    // Unreachable JobManager.
    let out = Command::new(sluice_bin()).args(["-m", &format!("127.0.0.1:{}", free_port()), "list"]).output().unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("cannot reach the JobManager"),
        "{out:?}"
    );
    // Still serving.
    let (status, v) = cluster.get("/overview", Some(TOKEN));
    assert_eq!((status, v["taskmanagers"].as_u64()), (200, Some(2)));
}

/// Kafka WordCount at -p 4 over both TaskManagers; one of them is killed
/// with SIGKILL three times while input arrives and started again at once.
/// The committed output must still satisfy the 1..n rule for every word.
#[test]
fn kafka_wordcount_stays_exactly_once_when_a_taskmanager_is_killed() {
    let kafka = KafkaContainer::start().unwrap();
    let bs = kafka.bootstrap().to_string();
    create_topics(&bs, &["cl-in", "cl-out"], 3);
    let lines = 12_000;
    let feeder = {
        let bs = bs.clone();
        // About 12 s of input, so that the kills fall while it flows.
        std::thread::spawn(move || feed(&bs, "cl-in", 0..lines, Some((100, Duration::from_millis(100)))))
    };
    let mut cluster = ClusterUnderTest::start("120s");
    let ckpt = cluster.work.path().join("checkpoints");
    let out = cluster.cli(&[
        "run",
        "-d",
        "-p",
        "4",
        KAFKA_WORDCOUNT,
        "--",
        "--bootstrap-servers",
        &bs,
        "--input-topic",
        "cl-in",
        "--output-topic",
        "cl-out",
        "--checkpoint-dir",
        ckpt.to_str().unwrap(),
        "--checkpoint-interval",
        "200ms",
        "-D",
        "restart-strategy.type=fixed-delay",
        "-D",
        "restart-strategy.fixed-delay.attempts=50",
        "-D",
        "restart-strategy.fixed-delay.delay=100ms",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job = job_id_of(&out);
    let restarts = |c: &ClusterUnderTest| {
        let (_, v) = c.get(&format!("/jobs/{job}"), Some(TOKEN));
        (v["state"].as_str().unwrap_or("").to_string(), v["restarts"].as_u64().unwrap_or(0))
    };
    let mut rng: u64 = 0xc1a5;
    for round in 0..3 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Kill a running job that has checkpointed since its last start.
        let deadline = Instant::now() + Duration::from_secs(60);
        let completed = |c: &ClusterUnderTest| {
            c.get(&format!("/jobs/{job}/checkpoints"), Some(TOKEN)).1["counts"]["completed"].as_u64().unwrap_or(0)
        };
        let base = completed(&cluster);
        while restarts(&cluster).0 != "RUNNING" || completed(&cluster) <= base {
            assert!(Instant::now() < deadline, "the job never ran and checkpointed: {:?}", restarts(&cluster));
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500 + rng % 1500));
        let before = restarts(&cluster).1;
        let killed = Instant::now();
        let mut tm = cluster.tms.remove("tm-b").unwrap();
        tm.kill().unwrap(); // SIGKILL
        tm.wait().unwrap();
        cluster.start_tm("tm-b");
        // Time from the kill to the job running again after a restart.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (state, n) = restarts(&cluster);
            if state == "RUNNING" && n > before {
                eprintln!(
                    "round {round}: SIGKILL of tm-b -> job RUNNING again after restart {n}: {:?}",
                    killed.elapsed()
                );
                break;
            }
            assert!(Instant::now() < deadline, "the job did not recover (state {state}, restarts {n})");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    feeder.join().unwrap();
    check_output(&bs, "cl-out", 3, &expected(lines), Duration::from_secs(180));
    let out = cluster.cli(&["cancel", &job]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Session mode: two jobs at once, `list` shows both, `cancel` stops one;
/// a savepoint of the Kafka WordCount taken in the cluster (`sluice
/// savepoint`) restores at another parallelism (`sluice run -s ... -p 3`)
/// and the committed output keeps the 1..n rule across it.
#[test]
fn session_mode_lists_cancels_and_restores_a_savepoint_at_another_parallelism() {
    let kafka = KafkaContainer::start().unwrap();
    let bs = kafka.bootstrap().to_string();
    create_topics(&bs, &["sp-in", "sp-out"], 3);
    feed(&bs, "sp-in", 0..3000, None);
    let cluster = ClusterUnderTest::start("60s");
    let ckpt = cluster.work.path().join("checkpoints");
    let kafka_args = |p: &str, savepoint: Option<&str>| {
        let mut v: Vec<String> = ["run", "-d", "-p", p].iter().map(|s| s.to_string()).collect();
        if let Some(s) = savepoint {
            v.extend(["-s".to_string(), s.to_string()]);
        }
        v.extend(
            [KAFKA_WORDCOUNT, "--", "--bootstrap-servers", &bs, "--input-topic", "sp-in", "--output-topic", "sp-out"]
                .iter()
                .map(|s| s.to_string()),
        );
        v.extend(
            ["--checkpoint-dir", ckpt.to_str().unwrap(), "--checkpoint-interval", "300ms"]
                .iter()
                .map(|s| s.to_string()),
        );
        v
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cluster.cli(&refs);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        job_id_of(&out)
    };
    let a = run(kafka_args("2", None));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let b = run(["run", "-d", "-p", "2", SOCKET, "--", "--host", "127.0.0.1", "--port", &port]
        .iter()
        .map(|s| s.to_string())
        .collect());
    let (_conn, _) = listener.accept().unwrap();
    let wait_list = |needles: &[String]| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = String::from_utf8_lossy(&cluster.cli(&["list", "-a"]).stdout).to_string();
            if needles.iter().all(|n| text.contains(n.as_str())) {
                return text;
            }
            assert!(Instant::now() < deadline, "waiting for {needles:?} in:\n{text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_list(&[format!("{a} : Kafka WordCount (RUNNING)"), format!("{b} : Socket WordCount (RUNNING)")]);
    let out = cluster.cli(&["cancel", &b]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("Cancelled job {b}")), "{out:?}");
    wait_list(&[format!("{a} : Kafka WordCount (RUNNING)"), format!("{b} : Socket WordCount (CANCELED)")]);
    // Let job A read its input, then take the savepoint and cancel it.
    std::thread::sleep(Duration::from_secs(3));
    let sp_dir = cluster.work.path().join("savepoints");
    let out = cluster.cli(&["savepoint", &a, sp_dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let path = text.lines().find_map(|l| l.strip_prefix("Savepoint completed. Path: ")).unwrap().trim().to_string();
    assert!(Path::new(&path).join("_metadata").is_file(), "{path}");
    cluster.cli(&["cancel", &a]);
    wait_list(&[format!("{a} : Kafka WordCount (CANCELED)")]);
    // More input, and the job again from the savepoint at parallelism 3.
    feed(&bs, "sp-in", 3000..6000, None);
    let c = run(kafka_args("3", Some(&path)));
    check_output(&bs, "sp-out", 3, &expected(6000), Duration::from_secs(120));
    cluster.cli(&["cancel", &c]);
}
