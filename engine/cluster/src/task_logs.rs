//! A TaskManager's logs, as the web UI reads them: the standard error
//! (`<job>-<process>.log`, where the job's own log lines go) and standard
//! output (`<job>-<process>.out`) of each job process in its work
//! directory. A name is accepted only in that shape and only for a
//! directory that exists, so a request cannot reach any other file; a
//! read returns at most the last [`MAX_READ`] bytes.

use sluice::cluster::remote::messages::{LogAnswer, LogFile, LogRequest};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// The most a read returns (the end of the file).
pub const MAX_READ: u64 = 1 << 20;

/// The two files of a job process and their suffixes in names.
const FILES: [(&str, &str); 2] = [(".log", "taskmanager.log"), (".out", "taskmanager.out")];

/// Answers `what` about the logs under `work_dir/jobs`.
pub fn answer(work_dir: &Path, what: &LogRequest) -> Result<LogAnswer, String> {
    match what {
        LogRequest::List => list(work_dir).map(LogAnswer::List),
        LogRequest::Read { name } => read_tail(&path_of(work_dir, name)?).map(LogAnswer::Content),
    }
}

fn list(work_dir: &Path) -> Result<Vec<LogFile>, String> {
    let dir = work_dir.join("jobs");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list '{}': {e}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let Some(process) = entry.file_name().to_str().filter(|n| is_process_dir(n)).map(str::to_string) else {
            continue;
        };
        for (suffix, file) in FILES {
            if let Ok(meta) = std::fs::metadata(entry.path().join(file)) {
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                files.push(LogFile { name: format!("{process}{suffix}"), size: meta.len(), modified });
            }
        }
    }
    files.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| a.name.cmp(&b.name)));
    Ok(files)
}

/// `<32 hex digits>-<number>`: a job process directory.
fn is_process_dir(name: &str) -> bool {
    let Some((job, seq)) = name.split_once('-') else { return false };
    job.len() == 32
        && job.bytes().all(|b| b.is_ascii_hexdigit())
        && !seq.is_empty()
        && seq.len() <= 10
        && seq.bytes().all(|b| b.is_ascii_digit())
}

/// The file a listed name stands for.
fn path_of(work_dir: &Path, name: &str) -> Result<PathBuf, String> {
    for (suffix, file) in FILES {
        if let Some(process) = name.strip_suffix(suffix).filter(|p| is_process_dir(p)) {
            let path = work_dir.join("jobs").join(process).join(file);
            return if path.is_file() { Ok(path) } else { Err(format!("no log '{name}' on this TaskManager")) };
        }
    }
    Err(format!("'{name}' is not a log name (<job id>-<process>.log or .out, as GET .../logs lists them)"))
}

/// The last [`MAX_READ`] bytes of the file at `path`, as text.
pub fn read_tail(path: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open '{}': {e}", path.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX_READ {
        f.seek(SeekFrom::Start(len - MAX_READ)).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    }
    let mut bytes = Vec::new();
    f.take(MAX_READ).read_to_end(&mut bytes).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const JOB: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn lists_and_reads_job_process_logs_only() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("jobs").join(format!("{JOB}-3"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("taskmanager.log"), "a line the job logged\n").unwrap();
        std::fs::write(dir.join("taskmanager.out"), "printed\n").unwrap();
        std::fs::write(dir.join("secret.key"), "no").unwrap();
        std::fs::create_dir_all(work.path().join("jobs").join("other")).unwrap();
        let LogAnswer::List(files) = answer(work.path(), &LogRequest::List).unwrap() else { panic!() };
        let mut names: Vec<_> = files.iter().map(|f| f.name.clone()).collect();
        names.sort();
        assert_eq!(names, [format!("{JOB}-3.log"), format!("{JOB}-3.out")]);
        let read = |name: &str| answer(work.path(), &LogRequest::Read { name: name.into() });
        let Ok(LogAnswer::Content(text)) = read(&format!("{JOB}-3.log")) else { panic!() };
        assert_eq!(text, "a line the job logged\n");
        for hostile in ["../../etc/passwd", &format!("{JOB}-3/../../x.log"), &format!("{JOB}-3.key"), "x-1.log", ""] {
            assert!(read(hostile).is_err(), "{hostile} must be refused");
        }
        assert!(read(&format!("{JOB}-4.log")).unwrap_err().contains("no log"));
    }

    #[test]
    fn a_large_log_is_read_from_its_end() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("jobs").join(format!("{JOB}-0"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = "x".repeat(MAX_READ as usize);
        text.push_str("the end\n");
        std::fs::write(dir.join("taskmanager.log"), &text).unwrap();
        let Ok(LogAnswer::Content(read)) = answer(work.path(), &LogRequest::Read { name: format!("{JOB}-0.log") })
        else {
            panic!()
        };
        assert_eq!(read.len() as u64, MAX_READ);
        assert!(read.ends_with("the end\n"));
    }
}
