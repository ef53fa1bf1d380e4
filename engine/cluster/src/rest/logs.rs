//! Logs in the REST API, at Flink's paths:
//!
//! | path | what |
//! |---|---|
//! | `GET /taskmanagers/{id}/logs` | `{"logs": [{name, size, mtime}]}`: the standard error (`.log`, where a job's log lines go) and output (`.out`) of each job process on the TaskManager, newest first |
//! | `GET /taskmanagers/{id}/logs/{name}` | the end of one of them (at most 1 MiB), as text |
//! | `GET /taskmanagers/{id}/stdout` | the end of the newest job process's standard output |
//! | `GET /jobmanager/logs` | the drivers' logs of the jobs this JobManager ran (`<job id>.log`) |
//! | `GET /jobmanager/logs/{name}` | the end of one of them |
//!
//! A TaskManager reads its own files ([`crate::task_logs`]) when asked over
//! its control connection; nothing names a path from the request.

use super::{ask, not_found, ApiError};
use crate::jobmanager_process::JobManager;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sluice::cluster::remote::messages::{LogAnswer, LogRequest};
use std::time::Duration;

/// How long a TaskManager has to answer.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);

async fn ask_task_manager(jm: &JobManager, tm: String, what: LogRequest) -> Result<LogAnswer, ApiError> {
    let rx = ask(jm, move |c| c.request_logs(&tm, what)).await?.map_err(|e| not_found(e.to_string()))?;
    tokio::task::spawn_blocking(move || rx.recv_timeout(LOG_TIMEOUT))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|_| ApiError(StatusCode::GATEWAY_TIMEOUT, "the TaskManager did not answer".into()))?
        .map_err(not_found)
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// `GET /taskmanagers/{id}/logs`.
pub(super) async fn list(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match ask_task_manager(&jm, id, LogRequest::List).await? {
        LogAnswer::List(files) => Ok(Json(json!({
            "logs": files.iter().map(|f| json!({"name": f.name, "size": f.size, "mtime": f.modified})).collect::<Vec<_>>()
        }))),
        LogAnswer::Content(_) => Err(ApiError(StatusCode::BAD_GATEWAY, "the TaskManager answered out of turn".into())),
    }
}

/// `GET /taskmanagers/{id}/logs/{name}`.
pub(super) async fn read(State(jm): State<JobManager>, Path((id, name)): Path<(String, String)>) -> Response {
    match ask_task_manager(&jm, id, LogRequest::Read { name }).await {
        Ok(LogAnswer::Content(body)) => text(body),
        Ok(LogAnswer::List(_)) => {
            ApiError(StatusCode::BAD_GATEWAY, "the TaskManager answered out of turn".into()).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /taskmanagers/{id}/stdout`.
pub(super) async fn stdout(State(jm): State<JobManager>, Path(id): Path<String>) -> Response {
    let newest = match ask_task_manager(&jm, id.clone(), LogRequest::List).await {
        Ok(LogAnswer::List(files)) => files.into_iter().find(|f| f.name.ends_with(".out")),
        Ok(LogAnswer::Content(_)) => None,
        Err(e) => return e.into_response(),
    };
    match newest {
        Some(f) => read(State(jm), Path((id, f.name))).await,
        None => text(String::new()),
    }
}

/// `GET /jobmanager/logs`.
pub(super) async fn jobmanager_list(State(jm): State<JobManager>) -> Result<Json<serde_json::Value>, ApiError> {
    let logs = ask(&jm, |c| {
        c.jobs
            .values()
            .filter_map(|j| {
                let size = std::fs::metadata(&j.log).ok()?.len();
                Some(json!({"name": format!("{}.log", j.id), "size": size, "job": j.name}))
            })
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(Json(json!({ "logs": logs })))
}

/// `GET /jobmanager/logs/{name}`.
pub(super) async fn jobmanager_read(State(jm): State<JobManager>, Path(name): Path<String>) -> Response {
    let path =
        ask(&jm, move |c| c.jobs.values().find(|j| format!("{}.log", j.id) == name).map(|j| j.log.clone())).await;
    let path = match path {
        Ok(Some(p)) => p,
        Ok(None) => return not_found("no such log; GET /jobmanager/logs lists them").into_response(),
        Err(e) => return e.into_response(),
    };
    let read = tokio::task::spawn_blocking(move || crate::task_logs::read_tail(&path)).await;
    match read {
        Ok(Ok(body)) => text(body),
        Ok(Err(e)) => not_found(format!("cannot read the log: {e}")).into_response(),
        Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
