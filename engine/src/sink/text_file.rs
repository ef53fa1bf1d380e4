//! `write_as_text(path)`: records as lines of text files.
//!
//! With parallelism 1 the output is the file `path`; with parallelism above
//! 1, `path` is a directory holding one file per subtask named `1`, `2`, ...
//! (as Flink's `writeAsText`). Existing files are overwritten. Lines become
//! visible on flush and are complete once the job finishes.

use super::Sink;
use crate::error::{Error, Result};
use crate::record::RecordDisplay;
use crate::runtime::context::RuntimeContext;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Writes records as text lines.
pub struct TextFileSink {
    path: PathBuf,
    file: Option<(PathBuf, BufWriter<File>)>,
    line: String,
}

impl Clone for TextFileSink {
    fn clone(&self) -> Self {
        TextFileSink::new(self.path.clone())
    }
}

impl TextFileSink {
    /// A sink writing to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TextFileSink { path: path.into(), file: None, line: String::new() }
    }

    fn io(what: &str, path: &std::path::Path, e: std::io::Error) -> Error {
        Error::io(format!("cannot {what} output file '{}'", path.display()), e)
    }
}

impl<T: RecordDisplay> Sink<T> for TextFileSink {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let target = if ctx.parallelism > 1 {
            if self.path.is_file() {
                std::fs::remove_file(&self.path).map_err(|e| Self::io("replace", &self.path, e))?;
            }
            std::fs::create_dir_all(&self.path).map_err(|e| Self::io("create the directory of", &self.path, e))?;
            self.path.join((ctx.subtask_index + 1).to_string())
        } else {
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| Self::io("create the directory of", &self.path, e))?;
            }
            self.path.clone()
        };
        let file = File::create(&target).map_err(|e| Self::io("create", &target, e))?;
        self.file = Some((target, BufWriter::with_capacity(256 * 1024, file)));
        Ok(())
    }

    fn write(&mut self, record: T) -> Result<()> {
        let Some((path, w)) = self.file.as_mut() else {
            return Err(Error::internal("text file sink written before open"));
        };
        self.line.clear();
        record.fmt_record(&mut self.line);
        self.line.push('\n');
        w.write_all(self.line.as_bytes()).map_err(|e| Self::io("write", path, e))
    }

    fn flush(&mut self) -> Result<()> {
        match self.file.as_mut() {
            Some((path, w)) => w.flush().map_err(|e| Self::io("write", path, e)),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<()> {
        match self.file.as_mut() {
            Some((path, w)) => w.flush().and_then(|_| w.get_ref().sync_all()).map_err(|e| Self::io("write", path, e)),
            None => Ok(()),
        }
    }

    fn close(&mut self) -> Result<()> {
        let result = Sink::<T>::flush(self);
        self.file = None;
        result
    }
}
