//! The entries of one state in chunks that never move, and the
//! copy-on-write protocol that lets the upload thread encode a heap
//! snapshot while the task thread goes on changing the state.
//!
//! # Arena
//!
//! Entries live in chunks of [`CHUNK`] entries. A chunk is allocated once
//! and never moves or shrinks, so a snapshot can hold the chunks (shared
//! through `Arc`) and read entries by position from another thread. Only
//! the task thread writes entries; positions below the arena's length are
//! initialised.
//!
//! # Concurrent snapshots ([`SnapshotGuard`])
//!
//! At a barrier the task thread only marks the changed positions *pending*
//! (two bits per position) and hands the chunks to the upload thread, which
//! encodes the pending entries in position order. Each pending position is
//! encoded exactly once, by whichever thread gets to it first:
//!
//! * the upload thread claims a position (`PENDING → READING`), reads and
//!   encodes the entry, and releases it (`READING → NONE`);
//! * before the task thread writes an entry, it resolves the position: if it
//!   is still `PENDING`, it encodes the entry's current (snapshot) value
//!   itself into the guard's side table and marks it `STOLEN`; if the upload
//!   thread is `READING` it, it waits for the (short) read to end.
//!
//! So the upload thread never reads an entry while the task thread writes
//! it, and the snapshot holds every entry as it was at the barrier. This is
//! Flink's copy-on-write snapshot of its heap state table, per entry.
//!
//! This is the only module of the crate with `unsafe` code; every other
//! module uses the safe API below.
#![allow(unsafe_code)]

use crate::error::{Error, Result};
use crate::state::change_file::{put_removal, put_value_entry};
use crate::state::entry_set::EntrySet;
use crate::state::table::{Key, Slot};
use crate::state::ttl::StateTtlConfig;
use serde::Serialize;
use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// log2 of the entries per chunk.
const CHUNK_BITS: u32 = 12;
/// Entries per chunk.
pub(crate) const CHUNK: usize = 1 << CHUNK_BITS;

/// An arena position: a key and its slot, or a free position.
#[derive(Debug, Clone)]
pub(crate) struct Entry<T> {
    pub(crate) key: Key,
    pub(crate) slot: Slot<T>,
    pub(crate) occupied: bool,
}

/// A fixed block of entries; the first `init` are initialised.
struct Chunk<T> {
    cells: Box<[UnsafeCell<MaybeUninit<Entry<T>>>]>,
    init: AtomicUsize,
}

// SAFETY: a chunk owns its entries like a `Vec` does; shared access follows
// the protocol in the module docs (one writer, readers only of positions
// the writer does not touch meanwhile), so it needs `T: Sync` to be shared.
unsafe impl<T: Send> Send for Chunk<T> {}
// SAFETY: see above.
unsafe impl<T: Send + Sync> Sync for Chunk<T> {}

impl<T> Chunk<T> {
    fn new() -> Self {
        let cells = (0..CHUNK).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect();
        Chunk { cells, init: AtomicUsize::new(0) }
    }

    /// The cell at `offset` if it is initialised.
    fn cell(&self, offset: usize) -> Option<*mut Entry<T>> {
        if offset < self.init.load(Ordering::Acquire) {
            self.cells.get(offset).map(|c| c.get().cast::<Entry<T>>())
        } else {
            None
        }
    }
}

impl<T> Drop for Chunk<T> {
    fn drop(&mut self) {
        let n = *self.init.get_mut();
        for cell in self.cells.iter_mut().take(n) {
            // SAFETY: the first `n` cells are initialised, and dropping the
            // chunk means no one else holds it.
            unsafe { cell.get_mut().assume_init_drop() };
        }
    }
}

/// Splits a position into (chunk, offset).
fn split(pos: u32) -> (usize, usize) {
    ((pos >> CHUNK_BITS) as usize, (pos as usize) & (CHUNK - 1))
}

