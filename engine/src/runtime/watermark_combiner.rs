//! The event-time watermark of an input task, combined from its channels.
//!
//! Each input channel carries its upstream subtask's watermarks. The task's
//! own watermark is the minimum over the channels that are still *live*:
//! neither finished (ended) nor idle (their producer said it has nothing
//! to send for now). [`WatermarkCombiner`] keeps the per-channel state and
//! the watermark last handed to the chain, and says when to hand on a new
//! one.
//!
//! # Lifecycle
//!
//! One combiner lives as long as the task's run loop, created with the
//! number of input channels; every channel starts live at
//! [`Watermark::MIN`], and so does the combined watermark. The loop tells it
//! of every watermark ([`WatermarkCombiner::on_watermark`]), idle signal
//! ([`WatermarkCombiner::on_idle`]) and end of a channel
//! ([`WatermarkCombiner::on_end_of_partition`]), and of every batch of
//! records, which makes an idle channel live again
//! ([`WatermarkCombiner::mark_active`]; a watermark does that too).
//!
//! The rules:
//!
//! * A channel's watermark only grows: a lower one than it had is ignored.
//! * The combined watermark is the minimum over the live channels. If none
//!   is live because all of them have ended, it is [`Watermark::MAX`]; if
//!   none is live but some are idle, nothing advances.
//! * The combined watermark only grows: each call returns a watermark for
//!   the chain only when the combined one rose above the one handed on
//!   last. A channel that comes back from idle behind the others therefore
//!   does not move it back; it holds it until that channel catches up.
//! * When an idle signal leaves every channel idle or ended, the chain is to
//!   be told that its input is idle ([`IdleOutcome::AllIdle`]) instead.
//!
//! # Purity
//!
//! The combiner is plain bookkeeping: it reads no channel and calls no
//! operator; the caller hands its answers to the chain.

use crate::runtime::element::Watermark;

/// What the chain is to be told after an idle signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleOutcome {
    /// Every channel is idle or has ended: the input is idle.
    AllIdle,
    /// Leaving the idle channel out, the combined watermark rose to this.
    Advanced(Watermark),
    /// Nothing to tell.
    Unchanged,
}

/// Combines the watermarks of one task's input channels (see the [module
/// documentation](self)).
#[derive(Debug)]
pub(crate) struct WatermarkCombiner {
    /// Per channel: the highest watermark it delivered.
    watermarks: Vec<Watermark>,
    /// Per channel: it is idle.
    idle: Vec<bool>,
    /// Per channel: it ended.
    finished: Vec<bool>,
    /// The combined watermark last handed on.
    current: Watermark,
}

impl WatermarkCombiner {
    /// A combiner for `channels` live channels, all at [`Watermark::MIN`].
    pub(crate) fn new(channels: usize) -> Self {
        WatermarkCombiner {
            watermarks: vec![Watermark::MIN; channels],
            idle: vec![false; channels],
            finished: vec![false; channels],
            current: Watermark::MIN,
        }
    }

    /// The combined watermark last handed on ([`Watermark::MIN`] before the
    /// first). The task needs only the changes; the tests look at it.
    #[cfg(test)]
    fn current(&self) -> Watermark {
        self.current
    }

    /// Records arrived on `channel`: if it was idle, it is live again. The
    /// combined watermark cannot rise from this, so there is nothing to
    /// return.
    #[inline]
    pub(crate) fn mark_active(&mut self, channel: usize) {
        if let Some(idle) = self.idle.get_mut(channel) {
            *idle = false;
        }
    }

    /// `watermark` arrived on `channel` (which is live again if it was
    /// idle). Returns the new combined watermark if it rose.
    pub(crate) fn on_watermark(&mut self, channel: usize, watermark: Watermark) -> Option<Watermark> {
        self.mark_active(channel);
        if let Some(w) = self.watermarks.get_mut(channel) {
            *w = (*w).max(watermark);
        }
        self.advance()
    }

    /// `channel` became idle: it no longer holds the combined watermark
    /// back. Returns [`IdleOutcome::AllIdle`] if now every channel is idle
    /// or ended, otherwise the combined watermark if it rose.
    pub(crate) fn on_idle(&mut self, channel: usize) -> IdleOutcome {
        if let Some(idle) = self.idle.get_mut(channel) {
            *idle = true;
        }
        if self.idle.iter().zip(&self.finished).all(|(idle, finished)| *idle || *finished) {
            return IdleOutcome::AllIdle;
        }
        match self.advance() {
            Some(w) => IdleOutcome::Advanced(w),
            None => IdleOutcome::Unchanged,
        }
    }

