//! The snapshot: planning a table's chunks and reading one chunk with the
//! DBLog watermark algorithm, without locks.
//!
//! For one chunk: note the binlog end *L* (`SHOW MASTER STATUS`), `SELECT`
//! the chunk's rows, note the end *H*; then read the binlog from *L* to *H*
//! and apply its changes to keys of the chunk onto the selected rows. The
//! `SELECT` saw the table at some point between *L* and *H*, so after the
//! changes the rows are the chunk's state at exactly *H*; the binlog reader
//! later emits a change of the chunk only if it is after *H*.

use super::binlog::{Item, Reader, RowsKind};
use super::builder::Config;
use super::error::CdcError;
use super::offset::BinlogPosition;
use super::server;
use super::state::{chunk_bounds, chunk_of, TableProgress};
use super::table::{binlog_row, RowKey, TableSchema};
use mysql_async::{Conn, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// `` `name` `` with backticks doubled.
pub(crate) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn column_list(schema: &TableSchema) -> String {
    schema.columns.iter().map(|c| quote(&c.info.name)).collect::<Vec<_>>().join(", ")
}

fn bound(v: i128) -> Value {
    match i64::try_from(v) {
        Ok(i) => Value::Int(i),
        Err(_) => Value::UInt(u64::try_from(v).unwrap_or(u64::MAX)),
    }
}

/// Plans a table's snapshot: the chunk range from the first key column's
/// MIN and MAX (an empty table: no chunks).
pub(crate) async fn plan(conn: &mut Conn, cfg: &Config, schema: &TableSchema) -> Result<TableProgress, CdcError> {
    if !schema.integer_key {
        return Ok(TableProgress { range: None, next: 0, done: BTreeMap::new() });
    }
    let key = schema.key.first().and_then(|&i| schema.columns.get(i)).map(|c| quote(&c.info.name));
    let sql = format!(
        "SELECT MIN({k}), MAX({k}) FROM {}.{}",
        quote(&schema.database),
        quote(&schema.table),
        k = key.unwrap_or_default()
    );
    let rows = server::rows(conn, cfg, &sql, vec![]).await?;
    let row = rows.first().cloned().unwrap_or_default();
    let int = |v: Option<&Value>| match v {
        Some(Value::Int(i)) => Some(i128::from(*i)),
        Some(Value::UInt(u)) => Some(i128::from(*u)),
        Some(Value::Bytes(b)) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    };
    Ok(match (int(row.first()), int(row.get(1))) {
        (Some(min), Some(max)) => {
            let (first, last) = (chunk_of(min, cfg.chunk_size), chunk_of(max, cfg.chunk_size));
            TableProgress { range: Some((first, last)), next: first, done: BTreeMap::new() }
        }
        _ => TableProgress { range: Some((1, 0)), next: 1, done: BTreeMap::new() },
    })
}

/// A chunk's rows at its high watermark.
pub(crate) struct Chunk {
    /// The rows, by key, as driver values in ordinal order.
    pub rows: BTreeMap<RowKey, Vec<Value>>,
    /// The high watermark.
    pub high: BinlogPosition,
}

/// Whether a key value lies in chunk `k` (`None`: the whole table).
fn in_chunk(schema: &TableSchema, key: &RowKey, k: Option<i64>, chunk_size: u64) -> bool {
    match k {
        None => true,
        Some(k) => schema.chunk_value(key).is_some_and(|v| chunk_of(v, chunk_size) == k),
    }
}

/// Reads chunk `k` of `schema` (`None`: the whole table) at its high
/// watermark; `server_id` is the reader's replica id.
pub(crate) async fn read_chunk(
    conn: &mut Conn,
    cfg: &Config,
    schema: &TableSchema,
    k: Option<i64>,
    server_id: u32,
) -> Result<Chunk, CdcError> {
    let low = server::master_status(conn, cfg).await?;
    let mut sql = format!("SELECT {} FROM {}.{}", column_list(schema), quote(&schema.database), quote(&schema.table));
    let mut params = Vec::new();
    if let Some(k) = k {
        let key = schema.key.first().and_then(|&i| schema.columns.get(i)).map(|c| quote(&c.info.name));
        let key = key.unwrap_or_default();
        let (lo, hi) = chunk_bounds(k, cfg.chunk_size);
        let mut conds = Vec::new();
        if let Some(lo) = lo {
            conds.push(format!("{key} >= ?"));
            params.push(bound(lo));
        }
        if let Some(hi) = hi {
            conds.push(format!("{key} < ?"));
            params.push(bound(hi));
        }
        if !conds.is_empty() {
            sql = format!("{sql} WHERE {}", conds.join(" AND "));
        }
    }
    let selected = server::rows(conn, cfg, &sql, params).await?;
    let high = server::master_status(conn, cfg).await?;
    let mut rows: BTreeMap<RowKey, Vec<Value>> = selected.into_iter().map(|r| (schema.key_of(&r), r)).collect();
    if high > low {
        let mut reader = Reader::open(cfg, server_id, &low).await?;
        let result = reconcile(&mut reader, cfg, schema, k, &high, &mut rows).await;
        reader.close().await;
        result?;
    }
    Ok(Chunk { rows, high })
}

/// Applies the binlog from the reader's start up to `high` onto `rows`.
async fn reconcile(
    reader: &mut Reader,
    cfg: &Config,
    schema: &TableSchema,
    k: Option<i64>,
    high: &BinlogPosition,
    rows: &mut BTreeMap<RowKey, Vec<Value>>,
) -> Result<(), CdcError> {
    while reader.last_end < *high {
        let item = reader.next(Duration::from_secs(30)).await?;
        let Some(item) = item else {
            return Err(CdcError::Binlog {
                addr: cfg.addr.clone(),
                message: format!("the binlog did not reach the watermark {high} within 30 s (at {})", reader.last_end),
            });
        };
        let Item::Rows { database, table, kind, rows: pairs, end, .. } = item else { continue };
        if database != schema.database || table != schema.table || end > *high {
            continue;
        }
        for (before, after) in pairs {
            let convert = |row| {
                binlog_row(schema, row).map_err(|message| CdcError::RowMismatch {
                    database: database.clone(),
                    table: table.clone(),
                    mark: end.to_string(),
                    record_type: "the table's columns",
                    message,
                })
            };
            if let (Some(before), RowsKind::Update | RowsKind::Delete) = (before, kind) {
                let before = convert(before)?;
                let key = schema.key_of(&before);
                if in_chunk(schema, &key, k, cfg.chunk_size) {
                    rows.remove(&key);
                }
            }
            if let (Some(after), RowsKind::Update | RowsKind::Write) = (after, kind) {
                let after = convert(after)?;
                let key = schema.key_of(&after);
                if in_chunk(schema, &key, k, cfg.chunk_size) {
                    rows.insert(key, after);
                }
            }
        }
    }
    Ok(())
}
