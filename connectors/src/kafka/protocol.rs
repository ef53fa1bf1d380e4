//! The few Kafka protocol requests librdkafka has no API for.
//!
//! librdkafka cannot resume a transaction another producer (or an earlier
//! process) opened. To commit a transaction recorded in a checkpoint after a
//! restart, the sink talks to the transaction coordinator directly, as
//! Flink does by resuming its producer: `FindCoordinator` for the
//! transactional id, then `EndTxn(commit)` with the producer id and epoch the
//! checkpoint stored. `DescribeTransactions` (Kafka ≥ 3.0) reads a live
//! transaction's producer id and epoch at pre-commit, and tells a transaction
//! committed before a crash from one that was lost.

use super::broker_connection::{exchange, BrokerSecurity};
use kafka_protocol::messages::{
    describe_configs_request::DescribeConfigsResource, ApiKey, DescribeConfigsRequest, DescribeConfigsResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::time::Duration;

/// A transaction as the coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    /// `Empty`, `Ongoing`, `PrepareCommit`, `CompleteCommit`, `PrepareAbort`, `CompleteAbort`, ...
    pub state: String,
    /// Its producer id.
    pub producer_id: i64,
    /// Its producer epoch.
    pub producer_epoch: i16,
}

/// The request versions this client sends, pinned: each is one the brokers
/// of both lines we test answer (3.9 and 4.x, which removed many old versions
/// in KIP-896), and whose answers this client was written against. Raising
/// one changes what the coordinator does (`EndTxn` v5 and up is a
/// transaction-version-2 request: the coordinator bumps the producer epoch
/// when it ends the transaction, and answers a repeated end differently), so
/// change them only together with the recovery tests on both broker lines.
pub mod versions {
    /// `FindCoordinator` v2 (v0 was removed in Kafka 4.0; v4 batches keys).
    pub const FIND_COORDINATOR: i16 = 2;
    /// `DescribeTransactions` v0 (the only version).
    pub const DESCRIBE_TRANSACTIONS: i16 = 0;
    /// `EndTxn` v1: a transaction-version-1 end, as librdkafka's own
    /// commits (it sends v0–v1), so that a commit replayed from a
    /// checkpoint is judged by the rules the live producer's commit
    /// followed.
    pub const END_TXN: i16 = 1;
    /// `DescribeConfigs` v1 (v0 was removed in Kafka 4.0).
    pub const DESCRIBE_CONFIGS: i16 = 1;
}

/// Kafka error codes this client acts on.
mod code {
    pub const NONE: i16 = 0;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    pub const CONCURRENT_TRANSACTIONS: i16 = 51;
    pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
    pub const PRODUCER_FENCED: i16 = 90;
}

/// How ending a transaction went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndTxnOutcome {
    /// The coordinator accepted the end: done now, or taken as a retry of
    /// the same end it had already made at this producer epoch (a
    /// transaction-version-1 coordinator answers a repeated commit so).
    Ended,
    /// The coordinator refused the end, and its description shows the
    /// transaction committed by this producer (e.g. before a crash, at the
    /// bumped epoch of a transaction-version-2 end).
    AlreadyCommitted,
}

/// Talks to the brokers of `bootstrap` (comma-separated host:port).
#[derive(Debug, Clone)]
pub struct TxnCoordinatorClient {
    bootstrap: Vec<String>,
    timeout: Duration,
    security: BrokerSecurity,
}

impl TxnCoordinatorClient {
    /// A client for `bootstrap` with a per-request `timeout`.
    pub fn new(bootstrap: &str, timeout: Duration) -> Self {
        TxnCoordinatorClient {
            bootstrap: bootstrap.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
            timeout,
            security: BrokerSecurity::plaintext(),
        }
    }

    /// Connects with TLS and SASL as `security` says.
    pub fn with_security(mut self, security: BrokerSecurity) -> Self {
        self.security = security;
        self
    }

