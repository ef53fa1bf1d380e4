//! Errors of the MySQL source, and how driver errors map onto them.
//!
//! Every message names what failed (server address, user, `database`.`table`,
//! column, MySQL type) and what to do. Passwords never appear in messages.

/// Errors of the MySQL source. They reach the job as `sluice::Error::User`
/// with this message (`NotOpen`, a bug, as `sluice::Error::Internal`).
#[derive(Debug, thiserror::Error)]
pub enum MySqlError {
    /// No connection could be made to the server (refused, timed out, DNS).
    #[error(
        "cannot connect to MySQL at {addr} after {attempts} attempt(s): {message}; \
         is the server running and listening there?"
    )]
    Unreachable {
        /// `host:port`.
        addr: String,
        /// How many connection attempts were made.
        attempts: u32,
        /// The last driver error.
        message: String,
    },
    /// The server rejected the user or password.
    #[error(
        "MySQL at {addr} refused user '{user}': {message}; check the credentials \
         (user and password) and the user's grants"
    )]
    AccessDenied {
        /// `host:port`.
        addr: String,
        /// The user name.
        user: String,
        /// The server's message.
        message: String,
    },
    /// The server refused the connection for another reason.
    #[error("MySQL at {addr} rejected the connection: {message}")]
    ConnectRejected {
        /// `host:port`.
        addr: String,
        /// The server's message.
        message: String,
    },
    /// The database named in the options does not exist.
    #[error("database `{database}` does not exist on MySQL at {addr}; create it or fix the database name")]
    UnknownDatabase {
        /// `host:port`.
        addr: String,
        /// The database.
        database: String,
    },
    /// Neither the URL nor the options name a database.
    #[error(
        "no database given for table `{table}`: put it in the URL \
         (mysql://user:password@host:3306/DATABASE) or call .database(...)"
    )]
    NoDatabase {
        /// The table.
        table: String,
    },
    /// `information_schema.columns` has no such table.
    #[error(
        "table `{database}`.`{table}` does not exist (or user '{user}' has no privilege on it); \
         create it or fix the table name"
    )]
    MissingTable {
        /// The database.
        database: String,
        /// The table.
        table: String,
        /// The user, whose grants decide what it can see.
        user: String,
    },
    /// A column named in the options is not in the table.
    #[error("column `{column}` ({role}) does not exist in `{database}`.`{table}`; its columns are: {available}")]
    MissingColumn {
        /// The database.
        database: String,
        /// The table.
        table: String,
        /// The missing column.
        column: String,
        /// Which option named it: "tracking column", "split column", "selected column".
        role: &'static str,
        /// The table's columns, comma-separated.
        available: String,
    },
    /// The tracking column has a type that cannot order new rows.
    #[error(
        "the tracking column `{column}` of `{table}` has type {mysql_type}; it must be an integer \
         (e.g. an AUTO_INCREMENT id), DATE, DATETIME or TIMESTAMP column whose value grows \
         with every insert"
    )]
    BadTrackingColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its MySQL type.
        mysql_type: String,
    },
    /// A lag was set but the tracking column is not temporal.
    #[error(
        "a lag (.lag(...)) needs a DATE, DATETIME or TIMESTAMP tracking column, but `{column}` \
         of `{table}` has type {mysql_type}; remove the lag or track a temporal column"
    )]
    LagNeedsTemporal {
        /// The table.
        table: String,
        /// The tracking column.
        column: String,
        /// Its MySQL type.
        mysql_type: String,
    },
    /// Parallelism above 1 needs an integer column to split rows by.
    #[error(
        "cannot split `{table}` over {parallelism} subtasks by column `{column}` of type \
         {mysql_type}: splitting uses MOD(column, parallelism) and needs an integer column; \
         set .split_column(...) to an integer column (e.g. the primary key) or run the source \
         at parallelism 1"
    )]
    BadSplitColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its MySQL type.
        mysql_type: String,
        /// The source's parallelism.
        parallelism: u32,
    },
    /// A column the record needs has a type the source cannot read.
    #[error(
        "column `{column}` of `{table}` has MySQL type {mysql_type}, which the MySQL source cannot \
         read ({reason}); leave it out of the record type or of .columns([...]), or convert it \
         in a view"
    )]
    UnsupportedColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its MySQL type.
        mysql_type: String,
        /// Why.
        reason: &'static str,
    },
    /// The table's columns cannot make the record type (found at open).
    #[error("rows of `{database}`.`{table}` cannot be read as {record_type}: {message}")]
    RecordMismatch {
        /// The database.
        database: String,
        /// The table.
        table: String,
        /// The Rust record type.
        record_type: &'static str,
        /// Which column or field and why.
        message: String,
    },
    /// One row does not fit the record type (found while reading).
    #[error("the row of `{table}` with {tracking} = {position} cannot be read as {record_type}: {message}")]
    RowMismatch {
        /// The table.
        table: String,
        /// The tracking column.
        tracking: String,
        /// The row's tracking value.
        position: String,
        /// The Rust record type.
        record_type: &'static str,
        /// Which column or field and why.
        message: String,
    },
    /// The connection was lost while following and every retry failed.
    #[error(
        "lost the connection to MySQL at {addr} and could not restore it after {attempts} \
         attempt(s): {message}; check that the server is up, then restart the job (it resumes \
         from its saved position)"
    )]
    ConnectionLost {
        /// `host:port`.
        addr: String,
        /// Consecutive failed attempts.
        attempts: u32,
        /// The last error.
        message: String,
    },
    /// A query failed with a server error that retrying cannot fix.
    #[error("query on `{table}` failed on MySQL at {addr}: {message}")]
    Query {
        /// `host:port`.
        addr: String,
        /// The table.
        table: String,
        /// The server's message.
        message: String,
    },
    /// A restored position does not belong to this subtask or column.
    #[error("cannot resume reading `{table}` from the saved position: {message}")]
    BadPosition {
        /// The table.
        table: String,
        /// What does not match and what to do.
        message: String,
    },
    /// A method that needs an open source was called before `open`.
    #[error("MySqlSource::{0} was called before open")]
    NotOpen(&'static str),
    /// The source's tokio runtime could not be created.
    #[error("cannot start the MySQL source's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl From<MySqlError> for sluice::Error {
    fn from(e: MySqlError) -> Self {
        crate::Error::from(e).into()
    }
}

