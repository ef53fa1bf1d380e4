//! Barrier alignment of one input task.
//!
//! An input task reads several channels, one per upstream subtask. Every
//! upstream subtask forwards barrier *n* of checkpoint *n* on each of its
//! output channels, in order with its records. The task may snapshot its
//! chain for checkpoint *n* once barrier *n* has arrived on every channel
//! that is still open; [`BarrierAligner`] decides when that is, and which
//! channels the task may read meanwhile.
//!
//! # Lifecycle
//!
//! One aligner lives as long as the task's run loop, created with the number
//! of input channels and the job's [`CheckpointingMode`]. The loop tells it
//! of every barrier ([`BarrierAligner::on_barrier`]), every end of a
//! channel ([`BarrierAligner::on_end_of_partition`]) and every aborted
//! checkpoint ([`BarrierAligner::abort`]), and asks it before each read
//! whether a channel may be read ([`BarrierAligner::is_readable`]). At most
//! one alignment is pending at a time:
//!
//! * The first barrier of a checkpoint starts its alignment.
//! * A barrier of the pending checkpoint marks its channel as arrived.
//! * A barrier older than the pending one is stale and ignored.
//! * A barrier newer than the pending one supersedes it: the unfinished
//!   alignment is dropped (its checkpoint is never snapshotted here) and the
//!   newer one starts with this channel arrived.
//! * An end of a channel counts as arrived, for the pending alignment and
//!   every later one.
//! * Aborting the pending checkpoint drops its alignment; the next barrier
//!   starts a fresh one (even a late barrier of the aborted checkpoint: the
//!   aligner does not remember past checkpoints).
//! * When every channel has arrived or ended, the alignment completes: the
//!   call that completed it returns [`Aligned`], and nothing is pending any
//!   more. The one exception is the end of the last open channel: the task's
//!   input is over, so a pending alignment is dropped instead of completed.
//!
//! In [`CheckpointingMode::ExactlyOnce`] a channel that delivered the
//! pending barrier is *held*: it is not readable until the alignment
//! completes or is dropped, so no record sent after the barrier reaches the
//! state before the snapshot (its records wait in the bounded channel, which
//! backpressures that producer). In [`CheckpointingMode::AtLeastOnce`]
//! channels are never held; the aligner still tracks the barriers, so that
//! the snapshot is taken once, when the last of them arrives.
//!
//! # Purity
//!
//! The aligner is plain bookkeeping: it reads no channel, takes no
//! snapshot and does no I/O. It does not read the clock either; the caller
//! passes the current [`Instant`] to the calls that may start or complete an
//! alignment, and gets the alignment's duration back in [`Aligned`] (the
//! task's `alignment_time` metric). So it can be tested with scripted
//! sequences of barriers, ends and aborts.

use sluice_checkpoint::{CheckpointBarrier, CheckpointId, CheckpointingMode};
use std::time::{Duration, Instant};

/// A checkpoint whose barriers have all arrived: the task snapshots now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Aligned {
    /// The barrier to snapshot for and forward.
    pub(crate) barrier: CheckpointBarrier,
    /// From the first of its barriers to the call that completed it.
    pub(crate) duration: Duration,
}

/// The alignment of the pending checkpoint.
#[derive(Debug)]
struct Pending {
    barrier: CheckpointBarrier,
    /// Per channel: its barrier arrived.
    arrived: Vec<bool>,
    started: Instant,
}

/// Tracks checkpoint barriers on the input channels of one task (see the
/// [module documentation](self)).
#[derive(Debug)]
pub(crate) struct BarrierAligner {
    mode: CheckpointingMode,
    /// Per channel: it delivered its end of stream.
    finished: Vec<bool>,
    /// The channels that have not ended.
    open: usize,
    pending: Option<Pending>,
}

impl BarrierAligner {
    /// An aligner for `channels` open input channels, nothing pending.
    pub(crate) fn new(channels: usize, mode: CheckpointingMode) -> Self {
        BarrierAligner { mode, finished: vec![false; channels], open: channels, pending: None }
    }

