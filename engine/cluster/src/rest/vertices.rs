//! The job graph views of the REST API, at Flink's paths, from the
//! [`JobView`] the job's master reports (about once a second):
//!
//! | path | what | Flink's fields kept |
//! |---|---|---|
//! | `GET /jobs/{id}` (extends the job summary) | vertices and the plan | `vertices[]`: `id`, `name`, `parallelism`, `status`, `tasks` (counts by state), `metrics` (`read-records`, `write-records`); `plan.nodes[]`: `id`, `parallelism`, `operator`, `description`, `inputs[]` (`num`, `id`, `ship_strategy`, `exchange`) |
//! | `GET /jobs/{id}/vertices/{vid}` | a vertex's subtasks | `id`, `name`, `parallelism`, `now`, `subtasks[]`: `subtask`, `status`, `attempt`, `host`, `taskmanager-id`, `metrics` |
//! | `GET /jobs/{id}/vertices/{vid}/subtasks/metrics?get=a,b` | aggregated subtask metrics | `[{id, min, max, avg, sum}]`; without `get`, the list of `{id}` |
//! | `GET /jobs/{id}/vertices/{vid}/watermarks` | input watermarks | `[{id: "<subtask>.currentInputWatermark", value}]` |
//! | `GET /jobs/{id}/vertices/{vid}/backpressure` | back pressure | `status`, `backpressureLevel`, `end-timestamp`, `subtasks[]`: `subtask`, `backpressureLevel`, `ratio`, `idleRatio`, `busyRatio` |
//!
//! Left out: byte counts (`read-bytes`, `write-bytes`: in-process channels
//! do not count bytes), per-subtask start times and durations, and the
//! accumulators.

use super::{ask, job_id, not_found, ApiError, Reply};
use crate::jobmanager_process::{JobEntry, JobManager};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Value};
use sluice::cluster::protocol::ExecutionState;
use sluice::cluster::stats::{JobView, SubtaskRates, VertexView};
use sluice::ids::JobId;
use sluice_checkpoint::clock::now_ms;
use std::collections::{BTreeMap, HashMap};

/// The metrics `GET .../subtasks/metrics` knows (Flink's names).
pub(super) const SUBTASK_METRICS: [&str; 8] = [
    "numRecordsIn",
    "numRecordsOut",
    "numRecordsInPerSecond",
    "numRecordsOutPerSecond",
    "busyTimeMsPerSecond",
    "backPressuredTimeMsPerSecond",
    "idleTimeMsPerSecond",
    "currentInputWatermark",
];

fn metric(r: &SubtaskRates, name: &str) -> Option<f64> {
    Some(match name {
        "numRecordsIn" => r.records_in as f64,
        "numRecordsOut" => r.records_out as f64,
        "numRecordsInPerSecond" => r.records_in_per_second,
        "numRecordsOutPerSecond" => r.records_out_per_second,
        "busyTimeMsPerSecond" => r.busy_ms_per_second as f64,
        "backPressuredTimeMsPerSecond" => r.back_pressured_ms_per_second as f64,
        "idleTimeMsPerSecond" => r.idle_ms_per_second as f64,
        "currentInputWatermark" => r.input_watermark? as f64,
        _ => return None,
    })
}

/// Flink's names of execution states.
pub(super) fn state_name(s: ExecutionState) -> &'static str {
    match s {
        ExecutionState::Deploying => "DEPLOYING",
        ExecutionState::Running => "RUNNING",
        ExecutionState::Finished => "FINISHED",
        ExecutionState::Canceled => "CANCELED",
        ExecutionState::Failed => "FAILED",
    }
}

/// A vertex's state: the "largest" of its subtasks' (Flink's aggregation).
fn vertex_state(v: &VertexView) -> &'static str {
    let states: Vec<ExecutionState> = v.subtasks.iter().map(|s| s.state).collect();
    let any = |s| states.contains(&s);
    if states.is_empty() {
        "CREATED"
    } else if any(ExecutionState::Failed) {
        "FAILED"
    } else if any(ExecutionState::Canceled) {
        "CANCELED"
    } else if any(ExecutionState::Deploying) {
        "DEPLOYING"
    } else if any(ExecutionState::Running) {
        "RUNNING"
    } else {
        "FINISHED"
    }
}

