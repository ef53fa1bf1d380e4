//! The builder of [`MySqlCdcSource`] and the options it checks.

use super::offset::{file_seq, StartupMode};
use super::source::MySqlCdcSource;
use crate::error::Error;
use crate::mysql::server::{server_setters, ServerAddress};
use mysql_async::Opts;
use regex::Regex;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::ops::RangeInclusive;
use std::time::Duration;

/// What the source does on a DDL statement (a query event other than
/// `BEGIN`/`COMMIT`) that names a captured table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaChanges {
    /// Fail the job with [`CdcError::SchemaChange`](super::CdcError::SchemaChange),
    /// naming the table and the statement (the default).
    #[default]
    Fail,
    /// Emit an [`Op::SchemaChange`](super::Op::SchemaChange) event, re-read
    /// the table's columns and continue.
    Emit,
}

/// Which tables are captured.
#[derive(Debug, Clone)]
pub(crate) enum Selection {
    /// `table` (in the connection's database) or `database.table` names.
    Names(Vec<String>),
    /// A regex matched against the whole of `database.table`.
    Pattern(Regex),
}

impl Selection {
    /// Whether `database.table` is selected, `default_db` being the
    /// connection's database.
    pub(crate) fn matches(&self, default_db: Option<&str>, database: &str, table: &str) -> bool {
        match self {
            Selection::Names(names) => names.iter().any(|n| match n.split_once('.') {
                Some((d, t)) => d == database && t == table,
                None => default_db == Some(database) && n == table,
            }),
            Selection::Pattern(re) => re.is_match(&format!("{database}.{table}")),
        }
    }
}

impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selection::Names(n) => write!(f, "tables {}", n.join(", ")),
            Selection::Pattern(re) => write!(f, "pattern /{}/", re.as_str()),
        }
    }
}

/// The checked options, shared by all subtasks' clones.
#[derive(Clone)]
pub(crate) struct Config {
    pub opts: Opts,
    pub addr: String,
    pub user: String,
    pub database: Option<String>,
    pub selection: Selection,
    pub startup: StartupMode,
    pub server_ids: RangeInclusive<u32>,
    pub chunk_size: u64,
    pub heartbeat: Duration,
    pub schema_changes: SchemaChanges,
    /// `database.table` → column, for tables without a primary key.
    pub chunk_keys: BTreeMap<String, String>,
    pub connect_timeout: Duration,
    /// Row changes one `poll_next` emits at most.
    pub max_batch: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("selection", &self.selection.to_string())
            .field("startup", &self.startup)
            .finish_non_exhaustive()
    }
}

/// Builds a [`MySqlCdcSource`]. Required: a server (`url`, or `host` and
/// `user`) and the tables (`tables` or `table_pattern`).
///
/// ```no_run
/// use sluice::StreamExecutionEnvironment;
/// use sluice_connectors::mysql::cdc::{ChangeEvent, MySqlCdcSource, SchemaChanges, StartupMode};
/// use std::time::Duration;
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// struct Order { id: i64, customer: String, amount: f64 }
///
/// let source = MySqlCdcSource::<Order>::builder()
///     .url("mysql://cdc:secret@127.0.0.1:3306/shop")
///     .tables(["orders"])
///     .startup(StartupMode::Initial)
///     .server_ids(5400..=5403)
///     .chunk_size(2000)
///     .heartbeat(Duration::from_secs(10))
///     .schema_changes(SchemaChanges::Fail)
///     .build()?;
/// let env = StreamExecutionEnvironment::new();
/// env.add_source(source).map(|e: ChangeEvent<Order>| format!("{:?} {:?}", e.op, e.row)).print();
/// env.execute("orders-cdc")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MySqlCdcSourceBuilder<T> {
    server: ServerAddress,
    tables: Vec<String>,
    pattern: Option<String>,
    startup: StartupMode,
    server_ids: RangeInclusive<u32>,
    chunk_size: u64,
    heartbeat: Duration,
    schema_changes: SchemaChanges,
    chunk_keys: BTreeMap<String, String>,
    connect_timeout: Duration,
    max_batch: usize,
    _record: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for MySqlCdcSourceBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlCdcSourceBuilder")
            .field("server", &self.server)
            .field("tables", &self.tables)
            .field("pattern", &self.pattern)
            .field("startup", &self.startup)
            .finish_non_exhaustive()
    }
}

