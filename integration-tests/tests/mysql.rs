//! The MySQL source against a real MariaDB server in a container: jobs that
//! follow a table at parallelism 1 and 3 while rows are appended, a
//! snapshot-only job, restore from a saved position, tracking by a DATETIME
//! with ties, type mapping, reconnecting after the connection is killed,
//! giving up when the server is gone, and the errors bad input gets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde::{Deserialize, Serialize};
use sluice::{CheckpointId, Data, JobStatus, RuntimeContext, Sink, Source, SourceStatus, StreamExecutionEnvironment};
use sluice_connectors::mysql::{MySqlSource, MySqlSourceBuilder, TrackingValue};
use sluice_integration_tests::mariadb::{MariaDb, SqlClient};
use sluice_test_support::free_port;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: i64,
    customer: String,
    amount: f64,
    note: Option<String>,
    created: String,
}

/// The order the tests insert with id `id`, as the source should read it.
fn order(id: i64) -> Order {
    Order {
        id,
        customer: format!("c{id}"),
        amount: id as f64 / 4.0,
        note: (id % 3 != 0).then(|| format!("note {id}")),
        created: format!("2024-03-01T10:{:02}:{:02}.{id:06}", (id / 60) % 60, id % 60),
    }
}

fn create_orders(sql: &mut SqlClient, table: &str) {
    sql.exec(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (
            id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            customer VARCHAR(64) NOT NULL,
            amount DECIMAL(10,2) NOT NULL,
            note TEXT NULL,
            created DATETIME(6) NOT NULL,
            region GEOMETRY NULL)"
    ))
    .unwrap();
}

/// Inserts orders `ids` in statements of up to 500 rows.
fn insert_orders(sql: &mut SqlClient, table: &str, ids: std::ops::RangeInclusive<i64>) {
    let ids: Vec<i64> = ids.collect();
    for chunk in ids.chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|&id| {
                let o = order(id);
                let note = o.note.map_or("NULL".to_string(), |n| format!("'{n}'"));
                format!("({id}, '{}', {}, {note}, '{}')", o.customer, o.amount, o.created.replace('T', " "))
            })
            .collect();
        sql.exec(&format!("INSERT INTO {table} (id, customer, amount, note, created) VALUES {}", values.join(", ")))
            .unwrap();
    }
}

fn orders_source(db: &MariaDb, table: &str) -> MySqlSourceBuilder<Order> {
    MySqlSource::<Order>::builder()
        .url(db.url())
        .table(table)
        .tracking_column("id")
        .batch_size(100)
        .poll_interval(Duration::from_millis(50))
}

/// Asserts `rows` are exactly the orders `1..=n`, each once.
fn assert_each_once(mut rows: Vec<Order>, n: i64) {
    rows.sort_by_key(|o| o.id);
    let mut counts = BTreeMap::new();
    for o in &rows {
        *counts.entry(o.id).or_insert(0) += 1;
    }
    let duplicated: Vec<_> = counts.iter().filter(|(_, &c)| c > 1).map(|(id, _)| *id).collect();
    let missing: Vec<_> = (1..=n).filter(|id| !counts.contains_key(id)).collect();
    assert!(duplicated.is_empty(), "duplicated ids: {duplicated:?}");
    assert!(missing.is_empty(), "missing ids: {missing:?}");
    assert_eq!(rows.len() as i64, n);
    for o in rows {
        assert_eq!(o, order(o.id));
    }
}

#[derive(Clone)]
struct CollectSink<T>(Arc<Mutex<Vec<T>>>);

