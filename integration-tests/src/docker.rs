//! Containers on a Docker network of the test's own: a bridge network with
//! a fresh /24 of 10.214.0.0/16, containers at fixed addresses and network
//! aliases (the names they find each other by), all removed when dropped.
//! The test process reaches them at their addresses on that network, and
//! nothing else.
//!
//! Unlike [`crate::kafka`] and [`crate::mariadb`] (testcontainers, one
//! container published on loopback) this is for a cluster of containers
//! that talk to each other, e.g. a JobManager and TaskManagers of the
//! `sluice/sluice` image (`scripts/docker-images.sh sluice`).

use crate::{io, Error, Result};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs `docker ARGS`; its output if it succeeded, else an error with its
/// stderr.
pub fn docker(args: &[&str]) -> Result<Output> {
    let out = Command::new("docker").args(args).output().map_err(io("running docker (is it installed?)"))?;
    if !out.status.success() {
        return Err(Error::Service {
            what: format!("docker {}", args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// A bridge network created by the test and removed when dropped (after
/// its containers: drop those first).
pub struct DockerNetwork {
    /// The network's name (unique to this process).
    pub name: String,
    /// The first three octets of its /24, e.g. `10.214.7`.
    prefix: String,
}

impl DockerNetwork {
    /// Creates a network named `sluice-<tag>-<pid>` on the first free /24
    /// of 10.214.0.0/16 (Docker refuses overlapping subnets, so a taken one
    /// is skipped).
    pub fn create(tag: &str) -> Result<Self> {
        let name = format!("sluice-{tag}-{}", std::process::id());
        let _ = docker(&["network", "rm", &name]);
        let start = std::process::id() % 250;
        let mut last = None;
        for i in 0..250 {
            let prefix = format!("10.214.{}", (start + i) % 250);
            let subnet = format!("{prefix}.0/24");
            match docker(&["network", "create", "--driver", "bridge", "--subnet", &subnet, &name]) {
                Ok(_) => return Ok(DockerNetwork { name, prefix }),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| Error::Service { what: "docker network create".into(), message: "no subnet".into() }))
    }

    /// Address `n` (2..=254) of the network.
    pub fn ip(&self, n: u8) -> String {
        format!("{}.{n}", self.prefix)
    }

    /// Starts `image` detached as container `<network>-<alias>` at address
    /// `ip`, found on the network as `alias`, with further `docker run`
    /// options `opts` and the command `args`.
    pub fn run(&self, alias: &str, ip: &str, opts: &[String], image: &str, args: &[String]) -> Result<Container> {
        let name = format!("{}-{alias}", self.name);
        let _ = docker(&["rm", "-f", &name]);
        let mut cmd: Vec<String> = ["run", "-d", "--name", &name, "--hostname", alias, "--network", &self.name]
            .iter()
            .map(|s| s.to_string())
            .collect();
        cmd.extend(["--network-alias".into(), alias.into(), "--ip".into(), ip.into()]);
        cmd.extend(opts.iter().cloned());
        cmd.push(image.into());
        cmd.extend(args.iter().cloned());
        let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
        docker(&refs)?;
        Ok(Container { name })
    }
}

impl Drop for DockerNetwork {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.name]);
    }
}

/// A container removed (with `docker rm -f`) when dropped.
pub struct Container {
    /// The container's name.
    pub name: String,
}

impl Container {
    /// `docker kill` (SIGKILL to every process in it).
    pub fn kill(&self) -> Result<()> {
        docker(&["kill", &self.name]).map(drop)
    }

    /// `docker start` of a stopped container (same file system, address
    /// and command).
    pub fn start(&self) -> Result<()> {
        docker(&["start", &self.name]).map(drop)
    }

    /// Its output so far (stdout and stderr).
    pub fn logs(&self) -> String {
        match Command::new("docker").args(["logs", &self.name]).output() {
            Ok(o) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
            Err(e) => format!("(docker logs {}: {e})", self.name),
        }
    }

    /// Whether it is running.
    pub fn running(&self) -> bool {
        docker(&["inspect", "-f", "{{.State.Running}}", &self.name])
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
            .unwrap_or(false)
    }

    /// Waits until its output contains `pattern`; an error with its output
    /// if it stops or `within` passes first.
    pub fn wait_for_log(&self, pattern: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let logs = self.logs();
            if logs.contains(pattern) {
                return Ok(());
            }
            let why = if !self.running() {
                "stopped"
            } else if Instant::now() > deadline {
                "timed out"
            } else {
                std::thread::sleep(Duration::from_millis(250));
                continue;
            };
            return Err(Error::Service {
                what: format!("container {}", self.name),
                message: format!("{why} before logging '{pattern}'; its output:\n{logs}"),
            });
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}
