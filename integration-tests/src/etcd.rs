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
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts a fresh single-member etcd on free loopback ports and waits
    /// until it reports healthy.
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir().map_err(io("creating etcd's data directory"))?;
        let port = || sluice_test_support::free_port().map_err(io("finding a free port"));
        let mut etcd = EtcdServer {
            process: None,
            host: None,
            ip: "127.0.0.1".into(),
            client_port: port()?,
            peer_port: port()?,
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
            dir,
        };
        etcd.restart()?;
        Ok(etcd)
    }

    /// Its client URL, for `high-availability.etcd.endpoints`.
    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.ip, self.client_port)
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
        let args: Vec<String> = [
            "--name",
            "sluice-test",
            "--data-dir",
            &self.dir.path().join("data").display().to_string(),
            "--listen-client-urls",
            &format!("http://{ip}:{c}"),
            "--advertise-client-urls",
            &format!("http://{ip}:{c}"),
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
        let Ok(addr) = format!("{}:{}", self.ip, self.client_port).parse::<std::net::SocketAddr>() else {
            return false;
        };
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /health HTTP/1.0\r\nHost: {}:{}\r\n\r\n", self.ip, self.client_port);
        let mut answer = String::new();
        s.write_all(request.as_bytes()).is_ok()
            && s.read_to_string(&mut answer).is_ok()
            && answer.contains("\"health\":\"true\"")
    }
}
