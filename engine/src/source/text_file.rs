//! A bounded, parallel source of the lines of a text file
//! (Flink's `readTextFile`).
//!
//! The file is cut into as many byte ranges as there are subtasks; a subtask
//! reads the lines that *start* in its range, so every line is read exactly
//! once whatever the parallelism. Lines must be UTF-8; a line that is not is
//! an error naming the file and byte offset, never silently altered. `\r\n`
//! line ends are accepted. The state is the byte offset of the next line.

use super::{Boundedness, Source, SourceStatus};
use crate::error::{Error, Result};
use crate::runtime::collector::Collector;
use crate::runtime::context::RuntimeContext;
use sluice_checkpoint::CheckpointId;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;

/// Reads a text file line by line.
#[derive(Clone)]
pub struct TextFileSource {
    path: PathBuf,
    restored: Option<u64>,
    pos: u64,
    end: u64,
    reader: Option<std::sync::Arc<std::sync::Mutex<BufReader<File>>>>,
    buf: Vec<u8>,
}

impl TextFileSource {
    /// A source over the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TextFileSource { path: path.into(), restored: None, pos: 0, end: 0, reader: None, buf: Vec::new() }
    }

    fn ctx_err(&self, what: &str, e: std::io::Error) -> Error {
        Error::io(format!("cannot {what} input file '{}'", self.path.display()), e)
    }
}

impl Source<String> for TextFileSource {
    type State = u64;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let file = File::open(&self.path).map_err(|e| self.ctx_err("open", e))?;
        let meta = file.metadata().map_err(|e| self.ctx_err("read", e))?;
        if meta.is_dir() {
            return Err(Error::io(
                format!("cannot read input file '{}'", self.path.display()),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "it is a directory, not a file"),
            ));
        }
        let len = meta.len();
        let p = u64::from(ctx.parallelism.max(1));
        let i = u64::from(ctx.subtask_index);
        let start = len * i / p;
        self.end = len * (i + 1) / p;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let pos = match self.restored {
            Some(pos) => pos,
            None if start == 0 => 0,
            None => {
                // Skip the line that started in the previous range.
                reader.seek(SeekFrom::Start(start - 1)).map_err(|e| self.ctx_err("read", e))?;
                let mut skipped = Vec::new();
                let n = reader.read_until(b'\n', &mut skipped).map_err(|e| self.ctx_err("read", e))?;
                start - 1 + n as u64
            }
        };
        reader.seek(SeekFrom::Start(pos)).map_err(|e| self.ctx_err("read", e))?;
        self.pos = pos;
        self.reader = Some(std::sync::Arc::new(std::sync::Mutex::new(reader)));
        Ok(())
    }

    fn poll_next(&mut self, out: &mut dyn Collector<String>) -> Result<SourceStatus> {
        let Some(reader) = self.reader.clone() else {
            return Ok(SourceStatus::Finished);
        };
        let mut reader = reader.lock().map_err(|_| Error::internal("text file reader poisoned"))?;
        for _ in 0..256 {
            if self.pos >= self.end {
                return Ok(SourceStatus::Finished);
            }
            self.buf.clear();
            let n = reader.read_until(b'\n', &mut self.buf).map_err(|e| self.ctx_err("read", e))?;
            if n == 0 {
                return Ok(SourceStatus::Finished);
            }
            let line_start = self.pos;
            self.pos += n as u64;
            let mut bytes = self.buf.as_slice();
            if let Some(b) = bytes.strip_suffix(b"\n") {
                bytes = b.strip_suffix(b"\r").unwrap_or(b);
            }
            let line = std::str::from_utf8(bytes).map_err(|e| {
                Error::MalformedInput(format!(
                    "input file '{}' is not UTF-8 text: invalid byte at offset {}; convert it to UTF-8 first",
                    self.path.display(),
                    line_start + e.valid_up_to() as u64
                ))
            })?;
            out.collect(line.to_string())?;
        }
        Ok(SourceStatus::MoreAvailable)
    }

    fn snapshot_state(&mut self, _checkpoint: CheckpointId) -> Result<u64> {
        Ok(self.pos)
    }

    fn restore_state(&mut self, pos: u64) -> Result<()> {
        self.restored = Some(pos);
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.reader = None;
        Ok(())
    }
}
