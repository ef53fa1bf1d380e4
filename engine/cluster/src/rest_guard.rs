//! What the REST API lets in, checked before any handler runs:
//!
//! - **Host**: an IP literal, `localhost`, or a name in `rest.allowed-hosts`
//!   (a page of another site whose name was made to resolve to the
//!   JobManager — DNS rebinding — is refused);
//! - **Origin**: when a browser sends one, it must be the API's own;
//! - **state-changing requests** (`POST`, `PATCH`, `DELETE`) must carry the
//!   header `X-Sluice-Client` and a `Content-Type` of `application/json`
//!   (`application/octet-stream` for uploads): a cross-site page can send
//!   neither without the browser asking the JobManager first, which it
//!   never allows;
//! - **tokens**: `rest.token` (or `rest.token-file`) for everything but the
//!   web UI's static page; `/metrics` and `/metrics/targets` also accept
//!   the read-only `rest.metrics-token`; compared in constant time;
//! - **switches**: `web.submit.enable: false` refuses uploads and runs,
//!   `web.cancel.enable: false` refuses cancel and stop.

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sluice::config::Configuration;
use sluice::error::{Error, Result};
use std::net::IpAddr;
use std::path::Path;
use subtle::ConstantTimeEq;

/// The header every state-changing request must carry.
pub const CLIENT_HEADER: &str = "x-sluice-client";

/// The REST API's access rules (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct RestPolicy {
    /// `rest.token`: required by every API request, if set.
    pub token: Option<String>,
    /// `rest.metrics-token`: also accepted by the metrics endpoints.
    pub metrics_token: Option<String>,
    /// `web.submit.enable`.
    pub submit_enabled: bool,
    /// `web.cancel.enable`.
    pub cancel_enabled: bool,
    /// `rest.allowed-hosts`: host names accepted besides IP literals and `localhost`.
    pub allowed_hosts: Vec<String>,
    /// TLS with client certificates (`security.ssl.rest.trust-cert`): only
    /// holders of a certificate of that CA can connect at all.
    pub client_certificates: bool,
}

fn secret_from(conf: &Configuration, key: &str, file_key: &str, env: &str) -> Result<Option<String>> {
    if let Some(path) = conf.get_str(file_key)?.filter(|p| !p.is_empty()) {
        let text = std::fs::read_to_string(Path::new(&path))
            .map_err(|e| Error::io(format!("cannot read {file_key} '{path}'"), e))?;
        return Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()));
    }
    if let Some(t) = std::env::var(env).ok().filter(|t| !t.is_empty()) {
        return Ok(Some(t));
    }
    Ok(conf.get_str(key)?.filter(|t| !t.is_empty()))
}

impl RestPolicy {
    /// From the configuration: tokens from `rest.token-file` /
    /// `rest.metrics-token-file`, else the environment (`SLUICE_REST_TOKEN`,
    /// `SLUICE_METRICS_TOKEN`), else `rest.token` / `rest.metrics-token`.
    pub fn from_config(conf: &Configuration) -> Result<Self> {
        Ok(RestPolicy {
            token: secret_from(conf, "rest.token", "rest.token-file", "SLUICE_REST_TOKEN")?,
            metrics_token: secret_from(conf, "rest.metrics-token", "rest.metrics-token-file", "SLUICE_METRICS_TOKEN")?,
            submit_enabled: conf.get_bool("web.submit.enable")?.unwrap_or(true),
            cancel_enabled: conf.get_bool("web.cancel.enable")?.unwrap_or(true),
            allowed_hosts: conf
                .get_str("rest.allowed-hosts")?
                .unwrap_or_default()
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            client_certificates: crate::rest_tls::requires_client_certificates(conf)?,
        })
    }

    /// Refuses to serve a non-loopback address without a token or TLS
    /// client authentication.
    pub fn check_bind(&self, addr: &std::net::SocketAddr) -> Result<()> {
        if addr.ip().is_loopback() || self.token.is_some() || self.client_certificates {
            return Ok(());
        }
        Err(Error::user(format!(
            "refusing to serve the REST API on {addr} without rest.token or TLS client certificates: anyone who can \
             reach it could run programs on this machine. Set rest.token-file (or SLUICE_REST_TOKEN), or \
             security.ssl.rest.* with a trust-cert, or bind rest.address to 127.0.0.1"
        )))
    }

