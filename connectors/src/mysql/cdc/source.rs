//! The `Source` implementation: the snapshot of the owned chunks, then the
//! binlog for the owned keys.

use super::binlog::{Item, Reader, RowPair, RowsKind};
use super::builder::{Config, MySqlCdcSourceBuilder, SchemaChanges};
use super::ddl::touched_tables;
use super::error::{shorten, CdcError};
use super::event::{ChangeEvent, Op};
use super::offset::{BinlogPosition, RowMark, StartupMode};
use super::server;
use super::snapshot::{plan, read_chunk};
use super::state::{chunk_of, merge, owner, CdcState};
use super::table::{binlog_row, TableSchema};
use crate::mysql::row::RowDe;
use mysql_async::{Conn, Value};
use serde::de::DeserializeOwned;
use sluice::{Boundedness, CheckpointId, Collector, Data, Result, RuntimeContext, Source, SourceStatus};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A change-data-capture source of MySQL / MariaDB tables; emits a
/// [`ChangeEvent`] per snapshot row and per binlog row change. See
/// [`MySqlCdcSourceBuilder`] and `docs/mysql-cdc.md`.
pub struct MySqlCdcSource<T> {
    config: Arc<Config>,
    state: CdcState,
    restored: bool,
    /// The states of every old subtask, given before `open`.
    saved: Vec<CdcState>,
    live: Option<Live>,
    _record: PhantomData<fn() -> T>,
}

/// An open subtask. `conn` and `reader` are declared before the runtime
/// they were made on, so they drop first.
struct Live {
    conn: Conn,
    reader: Option<Reader>,
    rt: tokio::runtime::Runtime,
    tables: BTreeMap<String, TableSchema>,
    subtask: u32,
    parallelism: u32,
    server_id: u32,
}

impl<T> Clone for MySqlCdcSource<T> {
    fn clone(&self) -> Self {
        MySqlCdcSource {
            config: self.config.clone(),
            state: self.state.clone(),
            restored: self.restored,
            saved: self.saved.clone(),
            live: None,
            _record: PhantomData,
        }
    }
}

impl<T> MySqlCdcSource<T> {
    /// A builder; `build` checks the options.
    pub fn builder() -> MySqlCdcSourceBuilder<T> {
        MySqlCdcSourceBuilder::default()
    }

    pub(crate) fn from_config(config: Config) -> Self {
        MySqlCdcSource {
            config: Arc::new(config),
            state: CdcState::default(),
            restored: false,
            saved: Vec::new(),
            live: None,
            _record: PhantomData,
        }
    }

    #[cfg(test)]
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The current state (what `snapshot_state` returns).
    pub fn state(&self) -> &CdcState {
        &self.state
    }
}

/// Builds the event of one row.
fn event<T: DeserializeOwned>(
    schema: &TableSchema,
    op: Op,
    values: &[Value],
    mark: &RowMark,
    gtid: Option<&String>,
    timestamp: u32,
    snapshot: bool,
) -> std::result::Result<ChangeEvent<T>, CdcError> {
    let row = T::deserialize(RowDe::new(&schema.infos, values)).map_err(|e| CdcError::RowMismatch {
        database: schema.database.clone(),
        table: schema.table.clone(),
        mark: mark.to_string(),
        record_type: std::any::type_name::<T>(),
        message: e.to_string(),
    })?;
    Ok(ChangeEvent {
        op,
        database: schema.database.clone(),
        table: schema.table.clone(),
        row: Some(row),
        mark: mark.clone(),
        gtid: gtid.cloned(),
        timestamp_ms: u64::from(timestamp) * 1000,
        snapshot,
        ddl: None,
    })
}

