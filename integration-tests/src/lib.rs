//! # sluice-integration-tests
//!
//! End-to-end tests of Sluice against real services. The tests live in
//! `tests/`; this library holds what they share: a minimal HTTP client for
//! loopback services, a guard that runs a real server process and stops it
//! when dropped, and the container harness ([`images`], [`kafka`],
//! [`mariadb`]) on the `testcontainers` crate.
#![deny(missing_docs)]

pub mod images;
pub mod kafka;
pub mod mariadb;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Errors of the test harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A service binary is not installed.
    #[error("'{binary}' is not installed: run scripts/install-deps.sh")]
    Missing {
        /// The binary looked for.
        binary: String,
    },
    /// A service could not be started or reached.
    #[error("{what}: {message}")]
    Service {
        /// Which service.
        what: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// I/O with a service failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of the harness.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("binding a probe port"))?;
    Ok(l.local_addr().map_err(io("reading a probe port"))?.port())
}

/// `GET path` on a loopback HTTP server; returns the whole response
/// (status line, headers, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io(format!("connecting to {addr}")))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(io("setting a timeout"))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(io(format!("GET {path}")))?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(io(format!("reading {path}")))?;
    Ok(body)
}

/// A child process killed (and reaped) when dropped.
pub struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    /// Starts `binary` with `args`, its output discarded (or to `log`).
    pub fn start(binary: &str, args: &[String], log: Option<&std::path::Path>) -> Result<Self> {
        let path = which(binary).ok_or_else(|| Error::Missing { binary: binary.into() })?;
        let (out, err) = match log {
            Some(p) => {
                let f = std::fs::File::create(p).map_err(io("creating a log file"))?;
                let g = f.try_clone().map_err(io("cloning a log file"))?;
                (Stdio::from(f), Stdio::from(g))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child =
            Command::new(path).args(args).stdout(out).stderr(err).spawn().map_err(io(format!("starting {binary}")))?;
        Ok(ServerProcess { child })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The full path of `binary` on `PATH`.
pub fn which(binary: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(binary)).find(|p| p.is_file())
}
