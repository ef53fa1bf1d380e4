//! The JobManager's REST API and web UI, paths in the spirit of Flink's:
//!
//! | method and path | what |
//! |---|---|
//! | `GET /` | the web UI (jobs, task managers, slots; refreshes itself); the static page needs no token, its data does (`/#token=...`) |
//! | `GET /overview` | cluster summary |
//! | `GET /taskmanagers`, `GET /taskmanagers/{id}` | TaskManagers, their slots and heartbeats |
//! | `GET /taskmanagers/{id}/logs[/{name}]`, `/taskmanagers/{id}/stdout`, `/jobmanager/logs[/{name}]` | logs ([`logs`]) |
//! | `GET /jobs` , `GET /jobs/overview` | jobs with id, name, state, times |
//! | `GET /jobs/{id}` | one job: status, restarts, failure, vertices with their rates, the plan ([`vertices`]) |
//! | `GET /jobs/{id}/vertices/{vid}[/subtasks/metrics, /watermarks, /backpressure]` | a vertex's subtasks, metrics, watermarks, back pressure ([`vertices`]) |
//! | `GET /jobs/{id}/checkpoints[/config, /details/{cid}[/subtasks/{vid}]]` | checkpoint statistics ([`checkpoints`]) |
//! | `GET /jobs/{id}/exceptions` | the exception history ([`checkpoints`]) |
//! | `GET /jobs/{id}/config`, `GET /config`, `GET /jobmanager/config` | configuration, secrets masked ([`config`]) |
//! | `PATCH /jobs/{id}?mode=cancel` | cancel |
//! | `POST /jobs/{id}/savepoints` `{"target-directory", "cancel-job"}` | savepoint (answers when stored) |
//! | `POST /jobs/{id}/stop` `{"targetDirectory"}` | savepoint, then cancel |
//! | `POST /jars/upload?filename=NAME` (body: the binary) | upload a job binary |
//! | `GET /jars` | uploaded binaries |
//! | `POST /jars/{id}/run` `{"programArgsList", "parallelism", "entryClass", "savepointPath", "allowNonRestoredState"}` | start a job |
//! | `GET /metrics` | Prometheus metrics of the JobManager |
//! | `GET /metrics/targets` | every process serving `/metrics`, as a Prometheus HTTP service-discovery document |
//!
//! `/metrics/targets` follows Prometheus' `http_sd_configs` format: a JSON
//! list of `{"targets": ["host:port"], "labels": {...}}`, one entry per
//! process, labelled `sluice_role` (`jobmanager`, `taskmanager`, `driver`,
//! `task`), `sluice_job_id`, `sluice_taskmanager` and `sluice_process` where
//! they apply. (The label names carry a prefix so that they do not collide
//! with the `job_id` label of the job metrics themselves.) With `rest.token`,
//! give Prometheus the token as `authorization` of both the discovery and
//! the scrape; job processes ignore it.
//!
//! Errors are JSON `{"errors": ["..."]}` with a 4xx status. Bound to
//! loopback unless `rest.address` says otherwise (another address needs a
//! token). What may pass — Host and Origin, the header and content type of
//! state-changing requests, tokens, `web.submit.enable` and
//! `web.cancel.enable` — is [`crate::rest_guard`]'s to decide.

mod checkpoints;
mod config;
mod logs;
mod vertices;

use crate::jobmanager_process::{Artifact, Cluster, JobEntry, JobManager, Leadership};
use crate::rest_guard::RestPolicy;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice::cluster::protocol::JobStatus;
use sluice::error::{Error, Result};
use sluice::ids::JobId;
use sluice_checkpoint::clock::now_ms;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a savepoint request waits for the savepoint.
const SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(600);

type Reply = std::result::Result<Json<Value>, ApiError>;

/// An error answer.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "errors": [self.1] }))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, msg.into())
}

/// The JobManager's event loop did not answer.
fn unavailable(e: Error) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// Runs `f` on the JobManager's event loop.
async fn ask<R: Send + 'static>(
    jm: &JobManager,
    f: impl FnOnce(&mut Cluster) -> R + Send + 'static,
) -> std::result::Result<R, ApiError> {
    jm.ask(f).await.map_err(unavailable)
}

