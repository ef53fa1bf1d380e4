//! The driver's [`CheckpointFence`]: asks the JobManager that started it
//! over its link ([`FromDriver::Fence`]) and waits for the answer
//! ([`ToDriver::FenceAnswer`](super::messages::ToDriver::FenceAnswer)),
//! which the driver's command thread hands over through [`FenceAnswers`].
//! No answer within [`ANSWER_TIMEOUT`] counts as fenced: a job master that
//! cannot reach its leader must not act as if it still had one.

use super::messages::{FenceOp, FromDriver};
use super::wire::Link;
use crate::cluster::fence::{CheckpointFence, Fenced};
use crossbeam_channel::Sender;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the driver waits for the JobManager's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a waiting request's answer goes.
type AnswerTo = Sender<Result<u64, Fenced>>;

/// Requests waiting for their answer, by request id.
#[derive(Clone, Default)]
pub(crate) struct FenceAnswers(Arc<Mutex<HashMap<u64, AnswerTo>>>);

impl FenceAnswers {
    /// Hands `answer` to the request `request` (ignored if nobody waits).
    pub(crate) fn deliver(&self, request: u64, answer: Result<u64, Fenced>) {
        let waiting = self.0.lock().ok().and_then(|mut m| m.remove(&request));
        if let Some(tx) = waiting {
            let _ = tx.send(answer);
        }
    }

    /// Fails every waiting request: the link is gone.
    pub(crate) fn fail_all(&self) {
        if let Ok(mut m) = self.0.lock() {
            for (_, tx) in m.drain() {
                let _ = tx.send(Err(Fenced::NoAnswer(0)));
            }
        }
    }
}

/// See the module docs.
pub(crate) struct RemoteFence {
    link: Link,
    answers: FenceAnswers,
    next_request: u64,
}

impl RemoteFence {
    pub(crate) fn new(link: Link, answers: FenceAnswers) -> Self {
        RemoteFence { link, answers, next_request: 1 }
    }

    fn ask(&mut self, op: FenceOp) -> Result<u64, Fenced> {
        let request = self.next_request;
        self.next_request += 1;
        let (tx, rx) = crossbeam_channel::bounded(1);
        if let Ok(mut m) = self.answers.0.lock() {
            m.insert(request, tx);
        }
        let no_answer = Fenced::NoAnswer(ANSWER_TIMEOUT.as_millis() as u64);
        if self.link.send(&FromDriver::Fence { request, op }).is_err() {
            return Err(no_answer);
        }
        let answer = rx.recv_timeout(ANSWER_TIMEOUT).unwrap_or(Err(no_answer));
        if let Ok(mut m) = self.answers.0.lock() {
            m.remove(&request);
        }
        answer
    }
}

impl CheckpointFence for RemoteFence {
    fn reserve_id(&mut self, at_least: u64) -> Result<u64, Fenced> {
        let id = self.ask(FenceOp::ReserveId { at_least })?;
        // A leader that answers less than asked would make ids go backwards.
        if id < at_least {
            return Err(Fenced::Unavailable(format!("the JobManager reserved id {id}, below {at_least}")));
        }
        Ok(id)
    }

    fn record_completed(&mut self, checkpoint: u64, dir: &Path) -> Result<(), Fenced> {
        self.ask(FenceOp::Completed { checkpoint, dir: dir.display().to_string() }).map(|_| ())
    }
}