impl<T> Default for MySqlCdcSourceBuilder<T> {
    fn default() -> Self {
        MySqlCdcSourceBuilder {
            server: ServerAddress::default(),
            tables: Vec::new(),
            pattern: None,
            startup: StartupMode::Initial,
            server_ids: 5400..=5499,
            chunk_size: 8096,
            heartbeat: Duration::from_secs(30),
            schema_changes: SchemaChanges::Fail,
            chunk_keys: BTreeMap::new(),
            connect_timeout: Duration::from_secs(10),
            max_batch: 2000,
            _record: PhantomData,
        }
    }
}

fn invalid(option: &'static str, message: impl Into<String>) -> Error {
    Error::InvalidOption { connector: "mysql-cdc", option, message: message.into() }
}

impl<T> MySqlCdcSourceBuilder<T> {
    server_setters!(server);

    /// The tables to capture: `table` (in the connection's database) or
    /// `database.table`.
    pub fn tables<S: Into<String>>(mut self, tables: impl IntoIterator<Item = S>) -> Self {
        self.tables.extend(tables.into_iter().map(Into::into));
        self
    }

    /// Capture every table whose `database.table` matches this regex (the
    /// whole name, e.g. `shop\.order_.*`).
    pub fn table_pattern(mut self, pattern: impl Into<String>) -> Self {
        self.pattern = Some(pattern.into());
        self
    }

    /// Where a source without a saved state starts (default
    /// [`StartupMode::Initial`]: snapshot, then binlog).
    pub fn startup(mut self, mode: StartupMode) -> Self {
        self.startup = mode;
        self
    }

    /// The replica server ids the binlog readers register with, one per
    /// subtask (subtask *i* uses `start + i`); they must differ from every
    /// other replica's (default 5400..=5499).
    pub fn server_ids(mut self, ids: RangeInclusive<u32>) -> Self {
        self.server_ids = ids;
        self
    }

    /// The width of a snapshot chunk in values of the first primary key
    /// column (default 8096; about the rows of a chunk for dense ids).
    pub fn chunk_size(mut self, size: u64) -> Self {
        self.chunk_size = size;
        self
    }

    /// How often an idle server sends a binlog heartbeat, which keeps the
    /// position current (default 30 s).
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// What a DDL statement on a captured table does (default
    /// [`SchemaChanges::Fail`]).
    pub fn schema_changes(mut self, mode: SchemaChanges) -> Self {
        self.schema_changes = mode;
        self
    }

    /// A unique, non-NULL column that stands in for the primary key of a
    /// table without one (`table` or `database.table`).
    pub fn chunk_key(mut self, table: impl Into<String>, column: impl Into<String>) -> Self {
        self.chunk_keys.insert(table.into(), column.into());
        self
    }

