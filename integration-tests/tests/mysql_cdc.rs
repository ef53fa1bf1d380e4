//! The MySQL CDC source against a real MariaDB server in a container:
//! inserts, updates (also of the primary key), deletes and transactions
//! that commit out of id order while the snapshot runs, at parallelism 2;
//! the job killed during the snapshot and during the binlog phase and
//! restarted from its last checkpoint; and the errors bad input gets.
//!
//! The harness polls the subtasks' sources in one thread, takes a
//! "checkpoint" every few rounds (the states, and the events emitted since
//! the previous checkpoint become committed), and applies committed events
//! strictly: an insert of a present key, or a delete or update-before of a
//! row that is not there as it was, fails the test (a duplicate or a gap).
//! A kill drops the sources without `close` and forgets the uncommitted
//! events.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sluice::{CheckpointId, RuntimeContext, Source, SourceStatus};
use sluice_connectors::mysql::cdc::{
    BinlogPosition, CdcState, ChangeEvent, MySqlCdcSource, MySqlCdcSourceBuilder, Op, SchemaChanges, StartupMode,
};
use sluice_integration_tests::cdc::{create_items, table_rows, writer, Item};
use sluice_integration_tests::mariadb::{MariaDb, SqlClient};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cdc(db: &MariaDb, table: &str, server_ids: std::ops::RangeInclusive<u32>) -> MySqlCdcSourceBuilder<Item> {
    MySqlCdcSource::<Item>::builder()
        .url(db.url())
        .tables([table])
        .server_ids(server_ids)
        .chunk_size(1000)
        .heartbeat(Duration::from_millis(500))
}

/// Applies committed events strictly.
fn apply(view: &mut BTreeMap<i64, Item>, events: Vec<ChangeEvent<Item>>) {
    for e in events {
        let row = e.row.clone().unwrap();
        match e.op {
            Op::Insert | Op::UpdateAfter => {
                if let Some(old) = view.insert(row.id, row.clone()) {
                    panic!("duplicate: {e:?} while the view has {old:?}");
                }
            }
            Op::UpdateBefore | Op::Delete => {
                let old = view.remove(&row.id);
                assert_eq!(old.as_ref(), Some(&row), "gap: {e:?} but the view has {old:?}");
            }
            Op::SchemaChange => panic!("unexpected {e:?}"),
        }
    }
}

/// The subtasks of one job, their uncommitted events, and the committed view.
struct Job {
    sources: Vec<MySqlCdcSource<Item>>,
    pending: Vec<Vec<ChangeEvent<Item>>>,
    states: Option<Vec<CdcState>>,
    view: BTreeMap<i64, Item>,
    checkpoint: u64,
}

impl Job {
    fn start(make: &dyn Fn() -> MySqlCdcSource<Item>, parallelism: u32, states: Option<Vec<CdcState>>) -> Job {
        let mut sources = Vec::new();
        for i in 0..parallelism {
            let mut s = make();
            // Union state: every subtask gets every old subtask's state.
            for state in states.iter().flatten() {
                s.restore_state(state.clone()).unwrap();
            }
            s.open(&RuntimeContext::for_test(i, parallelism)).unwrap();
            sources.push(s);
        }
        let pending = vec![Vec::new(); parallelism as usize];
        Job { sources, pending, states, view: BTreeMap::new(), checkpoint: 0 }
    }

    /// One poll of each subtask; whether all were idle.
    fn round(&mut self) -> bool {
        let mut idle = true;
        for (s, pending) in self.sources.iter_mut().zip(&mut self.pending) {
            if s.poll_next(pending).unwrap() == SourceStatus::MoreAvailable {
                idle = false;
            }
        }
        idle
    }

    fn take_checkpoint(&mut self) {
        self.checkpoint += 1;
        let id = CheckpointId(self.checkpoint);
        self.states = Some(self.sources.iter_mut().map(|s| s.snapshot_state(id).unwrap()).collect());
        for pending in &mut self.pending {
            apply(&mut self.view, std::mem::take(pending));
        }
    }

