//! `print()`: records to standard output in Flink's format.
//!
//! With parallelism above 1 each line is prefixed by the 1-based subtask
//! index, `2> (hello,3)`; with parallelism 1 there is no prefix. Lines of one
//! subtask are written whole (never interleaved mid-line with another's).

use super::Sink;
use crate::error::{Error, Result};
use crate::record::RecordDisplay;
use crate::runtime::context::RuntimeContext;
use std::io::Write;

/// Prints records to stdout (or stderr).
#[derive(Clone, Default)]
pub struct PrintSink {
    prefix: String,
    buf: String,
    to_stderr: bool,
}

impl PrintSink {
    /// Prints to standard output.
    pub fn new() -> Self {
        Self::default()
    }

    /// Prints to standard error instead.
    pub fn to_stderr() -> Self {
        PrintSink { to_stderr: true, ..Self::default() }
    }
}

impl<T: RecordDisplay> Sink<T> for PrintSink {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        if ctx.parallelism > 1 {
            self.prefix = format!("{}> ", ctx.subtask_index + 1);
        }
        Ok(())
    }

    fn write(&mut self, record: T) -> Result<()> {
        self.buf.push_str(&self.prefix);
        record.fmt_record(&mut self.buf);
        self.buf.push('\n');
        if self.buf.len() >= 64 * 1024 {
            Sink::<T>::flush(self)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = if self.to_stderr {
            let mut err = std::io::stderr().lock();
            err.write_all(self.buf.as_bytes()).and_then(|_| err.flush())
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(self.buf.as_bytes()).and_then(|_| out.flush())
        };
        self.buf.clear();
        written.map_err(|e| Error::io("cannot write to standard output", e))
    }

    fn close(&mut self) -> Result<()> {
        Sink::<T>::flush(self)
    }
}