    fn call<Req: Encodable, Resp: Decodable>(
        &self,
        addr: &str,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, String> {
        let mut stream = self.security.connect(addr, self.timeout)?;
        exchange(&mut *stream, key, version, request).map_err(|e| format!("{addr}: {e}"))
    }

    /// A broker configuration value (from the first bootstrap broker that
    /// answers), e.g. `transaction.max.timeout.ms`; `None` if unknown.
    pub fn broker_config(&self, name: &str) -> Result<Option<String>, String> {
        // Any broker will do; the coordinator lookup names one with its id.
        let (node, addr) = self.coordinator_node("sluice-config-probe")?;
        let resource = DescribeConfigsResource::default()
            .with_resource_type(4) // BROKER
            .with_resource_name(StrBytes::from_string(node.to_string()))
            .with_configuration_keys(Some(vec![StrBytes::from_string(name.to_string())]));
        let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
        let response: DescribeConfigsResponse =
            self.call(&addr, ApiKey::DescribeConfigs, versions::DESCRIBE_CONFIGS, &request)?;
        Ok(response
            .results
            .into_iter()
            .flat_map(|r| r.configs)
            .find(|c| c.name.as_str() == name)
            .and_then(|c| c.value.map(|v| v.as_str().to_string())))
    }

    /// The address of the transaction coordinator of `transactional_id`.
    pub fn find_coordinator(&self, transactional_id: &str) -> Result<String, String> {
        self.coordinator_node(transactional_id).map(|(_, addr)| addr)
    }

    /// The node id and address of the transaction coordinator of `transactional_id`.
    fn coordinator_node(&self, transactional_id: &str) -> Result<(i32, String), String> {
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(transactional_id.to_string()))
            .with_key_type(1);
        let mut last = String::from("no bootstrap server given");
        for addr in &self.bootstrap {
            for _ in 0..20 {
                match self.call::<_, FindCoordinatorResponse>(
                    addr,
                    ApiKey::FindCoordinator,
                    versions::FIND_COORDINATOR,
                    &request,
                ) {
                    Ok(r) if r.error_code == code::NONE => {
                        return Ok((r.node_id.0, format!("{}:{}", r.host.as_str(), r.port)))
                    }
                    Ok(r)
                        if matches!(
                            r.error_code,
                            code::COORDINATOR_NOT_AVAILABLE | code::COORDINATOR_LOAD_IN_PROGRESS
                        ) =>
                    {
                        last = format!("coordinator not available yet (error {})", r.error_code);
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Ok(r) => {
                        last = format!("FindCoordinator failed with error {}", r.error_code);
                        break;
                    }
                    Err(e) => {
                        last = e;
                        break;
                    }
                }
            }
        }
        Err(format!("cannot find the transaction coordinator of '{transactional_id}': {last}"))
    }

    /// Describes the transaction of `transactional_id`; `None` if the
    /// coordinator does not know the id.
    ///
    /// Retries (for about 10 s) while the coordinator is loading its
    /// transaction log or has moved, as a freshly started or failed-over
    /// broker answers for a while.
    pub fn describe(&self, transactional_id: &str) -> Result<Option<TxnDescription>, String> {
        let request = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_string(transactional_id.to_string()))]);
        let mut last = 0;
        for _ in 0..50 {
            let coordinator = self.find_coordinator(transactional_id)?;
            let response: DescribeTransactionsResponse =
                self.call(&coordinator, ApiKey::DescribeTransactions, versions::DESCRIBE_TRANSACTIONS, &request)?;
            let Some(state) = response.transaction_states.into_iter().next() else {
                return Err("DescribeTransactions returned nothing".into());
            };
            match state.error_code {
                code::NONE => {
                    return Ok(Some(TxnDescription {
                        state: state.transaction_state.as_str().to_string(),
                        producer_id: state.producer_id.0,
                        producer_epoch: state.producer_epoch,
                    }))
                }
                code::TRANSACTIONAL_ID_NOT_FOUND => return Ok(None),
                code::COORDINATOR_LOAD_IN_PROGRESS | code::COORDINATOR_NOT_AVAILABLE | code::NOT_COORDINATOR => {
                    last = state.error_code;
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => return Err(format!("DescribeTransactions of '{transactional_id}' failed with error {other}")),
            }
        }
        Err(format!(
            "DescribeTransactions of '{transactional_id}': the coordinator stayed unavailable for 10 s (error {last}: \
             loading its transaction log or moving); is the broker healthy?"
        ))
    }

    /// Commits (or aborts) the transaction `transactional_id` opened by
    /// producer `producer_id` at `epoch`, retrying while the coordinator is
    /// busy. Says whether it was already committed.
    pub fn end_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<EndTxnOutcome, String> {
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(transactional_id.to_string())))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        let mut last = String::new();
        for attempt in 0..50u32 {
            let coordinator = self.find_coordinator(transactional_id)?;
            let response: EndTxnResponse = match self.call(&coordinator, ApiKey::EndTxn, versions::END_TXN, &request) {
                Ok(r) => r,
                Err(e) => {
                    last = e;
                    std::thread::sleep(Duration::from_millis(100 * u64::from(attempt.min(10) + 1)));
                    continue;
                }
            };
            match response.error_code {
                code::NONE => return Ok(EndTxnOutcome::Ended),
                code::CONCURRENT_TRANSACTIONS
                | code::NOT_COORDINATOR
                | code::COORDINATOR_LOAD_IN_PROGRESS
                | code::COORDINATOR_NOT_AVAILABLE => {
                    last = format!("coordinator busy (error {})", response.error_code);
                    std::thread::sleep(Duration::from_millis(100));
                }
                code::INVALID_TXN_STATE
                | code::INVALID_PRODUCER_EPOCH
                | code::PRODUCER_FENCED
                | code::INVALID_PRODUCER_ID_MAPPING => {
                    // Maybe already committed (before a crash, or by the
                    // live producer): the coordinator's description decides.
                    return match self.describe(transactional_id)? {
                        Some(d) if commit && committed_by(&d, producer_id, epoch) => {
                            Ok(EndTxnOutcome::AlreadyCommitted)
                        }
                        Some(d) if !commit && (d.state == "CompleteAbort" || d.state == "Empty") => {
                            Ok(EndTxnOutcome::Ended)
                        }
                        other => Err(format!(
                            "the coordinator refused to {} transaction '{transactional_id}' (producer {producer_id}, \
                             epoch {epoch}): error {}; it now reports {:?}",
                            if commit { "commit" } else { "abort" },
                            response.error_code,
                            other
                        )),
                    };
                }
                other => return Err(format!("EndTxn of '{transactional_id}' failed with error {other}")),
            }
        }
        Err(format!("cannot end transaction '{transactional_id}': {last}"))
    }
}