/// What went wrong talking to the server, for the retry logic.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection is broken or the server unreachable: retry later.
    Transient(String),
    /// Retrying will not help.
    Fatal(MySqlError),
}

/// Server error codes that mean the connection or statement was cut off
/// rather than wrong: shutdown, killed connection, network errors, lock
/// timeouts, too many connections.
const TRANSIENT_SERVER_CODES: &[u16] =
    &[1040, 1053, 1077, 1152, 1153, 1158, 1159, 1160, 1161, 1205, 1213, 1317, 1927, 2006, 2013, 4031];

/// Classifies an error of a connection attempt.
pub(crate) fn connect_failure(e: &mysql_async::Error, addr: &str, user: &str, database: &str) -> Failure {
    match e {
        mysql_async::Error::Server(s) => match s.code {
            // ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR, ER_ACCESS_DENIED_NO_PASSWORD_ERROR
            1044 | 1045 | 1698 => Failure::Fatal(MySqlError::AccessDenied {
                addr: addr.into(),
                user: user.into(),
                message: s.message.clone(),
            }),
            1049 => Failure::Fatal(MySqlError::UnknownDatabase { addr: addr.into(), database: database.into() }),
            code if TRANSIENT_SERVER_CODES.contains(&code) => Failure::Transient(s.to_string()),
            _ => Failure::Fatal(MySqlError::ConnectRejected { addr: addr.into(), message: s.to_string() }),
        },
        mysql_async::Error::Url(u) => {
            Failure::Fatal(MySqlError::Unreachable { addr: addr.into(), attempts: 1, message: u.to_string() })
        }
        other => Failure::Transient(driver_message(other)),
    }
}

/// Classifies an error of a query on an open connection.
pub(crate) fn query_failure(e: &mysql_async::Error, addr: &str, table: &str) -> Failure {
    match e {
        mysql_async::Error::Server(s) if !TRANSIENT_SERVER_CODES.contains(&s.code) => {
            Failure::Fatal(MySqlError::Query { addr: addr.into(), table: table.into(), message: s.to_string() })
        }
        other => Failure::Transient(driver_message(other)),
    }
}

/// The driver's message without its generic prefixes.
fn driver_message(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Io(io) => match io {
            mysql_async::IoError::Io(inner) => inner.to_string(),
            #[allow(unreachable_patterns)]
            other => other.to_string(),
        },
        mysql_async::Error::Driver(d) => d.to_string(),
        mysql_async::Error::Server(s) => s.to_string(),
        other => other.to_string(),
    }
}
