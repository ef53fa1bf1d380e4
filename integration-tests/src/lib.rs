//! # sluice-integration-tests
//!
//! End-to-end tests of Sluice against real services. The tests live in
//! `tests/`; this library holds what they share: a guard that runs a real
//! server process and stops it when dropped, and the container harness
//! ([`images`], [`kafka`], [`mariadb`]) on the `testcontainers` crate, and
//! the input and output checks of the Kafka WordCount example
//! ([`wordcount`]), a real etcd server ([`etcd`]) and deadlines for
//! processes under test ([`process`]), test hosts as network namespaces
//! ([`netns`]), containers on a Docker network of their own
//! ([`docker`]), and the tables, writers and change-log check of the MySQL
//! CDC tests ([`cdc`]). The
//! free port, HTTP client and unique names every test suite uses are in
//! `sluice-test-support` (`support/`).
#![deny(missing_docs)]

pub mod cdc;
pub mod docker;
pub mod etcd;
pub mod images;
pub mod kafka;
pub mod mariadb;
pub mod netns;
pub mod process;
pub mod wordcount;

use std::process::{Child, Command, Stdio};

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

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
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

    /// Starts `cmd` (e.g. on a test host, [`netns::TestHost::command`]),
    /// its output to `log`.
    pub fn spawn(mut cmd: Command, log: &std::path::Path) -> Result<Self> {
        let f = std::fs::File::create(log).map_err(io("creating a log file"))?;
        let g = f.try_clone().map_err(io("cloning a log file"))?;
        let child = cmd.stdout(f).stderr(g).spawn().map_err(io(format!("starting {cmd:?}")))?;
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
