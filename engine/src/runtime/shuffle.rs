//! The data plane: which channel end a subtask gets for each of its inputs
//! and outputs.
//!
//! Every (edge, producing subtask, consuming subtask) pair of a job attempt
//! gets its own bounded channel, so that a consumer can tell its inputs apart
//! (watermarks and barrier alignment are per channel). In-process, the
//! channel is created by whichever side asks first; the producer takes the
//! sender and the consumer the receiver. When the two subtasks run in
//! different processes (cluster mode), the pair is bridged over a TCP
//! connection with credit-based flow control (see `net`).

use crate::error::{Error, Result};
use crate::ids::{JobId, Placement, TaskManagerId};
use crate::runtime::erased::{AnyBox, StreamType};
use crate::runtime::net::{remote_sender, DataServer};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Identifies one channel of one job attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct ChannelKey {
    pub(crate) job: JobId,
    pub(crate) attempt: u32,
    pub(crate) edge: usize,
    pub(crate) producer: u32,
    pub(crate) consumer: u32,
}

impl fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{} edge {} (subtask {} -> {})", self.job, self.attempt, self.edge, self.producer, self.consumer)
    }
}

#[derive(Default)]
struct Ends {
    sender: Option<AnyBox>,
    receiver: Option<AnyBox>,
    created: bool,
}

/// Channels of all jobs running in this process.
#[derive(Default)]
pub(crate) struct LocalShuffle {
    channels: Mutex<HashMap<ChannelKey, Ends>>,
}

impl LocalShuffle {
    fn take(&self, key: ChannelKey, ty: &dyn StreamType, capacity: usize, sender: bool) -> Result<AnyBox> {
        let mut map =
            self.channels.lock().map_err(|_| Error::internal("the shuffle's channel table was poisoned by a panic"))?;
        let ends = map.entry(key).or_default();
        if !ends.created {
            let (tx, rx) = ty.new_channel(capacity);
            ends.sender = Some(tx);
            ends.receiver = Some(rx);
            ends.created = true;
        }
        let taken = if sender { ends.sender.take() } else { ends.receiver.take() };
        if ends.sender.is_none() && ends.receiver.is_none() {
            map.remove(&key);
        }
        taken.ok_or_else(|| Error::InvalidGraph(format!("channel {key:?} was claimed twice")))
    }

    pub(crate) fn sender(&self, key: ChannelKey, ty: &dyn StreamType, capacity: usize) -> Result<AnyBox> {
        self.take(key, ty, capacity, true)
    }

    pub(crate) fn receiver(&self, key: ChannelKey, ty: &dyn StreamType, capacity: usize) -> Result<AnyBox> {
        self.take(key, ty, capacity, false)
    }

    /// Drops every channel end of `job` not yet claimed (the job ended).
    pub(crate) fn release_job(&self, job: JobId) {
        if let Ok(mut map) = self.channels.lock() {
            map.retain(|k, _| k.job != job);
        }
    }
}

/// How long a producer keeps trying to reach a consumer in another process
/// (which may still be starting).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The data plane of one process: in-process channels for peers in the same
/// process and, in cluster mode, TCP channels (see [`crate::runtime::net`])
/// for peers in other processes.
pub(crate) struct Shuffle {
    local: LocalShuffle,
    net: Option<(TaskManagerId, Arc<DataServer>)>,
}

impl Shuffle {
    /// Every channel in-process (the mini cluster).
    pub(crate) fn local() -> Self {
        Shuffle { local: LocalShuffle::default(), net: None }
    }

    /// A process of a cluster: the TaskManager `me`, whose remote inputs
    /// arrive at `server`.
    pub(crate) fn networked(me: TaskManagerId, server: Arc<DataServer>) -> Self {
        Shuffle { local: LocalShuffle::default(), net: Some((me, server)) }
    }

    /// The remote address of subtask `index`'s slot, if it is in another process.
    fn remote(&self, placement: &Placement, index: u32) -> Result<Option<SocketAddr>> {
        let Some((me, _)) = &self.net else { return Ok(None) };
        let Some(loc) = placement.of_subtask(index) else { return Ok(None) };
        if &loc.task_manager == me {
            return Ok(None);
        }
        let addr = loc.data_address.as_deref().ok_or_else(|| {
            Error::InvalidGraph(format!("TaskManager {} announced no data address", loc.task_manager))
        })?;
        // `host:port`, the host an address or a name (`taskmanager.host`).
        if let Ok(a) = addr.parse() {
            return Ok(Some(a));
        }
        use std::net::ToSocketAddrs;
        match addr.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => Ok(Some(a)),
            Ok(None) => Err(Error::InvalidGraph(format!(
                "TaskManager {} has a data address '{addr}' that resolves to nothing",
                loc.task_manager
            ))),
            Err(e) => Err(Error::InvalidGraph(format!(
                "TaskManager {} has a data address '{addr}' that does not resolve here: {e} (is its \
                 taskmanager.host reachable from every TaskManager?)",
                loc.task_manager
            ))),
        }
    }

    /// The producer's end of `key`.
    pub(crate) fn sender(
        &self,
        key: ChannelKey,
        ty: &dyn StreamType,
        capacity: usize,
        placement: &Placement,
    ) -> Result<AnyBox> {
        match self.remote(placement, key.consumer)? {
            Some(addr) => {
                let auth = self
                    .net
                    .as_ref()
                    .map(|(_, server)| server.auth())
                    .ok_or_else(|| Error::internal("a remote channel in a process without a data server"))?;
                remote_sender(key, addr, ty, capacity, CONNECT_TIMEOUT, auth)
            }
            None => self.local.sender(key, ty, capacity),
        }
    }

    /// The consumer's end of `key`.
    pub(crate) fn receiver(
        &self,
        key: ChannelKey,
        ty: &dyn StreamType,
        capacity: usize,
        placement: &Placement,
    ) -> Result<AnyBox> {
        match (self.remote(placement, key.producer)?, &self.net) {
            (Some(_), Some((_, server))) => server.receiver(key, ty, capacity),
            _ => self.local.receiver(key, ty, capacity),
        }
    }

    /// Drops the in-process channels of `job` (its attempt ended). Network
    /// channels of old attempts are dropped when the next attempt starts
    /// ([`Shuffle::begin_attempt`]): a peer process may already be connecting
    /// for the new attempt while this one is still told to release.
    pub(crate) fn release_job(&self, job: JobId) {
        self.local.release_job(job);
    }

    /// A subtask of `attempt` of `job` is deployed here: network channels of
    /// older attempts are dropped.
    pub(crate) fn begin_attempt(&self, job: JobId, attempt: u32) {
        if let Some((_, server)) = &self.net {
            server.release_attempts_before(job, attempt);
        }
    }
}
