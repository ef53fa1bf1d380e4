//! [`Admission`]: a cap on the connections a server serves at once, so that
//! a flood of idle connections costs a bounded number of threads and file
//! descriptors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts a server's open connections against a limit.
#[derive(Debug, Clone)]
pub struct Admission {
    open: Arc<AtomicUsize>,
    limit: usize,
    refused: Arc<AtomicUsize>,
}

/// One admitted connection; dropping it frees the place.
#[derive(Debug)]
pub struct Admitted {
    open: Arc<AtomicUsize>,
}

impl Admission {
    /// At most `limit` connections at once.
    pub fn new(limit: usize) -> Self {
        Admission { open: Arc::new(AtomicUsize::new(0)), limit, refused: Arc::new(AtomicUsize::new(0)) }
    }

    /// A place for one more connection, or `None` at the limit (close it;
    /// refusals are logged, sparsely).
    pub fn try_admit(&self) -> Option<Admitted> {
        let mut open = self.open.load(Ordering::Relaxed);
        loop {
            if open >= self.limit {
                let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                // A flood must not flood the log: the 1st, 2nd, 4th, 8th, ... refusal.
                if refused.is_power_of_two() {
                    tracing::warn!("refused {refused} connection(s) so far: {} are open, the limit", self.limit);
                }
                return None;
            }
            match self.open.compare_exchange_weak(open, open + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Admitted { open: self.open.clone() }),
                Err(now) => open = now,
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_frees_places() {
        let a = Admission::new(2);
        let x = a.try_admit().unwrap();
        let _y = a.try_admit().unwrap();
        assert!(a.try_admit().is_none());
        drop(x);
        assert_eq!(a.open(), 1);
        assert!(a.try_admit().is_some());
    }
}
