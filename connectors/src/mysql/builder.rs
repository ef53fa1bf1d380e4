//! The builder of [`MySqlSource`] and the options it checks.

use super::server::{server_setters, ServerAddress};
use super::source::MySqlSource;
use crate::error::Error;
use mysql_async::Opts;
use std::marker::PhantomData;
use std::time::Duration;

/// Whether the source follows the table or reads it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadMode {
    /// Snapshot, then new rows forever (unbounded).
    Follow,
    /// The rows there at the first `open`, then finish (bounded).
    SnapshotOnly,
}

/// The checked options, shared by all subtasks' clones. `Debug` leaves the
/// connection options (and the password in them) out.
#[derive(Clone)]
pub(crate) struct Config {
    pub opts: Opts,
    pub addr: String,
    pub user: String,
    pub database: Option<String>,
    pub table: String,
    pub tracking_column: String,
    pub split_column: Option<String>,
    pub columns: Option<Vec<String>>,
    pub batch_size: usize,
    pub poll_interval: Duration,
    pub mode: ReadMode,
    pub lag: Option<Duration>,
    pub connect_timeout: Duration,
    pub query_timeout: Duration,
    pub max_retries: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("table", &self.table)
            .field("tracking_column", &self.tracking_column)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The wait before retry number `failures` (1-based): doubling from the
    /// initial backoff, capped.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(20);
        self.backoff_initial.saturating_mul(factor).min(self.backoff_max)
    }
}

/// Builds a [`MySqlSource`]; see the [module docs](super) for an example.
/// Required: a server (`url`, or `host` and `user`), `table` and
/// `tracking_column`. `Debug` shows neither the password nor the one in a URL.
#[derive(Clone)]
pub struct MySqlSourceBuilder<T> {
    server: ServerAddress,
    table: Option<String>,
    tracking_column: Option<String>,
    split_column: Option<String>,
    columns: Option<Vec<String>>,
    batch_size: usize,
    poll_interval: Duration,
    mode: ReadMode,
    lag: Option<Duration>,
    connect_timeout: Duration,
    query_timeout: Duration,
    max_retries: u32,
    backoff: (Duration, Duration),
    _record: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for MySqlSourceBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlSourceBuilder")
            .field("server", &self.server)
            .field("table", &self.table)
            .field("tracking_column", &self.tracking_column)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl<T> Default for MySqlSourceBuilder<T> {
    fn default() -> Self {
        MySqlSourceBuilder {
            server: ServerAddress::default(),
            table: None,
            tracking_column: None,
            split_column: None,
            columns: None,
            batch_size: 1000,
            poll_interval: Duration::from_millis(500),
            mode: ReadMode::Follow,
            lag: None,
            connect_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(60),
            max_retries: 5,
            backoff: (Duration::from_millis(200), Duration::from_secs(10)),
            _record: PhantomData,
        }
    }
}

fn invalid(option: &'static str, message: impl Into<String>) -> Error {
    Error::InvalidOption { connector: "mysql", option, message: message.into() }
}

impl<T> MySqlSourceBuilder<T> {
    server_setters!(server);

    /// The table to read.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }

    /// The column whose value grows with every insert: an integer
    /// (`AUTO_INCREMENT` id) or a DATE / DATETIME / TIMESTAMP column.
    pub fn tracking_column(mut self, column: impl Into<String>) -> Self {
        self.tracking_column = Some(column.into());
        self
    }

    /// The integer column that splits rows over parallel subtasks
    /// (`MOD(column, parallelism) = subtask`). Default: the tracking column
    /// if it is an integer; needed for a temporal tracking column at
    /// parallelism above 1.
    pub fn split_column(mut self, column: impl Into<String>) -> Self {
        self.split_column = Some(column.into());
        self
    }

    /// The columns to read, in this order. Default: the record's fields
    /// when it is a struct, otherwise all columns of the table.
    pub fn columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.columns = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// Rows per query and per `poll_next` (default 1000).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows;
        self
    }

    /// How often to look for new rows once caught up (default 500 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Read the rows there at the first `open`, then finish (a bounded
    /// source). Default: follow the table forever.
    pub fn snapshot_only(mut self) -> Self {
        self.mode = ReadMode::SnapshotOnly;
        self
    }

    /// Only read rows whose temporal tracking value is at least `lag` older
    /// than the server's `NOW(6)`, so rows of transactions that commit
    /// within `lag` are not skipped (see the module docs). Temporal tracking
    /// columns only.
    pub fn lag(mut self, lag: Duration) -> Self {
        self.lag = Some(lag);
        self
    }

