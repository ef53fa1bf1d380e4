//! Talking to the server outside the binlog stream: connecting, the checks
//! at `open` (binlog settings, privileges, positions), watermarks, and the
//! captured tables' columns and keys.

use super::builder::Config;
use super::error::CdcError;
use super::offset::{parse_gtid_set, BinlogPosition, Gtid};
use super::table::TableSchema;
use crate::mysql::error::{connect_failure, Failure};
use crate::mysql::MySqlError;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use std::collections::BTreeMap;

/// Connects (one attempt, within the connect timeout) and sets the session
/// time zone to UTC, so TIMESTAMPs read by `SELECT` match the binlog's.
pub(crate) async fn connect(cfg: &Config) -> Result<Conn, CdcError> {
    let database = cfg.database.as_deref().unwrap_or_default();
    let conn = match tokio::time::timeout(cfg.connect_timeout, Conn::new(cfg.opts.clone())).await {
        Err(_) => {
            return Err(MySqlError::Unreachable {
                addr: cfg.addr.clone(),
                attempts: 1,
                message: format!("no answer within {:?}", cfg.connect_timeout),
            }
            .into())
        }
        Ok(Err(e)) => {
            return Err(match connect_failure(&e, &cfg.addr, &cfg.user, database) {
                Failure::Fatal(e) => e.into(),
                Failure::Transient(message) => {
                    MySqlError::Unreachable { addr: cfg.addr.clone(), attempts: 1, message }.into()
                }
            })
        }
        Ok(Ok(conn)) => conn,
    };
    let mut conn = conn;
    run(&mut conn, cfg, "SET time_zone = '+00:00'").await?;
    Ok(conn)
}

fn query_error(cfg: &Config, what: &str, e: mysql_async::Error) -> CdcError {
    CdcError::Query { addr: cfg.addr.clone(), what: what.into(), message: e.to_string() }
}

/// Runs a statement without results.
pub(crate) async fn run(conn: &mut Conn, cfg: &Config, sql: &str) -> Result<(), CdcError> {
    conn.query_drop(sql).await.map_err(|e| query_error(cfg, sql, e))
}

/// Runs a query (binary protocol when it has parameters); cells as driver values.
pub(crate) async fn rows(
    conn: &mut Conn,
    cfg: &Config,
    sql: &str,
    params: Vec<Value>,
) -> Result<Vec<Vec<Value>>, CdcError> {
    let result: Result<Vec<Row>, _> =
        if params.is_empty() { conn.query(sql).await } else { conn.exec(sql, params).await };
    Ok(result
        .map_err(|e| query_error(cfg, sql, e))?
        .into_iter()
        .map(|r| r.unwrap_raw().into_iter().map(|v| v.unwrap_or(Value::NULL)).collect())
        .collect())
}

/// A cell as text (`""` for NULL).
pub(crate) fn text(row: &[Value], i: usize) -> String {
    match row.get(i) {
        Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::NULL) | None => String::new(),
        Some(other) => other.as_sql(true).trim_matches('\'').to_string(),
    }
}

