//! Cluster mode under the Kafka WordCount, against the local broker
//! (`scripts/kafka-local.sh start`): a TaskManager killed with SIGKILL
//! under an exactly-once job; session mode with a savepoint restored at
//! another parallelism.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::cluster::{job_id_of, ClusterUnderTest, TOKEN};
use common::{broker, kafka_wordcount_args, KAFKA_WORDCOUNT, SOCKET};
use sluice_integration_tests::wordcount::{
    check_output, create_topics, expected, feed, feed_in_background, wait_for_committed,
};
use sluice_test_support::unique_name;

/// Kafka WordCount at -p 4 over both TaskManagers; one of them is killed
/// with SIGKILL three times while input arrives and started again at once.
/// The committed output must still satisfy the 1..n rule for every word.
#[test]
fn kafka_wordcount_stays_exactly_once_when_a_taskmanager_is_killed() {
    let bs = broker();
    let (input, output) = (unique_name("cl-in"), unique_name("cl-out"));
    create_topics(&bs, &[&input, &output], 3);
    let lines = 12_000;
    // About 12 s of input, so that the kills fall while it flows.
    let feeder = feed_in_background(&bs, &input, 0..lines, 100, Duration::from_millis(100));
    let mut cluster = ClusterUnderTest::start("120s");
    let ckpt = cluster.work.path().join("checkpoints").display().to_string();
    let args = kafka_wordcount_args(&bs, &input, &output, &ckpt, "200ms");
    let mut run = vec!["run", "-d", "-p", "4"];
    run.extend(args.iter().map(String::as_str));
    let out = cluster.cli(&run);
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
    check_output(&bs, &output, 3, &expected(lines), Duration::from_secs(180));
    let out = cluster.cli(&["cancel", &job]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Session mode: two jobs at once, `list` shows both, `cancel` stops one;
/// a savepoint of the Kafka WordCount taken in the cluster (`sluice
/// savepoint`) restores at another parallelism (`sluice run -s ... -p 3`)
/// and the committed output keeps the 1..n rule across it.
#[test]
fn session_mode_lists_cancels_and_restores_a_savepoint_at_another_parallelism() {
    let bs = broker();
    let (input, output) = (unique_name("sp-in"), unique_name("sp-out"));
    create_topics(&bs, &[&input, &output], 3);
    feed(&bs, &input, 0..3000, None);
    let cluster = ClusterUnderTest::start("60s");
    // Each run its own checkpoint directory: a run started with the
    // directory of an earlier one would resume from its checkpoints, and
    // the restore from the savepoint would go untested.
    let kafka_args = |p: &str, savepoint: Option<&str>| {
        let ckpt = cluster.work.path().join(format!("checkpoints-{}", savepoint.map_or("first", |_| "restored")));
        let mut v: Vec<String> = ["run", "-d", "-p", p].iter().map(|s| s.to_string()).collect();
        if let Some(s) = savepoint {
            v.extend(["-s".to_string(), s.to_string()]);
        }
        v.extend(
            [
                KAFKA_WORDCOUNT.as_str(),
                "--",
                "--bootstrap-servers",
                &bs,
                "--input-topic",
                &input,
                "--output-topic",
                &output,
            ]
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
    let b = run(["run", "-d", "-p", "2", SOCKET.as_str(), "--", "--host", "127.0.0.1", "--port", &port]
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
    // Once job A has committed counts (so a checkpoint with its state
    // completed), take the savepoint and cancel it: the savepoint cannot
    // be empty, so the restored run must continue from it (counts that
    // started again at 1 would break the 1..n rule below).
    wait_for_committed(&bs, &output, 3, 1, Duration::from_secs(60));
    let sp_dir = cluster.work.path().join("savepoints");
    let out = cluster.cli(&["savepoint", &a, sp_dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let path = text.lines().find_map(|l| l.strip_prefix("Savepoint completed. Path: ")).unwrap().trim().to_string();
    assert!(Path::new(&path).join("_metadata").is_file(), "{path}");
    cluster.cli(&["cancel", &a]);
    wait_list(&[format!("{a} : Kafka WordCount (CANCELED)")]);
    // More input, and the job again from the savepoint at parallelism 3.
    feed(&bs, &input, 3000..6000, None);
    let c = run(kafka_args("3", Some(&path)));
    check_output(&bs, &output, 3, &expected(6000), Duration::from_secs(120));
    cluster.cli(&["cancel", &c]);
}
