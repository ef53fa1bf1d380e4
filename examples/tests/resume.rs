//! A job killed with SIGKILL and started again with the same
//! `--checkpoint-dir` resumes from its latest completed checkpoint.

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
    let mut expected = BTreeMap::new();
    final_counts(&String::from_utf8_lossy(&straight.stdout), &mut expected);

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
    let second_out = String::from_utf8_lossy(&second.stdout);
    let straight_lines = String::from_utf8_lossy(&straight.stdout).lines().count();
    assert!(
        second_out.lines().count() < straight_lines,
        "the second run continued instead of starting over ({} of {straight_lines} updates)",
        second_out.lines().count()
    );
    final_counts(&second_out, &mut combined);
    assert_eq!(combined, expected, "every word counted exactly once in state across the kill");
}