    /// `channel` ended: it no longer holds the combined watermark back.
    /// Returns the combined watermark if it rose ([`Watermark::MAX`] once
    /// every channel has ended).
    pub(crate) fn on_end_of_partition(&mut self, channel: usize) -> Option<Watermark> {
        if let Some(finished) = self.finished.get_mut(channel) {
            *finished = true;
        }
        self.advance()
    }

    /// Hands on the combined watermark if it rose.
    fn advance(&mut self) -> Option<Watermark> {
        let min = self.combined();
        if min > self.current {
            self.current = min;
            return Some(min);
        }
        None
    }

    /// The minimum watermark over the channels that are neither finished
    /// nor idle; if all are idle or finished, [`Watermark::MIN`] while some
    /// are idle (nothing advances), [`Watermark::MAX`] once all finished.
    fn combined(&self) -> Watermark {
        let live = self.watermarks.iter().zip(self.finished.iter().zip(&self.idle)).filter(|(_, (f, i))| !**f && !**i);
        match live.map(|(w, _)| *w).min() {
            Some(w) => w,
            None if self.idle.iter().zip(&self.finished).any(|(i, f)| *i && !*f) => Watermark::MIN,
            None => Watermark::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wm(ms: i64) -> Watermark {
        Watermark(ms)
    }

    #[test]
    fn starts_at_min() {
        let c = WatermarkCombiner::new(2);
        assert_eq!(c.current(), Watermark::MIN);
    }

    #[test]
    fn a_single_channel_passes_its_watermarks_on() {
        let mut c = WatermarkCombiner::new(1);
        assert_eq!(c.on_watermark(0, wm(5)), Some(wm(5)));
        assert_eq!(c.on_watermark(0, wm(5)), None, "the same watermark again is not news");
        assert_eq!(c.on_watermark(0, wm(9)), Some(wm(9)));
        assert_eq!(c.current(), wm(9));
    }

    #[test]
    fn the_combined_watermark_is_the_minimum_over_the_channels() {
        let mut c = WatermarkCombiner::new(3);
        assert_eq!(c.on_watermark(0, wm(10)), None, "channels 1 and 2 are still at MIN");
        assert_eq!(c.on_watermark(1, wm(30)), None);
        assert_eq!(c.on_watermark(2, wm(20)), Some(wm(10)));
        assert_eq!(c.on_watermark(0, wm(40)), Some(wm(20)));
        assert_eq!(c.on_watermark(2, wm(25)), Some(wm(25)));
        assert_eq!(c.on_watermark(2, wm(50)), Some(wm(30)));
        assert_eq!(c.current(), wm(30));
    }

    #[test]
    fn a_lower_watermark_on_a_channel_does_not_move_it_back() {
        let mut c = WatermarkCombiner::new(2);
        assert_eq!(c.on_watermark(0, wm(20)), None);
        assert_eq!(c.on_watermark(0, wm(5)), None, "channel 0 stays at 20");
        assert_eq!(c.on_watermark(1, wm(15)), Some(wm(15)), "min(20, 15), not min(5, 15)");
        assert_eq!(c.on_watermark(1, wm(30)), Some(wm(20)));
    }

    #[test]
    fn the_combined_watermark_never_goes_back() {
        let mut c = WatermarkCombiner::new(2);
        assert_eq!(c.on_watermark(0, wm(10)), None);
        assert_eq!(c.on_idle(1), IdleOutcome::Advanced(wm(10)));
        // Channel 1 comes back from idle behind: the output stays at 10
        // until channel 1 passes it.
        assert_eq!(c.on_watermark(1, wm(3)), None);
        assert_eq!(c.current(), wm(10));
        assert_eq!(c.on_watermark(0, wm(50)), None, "channel 1 at 3 holds it back");
        assert_eq!(c.on_watermark(1, wm(8)), None);
        assert_eq!(c.on_watermark(1, wm(12)), Some(wm(12)));
    }

    #[test]
    fn an_idle_channel_is_left_out() {
        let mut c = WatermarkCombiner::new(3);
        assert_eq!(c.on_watermark(0, wm(10)), None);
        assert_eq!(c.on_watermark(1, wm(20)), None);
        assert_eq!(c.on_idle(2), IdleOutcome::Advanced(wm(10)), "channel 2 at MIN is left out");
        assert_eq!(c.on_watermark(0, wm(30)), Some(wm(20)));
    }

    #[test]
    fn an_idle_signal_that_leaves_the_minimum_unchanged() {
        let mut c = WatermarkCombiner::new(3);
        assert_eq!(c.on_watermark(0, wm(10)), None);
        assert_eq!(c.on_idle(1), IdleOutcome::Unchanged, "channel 2 is still at MIN");
    }

    #[test]
    fn all_channels_idle_is_an_idle_input() {
        let mut c = WatermarkCombiner::new(2);
        assert_eq!(c.on_watermark(0, wm(10)), None);
        assert_eq!(c.on_idle(0), IdleOutcome::Unchanged, "channel 1 is live at MIN");
        assert_eq!(c.on_idle(1), IdleOutcome::AllIdle);
        assert_eq!(c.current(), Watermark::MIN, "going idle advances nothing");
    }

    #[test]
    fn idle_and_ended_channels_together_are_an_idle_input() {
        let mut c = WatermarkCombiner::new(2);
        assert_eq!(c.on_end_of_partition(0), None, "channel 1 is live at MIN");
        assert_eq!(c.on_idle(1), IdleOutcome::AllIdle);
    }

    #[test]
    fn records_make_an_idle_channel_live_again() {
        let mut c = WatermarkCombiner::new(2);
        assert_eq!(c.on_watermark(0, wm(10)), None);
        assert_eq!(c.on_idle(1), IdleOutcome::Advanced(wm(10)));
        c.mark_active(1);
        assert_eq!(c.on_watermark(0, wm(20)), None, "channel 1, live again at MIN, holds it back");
        assert_eq!(c.on_watermark(1, wm(15)), Some(wm(15)));
    }

    #[test]
    fn a_watermark_makes_an_idle_channel_live_again() {
        let mut c = WatermarkCombiner::new(2);
        assert_eq!(c.on_watermark(0, wm(10)), None);
        assert_eq!(c.on_idle(1), IdleOutcome::Advanced(wm(10)));
        assert_eq!(c.on_watermark(1, wm(15)), None, "min(10, 15)");
        assert_eq!(c.on_watermark(0, wm(20)), Some(wm(15)), "channel 1 at 15 counts again");
    }

    #[test]
    fn marking_a_live_channel_active_changes_nothing() {
        let mut c = WatermarkCombiner::new(2);
        assert_eq!(c.on_watermark(0, wm(10)), None);
        c.mark_active(1);
        assert_eq!(c.on_idle(1), IdleOutcome::Advanced(wm(10)));
    }

    #[test]
    fn an_ended_channel_is_left_out() {
        let mut c = WatermarkCombiner::new(3);
        assert_eq!(c.on_watermark(0, wm(10)), None);
        assert_eq!(c.on_watermark(1, wm(20)), None);
        assert_eq!(c.on_end_of_partition(2), Some(wm(10)));
        assert_eq!(c.on_watermark(0, wm(30)), Some(wm(20)));
        assert_eq!(c.on_end_of_partition(1), Some(wm(30)));
    }

    #[test]
    fn all_channels_ended_is_max() {
        let mut c = WatermarkCombiner::new(2);
        assert_eq!(c.on_watermark(1, wm(10)), None);
        assert_eq!(c.on_end_of_partition(0), Some(wm(10)));
        assert_eq!(c.on_end_of_partition(1), Some(Watermark::MAX));
        assert_eq!(c.current(), Watermark::MAX);
    }

    #[test]
    fn ended_and_idle_channels_advance_nothing() {
        // The only channel left is idle: nothing advances (not MAX).
        let mut c = WatermarkCombiner::new(2);
        assert_eq!(c.on_watermark(0, wm(10)), None);
        assert_eq!(c.on_idle(0), IdleOutcome::Unchanged);
        assert_eq!(c.on_watermark(1, wm(20)), Some(wm(20)));
        assert_eq!(c.on_end_of_partition(1), None);
        assert_eq!(c.current(), wm(20));
    }
}
