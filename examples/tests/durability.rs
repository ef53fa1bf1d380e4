//! Checkpoints survive a power loss: a job with checkpoints runs under
//! `strace`, and its system calls show that every `_metadata` rename is
//! followed by an fsync of its directory (and of the job's directory, which
//! holds the checkpoint's own entry) before the checkpoint is reported
//! complete, and that every rename and every directory made on the
//! checkpoint path is followed by an fsync of its directory.
//!
//! Needs `strace` (scripts/install-deps.sh installs it); the test is
//! skipped, saying so, where it is missing or may not trace.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};

const DATAGEN: &str = env!("CARGO_BIN_EXE_datagen_wordcount");

/// One traced system call, as it started: its thread, name and arguments.
#[derive(Debug)]
struct Call {
    tid: String,
    name: String,
    args: String,
}

/// The calls of an `strace -f -y` log, in the order they started.
fn parse(log: &str) -> Vec<Call> {
    log.lines()
        .filter_map(|line| {
            let (tid, rest) = line.split_once(' ')?;
            let rest = rest.trim_start();
            let open = rest.find('(')?;
            let name = &rest[..open];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None; // "<... resumed>", "+++ exited", "--- SIG"
            }
            if rest.ends_with("= -1") || rest.contains(") = -1 ") {
                return None; // failed
            }
            Some(Call { tid: tid.to_string(), name: name.to_string(), args: rest[open + 1..].to_string() })
        })
        .collect()
}

/// The quoted strings of a call's arguments (paths of rename and mkdir).
fn quoted(args: &str) -> Vec<String> {
    args.split('"').skip(1).step_by(2).map(str::to_string).collect()
}

/// The path `strace -y` shows for an fsync's descriptor: `3</a/b>`.
fn fd_path(args: &str) -> Option<&str> {
    let start = args.find('<')? + 1;
    let end = start + args[start..].find('>')?;
    Some(&args[start..end])
}

fn is_fsync_of(call: &Call, dir: &str) -> bool {
    matches!(call.name.as_str(), "fsync" | "fdatasync") && fd_path(&call.args) == Some(dir)
}

fn parent(path: &str) -> String {
    Path::new(path).parent().unwrap().to_str().unwrap().to_string()
}

/// Whether strace can run here (installed, and ptrace allowed).
fn strace_works() -> bool {
    Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn check_durability(backend: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("checkpoints");
    let log_path = tmp.path().join("strace.log");
    let out = Command::new("strace")
        .args(["-f", "-y", "-s", "300", "-o"])
        .arg(&log_path)
        .args(["-e", "trace=fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat,write"])
        .arg(DATAGEN)
        .args(["--seed", "3", "--count", "4000", "--rate", "2000", "-p", "2", "--checkpoint-interval", "100ms"])
        .arg("--checkpoint-dir")
        .arg(&root)
        .args(["-D", &format!("state.backend={backend}")])
        .env("SLUICE_LOG", "info")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{backend}: {}", String::from_utf8_lossy(&out.stderr));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let calls = parse(&log);
    let root = root.to_str().unwrap();
    let on_checkpoint_path = |p: &str| p.starts_with(root);

    // Each _metadata rename: fsyncs of its directory and of the job's
    // directory, then "Completed checkpoint <n>".
    let mut completed = 0;
    for (i, call) in calls.iter().enumerate() {
        if !call.name.starts_with("rename") {
            continue;
        }
        let Some(target) = quoted(&call.args).pop().filter(|t| on_checkpoint_path(t)) else { continue };
        let dir = parent(&target);
        let later = &calls[i + 1..];
        let same_thread = |c: &&Call| c.tid == call.tid;
        // Every rename on the checkpoint path: its directory is synced after it.
        assert!(
            later.iter().filter(same_thread).any(|c| is_fsync_of(c, &dir)),
            "{backend}: the rename to {target} is not followed by an fsync of {dir}"
        );
        if !target.ends_with("/_metadata") {
            continue;
        }
        let n = dir.rsplit_once("chk-").unwrap().1.to_string();
        let announced = format!("Completed checkpoint {n} for job");
        let Some(done) = later.iter().position(|c| c.name == "write" && c.args.contains(&announced)) else {
            continue; // the job ended before it was announced
        };
        let before_done = &later[..done];
        assert!(
            before_done.iter().filter(same_thread).any(|c| is_fsync_of(c, &dir)),
            "{backend}: checkpoint {n} was reported complete before {dir} was synced after its _metadata rename"
        );
        let job_dir = parent(&dir);
        assert!(
            before_done.iter().filter(same_thread).any(|c| is_fsync_of(c, &job_dir)),
            "{backend}: checkpoint {n} was reported complete before {job_dir} was synced after its _metadata rename"
        );
        completed += 1;
    }
    assert!(completed >= 2, "{backend}: only {completed} checkpoints completed under strace:\n{log}");

    // Every directory made on the checkpoint path: its parent is synced after.
    for (i, call) in calls.iter().enumerate() {
        if !call.name.starts_with("mkdir") {
            continue;
        }
        let Some(dir) = quoted(&call.args).pop().filter(|d| on_checkpoint_path(d)) else { continue };
        let dir_parent = parent(&dir);
        assert!(
            calls[i + 1..].iter().any(|c| c.tid == call.tid && is_fsync_of(c, &dir_parent)),
            "{backend}: mkdir {dir} is not followed by an fsync of {dir_parent}"
        );
    }
}

#[test]
fn metadata_renames_are_synced_before_a_checkpoint_is_reported_complete() {
    if !strace_works() {
        eprintln!(
            "SKIPPED: strace is not installed or may not trace here (scripts/install-deps.sh installs it); \
             the durability of checkpoint renames is not checked"
        );
        return;
    }
    check_durability("hashmap");
    check_durability("rocksdb");
}