/// The position of the entry appended to an arena of `len` entries: a
/// state holds at most `u32::MAX` entries (positions are `u32`, and
/// `u32::MAX` itself is never one, so a length always fits too).
fn next_position(len: usize) -> Result<u32> {
    u32::try_from(len).ok().filter(|p| *p < u32::MAX).ok_or_else(|| Error::State {
        state: String::new(),
        message: format!("a state of the heap backend holds at most {} entries", u32::MAX),
    })
}

/// The entries of one state. Only its owner (the task thread) writes.
pub(crate) struct Arena<T> {
    chunks: Vec<Arc<Chunk<T>>>,
    len: usize,
    /// The snapshot the upload thread is encoding, if any.
    active: Option<Active>,
}

/// A snapshot being encoded: its guard, time and the state's TTL.
struct Active {
    guard: Arc<SnapshotGuard>,
    now: i64,
    ttl: Option<StateTtlConfig>,
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Arena { chunks: Vec::new(), len: 0, active: None }
    }
}

/// The value of a slot and its timestamp, unless absent or expired.
fn live<T>(ttl: Option<StateTtlConfig>, slot: &Slot<T>, now: i64) -> Option<(i64, &T)> {
    if ttl.is_some_and(|t| t.is_expired(slot.stamp, now)) {
        return None;
    }
    slot.value.as_ref().map(|v| (slot.stamp, v))
}

/// Encodes one entry as a snapshot at `now` holds it (a removal if it is
/// absent or expired).
pub(crate) fn encode_entry<T: Serialize>(
    out: &mut Vec<u8>,
    pos: u32,
    e: &Entry<T>,
    ttl: Option<StateTtlConfig>,
    now: i64,
) -> Result<()> {
    match live(ttl, &e.slot, now) {
        Some((stamp, v)) => put_value_entry(out, pos, &e.key, stamp, v),
        None => {
            put_removal(out, pos, &e.key);
            Ok(())
        }
    }
}

