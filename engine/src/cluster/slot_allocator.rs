//! Which TaskManagers a job's slots come from.
//!
//! Both resource managers — the mini cluster's (one slot at a time, in a
//! job master) and the standalone cluster's (slot grants that become job
//! processes, in the JobManager process) — ask a [`SlotAllocator`] the same
//! question: given how many slots each TaskManager has free, where do `n`
//! come from? They differ only in what they do with the answer.

use crate::ids::TaskManagerId;

/// Chooses where slots come from. Implementations are pure: they see the
/// free slots per TaskManager and return a plan, or `None` when fewer than
/// `n` are free in total (the job then waits).
pub trait SlotAllocator: Send + Sync {
    /// Takes `n` slots out of `free` (TaskManager, free slots there), in the
    /// order given; returns how many to take from each TaskManager (only
    /// those with a count above zero), or `None` if fewer than `n` are free.
    fn allocate(&self, free: &[(TaskManagerId, u32)], n: u32) -> Option<Vec<(TaskManagerId, u32)>>;
}

/// Spreads a job over TaskManagers in turn: one slot from each TaskManager
/// with a free slot, then another round, until `n` are taken (Flink's
/// `cluster.evenly-spread-out-slots`). Spreading keeps a job's subtasks on
/// as many TaskManagers as possible, so losing one costs the fewest slots.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpreadOut;

impl SlotAllocator for SpreadOut {
    fn allocate(&self, free: &[(TaskManagerId, u32)], n: u32) -> Option<Vec<(TaskManagerId, u32)>> {
        let total: u64 = free.iter().map(|(_, f)| u64::from(*f)).sum();
        if total < u64::from(n) {
            return None;
        }
        let mut taken = vec![0u32; free.len()];
        let mut left = n;
        while left > 0 {
            for (i, (_, f)) in free.iter().enumerate() {
                if left > 0 && taken[i] < *f {
                    taken[i] += 1;
                    left -= 1;
                }
            }
        }
        Some(free.iter().zip(taken).filter(|(_, t)| *t > 0).map(|((id, _), t)| (id.clone(), t)).collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tm(s: &str) -> TaskManagerId {
        TaskManagerId(s.into())
    }

    #[test]
    fn spreads_in_turn_and_refuses_what_is_not_free() {
        let free = [(tm("a"), 2), (tm("b"), 0), (tm("c"), 3)];
        assert_eq!(SpreadOut.allocate(&free, 3).unwrap(), vec![(tm("a"), 2), (tm("c"), 1)]);
        assert_eq!(SpreadOut.allocate(&free, 5).unwrap(), vec![(tm("a"), 2), (tm("c"), 3)]);
        assert_eq!(SpreadOut.allocate(&free, 2).unwrap(), vec![(tm("a"), 1), (tm("c"), 1)]);
        assert_eq!(SpreadOut.allocate(&free, 6), None);
        assert_eq!(SpreadOut.allocate(&free, 0).unwrap(), vec![]);
    }
}
