//! `sluice standalone-job`: the JobManager of an application cluster runs
//! the job of a binary it was started with and exits when the job ends;
//! with high availability the job has one id per cluster id, so a
//! JobManager started again finds the job ended in the job store and does
//! not run it twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Output;

mod common;

use common::{corpus, read_counts, reference_counts, standalone_wordcount};
use sluice_integration_tests::etcd::EtcdServer;

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
