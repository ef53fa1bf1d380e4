//! PLACEHOLDER until the network data plane lands (branch `net`).

use crate::cluster::protocol::JobId;
use crate::error::{Error, Result};
use crate::runtime::erased::{AnyBox, StreamType};
use crate::runtime::shuffle::ChannelKey;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Placeholder.
pub(crate) struct DataServer {
    addr: SocketAddr,
}

impl DataServer {
    pub(crate) fn start(bind: &str) -> Result<Arc<DataServer>> {
        let l = std::net::TcpListener::bind(bind).map_err(|e| Error::io("bind", e))?;
        let addr = l.local_addr().map_err(|e| Error::io("bind", e))?;
        Ok(Arc::new(DataServer { addr }))
    }
    pub(crate) fn address(&self) -> SocketAddr {
        self.addr
    }
    pub(crate) fn receiver(&self, _key: ChannelKey, _ty: &dyn StreamType, _capacity: usize) -> Result<AnyBox> {
        Err(Error::InvalidGraph("network not built".into()))
    }
    pub(crate) fn release_job(&self, _job: JobId) {}
}

pub(crate) fn remote_sender(
    _key: ChannelKey,
    _addr: SocketAddr,
    _ty: &dyn StreamType,
    _capacity: usize,
    _connect_timeout: Duration,
) -> Result<AnyBox> {
    Err(Error::InvalidGraph("network not built".into()))
}
