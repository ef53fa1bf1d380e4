//! The resource manager: which TaskManagers exist and which of their slots
//! are allocated to which job.
//!
//! With slot sharing (the default), one slot holds one subtask of every
//! vertex of a job, so a job needs as many slots as its largest parallelism;
//! subtask *i* of every vertex goes to the job's *i*-th slot.

use super::gateway::Gateway;
use super::protocol::{TaskManagerRegistration, ToTaskManager};
use super::slot_allocator::{SlotAllocator, SpreadOut};
use crate::ids::{JobId, Placement, SlotId, SlotLocation, TaskManagerId};
use crate::metrics;
use std::collections::BTreeMap;

struct TaskManagerEntry {
    gateway: Gateway<ToTaskManager>,
    data_address: Option<String>,
    slots: Vec<Option<JobId>>,
}

/// Slot bookkeeping of the cluster.
pub(crate) struct ResourceManager {
    task_managers: BTreeMap<TaskManagerId, TaskManagerEntry>,
    allocator: Box<dyn SlotAllocator>,
}

impl Default for ResourceManager {
    fn default() -> Self {
        ResourceManager { task_managers: BTreeMap::new(), allocator: Box::new(SpreadOut) }
    }
}

impl ResourceManager {
    pub(crate) fn register(&mut self, registration: TaskManagerRegistration, gateway: Gateway<ToTaskManager>) {
        let TaskManagerRegistration { id, slots, data_address } = registration;
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

    /// Allocates `n` slots to `job`, where the [`SlotAllocator`] says;
    /// `None` if fewer are free.
    pub(crate) fn allocate(&mut self, job: JobId, n: u32) -> Option<Vec<SlotId>> {
        let free: Vec<(TaskManagerId, u32)> = self
            .task_managers
            .iter()
            .map(|(id, tm)| (id.clone(), tm.slots.iter().filter(|s| s.is_none()).count() as u32))
            .collect();
        let plan = self.allocator.allocate(&free, n)?;
        // The plan takes counts per TaskManager; slot i of the job is taken
        // in turn across them, as the allocator spread them.
        let mut per_tm: Vec<(TaskManagerId, Vec<u32>)> = Vec::with_capacity(plan.len());
        for (id, count) in plan {
            let Some(tm) = self.task_managers.get_mut(&id) else { continue };
            let mut indices = Vec::with_capacity(count as usize);
            for (i, slot) in tm.slots.iter_mut().enumerate().filter(|(_, s)| s.is_none()).take(count as usize) {
                *slot = Some(job);
                indices.push(i as u32);
            }
            per_tm.push((id, indices));
        }
        let mut out = Vec::with_capacity(n as usize);
        let mut round = 0;
        while out.len() < n as usize {
            let before = out.len();
            for (id, indices) in &per_tm {
                if let Some(i) = indices.get(round) {
                    out.push(SlotId { task_manager: id.clone(), index: *i });
                }
            }
            if out.len() == before {
                break;
            }
            round += 1;
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

    pub(crate) fn gateway(&self, tm: &TaskManagerId) -> Option<&Gateway<ToTaskManager>> {
        self.task_managers.get(tm).map(|t| &t.gateway)
    }

    pub(crate) fn gateways(&self) -> impl Iterator<Item = &Gateway<ToTaskManager>> {
        self.task_managers.values().map(|t| &t.gateway)
    }

    fn publish(&self) {
        let m = metrics::global();
        m.slots_total.set(i64::from(self.total_slots()));
        m.slots_available.set(i64::from(self.free_slots()));
    }
}
