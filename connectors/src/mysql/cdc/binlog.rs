//! Reading the binlog: a replica connection (`COM_BINLOG_DUMP`) turned into
//! row changes, DDL statements and positions.
//!
//! The reader tracks the current file (from rotate events), the end of the
//! last event, and the *boundary*: the position after the last complete
//! transaction, where a restarted reader can begin (a reader must start at
//! a transaction so it sees the table map events of its rows).

use super::builder::Config;
use super::error::CdcError;
use super::offset::{BinlogPosition, Gtid};
use super::server;
use mysql_async::binlog::events::{EventData, RowsEventData};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::{BinlogStream, BinlogStreamRequest};
use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

/// The kind of a rows event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowsKind {
    Write,
    Update,
    Delete,
}

/// A before and after image (inserts have no before, deletes no after).
pub(crate) type RowPair = (Option<BinlogRow>, Option<BinlogRow>);

/// What one binlog event means to the source.
pub(crate) enum Item {
    /// Row changes of one table; `end` is the end of the event.
    Rows { database: String, table: String, kind: RowsKind, rows: Vec<RowPair>, end: BinlogPosition, timestamp: u32 },
    /// A statement other than BEGIN / COMMIT (DDL, TRUNCATE, ...).
    Query { schema: String, statement: String, end: BinlogPosition, timestamp: u32 },
    /// Anything else: only the position moved.
    Other,
}

/// MariaDB event types mysql_common does not decode.
const MARIADB_GTID_EVENT: u8 = 162;
/// The GTID event's flag: a transaction without BEGIN / COMMIT (DDL).
const FL_STANDALONE: u8 = 1;

/// A binlog reader.
pub(crate) struct Reader {
    stream: BinlogStream,
    addr: String,
    user: String,
    file: String,
    /// End of the last event read.
    pub last_end: BinlogPosition,
    /// After the last complete transaction.
    pub boundary: BinlogPosition,
    /// The GTID of the current transaction.
    pub gtid: Option<String>,
    in_txn: bool,
    standalone: bool,
    /// Whether a format description event came (before it the checksum
    /// algorithm is unknown).
    seen_format: bool,
}

impl Reader {
    /// Registers as replica `server_id` and asks for the binlog from `start`
    /// (a transaction boundary), with heartbeats every `cfg.heartbeat`.
    pub(crate) async fn open(cfg: &Config, server_id: u32, start: &BinlogPosition) -> Result<Reader, CdcError> {
        let mut conn = server::connect(cfg).await?;
        let period = u64::try_from(cfg.heartbeat.as_nanos()).unwrap_or(u64::MAX);
        server::run(&mut conn, cfg, &format!("SET @master_heartbeat_period = {period}")).await?;
        // MariaDB: send GTID events as such (not as BEGIN queries).
        server::run(&mut conn, cfg, "SET @mariadb_slave_capability = 4").await?;
        let request = BinlogStreamRequest::new(server_id).with_filename(start.file.as_bytes()).with_pos(start.pos);
        let stream = conn.get_binlog_stream(request).await.map_err(|e| binlog_error(&cfg.addr, &cfg.user, start, e))?;
        Ok(Reader {
            stream,
            addr: cfg.addr.clone(),
            user: cfg.user.clone(),
            file: start.file.clone(),
            last_end: start.clone(),
            boundary: start.clone(),
            gtid: None,
            in_txn: false,
            standalone: false,
            seen_format: false,
        })
    }