impl<T: Data> MySqlCdcSource<T> {
    /// Reads the next owned chunk; `false` once the snapshot is complete.
    fn snapshot_step(&mut self, out: &mut dyn Collector<ChangeEvent<T>>) -> Result<bool> {
        let cfg = self.config.clone();
        let live = self.live.as_mut().ok_or(CdcError::NotOpen("poll_next"))?;
        for (id, schema) in &live.tables {
            let Some(progress) = self.state.tables.get_mut(id) else { continue };
            let (k, whole) = match progress.range {
                None if progress.next == 0 => (0, true),
                None => continue,
                Some((_, last)) => {
                    let mut k = progress.next;
                    while k <= last && owner(id, k, live.parallelism) != live.subtask {
                        k += 1;
                    }
                    progress.next = k;
                    if k > last {
                        continue;
                    }
                    (k, false)
                }
            };
            if whole && owner(id, 0, live.parallelism) != live.subtask {
                progress.next = 1;
                continue;
            }
            let chunk =
                live.rt.block_on(read_chunk(&mut live.conn, &cfg, schema, (!whole).then_some(k), live.server_id))?;
            let mark = chunk.high.mark();
            let mut events = Vec::with_capacity(chunk.rows.len());
            for values in chunk.rows.values() {
                events.push(event::<T>(schema, Op::Insert, values, &mark, None, 0, true)?);
            }
            for e in events {
                out.collect(e)?;
            }
            progress.done.insert(k, mark);
            progress.next = k + 1;
            return Ok(true);
        }
        self.state.snapshot_done = true;
        tracing::info!("MySQL CDC subtask {}: snapshot complete", live.subtask + 1);
        Ok(false)
    }

    /// Whether a binlog change of `schema` with chunk `k` at `mark` is this
    /// subtask's to emit.
    fn wanted(&self, live: &Live, schema: &TableSchema, values: &[Value], mark: &RowMark) -> bool {
        let id = schema.id();
        let k = schema.chunk_value(&schema.key_of(values)).map_or(0, |v| chunk_of(v, self.config.chunk_size));
        if owner(&id, k, live.parallelism) != live.subtask {
            return false;
        }
        if self.state.emitted.as_ref().is_some_and(|e| mark <= e) {
            return false;
        }
        // Keys an old subtask of a rescaled job emitted changes of up to its mark.
        for h in &self.state.handovers {
            let old = owner(&id, k, h.parallelism) as usize;
            if h.emitted.get(old).and_then(Option::as_ref).is_some_and(|e| mark <= e) {
                return false;
            }
        }
        match self.state.tables.get(&id).and_then(|p| p.done.get(&k)) {
            Some(high) => mark > high,
            None => true,
        }
    }

    /// The events of one rows event.
    fn rows_events(
        &self,
        live: &Live,
        schema: &TableSchema,
        kind: RowsKind,
        pairs: Vec<RowPair>,
        end: &BinlogPosition,
        timestamp: u32,
    ) -> std::result::Result<Vec<ChangeEvent<T>>, CdcError> {
        let gtid = live.reader.as_ref().and_then(|r| r.gtid.as_ref());
        let mut events = Vec::new();
        for (i, (before, after)) in pairs.into_iter().enumerate() {
            let mark = RowMark { position: end.clone(), row: u32::try_from(i).unwrap_or(u32::MAX - 1) };
            let convert = |row| -> std::result::Result<Vec<Value>, CdcError> {
                let values = binlog_row(schema, row).map_err(|message| CdcError::RowMismatch {
                    database: schema.database.clone(),
                    table: schema.table.clone(),
                    mark: mark.to_string(),
                    record_type: "the table's columns",
                    message,
                })?;
                if values.len() != schema.columns.len() {
                    return Err(CdcError::ColumnCount {
                        database: schema.database.clone(),
                        table: schema.table.clone(),
                        mark: mark.to_string(),
                        found: values.len(),
                        expected: schema.columns.len(),
                    });
                }
                Ok(values)
            };
            let (before_op, after_op) = match kind {
                RowsKind::Write => (None, Some(Op::Insert)),
                RowsKind::Update => (Some(Op::UpdateBefore), Some(Op::UpdateAfter)),
                RowsKind::Delete => (Some(Op::Delete), None),
            };
            for (row, op) in [(before, before_op), (after, after_op)] {
                let (Some(row), Some(op)) = (row, op) else { continue };
                let values = convert(row)?;
                if self.wanted(live, schema, &values, &mark) {
                    events.push(event::<T>(schema, op, &values, &mark, gtid, timestamp, false)?);
                }
            }
        }
        Ok(events)
    }