fn job_id(text: &str) -> std::result::Result<JobId, ApiError> {
    text.parse().map_err(bad)
}

/// Serves the API on `bind` from a background thread until the process
/// ends; over TLS with `tls` (see [`crate::rest_tls`]).
pub fn serve(
    jm: JobManager,
    bind: &str,
    policy: RestPolicy,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind(bind)
        .map_err(|e| Error::io(format!("cannot bind the REST endpoint {bind} (rest.port in use?)"), e))?;
    let addr = listener.local_addr().map_err(|e| Error::io("REST endpoint", e))?;
    policy.check_bind(&addr)?;
    listener.set_nonblocking(true).map_err(|e| Error::io("REST endpoint", e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the REST runtime", e))?;
    let rest_address = addr.to_string();
    jm.call(move |c| c.set_rest_address(rest_address))?;
    let app = router(jm, policy);
    std::thread::Builder::new()
        .name("rest".into())
        .spawn(move || {
            runtime.block_on(async move {
                match (tokio::net::TcpListener::from_std(listener), tls) {
                    (Ok(l), None) => {
                        if let Err(e) = axum::serve(l, app).await {
                            tracing::error!("REST endpoint stopped: {e}");
                        }
                    }
                    (Ok(l), Some(tls)) => serve_tls(l, app, tls).await,
                    (Err(e), _) => tracing::error!("REST endpoint stopped: {e}"),
                }
            })
        })
        .map_err(|e| Error::io("cannot start the REST thread", e))?;
    Ok(addr)
}

/// Accepts TLS connections and serves `app` on each (HTTP/1.1).
async fn serve_tls(listener: tokio::net::TcpListener, app: Router, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("REST endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::info!("REST: TLS handshake with {peer} failed: {e}"),
                Err(_) => return tracing::info!("REST: TLS handshake with {peer} timed out"),
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                tracing::debug!("REST connection from {peer}: {e}");
            }
        });
    }
}

fn router(jm: JobManager, policy: RestPolicy) -> Router {
    let policy = Arc::new(policy);
    let guard = move |req: Request, next: Next| crate::rest_guard::guard(policy.clone(), req, next);
    let api = Router::new()
        .route("/overview", get(overview))
        .route("/taskmanagers", get(task_managers))
        .route("/taskmanagers/{id}", get(task_manager))
        .route("/taskmanagers/{id}/logs", get(logs::list))
        .route("/taskmanagers/{id}/logs/{name}", get(logs::read))
        .route("/taskmanagers/{id}/stdout", get(logs::stdout))
        .route("/jobmanager/logs", get(logs::jobmanager_list))
        .route("/jobmanager/logs/{name}", get(logs::jobmanager_read))
        .route("/jobs", get(jobs))
        .route("/jobs/overview", get(jobs))
        .route("/jobs/{id}", get(job).patch(cancel))
        .route("/jobs/{id}/checkpoints", get(checkpoints::overview))
        .route("/jobs/{id}/checkpoints/config", get(checkpoints::config))
        .route("/jobs/{id}/checkpoints/details/{cid}", get(checkpoints::details))
        .route("/jobs/{id}/checkpoints/details/{cid}/subtasks/{vid}", get(checkpoints::subtasks))
        .route("/jobs/{id}/exceptions", get(checkpoints::exceptions))
        .route("/jobs/{id}/vertices/{vid}", get(vertices::details))
        .route("/jobs/{id}/vertices/{vid}/subtasks/metrics", get(vertices::subtask_metrics))
        .route("/jobs/{id}/vertices/{vid}/watermarks", get(vertices::watermarks))
        .route("/jobs/{id}/vertices/{vid}/backpressure", get(vertices::backpressure))
        .route("/jobs/{id}/config", get(config::job))
        .route("/config", get(config::dashboard))
        .route("/jobmanager/config", get(config::jobmanager))
        .route("/jobs/{id}/savepoints", post(savepoint))
        .route("/jobs/{id}/stop", post(stop))
        .route("/jars", get(jars))
        .route("/jars/{id}", delete(delete_jar))
        .route("/jars/upload", post(upload).layer(DefaultBodyLimit::max(512 << 20)))
        .route("/jars/{id}/run", post(run))
        .route("/metrics", get(metrics))
        .route("/metrics/targets", get(metrics_targets));
    // The page itself holds no data: it loads without the token and sends
    // the token with every API request it makes.
    Router::new()
        .route("/", get(ui))
        .merge(api)
        .fallback(|| async { not_found("no such endpoint; see GET / for the web UI and the module docs for the API") })
        .layer(axum::middleware::from_fn(guard))
        .with_state(jm)
}

