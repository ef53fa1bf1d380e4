//! Write-behind for the RocksDB backend: the batches of dirty entries that
//! the write-back cache evicts are applied to RocksDB on a background
//! thread while the task goes on, so that the memtable inserts — about a
//! fifth of a task's time when every record misses the cache — run on
//! another core.
//!
//! At most [`MAX_IN_FLIGHT`] batches are in flight (two: so that the batch a
//! barrier writes behind need not wait for the one the cache evicted just
//! before). Until a batch has landed, reads of its keys are answered from
//! the batch itself (a hash index over it; the newest batch first), so no
//! read sees RocksDB without a write the task has already made. The thread
//! applies batches in the order they were sent. Everything that needs
//! RocksDB whole — a synchronous write, a materialization, an iteration —
//! first waits for every batch ([`WriteBehind::wait`]). Before it writes a
//! batch, the thread makes the checkpoints deferred at earlier barriers, as
//! a synchronous write does, so they never hold a later write.
//!
//! A failed write is reported by the next [`WriteBehind::wait`] (or
//! [`WriteBehind::send`]), and fails the task like a synchronous one.

use crate::error::{Error, Result};
use hashbrown::HashTable;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Batches sent and not yet landed, at most.
pub(crate) const MAX_IN_FLIGHT: usize = 2;

/// (key, value or deletion) pairs of one column family.
pub(crate) type Entries = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Applies a batch to RocksDB (on the writer thread).
pub(crate) type ApplyFn = Box<dyn FnMut(&str, &Entries) -> Result<()> + Send>;

/// A batch on its way into RocksDB.
struct Batch {
    cf: String,
    entries: Entries,
}

/// A batch in flight, with an index of its keys (later entries of a key
/// win, so the index keeps the last position of each key).
struct InFlight {
    batch: Arc<Batch>,
    index: HashTable<usize>,
}

/// The writer thread of one RocksDB instance. See the module docs.
pub(crate) struct WriteBehind {
    jobs: Option<SyncSender<Arc<Batch>>>,
    results: Receiver<Result<()>>,
    /// Oldest first; the thread reports each one's result in this order.
    in_flight: VecDeque<InFlight>,
    hasher: foldhash::fast::RandomState,
    thread: Option<JoinHandle<()>>,
    /// Held by the thread while it writes (tests hold it to keep a batch
    /// in flight).
    #[cfg_attr(not(test), allow(dead_code))]
    gate: Arc<Mutex<()>>,
}

impl std::fmt::Debug for WriteBehind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBehind").field("in_flight", &self.in_flight.len()).finish_non_exhaustive()
    }
}

