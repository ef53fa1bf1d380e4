//! The wall clock every part of Sluice reads: processing time, checkpoint
//! barrier timestamps, job and upload times in the cluster.
//!
//! One function with one return type; callers that store another integer
//! type convert where they call it.
//!
//! ```
//! let before = sluice_checkpoint::clock::now_ms();
//! assert!(before > 1_600_000_000_000, "milliseconds since the Unix epoch");
//! assert!(sluice_checkpoint::clock::now_ms() >= before);
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (processing time). A clock set before
/// 1970 reads as 0.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}
