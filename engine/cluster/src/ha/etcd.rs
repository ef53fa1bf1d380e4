//! [`HighAvailabilityServices`] on etcd (the `etcd-client` crate, etcd's v3
//! gRPC API; tested against Debian's etcd 3.4).
//!
//! - Election: etcd's own election service on the name `<root>/leader`; a
//!   candidate's key lives on a lease of `high-availability.etcd.lease-ttl`
//!   renewed every third of it by a background task from the start of the
//!   candidacy. The leader is the candidate key with the lowest creation
//!   revision, which is how the retrieval side reads it (one range read,
//!   no error text to interpret).
//! - Conditioned writes: one etcd transaction comparing the creation
//!   revision of the term's key (see [`super::Term`]).
//! - The checkpoint id counter: compare-and-set on the counter's
//!   modification revision, inside the same conditioned transaction.
//!
//! Calls block the calling thread on a small private Tokio runtime, each
//! bounded by the operation timeout (half the lease, at most 2 s) except
//! the campaign, which waits until elected.

use super::settings::EtcdTls;
use super::{CheckpointPointer, HaError, HighAvailabilityServices, LeaderInfo, Term};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, ProclaimOptions, SortOrder,
    SortTarget, TlsOptions, Txn, TxnOp,
};
use sluice::ids::JobId;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The state of one lease, kept by its renewal task.
#[derive(Debug, Default)]
struct LeaseState {
    /// Send time of the last renewal etcd confirmed.
    renewed: Option<Instant>,
    /// The renewal task stops when set (resigned).
    stop: bool,
}

type Leases = Arc<Mutex<HashMap<i64, LeaseState>>>;

/// See the module docs.
pub struct EtcdHa {
    client: Client,
    runtime: tokio::runtime::Runtime,
    endpoints: String,
    cluster_id: String,
    root: String,
    ttl: Duration,
    op_timeout: Duration,
    leases: Leases,
}

impl std::fmt::Debug for EtcdHa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdHa").field("endpoints", &self.endpoints).field("cluster_id", &self.cluster_id).finish()
    }
}

