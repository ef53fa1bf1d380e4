#!/usr/bin/env bash
# Runs the heap backend's copy-on-write arena (checkpoint/src/state/arena.rs,
# the only module of the project with `unsafe` code) under Miri, which checks
# for undefined behaviour and data races between the task thread and a
# snapshot's upload thread.
#
# The checkpoint crate itself cannot run under Miri (it links RocksDB), so
# this script builds a scratch crate from the real arena.rs, entry_set.rs and
# ttl.rs plus small stand-ins for what they import, and runs their tests and
# a concurrent reader/writer test there. Needs a nightly toolchain with the
# miri component (installed here with rustup when missing). Not part of
# scripts/test.sh.
#
# Usage: scripts/miri-arena.sh [seeds]   (default 4 thread schedules)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-4}
rustup component list --installed --toolchain nightly 2>/dev/null | grep -q '^miri' \
  || rustup component add miri --toolchain nightly
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/state"
cp checkpoint/src/state/arena.rs checkpoint/src/state/entry_set.rs checkpoint/src/state/ttl.rs "$work/src/state/"
sed -i 's/pub(crate) /pub /g' "$work/src/state/arena.rs" "$work/src/state/entry_set.rs"
cat >"$work/Cargo.toml" <<'TOML'
[package]
name = "miri_arena"
version = "0.1.0"
edition = "2021"

[dependencies]
postcard = { version = "1", features = ["use-std"] }
serde = { version = "1", features = ["derive"] }
smallvec = { version = "1", features = ["union", "const_generics"] }
TOML
cat >"$work/src/lib.rs" <<'RUST'
//! Miri harness: the checkpoint crate's arena module with minimal shims.
#![allow(dead_code, missing_docs)]
pub mod error {
    #[derive(Debug)]
    pub enum Error { State { state: String, message: String } }
    pub type Result<T, E = Error> = std::result::Result<T, E>;
}
pub mod state {
    pub mod arena;
    pub mod entry_set;
    pub mod ttl;
    pub mod change_file {
        use crate::error::{Error, Result};
        pub fn put_value_entry<V: serde::Serialize>(buf: &mut Vec<u8>, pos: u32, key: &[u8], stamp: i64, value: &V) -> Result<()> {
            buf.extend_from_slice(&pos.to_le_bytes());
            buf.extend_from_slice(key);
            *buf = postcard::to_extend(&(stamp, value), std::mem::take(buf)).map_err(|e| Error::State { state: String::new(), message: e.to_string() })?;
            Ok(())
        }
        pub fn put_removal(buf: &mut Vec<u8>, pos: u32, key: &[u8]) {
            buf.extend_from_slice(&pos.to_le_bytes());
            buf.extend_from_slice(key);
            buf.push(0);
        }
    }
    pub mod table {
        pub type Key = smallvec::SmallVec<[u8; 24]>;
        #[derive(Debug, Clone)]
        pub struct Slot<T> { pub value: Option<T>, pub dirty: bool, pub stamp: i64, pub touched: bool }
        impl<T> Slot<T> { pub fn loaded(value: Option<T>, stamp: i64) -> Self { Slot { value, dirty: false, stamp, touched: false } } }
    }
}

#[cfg(test)]
mod concurrent {
    use crate::state::arena::{Arena, Entry, Read};
    use crate::state::entry_set::EntrySet;
    use crate::state::table::{Key, Slot};
    use std::sync::Arc;

    fn entry(i: u64) -> Entry<String> {
        Entry { key: Key::from_slice(&i.to_be_bytes()), slot: Slot::loaded(Some(format!("v{i}")), 0), occupied: true }
    }

    #[test]
    fn reader_and_writer_race_without_undefined_behaviour() {
        let mut a: Arena<String> = Arena::default();
        let n = 40u32;
        for i in 0..n { a.push(entry(u64::from(i))); }
        let set: EntrySet = (0..n).filter(|p| p % 3 != 0).collect();
        let reader = a.begin_snapshot(Arc::new(set), 0, None);
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            reader.for_each(|p, r| {
                match r {
                    Read::Entry(Some(e)) => got.push((p, e.slot.value.clone().unwrap_or_default().into_bytes())),
                    Read::Encoded(b) => got.push((p, b)),
                    Read::Entry(None) => panic!("missing {p}"),
                }
                Ok(())
            }).map_err(|_| ()).unwrap();
            got
        });
        // The task thread changes entries meanwhile, and appends new ones.
        for round in 0..3u32 {
            for p in (0..n).rev() {
                if let Some(e) = a.get_mut(p) { e.slot.value = Some(format!("new{round}-{p}")); }
            }
            a.push(entry(1000 + u64::from(round)));
        }
        let got = t.join().unwrap();
        assert_eq!(got.len(), (0..n).filter(|p| p % 3 != 0).count());
        for (p, bytes) in got {
            // Either read by the reader (the old value) or encoded by the
            // writer before its change (the old value, postcard-encoded).
            let old = format!("v{p}");
            let s = String::from_utf8_lossy(&bytes);
            assert!(s.contains(&old), "position {p}: {s}");
        }
        // A second snapshot while nothing reads the first.
        let set: EntrySet = [1u32, 2].into_iter().collect();
        let r2 = a.begin_snapshot(Arc::new(set), 0, None);
        drop(r2);
        let set: EntrySet = [3u32].into_iter().collect();
        let r3 = a.begin_snapshot(Arc::new(set), 0, None);
        let all = a.take_all();
        assert_eq!(all.len(), n as usize + 3);
        r3.for_each(|_, r| { assert!(matches!(r, Read::Encoded(_))); Ok(()) }).map_err(|_| ()).unwrap();
    }
}
RUST
cd "$work"
MIRIFLAGS="-Zmiri-many-seeds=0..$seeds" CARGO_TARGET_DIR="${MIRI_TARGET_DIR:-$HOME/.cache/sluice-miri-target}" \
  cargo +nightly miri test --lib
