//! Benchmarks of JobManager high availability (not run by `scripts/test.sh`;
//! they print figures and assert nothing about time):
//!
//! ```sh
//! scripts/kafka-local.sh start
//! cargo test --workspace --test ha_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! - `failover_times`: ten SIGKILLs of the leading JobManager under the
//!   exactly-once Kafka WordCount (two JobManagers, two TaskManagers,
//!   p=4); prints, per kill, the time to the job RUNNING on the new leader
//!   and from there to the next committed output, then median and max.
//! - `drain_rate_with_and_without_ha`: the bounded Kafka WordCount over
//!   a pre-filled topic on a cluster without HA and on one with HA, three
//!   interleaved rounds; prints the drain rates and their ratio.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

mod common;

use common::cluster::{job_id_of, ClusterUnderTest};
use common::ha::HaCluster;
use common::{broker, kafka_wordcount_args};
use sluice_integration_tests::wordcount::{
    check_output, committed_end_offsets, create_topics, expected, feed, feed_in_background, line,
};
use sluice_test_support::unique_name;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn failover_times() {
    let bs = broker();
    let (input, output) = (unique_name("hab-in"), unique_name("hab-out"));
    create_topics(&bs, &[&input, &output], 3);
    let lines = 60_000;
    let feeder = feed_in_background(&bs, &input, 0..lines, 100, Duration::from_millis(100));
    let mut cluster = HaCluster::start(2);
    let ckpt = cluster.work.path().join("checkpoints").display().to_string();
    let args = kafka_wordcount_args(&bs, &input, &output, &ckpt, "1s");
    let mut run = vec!["run", "-d", "-p", "4"];
    run.extend(args.iter().map(String::as_str));
    let out = cluster.cli(&run);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job = job_id_of(&out);
    let state = |c: &HaCluster| c.leader().map(|l| (l.clone(), c.get(&l, &format!("/jobs/{job}")).1["state"].clone()));
    let (mut to_running, mut to_output) = (Vec::new(), Vec::new());
    for kill in 0..10 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let leader = loop {
            if let Some((l, s)) = state(&cluster) {
                if s == "RUNNING" {
                    break l;
                }
            }
            assert!(Instant::now() < deadline, "the job did not run");
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_secs(2));
        let before = committed_end_offsets(&bs, &output, 3);
        let t0 = Instant::now();
        cluster.kill_jm(&leader);
        cluster.start_jm(&leader);
        let running = loop {
            if let Some((l, s)) = state(&cluster) {
                if l != leader && s == "RUNNING" {
                    break t0.elapsed();
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "no fail-over");
            std::thread::sleep(Duration::from_millis(10));
        };
        let output_again = loop {
            if committed_end_offsets(&bs, &output, 3) > before {
                break t0.elapsed();
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "no output after fail-over");
            std::thread::sleep(Duration::from_millis(20));
        };
        println!("kill {kill}: RUNNING after {running:?}, first new committed output after {output_again:?}");
        to_running.push(running);
        to_output.push(output_again - running);
    }
    println!(
        "fail-over (lease 3 s, 10 kills): kill -> RUNNING median {:?} max {:?}; RUNNING -> output median {:?} max {:?}",
        median(&mut to_running.clone()),
        to_running.iter().max().unwrap(),
        median(&mut to_output.clone()),
        to_output.iter().max().unwrap()
    );
    feeder.join().unwrap();
    check_output(&bs, &output, 3, &expected(lines), Duration::from_secs(300));
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn drain_rate_with_and_without_ha() {
    let bs = broker();
    let input = unique_name("hab-drain-in");
    create_topics(&bs, &[&input], 3);
    let lines = 1_000_000u64;
    // Flushed every 10 000 lines: the producer's queue holds fewer than a million.
    feed(&bs, &input, 0..lines, Some((10_000, Duration::ZERO)));
    let words: u64 = (0..lines).map(|i| line(i).split(' ').count() as u64).sum();
    let run = |cli: &dyn Fn(&[&str]) -> std::process::Output, work: &std::path::Path| -> f64 {
        let output = unique_name("hab-drain-out");
        create_topics(&bs, &[&output], 3);
        let ckpt = work.join(unique_name("ckpt")).display().to_string();
        let args = kafka_wordcount_args(&bs, &input, &output, &ckpt, "1s");
        let mut run = vec!["run", "-p", "2"];
        run.extend(args.iter().map(String::as_str));
        run.push("--bounded");
        let t0 = Instant::now();
        let out = cli(&run);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        words as f64 / t0.elapsed().as_secs_f64()
    };
    let plain = ClusterUnderTest::start("60s");
    let ha = HaCluster::start(1);
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let a = run(&|args| plain.cli(args), plain.work.path());
        let b = run(&|args| ha.cli(args), ha.work.path());
        println!("round {round}: without HA {a:.0} words/s, with HA {b:.0} words/s ({:.1} %)", 100.0 * b / a);
        without.push(a);
        with.push(b);
    }
    without.sort_by(f64::total_cmp);
    with.sort_by(f64::total_cmp);
    println!(
        "drain rate, medians of 3 ({words} words, p=2, 1 s checkpoints): without HA {:.0}/s, with HA {:.0}/s: {:.1} %",
        without[1],
        with[1],
        100.0 * with[1] / without[1]
    );
}