async fn ui() -> Html<&'static str> {
    Html(include_str!("ui.html"))
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], sluice::metrics::global().render())
}

async fn metrics_targets(State(jm): State<JobManager>) -> Reply {
    let targets = ask(&jm, |c| c.metrics_targets()).await?;
    Ok(Json(crate::discovery::http_sd(&targets)))
}

async fn overview(State(jm): State<JobManager>) -> Reply {
    ask(&jm, |c| Json(overview_json(c))).await
}

fn overview_json(c: &Cluster) -> Value {
    let count = |s: JobStatus| c.jobs.values().filter(|j| j.status == s).count();
    let leadership = match c.leadership() {
        Leadership::Alone => json!({"role": "alone"}),
        Leadership::Leader { since, terms } => json!({"role": "leader", "since": since, "terms": terms}),
        Leadership::Standby { leader } => json!({
            "role": "standby",
            "leader": leader.map(|l| json!({"id": l.id, "rest-address": l.rest_address, "since": l.since_ms})),
        }),
    };
    json!({
        "leadership": leadership,
        "taskmanagers": c.task_managers.len(),
        "slots-total": c.total_slots(),
        "slots-available": c.free_slots(),
        "jobs-running": c.jobs.values().filter(|j| !j.status.is_terminal()).count(),
        "jobs-finished": count(JobStatus::Finished),
        "jobs-cancelled": count(JobStatus::Canceled),
        "jobs-failed": count(JobStatus::Failed),
        "sluice-version": env!("CARGO_PKG_VERSION"),
        "uptime": c.started.elapsed().as_millis() as u64,
    })
}

async fn task_managers(State(jm): State<JobManager>) -> Reply {
    ask(&jm, |c| Json(task_managers_json(c))).await
}

async fn task_manager(State(jm): State<JobManager>, Path(id): Path<String>) -> Reply {
    let tm = ask(&jm, move |c| {
        task_managers_json(c)["taskmanagers"]
            .as_array()
            .and_then(|l| l.iter().find(|t| t["id"] == id.as_str()).cloned())
    })
    .await?;
    tm.map(Json).ok_or_else(|| not_found("no such TaskManager"))
}