    fn snapshot_done(&self) -> bool {
        self.sources.iter().all(|s| s.state().snapshot_done)
    }

    /// Kills the job (no `close`, uncommitted events lost) and starts it
    /// again from the last checkpoint, keeping the committed view.
    fn kill_and_restart(self, make: &dyn Fn() -> MySqlCdcSource<Item>, parallelism: u32) -> Job {
        let (view, states, checkpoint) = (self.view, self.states, self.checkpoint);
        drop(self.sources);
        let mut job = Job::start(make, parallelism, states);
        job.view = view;
        job.checkpoint = checkpoint;
        job
    }
}

/// Runs a job over a table changed concurrently, killing it at the given
/// moments, and checks the committed view against the table at the end.
fn capture_while_writing(
    table: &str,
    ids: std::ops::RangeInclusive<u32>,
    kill_in_snapshot: bool,
    kill_in_binlog: bool,
    rescale_to: Option<u32>,
) {
    let db = MariaDb::shared().unwrap();
    let mut sql = db.root_client().unwrap();
    create_items(&mut sql, table, 20_000);
    let make = || cdc(&db, table, ids.clone()).build().unwrap();
    let (stop, ops) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let writing: Vec<_> = (0..2).map(|seed| writer(&db, table, seed, stop.clone(), ops.clone())).collect();
    let mut job = Job::start(&make, 2, None);
    let started = Instant::now();
    let mut rounds = 0u64;
    let mut killed = (false, false);
    // The snapshot, with writes going on.
    while !job.snapshot_done() {
        job.round();
        rounds += 1;
        if rounds % 4 == 0 {
            job.take_checkpoint();
        }
        let done: usize =
            job.sources.iter().map(|s| s.state().tables.values().map(|t| t.done.len()).sum::<usize>()).sum();
        if kill_in_snapshot && !killed.0 && done >= 8 && rounds % 4 == 2 {
            killed.0 = true;
            job = job.kill_and_restart(&make, 2);
        }
        assert!(started.elapsed() < Duration::from_secs(120), "snapshot too slow");
    }
    assert!(!kill_in_snapshot || killed.0, "the snapshot ended before the kill");
    eprintln!(
        "{table}: snapshot done after {rounds} rounds, {:?}, {} writes",
        started.elapsed(),
        ops.load(Ordering::Relaxed)
    );
    // The binlog, with writes going on: at least 40 rounds and 300 writes.
    let (after_snapshot, binlog_start) = (ops.load(Ordering::Relaxed), rounds);
    while rounds < binlog_start + 40 || ops.load(Ordering::Relaxed) < after_snapshot + 300 {
        job.round();
        rounds += 1;
        if rounds % 4 == 0 {
            job.take_checkpoint();
        }
        if kill_in_binlog && !killed.1 && rounds > binlog_start + 20 && rounds % 4 == 2 {
            killed.1 = true;
            job = job.kill_and_restart(&make, rescale_to.unwrap_or(2));
        }
    }
    assert_eq!(killed.1, kill_in_binlog);
    stop.store(true, Ordering::Relaxed);
    for w in writing {
        w.join().unwrap();
    }
    eprintln!("{table}: writes stopped after {rounds} rounds, {:?}", started.elapsed());
    let expected = table_rows(&mut sql, table);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let idle = job.round();
        job.take_checkpoint();
        if idle && job.view == expected {
            break;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = expected.keys().filter(|k| !job.view.contains_key(k)).take(10).collect();
            let extra: Vec<_> = job.view.keys().filter(|k| !expected.contains_key(k)).take(10).collect();
            let differ: Vec<_> =
                expected.iter().filter(|(k, v)| job.view.get(k).is_some_and(|w| w != *v)).take(5).collect();
            panic!("the view does not match the table: missing {missing:?}, extra {extra:?}, differing {differ:?}");
        }
    }
    // Nothing more comes.
    for _ in 0..10 {
        job.round();
    }
    job.take_checkpoint();
    assert_eq!(job.view, expected);
    assert!(ops.load(Ordering::Relaxed) > 300);
    for mut s in job.sources {
        s.close().unwrap();
    }
}

