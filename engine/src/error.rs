//! The engine's error type.
//!
//! One enum for the whole crate; every variant names the problem and, where
//! there is one, what to do about it. Job failures carry a [`FailureCause`],
//! an enum rather than a string, so callers can tell a failed task from a
//! slot shortage or a cancellation. Decisions are made on the variants, never
//! on the rendered text: a subtask that failed only because a neighbour's
//! channel closed ([`Error::ChannelClosed`]) becomes
//! [`FailureCause::ChannelClosed`], which gives way to the root cause.

use crate::faults::FailPoint;
use crate::ids::JobId;
use std::fmt;

/// Errors of the Sluice engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration key is unknown or has a bad value.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A command-line parameter is missing or malformed.
    #[error(transparent)]
    Param(#[from] crate::params::ParamError),
    /// The dataflow the program built cannot run as written.
    #[error("invalid job graph: {0}")]
    InvalidGraph(String),
    /// An I/O operation failed; `context` says on what.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. "cannot open input file 'x'".
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A record could not be read as the type the job expects.
    #[error("malformed input: {0}")]
    MalformedInput(String),
    /// An error raised by user code or a connector, or caused by the job's
    /// input (records, restored state), with its message.
    #[error("{0}")]
    User(String),
    /// A data channel to another subtask closed unexpectedly: that subtask
    /// failed or was canceled, the connection to it broke, or its job attempt
    /// was released. The subtask that sees it fails only in consequence of a
    /// failure elsewhere (see [`Error::is_consequence`]).
    #[error("data channel closed: {0}")]
    ChannelClosed(String),
    /// An invariant of the engine or of a connector does not hold (e.g. an
    /// operator used before it was opened): a bug, not a fault of the job.
    #[error("internal error (a bug in Sluice or the connector): {0}")]
    Internal(String),
    /// A failure injected on purpose through `SLUICE_FAULTS` or
    /// [`set_faults`](crate::StreamExecutionEnvironment::set_faults) (see [`crate::faults`]).
    #[error("injected failure {at} (SLUICE_FAULTS)")]
    InjectedFault {
        /// Where the subtask was told to fail.
        at: FailPoint,
    },
    /// The job ended in the FAILED state.
    #[error("job {job_id} failed: {cause}")]
    JobFailed {
        /// The failed job.
        job_id: JobId,
        /// Why it failed.
        cause: FailureCause,
    },
    /// The subtask was canceled while it waited (for a downstream subtask
    /// to take its output); it stops without finishing.
    #[error("canceled while {0}")]
    TaskCanceled(String),
    /// The job was canceled before it finished.
    #[error("job {0} was canceled")]
    JobCanceled(JobId),
    /// The metrics endpoint could not be started.
    #[error("cannot serve metrics on {addr}: {message}")]
    Metrics {
        /// The address that was asked for.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// An error of the checkpoint vocabulary (key groups, snapshots).
    #[error(transparent)]
    Checkpoint(#[from] sluice_checkpoint::Error),
    /// A data connection between processes could not be made or broke.
    #[error("data network: {0}")]
    Network(String),
    /// The cluster's control plane is gone (the mini cluster shut down).
    #[error("cluster unavailable: {0}")]
    ClusterUnavailable(String),
    /// A control-plane connection failed or carried something unexpected.
    #[error("RPC: {0}")]
    Rpc(#[from] RpcError),
    /// Security settings are wrong, or a peer failed to prove who it is.
    #[error(transparent)]
    Security(#[from] crate::transport::SecurityError),
}

/// Why a control-plane (RPC) operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The connection broke while reading or writing.
    #[error("connection broken: {0}")]
    ConnectionBroken(#[source] std::io::Error),
    /// A peer announced a frame larger than the limit.
    #[error("a frame of {len} bytes is larger than the limit ({limit}); not a Sluice peer?")]
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// The largest accepted.
        limit: usize,
    },
    /// A message could not be encoded.
    #[error("cannot encode a message: {0}")]
    Encode(String),
    /// A frame did not decode as the message the protocol expects here.
    #[error("cannot decode a message ({0}); are both sides the same Sluice version?")]
    Decode(String),
    /// An address does not resolve.
    #[error("bad address '{addr}' of the {what}: {reason}")]
    BadAddress {
        /// The address.
        addr: String,
        /// Whose address it is.
        what: String,
        /// Why it does not resolve.
        reason: String,
    },
    /// A peer did not answer within the deadline.
    #[error(
        "cannot reach the {what} at {addr} within {timeout:?}: {reason}; is it running, and is the address right?"
    )]
    Unreachable {
        /// Whom we tried to reach.
        what: String,
        /// Its address.
        addr: String,
        /// How long we tried.
        timeout: std::time::Duration,
        /// The last connection error.
        reason: String,
    },
    /// The peer sent a message the protocol does not allow at this point
    /// (the wrong first message, an unexpected answer).
    #[error("protocol violation by {peer}: {what}")]
    Protocol {
        /// The peer's address or name.
        peer: String,
        /// What it did.
        what: String,
    },
    /// The peer refused us, with its reason.
    #[error("refused by the {peer}: {reason}")]
    Refused {
        /// Who refused.
        peer: String,
        /// Its reason.
        reason: String,
    },
    /// A job process was started without a setting the cluster passes in
    /// its environment, or with a malformed one.
    #[error("{name}: {problem}; the cluster sets it when it starts a job process")]
    ProcessEnvironment {
        /// The environment variable.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl Error {
    /// An error raised by user code, for `Source`, `Sink` and function implementations.
    pub fn user(message: impl Into<String>) -> Self {
        Error::User(message.into())
    }

    /// A broken invariant of the engine or a connector (a bug).
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// An I/O error with the context it happened in.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// Whether a subtask failing with this error only echoes a failure
    /// elsewhere (a neighbouring subtask's channel closed), so that it is not
    /// the job's root cause.
    pub fn is_consequence(&self) -> bool {
        matches!(self, Error::ChannelClosed(_) | Error::TaskCanceled(_))
    }

    /// The error and its sources on one line (a source's text is left out if
    /// the error's own text already includes it).
    pub fn render_with_sources(&self) -> String {
        let mut s = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(inner) = source {
            let text = inner.to_string();
            if !s.contains(&text) {
                s.push_str(": ");
                s.push_str(&text);
            }
            source = inner.source();
        }
        s
    }
}

/// Result alias of the engine crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FailureCause {
    /// A subtask returned an error.
    TaskFailed {
        /// The task (vertex) name, e.g. `Source: Socket Stream -> Flat Map`.
        task: String,
        /// Which subtask (0-based).
        subtask: u32,
        /// The error, rendered.
        message: String,
    },
    /// A subtask failed because a data channel to another subtask closed
    /// ([`Error::ChannelClosed`]): the consequence of a failure elsewhere,
    /// which gives way to the root cause (see [`FailureCause::is_secondary`]).
    ChannelClosed {
        /// The task (vertex) name.
        task: String,
        /// Which subtask (0-based).
        subtask: u32,
        /// The error, rendered.
        message: String,
    },
    /// User code in a subtask panicked.
    TaskPanicked {
        /// The task (vertex) name.
        task: String,
        /// Which subtask (0-based).
        subtask: u32,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// The job could not get enough slots before `slot.request.timeout`.
    NotEnoughSlots {
        /// Slots the job needs (its largest parallelism, with slot sharing).
        required: u32,
        /// Slots the cluster has in total.
        available: u32,
        /// How long the job waited, in milliseconds.
        waited_ms: u64,
    },
    /// A TaskManager hosting subtasks of the job went away.
    TaskManagerLost(String),
    /// Checkpoints failed more often in a row than tolerated.
    CheckpointsFailing {
        /// The last failed checkpoint.
        checkpoint: u64,
        /// Why it failed.
        reason: String,
    },
}

impl FailureCause {
    /// The failure of subtask `subtask` of task `task` with `error`:
    /// [`FailureCause::ChannelClosed`] if the error is the consequence of a
    /// failure elsewhere ([`Error::is_consequence`]), else
    /// [`FailureCause::TaskFailed`]; the message is the error with its sources.
    pub fn task_failed(task: impl Into<String>, subtask: u32, error: &Error) -> Self {
        let (task, message) = (task.into(), error.render_with_sources());
        if error.is_consequence() {
            FailureCause::ChannelClosed { task, subtask, message }
        } else {
            FailureCause::TaskFailed { task, subtask, message }
        }
    }

    /// The kind of failure, as a name (the web UI's exception name).
    pub fn kind(&self) -> &'static str {
        match self {
            FailureCause::TaskFailed { .. } => "TaskFailed",
            FailureCause::ChannelClosed { .. } => "ChannelClosed",
            FailureCause::TaskPanicked { .. } => "TaskPanicked",
            FailureCause::NotEnoughSlots { .. } => "NotEnoughSlots",
            FailureCause::TaskManagerLost(_) => "TaskManagerLost",
            FailureCause::CheckpointsFailing { .. } => "CheckpointsFailing",
        }
    }

    /// Whether this failure is only the echo of another one (a subtask saw
    /// its neighbour's channel close); such a cause gives way to the root one.
    pub fn is_secondary(&self) -> bool {
        matches!(self, FailureCause::ChannelClosed { .. })
    }
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureCause::TaskFailed { task, subtask, message }
            | FailureCause::ChannelClosed { task, subtask, message } => {
                write!(f, "task '{task}' (subtask {}) failed: {message}", subtask + 1)
            }
            FailureCause::TaskPanicked { task, subtask, message } => {
                write!(f, "task '{task}' (subtask {}) panicked: {message}", subtask + 1)
            }
            FailureCause::NotEnoughSlots { required, available, waited_ms } => write!(
                f,
                "could not get {required} slots within slot.request.timeout ({waited_ms} ms): \
                 the cluster has {available} slots in total; lower the job's parallelism or add \
                 TaskManagers / raise taskmanager.numberOfTaskSlots"
            ),
            FailureCause::TaskManagerLost(tm) => write!(f, "TaskManager {tm} was lost"),
            FailureCause::CheckpointsFailing { checkpoint, reason } => write!(
                f,
                "checkpoint {checkpoint} failed ({reason}) and failed checkpoints exceed \
                 execution.checkpointing.tolerable-failed-checkpoints"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_channel_is_a_secondary_cause_whatever_its_text() {
        let echo = FailureCause::task_failed("Sink", 1, &Error::ChannelClosed("input channel 2 closed".into()));
        assert!(matches!(echo, FailureCause::ChannelClosed { subtask: 1, .. }), "{echo:?}");
        assert!(echo.is_secondary());
        assert_eq!(echo.to_string(), "task 'Sink' (subtask 2) failed: data channel closed: input channel 2 closed");
        // The text alone decides nothing: a user error quoting it is a root cause.
        let root = FailureCause::task_failed("Map", 0, &Error::user("data channel closed: said the user"));
        assert!(matches!(root, FailureCause::TaskFailed { .. }) && !root.is_secondary(), "{root:?}");
        for other in [
            Error::internal("x"),
            Error::InjectedFault { at: FailPoint::Record(3) },
            Error::Network("connection of channel c broke".into()),
        ] {
            assert!(!other.is_consequence() && !FailureCause::task_failed("t", 0, &other).is_secondary(), "{other:?}");
        }
    }

    #[test]
    fn the_message_carries_the_sources() {
        let e = Error::io("cannot open input file 'x'", std::io::Error::other("disk on fire"));
        assert_eq!(e.render_with_sources(), "cannot open input file 'x': disk on fire");
        let wrapped = Error::Checkpoint(sluice_checkpoint::Error::InvalidKeyGroups("zero".into()));
        assert_eq!(wrapped.render_with_sources(), "invalid key-group configuration: zero");
        let cause = FailureCause::task_failed("Source", 0, &e);
        assert!(
            matches!(&cause, FailureCause::TaskFailed { message, .. } if message == "cannot open input file 'x': disk on fire"),
            "{cause:?}"
        );
    }

    #[test]
    fn injected_faults_say_where() {
        let text = |at| Error::InjectedFault { at }.to_string();
        assert_eq!(text(FailPoint::Record(500)), "injected failure after 500 records (SLUICE_FAULTS)");
        assert_eq!(text(FailPoint::Checkpoint(3)), "injected failure at checkpoint 3 (SLUICE_FAULTS)");
        assert_eq!(
            text(FailPoint::Complete(4)),
            "injected failure after checkpoint 4 completed, before committing (SLUICE_FAULTS)"
        );
    }
}