fn task_managers_json(c: &Cluster) -> Value {
    let tms: Vec<Value> = c
        .task_managers
        .iter()
        .map(|(id, t)| {
            json!({
                "id": id,
                "path": t.address(),
                "slotsNumber": t.slots,
                "freeSlots": t.slots.saturating_sub(t.used()),
                "timeSinceLastHeartbeat": t.last_heartbeat.elapsed().as_millis() as u64,
                "metrics": t.metrics_address,
                "jobProcesses": t.processes.iter().map(|((j, seq), p)| json!({"job": j.to_string(), "process": seq, "slots": p.slots, "metrics": p.metrics_address})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "taskmanagers": tms })
}

fn job_json(j: &JobEntry) -> Value {
    let end = j.end_time.unwrap_or(-1);
    let duration = j.end_time.unwrap_or_else(now_ms).saturating_sub(j.start_time).max(0);
    json!({
        "jid": j.id.to_string(),
        "name": j.name,
        "state": j.status.to_string(),
        "start-time": j.start_time,
        "end-time": end,
        "duration": duration,
        "restarts": j.details.as_ref().map(|d| d.restarts).unwrap_or(0),
        "required-slots": j.required_slots,
        "failure": j.failure,
        "tasks": task_counts(j),
    })
}

/// The job's subtasks by state, under Flink's names (`/jobs/overview`).
fn task_counts(j: &JobEntry) -> Value {
    let mut counts = serde_json::Map::new();
    for state in ["deploying", "running", "finished", "canceled", "failed"] {
        counts.insert(state.into(), json!(0));
    }
    let subtasks = j.details.iter().flat_map(|d| &d.view.vertices).flat_map(|v| &v.subtasks);
    let mut total = 0u64;
    for s in subtasks {
        total += 1;
        let key = vertices::state_name(s.state).to_lowercase();
        let n = counts.get(&key).and_then(Value::as_u64).unwrap_or(0);
        counts.insert(key, json!(n + 1));
    }
    counts.insert("total".into(), json!(total));
    Value::Object(counts)
}

async fn jobs(State(jm): State<JobManager>) -> Reply {
    ask(&jm, |c| {
        let mut list: Vec<&JobEntry> = c.jobs.values().collect();
        list.sort_by_key(|j| std::cmp::Reverse(j.start_time));
        Json(json!({ "jobs": list.into_iter().map(job_json).collect::<Vec<_>>() }))
    })
    .await
}

async fn job(State(jm): State<JobManager>, Path(id): Path<String>) -> Reply {
    let id = job_id(&id)?;
    ask(&jm, move |c| job_details_json(c, id)).await?
}

fn job_details_json(c: &Cluster, id: JobId) -> Reply {
    let j = c.jobs.get(&id).ok_or_else(|| not_found(format!("no job {id}")))?;
    let mut v = job_json(j);
    match j.details.as_ref().filter(|d| !d.view.vertices.is_empty()) {
        Some(d) => {
            let (vertices, plan) = vertices::job_graph_fields(&d.view);
            v["vertices"] = vertices;
            v["plan"] = plan;
        }
        None => {
            v["vertices"] = json!(j
            .vertices
            .iter()
            .enumerate()
            .map(
                |(i, x)| json!({"id": i.to_string(), "name": x.name, "parallelism": x.parallelism, "status": "CREATED"})
            )
            .collect::<Vec<_>>())
        }
    }
    v["now"] = json!(now_ms());
    v["binary"] = json!(j.artifact.name);
    let task_processes: Vec<Value> = c
        .task_managers
        .iter()
        .flat_map(|(tm, t)| {
            t.processes.iter().filter(|((job, _), _)| *job == id).map(move |((_, seq), p)| {
                json!({"taskmanager": tm, "process": seq, "slots": p.slots, "metrics": p.metrics_address})
            })
        })
        .collect();
    v["metrics"] = json!({ "driver": j.driver_metrics, "taskProcesses": task_processes });
    v["log"] = json!(j.log.display().to_string());
    Ok(Json(v))
}

async fn cancel(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mode = q.get("mode").map(String::as_str).unwrap_or("cancel");
    if mode != "cancel" {
        return bad(format!("mode '{mode}' is not supported; use mode=cancel")).into_response();
    }
    let id = match job_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match jm.ask(move |c| c.cancel(id)).await {
        Ok(Ok(())) => (StatusCode::ACCEPTED, Json(json!({}))).into_response(),
        Ok(Err(e)) => ApiError(StatusCode::CONFLICT, e.to_string()).into_response(),
        Err(e) => unavailable(e).into_response(),
    }
}

async fn take_savepoint(jm: JobManager, id: JobId, dir: Option<String>, cancel: bool) -> Reply {
    let dir = dir.filter(|d| !d.is_empty()).ok_or_else(|| bad("a target directory is required"))?;
    let rx = ask(&jm, move |c| c.request_savepoint(id, dir))
        .await?
        .map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))?;
    let answer = tokio::task::spawn_blocking(move || rx.recv_timeout(SAVEPOINT_TIMEOUT))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|_| ApiError(StatusCode::GATEWAY_TIMEOUT, "no answer from the job's driver".into()))?;
    let location = answer.map_err(|e| ApiError(StatusCode::CONFLICT, format!("savepoint failed: {e}")))?;
    if cancel {
        ask(&jm, move |c| c.cancel(id)).await?.map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))?;
    }
    Ok(Json(json!({ "status": { "id": "COMPLETED" }, "location": location })))
}

