//! Change data capture for MySQL / MariaDB: a snapshot of the captured
//! tables read in chunks without locks, then every insert, update and
//! delete from the binlog, exactly once across both phases (see
//! [`MySqlCdcSourceBuilder`] for an example, and `docs/mysql-cdc.md`).
//!
//! One concern per file: [`builder`](MySqlCdcSourceBuilder) (options),
//! `server` (checks, watermarks, table metadata), `snapshot` (chunks and
//! the watermark algorithm), `binlog` (the replica stream), `state` (the
//! checkpointed state and chunk ownership), `ddl` (schema changes),
//! `table` (columns, keys, binlog values), `event` and `offset` (the
//! records and positions), `source` (the `Source`).

mod binlog;
mod builder;
mod ddl;
mod error;
mod event;
mod offset;
mod server;
mod snapshot;
mod source;
mod state;
mod table;

pub use builder::{MySqlCdcSourceBuilder, SchemaChanges};
pub use error::CdcError;
pub use event::{ChangeEvent, Op};
pub use offset::{BinlogPosition, RowMark, StartupMode};
pub use source::MySqlCdcSource;
pub use state::{CdcState, TableProgress};
