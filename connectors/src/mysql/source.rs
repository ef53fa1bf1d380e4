//! The `Source` implementation of the MySQL source: connection handling,
//! batches, positions and retries.

use super::builder::{Config, MySqlSourceBuilder, ReadMode};
use super::error::{connect_failure, query_failure, Failure, MySqlError};
use super::position::{MySqlPosition, SnapshotEnd, TrackingValue};
use super::row::RowDe;
use super::schema::{ColumnInfo, TrackingKind, Wanted};
use super::sql::{Plan, Split, COLUMNS_SQL};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use sluice::{Boundedness, CheckpointId, Collector, Data, Result, RuntimeContext, Source, SourceStatus};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads a MySQL table as records of type `T`, then follows its new rows.
/// See the [module docs](super).
pub struct MySqlSource<T> {
    config: Arc<Config>,
    position: MySqlPosition,
    restored: bool,
    live: Option<Live>,
    _record: PhantomData<fn() -> T>,
}

/// What an open subtask holds. `conn` is declared first so it is dropped
/// before the runtime it was made on.
struct Live {
    conn: Option<Conn>,
    rt: tokio::runtime::Runtime,
    plan: Plan,
    columns: Vec<ColumnInfo>,
    tracking: String,
    kind: TrackingKind,
    subtask: u32,
    failures: u32,
    not_before: Instant,
    finished: bool,
}

impl<T> Clone for MySqlSource<T> {
    fn clone(&self) -> Self {
        MySqlSource {
            config: self.config.clone(),
            position: self.position.clone(),
            restored: self.restored,
            live: None,
            _record: PhantomData,
        }
    }
}

impl<T> MySqlSource<T> {
    /// A builder; `build` checks the options.
    pub fn builder() -> MySqlSourceBuilder<T> {
        MySqlSourceBuilder::default()
    }

    pub(crate) fn from_config(config: Config) -> Self {
        MySqlSource {
            config: Arc::new(config),
            position: MySqlPosition::default(),
            restored: false,
            live: None,
            _record: PhantomData,
        }
    }

    #[cfg(test)]
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The current read position (what `snapshot_state` returns).
    pub fn position(&self) -> &MySqlPosition {
        &self.position
    }
}

async fn connect(cfg: &Config) -> Result<Conn, Failure> {
    let database = cfg.database.as_deref().unwrap_or_default();
    match tokio::time::timeout(cfg.connect_timeout, Conn::new(cfg.opts.clone())).await {
        Err(_) => Err(Failure::Transient(format!("no answer within {:?}", cfg.connect_timeout))),
        Ok(Err(e)) => Err(connect_failure(&e, &cfg.addr, &cfg.user, database)),
        Ok(Ok(conn)) => Ok(conn),
    }
}

