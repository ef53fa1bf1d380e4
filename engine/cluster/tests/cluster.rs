//! Cluster mode with real processes on loopback: one `sluice jobmanager`,
//! two `sluice taskmanager`s with two slots each, jobs submitted with
//! `sluice run`, followed with `sluice list`, stopped with `sluice cancel`;
//! bad input; the metrics of every process discovered and scraped by
//! Prometheus; the web UI in a browser.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::cluster::{http, job_id_of, sluice_bin, url_encode, ClusterUnderTest, TOKEN};
use common::{job_processes_under, run_batch_wordcount, running_socket_job, SOCKET, WORDCOUNT};
use sluice_test_support::free_port;

#[test]
fn batch_and_socket_wordcount_run_at_parallelism_4_across_two_taskmanagers() {
    let cluster = ClusterUnderTest::start("60s");

    // Batch WordCount, attached: the CLI waits and reports the end.
    run_batch_wordcount(&cluster);

    // Socket WordCount at -p 4: running counts, printed by the task processes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let run = cluster
        .base(Command::new(sluice_bin()))
        .env("SLUICE_REST_TOKEN", TOKEN)
        .args(["run", "-p", "4", SOCKET.as_str(), "--", "--host", "127.0.0.1", "--port", &port])
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
    let out = cluster.cli(&["run", "-d", "-p", "5", WORDCOUNT.as_str(), "--", "--input", "/etc/hostname"]);
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
    let out = cluster.cli(&["run", WORDCOUNT.as_str()]);
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

/// The web UI in a real browser: headless Chromium loads `/` (with the
/// token in the fragment), runs its JavaScript, and the DOM shows the
/// running job (id, name, RUNNING) and both TaskManagers. Without the
/// token the page says that it needs one.
/// The configuration views at Flink's paths: `/config` (the UI's
/// features), `/jobmanager/config` (secrets masked) and `/jobs/{id}/config`
/// (the job's parallelism, settings and arguments).
#[test]
fn configuration_views_show_settings_with_secrets_masked() {
    let cluster = ClusterUnderTest::start_with("60s", &["rest.metrics-token=m3trics-s3cret".to_string()]);
    let (status, config) = cluster.get("/config", Some(TOKEN));
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["features"]["web-submit"], true, "{config}");
    assert_eq!(config["sluice-version"], env!("CARGO_PKG_VERSION"));

    let (status, jm) = cluster.get("/jobmanager/config", Some(TOKEN));
    assert_eq!(status, 200, "{jm}");
    let entries = jm.as_array().unwrap();
    let value = |key: &str| entries.iter().find(|e| e["key"] == key).map(|e| e["value"].clone());
    assert_eq!(value("rest.metrics-token"), Some(serde_json::json!("******")), "{jm}");
    assert_eq!(value("rest.token"), Some(serde_json::json!("******")), "{jm}");
    assert!(value("cluster.work-dir").is_some_and(|v| v != "******"), "{jm}");
    let text = jm.to_string();
    assert!(!text.contains(TOKEN) && !text.contains("m3trics-s3cret"), "a secret shows: {text}");

    let (job, _conn) = running_socket_job(&cluster, "3");
    let (status, jc) = cluster.get(&format!("/jobs/{job}/config"), Some(TOKEN));
    assert_eq!(status, 200, "{jc}");
    assert_eq!(jc["jid"], job);
    assert_eq!(jc["execution-config"]["job-parallelism"], 3, "{jc}");
    assert_eq!(jc["program-args"][0], "--host", "{jc}");
    assert_eq!(cluster.get("/jobs/00000000000000000000000000000000/config", Some(TOKEN)).0, 404);
    assert_eq!(cluster.get("/jobmanager/config", None).0, 401, "the views need the token");
}

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
        assert!(dom.contains("id=\"view\""), "no DOM from chromium: {dom}\n{}", String::from_utf8_lossy(&out.stderr));
        dom
    };
    let dom = dump(&format!("#token={TOKEN}"));
    let row = dom
        .split("<tr>")
        .find(|r| r.contains(&format!(">{job}</a></td>")))
        .unwrap_or_else(|| panic!("the job {job} is not in the rendered page:\n{dom}"));
    assert!(row.contains("<td>Socket WordCount</td>"), "{row}");
    assert!(row.contains("<td class=\"RUNNING\">RUNNING</td>"), "{row}");
    let dom = dump(&format!("#/taskmanagers?token={TOKEN}"));
    for tm in ["tm-a", "tm-b"] {
        let row = dom
            .split("<tr>")
            .find(|r| r.contains(&format!(">{tm}</a></td>")))
            .unwrap_or_else(|| panic!("TaskManager {tm} is not in the rendered page:\n{dom}"));
        assert!(row.contains(&job[..8]), "{tm} hosts a process of the job: {row}");
    }
    let dom = dump("");
    assert!(dom.contains("needs its rest.token"), "{dom}");
    assert!(!dom.contains(&job), "{dom}");
}
