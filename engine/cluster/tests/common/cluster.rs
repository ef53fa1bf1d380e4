//! A cluster of real processes on loopback for the cluster tests: one
//! `sluice jobmanager` (with a REST token) and TaskManagers `tm-a`, `tm-b`
//! with two slots each, all in one temporary work directory; plus JSON
//! requests to its REST API and the job-id parser of `sluice run`'s output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use sluice_test_support::{free_port, http as client};
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The REST token of the test clusters.
pub const TOKEN: &str = "s3cret";

/// The `sluice` binary of this crate, built by cargo for its tests.
pub fn sluice_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

/// The example job binary `name` (`wordcount`, `socket_wordcount`, ...) of
/// the `sluice-examples` crate, next to this test binary in the target
/// directory (`target/<profile>/deps/cluster-*` → `target/<profile>/name`).
/// Cargo builds another package's binaries only when asked:
/// `cargo build --workspace --all-targets` (or `cargo test --workspace`)
/// does, `cargo test -p sluice-cluster` does not.
pub fn example_bin(name: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.ancestors().nth(2).unwrap();
    let bin = profile_dir.join(name);
    assert!(
        bin.is_file(),
        "the example job binary {} is missing: build the examples first with `cargo build --workspace --all-targets`",
        bin.display()
    );
    bin.to_string_lossy().into_owned()
}

pub struct ClusterUnderTest {
    pub work: tempfile::TempDir,
    pub rest: u16,
    pub rpc: u16,
    pub jm: Child,
    pub tms: BTreeMap<String, Child>,
    /// `-D key=value` settings of every process (cluster and client).
    pub settings: Vec<String>,
    /// Environment variables of every process (cluster and client).
    pub env: Vec<(String, String)>,
}

impl ClusterUnderTest {
    pub fn start(slot_timeout: &str) -> Self {
        Self::start_with(slot_timeout, &[])
    }

    /// Like [`start`](Self::start), with `-D` settings for every process.
    pub fn start_with(slot_timeout: &str, settings: &[String]) -> Self {
        let c = Self::start_processes(slot_timeout, settings);
        c.wait_for(|o| o["taskmanagers"] == 2, "two TaskManagers registered");
        c
    }

    /// The processes of [`start_with`](Self::start_with), without waiting
    /// for them (through plain HTTP) to be up.
    pub fn start_processes(slot_timeout: &str, settings: &[String]) -> Self {
        Self::start_processes_with_env(slot_timeout, settings, &[])
    }

    /// [`start_processes`](Self::start_processes) with environment variables
    /// for every process (e.g. `SLUICE_FAULTS`, `SLUICE_LOG`).
    pub fn start_processes_with_env(slot_timeout: &str, settings: &[String], env: &[(&str, &str)]) -> Self {
        let work = tempfile::tempdir().unwrap();
        let (rest, rpc) = (free_port().unwrap(), free_port().unwrap());
        let mut c = ClusterUnderTest {
            work,
            rest,
            rpc,
            jm: Command::new("true").spawn().unwrap(),
            tms: BTreeMap::new(),
            settings: settings.to_vec(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        c.jm = c
            .base(Command::new(sluice_bin()))
            .args(["-D", &format!("slot.request.timeout={slot_timeout}"), "-D", &format!("rest.token={TOKEN}")])
            .arg("jobmanager")
            .stderr(log(c.work.path(), "jobmanager.log"))
            .spawn()
            .unwrap();
        for tm in ["tm-a", "tm-b"] {
            c.start_tm(tm);
        }
        c
    }

    pub fn base(&self, mut cmd: Command) -> Command {
        cmd.args(["-D", &format!("rest.port={}", self.rest), "-D", &format!("jobmanager.rpc.port={}", self.rpc)])
            .args(["-D", &format!("cluster.work-dir={}", self.work.path().display())])
            .args(self.settings.iter().flat_map(|s| ["-D", s.as_str()]))
            .env_remove("SLUICE_CONF_DIR")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.work.path());
        cmd
    }

    pub fn start_tm(&mut self, id: &str) {
        let child = self
            .base(Command::new(sluice_bin()))
            .args(["-D", "taskmanager.numberOfTaskSlots=2", "-D", &format!("taskmanager.resource-id={id}")])
            .arg("taskmanager")
            .stderr(log(self.work.path(), &format!("{id}.log")))
            .spawn()
            .unwrap();
        self.tms.insert(id.to_string(), child);
    }

    /// `sluice ARGS` as a client, with the token.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = self.base(Command::new(sluice_bin()));
        cmd.env("SLUICE_REST_TOKEN", TOKEN).args(args).output().unwrap()
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        http(self.rest, "GET", path, token, "")
    }

    pub fn wait_for(&self, ok: impl Fn(&serde_json::Value) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let (200, v) = self.get("/overview", Some(TOKEN)) {
                if ok(&v) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; logs in {}", self.work.path().display());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The directories of a job's processes on each TaskManager.
    pub fn job_process_dirs(&self, job: &str) -> BTreeMap<String, Vec<PathBuf>> {
        let mut out = BTreeMap::new();
        for tm in self.tms.keys() {
            let jobs = self.work.path().join(tm).join("jobs");
            let dirs: Vec<PathBuf> = std::fs::read_dir(&jobs)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(job))
                        .collect()
                })
                .unwrap_or_default();
            out.insert(tm.clone(), dirs);
        }
        out
    }
}

impl Drop for ClusterUnderTest {
    fn drop(&mut self) {
        for c in self.tms.values_mut().chain(std::iter::once(&mut self.jm)) {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            // Keep the logs for the failure report.
            let path = std::mem::replace(&mut self.work, tempfile::tempdir().unwrap()).keep();
            eprintln!("cluster logs kept in {}", path.display());
        }
    }
}

pub fn log(dir: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(name)).unwrap()
}

/// `method path` on 127.0.0.1:`port` (with the shared test client, not the
/// CLI's): the status and the body as JSON (`Null` if it is not JSON);
/// status 0 if nothing listens there (yet).
pub fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    match client::request(("127.0.0.1", port), method, path, token, body) {
        Ok(r) => (r.status, serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => (0, serde_json::Value::Null),
        Err(e) => panic!("{method} {path} on port {port}: {e}"),
    }
}

pub fn job_id_of(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Job has been submitted with JobID "))
        .unwrap_or_else(|| panic!("no job id in {text} / {}", String::from_utf8_lossy(&out.stderr)))
        .trim()
        .to_string()
}

/// Percent-encodes a query parameter.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
