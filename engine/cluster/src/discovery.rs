//! Prometheus service discovery for a cluster: every process that serves
//! `/metrics`, as the JobManager knows it, in the format of Prometheus'
//! `http_sd_configs` (served by the REST API at `/metrics/targets`).
//!
//! Who serves what: the JobManager its cluster gauges (registered
//! TaskManagers, slots, running jobs) on its REST endpoint; each TaskManager
//! on `metrics.reporter.prom.port` or an ephemeral port; each job's driver
//! its job and checkpoint metrics, and each task process its operator and
//! connector metrics, on ephemeral ports they report when they start (see
//! [`sluice::cluster::remote::job_process`]). A job process leaves the list when it ends.
//!
//! Labels carry a `sluice_` prefix so that they do not collide with the
//! `job_id` label of the job metrics themselves (Prometheus would rename the
//! scraped one to `exported_job_id`).

use crate::jobmanager_process::Cluster;
use serde_json::{json, Value};
use sluice::ids::JobId;

/// A process Prometheus can scrape, with the labels that say what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsTarget {
    /// `host:port` of its `/metrics`.
    pub address: String,
    /// `jobmanager`, `taskmanager`, `driver` or `task`.
    pub role: &'static str,
    /// The job, for job processes.
    pub job: Option<JobId>,
    /// The TaskManager, for TaskManagers and task processes.
    pub task_manager: Option<String>,
    /// The process's sequence number, for task processes.
    pub process: Option<u32>,
}

impl Cluster {
    /// Every process serving `/metrics`: the JobManager, the TaskManagers
    /// that serve theirs, and the live job processes that reported theirs.
    pub fn metrics_targets(&self) -> Vec<MetricsTarget> {
        let mut out = Vec::new();
        let target = |address: &str, role| MetricsTarget {
            address: address.to_string(),
            role,
            job: None,
            task_manager: None,
            process: None,
        };
        if let Some(a) = &self.rest_address {
            out.push(target(a, "jobmanager"));
        }
        for job in self.jobs.values().filter(|j| !j.status.is_terminal()) {
            if let Some(a) = &job.driver_metrics {
                out.push(MetricsTarget { job: Some(job.id), ..target(a, "driver") });
            }
        }
        for (id, tm) in &self.task_managers {
            if let Some(a) = &tm.metrics_address {
                out.push(MetricsTarget { task_manager: Some(id.clone()), ..target(a, "taskmanager") });
            }
            for ((job, seq), p) in &tm.processes {
                if let Some(a) = &p.metrics_address {
                    out.push(MetricsTarget {
                        job: Some(*job),
                        task_manager: Some(id.clone()),
                        process: Some(*seq),
                        ..target(a, "task")
                    });
                }
            }
        }
        out
    }
}

/// The targets as a Prometheus HTTP service-discovery document: a list of
/// `{"targets": ["host:port"], "labels": {...}}`.
pub fn http_sd(targets: &[MetricsTarget]) -> Value {
    Value::Array(
        targets
            .iter()
            .map(|t| {
                let mut labels = serde_json::Map::new();
                labels.insert("sluice_role".into(), json!(t.role));
                if let Some(j) = t.job {
                    labels.insert("sluice_job_id".into(), json!(j.to_string()));
                }
                if let Some(tm) = &t.task_manager {
                    labels.insert("sluice_taskmanager".into(), json!(tm));
                }
                if let Some(p) = t.process {
                    labels.insert("sluice_process".into(), json!(p.to_string()));
                }
                json!({ "targets": [t.address], "labels": labels })
            })
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_document_has_prometheus_http_sd_shape() {
        let job = JobId::generate();
        let doc = http_sd(&[
            MetricsTarget {
                address: "127.0.0.1:8081".into(),
                role: "jobmanager",
                job: None,
                task_manager: None,
                process: None,
            },
            MetricsTarget {
                address: "127.0.0.1:40001".into(),
                role: "task",
                job: Some(job),
                task_manager: Some("tm-a".into()),
                process: Some(2),
            },
        ]);
        assert_eq!(doc[0], json!({"targets": ["127.0.0.1:8081"], "labels": {"sluice_role": "jobmanager"}}));
        assert_eq!(
            doc[1],
            json!({"targets": ["127.0.0.1:40001"], "labels": {
                "sluice_role": "task", "sluice_job_id": job.to_string(), "sluice_taskmanager": "tm-a", "sluice_process": "2"
            }})
        );
        // Label values must be strings for Prometheus.
        for entry in doc.as_array().unwrap() {
            assert!(entry["labels"].as_object().unwrap().values().all(Value::is_string));
        }
    }
}
