//! The election loop of a highly available JobManager: campaign, lead
//! while the lease is renewed, step down before it can expire, campaign
//! again.
//!
//! Stepping down happens when the last confirmed renewal is older than the
//! lease minus a quarter of it: etcd counts the lease from when it
//! received that renewal, never before it was sent, so the JobManager has
//! stopped its job masters (and with them every checkpoint completion)
//! before another JobManager can be elected.

use super::{HighAvailabilityServices, LeaderInfo, Term};
use crate::jobmanager_process::JobManager;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the leader checks its lease.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Starts the election loop of the JobManager `jm`, published as `me`.
pub fn spawn(services: Arc<dyn HighAvailabilityServices>, me: LeaderInfo, jm: JobManager) -> std::io::Result<()> {
    std::thread::Builder::new().name("ha-leadership".into()).spawn(move || run(services.as_ref(), &me, &jm))?;
    Ok(())
}

fn run(services: &dyn HighAvailabilityServices, me: &LeaderInfo, jm: &JobManager) {
    let ttl = services.lease_ttl();
    let margin = ttl / 4;
    loop {
        let term = match services.campaign(me) {
            Ok(term) => term,
            Err(e) => {
                tracing::warn!("JobManager {} cannot campaign for leadership: {e}; retrying", me.id);
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        eprintln!("JobManager {} now leads cluster '{}'", me.id, services.cluster_id());
        let t = term.clone();
        if jm.call(move |c| c.become_leader(t)).is_err() {
            services.resign(&term);
            return; // the JobManager has stopped
        }
        watch(services, &term, ttl - margin);
        eprintln!("JobManager {} lost the leadership of cluster '{}'; stepping down", me.id, services.cluster_id());
        if jm.call(|c| c.step_down()).is_err() {
            return;
        }
        services.resign(&term);
    }
}

/// Returns once the last confirmed renewal of `term`'s lease is older than
/// `hold` (or the lease is gone).
fn watch(services: &dyn HighAvailabilityServices, term: &Term, hold: Duration) {
    loop {
        match services.renewed_at(term) {
            Some(at) if Instant::now() < at + hold => std::thread::sleep(CHECK_EVERY),
            _ => return,
        }
    }
}