impl<T> Arena<T> {
    /// Positions in use (occupied or free).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn cell(&self, pos: u32) -> Option<*mut Entry<T>> {
        let (c, o) = split(pos);
        self.chunks.get(c).and_then(|chunk| chunk.cell(o))
    }

    /// The entry at `pos`.
    #[inline]
    pub(crate) fn get(&self, pos: u32) -> Option<&Entry<T>> {
        // SAFETY: the cell is initialised; the only writer is the owner,
        // which cannot write while `&self` is borrowed, and snapshot
        // readers only read.
        self.cell(pos).map(|c| unsafe { &*c })
    }

    /// The entry at `pos`, to change it. If a snapshot still needs the
    /// entry as it was, it is encoded first (or the upload thread's read of
    /// it is waited for).
    #[inline]
    pub(crate) fn get_mut(&mut self, pos: u32) -> Option<&mut Entry<T>>
    where
        T: Serialize,
    {
        self.resolve(pos);
        // SAFETY: initialised; resolved, so no snapshot reads `pos` until
        // the next snapshot starts (which needs `&mut self`), and `&mut
        // self` excludes the owner's other borrows.
        self.cell(pos).map(|c| unsafe { &mut *c })
    }

    #[inline]
    fn resolve(&mut self, pos: u32)
    where
        T: Serialize,
    {
        let Some(a) = &self.active else { return };
        if a.guard.done.load(Ordering::Acquire) {
            self.active = None;
            return;
        }
        self.steal(a, pos);
    }

    /// Settles `pos` with the snapshot of `a` (module docs).
    fn steal(&self, a: &Active, pos: u32)
    where
        T: Serialize,
    {
        let g = &a.guard;
        let mut state = g.state(pos);
        loop {
            match state {
                PENDING => {
                    let mut bytes = Vec::new();
                    if let Some(e) = self.get(pos) {
                        // An encoding error leaves the bytes empty: the
                        // upload reports it and the snapshot is declined.
                        if encode_entry(&mut bytes, pos, e, a.ttl, a.now).is_err() {
                            bytes.clear();
                        }
                    }
                    g.put_stolen(pos, bytes);
                    match g.transition(pos, PENDING, STOLEN) {
                        Ok(()) => return,
                        Err(s) => {
                            g.take_stolen(pos);
                            state = s;
                        }
                    }
                }
                READING => state = g.wait_while_reading(pos),
                _ => return,
            }
        }
    }

    /// Ends the snapshot being encoded, if any: when it overlaps a new one,
    /// encodes here what the upload thread has not read yet.
    fn finish_snapshot(&mut self)
    where
        T: Serialize,
    {
        let Some(a) = self.active.take() else { return };
        if a.guard.done.load(Ordering::Acquire) || Arc::strong_count(&a.guard) == 1 {
            return;
        }
        for pos in a.guard.unfinished() {
            self.steal(&a, pos);
        }
    }

    /// Starts a snapshot of the positions in `set` as they are now (`now`
    /// and `ttl` decide which entries are expired); the returned reader
    /// encodes them on another thread while this arena changes.
    pub(crate) fn begin_snapshot(
        &mut self,
        set: Arc<EntrySet>,
        now: i64,
        ttl: Option<StateTtlConfig>,
    ) -> SnapshotReader<T>
    where
        T: Serialize,
    {
        self.finish_snapshot();
        let guard = Arc::new(SnapshotGuard::new(&set));
        self.active = Some(Active { guard: Arc::clone(&guard), now, ttl });
        SnapshotReader { chunks: self.chunks.clone(), guard, set }
    }

    /// Appends an entry; returns its position, or an error once the state
    /// holds as many entries as a position can address (`u32::MAX`).
    pub(crate) fn push(&mut self, entry: Entry<T>) -> Result<u32> {
        let pos = next_position(self.len)?;
        let (c, o) = split(pos);
        if c == self.chunks.len() {
            self.chunks.push(Arc::new(Chunk::new()));
        }
        if let Some(chunk) = self.chunks.get(c) {
            if let Some(cell) = chunk.cells.get(o) {
                // SAFETY: the cell at the arena's length is not initialised
                // and no one reads it; it is published by `init` below.
                unsafe { (*cell.get()).write(entry) };
                chunk.init.store(o + 1, Ordering::Release);
            }
        }
        self.len += 1;
        Ok(pos)
    }

    /// Every position and its entry.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Entry<T>)> {
        (0..self.len as u32).filter_map(|p| self.get(p).map(|e| (p, e)))
    }

    /// Takes every entry out, leaving the arena empty (entries of chunks a
    /// snapshot still holds are cloned).
    pub(crate) fn take_all(&mut self) -> Vec<Entry<T>>
    where
        T: Clone + Serialize,
    {
        self.finish_snapshot();
        let mut out = Vec::with_capacity(self.len);
        for mut chunk in std::mem::take(&mut self.chunks) {
            match Arc::get_mut(&mut chunk) {
                Some(owned) => {
                    let n = std::mem::take(owned.init.get_mut());
                    for cell in owned.cells.iter_mut().take(n) {
                        // SAFETY: initialised, and `init` is now 0, so the
                        // chunk's drop will not drop it again.
                        out.push(unsafe { cell.get_mut().assume_init_read() });
                    }
                }
                None => {
                    let n = chunk.init.load(Ordering::Acquire);
                    for o in 0..n {
                        if let Some(c) = chunk.cell(o) {
                            // SAFETY: initialised; snapshots only read.
                            out.push(unsafe { (*c).clone() });
                        }
                    }
                }
            }
        }
        self.len = 0;
        out
    }
}

/// One entry of a snapshot, as [`SnapshotReader::for_each`] hands it over.
pub(crate) enum Read<'a, T> {
    /// The entry as it was at the barrier (it may be free: an error).
    Entry(Option<&'a Entry<T>>),
    /// The task thread's encoding of it (empty: its encoding failed).
    Encoded(Vec<u8>),
}

/// The upload thread's side of a snapshot: the chunks and the positions.
pub(crate) struct SnapshotReader<T> {
    chunks: Vec<Arc<Chunk<T>>>,
    guard: Arc<SnapshotGuard>,
    set: Arc<EntrySet>,
}