    /// Reads binlog events for up to about 100 ms or `max_batch` changes.
    fn binlog_step(&mut self, out: &mut dyn Collector<ChangeEvent<T>>) -> Result<SourceStatus> {
        let cfg = self.config.clone();
        let mut live = self.live.take().ok_or(CdcError::NotOpen("poll_next"))?;
        let result = self.binlog_batch(&cfg, &mut live, out);
        self.live = Some(live);
        result
    }

    fn binlog_batch(
        &mut self,
        cfg: &Config,
        live: &mut Live,
        out: &mut dyn Collector<ChangeEvent<T>>,
    ) -> Result<SourceStatus> {
        let start = self.state.resume.clone().ok_or(CdcError::NotOpen("poll_next"))?;
        if live.reader.is_none() {
            let reader = live.rt.block_on(Reader::open(cfg, live.server_id, &start))?;
            live.reader = Some(reader);
        }
        let started = Instant::now();
        let mut emitted = 0;
        let min_ts = match cfg.startup {
            StartupMode::Timestamp(t) => t,
            _ => 0,
        };
        while emitted < cfg.max_batch {
            let left = Duration::from_millis(100).saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            let Some(reader) = live.reader.as_mut() else { break };
            let Some(item) = live.rt.block_on(reader.next(left))? else { break };
            match item {
                Item::Rows { database, table, kind, rows, end, timestamp } => {
                    let id = super::table::table_id(&database, &table);
                    if u64::from(timestamp) >= min_ts {
                        if let Some(schema) = live.tables.get(&id) {
                            let events = self.rows_events(live, schema, kind, rows, &end, timestamp)?;
                            emitted += events.len();
                            if let Some(last) = events.last() {
                                self.state.emitted = Some(last.mark.clone());
                            }
                            for e in events {
                                out.collect(e)?;
                            }
                        }
                    }
                }
                Item::Query { schema, statement, end, timestamp } => {
                    if self.query(cfg, live, &schema, &statement, &end, timestamp, out)? {
                        emitted += 1;
                    }
                }
                Item::Other => {}
            }
            if let Some(reader) = live.reader.as_ref() {
                self.state.resume = Some(reader.boundary.clone());
            }
        }
        Ok(if emitted > 0 { SourceStatus::MoreAvailable } else { SourceStatus::Idle(Duration::from_millis(10)) })
    }

    /// Handles a statement; `true` if it emitted a schema-change event.
    #[allow(clippy::too_many_arguments)]
    fn query(
        &mut self,
        cfg: &Config,
        live: &mut Live,
        schema: &str,
        statement: &str,
        end: &BinlogPosition,
        timestamp: u32,
        out: &mut dyn Collector<ChangeEvent<T>>,
    ) -> Result<bool> {
        let touched: Vec<(String, String)> = touched_tables(statement, schema, live.tables.values())
            .into_iter()
            .map(|t| (t.database.clone(), t.table.clone()))
            .collect();
        let Some((database, table)) = touched.first().cloned() else { return Ok(false) };
        let mark = end.mark();
        if self.state.emitted.as_ref().is_some_and(|e| mark <= *e) {
            return Ok(false);
        }
        if cfg.schema_changes == SchemaChanges::Fail {
            return Err(CdcError::SchemaChange {
                database,
                table,
                statement: shorten(statement),
                mark: mark.to_string(),
            }
            .into());
        }
        let mut emitted = false;
        for (database, table) in touched {
            let id = super::table::table_id(&database, &table);
            if owner(&id, 0, live.parallelism) == live.subtask {
                out.collect(ChangeEvent {
                    op: Op::SchemaChange,
                    database,
                    table,
                    row: None,
                    mark: mark.clone(),
                    gtid: live.reader.as_ref().and_then(|r| r.gtid.clone()),
                    timestamp_ms: u64::from(timestamp) * 1000,
                    snapshot: false,
                    ddl: Some(statement.to_string()),
                })?;
                emitted = true;
            }
        }
        self.state.emitted = Some(mark);
        let tables = live.rt.block_on(server::load_tables(&mut live.conn, cfg))?;
        live.tables = tables.into_iter().map(|t| (t.id(), t)).collect();
        Ok(emitted)
    }
}

