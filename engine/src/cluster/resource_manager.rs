//! The resource manager: which TaskManagers exist and which of their slots
//! are allocated to which job.
//!
//! With slot sharing (the default), one slot holds one subtask of every
//! vertex of a job, so a job needs as many slots as its largest parallelism;
//! subtask *i* of every vertex goes to the job's *i*-th slot.

use super::protocol::{JobId, Placement, SlotId, SlotLocation, TaskManagerId, ToTaskManager};
use crate::metrics;
use crossbeam_channel::Sender;
use std::collections::BTreeMap;

struct TaskManagerEntry {
    gateway: Sender<ToTaskManager>,
    data_address: Option<String>,
    slots: Vec<Option<JobId>>,
}

/// Slot bookkeeping of the cluster.
#[derive(Default)]
pub(crate) struct ResourceManager {
    task_managers: BTreeMap<TaskManagerId, TaskManagerEntry>,
}

impl ResourceManager {
    pub(crate) fn register(
        &mut self,
        id: TaskManagerId,
        slots: u32,
        gateway: Sender<ToTaskManager>,
        data_address: Option<String>,
    ) {
        self.task_managers.insert(id, TaskManagerEntry { gateway, data_address, slots: vec![None; slots as usize] });
        self.publish();
    }

    /// Forgets a TaskManager that went away; `true` if it was known.
    pub(crate) fn unregister(&mut self, id: &TaskManagerId) -> bool {
        let known = self.task_managers.remove(id).is_some();
        self.publish();
        known
    }

    /// Whether every slot in `slots` still exists.
    pub(crate) fn all_present(&self, slots: &[SlotId]) -> bool {
        slots
            .iter()
            .all(|s| self.task_managers.get(&s.task_manager).is_some_and(|t| (s.index as usize) < t.slots.len()))
    }

    /// Where `slots` live, in order.
    pub(crate) fn placement(&self, slots: &[SlotId]) -> Placement {
        Placement {
            slots: slots
                .iter()
                .map(|s| SlotLocation {
                    task_manager: s.task_manager.clone(),
                    data_address: self.task_managers.get(&s.task_manager).and_then(|t| t.data_address.clone()),
                })
                .collect(),
        }
    }

    pub(crate) fn total_slots(&self) -> u32 {
        self.task_managers.values().map(|t| t.slots.len() as u32).sum()
    }

    pub(crate) fn free_slots(&self) -> u32 {
        self.task_managers.values().map(|t| t.slots.iter().filter(|s| s.is_none()).count() as u32).sum()
    }

    /// Allocates `n` slots to `job`, spreading over TaskManagers in turn;
    /// `None` if fewer are free.
    pub(crate) fn allocate(&mut self, job: JobId, n: u32) -> Option<Vec<SlotId>> {
        if self.free_slots() < n {
            return None;
        }
        let mut out = Vec::with_capacity(n as usize);
        'outer: loop {
            let mut progressed = false;
            for (id, tm) in self.task_managers.iter_mut() {
                if out.len() == n as usize {
                    break 'outer;
                }
                if let Some(i) = tm.slots.iter().position(Option::is_none) {
                    tm.slots[i] = Some(job);
                    out.push(SlotId { task_manager: id.clone(), index: i as u32 });
                    progressed = true;
                }
            }
            if out.len() == n as usize || !progressed {
                break;
            }
        }
        self.publish();
        Some(out)
    }

    pub(crate) fn release(&mut self, job: JobId) {
        for tm in self.task_managers.values_mut() {
            for s in tm.slots.iter_mut().filter(|s| **s == Some(job)) {
                *s = None;
            }
        }
        self.publish();
    }

    pub(crate) fn gateway(&self, tm: &TaskManagerId) -> Option<&Sender<ToTaskManager>> {
        self.task_managers.get(tm).map(|t| &t.gateway)
    }

    pub(crate) fn gateways(&self) -> impl Iterator<Item = &Sender<ToTaskManager>> {
        self.task_managers.values().map(|t| &t.gateway)
    }

    fn publish(&self) {
        let m = metrics::global();
        m.slots_total.set(i64::from(self.total_slots()));
        m.slots_available.set(i64::from(self.free_slots()));
    }
}
