//! Cluster mode with real processes on loopback: one `sluice jobmanager`,
//! two `sluice taskmanager`s with two slots each, jobs submitted with
//! `sluice run`, followed with `sluice list`, stopped with `sluice cancel`;
//! a TaskManager killed with SIGKILL under an exactly-once Kafka job.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::cluster::{http, job_id_of, sluice_bin, url_encode, ClusterUnderTest, TOKEN};
use common::kafka::{check_output, create_topics, expected, feed};
use sluice_integration_tests::kafka::KafkaContainer;
use sluice_test_support::free_port;

const WORDCOUNT: &str = env!("CARGO_BIN_EXE_wordcount");
const KAFKA_WORDCOUNT: &str = env!("CARGO_BIN_EXE_kafka_wordcount");
const SOCKET: &str = env!("CARGO_BIN_EXE_socket_wordcount");

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

/// The `word,count` lines the batch WordCount wrote.
fn read_counts(path: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (w, c) = l.rsplit_once(',').unwrap();
            (w.to_string(), c.parse().unwrap())
        })
        .collect()
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
    let got = read_counts(&output);
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
    let out = Command::new(sluice_bin())
        .args(["-m", &format!("127.0.0.1:{}", free_port().unwrap()), "list"])
        .output()
        .unwrap();
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

/// Starts the socket WordCount detached at parallelism `p`; returns its job
/// id and the connection it reads from, once the job is RUNNING.
fn running_socket_job(cluster: &ClusterUnderTest, p: &str) -> (String, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let out = cluster.cli(&["run", "-d", "-p", p, SOCKET, "--", "--host", "127.0.0.1", "--port", &port]);
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

/// `/api/v1/query` of a Prometheus server: the result vector as
/// (labels, value) pairs.
fn prom_query(port: u16, query: &str) -> Vec<(serde_json::Value, f64)> {
    let (status, v) = http(port, "GET", &format!("/api/v1/query?query={}", url_encode(query)), None, "");
    if status != 200 {
        return Vec::new();
    }
    v["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let value = r["value"][1].as_str().and_then(|x| x.parse().ok()).unwrap_or(f64::NAN);
            (r["metric"].clone(), value)
        })
        .collect()
}

/// Ten consecutive ports that are free now.
fn free_port_range() -> (u16, u16) {
    loop {
        let lo = free_port().unwrap();
        let Some(hi) = lo.checked_add(9) else { continue };
        if (lo..=hi).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return (lo, hi);
        }
    }
}

