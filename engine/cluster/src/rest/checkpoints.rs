//! Checkpoint statistics and the exception history in the REST API, at
//! Flink's paths, from the [`JobView`](sluice::cluster::stats::JobView)
//! the job's master reports:
//!
//! | path | Flink's fields kept |
//! |---|---|
//! | `GET /jobs/{id}/checkpoints` | `counts` (`restored`, `total`, `in_progress`, `completed`, `failed`), `summary` (`state_size`, `end_to_end_duration`, `alignment_duration`: `min`/`max`/`avg`), `latest` (`completed`, `savepoint`, `failed`, `restored`), `history[]` |
//! | `GET /jobs/{id}/checkpoints/config` | `mode`, `interval`, `timeout`, `min_pause`, `max_concurrent`, `tolerable_failed_checkpoints`, `checkpoint_storage`; `retained` for `externalization` |
//! | `GET /jobs/{id}/checkpoints/details/{cid}` | `id`, `status`, `is_savepoint`, `trigger_timestamp`, `latest_ack_timestamp`, `state_size`, `end_to_end_duration`, `alignment_duration`, `num_subtasks`, `num_acknowledged_subtasks`, `external_path`, `failure_message`, `tasks` (per vertex) |
//! | `GET /jobs/{id}/checkpoints/details/{cid}/subtasks/{vid}` | `id`, `status`, `num_subtasks`, `num_acknowledged_subtasks`, `subtasks[]`: `index`, `status`, `ack_timestamp`, `end_to_end_duration`, `state_size`, `checkpoint` (`sync`, `async`), `alignment` (`duration`) |
//! | `GET /jobs/{id}/exceptions` | `root-exception`, `timestamp`, `exceptionHistory.entries[]`: `exceptionName`, `stacktrace`, `timestamp`, `taskName`, `taskManagerId`, `concurrentExceptions` |
//!
//! Left out: checkpoint types (unaligned, full/incremental per checkpoint),
//! processed and persisted in-flight data, and Java stack traces (the
//! `stacktrace` field holds the failure's chain of causes).

use super::vertices::view_of;
use super::{job_id, not_found, Reply};
use crate::jobmanager_process::JobManager;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use sluice::cluster::stats::{CheckpointRecord, CheckpointRecordStatus, ExceptionEntry, JobView};

fn status(s: CheckpointRecordStatus) -> &'static str {
    match s {
        CheckpointRecordStatus::InProgress => "IN_PROGRESS",
        CheckpointRecordStatus::Completed => "COMPLETED",
        CheckpointRecordStatus::Failed => "FAILED",
    }
}

/// One checkpoint as Flink's history lists it.
fn record_json(r: &CheckpointRecord) -> Value {
    json!({
        "id": r.id,
        "status": status(r.status),
        "is_savepoint": r.savepoint,
        "checkpoint_type": if r.savepoint { "SAVEPOINT" } else { "CHECKPOINT" },
        "trigger_timestamp": r.trigger_time,
        "latest_ack_timestamp": r.acks.iter().map(|a| a.ack_time).max().unwrap_or(-1),
        "state_size": r.state_size,
        "checkpointed_size": r.state_size,
        "end_to_end_duration": r.end_to_end_ms(),
        "alignment_duration": r.alignment_ms(),
        "num_subtasks": r.expected,
        "num_acknowledged_subtasks": r.acks.len(),
        "external_path": r.external_path,
        "failure_message": r.failure,
    })
}

fn min_max_avg(values: impl Iterator<Item = u64>) -> Value {
    let v: Vec<u64> = values.collect();
    if v.is_empty() {
        return json!({"min": 0, "max": 0, "avg": 0});
    }
    json!({
        "min": v.iter().min(),
        "max": v.iter().max(),
        "avg": v.iter().sum::<u64>() / v.len() as u64,
    })
}

/// `GET /jobs/{id}/checkpoints`.
pub(super) async fn overview(State(jm): State<JobManager>, Path(id): Path<String>) -> Reply {
    let (view, _) = view_of(&jm, job_id(&id)?).await?;
    let c = &view.checkpoints;
    let done = || c.history.iter().filter(|r| r.status == CheckpointRecordStatus::Completed);
    Ok(Json(json!({
        "counts": {
            "restored": c.restored,
            "total": c.completed + c.failed + c.in_progress,
            "in_progress": c.in_progress,
            "completed": c.completed,
            "failed": c.failed,
        },
        "summary": {
            "state_size": min_max_avg(done().map(|r| r.state_size)),
            "end_to_end_duration": min_max_avg(done().map(|r| r.end_to_end_ms())),
            "alignment_duration": min_max_avg(done().map(|r| r.alignment_ms())),
        },
        "latest": {
            "completed": c.latest_completed.as_ref().map(record_json),
            "savepoint": c.latest_savepoint.as_ref().map(record_json),
            "failed": c.latest_failed.as_ref().map(record_json),
            "restored": c.latest_restored.as_ref().map(|r| json!({
                "id": r.id,
                "restore_timestamp": r.restore_time,
                "is_savepoint": r.savepoint,
                "external_path": r.external_path,
            })),
        },
        "history": c.history.iter().map(record_json).collect::<Vec<_>>(),
    })))
}

