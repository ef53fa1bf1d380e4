//! `sluice standalone-job`: the JobManager of an application cluster runs
//! the job of a binary it was started with and exits when the job ends;
//! with high availability the job has one id per cluster id, so a
//! JobManager started again finds the job ended in the job store and does
//! not run it twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

mod common;

use common::cluster::{sluice_bin, TOKEN};
use common::{corpus, read_counts, reference_counts, WORDCOUNT};
use sluice_integration_tests::etcd::EtcdServer;
use sluice_integration_tests::process::wait_within;
use sluice_test_support::free_port;

/// TaskManager processes, killed when dropped.
struct TaskManagers(Vec<Child>);

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
fn standalone_wordcount(work: &Path, settings: &[String], input: &Path, output: &Path) -> Output {
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

fn job_of(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    let line =
        text.lines().find(|l| l.starts_with("Job ") && l.contains(" ended: ")).unwrap_or_else(|| panic!("{text}"));
    line.split(' ').nth(1).unwrap().to_string()
}

/// Without high availability: the job runs over both TaskManagers, its
/// counts are exact, and the JobManager exits 0 saying it finished.
#[test]
fn a_standalone_job_runs_its_job_and_exits_when_it_finishes() {
    let work = tempfile::tempdir().unwrap();
    let (input, output) = (work.path().join("in.txt"), work.path().join("out.txt"));
    let text = corpus();
    std::fs::write(&input, &text).unwrap();
    let out = standalone_wordcount(work.path(), &[], &input, &output);
    let log = std::fs::read_to_string(work.path().join("jobmanager.log")).unwrap_or_default();
    assert!(out.status.success(), "{}\n{log}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ended: FINISHED"));
    assert_eq!(read_counts(&output), reference_counts(&text));
}

/// With high availability on etcd: the application's job id is fixed per
/// cluster id; started again after the job finished, the JobManager finds
/// it ended in the job store, exits 0 at once and does not run it again
/// (its output, removed in between, is not written anew). Another cluster
/// id is another application, which runs.
#[test]
fn a_standalone_job_with_high_availability_runs_its_job_once_per_cluster_id() {
    let etcd = EtcdServer::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (input, output) = (work.path().join("in.txt"), work.path().join("out.txt"));
    let text = corpus();
    std::fs::write(&input, &text).unwrap();
    let ha = |cluster_id: &str| {
        vec![
            "high-availability.type=etcd".to_string(),
            format!("high-availability.etcd.endpoints={}", etcd.endpoint()),
            format!("high-availability.cluster-id={cluster_id}"),
            format!("high-availability.storageDir={}", work.path().join("ha").display()),
        ]
    };
    let first = standalone_wordcount(work.path(), &ha("app-1"), &input, &output);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stdout));
    assert_eq!(read_counts(&output), reference_counts(&text));
    std::fs::remove_file(&output).unwrap();

    let again = standalone_wordcount(work.path(), &ha("app-1"), &input, &output);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stdout));
    assert_eq!(job_of(&again), job_of(&first), "the same cluster id means the same job");
    assert!(!output.exists(), "the ended job ran a second time");

    let other = standalone_wordcount(work.path(), &ha("app-2"), &input, &output);
    assert!(other.status.success(), "{}", String::from_utf8_lossy(&other.stdout));
    assert_ne!(job_of(&other), job_of(&first));
    assert_eq!(read_counts(&output), reference_counts(&text));
}