async fn connect_retrying(cfg: &Config, subtask: u32) -> Result<Conn, MySqlError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match connect(cfg).await {
            Ok(conn) => return Ok(conn),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient(message)) if attempt > cfg.max_retries => {
                return Err(MySqlError::Unreachable { addr: cfg.addr.clone(), attempts: attempt, message })
            }
            Err(Failure::Transient(message)) => {
                let wait = cfg.backoff(attempt);
                tracing::warn!(
                    "MySQL source subtask {subtask}: cannot connect to {} ({message}); retry {attempt}/{} in {wait:?}",
                    cfg.addr,
                    cfg.max_retries
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn query(conn: &mut Conn, cfg: &Config, sql: String, params: Vec<Value>) -> Result<Vec<Vec<Value>>, Failure> {
    match tokio::time::timeout(cfg.query_timeout, conn.exec::<Row, _, _>(sql, params)).await {
        Err(_) => Err(Failure::Transient(format!("no answer to a query within {:?}", cfg.query_timeout))),
        Ok(Err(e)) => Err(query_failure(&e, &cfg.addr, &cfg.table)),
        Ok(Ok(rows)) => Ok(rows
            .into_iter()
            .map(|r| r.unwrap_raw().into_iter().map(|v| v.unwrap_or(Value::NULL)).collect())
            .collect()),
    }
}

/// A batch of rows (record columns, then the tracking column) and whether
/// more may follow at once.
struct Fetched {
    rows: Vec<Vec<Value>>,
    full: bool,
}

fn position_of(row: &[Value], kind: TrackingKind, cfg: &Config) -> Result<TrackingValue, Failure> {
    let cell = row.last().unwrap_or(&Value::NULL);
    TrackingValue::from_value(kind, cell).ok_or_else(|| {
        Failure::Fatal(MySqlError::Query {
            addr: cfg.addr.clone(),
            table: cfg.table.clone(),
            message: format!("the tracking column `{}` returned {cell:?}, not a {kind:?} value", cfg.tracking_column),
        })
    })
}

/// One batch after `after`: up to `batch_size` rows, never splitting the
/// rows that share a tracking value, so the position always falls between
/// two values. The query asks for one row more than a batch: if that row
/// shares the batch's last value, the rows of that value are left for the
/// next batch; if the whole batch is one value, it is completed with every
/// row of that value (one more query).
async fn fetch(
    conn: &mut Option<Conn>,
    cfg: &Config,
    plan: &Plan,
    kind: TrackingKind,
    after: Option<&TrackingValue>,
    end: Option<&TrackingValue>,
) -> Result<Fetched, Failure> {
    let conn = match conn {
        Some(c) => c,
        None => conn.insert(connect(cfg).await?),
    };
    let (sql, params) = plan.batch(after, end);
    let mut rows = query(conn, cfg, sql, params).await?;
    match cut(&rows, plan.batch_size(), kind, cfg)? {
        Cut::All => Ok(Fetched { rows, full: false }),
        Cut::Keep(keep) => {
            rows.truncate(keep);
            Ok(Fetched { rows, full: true })
        }
        Cut::Ties(value) => {
            let (sql, params) = plan.ties(&value);
            let rows = query(conn, cfg, sql, params).await?;
            Ok(Fetched { rows, full: true })
        }
    }
}

/// Where a batch fetched with `LIMIT n + 1` ends.
#[derive(Debug, PartialEq)]
enum Cut {
    /// At most `n` rows: all of them, and the table has no more for now.
    All,
    /// The first rows, up to the run of values the extra row continues.
    Keep(usize),
    /// All `n + 1` rows share this value: read every row of it.
    Ties(TrackingValue),
}

fn cut(rows: &[Vec<Value>], n: usize, kind: TrackingKind, cfg: &Config) -> Result<Cut, Failure> {
    let Some(extra) = rows.get(n) else {
        return Ok(Cut::All);
    };
    let next = position_of(extra, kind, cfg)?;
    let mut keep = n;
    while keep > 0 && position_of(&rows[keep - 1], kind, cfg)? == next {
        keep -= 1;
    }
    Ok(if keep > 0 { Cut::Keep(keep) } else { Cut::Ties(next) })
}

fn text(row: &[Value], i: usize) -> String {
    match row.get(i) {
        Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

impl<T: Data> MySqlSource<T> {
    /// Converts a batch into records, emits them, then advances the position.
    fn emit(&mut self, rows: Vec<Vec<Value>>, out: &mut dyn Collector<T>) -> Result<()> {
        let Some(live) = self.live.as_ref() else {
            return Err(MySqlError::NotOpen("poll_next").into());
        };
        let n = live.columns.len();
        let mut records = Vec::with_capacity(rows.len());
        let mut last = None;
        for row in &rows {
            let (cells, rest) = row.split_at(n.min(row.len()));
            let position = rest.first().and_then(|v| TrackingValue::from_value(live.kind, v));
            let record = T::deserialize(RowDe::new(&live.columns, cells)).map_err(|e| MySqlError::RowMismatch {
                table: self.config.table.clone(),
                tracking: live.tracking.clone(),
                position: position.as_ref().map_or("NULL".into(), |p| p.to_string()),
                record_type: std::any::type_name::<T>(),
                message: e.to_string(),
            })?;
            records.push(record);
            last = position;
        }
        for record in records {
            out.collect(record)?;
        }
        if last.is_some() {
            self.position.last = last;
        }
        Ok(())
    }
}

impl<T: Data> Source<T> for MySqlSource<T> {
    type State = MySqlPosition;

    fn boundedness(&self) -> Boundedness {
        match self.config.mode {
            ReadMode::Follow => Boundedness::Unbounded,
            ReadMode::SnapshotOnly => Boundedness::Bounded,
        }
    }

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let cfg = self.config.clone();
        let (subtask, parallelism) = (ctx.subtask_index, ctx.parallelism.max(1));
        let saved = (self.position.subtask, self.position.parallelism);
        if self.restored && saved.1 != 0 && saved != (subtask, parallelism) {
            return Err(MySqlError::BadPosition {
                table: cfg.table.clone(),
                message: format!(
                    "it was saved by subtask {} of {}, this is subtask {} of {}; rows are split \
                     by MOD(column, parallelism), so the source cannot change its parallelism: \
                     restore at parallelism {}",
                    saved.0 + 1,
                    saved.1,
                    subtask + 1,
                    parallelism,
                    saved.1
                ),
            }
            .into());
        }
        let database = cfg.database.clone().ok_or_else(|| MySqlError::NoDatabase { table: cfg.table.clone() })?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(MySqlError::Runtime)?;
        let mut conn = rt.block_on(connect_retrying(&cfg, subtask))?;
        let lost = |f: Failure| match f {
            Failure::Fatal(e) => e,
            Failure::Transient(message) => MySqlError::ConnectionLost { addr: cfg.addr.clone(), attempts: 1, message },
        };
        let params = vec![Value::from(database.as_str()), Value::from(cfg.table.as_str())];
        let described = rt.block_on(query(&mut conn, &cfg, COLUMNS_SQL.into(), params)).map_err(lost)?;
        let all = described.iter().map(|r| ColumnInfo::new(&text(r, 0), &text(r, 1), &text(r, 2))).collect();
        let wanted = Wanted {
            database: &database,
            table: &cfg.table,
            user: &cfg.user,
            tracking: &cfg.tracking_column,
            split: cfg.split_column.as_deref(),
            columns: cfg.columns.as_deref(),
            lag: cfg.lag.is_some(),
            parallelism,
        };
        let resolved = wanted.resolve::<T>(all)?;
        if let Some(last) = self.position.last.as_ref().filter(|l| !l.is(resolved.kind)) {
            return Err(MySqlError::BadPosition {
                table: cfg.table.clone(),
                message: format!(
                    "the saved position {last} does not fit the tracking column `{}` of type {}; \
                     was the tracking column changed?",
                    resolved.tracking.name, resolved.tracking.mysql_type
                ),
            }
            .into());
        }
        let names: Vec<&str> = resolved.columns.iter().map(|c| c.name.as_str()).collect();
        let split = resolved.split.as_deref().map(|column| Split { column, subtask, parallelism });
        let plan = Plan::new(&database, &cfg.table, &names, &resolved.tracking.name, split, cfg.lag, cfg.batch_size);
        if cfg.mode == ReadMode::SnapshotOnly && self.position.snapshot_end.is_none() {
            let max = rt.block_on(query(&mut conn, &cfg, plan.max(), Vec::new())).map_err(lost)?;
            let end = max.first().and_then(|r| r.first()).and_then(|v| TrackingValue::from_value(resolved.kind, v));
            self.position.snapshot_end = Some(end.map_or(SnapshotEnd::EmptyTable, SnapshotEnd::At));
        }
        self.position.subtask = subtask;
        self.position.parallelism = parallelism;
        tracing::info!(
            "MySQL source subtask {}/{parallelism}: reading `{database}`.`{}` on {} by `{}` after {}",
            subtask + 1,
            cfg.table,
            cfg.addr,
            resolved.tracking.name,
            self.position.last.as_ref().map_or("the start".into(), |l| l.to_string())
        );
        self.live = Some(Live {
            conn: Some(conn),
            rt,
            plan,
            columns: resolved.columns,
            tracking: resolved.tracking.name,
            kind: resolved.kind,
            subtask,
            failures: 0,
            not_before: Instant::now(),
            finished: false,
        });
        Ok(())
    }

    fn poll_next(&mut self, out: &mut dyn Collector<T>) -> Result<SourceStatus> {
        let cfg = self.config.clone();
        let live = self.live.as_mut().ok_or(MySqlError::NotOpen("poll_next"))?;
        if live.finished {
            return Ok(SourceStatus::Finished);
        }
        let now = Instant::now();
        if now < live.not_before {
            return Ok(SourceStatus::Idle(live.not_before - now));
        }
        let end = match (cfg.mode, &self.position.snapshot_end) {
            (ReadMode::SnapshotOnly, Some(SnapshotEnd::EmptyTable)) => {
                live.finished = true;
                return Ok(SourceStatus::Finished);
            }
            (ReadMode::SnapshotOnly, Some(SnapshotEnd::At(v))) => Some(v.clone()),
            _ => None,
        };
        let result = live.rt.block_on(fetch(
            &mut live.conn,
            &cfg,
            &live.plan,
            live.kind,
            self.position.last.as_ref(),
            end.as_ref(),
        ));
        match result {
            Ok(fetched) => {
                live.failures = 0;
                let status = if fetched.full {
                    SourceStatus::MoreAvailable
                } else if cfg.mode == ReadMode::SnapshotOnly {
                    live.finished = true;
                    SourceStatus::Finished
                } else {
                    live.not_before = now + cfg.poll_interval;
                    SourceStatus::Idle(cfg.poll_interval)
                };
                self.emit(fetched.rows, out)?;
                Ok(status)
            }
            Err(Failure::Fatal(e)) => Err(e.into()),
            Err(Failure::Transient(message)) => {
                if let Some(conn) = live.conn.take() {
                    // Inside the runtime, so the driver can schedule its cleanup.
                    let _guard = live.rt.enter();
                    drop(conn);
                }
                live.failures += 1;
                if live.failures > cfg.max_retries {
                    return Err(MySqlError::ConnectionLost {
                        addr: cfg.addr.clone(),
                        attempts: live.failures,
                        message,
                    }
                    .into());
                }
                let wait = cfg.backoff(live.failures);
                tracing::warn!(
                    "MySQL source subtask {}: lost the connection to {} ({message}); retry {}/{} in {wait:?} from {}",
                    live.subtask + 1,
                    cfg.addr,
                    live.failures,
                    cfg.max_retries,
                    self.position.last.as_ref().map_or("the start".into(), |l| l.to_string())
                );
                live.not_before = now + wait;
                Ok(SourceStatus::Idle(wait))
            }
        }
    }

    fn snapshot_state(&mut self, _checkpoint: CheckpointId) -> Result<MySqlPosition> {
        Ok(self.position.clone())
    }

    fn restore_state(&mut self, state: MySqlPosition) -> Result<()> {
        self.position = state;
        self.restored = true;
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some(mut live) = self.live.take() {
            if let Some(conn) = live.conn.take() {
                // The timer must be made inside the runtime.
                let quit = async move { tokio::time::timeout(Duration::from_secs(2), conn.disconnect()).await };
                let _ = live.rt.block_on(quit);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_batch_never_ends_inside_a_run_of_equal_values() {
        let source =
            MySqlSource::<()>::builder().url("mysql://u@h/db").table("t").tracking_column("c").build().unwrap();
        let cfg = source.config();
        // Rows as fetched: [record columns..., tracking value].
        let rows = |values: &[i64]| values.iter().map(|&v| vec![Value::NULL, Value::Int(v)]).collect::<Vec<_>>();
        let cut = |values: &[i64], n| cut(&rows(values), n, TrackingKind::Int, cfg).unwrap();
        assert_eq!(cut(&[1, 2, 3], 3), Cut::All);
        assert_eq!(cut(&[], 3), Cut::All);
        assert_eq!(cut(&[1, 2, 3, 4], 3), Cut::Keep(3));
        assert_eq!(cut(&[1, 2, 3, 3], 3), Cut::Keep(2));
        assert_eq!(cut(&[1, 3, 3, 3], 3), Cut::Keep(1));
        assert_eq!(cut(&[3, 3, 3, 3], 3), Cut::Ties(TrackingValue::Int(3)));
        let null = vec![vec![Value::NULL, Value::Int(1)], vec![Value::NULL, Value::NULL]];
        assert!(matches!(super::cut(&null, 1, TrackingKind::Int, cfg), Err(Failure::Fatal(_))));
    }
}