/// `GET /jobs/{id}/checkpoints/config`.
pub(super) async fn config(State(jm): State<JobManager>, Path(id): Path<String>) -> Reply {
    let (view, _) = view_of(&jm, job_id(&id)?).await?;
    let s = view.checkpoints.settings.ok_or_else(|| not_found(format!("job {id} does not checkpoint")))?;
    Ok(Json(json!({
        "mode": s.mode,
        "interval": s.interval_ms,
        "timeout": s.timeout_ms,
        "min_pause": s.min_pause_ms,
        "max_concurrent": s.max_concurrent,
        "tolerable_failed_checkpoints": s.tolerable_failures,
        "checkpoint_storage": s.storage,
        "retained": s.retained,
    })))
}

fn find(view: &JobView, cid: &str) -> std::result::Result<CheckpointRecord, super::ApiError> {
    let n: u64 = cid.parse().map_err(|_| not_found(format!("'{cid}' is not a checkpoint id (a number)")))?;
    view.checkpoints
        .history
        .iter()
        .find(|r| r.id == n)
        .cloned()
        .ok_or_else(|| not_found(format!("checkpoint {n} is not among the recent ones")))
}

/// `GET /jobs/{id}/checkpoints/details/{cid}`.
pub(super) async fn details(State(jm): State<JobManager>, Path((id, cid)): Path<(String, String)>) -> Reply {
    let (view, _) = view_of(&jm, job_id(&id)?).await?;
    let r = find(&view, &cid)?;
    let mut v = record_json(&r);
    let tasks: serde_json::Map<String, Value> = view
        .vertices
        .iter()
        .map(|vertex| {
            let acks: Vec<_> = r.acks.iter().filter(|a| a.vertex == vertex.id).collect();
            let latest = acks.iter().map(|a| a.ack_time).max();
            (
                vertex.id.to_string(),
                json!({
                    "id": vertex.id.to_string(),
                    "name": vertex.name,
                    "status": status(r.status),
                    "latest_ack_timestamp": latest.unwrap_or(-1),
                    "state_size": acks.iter().map(|a| a.state_size).sum::<u64>(),
                    "end_to_end_duration": latest.map(|t| (t - r.trigger_time).max(0)).unwrap_or(-1),
                    "num_subtasks": vertex.parallelism,
                    "num_acknowledged_subtasks": acks.len(),
                }),
            )
        })
        .collect();
    v["tasks"] = Value::Object(tasks);
    Ok(Json(v))
}

/// `GET /jobs/{id}/checkpoints/details/{cid}/subtasks/{vid}`.
pub(super) async fn subtasks(
    State(jm): State<JobManager>,
    Path((id, cid, vid)): Path<(String, String, String)>,
) -> Reply {
    let (view, _) = view_of(&jm, job_id(&id)?).await?;
    let r = find(&view, &cid)?;
    let vertex = view
        .vertices
        .iter()
        .find(|v| v.id.to_string() == vid)
        .ok_or_else(|| not_found(format!("job {id} has no vertex {vid}")))?;
    let subtasks: Vec<Value> = (0..vertex.parallelism)
        .map(|i| match r.acks.iter().find(|a| a.vertex == vertex.id && a.subtask == i) {
            Some(a) => json!({
                "index": i,
                "status": "completed",
                "ack_timestamp": a.ack_time,
                "end_to_end_duration": (a.ack_time - r.trigger_time).max(0),
                "state_size": a.state_size,
                "checkpoint": { "sync": a.metrics.sync_ms, "async": a.metrics.async_ms },
                "alignment": { "duration": a.metrics.alignment_ms },
            }),
            None => json!({ "index": i, "status": "pending_or_failed" }),
        })
        .collect();
    Ok(Json(json!({
        "id": vertex.id.to_string(),
        "name": vertex.name,
        "status": status(r.status),
        "num_subtasks": vertex.parallelism,
        "num_acknowledged_subtasks": subtasks.iter().filter(|s| s["status"] == "completed").count(),
        "subtasks": subtasks,
    })))
}

fn exception_json(e: &ExceptionEntry) -> Value {
    json!({
        "exceptionName": e.cause.kind(),
        "stacktrace": e.cause.to_string(),
        "timestamp": e.timestamp,
        "taskName": e.task.as_ref().map(|t| match e.subtask {
            Some(s) => format!("{t} ({})", s + 1),
            None => t.clone(),
        }),
        "taskManagerId": e.taskmanager,
        "attempt": e.attempt,
        "failureLabels": {},
        "concurrentExceptions": [],
    })
}

/// `GET /jobs/{id}/exceptions`.
pub(super) async fn exceptions(State(jm): State<JobManager>, Path(id): Path<String>) -> Reply {
    let (view, _) = view_of(&jm, job_id(&id)?).await?;
    let root = view.exceptions.first();
    Ok(Json(json!({
        "root-exception": root.map(|e| e.cause.to_string()),
        "timestamp": root.map(|e| e.timestamp),
        "truncated": false,
        "exceptionHistory": {
            "entries": view.exceptions.iter().map(exception_json).collect::<Vec<_>>(),
            "truncated": false,
        },
    })))
}
