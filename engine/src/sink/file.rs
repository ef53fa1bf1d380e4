//! `FileSink`: exactly-once text output through the two-phase-commit
//! contract (the first user of [`TwoPhaseCommitSink`]).
//!
//! Records go as lines (via [`RecordDisplay`]) into a hidden in-progress
//! part file per transaction, `.part-<subtask>-<run>-<n>.inprogress`, in the
//! output directory. Pre-commit flushes and syncs it; commit renames it to
//! `part-<subtask>-<run>-<n>` (a commit repeated after a restore finds the
//! final file and does nothing). On start, in-progress files of the subtasks
//! this subtask takes over that no restored checkpoint knows are deleted:
//! their records will be written again from the checkpointed position.
//! Readers should read only files not starting with `.`.

use super::two_phase::TwoPhaseCommitSink;
use crate::error::{Error, Result};
use crate::record::RecordDisplay;
use crate::runtime::context::RuntimeContext;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A transaction of the [`FileSink`]: one part file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartFile {
    /// The part file's final name.
    pub name: String,
    /// Records written so far.
    pub records: u64,
}

impl PartFile {
    fn in_progress(&self) -> String {
        format!(".{}.inprogress", self.name)
    }
}

/// Writes records as lines into part files committed on checkpoints.
pub struct FileSink {
    dir: PathBuf,
    run: String,
    subtask: u32,
    counter: u64,
    open_file: Option<(String, File)>,
    line: String,
}

impl Clone for FileSink {
    fn clone(&self) -> Self {
        FileSink::new(self.dir.clone())
    }
}

impl FileSink {
    /// A sink writing part files into `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSink { dir: dir.into(), run: String::new(), subtask: 0, counter: 0, open_file: None, line: String::new() }
    }

    fn io(&self, what: &str, path: &Path, e: std::io::Error) -> Error {
        Error::io(format!("file sink: cannot {what} '{}'", path.display()), e)
    }

    fn file_for(&mut self, txn: &PartFile) -> Result<&mut File> {
        let name = txn.in_progress();
        if self.open_file.as_ref().map(|(n, _)| n != &name).unwrap_or(true) {
            let path = self.dir.join(&name);
            let f = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| self.io("open", &path, e))?;
            self.open_file = Some((name, f));
        }
        match self.open_file.as_mut() {
            Some((_, f)) => Ok(f),
            None => Err(Error::internal("file sink lost its part file")),
        }
    }
}

impl<T: RecordDisplay> TwoPhaseCommitSink<T> for FileSink {
    type Transaction = PartFile;

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io("create", &self.dir.clone(), e))?;
        self.subtask = ctx.subtask_index;
        self.run = format!("{}-{}", &ctx.job_id.to_string()[..8], ctx.attempt);
        Ok(())
    }

    fn recover(&mut self, pending: Vec<PartFile>, old_subtasks: &[u32], _next_checkpoint: u64) -> Result<()> {
        let mut known = std::collections::HashSet::new();
        for txn in pending {
            // A name from a checkpoint: it must not lead out of the directory.
            sluice_checkpoint::names::check_file_name(&txn.name, &self.dir)?;
            known.insert(txn.in_progress());
            TwoPhaseCommitSink::<T>::commit(self, txn)?;
        }
        let entries = std::fs::read_dir(&self.dir).map_err(|e| self.io("list", &self.dir.clone(), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let owner = name
                .strip_prefix(".part-")
                .filter(|_| name.ends_with(".inprogress"))
                .and_then(|rest| rest.split('-').next())
                .and_then(|s| s.parse::<u32>().ok());
            if owner.is_some_and(|o| old_subtasks.contains(&o)) && !known.contains(&name) {
                tracing::info!("file sink: aborting lingering transaction {name}");
                std::fs::remove_file(entry.path()).map_err(|e| self.io("remove", &entry.path(), e))?;
            }
        }
        Ok(())
    }

    fn begin_transaction(&mut self, _checkpoint: u64) -> Result<PartFile> {
        self.counter += 1;
        Ok(PartFile { name: format!("part-{}-{}-{}", self.subtask, self.run, self.counter), records: 0 })
    }

    fn write(&mut self, txn: &mut PartFile, record: T) -> Result<()> {
        self.line.clear();
        record.fmt_record(&mut self.line);
        self.line.push('\n');
        let line = std::mem::take(&mut self.line);
        let path = self.dir.join(txn.in_progress());
        let written = self.file_for(txn)?.write_all(line.as_bytes()).map_err(|e| self.io("write", &path, e));
        self.line = line;
        txn.records += 1;
        written
    }

    fn pre_commit(&mut self, txn: &mut PartFile) -> Result<()> {
        if txn.records == 0 {
            return Ok(());
        }
        let path = self.dir.join(txn.in_progress());
        let f = self.file_for(txn)?;
        let synced = f.flush().and_then(|_| f.sync_all());
        synced.map_err(|e| self.io("sync", &path, e))?;
        self.open_file = None;
        Ok(())
    }

    fn commit(&mut self, txn: PartFile) -> Result<()> {
        let from = self.dir.join(txn.in_progress());
        let to = self.dir.join(&txn.name);
        match std::fs::rename(&from, &to) {
            Ok(()) => Ok(()),
            Err(_) if to.exists() => Ok(()), // committed before a restart
            Err(e) => Err(Error::io(
                format!("file sink: cannot commit '{}' (its records are lost if the file is gone)", from.display()),
                e,
            )),
        }
    }

    fn abort(&mut self, txn: PartFile) -> Result<()> {
        let path = self.dir.join(txn.in_progress());
        if self.open_file.as_ref().is_some_and(|(n, _)| *n == txn.in_progress()) {
            self.open_file = None;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("remove", &path, e)),
        }
    }

    fn is_empty(&self, txn: &PartFile) -> bool {
        txn.records == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn recovered_part_names_never_leave_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".x.inprogress"), b"line\n").unwrap();
        let mut sink = FileSink::new(&dir);
        for bad in ["../x", "/tmp/x", "a/../../x", ".."] {
            let txn = PartFile { name: bad.into(), records: 1 };
            let e = TwoPhaseCommitSink::<String>::recover(&mut sink, vec![txn], &[0], 1).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("not a plain file name"), "{e}");
        }
        assert!(!tmp.path().join("x").exists());
        let txn = PartFile { name: "x".into(), records: 1 };
        TwoPhaseCommitSink::<String>::recover(&mut sink, vec![txn], &[0], 1).unwrap();
        assert_eq!(std::fs::read(dir.join("x")).unwrap(), b"line\n");
    }
}