#[derive(Deserialize)]
struct SavepointBody {
    #[serde(rename = "target-directory")]
    target_directory: Option<String>,
    #[serde(rename = "cancel-job", default)]
    cancel_job: bool,
}

async fn savepoint(State(jm): State<JobManager>, Path(id): Path<String>, body: Bytes) -> Reply {
    let id = job_id(&id)?;
    let b: SavepointBody = serde_json::from_slice(&body).map_err(|e| bad(format!("malformed JSON body: {e}")))?;
    take_savepoint(jm, id, b.target_directory, b.cancel_job).await
}

#[derive(Deserialize)]
struct StopBody {
    #[serde(rename = "targetDirectory")]
    target_directory: Option<String>,
}

async fn stop(State(jm): State<JobManager>, Path(id): Path<String>, body: Bytes) -> Reply {
    let id = job_id(&id)?;
    let b: StopBody = serde_json::from_slice(&body).map_err(|e| bad(format!("malformed JSON body: {e}")))?;
    take_savepoint(jm, id, b.target_directory, true).await
}

async fn jars(State(jm): State<JobManager>) -> Reply {
    ask(&jm, |c| {
        let files: Vec<Value> = c
            .artifacts
            .values()
            .map(|a| json!({"id": a.id, "name": a.name, "uploaded": a.uploaded, "size": a.size}))
            .collect();
        Json(json!({ "files": files }))
    })
    .await
}

async fn upload(State(jm): State<JobManager>, Query(q): Query<HashMap<String, String>>, body: Bytes) -> Reply {
    let name = q.get("filename").ok_or_else(|| bad("the query parameter 'filename' is required"))?;
    if body.is_empty() {
        return Err(bad("the body is empty; send the job binary as the request body"));
    }
    if !body.starts_with(b"\x7fELF") {
        return Err(bad(format!("'{name}' is not an ELF executable (job binaries are built with cargo build)")));
    }
    let (name, bytes) = (name.clone(), body.to_vec());
    // Hashing and writing a large binary happen here, not on the event loop
    // (which would stop hearing heartbeats meanwhile).
    let work_dir = ask(&jm, |c| c.work_dir()).await?;
    let a = tokio::task::spawn_blocking(move || Artifact::store(&work_dir, &name, bytes))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| bad(e.to_string()))?;
    let listed = a.clone();
    ask(&jm, move |c| c.insert_artifact(listed)).await?;
    Ok(Json(json!({ "status": "success", "id": a.id, "filename": a.name })))
}

async fn delete_jar(State(jm): State<JobManager>, Path(id): Path<String>) -> Reply {
    ask(&jm, move |c| c.remove_artifact(&id)).await?.map_err(|e| not_found(e.to_string()))?;
    Ok(Json(json!({})))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RunBody {
    #[serde(default)]
    program_args_list: Vec<String>,
    parallelism: Option<u32>,
    entry_class: Option<String>,
    savepoint_path: Option<String>,
    #[serde(default)]
    allow_non_restored_state: bool,
}

async fn run(State(jm): State<JobManager>, Path(id): Path<String>, body: Bytes) -> Reply {
    let b: RunBody =
        serde_json::from_slice(&body).map_err(|e| bad(format!("malformed JSON body: {e} (send at least {{}})")))?;
    if b.parallelism == Some(0) {
        return Err(bad("parallelism must be at least 1"));
    }
    ask(&jm, move |c| run_job(c, &id, b)).await?
}

/// Checks the entry and starts the job (on the event loop).
fn run_job(c: &mut Cluster, id: &str, b: RunBody) -> Reply {
    let artifact = c.artifact(id).ok_or_else(|| not_found(format!("no uploaded binary with id '{id}'")))?;
    if let Some(entry) = b.entry_class.as_deref().filter(|e| *e != artifact.name) {
        return Err(bad(format!(
            "entry '{entry}' is not in the uploaded binary '{}' (one binary is one entry; -c picks a binary from a directory)",
            artifact.name
        )));
    }
    let job = c
        .submit(JobId::generate(), id, b.program_args_list, b.parallelism, b.savepoint_path, b.allow_non_restored_state)
        .map_err(|e| bad(e.to_string()))?;
    Ok(Json(json!({ "jobid": job.to_string() })))
}