    /// Whether `channel` may be read now: it has not ended, and it is not
    /// held by a pending exactly-once alignment. A channel outside the
    /// aligner's range is not readable.
    #[inline]
    pub(crate) fn is_readable(&self, channel: usize) -> bool {
        let held = self.mode == CheckpointingMode::ExactlyOnce
            && self.pending.as_ref().is_some_and(|p| p.arrived.get(channel).copied().unwrap_or(false));
        !(self.finished.get(channel).copied().unwrap_or(true) || held)
    }

    /// Whether every channel has ended (also true for a task without
    /// channels).
    pub(crate) fn all_finished(&self) -> bool {
        self.open == 0
    }

    /// The checkpoint being aligned, if any.
    pub(crate) fn pending(&self) -> Option<CheckpointId> {
        self.pending.as_ref().map(|p| p.barrier.id)
    }

    /// `barrier` arrived on `channel` at `now`. Returns the aligned barrier
    /// if this was the last one missing; `None` if the alignment still waits
    /// for other channels, or the barrier was stale (older than the pending
    /// one) and ignored.
    pub(crate) fn on_barrier(&mut self, channel: usize, barrier: CheckpointBarrier, now: Instant) -> Option<Aligned> {
        match &mut self.pending {
            Some(p) if p.barrier.id == barrier.id => {
                if let Some(arrived) = p.arrived.get_mut(channel) {
                    *arrived = true;
                }
            }
            Some(p) if p.barrier.id > barrier.id => return None, // stale
            _ => {
                // A first barrier, or a newer one that supersedes an unfinished alignment.
                let mut arrived = vec![false; self.finished.len()];
                if let Some(a) = arrived.get_mut(channel) {
                    *a = true;
                }
                self.pending = Some(Pending { barrier, arrived, started: now });
            }
        }
        self.complete_if_aligned(now)
    }

    /// `channel` delivered its end of stream at `now`: it is no longer
    /// readable, and counts as arrived for the pending alignment and all
    /// later ones. Returns the aligned barrier if the pending alignment
    /// waited only for this channel and other channels are still open; if
    /// this was the last open channel, a pending alignment is dropped and
    /// `None` returned. A second end of the same channel changes nothing.
    pub(crate) fn on_end_of_partition(&mut self, channel: usize, now: Instant) -> Option<Aligned> {
        match self.finished.get_mut(channel) {
            Some(finished) if !*finished => *finished = true,
            _ => return None,
        }
        self.open -= 1;
        if self.open == 0 {
            self.pending = None;
            return None;
        }
        self.complete_if_aligned(now)
    }

    /// Checkpoint `id` was aborted: if it is being aligned, the alignment is
    /// dropped and its held channels are readable again. Returns whether an
    /// alignment was dropped; an abort of any other checkpoint changes
    /// nothing.
    pub(crate) fn abort(&mut self, id: CheckpointId) -> bool {
        if self.pending() == Some(id) {
            self.pending = None;
            return true;
        }
        false
    }

