//! Application mode: `sluice run-application` starts a JobManager and
//! TaskManagers for one job and leaves nothing behind, also when its
//! client is killed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::cluster::{http, sluice_bin};
use common::{corpus, processes_under, read_counts, reference_counts, SOCKET, WORDCOUNT};

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
        .args(["run-application", "--taskmanagers", "2", "-p", "4", WORDCOUNT.as_str(), "--"])
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
        .args([
            "-D",
            "taskmanager.numberOfTaskSlots=2",
            "run-application",
            "--taskmanagers",
            "2",
            "-p",
            "4",
            SOCKET.as_str(),
        ])
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
