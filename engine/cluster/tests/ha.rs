//! JobManager high availability on a real etcd (Debian's `etcd-server`)
//! with real processes on loopback and the local Kafka broker
//! (`scripts/kafka-local.sh start`): leading JobManagers killed with
//! SIGKILL under the exactly-once Kafka WordCount, an etcd outage, a
//! standby that stays standby, and the errors of bad settings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

mod common;

use common::cluster::{job_id_of, sluice_bin};
use common::ha::HaCluster;
use common::{broker, kafka_wordcount_args};
use sluice_integration_tests::wordcount::{check_output, create_topics, expected, feed_in_background};
use sluice_test_support::unique_name;

/// Submits the Kafka WordCount at -p 4 (detached) through the CLI, which
/// finds the leader in etcd; returns the job id.
fn submit_wordcount(cluster: &HaCluster, bs: &str, input: &str, output: &str) -> String {
    let ckpt = cluster.work.path().join("checkpoints").display().to_string();
    let args = kafka_wordcount_args(bs, input, output, &ckpt, "200ms");
    let mut run = vec!["run", "-d", "-p", "4"];
    run.extend(args.iter().map(String::as_str));
    let out = cluster.cli(&run);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    job_id_of(&out)
}

/// The job's state and completed checkpoints as the current leader sees
/// them (empty state while no JobManager leads).
fn job_on_leader(cluster: &HaCluster, job: &str) -> (Option<String>, String, u64) {
    let (leader, state, completed, _) = job_status(cluster, job);
    (leader, state, completed)
}

/// [`job_on_leader`] with the job's restarts under this leader.
fn job_status(cluster: &HaCluster, job: &str) -> (Option<String>, String, u64, u64) {
    let Some(leader) = cluster.leader() else { return (None, String::new(), 0, 0) };
    let details = cluster.get(&leader, &format!("/jobs/{job}")).1;
    let state = details["state"].as_str().unwrap_or("").to_string();
    let restarts = details["restarts"].as_u64().unwrap_or(0);
    let completed =
        cluster.get(&leader, &format!("/jobs/{job}/checkpoints")).1["counts"]["completed"].as_u64().unwrap_or(0);
    (Some(leader), state, completed, restarts)
}