    /// The request's problem, if it may not pass.
    fn check(&self, req: &Request) -> std::result::Result<(), (StatusCode, String)> {
        let headers = req.headers();
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let host = text(header::HOST).ok_or((StatusCode::BAD_REQUEST, "a Host header is required".to_string()))?;
        if !self.host_allowed(host) {
            return Err((
                StatusCode::FORBIDDEN,
                format!("Host '{host}' is not allowed: use an IP address, localhost, or add it to rest.allowed-hosts"),
            ));
        }
        if let Some(origin) = text(header::ORIGIN) {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest).trim_end_matches('/');
            if !origin_host.eq_ignore_ascii_case(host) {
                return Err((StatusCode::FORBIDDEN, format!("cross-origin request from '{origin}' refused")));
            }
        }
        let path = req.uri().path();
        let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
        if changes {
            if headers.get(CLIENT_HEADER).is_none() {
                return Err((
                    StatusCode::FORBIDDEN,
                    format!("state-changing requests need the header '{CLIENT_HEADER}' (the sluice CLI sends it)"),
                ));
            }
            let want = if path == "/jars/upload" { "application/octet-stream" } else { "application/json" };
            let given = text(header::CONTENT_TYPE).unwrap_or("");
            if !given.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(want) {
                return Err((
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("Content-Type must be {want}, not '{given}'"),
                ));
            }
            if path.starts_with("/jars") && !self.submit_enabled {
                return Err((StatusCode::FORBIDDEN, "job submission is disabled (web.submit.enable: false)".into()));
            }
            let cancels = *req.method() == Method::PATCH || path.ends_with("/stop");
            if cancels && !self.cancel_enabled {
                return Err((StatusCode::FORBIDDEN, "canceling jobs is disabled (web.cancel.enable: false)".into()));
            }
        }
        if path == "/" {
            return Ok(());
        }
        let given = text(header::AUTHORIZATION).and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
        let metrics = path == "/metrics" || path == "/metrics/targets";
        let ok = match (&self.token, &self.metrics_token) {
            (None, None) => true,
            (token, metrics_token) => {
                token.as_deref().is_some_and(|t| equal(t, given))
                    || (metrics && metrics_token.as_deref().is_some_and(|t| equal(t, given)))
                    || (token.is_none() && !metrics)
            }
        };
        if !ok {
            return Err((
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (set SLUICE_REST_TOKEN or --token-file to the cluster's token)".into(),
            ));
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            Some(v6) => return v6.split(']').next().is_some_and(|ip| ip.parse::<IpAddr>().is_ok()),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h).to_ascii_lowercase(),
        };
        name.parse::<IpAddr>().is_ok() || name == "localhost" || self.allowed_hosts.contains(&name)
    }
}

fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The middleware: refuses what `policy` does not let in.
pub async fn guard(policy: std::sync::Arc<RestPolicy>, req: Request, next: Next) -> Response {
    match policy.check(&req) {
        Ok(()) => next.run(req).await,
        Err((status, message)) => (status, Json(json!({ "errors": [message] }))).into_response(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    fn policy() -> RestPolicy {
        RestPolicy {
            token: Some("t0ken".into()),
            metrics_token: Some("scrape".into()),
            submit_enabled: true,
            cancel_enabled: true,
            allowed_hosts: vec!["jm.example".into()],
            client_certificates: false,
        }
    }

    const HOST: (&str, &str) = ("host", "127.0.0.1:8081");
    const AUTH: (&str, &str) = ("authorization", "Bearer t0ken");

    #[test]
    fn cross_site_and_rebinding_requests_are_refused() {
        let p = policy();
        // A no-cors POST can carry neither the client header nor a JSON content type.
        let no_cors = req("POST", "/jars/x/run", &[HOST, AUTH, ("content-type", "text/plain")]);
        assert_eq!(p.check(&no_cors).unwrap_err().0, StatusCode::FORBIDDEN);
        let plain = req("POST", "/jars/x/run", &[HOST, AUTH, (CLIENT_HEADER, "1"), ("content-type", "text/plain")]);
        assert_eq!(p.check(&plain).unwrap_err().0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let rebound = req("GET", "/jobs", &[("host", "evil.example:8081"), AUTH]);
        assert_eq!(p.check(&rebound).unwrap_err().0, StatusCode::FORBIDDEN);
        let foreign = req("GET", "/jobs", &[HOST, AUTH, ("origin", "http://evil.example")]);
        assert_eq!(p.check(&foreign).unwrap_err().0, StatusCode::FORBIDDEN);
        let ok = req(
            "POST",
            "/jars/x/run",
            &[
                HOST,
                AUTH,
                (CLIENT_HEADER, "1"),
                ("content-type", "application/json"),
                ("origin", "http://127.0.0.1:8081"),
            ],
        );
        assert!(p.check(&ok).is_ok());
        assert!(p.check(&req("GET", "/jobs", &[("host", "JM.example:1"), AUTH])).is_ok());
        assert!(p.check(&req("GET", "/jobs", &[("host", "[::1]:8081"), AUTH])).is_ok());
    }

    #[test]
    fn tokens_and_switches() {
        let p = policy();
        assert_eq!(p.check(&req("GET", "/jobs", &[HOST])).unwrap_err().0, StatusCode::UNAUTHORIZED);
        assert!(p.check(&req("GET", "/", &[HOST])).is_ok(), "the static page needs no token");
        let scrape = ("authorization", "Bearer scrape");
        assert!(p.check(&req("GET", "/metrics/targets", &[HOST, scrape])).is_ok());
        assert_eq!(p.check(&req("GET", "/jobs", &[HOST, scrape])).unwrap_err().0, StatusCode::UNAUTHORIZED);
        let closed = RestPolicy { submit_enabled: false, cancel_enabled: false, ..policy() };
        let json = ("content-type", "application/json");
        let run = req("POST", "/jars/x/run", &[HOST, AUTH, (CLIENT_HEADER, "1"), json]);
        assert_eq!(closed.check(&run).unwrap_err().0, StatusCode::FORBIDDEN);
        let cancel = req("PATCH", "/jobs/x", &[HOST, AUTH, (CLIENT_HEADER, "1"), json]);
        assert_eq!(closed.check(&cancel).unwrap_err().0, StatusCode::FORBIDDEN);
        assert!(policy().check(&cancel).is_ok());
    }

    #[test]
    fn network_addresses_need_a_token() {
        let open = RestPolicy { token: None, ..policy() };
        assert!(open.check_bind(&"0.0.0.0:8081".parse().unwrap()).is_err());
        assert!(open.check_bind(&"127.0.0.1:8081".parse().unwrap()).is_ok());
        assert!(policy().check_bind(&"0.0.0.0:8081".parse().unwrap()).is_ok());
    }
}
