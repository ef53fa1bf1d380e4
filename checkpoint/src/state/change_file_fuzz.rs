//! Property tests ("fuzzing" on the stable toolchain): change-file replay
//! and merge, and `_metadata` decoding, get arbitrary and mutated bytes
//! from a deterministic generator, a bounded number of times, so that they
//! run with the normal tests in seconds. Nothing may panic, a file that was
//! changed after it was sealed must be refused, and no length read from
//! the input may make a reader allocate more than the input holds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::barrier::{CheckpointId, CheckpointKind};
use crate::metadata::{CheckpointMetadata, OperatorStateMeta, SubtaskStateHandle};

/// Mutated inputs per test.
const ITERATIONS: usize = 2_000;

const ALL: KeyGroupRange = KeyGroupRange { start: 0, end: u32::MAX };

/// xorshift64*: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// Random bytes, `min` to `min + spread - 1` of them.
    fn bytes(&mut self, min: usize, spread: usize) -> Vec<u8> {
        let n = min + self.below(spread);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A valid change file with a few sections of random entries.
fn sample(rng: &mut Rng) -> Vec<u8> {
    let mut w = ChangeWriter::default();
    for s in 0..rng.below(4) {
        let kind = if rng.below(2) == 0 { SectionKind::Positioned } else { SectionKind::Complete };
        w.section(&format!("state-{s}"), kind);
        let mut pos = 0u32;
        for _ in 0..rng.below(6) {
            pos += 1 + rng.below(300) as u32;
            let key = rng.bytes(0, 20);
            let value = (rng.below(4) != 0).then(|| rng.bytes(0, 200));
            w.entry_encoded(pos, &key, value.as_deref());
        }
    }
    w.finish().0
}

/// One random change: a flipped bit, a random byte, a cut, inserted
/// bytes, a run of varint continuation bytes, or random bytes.
fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    let at = rng.below(b.len() + 1);
    match rng.below(6) {
        0 if !b.is_empty() => {
            let i = at.min(b.len() - 1);
            b[i] ^= 1 << rng.below(8);
        }
        1 if !b.is_empty() => {
            let i = at.min(b.len() - 1);
            b[i] = rng.next() as u8;
        }
        2 => b.truncate(at),
        3 => {
            let extra = rng.bytes(1, 8);
            b.splice(at..at, extra);
        }
        4 => {
            let run = vec![0xff; 1 + rng.below(9)];
            let end = (at + run.len()).min(b.len());
            b.splice(at..end, run);
        }
        _ => b = rng.bytes(0, 64),
    }
    b
}

/// Writes a valid header for whatever body `b` holds (past the first
/// [`HEADER`] bytes), so that the parser behind the checksum is exercised.
fn reseal(b: &mut Vec<u8>) {
    if b.len() < HEADER {
        b.resize(HEADER, 0);
    }
    b[..4].copy_from_slice(MAGIC);
    let len = (b.len() - HEADER) as u64;
    let sum = checksum(&b[HEADER..]);
    b[4..12].copy_from_slice(&len.to_le_bytes());
    b[12..20].copy_from_slice(&sum.to_le_bytes());
}

struct Null;

