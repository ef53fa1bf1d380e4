//! A local standalone cluster for benchmarks: one JobManager and two
//! TaskManagers started from the `sluice` binary next to the benchmark's own
//! executable, on free loopback ports, with their logs in a temporary work
//! directory. Dropping it stops the processes.

use sluice_test_support::{free_port, http};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running JobManager with its TaskManagers.
pub struct LocalCluster {
    sluice: PathBuf,
    work: PathBuf,
    rest: u16,
    rpc: u16,
    processes: Vec<Child>,
}

impl LocalCluster {
    /// Starts a JobManager and `task_managers` TaskManagers with `slots`
    /// slots each, and waits until all are registered.
    pub fn start(exe: &Path, task_managers: usize, slots: u32) -> anyhow::Result<Self> {
        let sluice = exe.with_file_name("sluice");
        if !sluice.is_file() {
            anyhow::bail!(
                "'{}' not found: build it with the benchmark, e.g. `cargo build --release -p sluice-bench -p sluice-cluster \
                 --bin bench_kafka --bin sluice`",
                sluice.display()
            );
        }
        let work = std::env::temp_dir().join(format!("sluice-bench-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&work)?;
        let mut cluster = LocalCluster { sluice, work, rest: free_port()?, rpc: free_port()?, processes: Vec::new() };
        cluster.spawn("jobmanager", &["jobmanager"])?;
        for i in 0..task_managers {
            let id = format!("tm-{i}");
            let slots = format!("taskmanager.numberOfTaskSlots={slots}");
            let resource = format!("taskmanager.resource-id={id}");
            cluster.spawn(&id, &["-D", &slots, "-D", &resource, "taskmanager"])?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let wanted = format!("\"taskmanagers\":{task_managers}");
        loop {
            if http::get(("127.0.0.1", cluster.rest), "/overview")
                .is_ok_and(|r| r.body.replace(' ', "").contains(&wanted))
            {
                return Ok(cluster);
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the benchmark cluster did not come up in 30 s; see the logs in {}",
                    cluster.work.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.sluice);
        cmd.args(["-D", &format!("rest.port={}", self.rest), "-D", &format!("jobmanager.rpc.port={}", self.rpc)])
            .args(["-D", &format!("cluster.work-dir={}", self.work.display())]);
        cmd
    }

    fn spawn(&mut self, name: &str, args: &[&str]) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.work.join(format!("{name}.log")))?;
        let child = self.command().args(args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn()?;
        self.processes.push(child);
        Ok(())
    }

    /// `sluice run -p <parallelism> <binary> -- <args>` (attached: returns
    /// when the job has ended).
    pub fn run(&self, parallelism: u32, binary: &Path, args: &[String]) -> anyhow::Result<Output> {
        let out =
            self.command().args(["run", "-p", &parallelism.to_string()]).arg(binary).arg("--").args(args).output()?;
        if !out.status.success() {
            anyhow::bail!(
                "sluice run failed: {}{} (cluster logs in {})",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim(),
                self.work.display()
            );
        }
        Ok(out)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for p in self.processes.iter_mut().rev() {
            let _ = p.kill();
            let _ = p.wait();
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}