    /// How long one connection attempt may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Checks the options and makes the source. Nothing connects yet; the
    /// server and tables are checked in `open`.
    pub fn build(self) -> crate::Result<MySqlCdcSource<T>> {
        let opts = self.server.opts("mysql-cdc")?;
        let selection = match (self.tables.is_empty(), self.pattern) {
            (false, Some(_)) => {
                return Err(invalid("table_pattern", "give either .tables(...) or .table_pattern(...)"))
            }
            (true, None) => return Err(invalid("tables", "set .tables([...]) or .table_pattern(...)")),
            (true, Some(p)) => Selection::Pattern(
                Regex::new(&format!("^(?:{p})$")).map_err(|e| invalid("table_pattern", format!("not a regex: {e}")))?,
            ),
            (false, None) => {
                if opts.db_name().is_none() && self.tables.iter().any(|t| !t.contains('.')) {
                    return Err(invalid(
                        "tables",
                        "an unqualified table name needs a database: write database.table, or set .database(...)",
                    ));
                }
                Selection::Names(self.tables)
            }
        };
        if self.server_ids.is_empty() {
            return Err(invalid("server_ids", "the range is empty; give e.g. 5400..=5403"));
        }
        if *self.server_ids.start() == 0 {
            return Err(invalid("server_ids", "0 is not a valid server id"));
        }
        if self.chunk_size == 0 {
            return Err(invalid("chunk_size", "must be at least 1"));
        }
        if self.heartbeat.is_zero() || self.connect_timeout.is_zero() {
            return Err(invalid("heartbeat", "heartbeat and connect_timeout must be longer than zero"));
        }
        if let StartupMode::SpecificOffset(p) = &self.startup {
            file_seq(&p.file).map_err(|e| invalid("startup", e.to_string()))?;
        }
        if let StartupMode::SpecificGtid(g) = &self.startup {
            super::offset::parse_gtid_set(g).map_err(|e| invalid("startup", e))?;
        }
        let default_db = opts.db_name().map(str::to_string);
        let chunk_keys = self
            .chunk_keys
            .into_iter()
            .map(|(t, c)| match (t.contains('.'), &default_db) {
                (true, _) => Ok((t, c)),
                (false, Some(db)) => Ok((format!("{db}.{t}"), c)),
                (false, None) => Err(invalid("chunk_key", "name the table as database.table")),
            })
            .collect::<Result<_, _>>()?;
        let config = Config {
            addr: format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port()),
            user: opts.user().unwrap_or_default().to_string(),
            database: default_db,
            opts,
            selection,
            startup: self.startup,
            server_ids: self.server_ids,
            chunk_size: self.chunk_size,
            heartbeat: self.heartbeat,
            schema_changes: self.schema_changes,
            chunk_keys,
            connect_timeout: self.connect_timeout,
            max_batch: self.max_batch,
        };
        Ok(MySqlCdcSource::from_config(config))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::mysql::cdc::BinlogPosition;

    type B = MySqlCdcSourceBuilder<()>;

    fn err(b: B) -> String {
        match b.build() {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn checks_options() {
        let ok = || B::default().url("mysql://u@h/db").tables(["t"]);
        assert!(ok().build().is_ok());
        assert!(err(B::default().tables(["t"])).contains("no server"));
        assert!(err(B::default().url("mysql://u@h/db")).contains("'tables'"));
        assert!(err(ok().table_pattern("x")).contains("either"));
        assert!(err(B::default().url("mysql://u@h").tables(["t"])).contains("database.table"));
        assert!(err(B::default().url("mysql://u@h/db").table_pattern("(")).contains("not a regex"));
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 5..=4;
        assert!(err(ok().server_ids(empty)).contains("server_ids"));
        assert!(err(ok().chunk_size(0)).contains("chunk_size"));
        let bad = StartupMode::SpecificOffset(BinlogPosition::new("nonumber", 4));
        assert!(err(ok().startup(bad)).contains("SHOW BINARY LOGS"));
    }

    #[test]
    fn selects_tables_by_name_or_pattern() {
        let names = Selection::Names(vec!["t".into(), "other.u".into()]);
        assert!(names.matches(Some("db"), "db", "t"));
        assert!(!names.matches(Some("db"), "x", "t"));
        assert!(names.matches(Some("db"), "other", "u"));
        assert!(!names.matches(Some("db"), "db", "u"));
        let pattern = B::default().url("mysql://u@h/db").table_pattern(r"db\.order_.*").build().unwrap();
        let sel = &pattern.config().selection;
        assert!(sel.matches(None, "db", "order_1"));
        assert!(!sel.matches(None, "db", "orders"));
        assert!(!sel.matches(None, "xdb", "order_1"));
    }
}
