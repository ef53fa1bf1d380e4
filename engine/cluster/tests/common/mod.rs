//! Helpers shared by the cluster tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

pub mod cdp;
pub mod cluster;
pub mod ha;

use cluster::{example_bin, job_id_of, sluice_bin, ClusterUnderTest, TOKEN};
use sluice_integration_tests::process::wait_within;
use sluice_test_support::free_port;
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The batch WordCount example.
pub static WORDCOUNT: LazyLock<String> = LazyLock::new(|| example_bin("wordcount"));
/// The Kafka WordCount example.
pub static KAFKA_WORDCOUNT: LazyLock<String> = LazyLock::new(|| example_bin("kafka_wordcount"));
/// The socket WordCount example.
pub static SOCKET: LazyLock<String> = LazyLock::new(|| example_bin("socket_wordcount"));

/// The local broker's address (`scripts/kafka-local.sh start`); fails the
/// test if it is not running.
pub fn broker() -> String {
    let bs = sluice_integration_tests::kafka::local_bootstrap();
    sluice_integration_tests::kafka::require_listening(&bs).unwrap();
    bs
}

/// The Kafka WordCount binary and its arguments for `sluice run` (after
/// the run options): exactly-once from `input` to `output`, checkpoints in
/// `ckpt` every `interval`, up to 50 restarts 100 ms apart.
pub fn kafka_wordcount_args(bs: &str, input: &str, output: &str, ckpt: &str, interval: &str) -> Vec<String> {
    let args = [
        KAFKA_WORDCOUNT.as_str(),
        "--",
        "--bootstrap-servers",
        bs,
        "--input-topic",
        input,
        "--output-topic",
        output,
        "--checkpoint-dir",
        ckpt,
        "--checkpoint-interval",
        interval,
        "-D",
        "restart-strategy.type=fixed-delay",
        "-D",
        "restart-strategy.fixed-delay.attempts=50",
        "-D",
        "restart-strategy.fixed-delay.delay=100ms",
    ];
    args.iter().map(|a| a.to_string()).collect()
}

pub fn reference_counts(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for w in text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        *counts.entry(w.to_string()).or_insert(0) += 1;
    }
    counts
}

pub fn corpus() -> String {
    let words = ["stream", "Sluice", "flink", "kafka", "état", "слот", "barrier", "checkpoint", "slot", "task"];
    (0..4000).map(|i| format!("{} {} {}\n", words[i % 10], words[(i * 7) % 10], words[(i * 3 + 1) % 10])).collect()
}

/// The `word,count` lines the batch WordCount wrote.
pub fn read_counts(path: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (w, c) = l.rsplit_once(',').unwrap();
            (w.to_string(), c.parse().unwrap())
        })
        .collect()
}

/// Runs the batch WordCount attached at -p 4 over both TaskManagers through
/// the CLI and checks it: it finished, its counts are exact, and subtasks
/// ran on both TaskManagers. Returns the job id.
pub fn run_batch_wordcount(cluster: &ClusterUnderTest) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.txt"), dir.path().join("out.txt"));
    let text = corpus();
    std::fs::write(&input, &text).unwrap();
    let out = cluster.cli(&[
        "run",
        "-p",
        "4",
        WORDCOUNT.as_str(),
        "--",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let job = job_id_of(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("has finished"));
    assert_eq!(read_counts(&output), reference_counts(&text));
    let placed = cluster.job_process_dirs(&job);
    assert!(placed.values().all(|d| !d.is_empty()), "subtasks ran on both TaskManagers: {placed:?}");
    job
}

/// Starts the socket WordCount detached at parallelism `p`; returns its job
/// id and the connection it reads from, once the job is RUNNING.
pub fn running_socket_job(cluster: &ClusterUnderTest, p: &str) -> (String, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let out = cluster.cli(&["run", "-d", "-p", p, SOCKET.as_str(), "--", "--host", "127.0.0.1", "--port", &port]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job = job_id_of(&out);
    let (conn, _) = listener.accept().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.get(&format!("/jobs/{job}"), Some(TOKEN)).1["state"] != "RUNNING" {
        assert!(Instant::now() < deadline, "job {job} never ran; logs in {}", cluster.work.path().display());
        std::thread::sleep(Duration::from_millis(100));
    }
    (job, conn)
}

/// Processes whose working directory lies strictly below `dir`.
pub fn job_processes_under(dir: &Path) -> Vec<String> {
    processes_under(dir)
        .into_iter()
        .filter(|(_, cwd, _)| cwd.as_deref().is_some_and(|c| Path::new(c).starts_with(dir) && Path::new(c) != dir))
        .map(|(pid, _, cmdline)| format!("{pid}: {cmdline}"))
        .collect()
}

/// Processes whose command line or working directory lies under `dir`:
/// (pid, working directory, command line).
pub fn processes_under(dir: &Path) -> Vec<(String, Option<String>, String)> {
    let needle = dir.to_string_lossy().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = std::fs::read_link(entry.path().join("cwd")).map(|p| p.to_string_lossy().to_string());
        let cwd = cwd.ok();
        if cmdline.contains(&needle) || cwd.as_deref().is_some_and(|c| c.starts_with(&needle)) {
            found.push((pid, cwd, cmdline));
        }
    }
    found
}

/// TaskManager processes, killed when dropped.
pub struct TaskManagers(pub Vec<Child>);

impl Drop for TaskManagers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `sluice standalone-job -p 4 wordcount` over `input` into `output`
/// with `settings` and two TaskManagers; returns once the JobManager has
/// exited (within two minutes), with its output.
pub fn standalone_wordcount(work: &Path, settings: &[String], input: &Path, output: &Path) -> Output {
    let (rest, rpc) = (free_port().unwrap(), free_port().unwrap());
    let all: Vec<String> = settings
        .iter()
        .cloned()
        .chain([
            format!("rest.port={rest}"),
            format!("jobmanager.rpc.port={rpc}"),
            format!("rest.token={TOKEN}"),
            format!("cluster.work-dir={}", work.join("cluster").display()),
            "taskmanager.numberOfTaskSlots=2".into(),
        ])
        .collect();
    let base = |role: &str| {
        let mut cmd = Command::new(sluice_bin());
        cmd.current_dir(work).env_remove("SLUICE_CONF_DIR").args(all.iter().flat_map(|s| ["-D", s.as_str()]));
        cmd.stderr(std::fs::File::create(work.join(format!("{role}.log"))).unwrap());
        cmd
    };
    let jm = base("jobmanager")
        .args(["standalone-job", "-p", "4", WORDCOUNT.as_str(), "--"])
        .args(["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _tms = TaskManagers(
        ["tm-a", "tm-b"]
            .iter()
            .map(|tm| {
                base(tm)
                    .args(["-D", &format!("taskmanager.resource-id={tm}"), "taskmanager"])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    wait_within(jm, Duration::from_secs(120), "the standalone-job JobManager")
}
