//! Fault injection, for tests and for users testing their own jobs.
//!
//! Set `SLUICE_FAULTS` (or call
//! [`StreamExecutionEnvironment::set_faults`](crate::StreamExecutionEnvironment::set_faults))
//! to a `;`-separated list of:
//!
//! | spec | effect |
//! | --- | --- |
//! | `fail:TASK:SUBTASK@record=N` | the subtask (0-based) of the task whose name contains `TASK` fails once it has taken in `N` records, in the job's first execution attempt |
//! | `fail:TASK:SUBTASK@record=N,attempt=A` | the same in attempt `A` (0 is the first run, +1 per restart) |
//! | `fail:TASK:SUBTASK@checkpoint=N` | that subtask fails when the barrier of checkpoint `N` reaches it (first attempt) |
//! | `fail:TASK:SUBTASK@complete=N` | that subtask fails when told checkpoint `N` is complete, before its operators hear of it (a sink has not committed yet) |
//! | `abort@after-snapshot=N` | the whole process aborts right after a subtask has written its snapshot of checkpoint `N` |
//! | `abort@after-complete=N` | the process aborts after checkpoint `N` is complete (metadata written) but before any task is notified |
//! | `abort@after-complete=first` | the same after the first checkpoint this process completes (for jobs restored from an unknown checkpoint) |
//! | `abort@after-complete=+K` | the same after the K-th checkpoint this process completes |
//!
//! An aborted process dies as with `kill -9`: nothing is flushed or closed.
//!
//! ```
//! use sluice::faults::Faults;
//! let f = Faults::parse("fail:Map:1@record=500;abort@after-complete=3").unwrap();
//! assert_eq!(f.abort_after_complete, Some(3));
//! assert!(Faults::parse("explode").is_err());
//! ```

use crate::error::{Error, Result};
use std::fmt;

/// Where a subtask fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailPoint {
    /// After taking in this many records.
    Record(u64),
    /// When this checkpoint's barrier arrives.
    Checkpoint(u64),
    /// When told this checkpoint is complete, before notifying operators.
    Complete(u64),
}

impl fmt::Display for FailPoint {
    /// Where, as in "injected failure <where>".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailPoint::Record(n) => write!(f, "after {n} records"),
            FailPoint::Checkpoint(n) => write!(f, "at checkpoint {n}"),
            FailPoint::Complete(n) => write!(f, "after checkpoint {n} completed, before committing"),
        }
    }
}

/// One injected subtask failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtaskFault {
    /// A substring of the task (vertex) name.
    pub task: String,
    /// The subtask index (0-based).
    pub subtask: u32,
    /// The execution attempt it applies to.
    pub attempt: u32,
    /// Where it fails.
    pub at: FailPoint,
}

/// All injected faults of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Subtask failures.
    pub subtasks: Vec<SubtaskFault>,
    /// Abort the process after a subtask wrote its snapshot of this checkpoint.
    pub abort_after_snapshot: Option<u64>,
    /// Abort the process after this checkpoint completed, before notifying
    /// tasks; 0 means the first one this process completes.
    pub abort_after_complete: Option<u64>,
    /// Abort the process after the K-th checkpoint this process completes
    /// (`abort@after-complete=+K`), before notifying tasks.
    pub abort_after_completions: Option<u64>,
}

fn bad(spec: &str, why: &str) -> Error {
    Error::user(format!("bad SLUICE_FAULTS entry '{spec}': {why}"))
}

impl Faults {
    /// Reads `SLUICE_FAULTS`; empty when unset.
    pub fn from_env() -> Result<Self> {
        match std::env::var("SLUICE_FAULTS") {
            Ok(s) => Self::parse(&s),
            Err(_) => Ok(Self::default()),
        }
    }

    /// Parses the syntax in the module docs.
    pub fn parse(text: &str) -> Result<Self> {
        let mut f = Faults::default();
        for spec in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let num = |v: &str| v.parse::<u64>().map_err(|_| bad(spec, "expected a number"));
            if let Some(rest) = spec.strip_prefix("abort@") {
                match rest.split_once('=') {
                    Some(("after-snapshot", n)) => f.abort_after_snapshot = Some(num(n)?),
                    Some(("after-complete", "first")) => f.abort_after_complete = Some(0),
                    Some(("after-complete", k)) if k.starts_with('+') => {
                        f.abort_after_completions = Some(num(&k[1..])?.max(1))
                    }
                    Some(("after-complete", n)) => f.abort_after_complete = Some(num(n)?),
                    _ => return Err(bad(spec, "expected abort@after-snapshot=N or abort@after-complete=N")),
                }
            } else if let Some(rest) = spec.strip_prefix("fail:") {
                let (target, when) = rest.split_once('@').ok_or_else(|| bad(spec, "expected fail:TASK:SUBTASK@..."))?;
                let (task, subtask) =
                    target.rsplit_once(':').ok_or_else(|| bad(spec, "expected fail:TASK:SUBTASK@..."))?;
                let mut fault = SubtaskFault {
                    task: task.to_string(),
                    subtask: num(subtask)? as u32,
                    attempt: 0,
                    at: FailPoint::Record(0),
                };
                let mut point = None;
                for part in when.split(',') {
                    match part.split_once('=') {
                        Some(("record", n)) => point = Some(FailPoint::Record(num(n)?)),
                        Some(("checkpoint", n)) => point = Some(FailPoint::Checkpoint(num(n)?)),
                        Some(("complete", n)) => point = Some(FailPoint::Complete(num(n)?)),
                        Some(("attempt", n)) => fault.attempt = num(n)? as u32,
                        _ => return Err(bad(spec, "expected record=N, checkpoint=N, complete=N or attempt=A")),
                    }
                }
                fault.at = point.ok_or_else(|| bad(spec, "say where: record=N or checkpoint=N"))?;
                f.subtasks.push(fault);
            } else {
                return Err(bad(spec, "expected fail:... or abort@..."));
            }
        }
        Ok(f)
    }

    /// The failure point of one subtask in one attempt, if any.
    pub fn for_subtask(&self, task_name: &str, subtask: u32, attempt: u32) -> Vec<FailPoint> {
        self.subtasks
            .iter()
            .filter(|f| f.subtask == subtask && f.attempt == attempt && task_name.contains(&f.task))
            .map(|f| f.at.clone())
            .collect()
    }
}

/// Aborts the process (like `kill -9`: no destructor, no flush).
pub(crate) fn abort_process(why: &str) -> ! {
    eprintln!("SLUICE_FAULTS: aborting the process {why}");
    std::process::abort()
}