/// The back pressure level of a ratio (Flink's thresholds: above 10 %
/// low, above 50 % high).
fn level(ratio: f64) -> &'static str {
    if ratio > 0.5 {
        "high"
    } else if ratio > 0.1 {
        "low"
    } else {
        "ok"
    }
}

/// Sums of a vertex's subtask totals.
fn vertex_metrics(v: &VertexView) -> Value {
    let rates = || v.subtasks.iter().filter_map(|s| s.rates);
    let busy = rates().map(|r| r.busy_ms_per_second).max();
    let bp = rates().map(|r| r.back_pressured_ms_per_second).max();
    json!({
        "read-records": rates().map(|r| r.records_in).sum::<u64>(),
        "write-records": rates().map(|r| r.records_out).sum::<u64>(),
        "read-records-per-second": rates().map(|r| r.records_in_per_second).sum::<f64>(),
        "write-records-per-second": rates().map(|r| r.records_out_per_second).sum::<f64>(),
        "accumulated-busy-time-ms-per-second-max": busy,
        "accumulated-backpressured-time-ms-per-second-max": bp,
        "watermark": rates().filter_map(|r| r.input_watermark).min(),
    })
}

/// The `vertices` and `plan` fields of `GET /jobs/{id}`.
pub(super) fn job_graph_fields(view: &JobView) -> (Value, Value) {
    let vertices: Vec<Value> = view
        .vertices
        .iter()
        .map(|v| {
            let mut tasks: BTreeMap<&str, u32> = BTreeMap::new();
            for s in &v.subtasks {
                *tasks.entry(state_name(s.state)).or_default() += 1;
            }
            json!({
                "id": v.id.to_string(),
                "name": v.name,
                "parallelism": v.parallelism,
                "status": vertex_state(v),
                "tasks": tasks,
                "metrics": vertex_metrics(v),
            })
        })
        .collect();
    let nodes: Vec<Value> = view
        .vertices
        .iter()
        .map(|v| {
            let inputs: Vec<Value> = view
                .edges
                .iter()
                .filter(|e| e.target == v.id)
                .enumerate()
                .map(|(num, e)| {
                    json!({"num": num, "id": e.source.to_string(), "ship_strategy": e.ship_strategy, "exchange": "pipelined_bounded"})
                })
                .collect();
            json!({
                "id": v.id.to_string(),
                "parallelism": v.parallelism,
                "operator": "",
                "description": v.operators.join(" -> "),
                "inputs": inputs,
            })
        })
        .collect();
    (json!(vertices), json!({ "nodes": nodes }))
}

/// The view of job `id` as its master last reported it.
pub(super) async fn view_of(jm: &JobManager, id: JobId) -> std::result::Result<(JobView, String), ApiError> {
    let found = ask(jm, move |c| {
        c.jobs
            .get(&id)
            .map(|j: &JobEntry| (j.details.as_ref().map(|d| d.view.clone()).unwrap_or_default(), j.name.clone()))
    })
    .await?;
    found.ok_or_else(|| not_found(format!("no job {id}")))
}

/// Job `jid`'s vertex `vid`.
async fn vertex(jm: &JobManager, jid: &str, vid: &str) -> std::result::Result<VertexView, ApiError> {
    let (view, _) = view_of(jm, job_id(jid)?).await?;
    let index: u32 = vid.parse().map_err(|_| not_found(format!("'{vid}' is not a vertex id (a number)")))?;
    view.vertices.into_iter().find(|v| v.id == index).ok_or_else(|| not_found(format!("job {jid} has no vertex {vid}")))
}