impl<T> SnapshotReader<T> {
    /// Hands every position of the snapshot, in increasing order, to `f`
    /// with its entry as it was at the barrier.
    pub(crate) fn for_each(self, mut f: impl FnMut(u32, Read<'_, T>) -> Result<()>) -> Result<()> {
        let g = &self.guard;
        let result = self.set.iter().try_for_each(|pos| match g.transition(pos, PENDING, READING) {
            Ok(()) => {
                let _claim = Claim { guard: g, pos };
                let (c, o) = split(pos);
                // SAFETY: claimed, so the owner does not write it until the
                // claim is released (after `f`); initialised if `cell` says so.
                let entry = self.chunks.get(c).and_then(|chunk| chunk.cell(o)).map(|c| unsafe { &*c });
                f(pos, Read::Entry(entry))
            }
            Err(STOLEN) => f(pos, Read::Encoded(g.take_stolen(pos).unwrap_or_default())),
            Err(s) => Err(Error::State {
                state: String::new(),
                message: format!("internal error: entry {pos} of a snapshot is in state {s}"),
            }),
        });
        // Done (even on an error: then the owner no longer waits for it).
        g.done.store(true, Ordering::Release);
        result
    }
}

/// No snapshot needs the entry (or the upload thread has encoded it).
const NONE: u64 = 0;
/// The snapshot still needs the entry as it was at the barrier.
const PENDING: u64 = 1;
/// The upload thread is reading the entry.
const READING: u64 = 2;
/// The task thread encoded the entry into the side table before changing it.
const STOLEN: u64 = 3;

/// The shared state of one table's concurrent snapshot (module docs).
struct SnapshotGuard {
    /// Two bits per position.
    states: Vec<AtomicU64>,
    /// Entries the task thread encoded before changing them.
    stolen: Mutex<HashMap<u32, Vec<u8>>>,
    /// The upload thread has handled every position.
    done: AtomicBool,
}

impl SnapshotGuard {
    /// A guard with the positions of `set` pending.
    pub(crate) fn new(set: &EntrySet) -> Self {
        let mut states = Vec::with_capacity(set.words().len() * 2);
        for &w in set.words() {
            states.push(AtomicU64::new(spread(w as u32)));
            states.push(AtomicU64::new(spread((w >> 32) as u32)));
        }
        SnapshotGuard { states, stolen: Mutex::new(HashMap::new()), done: AtomicBool::new(false) }
    }

    /// The positions still `PENDING` or `READING` (a moment's view).
    pub(crate) fn unfinished(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for (i, w) in self.states.iter().enumerate() {
            let w = w.load(Ordering::Acquire);
            if w == 0 {
                continue;
            }
            for b in 0..32u32 {
                let s = (w >> (b * 2)) & 3;
                if s == PENDING || s == READING {
                    out.push(i as u32 * 32 + b);
                }
            }
        }
        out
    }

    /// The state of `pos`.
    #[inline]
    pub(crate) fn state(&self, pos: u32) -> u64 {
        self.states.get((pos / 32) as usize).map_or(NONE, |w| (w.load(Ordering::Acquire) >> ((pos % 32) * 2)) & 3)
    }

    /// Moves `pos` from `from` to `to`; `Err(actual)` if it was not `from`.
    pub(crate) fn transition(&self, pos: u32, from: u64, to: u64) -> Result<(), u64> {
        let Some(word) = self.states.get((pos / 32) as usize) else { return Err(NONE) };
        let shift = (pos % 32) * 2;
        let mut current = word.load(Ordering::Acquire);
        loop {
            let state = (current >> shift) & 3;
            if state != from {
                return Err(state);
            }
            let next = (current & !(3 << shift)) | (to << shift);
            match word.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(now) => current = now,
            }
        }
    }

    /// Keeps the task thread's encoding of `pos`.
    pub(crate) fn put_stolen(&self, pos: u32, bytes: Vec<u8>) {
        if let Ok(mut m) = self.stolen.lock() {
            m.insert(pos, bytes);
        }
    }