/// A cell as an unsigned number.
fn number(row: &[Value], i: usize) -> Option<u64> {
    match row.get(i) {
        Some(Value::Int(n)) => u64::try_from(*n).ok(),
        Some(Value::UInt(n)) => Some(*n),
        Some(Value::Bytes(b)) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// Checks that the server writes a full-row binlog and that the user may
/// read it.
pub(crate) async fn check_server(conn: &mut Conn, cfg: &Config) -> Result<(), CdcError> {
    let vars =
        rows(conn, cfg, "SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image", vec![]).await?;
    let row = vars.first().cloned().unwrap_or_default();
    if number(&row, 0) != Some(1) {
        return Err(CdcError::BinlogOff { addr: cfg.addr.clone() });
    }
    let format = text(&row, 1);
    if !format.eq_ignore_ascii_case("ROW") {
        return Err(CdcError::BinlogNotRow { addr: cfg.addr.clone(), format });
    }
    let image = text(&row, 2);
    if !image.eq_ignore_ascii_case("FULL") {
        return Err(CdcError::RowImageNotFull { addr: cfg.addr.clone(), image });
    }
    let grants = rows(
        conn,
        cfg,
        "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = \
         CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')",
        vec![],
    )
    .await?;
    let held: Vec<String> = grants.iter().map(|r| text(r, 0).to_ascii_uppercase()).collect();
    let has = |p: &str| held.iter().any(|h| h == p);
    let missing = if !has("REPLICATION SLAVE") {
        Some("REPLICATION SLAVE")
    } else if !(has("REPLICATION CLIENT") || has("BINLOG MONITOR")) {
        Some("REPLICATION CLIENT")
    } else {
        None
    };
    if let Some(privilege) = missing {
        return Err(CdcError::MissingPrivilege {
            addr: cfg.addr.clone(),
            user: cfg.user.clone(),
            privilege,
            detail: String::new(),
        });
    }
    Ok(())
}

/// The current end of the binlog (`SHOW MASTER STATUS`): a watermark.
pub(crate) async fn master_status(conn: &mut Conn, cfg: &Config) -> Result<BinlogPosition, CdcError> {
    let status = rows(conn, cfg, "SHOW MASTER STATUS", vec![]).await?;
    let row = status.first().ok_or_else(|| CdcError::BinlogOff { addr: cfg.addr.clone() })?;
    let pos = number(row, 1).ok_or_else(|| CdcError::Binlog {
        addr: cfg.addr.clone(),
        message: format!("SHOW MASTER STATUS returned no position: {row:?}"),
    })?;
    Ok(BinlogPosition::new(text(row, 0), pos))
}

/// The binlog files the server has, oldest first, with their sizes.
pub(crate) async fn binary_logs(conn: &mut Conn, cfg: &Config) -> Result<Vec<BinlogPosition>, CdcError> {
    let logs = rows(conn, cfg, "SHOW BINARY LOGS", vec![]).await?;
    Ok(logs.iter().map(|r| BinlogPosition::new(text(r, 0), number(r, 1).unwrap_or(0))).collect())
}

/// Events `SHOW BINLOG EVENTS` lists per query while looking for a GTID.
const EVENTS_PER_QUERY: u64 = 10_000;

/// Where a reader starting after the GTID position `set` begins: the start
/// of the first transaction (its GTID event) of a listed domain with a
/// higher sequence number, else the binlog's end. Transactions after `set`
/// that the server purged are an error.
pub(crate) async fn gtid_start(conn: &mut Conn, cfg: &Config, set: &[Gtid]) -> Result<BinlogPosition, CdcError> {
    let logs = binary_logs(conn, cfg).await?;
    let oldest = logs.first().ok_or_else(|| CdcError::BinlogOff { addr: cfg.addr.clone() })?;
    // The GTID state before the oldest file: past the requested position,
    // the transactions in between are gone.
    let sql = format!("SELECT BINLOG_GTID_POS({}, 4)", quoted(&oldest.file));
    let before_oldest = rows(conn, cfg, &sql, vec![]).await?;
    let state = before_oldest.first().map(|r| text(r, 0)).unwrap_or_default();
    let state = if state.trim().is_empty() { Vec::new() } else { parse_gtid_set(&state).unwrap_or_default() };
    let wanted = set.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    for g in set {
        if state.iter().any(|s| s.domain == g.domain && s.seq > g.seq) {
            return Err(CdcError::PurgedPosition {
                addr: cfg.addr.clone(),
                position: wanted,
                oldest: oldest.file.clone(),
            });
        }
    }
    for log in &logs {
        let mut from = 4u64;
        loop {
            let sql = format!("SHOW BINLOG EVENTS IN {} FROM {from} LIMIT {EVENTS_PER_QUERY}", quoted(&log.file));
            let events = rows(conn, cfg, &sql, vec![]).await?;
            for e in &events {
                // Log_name, Pos, Event_type, Server_id, End_log_pos, Info ("BEGIN GTID 0-1-42").
                if text(e, 2) != "Gtid" {
                    continue;
                }
                let info = text(e, 5);
                let Some(gtid) = info.split_whitespace().last().and_then(|g| g.parse::<Gtid>().ok()) else { continue };
                if set.iter().any(|g| g.domain == gtid.domain && gtid.seq > g.seq) {
                    let pos = number(e, 1).ok_or_else(|| CdcError::Binlog {
                        addr: cfg.addr.clone(),
                        message: format!("SHOW BINLOG EVENTS gave no position for {info}"),
                    })?;
                    return Ok(BinlogPosition::new(log.file.clone(), pos));
                }
            }
            match events.last().and_then(|e| number(e, 4)) {
                Some(end) if events.len() as u64 == EVENTS_PER_QUERY && end > from => from = end,
                _ => break,
            }
        }
    }
    master_status(conn, cfg).await
}

/// `text` as a single-quoted SQL string.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// Checks that `position` is still on the server and not past its end.
pub(crate) async fn check_position(conn: &mut Conn, cfg: &Config, position: &BinlogPosition) -> Result<(), CdcError> {
    super::offset::file_seq(&position.file)?;
    let logs = binary_logs(conn, cfg).await?;
    let oldest = logs.first().map(|l| l.file.clone()).unwrap_or_default();
    match logs.iter().find(|l| l.file == position.file) {
        Some(log) if position.pos < 4 || position.pos > log.pos => Err(CdcError::BadPosition {
            message: format!(
                "{position} is outside binlog file {} ({} bytes) on {}; give a position SHOW BINLOG EVENTS lists",
                log.file, log.pos, cfg.addr
            ),
        }),
        Some(_) => Ok(()),
        None if logs.last().is_some_and(|last| position > last) => Err(CdcError::BadPosition {
            message: format!(
                "binlog file {} does not exist on {} (the newest is {}); give a file SHOW BINARY LOGS lists",
                position.file,
                cfg.addr,
                logs.last().map(|l| l.file.as_str()).unwrap_or_default()
            ),
        }),
        None => Err(CdcError::PurgedPosition { addr: cfg.addr.clone(), position: position.to_string(), oldest }),
    }
}

/// A column as `(name, DATA_TYPE, COLUMN_TYPE)`.
type ColumnRow = (String, String, String);

/// The captured tables, in name order, with their columns and keys.
pub(crate) async fn load_tables(conn: &mut Conn, cfg: &Config) -> Result<Vec<TableSchema>, CdcError> {
    let columns = rows(
        conn,
        cfg,
        "SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE \
         FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
           ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         WHERE t.TABLE_TYPE = 'BASE TABLE' \
           AND c.TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') \
         ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION",
        vec![],
    )
    .await?;
    let mut tables: BTreeMap<(String, String), Vec<ColumnRow>> = BTreeMap::new();
    for r in &columns {
        let (db, table) = (text(r, 0), text(r, 1));
        if cfg.selection.matches(cfg.database.as_deref(), &db, &table) {
            tables.entry((db, table)).or_default().push((text(r, 2), text(r, 3), text(r, 4)));
        }
    }
    if tables.is_empty() {
        return Err(CdcError::NoTables { addr: cfg.addr.clone(), selection: cfg.selection.to_string() });
    }
    let keys = rows(
        conn,
        cfg,
        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
         WHERE CONSTRAINT_NAME = 'PRIMARY' ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
        vec![],
    )
    .await?;
    let mut out = Vec::new();
    for ((db, table), cols) in tables {
        let id = super::table::table_id(&db, &table);
        let mut key: Vec<String> =
            keys.iter().filter(|r| text(r, 0) == db && text(r, 1) == table).map(|r| text(r, 2)).collect();
        if key.is_empty() {
            match cfg.chunk_keys.get(&id) {
                Some(column) => key.push(column.clone()),
                None => return Err(CdcError::NoPrimaryKey { database: db, table }),
            }
        }
        let schema = TableSchema::new(&db, &table, &cols, &key);
        if schema.key.len() != key.len() {
            return Err(CdcError::BadState {
                message: format!("the chunk key {key:?} of `{db}`.`{table}` names a column the table does not have"),
            });
        }
        out.push(schema);
    }
    Ok(out)
}
