//! [`JobSecret`]: a random token the JobManager makes for each job and hands
//! only to that job's processes (in their environment), so that a peer that
//! knows it belongs to the job.

use super::tls::random_bytes;
use super::SecurityError;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// A job's secret: 32 random bytes. Compared in constant time; never
/// printed (`Debug` shows `JobSecret(..)`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSecret([u8; 32]);

impl std::fmt::Debug for JobSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobSecret(..)")
    }
}

impl JobSecret {
    /// A fresh secret from the system's secure random source.
    pub fn generate() -> Result<Self, SecurityError> {
        let mut bytes = [0u8; 32];
        random_bytes(&mut bytes)?;
        Ok(JobSecret(bytes))
    }

    /// Whether `other` is this secret (constant time).
    pub fn matches(&self, other: &JobSecret) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// Hex, for a child process's environment.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`JobSecret::to_hex`]'s form.
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(JobSecret(bytes))
    }

    /// The bytes, for a wire hello.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From a wire hello.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        JobSecret(bytes)
    }
}

/// `bytes` random bytes from the system's secure source, as hex (for ids
/// no one may guess).
pub fn random_hex(bytes: usize) -> Result<String, SecurityError> {
    let mut buf = vec![0u8; bytes];
    random_bytes(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The SHA-256 of `data`, as hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_round_trip_and_hide_in_debug() {
        let a = JobSecret::generate().unwrap();
        let b = JobSecret::generate().unwrap();
        assert!(!a.matches(&b));
        let again = JobSecret::from_hex(&a.to_hex()).unwrap();
        assert!(a.matches(&again));
        assert_eq!(format!("{a:?}"), "JobSecret(..)");
        assert!(JobSecret::from_hex("zz").is_none());
        assert!(JobSecret::from_hex(&"é".repeat(32)).is_none());
    }
}
