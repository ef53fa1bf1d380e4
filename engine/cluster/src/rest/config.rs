//! The configuration views of the REST API, at Flink's paths:
//!
//! | path | what | Flink's fields kept |
//! |---|---|---|
//! | `GET /config` | what the web UI needs to know | `refresh-interval`, `timezone-name`, `timezone-offset`, `features` (`web-submit`, `web-cancel`); `sluice-version` for `flink-version` |
//! | `GET /jobmanager/config` | the JobManager's configuration (keys set in its file or with `-D`) | a list of `{key, value}` |
//! | `GET /jobs/{id}/config` | a job's configuration and arguments | `jid`, `name`, `execution-config` with `job-parallelism`, `restart-strategy` and `user-config` |
//!
//! Secrets are masked as Flink masks them ([`sluice::config::redact`]): the
//! value of every key whose name says it is a secret, a job argument after
//! an option with such a name, and the password of a URL read `******`.

use super::{job_id, not_found, Reply};
use crate::jobmanager_process::JobManager;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Map, Value};
use sluice::config::redact::{is_sensitive, mask_args, redact_url, MASK};

/// `key=value` pairs as a JSON object, secrets masked.
fn masked_object<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Map<String, Value> {
    pairs
        .map(|(k, v)| {
            let v = if is_sensitive(k) { MASK.to_string() } else { redact_url(v) };
            (k.to_string(), Value::String(v))
        })
        .collect()
}

/// `GET /config`.
pub(super) async fn dashboard(State(jm): State<JobManager>) -> Reply {
    super::ask(&jm, |c| {
        let policy = &c.settings.rest;
        Json(json!({
            "refresh-interval": 1000,
            "timezone-name": "UTC",
            "timezone-offset": 0,
            "sluice-version": env!("CARGO_PKG_VERSION"),
            "features": { "web-submit": policy.submit_enabled, "web-cancel": policy.cancel_enabled },
        }))
    })
    .await
}

/// `GET /jobmanager/config`.
pub(super) async fn jobmanager(State(jm): State<JobManager>) -> Reply {
    super::ask(&jm, |c| {
        let entries = masked_object(c.settings.configuration.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let list: Vec<Value> = entries.into_iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
        Json(Value::Array(list))
    })
    .await
}

/// `GET /jobs/{id}/config`.
pub(super) async fn job(State(jm): State<JobManager>, Path(id): Path<String>) -> Reply {
    let id = job_id(&id)?;
    super::ask(&jm, move |c| {
        let j = c.jobs.get(&id).ok_or_else(|| not_found(format!("no job {id}")))?;
        let pairs: Vec<(&str, &str)> = j.conf_lines.lines().filter_map(|l| l.split_once('=')).collect();
        let get = |key: &str| pairs.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let parallelism = get("parallelism.client").or_else(|| get("parallelism.default"));
        Ok(Json(json!({
            "jid": id.to_string(),
            "name": j.name,
            "execution-config": {
                "job-parallelism": parallelism.and_then(|p| p.parse::<u32>().ok()),
                "restart-strategy": get("restart-strategy.type").unwrap_or("fixed-delay"),
                "user-config": masked_object(pairs.iter().copied()),
            },
            "program-args": mask_args(&j.args),
            "binary": j.artifact.name,
        })))
    })
    .await?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn configuration_objects_mask_secret_keys_and_url_passwords() {
        let obj = masked_object(
            [("rest.token", "t0k"), ("state.checkpoints.dir", "/ckpt"), ("db.url", "mysql://u:pw@h/db")].into_iter(),
        );
        assert_eq!(obj["rest.token"], MASK);
        assert_eq!(obj["state.checkpoints.dir"], "/ckpt");
        assert_eq!(obj["db.url"], "mysql://u:******@h/db");
    }
}