/// Every process of a running job serves `/metrics` (TaskManagers and job
/// processes on the first free ports of a `metrics.reporter.prom.port`
/// range) and is listed by the JobManager for Prometheus' HTTP service
/// discovery; a real Prometheus server configured only with the
/// JobManager's `/metrics/targets` scrapes the operator metrics of the task
/// processes on both TaskManagers, the driver's job metrics and the
/// JobManager's cluster gauges.
#[test]
fn prometheus_discovers_and_scrapes_every_process_of_a_running_job() {
    let (lo, hi) = free_port_range();
    let cluster = ClusterUnderTest::start_with("60s", &[format!("metrics.reporter.prom.port={lo}-{hi}")]);
    let (job, mut conn) = running_socket_job(&cluster, "4");
    // 200 distinct words, five times: every keyed subtask gets some.
    let line: String = (0..200).map(|i| format!("w{i} ")).collect::<String>() + "\n";
    for _ in 0..5 {
        conn.write_all(line.as_bytes()).unwrap();
    }
    let words = 1000.0;

    // The REST API shows where each process serves its metrics.
    let deadline = Instant::now() + Duration::from_secs(30);
    let details = loop {
        let (_, v) = cluster.get(&format!("/jobs/{job}"), Some(TOKEN));
        let procs = v["metrics"]["taskProcesses"].as_array().cloned().unwrap_or_default();
        if v["metrics"]["driver"].is_string() && procs.len() == 2 && procs.iter().all(|p| p["metrics"].is_string()) {
            break v;
        }
        assert!(Instant::now() < deadline, "job processes never reported their metrics: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let tms: Vec<&str> = details["metrics"]["taskProcesses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["taskmanager"].as_str().unwrap())
        .collect();
    assert_eq!(tms, ["tm-a", "tm-b"], "{details}");
    let (_, v) = cluster.get("/taskmanagers", Some(TOKEN));
    for tm in v["taskmanagers"].as_array().unwrap() {
        assert!(tm["metrics"].is_string(), "{tm}");
        assert!(tm["jobProcesses"][0]["metrics"].is_string(), "{tm}");
    }
    // Each of those endpoints answers with Prometheus text.
    let driver_metrics = details["metrics"]["driver"].as_str().unwrap();
    let text = sluice_test_support::http::get(driver_metrics, "/metrics").unwrap().body;
    assert!(text.contains("sluice_jobmanager_job_uptime"), "{text}");
    // The discovery document: the JobManager, two TaskManagers, the driver
    // and one task process per TaskManager.
    let (status, targets) = cluster.get("/metrics/targets", Some(TOKEN));
    assert_eq!(status, 200, "{targets}");
    let mut roles: Vec<String> =
        targets.as_array().unwrap().iter().map(|t| t["labels"]["sluice_role"].as_str().unwrap().to_string()).collect();
    roles.sort();
    assert_eq!(roles, ["driver", "jobmanager", "task", "task", "taskmanager", "taskmanager"], "{targets}");
    // All but the JobManager (on its REST port) serve on ports of the range.
    for t in targets.as_array().unwrap().iter().filter(|t| t["labels"]["sluice_role"] != "jobmanager") {
        let port: u16 = t["targets"][0].as_str().unwrap().rsplit_once(':').unwrap().1.parse().unwrap();
        assert!((lo..=hi).contains(&port), "{t} outside {lo}-{hi}");
    }

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    let auth = format!("authorization:\n      type: Bearer\n      credentials: {TOKEN}");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sluice\n    {auth}\n    http_sd_configs:\n      - url: http://127.0.0.1:{}/metrics/targets\n        refresh_interval: 1s\n        {}\n",
            cluster.rest,
            auth.replace("\n    ", "\n        ")
        ),
    )
    .unwrap();
    let port = free_port().unwrap();
    let args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    let log = dir.path().join("prometheus.log");
    let _prometheus = sluice_integration_tests::ServerProcess::start("prometheus", &args, Some(&log)).unwrap();

    let started = Instant::now();
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        while !ok() {
            if started.elapsed() > Duration::from_secs(90) {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("Prometheus never saw {what}; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    // All six targets discovered and up.
    wait("six targets up", &|| {
        let up = prom_query(port, "up");
        up.len() == 6 && up.iter().all(|(_, v)| *v == 1.0)
    });
    eprintln!("Prometheus discovered and scraped all six targets {:?} after its start", started.elapsed());
    // Operator metrics from the task processes on both TaskManagers: the
    // keyed aggregation received every word, spread over both.
    let per_tm = format!(
        "sum by (sluice_taskmanager) (sluice_taskmanager_job_task_operator_numRecordsIn{{sluice_role=\"task\",job_id=\"{job}\",operator_name=\"Keyed Aggregation\"}})"
    );
    wait("the keyed aggregation's records on both TaskManagers", &|| {
        let r = prom_query(port, &per_tm);
        r.len() == 2 && r.iter().all(|(_, v)| *v > 0.0) && r.iter().map(|(_, v)| v).sum::<f64>() == words
    });
    let r = prom_query(port, &per_tm);
    let mut on: Vec<&str> = r.iter().map(|(l, _)| l["sluice_taskmanager"].as_str().unwrap()).collect();
    on.sort();
    assert_eq!(on, ["tm-a", "tm-b"], "{r:?}");
    eprintln!("Keyed Aggregation numRecordsIn per TaskManager after {:?}: {r:?}", started.elapsed());
    let out = prom_query(
        port,
        &format!("sum(sluice_taskmanager_job_task_operator_numRecordsOut{{sluice_role=\"task\",job_id=\"{job}\",operator_name=\"Flat Map\"}})"),
    );
    assert_eq!(out.first().map(|(_, v)| *v), Some(words), "Flat Map emitted every word: {out:?}");
    // The driver's job metrics and the JobManager's cluster gauges.
    let uptime = prom_query(port, &format!("sluice_jobmanager_job_uptime{{sluice_role=\"driver\",job_id=\"{job}\"}}"));
    assert!(uptime.len() == 1 && uptime[0].1 > 0.0, "{uptime:?}");
    for (gauge, want) in [
        ("sluice_jobmanager_numRegisteredTaskManagers", 2.0),
        ("sluice_jobmanager_taskSlotsTotal", 4.0),
        ("sluice_jobmanager_taskSlotsAvailable", 0.0),
        ("sluice_jobmanager_numRunningJobs", 1.0),
    ] {
        let r = prom_query(port, &format!("{gauge}{{sluice_role=\"jobmanager\"}}"));
        assert!(r.len() == 1 && r[0].1 == want, "{gauge}: {r:?}");
    }

    // Canceled, the job's processes leave the discovery document.
    let out = cluster.cli(&["cancel", &job]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, targets) = cluster.get("/metrics/targets", Some(TOKEN));
        let roles: Vec<&str> =
            targets.as_array().unwrap().iter().map(|t| t["labels"]["sluice_role"].as_str().unwrap()).collect();
        if roles.iter().all(|r| *r == "jobmanager" || *r == "taskmanager") {
            assert_eq!(roles.len(), 3, "{targets}");
            break;
        }
        assert!(Instant::now() < deadline, "the canceled job's processes are still listed: {targets}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // And they are gone although Prometheus was scraping them (job
    // processes run in directories below the cluster's work directory).
    loop {
        let left = job_processes_under(cluster.work.path());
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "job processes still running after the cancel: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Processes whose working directory lies strictly below `dir`.
fn job_processes_under(dir: &Path) -> Vec<String> {
    processes_under(dir)
        .into_iter()
        .filter(|(_, cwd, _)| cwd.as_deref().is_some_and(|c| Path::new(c).starts_with(dir) && Path::new(c) != dir))
        .map(|(pid, _, cmdline)| format!("{pid}: {cmdline}"))
        .collect()
}

/// Processes whose command line or working directory lies under `dir`:
/// (pid, working directory, command line).
fn processes_under(dir: &Path) -> Vec<(String, Option<String>, String)> {
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

/// Application mode: `sluice run-application` starts a JobManager and two
/// TaskManagers for the batch WordCount at parallelism 4, prints the
/// result, and leaves no process and no bound port behind.
#[test]
fn run_application_runs_the_batch_wordcount_and_leaves_nothing_behind() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in.txt");
    let output = work.path().join("out.txt");
    let text = corpus();
    std::fs::write(&input, &text).unwrap();
    let cluster_dir = work.path().join("cluster");
    let started = Instant::now();
    let (out_log, err_log) = (work.path().join("client.out"), work.path().join("client.err"));
    let mut client = Command::new(sluice_bin())
        .current_dir(work.path())
        .env_remove("SLUICE_CONF_DIR")
        .args(["-D", &format!("cluster.work-dir={}", cluster_dir.display()), "-D", "taskmanager.numberOfTaskSlots=2"])
        .args(["run-application", "--taskmanagers", "2", "-p", "4", WORDCOUNT, "--"])
        .args(["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()])
        .stdout(std::fs::File::create(&out_log).unwrap())
        .stderr(std::fs::File::create(&err_log).unwrap())
        .spawn()
        .unwrap();
    // While it runs, the check below sees its processes (so it can fail).
    let mut most_seen = 0;
    let status = loop {
        if let Some(status) = client.try_wait().unwrap() {
            break status;
        }
        most_seen = most_seen.max(processes_under(work.path()).len());
        assert!(started.elapsed() < Duration::from_secs(120), "run-application did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let (stdout, stderr) = (std::fs::read_to_string(&out_log).unwrap(), std::fs::read_to_string(&err_log).unwrap());
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(most_seen >= 3, "the two TaskManagers and a job process were seen running ({most_seen} processes)");
    assert!(stdout.contains("has finished"), "{stdout}");
    eprintln!("run-application of the batch WordCount took {elapsed:?}");
    let got = read_counts(&output);
    assert_eq!(got, reference_counts(&text));
    // Both TaskManagers hosted a process of the job.
    let tm_dirs: Vec<PathBuf> = std::fs::read_dir(&cluster_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("application-tm-"))
        .collect();
    assert_eq!(tm_dirs.len(), 2, "{tm_dirs:?}");
    for d in &tm_dirs {
        assert!(std::fs::read_dir(d.join("jobs")).unwrap().count() >= 1, "no job process ran in {}", d.display());
    }
    // Nothing left: no TaskManager, task process or driver, ports free.
    let left = processes_under(work.path());
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let addr = |prefix: &str| -> String {
        stderr
            .lines()
            .find_map(|l| l.split(prefix).nth(1))
            .unwrap_or_else(|| panic!("no '{prefix}' in {stderr}"))
            .split([' ', '/'])
            .next()
            .unwrap()
            .to_string()
    };
    for a in [addr("REST API at http://"), addr("RPC at ")] {
        assert!(TcpStream::connect(&a).is_err(), "{a} still accepts connections");
        TcpListener::bind(&a).unwrap_or_else(|e| panic!("{a} is not free: {e}"));
    }
}

/// Application mode, its client killed with SIGKILL while an unbounded job
/// runs: the TaskManagers notice that their parent is gone, stop their job
/// processes and exit; the driver loses its JobManager and cancels the job.
/// Nothing of the application cluster is left running.
#[test]
fn run_application_leaves_nothing_behind_when_its_client_is_killed() {
    let work = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let err_log = work.path().join("client.err");
    let mut client = Command::new(sluice_bin())
        .current_dir(work.path())
        .env_remove("SLUICE_CONF_DIR")
        .args(["-D", &format!("cluster.work-dir={}", work.path().join("cluster").display())])
        .args(["-D", "taskmanager.numberOfTaskSlots=2", "run-application", "--taskmanagers", "2", "-p", "4", SOCKET])
        .args(["--", "--host", "127.0.0.1", "--port", &port])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_log).unwrap())
        .spawn()
        .unwrap();
    // Running: the socket source connected and the REST API says RUNNING.
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let _conn = loop {
        if let Ok((c, _)) = listener.accept() {
            break c;
        }
        assert!(Instant::now() < deadline, "the job never connected: {}", std::fs::read_to_string(&err_log).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest: u16 = loop {
        let text = std::fs::read_to_string(&err_log).unwrap();
        let found = text.lines().find_map(|l| l.split("REST API at http://127.0.0.1:").nth(1));
        if let Some(p) = found.and_then(|r| r.split('/').next()).and_then(|p| p.parse().ok()) {
            break p;
        }
        assert!(Instant::now() < deadline, "no REST address in {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    while http(rest, "GET", "/jobs/overview", None, "").1["jobs"][0]["state"] != "RUNNING" {
        assert!(Instant::now() < deadline, "the job never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    let running = processes_under(work.path()).len();
    assert!(running >= 5, "client, two TaskManagers, driver and task processes: {running}");
    client.kill().unwrap();
    client.wait().unwrap();
    let killed = Instant::now();
    loop {
        let left = processes_under(work.path());
        if left.is_empty() {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(15), "left behind 15 s after the client's SIGKILL: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("application cluster gone {:?} after its client was killed", killed.elapsed());
}

/// The web UI in a real browser: headless Chromium loads `/` (with the
/// token in the fragment), runs its JavaScript, and the DOM shows the
/// running job (id, name, RUNNING) and both TaskManagers. Without the
/// token the page says that it needs one.
#[test]
fn web_ui_shows_the_running_job_and_taskmanagers_in_chromium() {
    let cluster = ClusterUnderTest::start("60s");
    let (job, _conn) = running_socket_job(&cluster, "4");
    let profile = tempfile::tempdir().unwrap();
    let dump = |fragment: &str| {
        let started = Instant::now();
        let out = Command::new("chromium")
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000", "--dump-dom"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("http://127.0.0.1:{}/{fragment}", cluster.rest))
            .output()
            .expect("chromium is not installed: run scripts/install-deps.sh");
        let dom = String::from_utf8_lossy(&out.stdout).to_string();
        eprintln!("headless chromium rendered /{fragment} in {:?}", started.elapsed());
        assert!(
            dom.contains("<table id=\"jobs\">"),
            "no DOM from chromium: {dom}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dom
    };
    let dom = dump(&format!("#token={TOKEN}"));
    let row = dom
        .split("<tr>")
        .find(|r| r.contains(&format!("<td>{job}</td>")))
        .unwrap_or_else(|| panic!("the job {job} is not in the rendered page:\n{dom}"));
    assert!(row.contains("<td>Socket WordCount</td>"), "{row}");
    assert!(row.contains("<td class=\"RUNNING\">RUNNING</td>"), "{row}");
    for tm in ["tm-a", "tm-b"] {
        let row = dom
            .split("<tr>")
            .find(|r| r.contains(&format!("<td>{tm}</td>")))
            .unwrap_or_else(|| panic!("TaskManager {tm} is not in the rendered page:\n{dom}"));
        assert!(row.contains(&job[..8]), "{tm} hosts a process of the job: {row}");
    }
    let dom = dump("");
    assert!(dom.contains("needs its rest.token"), "{dom}");
    assert!(!dom.contains(&job), "{dom}");
}