impl WriteBehind {
    /// Starts the writer thread; `apply` writes one batch.
    pub(crate) fn start(name: &str, mut apply: ApplyFn) -> Result<Self> {
        let (jobs, inbox) = sync_channel::<Arc<Batch>>(MAX_IN_FLIGHT);
        let (done, results) = sync_channel::<Result<()>>(MAX_IN_FLIGHT);
        let gate = Arc::new(Mutex::new(()));
        let held = Arc::clone(&gate);
        let thread = std::thread::Builder::new()
            .name(format!("rocksdb-write-{name}").chars().take(15).collect())
            .spawn(move || {
                for batch in inbox {
                    let _writing = held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if done.send(apply(&batch.cf, &batch.entries)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::State { state: name.to_string(), message: format!("cannot start the writer: {e}") })?;
        Ok(WriteBehind {
            jobs: Some(jobs),
            results,
            in_flight: VecDeque::new(),
            hasher: foldhash::fast::RandomState::default(),
            thread: Some(thread),
            gate,
        })
    }

    /// Hands `entries` of column family `cf` to the writer (of two entries
    /// of one key the later one wins); first waits for the oldest batch if
    /// [`MAX_IN_FLIGHT`] are in flight.
    pub(crate) fn send(&mut self, cf: &str, entries: Entries) -> Result<()> {
        self.reap()?;
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            self.land_oldest()?;
        }
        if entries.is_empty() {
            return Ok(());
        }
        let mut index = HashTable::with_capacity(entries.len());
        for (i, (key, _)) in entries.iter().enumerate() {
            let h = self.hasher.hash_one(key.as_slice());
            match index.find_mut(h, |&j: &usize| entries.get(j).is_some_and(|(k, _)| k == key)) {
                Some(slot) => *slot = i,
                None => {
                    index.insert_unique(h, i, |&j: &usize| {
                        self.hasher.hash_one(entries.get(j).map(|(k, _)| k.as_slice()).unwrap_or_default())
                    });
                }
            }
        }
        let batch = Arc::new(Batch { cf: cf.to_string(), entries });
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(Arc::clone(&batch)).map_err(|_| stopped())?;
        self.in_flight.push_back(InFlight { batch, index });
        Ok(())
    }

    /// Forgets the batches that have landed already (without waiting).
    fn reap(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            match self.results.try_recv() {
                Ok(result) => {
                    self.in_flight.pop_front();
                    result?;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(stopped()),
            }
        }
        Ok(())
    }

    /// Waits until the oldest batch in flight (if any) has landed.
    fn land_oldest(&mut self) -> Result<()> {
        if self.in_flight.pop_front().is_none() {
            return Ok(());
        }
        self.results.recv().map_err(|_| stopped())?
    }

    /// The entry of `key` in `cf` if a batch in flight holds it (the newest one):
    /// `Some(None)` for a deletion.
    pub(crate) fn lookup(&self, cf: &str, key: &[u8]) -> Option<Option<&[u8]>> {
        let h = self.hasher.hash_one(key);
        // The newest batch holds the latest entry of a key.
        self.in_flight.iter().rev().filter(|f| f.batch.cf == cf).find_map(|f| {
            let entries = &f.batch.entries;
            let &i = f.index.find(h, |&j| entries.get(j).is_some_and(|(k, _)| k.as_slice() == key))?;
            entries.get(i).map(|(_, v)| v.as_deref())
        })
    }

    /// Waits until every batch in flight has landed in RocksDB.
    pub(crate) fn wait(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.land_oldest()?;
        }
        Ok(())
    }

    /// The lock the thread holds while it writes: tests hold it to keep a
    /// batch in flight.
    #[cfg(test)]
    pub(crate) fn gate(&self) -> Arc<Mutex<()>> {
        Arc::clone(&self.gate)
    }

    /// Lets the batch in flight land, then ends the thread.
    pub(crate) fn stop(&mut self) {
        let _ = self.wait();
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stopped() -> Error {
    Error::State { state: String::new(), message: "the RocksDB writer thread stopped (a panic in RocksDB?)".into() }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn entry(k: &str, v: Option<&str>) -> (Vec<u8>, Option<Vec<u8>>) {
        (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()))
    }

    #[test]
    fn a_batch_is_readable_until_it_lands_and_errors_surface_at_the_next_wait() {
        let written: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
        let w = Arc::clone(&written);
        let mut writer = WriteBehind::start(
            "t",
            Box::new(move |cf: &str, entries: &Entries| {
                if cf == "bad" {
                    return Err(Error::State { state: cf.into(), message: "disk full".into() });
                }
                w.lock().unwrap().push((cf.to_string(), entries.len()));
                Ok(())
            }),
        )
        .unwrap();
        let gate = writer.gate();
        let held = gate.lock().unwrap();
        writer.send("s", vec![entry("a", Some("1")), entry("b", None), entry("b", Some("2"))]).unwrap();
        // In flight (the writer is held): answered from the batch; the later
        // entry of a key wins; another column family is not looked into.
        assert_eq!(writer.lookup("s", b"a"), Some(Some(&b"1"[..])));
        assert_eq!(writer.lookup("s", b"b"), Some(Some(&b"2"[..])));
        assert_eq!(writer.lookup("s", b"c"), None);
        assert_eq!(writer.lookup("other", b"a"), None);
        // A second batch goes out without waiting for the first; its
        // entries win over the first's.
        writer.send("s", vec![entry("b", None), entry("c", Some("3"))]).unwrap();
        assert_eq!(writer.lookup("s", b"a"), Some(Some(&b"1"[..])));
        assert_eq!(writer.lookup("s", b"b"), Some(None));
        assert_eq!(writer.lookup("s", b"c"), Some(Some(&b"3"[..])));
        assert!(written.lock().unwrap().is_empty());
        drop(held);
        writer.wait().unwrap();
        assert_eq!(writer.lookup("s", b"a"), None, "landed: read RocksDB again");
        assert_eq!(writer.lookup("s", b"c"), None);
        assert_eq!(*written.lock().unwrap(), vec![("s".to_string(), 3), ("s".to_string(), 2)], "in order");
        writer.send("s", vec![entry("x", None)]).unwrap();
        assert_eq!(writer.lookup("s", b"x"), Some(None));
        writer.send("bad", vec![entry("y", Some("1"))]).unwrap();
        let err = writer.wait().unwrap_err().to_string();
        assert!(err.contains("disk full"), "{err}");
        assert_eq!(written.lock().unwrap().len(), 3);
    }
}
