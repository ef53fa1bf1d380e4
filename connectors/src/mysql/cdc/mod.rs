//! Change data capture for MySQL / MariaDB: a snapshot of the captured
//! tables, then every insert, update and delete from the binlog, exactly
//! once across both phases. See `docs/mysql-cdc.md`.

mod error;
mod event;
mod offset;
mod table;

pub use error::CdcError;
pub use event::{ChangeEvent, Op};
pub use offset::{BinlogPosition, RowMark, StartupMode};
