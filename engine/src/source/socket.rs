//! An unbounded source of the lines sent by a TCP server
//! (Flink's `socketTextStream`), e.g. `nc -lk 7777`.
//!
//! It connects when its subtask opens; a refused or unreachable address is an
//! error that names the address and says how to start a server. It runs with
//! parallelism 1 and finishes when the server closes the connection. A socket
//! cannot be rewound, so its state is empty.

use super::{Boundedness, Source, SourceStatus};
use crate::error::{Error, Result};
use crate::runtime::collector::Collector;
use crate::runtime::context::RuntimeContext;
use sluice_checkpoint::CheckpointId;
use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Reads `\n`-delimited UTF-8 lines from `host:port`.
#[derive(Clone)]
pub struct SocketTextSource {
    host: String,
    port: u16,
    reader: Option<std::sync::Arc<std::sync::Mutex<BufReader<TcpStream>>>>,
    partial: Vec<u8>,
}

impl SocketTextSource {
    /// A source reading from `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        SocketTextSource { host: host.into(), port, reader: None, partial: Vec::new() }
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl Source<String> for SocketTextSource {
    type State = ();

    fn boundedness(&self) -> Boundedness {
        Boundedness::Unbounded
    }

    fn is_parallel(&self) -> bool {
        false
    }

    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        let addr = self.address();
        let hint = |e: std::io::Error| {
            Error::io(
                format!(
                    "cannot connect to the socket text stream at {addr} (is a server listening there? start one with `nc -lk {}`)",
                    self.port
                ),
                e,
            )
        };
        let addrs: Vec<_> = addr.to_socket_addrs().map_err(hint)?.collect();
        let mut last = std::io::Error::new(ErrorKind::NotFound, "the host name resolved to no address");
        for a in addrs {
            match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(Duration::from_millis(50))).map_err(hint)?;
                    tracing::info!("connected to socket text stream at {addr}");
                    self.reader = Some(std::sync::Arc::new(std::sync::Mutex::new(BufReader::new(stream))));
                    return Ok(());
                }
                Err(e) => last = e,
            }
        }
        Err(hint(last))
    }

    fn poll_next(&mut self, out: &mut dyn Collector<String>) -> Result<SourceStatus> {
        let Some(reader) = self.reader.clone() else {
            return Ok(SourceStatus::Finished);
        };
        let mut reader = reader.lock().map_err(|_| Error::internal("socket reader poisoned"))?;
        for _ in 0..256 {
            match reader.read_until(b'\n', &mut self.partial) {
                Ok(0) => {
                    // The server closed the connection; emit a last unterminated line.
                    if !self.partial.is_empty() {
                        let line = String::from_utf8_lossy(&self.partial).into_owned();
                        self.partial.clear();
                        out.collect(line)?;
                    }
                    tracing::info!("socket text stream at {} closed by the server", self.address());
                    return Ok(SourceStatus::Finished);
                }
                Ok(_) if self.partial.ends_with(b"\n") => {
                    let mut bytes = &self.partial[..self.partial.len() - 1];
                    if let Some(b) = bytes.strip_suffix(b"\r") {
                        bytes = b;
                    }
                    let line = std::str::from_utf8(bytes)
                        .map_err(|_| {
                            Error::MalformedInput(format!("a line from {} is not UTF-8 text", self.address()))
                        })?
                        .to_string();
                    self.partial.clear();
                    out.collect(line)?;
                }
                Ok(_) => return Ok(SourceStatus::Idle(Duration::from_millis(10))),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(SourceStatus::Idle(Duration::from_millis(10)))
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(format!("reading the socket text stream at {}", self.address()), e)),
            }
        }
        Ok(SourceStatus::MoreAvailable)
    }

    fn snapshot_state(&mut self, _checkpoint: CheckpointId) -> Result<()> {
        Ok(())
    }

    fn restore_state(&mut self, _state: ()) -> Result<()> {
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.reader = None;
        Ok(())
    }
}
