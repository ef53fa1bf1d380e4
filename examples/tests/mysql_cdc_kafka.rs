//! The MySQL CDC to Kafka example as a real job process against MariaDB and
//! Kafka (containers): while two writers change the table in every way
//! (inserts, updates, key changes, deletes, transactions committing out of
//! id order), the job is killed with SIGKILL during its snapshot and again
//! in its binlog phase, and started again from its checkpoints each time.
//! The committed change log, applied strictly (a duplicate or a gap fails),
//! must end equal to the table.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sluice_integration_tests::cdc::{create_items, table_rows, writer, KafkaChangeLog};
use sluice_integration_tests::kafka::KafkaContainer;
use sluice_integration_tests::mariadb::MariaDb;
use sluice_integration_tests::wordcount::create_topics;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const JOB: &str = env!("CARGO_BIN_EXE_mysql_cdc_kafka");
const ROWS: i64 = 100_000;
const TABLE: &str = "cdc_job";

/// The job process, killed when dropped.
struct JobProcess(Child);

impl JobProcess {
    fn start(db: &MariaDb, bs: &str, ckpt: &std::path::Path, log: &std::path::Path) -> Self {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(JOB)
            .args(["--mysql-url", &db.root_url(), "--tables", TABLE, "--server-ids", "5600-5601"])
            .args(["--chunk-size", "500", "--bootstrap-servers", bs, "--output-topic", "cdc-changes"])
            .args(["--checkpoint-dir", ckpt.to_str().unwrap(), "--checkpoint-interval", "300ms", "-p", "2"])
            .args(["-D", "restart-strategy.type=fixed-delay", "-D", "restart-strategy.fixed-delay.attempts=5"])
            .env("SLUICE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        JobProcess(child)
    }

    /// SIGKILL, reaped.
    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for JobProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn mysql_cdc_to_kafka_is_exactly_once_through_sigkill_in_the_snapshot_and_the_binlog_phase() {
    let db = MariaDb::shared().unwrap();
    let mut sql = db.root_client().unwrap();
    create_items(&mut sql, TABLE, ROWS);
    let kafka = KafkaContainer::start().unwrap();
    let bs = kafka.bootstrap().to_string();
    create_topics(&bs, &["cdc-changes"], 1);
    let work = tempfile::tempdir().unwrap();
    let (ckpt, log) = (work.path().join("checkpoints"), work.path().join("job.log"));
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let (stop, ops) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let writers: Vec<_> = (0..2).map(|seed| writer(&db, TABLE, seed, stop.clone(), ops.clone())).collect();
    let mut changes = KafkaChangeLog::new(&bs, "cdc-changes");
    let wait = |changes: &mut KafkaChangeLog, what: &str, ok: &dyn Fn(&KafkaChangeLog) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(180);
        while !ok(changes) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}; job log:\n{}", logs());
            changes.poll_for(Duration::from_millis(200));
        }
    };

    let completions = || logs().matches("snapshot complete").count();

    // 1. Killed in the snapshot: some snapshot rows committed, neither
    // subtask through its snapshot.
    let job = JobProcess::start(&db, &bs, &ckpt, &log);
    wait(&mut changes, "snapshot rows committed", &|c| c.snapshot_events >= 5_000);
    job.kill();
    assert_eq!(completions(), 0, "a subtask finished its snapshot before the kill:\n{}", logs());
    changes.poll_for(Duration::from_secs(1));
    eprintln!(
        "killed in the snapshot: {} snapshot rows committed, {} writes",
        changes.snapshot_events,
        ops.load(Ordering::Relaxed)
    );

    // 2. Killed in the binlog phase: both subtasks through their snapshot
    // (resumed from the checkpoint), then 1000 more changes committed.
    let job = JobProcess::start(&db, &bs, &ckpt, &log);
    wait(&mut changes, "both subtasks through the snapshot", &|_| completions() >= 2);
    let binlog_events = changes.events - changes.snapshot_events;
    wait(&mut changes, "binlog changes committed", &|c| c.events - c.snapshot_events >= binlog_events + 1_000);
    job.kill();
    eprintln!("killed in the binlog phase: {} change records committed", changes.events);

    // 3. Started again; the writers stop; the change log ends equal to the table.
    let _job = JobProcess::start(&db, &bs, &ckpt, &log);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let expected = table_rows(&mut sql, TABLE);
    wait(&mut changes, "the change log to equal the table", &|c| c.view == expected);
    // Nothing more comes.
    changes.poll_for(Duration::from_secs(3));
    assert_eq!(changes.view, expected);
    eprintln!(
        "{} change records ({} snapshot rows), {} writes",
        changes.events,
        changes.snapshot_events,
        ops.load(Ordering::Relaxed)
    );
}