impl EtcdHa {
    /// Connects to `endpoints` and checks that etcd answers.
    pub fn connect(
        endpoints: &[String],
        cluster_id: &str,
        ttl: Duration,
        tls: Option<&EtcdTls>,
    ) -> Result<Self, HaError> {
        let joined = endpoints.join(",");
        let unreachable = |detail: String| HaError::Unreachable { endpoints: joined.clone(), detail };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd-client")
            .enable_all()
            .build()
            .map_err(|e| unreachable(format!("cannot start its client runtime: {e}")))?;
        let op_timeout = (ttl / 2).min(Duration::from_secs(2));
        let mut options = ConnectOptions::new().with_connect_timeout(op_timeout).with_keep_alive(ttl / 3, op_timeout);
        if let Some(tls) = tls {
            options = options.with_tls(tls_options(tls)?);
        }
        let client = runtime
            .block_on(async { tokio::time::timeout(op_timeout, Client::connect(endpoints, Some(options))).await })
            .map_err(|_| unreachable(format!("no connection within {op_timeout:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let ha = EtcdHa {
            client,
            runtime,
            endpoints: joined.clone(),
            cluster_id: cluster_id.to_string(),
            root: format!("/sluice/{cluster_id}"),
            ttl,
            op_timeout,
            leases: Leases::default(),
        };
        // Connections are lazy: one read proves etcd answers.
        ha.run(|mut c| async move { c.get("/sluice/", Some(GetOptions::new().with_limit(1))).await })?;
        Ok(ha)
    }

    /// Runs one etcd call with the operation timeout.
    fn run<T, F, Fut>(&self, call: F) -> Result<T, HaError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let fut = call(self.client.clone());
        match self.runtime.block_on(async { tokio::time::timeout(self.op_timeout, fut).await }) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.unreachable(e.to_string())),
            Err(_) => Err(self.unreachable(format!("no answer within {:?}", self.op_timeout))),
        }
    }

    fn unreachable(&self, detail: String) -> HaError {
        HaError::Unreachable { endpoints: self.endpoints.clone(), detail }
    }

    fn not_leader(&self) -> HaError {
        HaError::NotLeader { cluster_id: self.cluster_id.clone() }
    }

    fn election(&self) -> String {
        format!("{}/leader", self.root)
    }

    fn key(&self, kind: &str, job: JobId) -> String {
        format!("{}/{kind}/{job}", self.root)
    }

    /// The compare that holds while `term` lasts.
    fn holds(term: &Term) -> Compare {
        Compare::create_revision(term.key.clone(), CompareOp::Equal, term.revision)
    }

    /// Runs `ops` if `term` holds and `extra` compares hold; `Ok(false)` if
    /// only an extra compare failed.
    fn conditioned(&self, term: &Term, extra: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, HaError> {
        let mut when = vec![Self::holds(term)];
        when.extend(extra);
        let with_extra = when.len() > 1;
        let txn = Txn::new().when(when).and_then(ops);
        let done = self.run(|mut c| async move { c.txn(txn).await })?;
        if done.succeeded() {
            return Ok(true);
        }
        if with_extra && self.term_holds(term)? {
            return Ok(false);
        }
        Err(self.not_leader())
    }

    fn term_holds(&self, term: &Term) -> Result<bool, HaError> {
        let key = term.key.clone();
        let got = self.run(|mut c| async move { c.get(key, None).await })?;
        Ok(got.kvs().first().is_some_and(|kv| kv.create_revision() == term.revision))
    }

    /// Renews `lease` every third of the lease until it is gone or
    /// resigned, recording each confirmed renewal's send time.
    fn keep_renewing(&self, lease: i64) {
        let (client, leases, every, timeout) =
            (self.client.clone(), self.leases.clone(), self.ttl / 3, self.op_timeout);
        self.runtime.spawn(async move {
            let mut client = client;
            let mut keeper = None;
            loop {
                let stopped = leases.lock().map(|m| m.get(&lease).is_none_or(|s| s.stop)).unwrap_or(true);
                if stopped {
                    break;
                }
                if keeper.is_none() {
                    keeper =
                        tokio::time::timeout(timeout, client.lease_keep_alive(lease)).await.ok().and_then(Result::ok);
                }
                if let Some((k, stream)) = keeper.as_mut() {
                    let sent = Instant::now();
                    let answer = async {
                        k.keep_alive().await?;
                        stream.message().await
                    };
                    match tokio::time::timeout(timeout, answer).await {
                        Ok(Ok(Some(r))) if r.ttl() > 0 => {
                            if let Ok(mut m) = leases.lock() {
                                if let Some(s) = m.get_mut(&lease) {
                                    s.renewed = Some(sent);
                                }
                            }
                        }
                        Ok(Ok(Some(_))) => {
                            // TTL 0: etcd no longer has the lease.
                            tracing::warn!("etcd lease {lease:x} expired");
                            if let Ok(mut m) = leases.lock() {
                                if let Some(s) = m.get_mut(&lease) {
                                    s.renewed = None;
                                    s.stop = true;
                                }
                            }
                            break;
                        }
                        _ => keeper = None, // reconnect on the next round
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
    }

    fn lease_ttl_secs(&self) -> i64 {
        self.ttl.as_secs().max(1) as i64
    }
}

impl HighAvailabilityServices for EtcdHa {
    fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    fn lease_ttl(&self) -> Duration {
        self.ttl
    }

    fn campaign(&self, me: &LeaderInfo) -> Result<Term, HaError> {
        let ttl = self.lease_ttl_secs();
        let granted_at = Instant::now();
        let lease = self.run(|mut c| async move { c.lease_grant(ttl, None).await })?.id();
        if let Ok(mut m) = self.leases.lock() {
            m.insert(lease, LeaseState { renewed: Some(granted_at), stop: false });
        }
        self.keep_renewing(lease);
        let value = serde_json::to_vec(me).map_err(|e| self.unreachable(e.to_string()))?;
        let (name, mut client) = (self.election(), self.client.clone());
        let elected = self.runtime.block_on(async move { client.campaign(name, value, lease).await });
        let term = match elected {
            Ok(r) => r.leader().map(|k| Term { key: k.key().to_vec(), revision: k.rev(), lease: k.lease() }),
            Err(e) => {
                self.end_lease(lease);
                return Err(self.unreachable(e.to_string()));
            }
        };
        let Some(term) = term else {
            self.end_lease(lease);
            return Err(self.unreachable("the campaign ended without a leader key".into()));
        };
        // The candidacy may have outlived its lease while it waited.
        if self.renewed_at(&term).is_none() || !self.term_holds(&term)? {
            self.end_lease(lease);
            return Err(self.not_leader());
        }
        // Publish when this term began.
        let mut info = me.clone();
        info.since_ms = sluice_checkpoint::clock::now_ms();
        let value = serde_json::to_vec(&info).map_err(|e| self.unreachable(e.to_string()))?;
        let leader_key = etcd_client::LeaderKey::new()
            .with_name(self.election())
            .with_key(term.key.clone())
            .with_rev(term.revision)
            .with_lease(term.lease);
        let _ = self
            .run(|mut c| async move { c.proclaim(value, Some(ProclaimOptions::new().with_leader(leader_key))).await });
        Ok(term)
    }

    fn renewed_at(&self, term: &Term) -> Option<Instant> {
        self.leases.lock().ok().and_then(|m| m.get(&term.lease).and_then(|s| s.renewed))
    }

    fn resign(&self, term: &Term) {
        self.end_lease(term.lease);
    }

    fn leader(&self) -> Result<Option<LeaderInfo>, HaError> {
        let prefix = format!("{}/", self.election());
        let options = GetOptions::new().with_prefix().with_sort(SortTarget::Create, SortOrder::Ascend).with_limit(1);
        let got = self.run(|mut c| async move { c.get(prefix, Some(options)).await })?;
        let Some(kv) = got.kvs().first() else { return Ok(None) };
        serde_json::from_slice(kv.value())
            .map(Some)
            .map_err(|e| HaError::Corrupt { at: String::from_utf8_lossy(kv.key()).into_owned(), detail: e.to_string() })
    }

    fn put_job(&self, term: &Term, job: JobId, record: &str) -> Result<(), HaError> {
        let op = TxnOp::put(self.key("jobs", job), record, None);
        self.conditioned(term, Vec::new(), vec![op]).map(|_| ())
    }

    fn jobs(&self) -> Result<Vec<(JobId, String)>, HaError> {
        let prefix = format!("{}/jobs/", self.root);
        let p = prefix.clone();
        let got = self.run(|mut c| async move { c.get(p, Some(GetOptions::new().with_prefix())).await })?;
        let mut jobs = Vec::new();
        for kv in got.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let corrupt = |detail: String| HaError::Corrupt { at: key.clone(), detail };
            let id: JobId = key[prefix.len()..].parse().map_err(corrupt)?;
            let record = String::from_utf8(kv.value().to_vec()).map_err(|e| corrupt(e.to_string()))?;
            jobs.push((id, record));
        }
        Ok(jobs)
    }

    fn reserve_checkpoint_id(&self, term: &Term, job: JobId, at_least: u64) -> Result<u64, HaError> {
        let key = self.key("checkpoint-counter", job);
        for _ in 0..5 {
            let k = key.clone();
            let got = self.run(|mut c| async move { c.get(k, None).await })?;
            let (current, revision) = match got.kvs().first() {
                Some(kv) => {
                    let text = String::from_utf8_lossy(kv.value());
                    let n: u64 = text.parse().map_err(|_| HaError::Corrupt {
                        at: key.clone(),
                        detail: format!("'{text}' is not a number"),
                    })?;
                    (n, kv.mod_revision())
                }
                None => (1, 0),
            };
            let id = current.max(at_least);
            let cas = Compare::mod_revision(key.clone(), CompareOp::Equal, revision);
            let put = TxnOp::put(key.clone(), (id + 1).to_string(), None);
            if self.conditioned(term, vec![cas], vec![put])? {
                return Ok(id);
            }
        }
        Err(self.unreachable(format!("the checkpoint id counter '{key}' kept changing under this leader")))
    }

    fn add_checkpoint(&self, term: &Term, job: JobId, pointer: &CheckpointPointer) -> Result<(), HaError> {
        let value = serde_json::to_string(pointer).map_err(|e| self.unreachable(e.to_string()))?;
        let op = TxnOp::put(self.key("checkpoints", job), value, None);
        self.conditioned(term, Vec::new(), vec![op]).map(|_| ())
    }

    fn latest_checkpoint(&self, job: JobId) -> Result<Option<CheckpointPointer>, HaError> {
        let key = self.key("checkpoints", job);
        let k = key.clone();
        let got = self.run(|mut c| async move { c.get(k, None).await })?;
        let Some(kv) = got.kvs().first() else { return Ok(None) };
        serde_json::from_slice(kv.value()).map(Some).map_err(|e| HaError::Corrupt { at: key, detail: e.to_string() })
    }
}

impl EtcdHa {
    /// Stops renewing `lease` and revokes it (best effort: an unreachable
    /// etcd lets it expire).
    fn end_lease(&self, lease: i64) {
        if let Ok(mut m) = self.leases.lock() {
            m.remove(&lease);
        }
        let _ = self.run(|mut c| async move { c.lease_revoke(lease).await });
    }
}

/// The client TLS settings of `tls`: its CA, and its certificate and key
/// if etcd checks clients. An unreadable file is an error naming its key.
fn tls_options(tls: &EtcdTls) -> Result<TlsOptions, HaError> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| HaError::Tls(format!("{key} '{}': {e}", path.display())))
    };
    let mut options = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read("high-availability.etcd.ssl.trust-cert", &tls.trust_cert)?));
    if let Some((cert, key)) = &tls.identity {
        let cert = read("high-availability.etcd.ssl.cert", cert)?;
        let key = read("high-availability.etcd.ssl.key", key)?;
        options = options.identity(Identity::from_pem(cert, key));
    }
    if let Some(name) = &tls.server_name {
        options = options.domain_name(name.clone());
    }
    Ok(options)
}