impl<T: Send + 'static> Sink<T> for CollectSink<T> {
    fn write(&mut self, record: T) -> sluice::Result<()> {
        self.0.lock().map_err(|_| sluice::Error::user("poisoned"))?.push(record);
        Ok(())
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn follow_in_a_job(parallelism: u32, table: &str) {
    let db = MariaDb::shared().unwrap();
    let mut sql = db.root_client().unwrap();
    create_orders(&mut sql, table);
    insert_orders(&mut sql, table, 1..=1500);

    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(parallelism);
    let got = Arc::new(Mutex::new(Vec::new()));
    env.add_source(orders_source(&db, table).build().unwrap()).add_sink(CollectSink(got.clone()));
    let client = env.execute_async(&format!("follow {table}")).unwrap();
    let count = || got.lock().unwrap().len();

    wait_until("the snapshot to start arriving", Duration::from_secs(60), || count() > 0);
    for step in 0..5 {
        let first = 1501 + step * 100;
        insert_orders(&mut sql, table, first..=first + 99);
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until("all 2000 rows", Duration::from_secs(60), || count() >= 2000);
    // Duplicates, if any, would show up now.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(client.status().unwrap(), JobStatus::Running, "an unbounded source keeps following");
    client.cancel().unwrap();
    assert!(matches!(client.wait(), Err(sluice::Error::JobCanceled(_))));
    assert_each_once(got.lock().unwrap().clone(), 2000);
}

#[test]
fn a_job_follows_new_rows_at_parallelism_1() {
    follow_in_a_job(1, "orders_p1");
}

#[test]
fn a_job_follows_new_rows_at_parallelism_3() {
    follow_in_a_job(3, "orders_p3");
}

#[test]
fn a_snapshot_only_job_reads_the_table_and_finishes() {
    let db = MariaDb::shared().unwrap();
    let mut sql = db.root_client().unwrap();
    create_orders(&mut sql, "orders_snapshot");
    insert_orders(&mut sql, "orders_snapshot", 1..=777);
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let got = Arc::new(Mutex::new(Vec::new()));
    let source = orders_source(&db, "orders_snapshot").snapshot_only().build().unwrap();
    env.add_source(source).add_sink(CollectSink(got.clone()));
    env.execute("snapshot").unwrap();
    assert_each_once(got.lock().unwrap().clone(), 777);

    // Rows added after open are not part of the snapshot.
    let mut source = orders_source(&db, "orders_snapshot").snapshot_only().build().unwrap();
    source.open(&RuntimeContext::for_test(0, 1)).unwrap();
    insert_orders(&mut sql, "orders_snapshot", 778..=800);
    let rows = poll_until(&mut source, Duration::from_secs(30), |_, status| status == SourceStatus::Finished);
    assert_each_once(rows, 777);
}

/// Polls `source` until `done(rows so far, last status)`, sleeping while idle.
fn poll_until<T: Data>(
    source: &mut MySqlSource<T>,
    limit: Duration,
    mut done: impl FnMut(&[T], SourceStatus) -> bool,
) -> Vec<T> {
    let started = Instant::now();
    let mut rows = Vec::new();
    loop {
        let status = source.poll_next(&mut rows).unwrap();
        if done(&rows, status) {
            return rows;
        }
        assert!(started.elapsed() < limit, "timed out after {limit:?} with {} rows", rows.len());
        if let SourceStatus::Idle(wait) = status {
            std::thread::sleep(wait.min(Duration::from_millis(50)));
        }
    }
}

#[test]
fn a_restored_source_continues_without_loss_or_repetition() {
    let db = MariaDb::shared().unwrap();
    let mut sql = db.root_client().unwrap();
    create_orders(&mut sql, "orders_restore");
    insert_orders(&mut sql, "orders_restore", 1..=500);

    let mut first = orders_source(&db, "orders_restore").build().unwrap();
    first.open(&RuntimeContext::for_test(0, 1)).unwrap();
    let mut rows = Vec::new();
    for _ in 0..3 {
        assert_eq!(first.poll_next(&mut rows).unwrap(), SourceStatus::MoreAvailable);
    }
    let state = first.snapshot_state(CheckpointId(1)).unwrap();
    first.close().unwrap();
    assert_eq!(rows.len(), 300);
    assert_eq!(state.last, Some(TrackingValue::Int(300)));

    // Rows arrive while the job is down.
    insert_orders(&mut sql, "orders_restore", 501..=600);
    let mut second = orders_source(&db, "orders_restore").build().unwrap();
    second.restore_state(state.clone()).unwrap();
    second.open(&RuntimeContext::for_test(0, 1)).unwrap();
    rows.extend(poll_until(&mut second, Duration::from_secs(30), |r, _| r.len() >= 300));
    // Nothing more comes: no row is read twice.
    let extra = poll_until(&mut second, Duration::from_secs(5), |_, s| matches!(s, SourceStatus::Idle(_)));
    assert!(extra.is_empty(), "{extra:?}");
    second.close().unwrap();
    assert_each_once(rows, 600);

    // A position only fits the subtask and parallelism it was taken at.
    let mut rescaled = orders_source(&db, "orders_restore").build().unwrap();
    rescaled.restore_state(state).unwrap();
    let e = rescaled.open(&RuntimeContext::for_test(1, 2)).unwrap_err().to_string();
    assert!(e.contains("cannot change its parallelism"), "{e}");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Event {
    id: i32,
    at: String,
    payload: String,
}

#[test]
fn a_datetime_tracking_column_with_ties_reads_each_row_once() {
    let db = MariaDb::shared().unwrap();
    let mut sql = db.root_client().unwrap();
    sql.exec(
        "DROP TABLE IF EXISTS events_ties; CREATE TABLE events_ties (
            id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, at DATETIME NOT NULL,
            payload VARCHAR(20) NOT NULL, KEY (at))",
    )
    .unwrap();
    // 25 rows per second (ids 1-25 at second 0, ...): more than a batch of
    // 10 share each value, and appended rows come at later seconds.
    let insert = |sql: &mut SqlClient, ids: std::ops::RangeInclusive<i32>| {
        let values: Vec<String> =
            ids.map(|i| format!("({i}, '2024-05-01 00:00:{:02}', 'p{i}')", (i - 1) / 25)).collect();
        sql.exec(&format!("INSERT INTO events_ties VALUES {}", values.join(", "))).unwrap();
    };
    insert(&mut sql, 1..=300);
    let source = || {
        MySqlSource::<Event>::builder()
            .url(db.url())
            .table("events_ties")
            .tracking_column("at")
            .split_column("id")
            .batch_size(10)
            .poll_interval(Duration::from_millis(20))
            .build()
            .unwrap()
    };
    let idle = |_: &[Event], s: SourceStatus| matches!(s, SourceStatus::Idle(_));
    let mut all = Vec::new();
    let mut subtasks = Vec::new();
    for i in 0..2 {
        let mut s = source();
        s.open(&RuntimeContext::for_test(i, 2)).unwrap();
        // Subtask 0 stops after two batches and is restored from its position.
        if i == 0 {
            let mut part = Vec::new();
            s.poll_next(&mut part).unwrap();
            s.poll_next(&mut part).unwrap();
            let state = s.snapshot_state(CheckpointId(1)).unwrap();
            s.close().unwrap();
            all.extend(part);
            s = source();
            s.restore_state(state).unwrap();
            s.open(&RuntimeContext::for_test(0, 2)).unwrap();
        }
        all.extend(poll_until(&mut s, Duration::from_secs(30), idle));
        subtasks.push(s);
    }
    insert(&mut sql, 301..=350);
    for s in &mut subtasks {
        std::thread::sleep(Duration::from_millis(30));
        all.extend(poll_until(s, Duration::from_secs(30), idle));
    }
    all.sort_by_key(|e| e.id);
    let ids: Vec<i32> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=350).collect::<Vec<_>>());
    assert_eq!(all[26], Event { id: 27, at: "2024-05-01T00:00:01".into(), payload: "p27".into() });
}

