//! The MySQL source: reads a MySQL / MariaDB table, then follows its new
//! rows by a growing *tracking column* (Flink's JDBC source in polling mode).
//!
//! ```no_run
//! use sluice::StreamExecutionEnvironment;
//! use sluice_connectors::mysql::MySqlSource;
//! use std::time::Duration;
//!
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
//! struct Order { id: u64, customer: String, amount: f64, note: Option<String>, created: String }
//!
//! let source = MySqlSource::<Order>::builder()
//!     .url("mysql://app:secret@127.0.0.1:3306/shop")
//!     .table("orders")
//!     .tracking_column("id")
//!     .batch_size(500)
//!     .poll_interval(Duration::from_millis(200))
//!     .build()?;
//! let env = StreamExecutionEnvironment::new();
//! env.add_source(source).map(|o: Order| o.amount).print();
//! env.execute("orders")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it reads
//!
//! Each subtask runs `SELECT cols FROM db.table WHERE col > :last [AND
//! MOD(split, p) IN (i, i - p)] ORDER BY col LIMIT :batch + 1` and remembers
//! the largest tracking value it emitted. The first query reads the table as
//! it is (the snapshot); later ones find rows inserted since, every
//! `poll_interval` once caught up. One `poll_next` emits at most one batch.
//! Rows sharing a tracking value (a DATETIME many rows have, a non-unique
//! integer) are never split between batches: the extra row shows whether a
//! batch would end inside such a run; if so the run is left for the next
//! batch, and a batch that is one run only is completed with every row of
//! that value (one query without a limit).
//!
//! [`MySqlSourceBuilder::snapshot_only`] makes the source bounded: at the
//! first `open` each subtask notes `MAX(col)` and finishes once it has read
//! its share up to it (subtasks open at slightly different times, so rows
//! inserted meanwhile may be in one share and not another).
//!
//! Rows whose tracking column is NULL are never read. Updates and deletes
//! are not seen (this is not change data capture): only rows whose
//! tracking value is above the position.
//!
//! # Parallelism
//!
//! Subtask *i* of *p* reads the rows with `MOD(split, p) = i` (or `i - p`
//! for negative values), where `split` is [`split_column`] or, by default,
//! the tracking column if it is an integer. Every row goes to exactly one
//! subtask, each subtask tracks its own position. Limits: `split` must be
//! an integer column (a temporal tracking column at `p > 1` needs an
//! explicit split column, e.g. the primary key); rows with a NULL split
//! value are not read at `p > 1`; the `MOD` filter cannot use an index, so
//! each subtask scans about `p` times the rows it returns (the range on the
//! tracking column still uses its index); and a saved position only fits
//! the same parallelism (restoring at another one is an error, not a
//! silent re-split). Parallelism 1 reads everything with no filter.
//!
//! # Types
//!
//! Columns match the record's fields by name (a struct), or come in order
//! (a tuple), or alone (a single value with one selected column); any
//! `Deserialize` type works, including `HashMap<String, _>`. Without
//! [`columns`], a struct record selects only its fields' columns, so other
//! columns (even unsupported ones) are not read.
//!
//! | MySQL | serde value | e.g. field type |
//! | --- | --- | --- |
//! | TINYINT .. BIGINT, YEAR (signed / UNSIGNED) | `i64` / `u64` (range-checked into smaller ints; into `bool`: non-zero is true) | `i32`, `u64`, `bool` |
//! | FLOAT, DOUBLE | `f32`, `f64` | `f64` |
//! | DECIMAL, NUMERIC | its exact text, e.g. `"12.30"`; parsed for `f64` fields (may round) and for integer fields when it has no fraction | `String`, `f64` |
//! | CHAR, VARCHAR, TEXT, ENUM, SET, JSON, UUID, INET4/6 | string (ENUM also into a unit-variant Rust enum) | `String`, an enum |
//! | BINARY, VARBINARY, BLOB | bytes (not a string: an error) | `Vec<u8>` |
//! | BIT(n ≤ 64) | `u64` | `u8`, `u64`, `bool` |
//! | DATE | `"2024-02-29"` | `String`, `chrono::NaiveDate` |
//! | DATETIME, TIMESTAMP | `"2024-02-29T13:05:09"`, `".000120"` appended when the microseconds are not 0; TIMESTAMP in the session time zone (the server's default), without an offset | `String`, `chrono::NaiveDateTime` |
//! | TIME | `"-26:03:04"` (hours may exceed 24) | `String` |
//! | NULL | none | `Option<_>` (NULL into a non-`Option` field is an error) |
//!
//! Unsupported (an error at `open` if the record needs the column): the
//! spatial types (GEOMETRY, POINT, POLYGON, ...) and any type not listed
//! above (e.g. MySQL 9's VECTOR). Select `ST_AsText(col)` in a view instead.
//! Zero dates (`0000-00-00`) come as such text.
//!
//! # Checks at `open`
//!
//! The connection (unreachable server, wrong credentials, unknown
//! database), the table and columns (from `information_schema.columns`),
//! the tracking column's type, and the record type against the column types:
//! the record is read once from a made-up row, which finds a field without
//! a column or a column type that cannot make its field before any data is
//! read. NULLs and out-of-range values can only fail on a real row; that
//! error names the row's tracking value, the column and the problem.
//!
//! # Position, restore and retries
//!
//! The state ([`MySqlPosition`]) is the last tracking value emitted; a
//! restored source continues with `col > last`, no row lost or repeated.
//! A lost connection or a failed query (I/O error, killed connection,
//! timeout) is retried with exponential backoff ([`retry_backoff`], up to
//! [`max_retries`] in a row, each logged with `tracing`); the source does
//! not block meanwhile (it reports `Idle`), and because each query starts at
//! the position, a retry neither loses nor repeats rows. When the retries
//! run out the source fails with an error naming the server.
//!
//! # Known limitation: late commits
//!
//! A following reader can miss a row whose tracking value is below one it
//! already read: `AUTO_INCREMENT` ids are handed out at insert, not at
//! commit, so with concurrent transactions id 11 can become visible after
//! id 12 was read, and is then skipped forever. The same holds for
//! timestamps set before a slow commit, and for a row whose tracking value
//! *equals* the last one read: with a DATETIME of whole seconds set by
//! `NOW()`, a row inserted in the same second after a poll is missed (use
//! `DATETIME(6)` and a lag). Mitigations: with a temporal
//! tracking column set [`lag`] longer than your transactions last (only
//! rows older than `NOW(6) - lag` are read); with an integer column, insert
//! in short transactions or from a single writer. For exact capture of
//! every change use binlog-based change data capture ([`cdc`]).
//!
//! [`split_column`]: MySqlSourceBuilder::split_column
//! [`columns`]: MySqlSourceBuilder::columns
//! [`lag`]: MySqlSourceBuilder::lag
//! [`retry_backoff`]: MySqlSourceBuilder::retry_backoff
//! [`max_retries`]: MySqlSourceBuilder::max_retries

mod builder;
pub mod cdc;
mod de;
mod error;
mod position;
mod row;
mod schema;
mod server;
mod source;
mod sql;

pub use builder::MySqlSourceBuilder;
pub use error::MySqlError;
pub use position::{MySqlPosition, SnapshotEnd, TrackingValue};
pub use source::MySqlSource;