    /// The next event, or `None` if none came within `wait`.
    pub(crate) async fn next(&mut self, wait: Duration) -> Result<Option<Item>, CdcError> {
        let next = poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut self.stream), cx));
        let event = match tokio::time::timeout(wait, next).await {
            Err(_) => return Ok(None),
            Ok(None) => return Err(self.error("the server ended the binlog stream".into())),
            Ok(Some(Err(e))) => return Err(binlog_error(&self.addr, &self.user, &self.last_end, e)),
            Ok(Some(Ok(event))) => event,
        };
        let header = event.header();
        let end_pos = u64::from(header.log_pos());
        if end_pos != 0 {
            self.last_end = BinlogPosition::new(self.file.clone(), end_pos);
        }
        if header.event_type_raw() == MARIADB_GTID_EVENT {
            let data = event.data();
            let seq = data.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
            let domain = data.get(8..12).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
            let flags = data.get(12).copied().unwrap_or(0);
            self.gtid = match (seq, domain) {
                (Some(seq), Some(domain)) => Some(Gtid { domain, server: header.server_id(), seq }.to_string()),
                _ => None,
            };
            self.in_txn = true;
            self.standalone = flags & FL_STANDALONE != 0;
            return Ok(Some(Item::Other));
        }
        let data = match event.read_data() {
            Ok(Some(data)) => data,
            // Event types the library does not know (MariaDB annotations,
            // GTID lists, binlog checkpoints): positions only.
            Ok(None) => return Ok(Some(Item::Other)),
            Err(e) => return Err(self.error(format!("an event at {} cannot be read: {e}", self.last_end))),
        };
        let item = match data {
            EventData::RotateEvent(r) => {
                self.file = rotated_file(r.name_raw(), &self.file, self.seen_format);
                self.last_end = BinlogPosition::new(self.file.clone(), r.position());
                if !self.in_txn {
                    self.boundary = self.last_end.clone();
                }
                Item::Other
            }
            EventData::FormatDescriptionEvent(_) => {
                self.seen_format = true;
                Item::Other
            }
            EventData::HeartbeatEvent => {
                if !self.in_txn && end_pos != 0 {
                    self.boundary = self.last_end.clone();
                }
                Item::Other
            }
            EventData::XidEvent(_) => {
                self.end_txn();
                Item::Other
            }
            EventData::QueryEvent(q) => {
                let statement = q.query().trim().to_string();
                let word = statement.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                match word.as_str() {
                    "BEGIN" | "START" => {
                        self.in_txn = true;
                        Item::Other
                    }
                    "COMMIT" | "ROLLBACK" | "XA" => {
                        self.end_txn();
                        Item::Other
                    }
                    _ => {
                        let item = Item::Query {
                            schema: q.schema().into_owned(),
                            statement,
                            end: self.last_end.clone(),
                            timestamp: header.timestamp(),
                        };
                        if self.standalone || !self.in_txn {
                            self.end_txn();
                        }
                        item
                    }
                }
            }
            EventData::RowsEvent(rows) => self.rows(&rows, header.timestamp())?,
            _ => Item::Other,
        };
        Ok(Some(item))
    }

    fn end_txn(&mut self) {
        self.in_txn = false;
        self.standalone = false;
        self.boundary = self.last_end.clone();
    }

    fn rows(&self, rows: &RowsEventData<'_>, timestamp: u32) -> Result<Item, CdcError> {
        let Some(tme) = self.stream.get_tme(rows.table_id()) else {
            return Err(self.error(format!(
                "a rows event at {} has no table map event before it; was the reader started inside a transaction?",
                self.last_end
            )));
        };
        let kind = match rows {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => RowsKind::Write,
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => RowsKind::Delete,
            _ => RowsKind::Update,
        };
        let decoded: Result<Vec<RowPair>, _> = rows.rows(tme).collect();
        let decoded = decoded.map_err(|e| self.error(format!("rows at {} cannot be decoded: {e}", self.last_end)))?;
        Ok(Item::Rows {
            database: tme.database_name().into_owned(),
            table: tme.table_name().into_owned(),
            kind,
            rows: decoded,
            end: self.last_end.clone(),
            timestamp,
        })
    }

    fn error(&self, message: String) -> CdcError {
        CdcError::Binlog { addr: self.addr.clone(), message }
    }

    /// Closes the replica connection.
    pub(crate) async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.stream.close()).await;
    }
}

/// The file a rotate event switches to. The server's first (artificial)
/// rotate event comes before the format description event, so the
/// library cannot know its checksum yet and leaves the 4 checksum bytes at
/// the end of the name: then a name that starts with the file asked for is
/// that file.
fn rotated_file(raw: &[u8], current: &str, seen_format: bool) -> String {
    if !seen_format && raw.len() == current.len() + 4 && raw.starts_with(current.as_bytes()) {
        return current.to_string();
    }
    String::from_utf8_lossy(raw).into_owned()
}

/// The error of a refused binlog request.
fn binlog_error(addr: &str, user: &str, start: &BinlogPosition, e: mysql_async::Error) -> CdcError {
    match &e {
        // ER_SPECIFIC_ACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR
        mysql_async::Error::Server(s) if s.code == 1227 || s.code == 1045 => CdcError::MissingPrivilege {
            addr: addr.into(),
            user: user.into(),
            privilege: "REPLICATION SLAVE",
            detail: format!("; server said: {}", s.message),
        },
        // ER_MASTER_FATAL_ERROR_READING_BINLOG: purged or unknown file.
        mysql_async::Error::Server(s) if s.code == 1236 => {
            CdcError::BadPosition { message: format!("the server cannot send the binlog from {start}: {}", s.message) }
        }
        _ => CdcError::Binlog { addr: addr.into(), message: format!("reading from {start}: {e}") },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_first_rotate_loses_its_checksum_bytes() {
        let with_crc = b"mysql-bin.000001\x6b\xd7\x9e\x40";
        assert_eq!(rotated_file(with_crc, "mysql-bin.000001", false), "mysql-bin.000001");
        assert_eq!(rotated_file(b"mysql-bin.000002", "mysql-bin.000001", true), "mysql-bin.000002");
        assert_eq!(rotated_file(b"mysql-bin.000001", "mysql-bin.000001", false), "mysql-bin.000001");
    }
}
