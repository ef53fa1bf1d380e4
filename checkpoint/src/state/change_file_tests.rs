//! Unit tests of the change-file format and the merge.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use std::collections::BTreeMap;

type Entry<'a> = (u32, &'a [u8], Option<&'a [u8]>);

fn file(sections: &[(&str, SectionKind, &[Entry<'_>])]) -> Vec<u8> {
    let mut w = ChangeWriter::default();
    for (name, kind, entries) in sections {
        w.section(name, *kind);
        for (p, k, v) in *entries {
            w.entry_encoded(*p, k, *v);
        }
    }
    w.finish().0
}

type Merged = BTreeMap<String, Vec<(u32, Vec<u8>, Vec<u8>)>>;

fn merged(files: &[Source<'_>]) -> Merged {
    struct Out(Merged, String);
    impl MergeOut for Out {
        fn section(&mut self, name: &str, _: SectionKind) -> Result<()> {
            self.1 = name.to_string();
            self.0.entry(name.to_string()).or_default();
            Ok(())
        }
        fn entry(&mut self, pos: u32, key: &[u8], value: &[u8]) -> Result<()> {
            self.0.entry(self.1.clone()).or_default().push((pos, key.to_vec(), value.to_vec()));
            Ok(())
        }
    }
    let mut out = Out(BTreeMap::new(), String::new());
    merge(files, &mut out).unwrap();
    out.0
}

fn replayed(src: Source<'_>) -> Vec<(String, Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    // Keys shorter than a key group prefix fall in group u32::MAX.
    replay_file(src, KeyGroupRange { start: 0, end: u32::MAX }, &mut |n, k, v| {
        out.push((n.to_string(), k.to_vec(), v.map(<[u8]>::to_vec)));
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn files_round_trip_and_long_values_are_encoded_in_place() {
    let mut w = ChangeWriter::default();
    w.section("s", SectionKind::Positioned);
    w.entry_with(|b| put_value_entry(b, 3, b"\0\x01a", 7, &("x".to_string(), 3u64))).unwrap();
    let long = "y".repeat(300);
    w.entry_with(|b| put_value_entry(b, 9, b"\0\x01b", -1, &long)).unwrap();
    w.entry_encoded(12, b"\0\x01c", None);
    w.section("raw", SectionKind::Complete);
    w.entry_encoded(0, b"\0\x02d", Some(b"v"));
    assert_eq!(w.entries(), 4);
    let (buf, n) = w.finish();
    assert_eq!(n, 4);
    let got = replayed(Source::Bytes(&buf));
    assert_eq!(got.len(), 4);
    let stored = crate::state::table::encode_value("s", 7, &("x".to_string(), 3u64)).unwrap();
    assert_eq!(got[0], ("s".into(), b"\0\x01a".to_vec(), Some(stored)));
    let stored = crate::state::table::encode_value("s", -1, &long).unwrap();
    assert_eq!(got[1].2.as_deref(), Some(stored.as_slice()));
    assert_eq!(got[2].2, None);
    assert_eq!(got[3].0, "raw");
    // Truncated anywhere or with foreign bytes: a clear error.
    for cut in [3, 10, buf.len() - 1] {
        let err = replay_file(Source::Bytes(&buf[..cut]), KeyGroupRange { start: 0, end: 10 }, &mut |_, _, _| Ok(()))
            .unwrap_err();
        assert!(err.to_string().contains("damaged or truncated"), "{err}");
    }
    let err = scan(Source::Bytes(b"{\"json\": 1}")).unwrap_err();
    assert!(err.to_string().contains("magic"), "{err}");
}

#[test]
fn merge_by_position_keeps_the_newest_entry_and_drops_removals() {
    let dir = tempfile::tempdir().unwrap();
    // Base: a@0, b@1, c@2. Then b is removed; then b's position is reused
    // by d, a changes, and c moves to position 5 (removed at 2 first).
    let f1 =
        file(&[("s", SectionKind::Positioned, &[(0, b"a", Some(b"1")), (1, b"b", Some(b"1")), (2, b"c", Some(b"1"))])]);
    let f2 = file(&[("s", SectionKind::Positioned, &[(1, b"b", None), (2, b"c", None), (5, b"c", Some(b"2"))])]);
    let f3 = file(&[
        ("s", SectionKind::Positioned, &[(0, b"a", Some(b"3")), (1, b"d", Some(b"3"))]),
        ("t", SectionKind::Positioned, &[(4, b"x", Some(b"3"))]),
    ]);
    let p1 = dir.path().join("f1");
    std::fs::write(&p1, &f1).unwrap();
    let p2 = dir.path().join("f2");
    std::fs::write(&p2, &f2).unwrap();
    let out = merged(&[Source::File(&p1), Source::File(&p2), Source::Bytes(&f3)]);
    let s: Vec<(u32, &[u8], &[u8])> = out["s"].iter().map(|(p, k, v)| (*p, &k[..], &v[..])).collect();
    assert_eq!(s, vec![(0, &b"a"[..], &b"3"[..]), (1, b"d", b"3"), (5, b"c", b"2")]);
    assert_eq!(out["t"].len(), 1);
    // Written as a base file, the merge replays to the same state.
    let base = dir.path().join("base");
    let mut w = FileOut::create(&base).unwrap();
    merge(&[Source::File(&p1), Source::File(&p2), Source::Bytes(&f3)], &mut w).unwrap();
    assert_eq!(w.finish().unwrap(), 4);
    let replay = replayed(Source::File(&base));
    assert_eq!(replay.len(), 4);
    assert!(replay.iter().all(|(_, _, v)| v.is_some()), "a base holds no removals");
    assert_eq!(merged(&[Source::File(&base)]), out, "a base merges to itself");
}

#[test]
fn complete_sections_are_superseded_and_disorder_is_an_error() {
    // A restored state not registered yet, then registered (positioned).
    let f1 = file(&[("r", SectionKind::Complete, &[(0, b"k1", Some(b"1")), (0, b"k2", Some(b"1"))])]);
    let f2 = file(&[("r", SectionKind::Complete, &[(0, b"k1", Some(b"2"))])]);
    let out = merged(&[Source::Bytes(&f1), Source::Bytes(&f2)]);
    assert_eq!(out["r"], vec![(0, b"k1".to_vec(), b"2".to_vec())], "only the newest complete section counts");
    let f3 = file(&[("r", SectionKind::Positioned, &[(0, b"k1", Some(b"3"))])]);
    let out = merged(&[Source::Bytes(&f1), Source::Bytes(&f3)]);
    assert_eq!(out["r"], vec![(0, b"k1".to_vec(), b"3".to_vec())]);
    let bad = file(&[("s", SectionKind::Positioned, &[(4, b"a", Some(b"1")), (2, b"b", Some(b"1"))])]);
    struct Null;
    impl MergeOut for Null {
        fn section(&mut self, _: &str, _: SectionKind) -> Result<()> {
            Ok(())
        }
        fn entry(&mut self, _: u32, _: &[u8], _: &[u8]) -> Result<()> {
            Ok(())
        }
    }
    let err = merge(&[Source::Bytes(&bad)], &mut Null).unwrap_err();
    assert!(err.to_string().contains("out of order"), "{err}");
}