#[test]
fn a_lag_holds_back_rows_until_they_are_old_enough() {
    let db = MariaDb::shared().unwrap();
    let mut sql = db.root_client().unwrap();
    sql.exec(
        "DROP TABLE IF EXISTS events_lag; CREATE TABLE events_lag (
            id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, at DATETIME(6) NOT NULL, payload VARCHAR(20) NOT NULL);
         INSERT INTO events_lag VALUES (1, '2020-01-01 00:00:00', 'old')",
    )
    .unwrap();
    let mut source = MySqlSource::<Event>::builder()
        .url(db.url())
        .table("events_lag")
        .tracking_column("at")
        .lag(Duration::from_millis(1500))
        .poll_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    source.open(&RuntimeContext::for_test(0, 1)).unwrap();
    let old = poll_until(&mut source, Duration::from_secs(10), |_, s| matches!(s, SourceStatus::Idle(_)));
    assert_eq!(old, vec![Event { id: 1, at: "2020-01-01T00:00:00".into(), payload: "old".into() }]);
    sql.exec("INSERT INTO events_lag (at, payload) VALUES (NOW(6), 'new')").unwrap();
    let inserted = Instant::now();
    let new = poll_until(&mut source, Duration::from_secs(10), |r, _| !r.is_empty());
    assert!(inserted.elapsed() >= Duration::from_millis(1200), "read after {:?}", inserted.elapsed());
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].payload, "new");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Status {
    #[serde(rename = "new")]
    New,
    #[serde(rename = "paid")]
    Paid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Types {
    id: u32,
    tiny: i8,
    flag: bool,
    big: i64,
    ubig: u64,
    yr: u16,
    fl: f32,
    dbl: f64,
    dec_s: String,
    dec_f: f64,
    name: String,
    body: String,
    status: Status,
    tags: String,
    doc: String,
    uid: String,
    raw: Vec<u8>,
    blob_col: Vec<u8>,
    bits: u8,
    d: String,
    dt: String,
    dt6: String,
    ts: Option<String>,
    tm: String,
    maybe: Option<i32>,
}

#[test]
fn mysql_types_map_onto_serde_values() {
    let db = MariaDb::shared().unwrap();
    let mut sql = db.root_client().unwrap();
    sql.exec(
        "DROP TABLE IF EXISTS types_t; CREATE TABLE types_t (
            id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY, tiny TINYINT NOT NULL, flag TINYINT(1) NOT NULL,
            big BIGINT NOT NULL, ubig BIGINT UNSIGNED NOT NULL, yr YEAR, fl FLOAT, dbl DOUBLE,
            dec_s DECIMAL(12,3), dec_f DECIMAL(12,3), name VARCHAR(32), body TEXT,
            status ENUM('new','paid'), tags SET('a','b'), doc JSON, uid UUID, raw VARBINARY(8),
            blob_col BLOB, bits BIT(4), d DATE, dt DATETIME, dt6 DATETIME(6), ts TIMESTAMP(3) NULL,
            tm TIME, maybe INT NULL);
         INSERT INTO types_t VALUES (1, -5, 1, -9000000000, 18446744073709551615, 2024, 1.5, 2.25,
            '123.450', '-0.5', 'Zoë', 'long text', 'paid', 'a,b', '{\"k\": 1}',
            '123e4567-e89b-12d3-a456-426614174000', X'00FF', X'DEADBEEF', b'1010', '2024-02-29',
            '2024-02-29 13:05:09', '2024-02-29 13:05:09.000120', '2024-02-29 13:05:09.5', '-26:03:04', NULL)",
    )
    .unwrap();
    let mut source = MySqlSource::<Types>::builder()
        .url(db.url())
        .table("types_t")
        .tracking_column("id")
        .snapshot_only()
        .build()
        .unwrap();
    source.open(&RuntimeContext::for_test(0, 1)).unwrap();
    let rows = poll_until(&mut source, Duration::from_secs(10), |_, s| s == SourceStatus::Finished);
    assert_eq!(
        rows,
        vec![Types {
            id: 1,
            tiny: -5,
            flag: true,
            big: -9_000_000_000,
            ubig: u64::MAX,
            yr: 2024,
            fl: 1.5,
            dbl: 2.25,
            dec_s: "123.450".into(),
            dec_f: -0.5,
            name: "Zoë".into(),
            body: "long text".into(),
            status: Status::Paid,
            tags: "a,b".into(),
            doc: "{\"k\": 1}".into(),
            uid: "123e4567-e89b-12d3-a456-426614174000".into(),
            raw: vec![0x00, 0xff],
            blob_col: vec![0xde, 0xad, 0xbe, 0xef],
            bits: 0b1010,
            d: "2024-02-29".into(),
            dt: "2024-02-29T13:05:09".into(),
            dt6: "2024-02-29T13:05:09.000120".into(),
            ts: Some("2024-02-29T13:05:09.500000".into()),
            tm: "-26:03:04".into(),
            maybe: None,
        }]
    );
}