    /// How long one connection attempt may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one query may take before the connection is considered
    /// lost (default 60 s).
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// How many times in a row a failed connection or query is retried
    /// before the source fails (default 5).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The wait before the first retry, doubled for each further one up to
    /// `max` (default 200 ms, 10 s).
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = (initial, max);
        self
    }

    /// Checks the options and makes the source. Nothing connects yet; the
    /// server, table and columns are checked in `open`.
    pub fn build(self) -> crate::Result<MySqlSource<T>> {
        let opts = self.server.opts("mysql")?;
        let table = self
            .table
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid("table", "set .table(...) to the table to read"))?;
        let tracking_column = self.tracking_column.filter(|c| !c.is_empty()).ok_or_else(|| {
            invalid(
                "tracking_column",
                "set .tracking_column(...) to a column that grows with every insert \
                 (an AUTO_INCREMENT id or a DATETIME/TIMESTAMP)",
            )
        })?;
        if self.batch_size == 0 {
            return Err(invalid("batch_size", "must be at least 1"));
        }
        if self.columns.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(invalid("columns", "name at least one column"));
        }
        for (option, d) in [
            ("poll_interval", self.poll_interval),
            ("connect_timeout", self.connect_timeout),
            ("query_timeout", self.query_timeout),
            ("retry_backoff", self.backoff.0),
        ] {
            if d.is_zero() {
                return Err(invalid(option, "must be longer than zero"));
            }
        }
        if self.backoff.1 < self.backoff.0 {
            return Err(invalid("retry_backoff", "max must not be below initial"));
        }
        let config = Config {
            addr: format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port()),
            user: opts.user().unwrap_or_default().to_string(),
            database: opts.db_name().map(str::to_string),
            opts,
            table,
            tracking_column,
            split_column: self.split_column,
            columns: self.columns,
            batch_size: self.batch_size,
            poll_interval: self.poll_interval,
            mode: self.mode,
            lag: self.lag,
            connect_timeout: self.connect_timeout,
            query_timeout: self.query_timeout,
            max_retries: self.max_retries,
            backoff_initial: self.backoff.0,
            backoff_max: self.backoff.1,
        };
        Ok(MySqlSource::from_config(config))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    type B = MySqlSourceBuilder<()>;

    fn err(b: B) -> String {
        match b.build() {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn checks_options() {
        let ok = || B::default().table("t").tracking_column("id");
        assert!(err(ok()).contains("no server"));
        assert!(err(ok().url("mysql://u@h/db").host("h")).contains("not both"));
        assert!(err(ok().url("http://x")).contains("option 'url'"));
        assert!(err(ok().host("h")).contains("'user'"));
        assert!(err(B::default().url("mysql://u@h/db").tracking_column("id")).contains("'table'"));
        assert!(err(B::default().url("mysql://u@h/db").table("t")).contains("tracking_column"));
        assert!(err(ok().url("mysql://u@h/db").batch_size(0)).contains("batch_size"));
        assert!(err(ok().url("mysql://u@h/db").poll_interval(Duration::ZERO)).contains("poll_interval"));
        let bad_backoff = ok().url("mysql://u@h/db").retry_backoff(Duration::from_secs(2), Duration::from_secs(1));
        assert!(err(bad_backoff).contains("retry_backoff"));
    }

    #[test]
    fn debug_output_hides_passwords() {
        let b = B::default().url("mysql://app:s3cr3t@db.local:3307/shop").table("t").tracking_column("id");
        let shown = format!("{b:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("app:******@db.local"), "{shown}");
        let h = B::default().host("h").user("u").password("s3cr3t").table("t").tracking_column("id");
        let shown = format!("{h:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn url_and_host_forms_agree_and_backoff_doubles() {
        let a =
            B::default().url("mysql://app:secret@db.local:3307/shop").table("t").tracking_column("id").build().unwrap();
        let b = B::default()
            .host("db.local")
            .port(3307)
            .user("app")
            .password("secret")
            .database("shop")
            .table("t")
            .tracking_column("id")
            .retry_backoff(Duration::from_millis(100), Duration::from_millis(500))
            .build()
            .unwrap();
        for c in [a.config(), b.config()] {
            assert_eq!(c.addr, "db.local:3307");
            assert_eq!(c.user, "app");
            assert_eq!(c.database.as_deref(), Some("shop"));
            assert!(!c.opts.prefer_socket());
        }
        let c = b.config();
        let waits: Vec<_> = (1..=5).map(|n| c.backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
    }
}
