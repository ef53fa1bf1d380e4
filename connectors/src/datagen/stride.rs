//! A subtask's share of a numbered sequence of records, and its place in it.

use sluice::RuntimeContext;

/// Subtask *i* of *p* takes the numbers *i*, *i + p*, *i + 2p*, ...; the
/// next one is what a checkpoint saves, so a restored subtask continues
/// the same sequence (at the same parallelism).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stride {
    next: u64,
    step: u64,
    restored: bool,
}

impl Default for Stride {
    fn default() -> Self {
        Stride { next: 0, step: 1, restored: false }
    }
}

impl Stride {
    /// Takes this subtask's place (`ctx`), unless a restored one is kept.
    pub fn open(&mut self, ctx: &RuntimeContext) {
        if !self.restored {
            self.next = u64::from(ctx.subtask_index);
        }
        self.step = u64::from(ctx.parallelism.max(1));
    }

    /// The next number of this subtask.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The distance between this subtask's numbers (the parallelism).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Moves past the current number.
    pub fn advance(&mut self) {
        self.next += self.step;
    }

    /// Whether the sequence of `count` numbers (none: endless) is done.
    pub fn done(&self, count: Option<u64>) -> bool {
        count.is_some_and(|c| self.next >= c)
    }

    /// Continues from a checkpointed `next`.
    pub fn restore(&mut self, next: u64) {
        self.next = next;
        self.restored = true;
    }
}