#[test]
fn a_killed_connection_is_retried_and_a_stopped_server_ends_in_a_clear_error() {
    // Its own server: this test kills connections and stops the server.
    let db = MariaDb::start().unwrap();
    let mut sql = db.root_client().unwrap();
    create_orders(&mut sql, "orders_retry");
    insert_orders(&mut sql, "orders_retry", 1..=250);
    let mut source = orders_source(&db, "orders_retry")
        .max_retries(3)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap();
    source.open(&RuntimeContext::for_test(0, 1)).unwrap();
    let mut rows = poll_until(&mut source, Duration::from_secs(30), |r, _| r.len() >= 250);

    let killed =
        sql.query(&format!("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{}'", MariaDb::USER)).unwrap();
    assert!(!killed.is_empty(), "the source's connection is listed");
    for row in &killed {
        sql.exec(&format!("KILL CONNECTION {}", row[0].as_deref().unwrap())).unwrap();
    }
    insert_orders(&mut sql, "orders_retry", 251..=400);
    rows.extend(poll_until(&mut source, Duration::from_secs(30), |r, _| r.len() >= 150));
    let extra = poll_until(&mut source, Duration::from_secs(5), |_, s| matches!(s, SourceStatus::Idle(_)));
    assert!(extra.is_empty());
    assert_each_once(rows, 400);
    // It read them over a new connection.
    let now =
        sql.query(&format!("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{}'", MariaDb::USER)).unwrap();
    assert_eq!(now.len(), 1, "one connection again: {now:?}");
    assert!(!killed.contains(&now[0]), "a new connection: {now:?} (killed {killed:?})");

    db.stop().unwrap();
    let started = Instant::now();
    let error = loop {
        match source.poll_next(&mut Vec::new()) {
            Err(e) => break e.to_string(),
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the source kept retrying");
    };
    assert!(
        error.contains(&format!(
            "lost the connection to MySQL at 127.0.0.1:{} and could not restore it after 4 attempt(s)",
            db.port()
        )),
        "{error}"
    );
    assert!(error.contains("check that the server is up"), "{error}");
    source.close().unwrap();
}

/// The error `open` gives for `source`.
fn open_error<T: Data>(source: MySqlSourceBuilder<T>) -> String {
    let mut source = source.build().unwrap();
    match source.open(&RuntimeContext::for_test(0, 1)) {
        Ok(()) => panic!("open succeeded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_input_gets_errors_that_name_the_problem() {
    let db = MariaDb::shared().unwrap();
    let mut sql = db.root_client().unwrap();
    create_orders(&mut sql, "orders_errors");
    insert_orders(&mut sql, "orders_errors", 1..=3);

    // Nothing listens on the port.
    let port = free_port().unwrap();
    let e = open_error(
        MySqlSource::<Order>::builder()
            .host("127.0.0.1")
            .port(port)
            .user("app")
            .password("pw")
            .database("shop")
            .table("orders")
            .tracking_column("id")
            .max_retries(1)
            .retry_backoff(Duration::from_millis(10), Duration::from_millis(10)),
    );
    assert!(e.starts_with(&format!("cannot connect to MySQL at 127.0.0.1:{port} after 2 attempt(s): ")), "{e}");
    assert!(e.contains("refused") && e.ends_with("is the server running and listening there?"), "{e}");

    let wrong_password =
        format!("mysql://{}:not-the-password@127.0.0.1:{}/{}", MariaDb::USER, db.port(), MariaDb::DATABASE);
    let e = open_error(orders_source(&db, "orders_errors").url(wrong_password));
    assert!(e.starts_with(&format!("MySQL at 127.0.0.1:{} refused user 'sluice': ", db.port())), "{e}");
    assert!(e.contains("Access denied") && e.contains("check the credentials"), "{e}");
    assert!(!e.contains("not-the-password"), "no password in messages: {e}");

    let root_no_db = db.root_url().replace("/sluice", "/no_such_db");
    let e = open_error(orders_source(&db, "orders").url(root_no_db));
    assert!(e.contains("database `no_such_db` does not exist"), "{e}");

    let e = open_error(orders_source(&db, "no_such_table"));
    assert_eq!(
        e,
        "table `sluice`.`no_such_table` does not exist (or user 'sluice' has no privilege on it); \
         create it or fix the table name"
    );

    let e = open_error(orders_source(&db, "orders_errors").tracking_column("updated_at"));
    assert!(
        e.starts_with("column `updated_at` (tracking column) does not exist in `sluice`.`orders_errors`; its columns are: id, customer"),
        "{e}"
    );
    let e = open_error(orders_source(&db, "orders_errors").tracking_column("customer"));
    assert!(e.contains("the tracking column `customer` of `orders_errors` has type VARCHAR"), "{e}");

    // Unsupported types: GEOMETRY at all, BLOB into a String.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct WithRegion {
        id: i64,
        region: Option<String>,
    }
    let e = open_error(MySqlSource::<WithRegion>::builder().url(db.url()).table("orders_errors").tracking_column("id"));
    assert!(
        e.starts_with("column `region` of `orders_errors` has MySQL type GEOMETRY, which the MySQL source cannot read"),
        "{e}"
    );
    sql.exec("DROP TABLE IF EXISTS blobs; CREATE TABLE blobs (id INT PRIMARY KEY, data BLOB); INSERT INTO blobs VALUES (1, 'x')")
        .unwrap();
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct BlobAsText {
        id: i32,
        data: String,
    }
    let e = open_error(MySqlSource::<BlobAsText>::builder().url(db.url()).table("blobs").tracking_column("id"));
    assert!(
        e.contains(
            "column `data` has MySQL type BLOB and cannot be read into a string field (binary columns map to Vec<u8>)"
        ),
        "{e}"
    );

    // A field without a column, found at open.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct WithEmail {
        id: i64,
        email: String,
    }
    let e = open_error(MySqlSource::<WithEmail>::builder().url(db.url()).table("orders_errors").tracking_column("id"));
    assert!(e.contains("field `email` has no column"), "{e}");

    // A row that does not fit, found when read: NULL into a non-Option.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct NoteRequired {
        id: i64,
        note: String,
    }
    let mut source = MySqlSource::<NoteRequired>::builder()
        .url(db.url())
        .table("orders_errors")
        .tracking_column("id")
        .build()
        .unwrap();
    source.open(&RuntimeContext::for_test(0, 1)).unwrap();
    let e = source.poll_next(&mut Vec::new()).unwrap_err().to_string();
    assert!(e.contains("the row of `orders_errors` with id = 3 cannot be read as"), "{e}");
    assert!(e.contains("column `note` is NULL but its field is not an Option"), "{e}");

    // In a job, the error is the job's failure cause.
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1);
    env.add_source(orders_source(&db, "no_such_table").build().unwrap())
        .add_sink(CollectSink(Arc::new(Mutex::new(Vec::new()))));
    let e = env.execute("missing table").unwrap_err().to_string();
    assert!(e.contains("failed: table `sluice`.`no_such_table` does not exist"), "{e}");
}