    /// Takes the task thread's encoding of `pos`.
    pub(crate) fn take_stolen(&self, pos: u32) -> Option<Vec<u8>> {
        self.stolen.lock().ok().and_then(|mut m| m.remove(&pos))
    }

    /// Waits while the upload thread reads `pos` (one entry's encoding).
    pub(crate) fn wait_while_reading(&self, pos: u32) -> u64 {
        let mut spins = 0u32;
        loop {
            let s = self.state(pos);
            if s != READING {
                return s;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Bit `i` of `x` to bit `2i` (the `PENDING` state of position `i`).
fn spread(x: u32) -> u64 {
    let mut v = u64::from(x);
    v = (v | (v << 16)) & 0x0000_FFFF_0000_FFFF;
    v = (v | (v << 8)) & 0x00FF_00FF_00FF_00FF;
    v = (v | (v << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    v = (v | (v << 2)) & 0x3333_3333_3333_3333;
    (v | (v << 1)) & 0x5555_5555_5555_5555
}

/// Releases a claimed position even if encoding it fails or panics.
struct Claim<'a> {
    guard: &'a SnapshotGuard,
    pos: u32,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let _ = self.guard.transition(self.pos, READING, NONE);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn entry(i: u64) -> Entry<u64> {
        Entry { key: Key::from_slice(&i.to_be_bytes()), slot: Slot::loaded(Some(i), 0), occupied: true }
    }

    #[test]
    fn positions_never_wrap_around() {
        assert_eq!(next_position(0).unwrap(), 0);
        assert_eq!(next_position(u32::MAX as usize - 1).unwrap(), u32::MAX - 1);
        assert!(next_position(u32::MAX as usize).is_err());
        assert!(next_position(u32::MAX as usize + 1).is_err(), "position 0 again");
    }

    #[test]
    fn arena_positions_span_chunks_and_entries_are_dropped_once() {
        let mut a: Arena<u64> = Arena::default();
        for i in 0..(CHUNK as u64 * 2 + 5) {
            assert_eq!(a.push(entry(i)).unwrap(), i as u32);
        }
        assert_eq!(a.get(CHUNK as u32 + 1).unwrap().slot.value, Some(CHUNK as u64 + 1));
        assert!(a.get(CHUNK as u32 * 3).is_none());
        let reader = a.begin_snapshot(Arc::new([5u32].into_iter().collect()), 0, None);
        let all = a.take_all();
        assert_eq!(all.len(), CHUNK * 2 + 5, "shared chunks are cloned out");
        assert_eq!(a.len(), 0);
        // Taking the entries out ended the snapshot: the task thread
        // encoded what the reader had not read yet.
        let mut seen = Vec::new();
        reader
            .for_each(|p, r| {
                let Read::Encoded(bytes) = r else { panic!("entry {p}") };
                seen.push((p, bytes.is_empty()));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, vec![(5, false)]);
        a.push(entry(9)).unwrap();
        assert_eq!(a.iter().count(), 1);
    }

    #[test]
    fn guard_states_move_only_from_the_expected_state() {
        let set: EntrySet = [1u32, 33, 70].into_iter().collect();
        let g = SnapshotGuard::new(&set);
        assert_eq!(g.unfinished(), vec![1, 33, 70]);
        assert_eq!(g.state(1), PENDING);
        assert_eq!(g.state(2), NONE);
        assert_eq!(g.state(1000), NONE);
        assert_eq!(g.transition(33, PENDING, READING), Ok(()));
        assert_eq!(g.transition(33, PENDING, STOLEN), Err(READING));
        drop(Claim { guard: &g, pos: 33 });
        assert_eq!(g.state(33), NONE);
        assert_eq!(g.transition(70, PENDING, STOLEN), Ok(()));
        g.put_stolen(70, vec![1]);
        assert_eq!(g.take_stolen(70), Some(vec![1]));
        assert_eq!(g.state(1), PENDING, "neighbours are untouched");
    }
}