    /// Completes the pending alignment if every channel arrived or ended.
    fn complete_if_aligned(&mut self, now: Instant) -> Option<Aligned> {
        let p = self.pending.as_ref()?;
        let done = p.arrived.iter().zip(&self.finished).all(|(arrived, finished)| *arrived || *finished);
        if !done {
            return None;
        }
        let aligned = Aligned { barrier: p.barrier, duration: now.saturating_duration_since(p.started) };
        self.pending = None;
        Some(aligned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_checkpoint::CheckpointKind;
    use CheckpointingMode::{AtLeastOnce, ExactlyOnce};

    fn barrier(id: u64) -> CheckpointBarrier {
        CheckpointBarrier { id: CheckpointId(id), timestamp_ms: 1000 + id, kind: CheckpointKind::Checkpoint }
    }

    /// A scripted input: each step is an event on a channel at a time (ms
    /// after the start), checked against what the aligner must return.
    enum Event {
        Barrier(u64),
        End,
    }

    struct Script {
        aligner: BarrierAligner,
        t0: Instant,
    }

    impl Script {
        fn new(channels: usize, mode: CheckpointingMode) -> Self {
            Script { aligner: BarrierAligner::new(channels, mode), t0: Instant::now() }
        }

        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        /// Feeds `event` on `channel` at `ms`; returns the aligned
        /// checkpoint id and duration (ms), if any.
        fn feed(&mut self, ms: u64, channel: usize, event: Event) -> Option<(u64, u64)> {
            let now = self.at(ms);
            let aligned = match event {
                Event::Barrier(id) => self.aligner.on_barrier(channel, barrier(id), now),
                Event::End => self.aligner.on_end_of_partition(channel, now),
            };
            aligned.map(|a| {
                assert_eq!(a.barrier, barrier(a.barrier.id.0), "the barrier is returned as it arrived");
                (a.barrier.id.0, a.duration.as_millis() as u64)
            })
        }

        fn readable(&self) -> Vec<bool> {
            (0..self.aligner.finished.len()).map(|c| self.aligner.is_readable(c)).collect()
        }
    }

    #[test]
    fn a_new_aligner_reads_every_channel() {
        let s = Script::new(3, ExactlyOnce);
        assert_eq!(s.readable(), [true, true, true]);
        assert_eq!(s.aligner.pending(), None);
        assert!(!s.aligner.all_finished());
        assert!(!s.aligner.is_readable(3), "a channel out of range is not readable");
    }

    #[test]
    fn a_task_without_channels_is_finished() {
        assert!(BarrierAligner::new(0, ExactlyOnce).all_finished());
    }

    #[test]
    fn a_single_channel_aligns_at_once() {
        let mut s = Script::new(1, ExactlyOnce);
        assert_eq!(s.feed(5, 0, Event::Barrier(1)), Some((1, 0)));
        assert_eq!(s.readable(), [true]);
        assert_eq!(s.aligner.pending(), None);
    }

    #[test]
    fn exactly_once_holds_a_channel_until_the_other_delivers_the_barrier() {
        let mut s = Script::new(2, ExactlyOnce);
        assert_eq!(s.feed(10, 0, Event::Barrier(1)), None);
        assert_eq!(s.readable(), [false, true], "channel 0 delivered barrier 1: held");
        assert_eq!(s.aligner.pending(), Some(CheckpointId(1)));
        assert_eq!(s.feed(35, 1, Event::Barrier(1)), Some((1, 25)), "aligned, 25 ms after the first barrier");
        assert_eq!(s.readable(), [true, true], "released once aligned");
        assert_eq!(s.aligner.pending(), None);
        // The next checkpoint aligns the same way, in the other order.
        assert_eq!(s.feed(50, 1, Event::Barrier(2)), None);
        assert_eq!(s.readable(), [true, false]);
        assert_eq!(s.feed(51, 0, Event::Barrier(2)), Some((2, 1)));
        assert_eq!(s.readable(), [true, true]);
    }

    #[test]
    fn exactly_once_three_channels_align_on_the_last_barrier_only() {
        let mut s = Script::new(3, ExactlyOnce);
        assert_eq!(s.feed(0, 2, Event::Barrier(7)), None);
        assert_eq!(s.readable(), [true, true, false]);
        assert_eq!(s.feed(4, 0, Event::Barrier(7)), None);
        assert_eq!(s.readable(), [false, true, false]);
        assert_eq!(s.feed(9, 1, Event::Barrier(7)), Some((7, 9)));
        assert_eq!(s.readable(), [true, true, true]);
    }

    #[test]
    fn at_least_once_never_holds_but_aligns_once() {
        let mut s = Script::new(3, AtLeastOnce);
        assert_eq!(s.feed(0, 1, Event::Barrier(1)), None);
        assert_eq!(s.readable(), [true, true, true], "at-least-once holds no channel");
        assert_eq!(s.aligner.pending(), Some(CheckpointId(1)), "but tracks the barrier");
        assert_eq!(s.feed(3, 0, Event::Barrier(1)), None);
        assert_eq!(s.readable(), [true, true, true]);
        assert_eq!(s.feed(8, 2, Event::Barrier(1)), Some((1, 8)), "the snapshot is taken on the last barrier");
        assert_eq!(s.aligner.pending(), None);
        assert_eq!(s.readable(), [true, true, true]);
    }

    #[test]
    fn at_least_once_reads_on_past_a_barrier_and_sees_the_next_one_supersede() {
        // Channel 0 is not held, so its barrier 2 can come before channel
        // 1's barrier 1: checkpoint 1 is then given up, 2 aligns.
        let mut s = Script::new(2, AtLeastOnce);
        assert_eq!(s.feed(0, 0, Event::Barrier(1)), None);
        assert_eq!(s.feed(10, 0, Event::Barrier(2)), None);
        assert_eq!(s.aligner.pending(), Some(CheckpointId(2)));
        assert_eq!(s.feed(12, 1, Event::Barrier(1)), None, "stale");
        assert_eq!(s.feed(15, 1, Event::Barrier(2)), Some((2, 5)));
    }

    #[test]
    fn a_stale_barrier_is_ignored() {
        let mut s = Script::new(3, ExactlyOnce);
        assert_eq!(s.feed(0, 0, Event::Barrier(2)), None);
        assert_eq!(s.feed(1, 1, Event::Barrier(1)), None, "barrier 1 is older than the pending 2");
        assert_eq!(s.aligner.pending(), Some(CheckpointId(2)), "the pending alignment is kept");
        assert_eq!(s.readable(), [false, true, true], "the stale barrier holds nothing, releases nothing");
        assert_eq!(s.feed(2, 2, Event::Barrier(2)), None);
        assert_eq!(s.feed(6, 1, Event::Barrier(2)), Some((2, 6)));
    }

    #[test]
    fn a_newer_barrier_supersedes_an_unfinished_alignment() {
        let mut s = Script::new(3, ExactlyOnce);
        assert_eq!(s.feed(0, 0, Event::Barrier(1)), None);
        assert_eq!(s.feed(1, 1, Event::Barrier(1)), None);
        assert_eq!(s.readable(), [false, false, true]);
        assert_eq!(s.feed(20, 2, Event::Barrier(2)), None, "checkpoint 2 supersedes 1");
        assert_eq!(s.aligner.pending(), Some(CheckpointId(2)));
        assert_eq!(s.readable(), [true, true, false], "only the channel that delivered 2 is held");
        assert_eq!(s.feed(25, 0, Event::Barrier(2)), None, "channel 0's arrival for 1 does not count for 2");
        assert_eq!(s.feed(30, 1, Event::Barrier(2)), Some((2, 10)), "timed from the first barrier of 2");
        assert_eq!(s.readable(), [true, true, true]);
    }

    #[test]
    fn abort_drops_the_alignment_and_the_next_barrier_starts_afresh() {
        let mut s = Script::new(2, ExactlyOnce);
        assert_eq!(s.feed(0, 0, Event::Barrier(1)), None);
        assert!(!s.aligner.abort(CheckpointId(9)), "aborting another checkpoint changes nothing");
        assert_eq!(s.aligner.pending(), Some(CheckpointId(1)));
        assert_eq!(s.readable(), [false, true]);
        assert!(s.aligner.abort(CheckpointId(1)));
        assert_eq!(s.aligner.pending(), None);
        assert_eq!(s.readable(), [true, true], "abort releases the held channel");
        assert_eq!(s.feed(40, 0, Event::Barrier(2)), None, "channel 0's barrier 1 does not count any more");
        assert_eq!(s.readable(), [false, true]);
        assert_eq!(s.feed(45, 1, Event::Barrier(2)), Some((2, 5)), "timed from the new alignment's start");
    }

    #[test]
    fn abort_mid_alignment_of_three_channels_releases_all_held_channels() {
        let mut s = Script::new(3, ExactlyOnce);
        assert_eq!(s.feed(0, 0, Event::Barrier(4)), None);
        assert_eq!(s.feed(1, 2, Event::Barrier(4)), None);
        assert_eq!(s.readable(), [false, true, false]);
        assert!(s.aligner.abort(CheckpointId(4)));
        assert_eq!(s.readable(), [true, true, true]);
        // The aligner does not remember aborted checkpoints: the late
        // barrier 4 of channel 1 starts a new alignment of 4, which a
        // barrier 5 on the other channels then supersedes.
        assert_eq!(s.feed(5, 1, Event::Barrier(4)), None);
        assert_eq!(s.aligner.pending(), Some(CheckpointId(4)));
        assert_eq!(s.readable(), [true, false, true]);
        assert_eq!(s.feed(9, 0, Event::Barrier(5)), None);
        assert_eq!(s.feed(10, 2, Event::Barrier(5)), None);
        assert_eq!(s.feed(12, 1, Event::Barrier(5)), Some((5, 3)));
    }

    #[test]
    fn abort_after_completion_changes_nothing() {
        let mut s = Script::new(2, ExactlyOnce);
        assert_eq!(s.feed(0, 0, Event::Barrier(1)), None);
        assert_eq!(s.feed(1, 1, Event::Barrier(1)), Some((1, 1)));
        assert!(!s.aligner.abort(CheckpointId(1)));
        assert_eq!(s.readable(), [true, true]);
    }

    #[test]
    fn end_of_partition_completes_a_pending_alignment() {
        let mut s = Script::new(3, ExactlyOnce);
        assert_eq!(s.feed(0, 0, Event::Barrier(3)), None);
        assert_eq!(s.feed(2, 1, Event::Barrier(3)), None);
        assert_eq!(s.feed(7, 2, Event::End), Some((3, 7)), "the end of channel 2 counts as its barrier");
        assert_eq!(s.readable(), [true, true, false], "an ended channel is never readable");
        assert!(!s.aligner.all_finished());
    }

    #[test]
    fn end_of_partition_does_not_complete_while_others_are_missing() {
        let mut s = Script::new(3, ExactlyOnce);
        assert_eq!(s.feed(0, 0, Event::Barrier(3)), None);
        assert_eq!(s.feed(1, 2, Event::End), None, "channel 1 has not delivered barrier 3");
        assert_eq!(s.readable(), [false, true, false]);
        assert_eq!(s.feed(4, 1, Event::Barrier(3)), Some((3, 4)));
    }

    #[test]
    fn after_an_end_of_partition_the_remaining_channels_align_alone() {
        let mut s = Script::new(3, ExactlyOnce);
        assert_eq!(s.feed(0, 1, Event::End), None, "nothing pending: nothing to complete");
        assert_eq!(s.readable(), [true, false, true]);
        assert_eq!(s.feed(5, 0, Event::Barrier(1)), None);
        assert_eq!(s.feed(6, 2, Event::Barrier(1)), Some((1, 1)), "the ended channel is not waited for");
        // And with one channel left, its barrier aligns on its own.
        assert_eq!(s.feed(7, 2, Event::End), None);
        assert_eq!(s.feed(9, 0, Event::Barrier(2)), Some((2, 0)));
    }

    #[test]
    fn the_last_end_of_partition_drops_a_pending_alignment() {
        // At-least-once lets channel 0 end after its barrier; when channel
        // 1 then ends without one, the input is over and nothing is aligned.
        let mut s = Script::new(2, AtLeastOnce);
        assert_eq!(s.feed(0, 0, Event::Barrier(1)), None);
        assert_eq!(s.feed(1, 0, Event::End), None);
        assert_eq!(s.aligner.pending(), Some(CheckpointId(1)));
        assert!(!s.aligner.all_finished());
        assert_eq!(s.feed(2, 1, Event::End), None);
        assert!(s.aligner.all_finished());
        assert_eq!(s.aligner.pending(), None);
        assert_eq!(s.readable(), [false, false]);
    }

    #[test]
    fn a_repeated_end_of_partition_changes_nothing() {
        let mut s = Script::new(2, ExactlyOnce);
        assert_eq!(s.feed(0, 0, Event::End), None);
        assert_eq!(s.feed(1, 0, Event::End), None);
        assert!(!s.aligner.all_finished(), "channel 1 is still open");
        assert_eq!(s.feed(2, 1, Event::End), None);
        assert!(s.aligner.all_finished());
    }
}
