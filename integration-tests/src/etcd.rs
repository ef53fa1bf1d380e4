//! A real etcd server (Debian's `etcd-server`) for the high-availability
//! tests: one member on loopback ports of its own (or on a test host of
//! [`crate::netns`]), data in a temporary
//! directory, killed with the value; it can be killed and restarted on the
//! same ports and data (an outage of the coordination service).

use crate::netns::TestHost;
use crate::{io, Error, Result, ServerProcess};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A running etcd member. See the module docs.
pub struct EtcdServer {
    process: Option<ServerProcess>,
    /// The test host it runs on (else the machine itself, on loopback).
    host: Option<TestHost>,
    ip: String,
    client_port: u16,
    peer_port: u16,
    /// With TLS: the directory of `ca.pem`, `etcd.pem`, `etcd-key.pem`
    /// (`scripts/cluster-certs.sh DIR etcd=IP:127.0.0.1`), and the plain
    /// port etcd serves `/health` on.
    tls: Option<(std::path::PathBuf, u16)>,
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts a fresh single-member etcd on free loopback ports and waits
    /// until it reports healthy.
    pub fn start() -> Result<Self> {
        Self::start_on_loopback(None)
    }

    /// Like [`start`](Self::start), serving clients over TLS only and
    /// requiring their certificates (`--client-cert-auth`) signed by the CA
    /// of `certs` (which holds `ca.pem`, `etcd.pem` and `etcd-key.pem`).
    pub fn start_tls(certs: &std::path::Path) -> Result<Self> {
        Self::start_on_loopback(Some(certs))
    }

    fn start_on_loopback(certs: Option<&std::path::Path>) -> Result<Self> {
        let dir = tempfile::tempdir().map_err(io("creating etcd's data directory"))?;
        let port = || sluice_test_support::free_port().map_err(io("finding a free port"));
        let tls = match certs {
            Some(c) => Some((c.to_path_buf(), port()?)),
            None => None,
        };
        let mut etcd = EtcdServer {
            process: None,
            host: None,
            ip: "127.0.0.1".into(),
            client_port: port()?,
            peer_port: port()?,
            tls,
            dir,
        };
        etcd.restart()?;
        Ok(etcd)
    }

    /// Starts a fresh single-member etcd on test host `host` (ports 2379
    /// and 2380 of its address).
    pub fn start_on(host: &TestHost) -> Result<Self> {
        let dir = tempfile::tempdir().map_err(io("creating etcd's data directory"))?;
        let mut etcd = EtcdServer {
            process: None,
            host: Some(host.clone()),
            ip: host.ip.clone(),
            client_port: 2379,
            peer_port: 2380,
            tls: None,
            dir,
        };
        etcd.restart()?;
        Ok(etcd)
    }

    /// Its client URL, for `high-availability.etcd.endpoints`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.ip, self.client_port)
    }

    /// Kills it (SIGKILL); its data stays for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// Starts it (again) on the same ports and data, and waits until it
    /// reports healthy.
    pub fn restart(&mut self) -> Result<()> {
        self.process = None;
        let (c, p, ip) = (self.client_port, self.peer_port, self.ip.clone());
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut args: Vec<String> = [
            "--name",
            "sluice-test",
            "--data-dir",
            &self.dir.path().join("data").display().to_string(),
            "--listen-client-urls",
            &format!("{scheme}://{ip}:{c}"),
            "--advertise-client-urls",
            &format!("{scheme}://{ip}:{c}"),
            "--listen-peer-urls",
            &format!("http://{ip}:{p}"),
            "--initial-advertise-peer-urls",
            &format!("http://{ip}:{p}"),
            "--initial-cluster",
            &format!("sluice-test=http://{ip}:{p}"),
            "--log-level",
            "warn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some((certs, health)) = &self.tls {
            let file = |name: &str| certs.join(name).display().to_string();
            args.extend([
                "--cert-file".to_string(),
                file("etcd.pem"),
                "--key-file".into(),
                file("etcd-key.pem"),
                "--trusted-ca-file".into(),
                file("ca.pem"),
                "--client-cert-auth".into(),
                "--listen-metrics-urls".into(),
                format!("http://{ip}:{health}"),
            ]);
        }
        let log = self.dir.path().join("etcd.log");
        self.process = Some(match &self.host {
            None => ServerProcess::start("etcd", &args, Some(&log))?,
            Some(h) => {
                let mut cmd = h.command(crate::which("etcd").ok_or_else(|| Error::Missing { binary: "etcd".into() })?);
                cmd.args(&args);
                ServerProcess::spawn(cmd, &log)?
            }
        });
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if self.healthy() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(Error::Service {
            what: "etcd".into(),
            message: format!(
                "not healthy within 30 s on port {c}; its log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        })
    }

    /// Whether `GET /health` says so.
    pub fn healthy(&self) -> bool {
        // With TLS the plain metrics listener answers /health.
        let port = self.tls.as_ref().map_or(self.client_port, |(_, health)| *health);
        let Ok(addr) = format!("{}:{port}", self.ip).parse::<std::net::SocketAddr>() else {
            return false;
        };
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /health HTTP/1.0\r\nHost: {}:{port}\r\n\r\n", self.ip);
        let mut answer = String::new();
        s.write_all(request.as_bytes()).is_ok()
            && s.read_to_string(&mut answer).is_ok()
            && answer.contains("\"health\":\"true\"")
    }
}
