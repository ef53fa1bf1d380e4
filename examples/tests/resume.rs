//! A job killed with SIGKILL and started again with the same
//! `--checkpoint-dir` resumes from its latest completed checkpoint; a job
//! stopped by the local runner with `--stop-with-savepoint-after` resumes
//! from that savepoint with `-s`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

const DATAGEN: &str = env!("CARGO_BIN_EXE_datagen_wordcount");

/// Final count per word from running-count lines `N> (word,count)`.
fn final_counts(stdout: &str, into: &mut BTreeMap<String, u64>) {
    for line in stdout.lines() {
        let record = line.split_once("> ").map(|(_, r)| r).unwrap_or(line);
        let inner = record.trim_start_matches('(').trim_end_matches(')');
        let (word, count) = inner.rsplit_once(',').unwrap_or_else(|| panic!("bad line {line:?}"));
        let e = into.entry(word.to_string()).or_insert(0);
        *e = (*e).max(count.parse().unwrap());
    }
}

#[test]
fn killed_job_resumes_from_its_latest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("checkpoints");
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = ["--seed", "5", "--count", "6000", "-p", "2"].iter().map(|s| s.to_string()).collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // The straight run.
    let straight = Command::new(DATAGEN).args(args(&[])).output().unwrap();
    assert!(straight.status.success());

    // A paced run with checkpoints, killed part way.
    let paced = args(&["--rate", "3000", "--checkpoint-dir", ckpt.to_str().unwrap(), "--checkpoint-interval", "100ms"]);
    let mut child = Command::new(DATAGEN).args(&paced).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    std::thread::sleep(Duration::from_millis(1200));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let first = reader.join().unwrap();
    let mut combined = BTreeMap::new();
    final_counts(&first, &mut combined);
    let first_total: u64 = combined.values().sum();
    assert!(first_total > 0 && first_total < 6000, "killed part way: {first_total}");

    // Started again with the same directory: it says where it resumes and finishes the count.
    let second = Command::new(DATAGEN).args(&paced).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(stderr.contains("Restoring job 'Datagen WordCount' from checkpoint"), "{stderr}");
    assert_continues(&straight.stdout, combined, &second.stdout);
}

/// The second run of a job continued the first instead of starting over:
/// it printed fewer updates than the `straight` run, and the final counts
/// of both runs together (`first` holds the first run's) are the straight
/// run's, every word counted exactly once in state.
fn assert_continues(straight: &[u8], mut first: BTreeMap<String, u64>, second: &[u8]) {
    let (straight, second) = (String::from_utf8_lossy(straight), String::from_utf8_lossy(second));
    let mut expected = BTreeMap::new();
    final_counts(&straight, &mut expected);
    let straight_lines = straight.lines().count();
    let second_lines = second.lines().count();
    assert!(second_lines < straight_lines, "the second run started over ({second_lines} of {straight_lines} updates)");
    // Words the second run did not see keep their counts from the first.
    final_counts(&second, &mut first);
    assert_eq!(first, expected, "every word counted exactly once in state across the restart");
}

#[test]
fn stop_with_savepoint_after_stops_and_the_savepoint_resumes_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let savepoints = dir.path().join("savepoints");
    let common = ["--seed", "7", "--count", "6000", "-p", "2"];
    let straight = Command::new(DATAGEN).args(common).output().unwrap();
    assert!(straight.status.success());

    // Paced at 3000 records/s: the savepoint after 1 s falls part way.
    let paced = |extra: &[&str]| {
        let mut cmd = Command::new(DATAGEN);
        cmd.args(common).args(["--rate", "3000"]).args(extra).env_remove("SLUICE_CONF_DIR");
        cmd.output().unwrap()
    };
    let first = paced(&["--savepoint-dir", savepoints.to_str().unwrap(), "--stop-with-savepoint-after", "1s"]);
    let stderr = String::from_utf8_lossy(&first.stderr).to_string();
    assert!(first.status.success(), "{stderr}");
    let path = stderr
        .lines()
        .find_map(|l| l.strip_prefix("Savepoint stored in "))
        .and_then(|rest| rest.split(" ; ").next())
        .unwrap_or_else(|| panic!("no savepoint path in {stderr}"))
        .to_string();
    assert!(std::path::Path::new(&path).starts_with(&savepoints), "{path}");
    assert!(std::path::Path::new(&path).join("_metadata").is_file(), "{path}");
    let mut combined = BTreeMap::new();
    final_counts(&String::from_utf8_lossy(&first.stdout), &mut combined);
    let first_total: u64 = combined.values().sum();
    assert!(first_total > 0 && first_total < 6000, "stopped part way: {first_total} of 6000");

    // Resumed with -s: it continues the counts where the savepoint left them.
    let second = paced(&["-s", &path]);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert_continues(&straight.stdout, combined, &second.stdout);
}
