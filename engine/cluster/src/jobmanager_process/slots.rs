//! Slot grants: every job whose driver has announced it gets the slots it
//! lacks, all at once when enough are free (spread over the TaskManagers by
//! the shared [`SlotAllocator`]); a grant on a TaskManager becomes one job
//! process there. A job that waits longer than `slot.request.timeout` is
//! failed through its driver, naming what it needs and what exists.

use super::cluster::JobProcessEntry;
use super::Cluster;
use sluice::cluster::remote::job_process::{CONF_VAR, DRIVER_VAR, JOB_SECRET_VAR};
use sluice::cluster::remote::messages::{JobProcessSpec, ToDriver, ToTaskManagerProcess};
use sluice::cluster::slot_allocator::{SlotAllocator, SpreadOut};
use sluice::error::FailureCause;
use sluice::ids::{JobId, TaskManagerId};
use std::time::Instant;

impl Cluster {
    /// Slots registered in total.
    pub(crate) fn total_slots(&self) -> u32 {
        self.task_managers.values().map(|t| t.slots).sum()
    }

    /// Slots not granted to a job.
    pub(crate) fn free_slots(&self) -> u32 {
        self.task_managers.values().map(|t| t.slots.saturating_sub(t.used())).sum()
    }

    /// Gives every job that lacks slots what it lacks, all at once when
    /// enough are free; fails jobs that waited longer than the timeout.
    pub(super) fn grant_slots(&mut self, now: Instant) {
        let total = self.total_slots();
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in ids {
            let Some(job) = self.jobs.get(&id) else { continue };
            if job.status.is_terminal() || job.driver_address.is_none() {
                continue;
            }
            let held: u32 = self
                .task_managers
                .values()
                .flat_map(|t| t.processes.iter())
                .filter(|((j, _), _)| *j == id)
                .map(|(_, p)| p.slots)
                .sum();
            let lacking = job.required_slots.saturating_sub(held);
            if lacking == 0 {
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.waiting_since = None;
                }
                continue;
            }
            if self.free_slots() < lacking {
                let Some(job) = self.jobs.get_mut(&id) else { continue };
                let since = *job.waiting_since.get_or_insert(now);
                let waited = now.duration_since(since);
                if waited >= self.settings.slot_timeout && !job.timeout_sent {
                    job.timeout_sent = true;
                    let cause = FailureCause::NotEnoughSlots {
                        required: job.required_slots,
                        available: total,
                        waited_ms: waited.as_millis() as u64,
                    };
                    if let Some(link) = &job.driver {
                        let _ = link.send(&ToDriver::FailJob(cause));
                    }
                }
                continue;
            }
            let free: Vec<(TaskManagerId, u32)> = self
                .task_managers
                .iter()
                .map(|(id, tm)| (TaskManagerId(id.clone()), tm.slots.saturating_sub(tm.used())))
                .collect();
            let Some(grant) = SpreadOut.allocate(&free, lacking) else { continue };
            for (tm_id, slots) in grant {
                self.start_job_process(id, &tm_id.0, slots);
            }
        }
    }

    /// Asks TaskManager `tm_id` to start a process of job `id` on `slots`
    /// of its slots.
    fn start_job_process(&mut self, id: JobId, tm_id: &str, slots: u32) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let Some(driver) = job.driver_address.clone() else { return };
        let seq = job.next_seq;
        job.next_seq += 1;
        job.waiting_since = None;
        let spec = JobProcessSpec {
            job: id,
            seq,
            artifact_id: job.artifact.sha256.clone(),
            artifact_name: job.artifact.name.clone(),
            artifact_size: job.artifact.size,
            args: job.args.clone(),
            env: vec![
                (DRIVER_VAR.into(), driver),
                (CONF_VAR.into(), job.conf_lines.clone()),
                (JOB_SECRET_VAR.into(), job.secret.to_hex()),
            ],
            slots,
        };
        let Some(tm) = self.task_managers.get_mut(tm_id) else { return };
        tm.processes.insert((id, seq), JobProcessEntry { slots, metrics_address: None });
        tracing::info!("job {id}: {slots} slots on {tm_id} (process {seq})");
        if let Err(e) = tm.link.send(&ToTaskManagerProcess::StartJobProcess(Box::new(spec))) {
            tracing::warn!("cannot reach TaskManager {tm_id}: {e}");
            tm.processes.remove(&(id, seq));
        }
    }
}
