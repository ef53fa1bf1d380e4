//! The Nexmark queries checked against their independent reference on a
//! small run, at parallelism 1 and 2 (`bench_nexmark --check`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn every_nexmark_query_equals_its_reference_at_parallelism_one_and_two() {
    for p in ["1", "2"] {
        let out = Command::new(env!("CARGO_BIN_EXE_bench_nexmark"))
            .args(["--check", "--events", "100000", "-p", p])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "p={p}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        for q in ["q0", "q1", "q2"] {
            let line = stdout.lines().find(|l| l.starts_with(&format!("{q}:"))).unwrap_or_else(|| panic!("{stdout}"));
            assert!(line.ends_with("equal to the reference"), "{line}");
            let records: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            assert!(records > 0, "{line}");
        }
    }
}
