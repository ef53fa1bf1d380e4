//! What the README claims of a job's life in the cluster, with values:
//! `sluice stop` and `POST /jobs/{id}/stop` take a savepoint that holds the
//! job's state (a job resumed from it continues the counts); a savepoint
//! with state that the new job has no operator for is refused unless
//! `--allow-non-restored-state` is given (to `sluice run`, or to the job
//! binary run locally); a TaskManager that stops heartbeating (SIGSTOP: its
//! connection stays open) is declared lost after `heartbeat.timeout`, not
//! before, and its job fails over.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::cluster::{http, job_id_of, ClusterUnderTest, TOKEN};
use common::{read_counts, reference_counts, SOCKET, WORDCOUNT};

/// The socket WordCount at parallelism 2, detached, from `savepoint` if
/// given; returns its job id, the connection it reads and the listener it
/// connects to (kept, so that a restarted job can connect again).
fn socket_job(cluster: &ClusterUnderTest, savepoint: Option<&str>) -> (String, TcpStream, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let mut args = vec!["run", "-d", "-p", "2"];
    if let Some(s) = savepoint {
        args.extend(["-s", s]);
    }
    args.extend([SOCKET.as_str(), "--", "--host", "127.0.0.1", "--port", &port]);
    let out = cluster.cli(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job = job_id_of(&out);
    let (conn, _) = listener.accept().unwrap();
    wait_state(cluster, &job, "RUNNING");
    (job, conn, listener)
}

fn job_json(cluster: &ClusterUnderTest, job: &str) -> serde_json::Value {
    cluster.get(&format!("/jobs/{job}"), Some(TOKEN)).1
}

fn wait_state(cluster: &ClusterUnderTest, job: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while job_json(cluster, job)["state"] != state {
        assert!(Instant::now() < deadline, "job {job} never became {state}: {}", job_json(cluster, job));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `(word,count)` lines the job's task processes printed, sorted.
fn printed(cluster: &ClusterUnderTest, job: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for dirs in cluster.job_process_dirs(job).values() {
        for d in dirs {
            let text = std::fs::read_to_string(d.join("taskmanager.out")).unwrap_or_default();
            lines.extend(text.lines().map(|l| l.split_once("> ").map(|(_, r)| r).unwrap_or(l).to_string()));
        }
    }
    lines.sort();
    lines
}

/// Waits until the job printed exactly `want` (in any order).
fn wait_printed(cluster: &ClusterUnderTest, job: &str, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = printed(cluster, job);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "job {job} printed {got:?}, expected {want:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A savepoint of the socket WordCount after it counted "a a b", taken
/// with `sluice stop`; the job is canceled by it.
fn stopped_with_savepoint(cluster: &ClusterUnderTest) -> String {
    let (job, mut conn, _listener) = socket_job(cluster, None);
    conn.write_all(b"a a b\n").unwrap();
    wait_printed(cluster, &job, &["(a,1)", "(a,2)", "(b,1)"]);
    let dir = cluster.work.path().join("savepoints");
    let out = cluster.cli(&["stop", "--savepoint-path", dir.to_str().unwrap(), &job]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let path = text.lines().find_map(|l| l.strip_prefix("Savepoint completed. Path: ")).unwrap().trim().to_string();
    assert!(Path::new(&path).starts_with(&dir), "{path} is below {}", dir.display());
    assert!(Path::new(&path).join("_metadata").is_file(), "{path}");
    wait_state(cluster, &job, "CANCELED");
    path
}

#[test]
fn stop_with_a_savepoint_by_cli_and_rest_then_resume_continues_the_counts() {
    let cluster = ClusterUnderTest::start("60s");
    let first = stopped_with_savepoint(&cluster);

    // Resumed from `sluice stop`'s savepoint: the counts go on from a=2, b=1.
    let (job, mut conn, _listener) = socket_job(&cluster, Some(&first));
    conn.write_all(b"a b c\n").unwrap();
    wait_printed(&cluster, &job, &["(a,3)", "(b,2)", "(c,1)"]);

    // POST /jobs/{id}/stop: the answer names the savepoint; the job ends.
    let dir = cluster.work.path().join("savepoints-rest");
    let body = serde_json::json!({ "targetDirectory": dir }).to_string();
    let (status, v) = http(cluster.rest, "POST", &format!("/jobs/{job}/stop"), Some(TOKEN), &body);
    assert_eq!(status, 200, "{v}");
    let second = v["location"].as_str().unwrap().to_string();
    assert!(Path::new(&second).join("_metadata").is_file(), "{v}");
    wait_state(&cluster, &job, "CANCELED");
    let (status, v) = http(cluster.rest, "POST", &format!("/jobs/{job}/stop"), Some(TOKEN), &body);
    assert_eq!(status, 409, "a stopped job cannot be stopped again: {v}");

    // Resumed from that one: a=3 before, so the next a is 4.
    let (job, mut conn, _listener) = socket_job(&cluster, Some(&second));
    conn.write_all(b"a\n").unwrap();
    wait_printed(&cluster, &job, &["(a,4)"]);
    cluster.cli(&["cancel", &job]);
}

#[test]
fn allow_non_restored_state_lets_another_job_start_from_a_savepoint() {
    let cluster = ClusterUnderTest::start("60s");
    let savepoint = stopped_with_savepoint(&cluster);
    // The batch WordCount has no operator for the socket source's state;
    // its keyed counts sit where the socket job's do (the same derived id).
    let input = cluster.work.path().join("in.txt");
    std::fs::write(&input, "x y x\n").unwrap();
    let output = |name: &str| cluster.work.path().join(name);
    let run = |extra: &[&str], out: &str| {
        let mut args = vec!["run", "-p", "1", "-s", &savepoint];
        args.extend(extra);
        let (input, out) = (input.to_str().unwrap().to_string(), output(out).to_str().unwrap().to_string());
        args.extend([WORDCOUNT.as_str(), "--", "--input", &input, "--output", &out]);
        cluster.cli(&args)
    };
    let refused = run(&[], "refused.txt");
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success(), "{stdout}");
    assert!(stdout.contains("FAILED") && stdout.contains("--allow-non-restored-state"), "{stdout}");
    assert!(stdout.contains("holds state of operator 'Source: Socket Stream'"), "{stdout}");
    assert!(!output("refused.txt").exists());

    // With the flag the source's state is dropped and the counts restored:
    // a=2 and b=1 from the savepoint, x and y from the new input.
    let restored_and_new = reference_counts("a a b x y x");
    let allowed = run(&["--allow-non-restored-state"], "allowed.txt");
    let stdout = String::from_utf8_lossy(&allowed.stdout);
    assert!(allowed.status.success(), "{stdout}{}", String::from_utf8_lossy(&allowed.stderr));
    assert_eq!(read_counts(&output("allowed.txt")), restored_and_new);

    // The same flag of the job binary itself, run by the local runner.
    let local = |flag: Option<&str>, out: &str| {
        let mut cmd = Command::new(WORDCOUNT.as_str());
        cmd.args(["--input", input.to_str().unwrap(), "--output", output(out).to_str().unwrap(), "-s", &savepoint]);
        cmd.args(flag).env_remove("SLUICE_CONF_DIR").output().unwrap()
    };
    let refused = local(None, "local-refused.txt");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("--allow-non-restored-state"), "{stderr}");
    let allowed = local(Some("--allow-non-restored-state"), "local-allowed.txt");
    assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
    assert_eq!(read_counts(&output("local-allowed.txt")), restored_and_new);
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

#[test]
fn a_silent_taskmanager_is_lost_after_heartbeat_timeout_and_its_job_fails_over() {
    let timeout = Duration::from_secs(3);
    let cluster = ClusterUnderTest::start_with(
        "60s",
        &[
            "heartbeat.timeout=3s".into(),
            "heartbeat.interval=200ms".into(),
            "restart-strategy.type=fixed-delay".into(),
            "restart-strategy.fixed-delay.attempts=20".into(),
            "restart-strategy.fixed-delay.delay=200ms".into(),
        ],
    );
    let (job, mut conn, listener) = socket_job(&cluster, None);
    let processes = job_json(&cluster, &job)["metrics"]["taskProcesses"].as_array().cloned().unwrap_or_default();
    assert!(processes.iter().any(|p| p["taskmanager"] == "tm-b"), "the job runs on tm-b too: {processes:?}");
    conn.write_all(b"a\n").unwrap();
    wait_printed(&cluster, &job, &["(a,1)"]);

    // SIGSTOP: tm-b's connection stays open but its heartbeats stop.
    let pid = cluster.tms["tm-b"].id();
    signal(pid, "-STOP");
    let stopped = Instant::now();
    let registered = |c: &ClusterUnderTest| c.get("/overview", Some(TOKEN)).1["taskmanagers"].as_u64();
    while registered(&cluster) == Some(2) {
        assert!(stopped.elapsed() < timeout * 3, "tm-b was never declared lost");
        std::thread::sleep(Duration::from_millis(50));
    }
    let lost_after = stopped.elapsed();
    eprintln!("tm-b declared lost {lost_after:?} after its SIGSTOP (heartbeat.timeout {timeout:?})");
    // Its last heartbeat came at most one interval (200 ms) before the stop.
    assert!(lost_after >= timeout - Duration::from_millis(250), "lost before heartbeat.timeout: {lost_after:?}");
    assert!(lost_after <= timeout + Duration::from_secs(2), "lost long after heartbeat.timeout: {lost_after:?}");
    let log = std::fs::read_to_string(cluster.work.path().join("jobmanager.log")).unwrap();
    assert!(log.contains("TaskManager tm-b sent no heartbeat for 3s: declared lost"), "{log}");

    // Resumed, tm-b finds its JobManager link closed, stops its job
    // process and registers again; the job fails over and runs on.
    signal(pid, "-CONT");
    cluster.wait_for(|o| o["taskmanagers"] == 2, "tm-b registered again");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = job_json(&cluster, &job);
        if v["state"] == "RUNNING" && v["restarts"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the job did not fail over: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The restarted source connects again and counts what it reads.
    listener.set_nonblocking(false).unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all(b"z\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !printed(&cluster, &job).contains(&"(z,1)".to_string()) {
        assert!(Instant::now() < deadline, "nothing counted after the failover: {:?}", printed(&cluster, &job));
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.cli(&["cancel", &job]);
}
