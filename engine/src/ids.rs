//! The identifiers every layer shares: jobs, TaskManagers, slots, subtasks,
//! and where a job attempt's slots live. They sit at the bottom of the crate
//! (nothing here imports another module of it) so that the runtime, the
//! graphs and the cluster can all name them without importing each other.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A job's id: 32 hex digits, like Flink's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(u128);

impl JobId {
    /// A fresh id, unique within this process and very likely across processes.
    pub fn generate() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mix = sluice_checkpoint::key_group::stable_hash(&(nanos, n, std::process::id()));
        JobId((u128::from(mix) << 64) | u128::from(sluice_checkpoint::key_group::stable_hash(&(mix, n))))
    }

    /// An id from its numeric value.
    pub const fn from_u128(v: u128) -> Self {
        JobId(v)
    }
}

impl std::str::FromStr for JobId {
    type Err = String;

    /// Parses the 32 hex digits `Display` prints.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() != 32 {
            return Err(format!("'{s}' is not a job id (32 hex digits)"));
        }
        u128::from_str_radix(s, 16).map(JobId).map_err(|_| format!("'{s}' is not a job id (32 hex digits)"))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

/// A TaskManager's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskManagerId(pub String);

impl fmt::Display for TaskManagerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One slot of one TaskManager.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SlotId {
    /// The TaskManager.
    pub task_manager: TaskManagerId,
    /// The slot's index there.
    pub index: u32,
}

/// Which subtask of which job attempt to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubtaskId {
    /// The job.
    pub job: JobId,
    /// The job's execution attempt (0, then +1 per restart).
    pub attempt: u32,
    /// The vertex.
    pub vertex: usize,
    /// The subtask index within the vertex.
    pub subtask: u32,
}

/// Where one slot of a job attempt lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotLocation {
    /// The TaskManager (in a cluster: the job's process on it).
    pub task_manager: TaskManagerId,
    /// The address its data server listens on; `None` in the mini cluster,
    /// where every channel is in-process.
    pub data_address: Option<String>,
}

/// Where the slots of a job attempt live. With slot sharing, slot *i* hosts
/// subtask *i* of every vertex.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Slot *i*'s location.
    pub slots: Vec<SlotLocation>,
}

impl Placement {
    /// The location of the slot that hosts subtask `index` of any vertex.
    pub fn of_subtask(&self, index: u32) -> Option<&SlotLocation> {
        self.slots.get(index as usize)
    }
}
