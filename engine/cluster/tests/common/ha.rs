//! A highly available cluster of real processes on loopback for the HA
//! tests: a real etcd, JobManagers `jm-0`, `jm-1`, ... (each with its own
//! RPC and REST ports, all of cluster id `ha-test` with one storage
//! directory) and TaskManagers `tm-a`, `tm-b` with two slots each, which,
//! like the CLI, find the leader through etcd.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use super::cluster::{http, log, sluice_bin, TOKEN};
use sluice_integration_tests::etcd::EtcdServer;
use sluice_test_support::free_port;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// A JobManager process and its ports.
pub struct JobManagerProcess {
    pub child: Child,
    pub rest: u16,
    pub rpc: u16,
    /// Its own work directory (drivers' logs in `jobmanager/jobs/<job>/`).
    pub work: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
}

pub struct HaCluster {
    pub etcd: EtcdServer,
    pub work: tempfile::TempDir,
    pub jms: BTreeMap<String, JobManagerProcess>,
    pub tms: BTreeMap<String, Child>,
    /// `-D key=value` settings of every process (cluster and client).
    pub settings: Vec<String>,
    /// How many times each JobManager was started (log file names).
    starts: BTreeMap<String, u32>,
}

impl HaCluster {
    /// etcd, `jobmanagers` JobManagers and two TaskManagers; returns once
    /// one JobManager leads with both TaskManagers registered.
    pub fn start(jobmanagers: usize) -> Self {
        let etcd = EtcdServer::start().unwrap();
        let work = tempfile::tempdir().unwrap();
        let settings = vec![
            "high-availability.type=etcd".to_string(),
            format!("high-availability.etcd.endpoints={}", etcd.endpoint()),
            "high-availability.cluster-id=ha-test".to_string(),
            format!("high-availability.storageDir={}", work.path().join("ha").display()),
            format!("cluster.work-dir={}", work.path().display()),
            "heartbeat.timeout=5s".to_string(),
        ];
        let mut c =
            HaCluster { etcd, work, jms: BTreeMap::new(), tms: BTreeMap::new(), settings, starts: BTreeMap::new() };
        for i in 0..jobmanagers {
            c.start_jm(&format!("jm-{i}"));
        }
        for tm in ["tm-a", "tm-b"] {
            c.start_tm(tm);
        }
        c.wait_for_leader(|o| o["taskmanagers"] == 2, Duration::from_secs(60), "a leader with two TaskManagers");
        c
    }

    pub fn base(&self, mut cmd: Command) -> Command {
        cmd.args(self.settings.iter().flat_map(|s| ["-D", s.as_str()]))
            .env_remove("SLUICE_CONF_DIR")
            .current_dir(self.work.path());
        cmd
    }

    /// Starts JobManager `id` (again, on new ports).
    pub fn start_jm(&mut self, id: &str) {
        let (rest, rpc) = (free_port().unwrap(), free_port().unwrap());
        let n = {
            let n = self.starts.entry(id.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        // As on separate hosts: a work directory of its own.
        let work = self.work.path().join(format!("{id}.{n}"));
        let log_name = format!("{id}.{n}.log");
        let child = self
            .base(Command::new(sluice_bin()))
            .args(["-D", &format!("rest.port={rest}"), "-D", &format!("jobmanager.rpc.port={rpc}")])
            .args(["-D", &format!("rest.token={TOKEN}"), "-D", &format!("jobmanager.resource-id={id}")])
            .args(["-D", "slot.request.timeout=120s", "-D", &format!("cluster.work-dir={}", work.display())])
            .env("SLUICE_LOG", "info")
            .arg("jobmanager")
            .stderr(log(self.work.path(), &log_name))
            .spawn()
            .unwrap();
        let log = self.work.path().join(log_name);
        self.jms.insert(id.to_string(), JobManagerProcess { child, rest, rpc, work, log });
    }

    /// Kills JobManager `id` with SIGKILL.
    pub fn kill_jm(&mut self, id: &str) {
        let mut jm = self.jms.remove(id).unwrap();
        jm.child.kill().unwrap();
        jm.child.wait().unwrap();
    }

    /// Sends `signal` (`STOP`, `CONT`) to JobManager `id`.
    pub fn signal_jm(&self, id: &str, signal: &str) {
        let pid = self.jms[id].child.id().to_string();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
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

    pub fn kill_tm(&mut self, id: &str) {
        let mut tm = self.tms.remove(id).unwrap();
        tm.kill().unwrap();
        tm.wait().unwrap();
    }

    /// `GET path` on JobManager `id`.
    pub fn get(&self, id: &str, path: &str) -> (u16, serde_json::Value) {
        http(self.jms[id].rest, "GET", path, Some(TOKEN), "")
    }

    /// The JobManager whose `/overview` says it leads, if one does.
    pub fn leader(&self) -> Option<String> {
        self.jms.keys().find(|id| self.get(id, "/overview").1["leadership"]["role"] == "leader").cloned()
    }

    /// Waits until a JobManager leads and its overview passes `ok`;
    /// returns its id.
    pub fn wait_for_leader(&self, ok: impl Fn(&serde_json::Value) -> bool, within: Duration, what: &str) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(id) = self.leader() {
                if ok(&self.get(&id, "/overview").1) {
                    return id;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; logs in {}", self.work.path().display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `sluice ARGS` as a client (it finds the leader through etcd).
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = self.base(Command::new(sluice_bin()));
        cmd.env("SLUICE_REST_TOKEN", TOKEN).args(args).output().unwrap()
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        for c in self.tms.values_mut().chain(self.jms.values_mut().map(|j| &mut j.child)) {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let path = std::mem::replace(&mut self.work, tempfile::tempdir().unwrap()).keep();
            eprintln!("cluster logs kept in {}", path.display());
        }
    }
}