/// `GET /jobs/{id}/vertices/{vid}`.
pub(super) async fn details(State(jm): State<JobManager>, Path((jid, vid)): Path<(String, String)>) -> Reply {
    let v = vertex(&jm, &jid, &vid).await?;
    let subtasks: Vec<Value> = v
        .subtasks
        .iter()
        .map(|s| {
            let r = s.rates;
            json!({
                "subtask": s.subtask,
                "status": state_name(s.state),
                "attempt": s.attempt,
                "host": s.host.clone().unwrap_or_else(|| s.taskmanager.clone()),
                "taskmanager-id": s.taskmanager,
                "metrics": {
                    "read-records": r.map(|r| r.records_in),
                    "write-records": r.map(|r| r.records_out),
                    "read-records-per-second": r.map(|r| r.records_in_per_second),
                    "write-records-per-second": r.map(|r| r.records_out_per_second),
                    "busy-time-ms-per-second": r.map(|r| r.busy_ms_per_second),
                    "backpressured-time-ms-per-second": r.map(|r| r.back_pressured_ms_per_second),
                    "idle-time-ms-per-second": r.map(|r| r.idle_ms_per_second),
                    "current-input-watermark": r.and_then(|r| r.input_watermark),
                },
            })
        })
        .collect();
    Ok(Json(json!({
        "id": v.id.to_string(),
        "name": v.name,
        "parallelism": v.parallelism,
        "operators": v.operators,
        "now": now_ms(),
        "subtasks": subtasks,
    })))
}

/// `GET /jobs/{id}/vertices/{vid}/subtasks/metrics[?get=a,b]`.
pub(super) async fn subtask_metrics(
    State(jm): State<JobManager>,
    Path((jid, vid)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let v = vertex(&jm, &jid, &vid).await?;
    let Some(get) = q.get("get") else {
        return Ok(Json(json!(SUBTASK_METRICS.iter().map(|m| json!({ "id": m })).collect::<Vec<_>>())));
    };
    let answers: Vec<Value> = get
        .split(',')
        .map(str::trim)
        .filter(|name| SUBTASK_METRICS.contains(name))
        .filter_map(|name| {
            let values: Vec<f64> =
                v.subtasks.iter().filter_map(|s| s.rates.as_ref().and_then(|r| metric(r, name))).collect();
            if values.is_empty() {
                return None;
            }
            let sum: f64 = values.iter().sum();
            Some(json!({
                "id": name,
                "min": values.iter().copied().fold(f64::INFINITY, f64::min),
                "max": values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                "avg": sum / values.len() as f64,
                "sum": sum,
            }))
        })
        .collect();
    Ok(Json(json!(answers)))
}

/// `GET /jobs/{id}/vertices/{vid}/watermarks`.
pub(super) async fn watermarks(State(jm): State<JobManager>, Path((jid, vid)): Path<(String, String)>) -> Reply {
    let v = vertex(&jm, &jid, &vid).await?;
    let marks: Vec<Value> = v
        .subtasks
        .iter()
        .filter_map(|s| {
            let wm = s.rates?.input_watermark?;
            Some(json!({ "id": format!("{}.currentInputWatermark", s.subtask), "value": wm.to_string() }))
        })
        .collect();
    Ok(Json(json!(marks)))
}

/// `GET /jobs/{id}/vertices/{vid}/backpressure`.
pub(super) async fn backpressure(State(jm): State<JobManager>, Path((jid, vid)): Path<(String, String)>) -> Reply {
    let v = vertex(&jm, &jid, &vid).await?;
    let subtasks: Vec<Value> = v
        .subtasks
        .iter()
        .filter_map(|s| {
            let r = s.rates?;
            let ratio = r.back_pressured_ms_per_second as f64 / 1000.0;
            Some(json!({
                "subtask": s.subtask,
                "attempt-number": s.attempt,
                "backpressureLevel": level(ratio),
                "ratio": ratio,
                "idleRatio": r.idle_ms_per_second as f64 / 1000.0,
                "busyRatio": r.busy_ms_per_second as f64 / 1000.0,
            }))
        })
        .collect();
    let worst = subtasks.iter().filter_map(|s| s["ratio"].as_f64()).fold(0.0, f64::max);
    Ok(Json(json!({
        "status": if subtasks.is_empty() { "deprecated" } else { "ok" },
        "backpressureLevel": level(worst),
        "end-timestamp": now_ms(),
        "subtasks": subtasks,
    })))
}
