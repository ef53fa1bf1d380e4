//! # sluice-test-support
//!
//! What Sluice's tests and benchmarks share, on `std` alone:
//!
//! * [`free_port`] — a free TCP port on 127.0.0.1;
//! * [`http`] — a small HTTP/1.0 client for loopback servers (the REST API,
//!   `/metrics`, Prometheus), independent of the `sluice` CLI's client so
//!   that a test does not check the server with the code it tests;
//! * [`unique_name`] — a name no earlier run used (Kafka topics, job names).
#![deny(missing_docs)]

pub mod http;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A free TCP port on 127.0.0.1: bound, then released, so that nothing
/// listens on it until someone binds it again.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `prefix-<nanoseconds since the Unix epoch>-<n>`: a name that no earlier
/// run used (the time) and no other call in this process (`n` counts the
/// calls), e.g. for a Kafka topic on a broker that outlives the tests.
pub fn unique_name(prefix: &str) -> String {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-{nanos}-{}", CALLS.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn unique_names_differ() {
        let (a, b) = (unique_name("t"), unique_name("t"));
        assert!(a.starts_with("t-") && b.starts_with("t-"), "{a} {b}");
        assert_ne!(a, b);
    }
}