impl MergeOut for Null {
    fn section(&mut self, _: &str, _: SectionKind) -> Result<()> {
        Ok(())
    }
    fn entry(&mut self, _: u32, _: &[u8], _: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// Replays `bytes`; every key and value handed out fits in the input.
fn replay_bounded(bytes: &[u8]) -> Result<()> {
    replay_file(Source::Bytes(bytes), ALL, &mut |_, k, v| {
        assert!(k.len() + v.map_or(0, <[u8]>::len) <= bytes.len(), "an entry larger than the file");
        Ok(())
    })
}

#[test]
fn mutated_change_files_are_refused_or_replayed_without_panic() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let (mut refused, mut replayed) = (0, 0);
    for _ in 0..ITERATIONS {
        let original = sample(&mut rng);
        replay_bounded(&original).unwrap();
        let changed = mutate(&mut rng, original.clone());
        let raw = replay_bounded(&changed);
        // Unless it happens to read as the unchecked older version, a file
        // changed after it was sealed never replays.
        if changed != original && !changed.starts_with(MAGIC_V2) {
            let e = raw.expect_err("a changed file was accepted").to_string();
            assert!(e.contains("damaged or truncated"), "{e}");
        }
        let mut sealed = changed;
        reseal(&mut sealed);
        match replay_bounded(&sealed) {
            Ok(()) => replayed += 1,
            Err(e) => {
                assert!(e.to_string().contains("damaged or truncated"), "{e}");
                refused += 1;
            }
        }
        let _ = merge(&[Source::Bytes(&sealed), Source::Bytes(&original)], &mut Null);
    }
    assert!(refused > 100 && replayed > 100, "refused {refused}, replayed {replayed}");
}

#[test]
fn mutated_metadata_is_refused_or_decoded_without_panic() {
    let mut rng = Rng(0x5EED_1234_ABCD_0002);
    let path = Path::new("chk-1/_metadata");
    let handle =
        |i: u32| SubtaskStateHandle { subtask: i, file: format!("op-{i}"), size: 10, shared: vec!["s".into()] };
    let metadata = CheckpointMetadata {
        job_id: "j".into(),
        job_name: "job".into(),
        checkpoint_id: CheckpointId(4),
        kind: CheckpointKind::Checkpoint,
        timestamp_ms: 5,
        max_parallelism: 128,
        operators: vec![OperatorStateMeta {
            operator_id: "op".into(),
            name: "Map".into(),
            parallelism: 3,
            keyed: true,
            subtasks: (0..3).map(handle).collect(),
        }],
        job_operators: vec!["op".into()],
    };
    let original = metadata.encode().unwrap();
    for _ in 0..ITERATIONS {
        let changed = mutate(&mut rng, original.clone());
        if changed != original {
            assert!(CheckpointMetadata::decode(&changed, path).is_err(), "a changed _metadata was accepted");
        }
        // The same bytes behind a valid envelope: decoded or refused, no panic.
        if changed.len() >= 26 {
            let mut sealed = changed;
            let body_len = (sealed.len() - 26) as u64;
            let sum = checksum(&sealed[26..]);
            sealed[..8].copy_from_slice(b"SLUICEMD");
            sealed[8..10].copy_from_slice(&crate::metadata::FORMAT_VERSION.to_le_bytes());
            sealed[10..18].copy_from_slice(&body_len.to_le_bytes());
            sealed[18..26].copy_from_slice(&sum.to_le_bytes());
            if let Ok(m) = CheckpointMetadata::decode(&sealed, path) {
                let names = m.operators.iter().flat_map(|o| &o.subtasks).map(|h| h.file.as_str());
                assert!(names.into_iter().all(|n| crate::names::check_file_name(n, path).is_ok()));
            }
        }
    }
}

/// The child process of [`a_huge_length_prefix_is_an_error_that_allocates_nothing`].
const CHILD: &str = "SLUICE_CHANGE_FILE_HWM_CHILD";

/// The peak resident memory of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_huge_length_prefix_is_an_error_that_allocates_nothing() {
    // A sealed file whose first section name claims 0x1FFFFFFF bytes.
    let mut bytes = vec![0u8; HEADER];
    put_varint(&mut bytes, 0x1FFF_FFFF);
    bytes.extend_from_slice(b"name and not much more");
    reseal(&mut bytes);
    if std::env::var_os(CHILD).is_some() {
        let started = std::time::Instant::now();
        let e = replay_bounded(&bytes).unwrap_err().to_string();
        println!("child: error={e}");
        println!("child: hwm_kib={} ms={}", peak_rss_kib(), started.elapsed().as_millis());
        return;
    }
    let test = "state::change_file::fuzz::a_huge_length_prefix_is_an_error_that_allocates_nothing";
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let field = |name: &str| -> String {
        let line = stdout.lines().find(|l| l.contains("child: ") && l.contains(name)).unwrap_or_else(|| {
            panic!("no {name} in the child's output: {stdout}");
        });
        line.split(name).nth(1).unwrap().split_whitespace().next().unwrap_or("").to_string()
    };
    let hwm: u64 = field("hwm_kib=").parse().unwrap();
    assert!(hwm < 100 * 1024, "peak RSS {hwm} KiB after replaying a 0x1FFFFFFF length prefix: {stdout}");
    let ms: u64 = field("ms=").parse().unwrap();
    assert!(ms < 1_000, "took {ms} ms");
    assert!(!field("error=").is_empty() && stdout.contains("exceeds"), "{stdout}");
}
