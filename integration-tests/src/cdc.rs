//! The tables and writers of the MySQL CDC tests (`tests/mysql_cdc.rs`,
//! the CDC-to-Kafka example's kill test): a table of [`Item`]s, the rows it
//! holds, the change log a job committed to Kafka applied strictly
//! ([`KafkaChangeLog`]), and a writer that changes it concurrently in every way the
//! binlog can show (inserts, updates, primary key changes, multi-row
//! updates, deletes, transactions committing out of id order).
//!
//! These are test helpers: they panic with the reason when the server
//! cannot be reached.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::mariadb::{MariaDb, SqlClient};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A row of the test tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The primary key.
    pub id: i64,
    /// A number the writers change.
    pub v: i64,
    /// A text the writers change.
    pub name: String,
}

/// (Re)creates `table` (`id` BIGINT auto-increment key, `v`, `name`)
/// with `rows` rows.
pub fn create_items(sql: &mut SqlClient, table: &str, rows: i64) {
    sql.exec(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id BIGINT PRIMARY KEY AUTO_INCREMENT, v BIGINT NOT NULL, \
         name VARCHAR(40) NOT NULL)"
    ))
    .unwrap();
    let mut next = 1;
    while next <= rows {
        let end = (next + 499).min(rows);
        let values: Vec<String> = (next..=end).map(|i| format!("({i}, {}, 'item {i}')", i * 10)).collect();
        sql.exec(&format!("INSERT INTO {table} (id, v, name) VALUES {}", values.join(","))).unwrap();
        next = end + 1;
    }
}

/// Every row of `table` by id.
pub fn table_rows(sql: &mut SqlClient, table: &str) -> BTreeMap<i64, Item> {
    sql.query(&format!("SELECT id, v, name FROM {table}"))
        .unwrap()
        .into_iter()
        .map(|r| {
            let id: i64 = r[0].as_deref().unwrap().parse().unwrap();
            (id, Item { id, v: r[1].as_deref().unwrap().parse().unwrap(), name: r[2].clone().unwrap() })
        })
        .collect()
}

/// Writes to `table` until stopped: inserts, updates, deletes, primary key
/// changes, multi-row updates and transactions committing out of id order.
pub fn writer(
    db: &MariaDb,
    table: &str,
    seed: u64,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    let (url, table) = (db.root_url(), table.to_string());
    std::thread::spawn(move || {
        let mut a = SqlClient::connect(&url).unwrap();
        let mut b = SqlClient::connect(&url).unwrap();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        while !stop.load(Ordering::Relaxed) {
            let id = 1 + rand(22_000);
            let sql = match rand(7) {
                0 | 1 => format!("INSERT INTO {table} (v, name) VALUES ({id}, 'new')"),
                2 => format!("UPDATE {table} SET v = v + 1, name = 'upd' WHERE id = {id}"),
                3 => format!("DELETE FROM {table} WHERE id = {id}"),
                4 => format!("UPDATE {table} SET id = id + 5000 WHERE id = {id}"),
                5 => format!("UPDATE {table} SET v = v + 7 WHERE id BETWEEN {id} AND {}", id + 300),
                _ => {
                    // The first transaction gets the lower id and commits last.
                    a.exec("BEGIN").unwrap();
                    a.exec(&format!("INSERT INTO {table} (v, name) VALUES (1, 'slow')")).unwrap();
                    b.exec(&format!("INSERT INTO {table} (v, name) VALUES (2, 'fast')")).unwrap();
                    a.exec(&format!("UPDATE {table} SET v = v + 100 WHERE id = {id}")).unwrap();
                    a.exec("COMMIT").unwrap();
                    ops.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            // A key change may collide with an earlier one: ignore that.
            let _ = a.exec(&sql);
            ops.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

/// The committed change records (Debezium-like JSON envelopes, see
/// `ChangeEvent::to_json_envelope`) of a Kafka topic's partition 0, applied
/// strictly to a view of the table: an insert of a present key, or a delete
/// or update-before of a row that is not there as it was, panics (a
/// duplicate or a gap).
pub struct KafkaChangeLog {
    consumer: rdkafka::consumer::BaseConsumer,
    /// The table as the change log says.
    pub view: BTreeMap<i64, Item>,
    /// Change records applied.
    pub events: u64,
    /// Of which snapshot rows.
    pub snapshot_events: u64,
}

impl KafkaChangeLog {
    /// Reads `topic` (one partition) from its start, committed records only.
    pub fn new(bootstrap: &str, topic: &str) -> Self {
        let consumer = crate::wordcount::committed_reader(bootstrap, topic, 1, "cdc-change-log");
        KafkaChangeLog { consumer, view: BTreeMap::new(), events: 0, snapshot_events: 0 }
    }

    /// Applies what arrives within `within`.
    pub fn poll_for(&mut self, within: Duration) {
        use rdkafka::Message;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let Some(m) = self.consumer.poll(Duration::from_millis(50)) else { continue };
            let m = m.unwrap();
            let envelope: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
            self.apply(&envelope);
        }
    }

    fn apply(&mut self, e: &serde_json::Value) {
        let row = |v: &serde_json::Value| -> Option<Item> {
            if v.is_null() {
                return None;
            }
            Some(serde_json::from_value(v.clone()).unwrap_or_else(|err| panic!("a row that is no Item: {v} ({err})")))
        };
        let (before, after) = (row(&e["before"]), row(&e["after"]));
        match (e["op"].as_str().unwrap_or_else(|| panic!("no op in {e}")), before, after) {
            ("r" | "c" | "u", None, Some(after)) => {
                if let Some(old) = self.view.insert(after.id, after) {
                    panic!("duplicate: {e} while the view has {old:?}");
                }
            }
            ("u" | "d", Some(before), None) => {
                let old = self.view.remove(&before.id);
                assert_eq!(old.as_ref(), Some(&before), "gap: {e} but the view has {old:?}");
            }
            _ => panic!("unexpected change record {e}"),
        }
        self.events += 1;
        if e["source"]["snapshot"] == serde_json::Value::Bool(true) {
            self.snapshot_events += 1;
        }
    }
}
