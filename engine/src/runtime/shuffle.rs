//! The in-process data plane of the mini cluster.
//!
//! Every (edge, producing subtask, consuming subtask) pair of a job attempt
//! gets its own bounded channel, so that a consumer can tell its inputs apart
//! (watermarks and, later, barrier alignment are per channel). The channel is
//! created by whichever side asks first; the producer takes the sender and
//! the consumer the receiver. Across processes the same pairs will be TCP
//! connections with credit-based flow control (see `net`).

use crate::cluster::protocol::JobId;
use crate::error::{Error, Result};
use crate::runtime::erased::{AnyBox, StreamType};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

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
        let mut map = self.channels.lock().map_err(|_| Error::ClusterUnavailable("shuffle lock poisoned".into()))?;
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