/// Whether `d` shows the transaction of producer `producer_id` at `epoch`
/// committed: `CompleteCommit` under that producer id, at that epoch or the
/// next one — a transaction-version-2 end bumps the epoch as it completes
/// (KIP-890), whichever client version ended it. A later transaction under
/// the same id could show the same, but the sink never opens a second
/// transaction under a transactional id.
fn committed_by(d: &TxnDescription, producer_id: i64, epoch: i16) -> bool {
    d.state == "CompleteCommit"
        && d.producer_id == producer_id
        && (d.producer_epoch == epoch || i32::from(d.producer_epoch) == i32::from(epoch) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(state: &str, producer_id: i64, producer_epoch: i16) -> TxnDescription {
        TxnDescription { state: state.into(), producer_id, producer_epoch }
    }

    #[test]
    fn a_commit_is_recognised_at_the_same_or_the_bumped_epoch_only() {
        assert!(committed_by(&described("CompleteCommit", 7, 3), 7, 3), "transaction version 1");
        assert!(committed_by(&described("CompleteCommit", 7, 4), 7, 3), "transaction version 2 bumps on end");
        assert!(!committed_by(&described("CompleteCommit", 7, 5), 7, 3), "two ends later: not ours");
        assert!(!committed_by(&described("CompleteCommit", 7, 2), 7, 3));
        assert!(!committed_by(&described("CompleteCommit", 8, 3), 7, 3), "another producer id");
        assert!(!committed_by(&described("CompleteAbort", 7, 3), 7, 3));
        assert!(!committed_by(&described("CompleteAbort", 7, 4), 7, 3), "fenced: aborted, not committed");
        assert!(!committed_by(&described("Empty", 7, 4), 7, 3), "re-initialised: cannot tell, so no");
        assert!(!committed_by(&described("CompleteCommit", 7, i16::MAX), 7, i16::MAX - 2));
    }
}
