//! A small benchmark of the MySQL CDC source against MariaDB in a
//! container: snapshot rows/s of a large table, binlog row changes/s of
//! one big UPDATE, and the time `mariadb-dump` (mysqldump) takes to dump
//! the same table inside the container. It prints figures; it asserts
//! nothing. Build it with `--release` for meaningful numbers.
//!
//! ```text
//! cargo run --release -p sluice-integration-tests --bin mysql_cdc_bench [ROWS]   # default 200000
//! ```

use serde::{Deserialize, Serialize};
use sluice::{RuntimeContext, Source};
use sluice_connectors::mysql::cdc::{ChangeEvent, MySqlCdcSource};
use sluice_integration_tests::mariadb::MariaDb;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    id: i64,
    v: i64,
    name: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: u64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(200_000);
    let db = MariaDb::start()?;
    let mut sql = db.root_client()?;
    sql.exec(
        "CREATE TABLE big (id BIGINT PRIMARY KEY, v BIGINT NOT NULL, name VARCHAR(40) NOT NULL, \
         note TEXT, at DATETIME(6) NOT NULL)",
    )?;
    sql.exec(&format!(
        "INSERT INTO big SELECT seq, seq * 10, CONCAT('item ', seq), REPEAT('x', 50), NOW(6) FROM seq_1_to_{rows}"
    ))?;
    println!("table `big`: {rows} rows");

    let mut source = MySqlCdcSource::<Item>::builder()
        .url(db.url())
        .tables(["big"])
        .server_ids(7000..=7000)
        .chunk_size(8096)
        .heartbeat(Duration::from_secs(1))
        .build()?;
    let started = Instant::now();
    source.open(&RuntimeContext::for_test(0, 1))?;
    let mut out: Vec<ChangeEvent<Item>> = Vec::new();
    let mut snapshot = 0u64;
    while !source.state().snapshot_done {
        source.poll_next(&mut out)?;
        snapshot += out.len() as u64;
        out.clear();
    }
    let secs = started.elapsed().as_secs_f64();
    println!("snapshot:  {snapshot} rows in {secs:.2} s = {:.0} rows/s (1 subtask)", snapshot as f64 / secs);

    sql.exec("UPDATE big SET v = v + 1")?;
    let started = Instant::now();
    let mut changes = 0u64;
    while changes < 2 * rows {
        source.poll_next(&mut out)?;
        changes += out.len() as u64;
        out.clear();
        if started.elapsed() > Duration::from_secs(600) {
            println!("binlog:    gave up after 600 s with {changes} events");
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "binlog:    {changes} events ({} updated rows) in {secs:.2} s = {:.0} events/s",
        changes / 2,
        changes as f64 / secs
    );
    source.close()?;

    let started = Instant::now();
    let dump = Command::new("docker")
        .args(["exec", db.id(), "sh", "-c"])
        .arg(format!("mariadb-dump -uroot -p'{}' --single-transaction sluice big > /dev/null", MariaDb::ROOT_PASSWORD))
        .status()?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "mysqldump: {rows} rows in {secs:.2} s = {:.0} rows/s (mariadb-dump in the container, {dump})",
        rows as f64 / secs
    );
    Ok(())
}