impl<T: Data> Source<ChangeEvent<T>> for MySqlCdcSource<T> {
    type State = CdcState;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Unbounded
    }

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let cfg = self.config.clone();
        let (subtask, parallelism) = (ctx.subtask_index, ctx.parallelism.max(1));
        let ids = u64::from(*cfg.server_ids.end()) - u64::from(*cfg.server_ids.start()) + 1;
        if ids < u64::from(parallelism) {
            return Err(CdcError::ServerIds {
                start: *cfg.server_ids.start(),
                end: *cfg.server_ids.end(),
                count: ids,
                parallelism,
            }
            .into());
        }
        if !self.saved.is_empty() {
            self.state = merge(std::mem::take(&mut self.saved), subtask, parallelism)?;
            self.restored = true;
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(CdcError::Runtime)?;
        let (conn, tables) = rt.block_on(async {
            let mut conn = server::connect(&cfg).await?;
            server::check_server(&mut conn, &cfg).await?;
            let tables = server::load_tables(&mut conn, &cfg).await?;
            if !self.restored {
                self.state = CdcState { subtask, parallelism, ..CdcState::default() };
                let start = match &cfg.startup {
                    StartupMode::Initial | StartupMode::LatestOffset => server::master_status(&mut conn, &cfg).await?,
                    StartupMode::EarliestOffset | StartupMode::Timestamp(_) => {
                        let logs = server::binary_logs(&mut conn, &cfg).await?;
                        let first = logs.first().ok_or_else(|| CdcError::BinlogOff { addr: cfg.addr.clone() })?;
                        BinlogPosition::new(first.file.clone(), 4)
                    }
                    StartupMode::SpecificOffset(p) => p.clone(),
                    StartupMode::SpecificGtid(g) => {
                        let set =
                            super::offset::parse_gtid_set(g).map_err(|message| CdcError::BadPosition { message })?;
                        server::gtid_start(&mut conn, &cfg, &set).await?
                    }
                };
                if cfg.startup == StartupMode::Initial {
                    for t in &tables {
                        self.state.tables.insert(t.id(), plan(&mut conn, &cfg, t).await?);
                    }
                } else {
                    self.state.snapshot_done = true;
                }
                self.state.resume = Some(start);
            }
            if let Some(resume) = &self.state.resume {
                server::check_position(&mut conn, &cfg, resume).await?;
            }
            Ok::<_, CdcError>((conn, tables))
        })?;
        tracing::info!(
            "MySQL CDC subtask {}/{parallelism}: {} table(s) on {}, {} from {}",
            subtask + 1,
            tables.len(),
            cfg.addr,
            if self.state.snapshot_done { "binlog" } else { "snapshot, then binlog" },
            self.state.resume.as_ref().map(ToString::to_string).unwrap_or_default()
        );
        self.live = Some(Live {
            conn,
            reader: None,
            rt,
            tables: tables.into_iter().map(|t| (t.id(), t)).collect(),
            subtask,
            parallelism,
            server_id: cfg.server_ids.start() + subtask,
        });
        Ok(())
    }

    fn poll_next(&mut self, out: &mut dyn Collector<ChangeEvent<T>>) -> Result<SourceStatus> {
        if !self.state.snapshot_done && self.snapshot_step(out)? {
            return Ok(SourceStatus::MoreAvailable);
        }
        self.binlog_step(out)
    }

    fn snapshot_state(&mut self, _checkpoint: CheckpointId) -> Result<CdcState> {
        Ok(self.state.clone())
    }

    fn union_state(&self) -> bool {
        true
    }

    fn restore_state(&mut self, state: CdcState) -> Result<()> {
        // Called once per old subtask; `open` picks or merges.
        self.saved.push(state);
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some(live) = self.live.take() {
            let Live { conn, reader, rt, .. } = live;
            rt.block_on(async move {
                if let Some(reader) = reader {
                    reader.close().await;
                }
                let _ = tokio::time::timeout(Duration::from_secs(2), conn.disconnect()).await;
            });
        }
        Ok(())
    }
}