/// Waits until the job runs on a leader and has completed a checkpoint
/// there; returns the leader.
fn wait_running_and_checkpointed(cluster: &HaCluster, job: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let (Some(leader), state, completed) = job_on_leader(cluster, job) {
            if state == "RUNNING" && completed > 0 {
                return leader;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the job never ran and checkpointed on a leader: {:?}; logs in {}",
            job_on_leader(cluster, job),
            cluster.work.path().display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Three JobManagers, two TaskManagers, the exactly-once Kafka WordCount
/// at -p 4. While input arrives, the leading JobManager is killed with
/// SIGKILL three times (and restarted as a standby) and a TaskManager five
/// times (tm-a and tm-b in turn), at random moments (the seed is printed);
/// each time the job resumes from its latest checkpoint, under another
/// JobManager after a leader's death. The committed output must hold, for every
/// word, exactly 1..n with n its count in the input.
#[test]
fn kafka_wordcount_stays_exactly_once_when_leaders_and_taskmanagers_are_killed() {
    let bs = broker();
    let (input, output) = (unique_name("ha-in"), unique_name("ha-out"));
    create_topics(&bs, &[&input, &output], 3);
    let lines = 60_000;
    // About 60 s of input, so that every kill falls while it flows.
    let feeder = feed_in_background(&bs, &input, 0..lines, 100, Duration::from_millis(100));
    let mut cluster = HaCluster::start(3);
    let job = submit_wordcount(&cluster, &bs, &input, &output);
    let mut rng: u64 =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("kill moments from seed {rng:#x}");
    let mut failovers = Vec::new();
    // Rounds 0, 3 and 6 kill the leader; the others a TaskManager.
    let kills_leader = |round: u32| round % 3 == 0;
    let tms = ["tm-a", "tm-b"];
    for round in 0..8u32 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let leader = wait_running_and_checkpointed(&cluster, &job, Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(300 + rng % 1200));
        let restarts_before = job_status(&cluster, &job).3;
        let killed = Instant::now();
        let tm = tms[round as usize % 2];
        if kills_leader(round) {
            // The leading JobManager, with every job master it started.
            cluster.kill_jm(&leader);
            cluster.start_jm(&leader);
        } else {
            cluster.kill_tm(tm);
            cluster.start_tm(tm);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let new_leader = loop {
            let (l, state, _, restarts) = job_status(&cluster, &job);
            // A new leader, or (a TaskManager killed) a restart under this one.
            let recovered = if kills_leader(round) {
                l.as_deref().is_some_and(|l| l != leader)
            } else {
                l.as_deref() == Some(leader.as_str()) && restarts > restarts_before
            };
            if state == "RUNNING" && recovered {
                break l.unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the job did not run again ({l:?}, {state}); logs in {}",
                cluster.work.path().display()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let what = if kills_leader(round) { format!("leader {leader}") } else { tm.to_string() };
        eprintln!("round {round}: SIGKILL of {what} -> job RUNNING on {new_leader} after {:?}", killed.elapsed());
        if kills_leader(round) {
            failovers.push(killed.elapsed());
        }
    }
    feeder.join().unwrap();
    check_output(&bs, &output, 3, &expected(lines), Duration::from_secs(240));
    eprintln!("JobManager fail-overs (kill -9 to RUNNING): {failovers:?}");
    let out = cluster.cli(&["cancel", &job]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The ended job stays listed across leaders.
    let out = cluster.cli(&["list", "-a"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&job), "{}", String::from_utf8_lossy(&out.stdout));
}

/// etcd is killed under a running exactly-once job: the leader cannot
/// renew its lease and steps down (the job stops); etcd comes back; a
/// JobManager leads again and the job resumes from its latest checkpoint
/// with exact output.
#[test]
fn an_etcd_outage_suspends_jobs_and_they_resume_when_it_returns() {
    let bs = broker();
    let (input, output) = (unique_name("ha-etcd-in"), unique_name("ha-etcd-out"));
    create_topics(&bs, &[&input, &output], 3);
    let lines = 10_000;
    let feeder = feed_in_background(&bs, &input, 0..lines, 100, Duration::from_millis(100));
    let mut cluster = HaCluster::start(2);
    let job = submit_wordcount(&cluster, &bs, &input, &output);
    let leader = wait_running_and_checkpointed(&cluster, &job, Duration::from_secs(60));
    cluster.etcd.kill();
    // Within the lease (3 s) plus a margin the leader gives up leading.
    let deadline = Instant::now() + Duration::from_secs(15);
    while cluster.get(&leader, "/overview").1["leadership"]["role"] == "leader" {
        assert!(Instant::now() < deadline, "the leader kept leading without etcd");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    cluster.etcd.restart().unwrap();
    wait_running_and_checkpointed(&cluster, &job, Duration::from_secs(90));
    feeder.join().unwrap();
    check_output(&bs, &output, 3, &expected(lines), Duration::from_secs(240));
    let out = cluster.cli(&["cancel", &job]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The leading JobManager freezes (SIGSTOP) under a running exactly-once
/// job, cut off from etcd, its TaskManagers and its job masters alike,
/// while its job masters and their connections stay alive. Its lease
/// expires, the other JobManager leads and resumes the job, the
/// TaskManagers leave the frozen one for it. The frozen leader's job
/// masters can complete no checkpoint: they stop fenced. Thawed
/// (SIGCONT), the old leader steps down to standby. The committed output
/// stays exact.
#[test]
fn a_frozen_leader_is_fenced_and_the_output_stays_exact() {
    let bs = broker();
    let (input, output) = (unique_name("ha-frozen-in"), unique_name("ha-frozen-out"));
    create_topics(&bs, &[&input, &output], 3);
    let lines = 12_000;
    let feeder = feed_in_background(&bs, &input, 0..lines, 100, Duration::from_millis(100));
    let cluster = HaCluster::start(2);
    let job = submit_wordcount(&cluster, &bs, &input, &output);
    let frozen = wait_running_and_checkpointed(&cluster, &job, Duration::from_secs(60));
    cluster.signal_jm(&frozen, "STOP");
    let deadline = Instant::now() + Duration::from_secs(60);
    let new_leader = loop {
        let live: Vec<&String> = cluster.jms.keys().filter(|id| **id != frozen).collect();
        let leads = live
            .iter()
            .find(|id| cluster.get(id, "/overview").1["leadership"]["role"] == "leader")
            .map(|id| id.to_string());
        if let Some(l) = leads {
            let details = cluster.get(&l, &format!("/jobs/{job}")).1;
            if details["state"] == "RUNNING" {
                break l;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no other JobManager resumed the job; logs in {}",
            cluster.work.path().display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // Long enough for the frozen leader's job masters to give up waiting.
    std::thread::sleep(Duration::from_secs(12));
    cluster.signal_jm(&frozen, "CONT");
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.get(&frozen, "/overview").1["leadership"]["role"] != "standby" {
        assert!(Instant::now() < deadline, "the thawed leader did not step down");
        std::thread::sleep(Duration::from_millis(100));
    }
    feeder.join().unwrap();
    check_output(&bs, &output, 3, &expected(lines), Duration::from_secs(240));
    // No split brain: the frozen leader's job master completed no
    // checkpoint after the one the new leader resumed from.
    let resumed_from = std::fs::read_to_string(&cluster.jms[&new_leader].log)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.split_once("from its latest completed checkpoint ")
                .and_then(|(_, r)| r.split(' ').next()?.parse::<u64>().ok())
        })
        .unwrap_or_else(|| panic!("{new_leader} did not say which checkpoint it resumed from"));
    let driver_log =
        cluster.jms[&frozen].work.join(format!("jobmanager-{frozen}")).join("jobs").join(&job).join("driver.log");
    let old_completed: Vec<u64> = std::fs::read_to_string(&driver_log)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once("Completed checkpoint ").and_then(|(_, r)| r.split(' ').next()?.parse().ok()))
        .collect();
    assert!(!old_completed.is_empty(), "the first leader's job master completed checkpoints: {}", driver_log.display());
    assert!(
        old_completed.iter().all(|cp| *cp <= resumed_from),
        "the frozen leader's job master completed {old_completed:?} past checkpoint {resumed_from}, which the new leader resumed from"
    );
}

/// A second JobManager of the same cluster id, started while the leader
/// is healthy, stays standby: its overview names the leader, and it
/// refuses submissions with the leader's address.
#[test]
fn a_second_jobmanager_stays_standby_while_the_leader_is_healthy() {
    let mut cluster = HaCluster::start(1);
    let leader = cluster.leader().unwrap();
    cluster.start_jm("jm-late");
    std::thread::sleep(Duration::from_secs(4)); // longer than the lease
    let (status, overview) = cluster.get("jm-late", "/overview");
    assert_eq!(status, 200, "{overview}");
    assert_eq!(overview["leadership"]["role"], "standby", "{overview}");
    assert_eq!(overview["leadership"]["leader"]["id"], leader.as_str(), "{overview}");
    assert_eq!(cluster.leader().as_deref(), Some(leader.as_str()));
    // A submission sent to the standby names the leader.
    let rest = cluster.jms["jm-late"].rest.to_string();
    let out = cluster.cli(&["-m", &format!("127.0.0.1:{rest}"), "cancel", "00000000000000000000000000000001"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("standby") && err.contains(&leader), "{err}");
}

/// Bad settings stop a JobManager at once with an error naming the key.
#[test]
fn bad_high_availability_settings_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = |settings: &[String]| {
        let mut cmd = std::process::Command::new(sluice_bin());
        cmd.args(settings.iter().flat_map(|s| ["-D", s.as_str()]))
            .args(["-D", &format!("cluster.work-dir={}", dir.path().display()), "-D", "rest.port=0"])
            .args(["-D", "jobmanager.rpc.port=0", "jobmanager"])
            .env_remove("SLUICE_CONF_DIR");
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let closed = sluice_test_support::free_port().unwrap();
    let base = |endpoints: String| {
        vec![
            "high-availability.type=etcd".to_string(),
            format!("high-availability.etcd.endpoints={endpoints}"),
            format!("high-availability.storageDir={}", dir.path().join("ha").display()),
        ]
    };
    // etcd unreachable.
    let err = run(&base(format!("http://127.0.0.1:{closed}")));
    assert!(err.contains("high-availability.etcd.endpoints") && err.contains(&closed.to_string()), "{err}");
    // No endpoints at all.
    let err = run(&["high-availability.type=etcd".to_string()]);
    assert!(err.contains("high-availability.etcd.endpoints"), "{err}");
    // A cluster id that cannot name keys and directories.
    let etcd = sluice_integration_tests::etcd::EtcdServer::start().unwrap();
    let mut bad_id = base(etcd.endpoint());
    bad_id.push("high-availability.cluster-id=../x".into());
    let err = run(&bad_id);
    assert!(err.contains("high-availability.cluster-id"), "{err}");
    // A storage directory that cannot be written.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let mut settings = base(etcd.endpoint());
    settings[2] = format!("high-availability.storageDir={}", file.display());
    let err = run(&settings);
    assert!(err.contains("high-availability.storageDir"), "{err}");
    // A CLI of another cluster id finds no leader and says which id.
    let mut other = base(etcd.endpoint());
    other.push("high-availability.cluster-id=nobody-here".into());
    let out = std::process::Command::new(sluice_bin())
        .args(other.iter().flat_map(|s| ["-D", s.as_str()]))
        .args(["list"])
        .env_remove("SLUICE_CONF_DIR")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("nobody-here") && err.contains("cluster-id"), "{err}");
}
