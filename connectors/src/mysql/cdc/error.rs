//! Errors of the MySQL CDC source. Each names what failed and what to
//! change; passwords never appear.

use super::super::MySqlError;

/// Errors of the MySQL change-data-capture source. They reach the job as
/// `sluice::Error::User` with this message.
#[derive(Debug, thiserror::Error)]
pub enum CdcError {
    /// Connecting or logging in failed (see [`MySqlError`]).
    #[error(transparent)]
    Connection(#[from] MySqlError),
    /// The server does not write a binlog.
    #[error(
        "MySQL at {addr} does not write a binlog (log_bin is OFF); change data capture reads the \
         binlog: start the server with log-bin (e.g. log-bin=mysql-bin, server-id=1 in my.cnf)"
    )]
    BinlogOff {
        /// `host:port`.
        addr: String,
    },
    /// `binlog_format` is not ROW.
    #[error(
        "MySQL at {addr} has binlog_format={format}; change data capture needs row events: set \
         binlog_format=ROW in the server config (binlog-format=ROW in my.cnf, or SET GLOBAL \
         binlog_format='ROW' and reconnect the writers)"
    )]
    BinlogNotRow {
        /// `host:port`.
        addr: String,
        /// The server's format (STATEMENT, MIXED).
        format: String,
    },
    /// `binlog_row_image` is not FULL.
    #[error(
        "MySQL at {addr} has binlog_row_image={image}; change data capture needs whole rows in \
         updates and deletes: set binlog_row_image=FULL in the server config"
    )]
    RowImageNotFull {
        /// `host:port`.
        addr: String,
        /// The server's setting (MINIMAL, NOBLOB).
        image: String,
    },
    /// The user lacks a privilege the binlog reader needs.
    #[error(
        "user '{user}' on MySQL at {addr} lacks the {privilege} privilege, which reading the \
         binlog needs: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}' \
         (MariaDB 10.5+: REPLICATION SLAVE, BINLOG MONITOR){detail}"
    )]
    MissingPrivilege {
        /// `host:port`.
        addr: String,
        /// The user.
        user: String,
        /// The missing privilege, e.g. `REPLICATION SLAVE`.
        privilege: &'static str,
        /// The server's message, if it answered with one (`; server said: ...`).
        detail: String,
    },
    /// The position to start at is no longer in the server's binlog.
    #[error(
        "binlog position {position} is no longer on MySQL at {addr}: the oldest binlog file is \
         {oldest} (older ones were purged); the changes in between are lost. Start the job \
         without its checkpoint (startup mode initial takes a new snapshot), and keep binlogs \
         longer (binlog_expire_logs_seconds / expire_logs_days) than a job may be down"
    )]
    PurgedPosition {
        /// `host:port`.
        addr: String,
        /// The requested position.
        position: String,
        /// The oldest file the server still has.
        oldest: String,
    },
    /// A position (option or saved state) cannot be used.
    #[error("bad binlog position: {message}")]
    BadPosition {
        /// What is wrong and what to do.
        message: String,
    },
    /// No table matched the selection.
    #[error(
        "no table on MySQL at {addr} matches {selection}; check the database and table names \
         or patterns, and the user's privileges on them"
    )]
    NoTables {
        /// `host:port`.
        addr: String,
        /// The selection, as given.
        selection: String,
    },
    /// A captured table has no primary key.
    #[error(
        "table `{database}`.`{table}` has no primary key; change data capture matches binlog \
         rows to snapshot rows by key: add a primary key, leave the table out, or name a unique \
         non-NULL column with .chunk_key(\"{database}.{table}\", column)"
    )]
    NoPrimaryKey {
        /// The database.
        database: String,
        /// The table.
        table: String,
    },
    /// A DDL statement on a captured table, with schema changes set to fail.
    #[error(
        "a schema change on captured table `{database}`.`{table}` at binlog {mark}: `{statement}`; \
         rows after it may not match the columns the source knows. Restart the job without \
         its checkpoint for a new snapshot, or set .schema_changes(SchemaChanges::Emit) to \
         receive schema-change events and continue"
    )]
    SchemaChange {
        /// The database.
        database: String,
        /// The table.
        table: String,
        /// The statement (shortened to 200 characters).
        statement: String,
        /// Where it is in the binlog.
        mark: String,
    },
    /// A binlog row does not have the columns the table had when read.
    #[error(
        "a binlog row of `{database}`.`{table}` at {mark} has {found} columns, the table had \
         {expected} when the source read its columns; the table changed without a DDL the \
         source saw (or before the start position): restart without the checkpoint"
    )]
    ColumnCount {
        /// The database.
        database: String,
        /// The table.
        table: String,
        /// Where the row is.
        mark: String,
        /// Columns in the row.
        found: usize,
        /// Columns of the table.
        expected: usize,
    },
    /// A row could not be read into the record type.
    #[error("a row of `{database}`.`{table}` at {mark} does not fit {record_type}: {message}")]
    RowMismatch {
        /// The database.
        database: String,
        /// The table.
        table: String,
        /// Where the row is.
        mark: String,
        /// The record type.
        record_type: &'static str,
        /// What does not fit.
        message: String,
    },
    /// The binlog stream failed or held something the source cannot read.
    #[error("reading the binlog of MySQL at {addr} failed: {message}")]
    Binlog {
        /// `host:port`.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// A query of the source failed.
    #[error("MySQL at {addr}: `{what}` failed: {message}")]
    Query {
        /// `host:port`.
        addr: String,
        /// The statement or its purpose.
        what: String,
        /// The server's message.
        message: String,
    },
    /// The server-id range has fewer ids than subtasks.
    #[error(
        "the server-id range {start}-{end} has {count} id(s) but the source runs {parallelism} \
         subtasks, each a binlog reader with its own id: widen .server_ids(start..=end)"
    )]
    ServerIds {
        /// First id.
        start: u32,
        /// Last id.
        end: u32,
        /// How many ids.
        count: u64,
        /// The parallelism.
        parallelism: u32,
    },
    /// A restored state cannot be used.
    #[error("cannot restore the MySQL CDC source: {message}")]
    BadState {
        /// What does not fit.
        message: String,
    },
    /// A method that needs an open source was called before `open`.
    #[error("MySqlCdcSource::{0} was called before open")]
    NotOpen(&'static str),
    /// The source's tokio runtime could not be created.
    #[error("cannot start the MySQL CDC source's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl From<CdcError> for sluice::Error {
    fn from(e: CdcError) -> Self {
        crate::Error::from(e).into()
    }
}

/// The first 200 characters of a statement, on one line.
pub(crate) fn shorten(statement: &str) -> String {
    let one_line: String = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}