#[test]
fn snapshot_and_binlog_match_the_table_under_concurrent_writes() {
    capture_while_writing("cdc_concurrent", 5400..=5401, false, false, None);
}

#[test]
fn a_job_killed_in_the_snapshot_and_in_the_binlog_phase_restarts_from_its_checkpoint() {
    capture_while_writing("cdc_killed", 5410..=5411, true, true, None);
}

#[test]
fn a_job_killed_in_the_binlog_phase_restarts_at_another_parallelism() {
    capture_while_writing("cdc_rescaled", 5430..=5433, false, true, Some(3));
}

#[track_caller]
fn open_error(source: MySqlCdcSource<Item>) -> String {
    let mut source = source;
    match source.open(&RuntimeContext::for_test(0, 1)) {
        Ok(()) => panic!("open succeeded"),
        Err(e) => e.to_string(),
    }
}

/// Polls until an error or `limit`.
fn poll_error(source: &mut MySqlCdcSource<Item>, limit: Duration) -> String {
    let started = Instant::now();
    let mut out = Vec::new();
    loop {
        match source.poll_next(&mut out) {
            Err(e) => return e.to_string(),
            Ok(_) => assert!(started.elapsed() < limit, "no error within {limit:?}"),
        }
    }
}

#[test]
fn bad_input_gets_errors_that_name_the_problem() {
    // Its own server: this test changes global settings and purges binlogs.
    let db = MariaDb::start().unwrap();
    let mut sql = db.root_client().unwrap();
    create_items(&mut sql, "items", 10);
    sql.exec("CREATE TABLE nokey (a INT NOT NULL, b INT)").unwrap();

    // A table without a primary key, unless a chunk key is given.
    let e = open_error(cdc(&db, "nokey", 9001..=9001).build().unwrap());
    assert!(e.contains("`sluice`.`nokey` has no primary key") && e.contains(".chunk_key("), "{e}");
    let mut ok = cdc(&db, "nokey", 9001..=9001).chunk_key("nokey", "a").build().unwrap();
    ok.open(&RuntimeContext::for_test(0, 1)).unwrap();
    ok.close().unwrap();

    // No table matches.
    let e = open_error(cdc(&db, "nothere", 9001..=9001).build().unwrap());
    assert!(e.contains("no table") && e.contains("nothere"), "{e}");

    // Missing replication privileges.
    sql.exec(
        "CREATE USER 'norepl'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON sluice.* TO 'norepl'@'%'; \
         CREATE USER 'noclient'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON sluice.* TO 'noclient'@'%'; \
         GRANT REPLICATION SLAVE ON *.* TO 'noclient'@'%'",
    )
    .unwrap();
    let url = |user: &str| format!("mysql://{user}:pw@{}:{}/{}", MariaDb::HOST, db.port(), MariaDb::DATABASE);
    let e = open_error(cdc(&db, "items", 9001..=9001).url(url("norepl")).build().unwrap());
    assert!(
        e.contains("'norepl'") && e.contains("lacks the REPLICATION SLAVE privilege") && e.contains("GRANT"),
        "{e}"
    );
    let e = open_error(cdc(&db, "items", 9001..=9001).url(url("noclient")).build().unwrap());
    assert!(e.contains("lacks the REPLICATION CLIENT privilege"), "{e}");

    // A binlog file that does not exist, and one that was purged.
    let logs = sql.query("SHOW BINARY LOGS").unwrap();
    let first = logs[0][0].clone().unwrap();
    let missing = BinlogPosition::new("mysql-bin.999999", 4);
    let e = open_error(cdc(&db, "items", 9001..=9001).startup(StartupMode::SpecificOffset(missing)).build().unwrap());
    assert!(e.contains("mysql-bin.999999 does not exist"), "{e}");
    sql.exec("FLUSH BINARY LOGS").unwrap();
    let current = sql.query("SHOW MASTER STATUS").unwrap()[0][0].clone().unwrap();
    // MariaDB keeps a file until InnoDB's binlog checkpoint has passed it.
    let started = Instant::now();
    while sql.query("SHOW BINARY LOGS").unwrap()[0][0].as_deref() == Some(first.as_str()) {
        assert!(started.elapsed() < Duration::from_secs(30), "{first} was not purged");
        sql.exec(&format!("PURGE BINARY LOGS TO '{current}'")).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let purged = StartupMode::SpecificOffset(BinlogPosition::new(first.clone(), 4));
    let e = open_error(cdc(&db, "items", 9001..=9001).startup(purged).build().unwrap());
    assert!(e.contains(&format!("{first}:4 is no longer")) && e.contains(&current), "{e}");

    // binlog_format not ROW.
    sql.exec("SET GLOBAL binlog_format = 'STATEMENT'").unwrap();
    let e = open_error(cdc(&db, "items", 9001..=9001).build().unwrap());
    sql.exec("SET GLOBAL binlog_format = 'ROW'").unwrap();
    assert!(e.contains("binlog_format=STATEMENT") && e.contains("binlog_format=ROW"), "{e}");

    // A restore at another parallelism.
    let mut first_run = cdc(&db, "items", 9002..=9003).build().unwrap();
    first_run.open(&RuntimeContext::for_test(0, 1)).unwrap();
    let state = first_run.snapshot_state(CheckpointId(1)).unwrap();
    first_run.close().unwrap();
    let mut rescaled = cdc(&db, "items", 9002..=9003).build().unwrap();
    rescaled.restore_state(state).unwrap();
    let e = rescaled.open(&RuntimeContext::for_test(0, 2)).unwrap_err().to_string();
    assert!(e.contains("cannot change its parallelism"), "{e}");

    // Too few server ids.
    let mut narrow = cdc(&db, "items", 9001..=9001).build().unwrap();
    let e = narrow.open(&RuntimeContext::for_test(0, 2)).unwrap_err().to_string();
    assert!(e.contains("widen .server_ids"), "{e}");

    // A schema change fails the job, naming table and statement ...
    let mut source = cdc(&db, "items", 9001..=9001).build().unwrap();
    source.open(&RuntimeContext::for_test(0, 1)).unwrap();
    sql.exec("ALTER TABLE items ADD COLUMN extra INT").unwrap();
    let e = poll_error(&mut source, Duration::from_secs(30));
    assert!(e.contains("`sluice`.`items`") && e.contains("ALTER TABLE items ADD COLUMN extra INT"), "{e}");
    drop(source);

    // ... or is emitted as an event, and rows after it are read.
    let mut source = cdc(&db, "items", 9001..=9001).schema_changes(SchemaChanges::Emit).build().unwrap();
    source.open(&RuntimeContext::for_test(0, 1)).unwrap();
    let mut out = Vec::new();
    while !source.state().snapshot_done {
        source.poll_next(&mut out).unwrap();
    }
    sql.exec("ALTER TABLE items DROP COLUMN extra; INSERT INTO items (id, v, name) VALUES (100, 1, 'after')").unwrap();
    let started = Instant::now();
    while !out.iter().any(|e: &ChangeEvent<Item>| e.row.as_ref().is_some_and(|r| r.id == 100)) {
        source.poll_next(&mut out).unwrap();
        assert!(started.elapsed() < Duration::from_secs(30), "{out:?}");
    }
    let ddl: Vec<_> = out.iter().filter(|e| e.op == Op::SchemaChange).collect();
    assert_eq!(ddl.len(), 1, "{out:?}");
    assert_eq!(ddl[0].ddl.as_deref(), Some("ALTER TABLE items DROP COLUMN extra"));
    assert_eq!(out.iter().filter(|e| e.snapshot).count(), 10);
    source.close().unwrap();
}

/// Polls until `done(events so far)`, within 30 s.
fn poll_until(
    source: &mut MySqlCdcSource<Item>,
    mut done: impl FnMut(&[ChangeEvent<Item>]) -> bool,
) -> Vec<ChangeEvent<Item>> {
    let started = Instant::now();
    let mut out = Vec::new();
    while !done(&out) {
        source.poll_next(&mut out).unwrap();
        assert!(started.elapsed() < Duration::from_secs(30), "timed out with {out:?}");
    }
    out
}

#[test]
fn startup_modes_and_the_position_of_an_idle_table() {
    let db = MariaDb::shared().unwrap();
    let mut sql = db.root_client().unwrap();
    create_items(&mut sql, "cdc_modes", 5);
    sql.exec("CREATE TABLE IF NOT EXISTS cdc_other (id INT PRIMARY KEY)").unwrap();
    let status = |sql: &mut SqlClient| {
        let row = sql.query("SHOW MASTER STATUS").unwrap().remove(0);
        BinlogPosition::new(row[0].clone().unwrap(), row[1].as_deref().unwrap().parse().unwrap())
    };
    let before_insert = status(&mut sql);
    let gtid_before_insert = sql.query("SELECT @@gtid_binlog_pos").unwrap().remove(0)[0].clone().unwrap();
    sql.exec("INSERT INTO cdc_modes (id, v, name) VALUES (6, 60, 'six')").unwrap();

    // latest-offset: no snapshot, only what comes after open.
    let mut latest = cdc(&db, "cdc_modes", 5420..=5420).startup(StartupMode::LatestOffset).build().unwrap();
    latest.open(&RuntimeContext::for_test(0, 1)).unwrap();
    sql.exec("UPDATE cdc_modes SET v = 61 WHERE id = 6").unwrap();
    let out = poll_until(&mut latest, |o| o.len() >= 2);
    let ops: Vec<_> = out.iter().map(|e| (e.op, e.row.as_ref().unwrap().v)).collect();
    assert_eq!(ops, [(Op::UpdateBefore, 60), (Op::UpdateAfter, 61)]);
    assert!(out.iter().all(|e| !e.snapshot && e.gtid.is_some() && e.timestamp_ms > 0), "{out:?}");

    // The table stays idle while others change: its position follows the binlog.
    sql.exec("INSERT INTO cdc_other VALUES (1), (2)").unwrap();
    let now = status(&mut sql);
    let started = Instant::now();
    let mut out = Vec::new();
    while latest.state().resume.as_ref().unwrap() < &now {
        latest.poll_next(&mut out).unwrap();
        assert!(started.elapsed() < Duration::from_secs(30), "stuck at {:?}, binlog at {now}", latest.state().resume);
    }
    assert!(out.is_empty(), "{out:?}");
    latest.close().unwrap();

    // specific-offset: from a position, the insert and the update.
    let from = StartupMode::SpecificOffset(before_insert);
    let mut specific = cdc(&db, "cdc_modes", 5421..=5421).startup(from).build().unwrap();
    specific.open(&RuntimeContext::for_test(0, 1)).unwrap();
    let out = poll_until(&mut specific, |o| o.len() >= 3);
    let ops: Vec<_> = out.iter().map(|e| (e.op, e.row.as_ref().unwrap().id)).collect();
    assert_eq!(ops, [(Op::Insert, 6), (Op::UpdateBefore, 6), (Op::UpdateAfter, 6)]);
    specific.close().unwrap();

    // specific GTID: after the transactions up to a GTID position, the same.
    let from = StartupMode::SpecificGtid(gtid_before_insert.clone());
    let mut by_gtid = cdc(&db, "cdc_modes", 5424..=5424).startup(from).build().unwrap();
    by_gtid.open(&RuntimeContext::for_test(0, 1)).unwrap();
    let out = poll_until(&mut by_gtid, |o| o.len() >= 3);
    let ops: Vec<_> = out.iter().map(|e| (e.op, e.row.as_ref().unwrap().id)).collect();
    assert_eq!(ops, [(Op::Insert, 6), (Op::UpdateBefore, 6), (Op::UpdateAfter, 6)], "from {gtid_before_insert}");
    by_gtid.close().unwrap();
    // A GTID position no transaction is past yet: from the binlog's end.
    let (domain, rest) = gtid_before_insert.split_once('-').unwrap();
    let (server, seq) = rest.split_once('-').unwrap();
    let future = format!("{domain}-{server}-{}", seq.parse::<u64>().unwrap() + 1_000_000);
    let mut ahead = cdc(&db, "cdc_modes", 5425..=5425).startup(StartupMode::SpecificGtid(future)).build().unwrap();
    let end = status(&mut sql);
    ahead.open(&RuntimeContext::for_test(0, 1)).unwrap();
    assert!(ahead.state().resume.as_ref().unwrap() >= &end, "{:?} before {end}", ahead.state().resume);
    ahead.close().unwrap();
    let bad = cdc(&db, "cdc_modes", 5426..=5426).startup(StartupMode::SpecificGtid("0-1".into())).build();
    let Err(e) = bad else { panic!("a bad GTID position was accepted") };
    assert!(e.to_string().contains("'0-1' is no GTID"), "{e}");

    // earliest-offset: the whole history, including the table's creation
    // (schema changes emitted here, as the default would fail on them).
    let mut earliest = cdc(&db, "cdc_modes", 5422..=5422)
        .startup(StartupMode::EarliestOffset)
        .schema_changes(SchemaChanges::Emit)
        .build()
        .unwrap();
    earliest.open(&RuntimeContext::for_test(0, 1)).unwrap();
    let out = poll_until(&mut earliest, |o| o.iter().any(|e| e.op == Op::UpdateAfter));
    let ddl: Vec<_> = out.iter().filter_map(|e| e.ddl.as_deref()).collect();
    assert!(ddl.len() >= 2 && ddl.iter().any(|d| d.starts_with("CREATE TABLE")), "{ddl:?}");
    let inserted: Vec<_> = out.iter().filter(|e| e.op == Op::Insert).map(|e| e.row.as_ref().unwrap().id).collect();
    assert_eq!(inserted, [1, 2, 3, 4, 5, 6]);
    earliest.close().unwrap();

    // Rows as JSON, and the Debezium-like envelope.
    let mut json = MySqlCdcSource::<serde_json::Value>::builder()
        .url(db.url())
        .tables(["cdc_modes"])
        .server_ids(5423..=5423)
        .startup(StartupMode::LatestOffset)
        .build()
        .unwrap();
    json.open(&RuntimeContext::for_test(0, 1)).unwrap();
    sql.exec("DELETE FROM cdc_modes WHERE id = 6").unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    while out.is_empty() {
        json.poll_next(&mut out).unwrap();
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    let envelope = out[0].to_json_envelope().unwrap();
    assert_eq!(envelope["op"], "d", "{envelope}");
    assert_eq!(envelope["before"], serde_json::json!({"id": 6, "v": 61, "name": "six"}), "{envelope}");
    assert!(envelope["after"].is_null());
    assert_eq!(envelope["source"]["table"], "cdc_modes");
    assert_eq!(envelope["source"]["snapshot"], false);
    assert!(envelope["source"]["gtid"].is_string() && envelope["ts_ms"].as_u64().unwrap() > 0, "{envelope}");
    json.close().unwrap();
}
