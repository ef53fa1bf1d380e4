//! Keeps a TaskManager's work directory bounded: job binaries fetched from
//! the JobManager (`artifacts/<sha256>/`) and the directories of job
//! processes (`jobs/<job>-<seq>/`: their logs and output) would otherwise
//! pile up with every job. The most recently used ones are kept
//! (`taskmanager.artifacts.retained`, `taskmanager.jobs.retained`); the
//! directory of a process that still runs is never removed. A binary
//! removed while a process runs from it keeps running (the file system
//! frees it when the process exits); a later process of that job fetches
//! it again.

use std::collections::HashSet;
use std::path::Path;
use std::time::SystemTime;

/// How many of each kind a TaskManager keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Job binaries (`taskmanager.artifacts.retained`).
    pub artifacts: usize,
    /// Directories of ended job processes (`taskmanager.jobs.retained`).
    pub jobs: usize,
}

/// Marks `dir` as used now (its modification time orders the cache).
pub(crate) fn touch(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Removes, in `work_dir`, all but the `keep.artifacts` most recently used
/// binaries and all but the `keep.jobs` most recent directories of job
/// processes not in `running` (directory names `<job>-<seq>`). Errors are
/// logged, not returned: a directory that cannot be removed stays.
pub(crate) fn prune(work_dir: &Path, keep: Retention, running: &HashSet<String>) {
    prune_dir(&work_dir.join("artifacts"), keep.artifacts, &HashSet::new());
    prune_dir(&work_dir.join("jobs"), keep.jobs, running);
}

fn prune_dir(dir: &Path, keep: usize, spared: &HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut candidates: Vec<(SystemTime, std::path::PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !spared.contains(&*e.file_name().to_string_lossy()))
        .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH), e.path()))
        .collect();
    if candidates.len() <= keep {
        return;
    }
    // Newest first; the tail goes.
    candidates.sort_by(|a, b| b.cmp(a));
    for (_, path) in candidates.into_iter().skip(keep) {
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::info!("removed {} (retention)", path.display()),
            Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::time::Duration;

    fn make(dir: &Path, name: &str, age_s: u64) {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("file"), b"x").unwrap();
        let f = std::fs::File::open(&d).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age_s)).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn the_newest_are_kept_and_running_processes_keep_their_directories() {
        let work = tempfile::tempdir().unwrap();
        let (artifacts, jobs) = (work.path().join("artifacts"), work.path().join("jobs"));
        for (name, age) in [("a-old", 400), ("b-mid", 200), ("c-new", 10)] {
            make(&artifacts, name, age);
        }
        for (name, age) in [("j1-0", 500), ("j2-0", 300), ("j3-0", 100), ("j4-0", 50)] {
            make(&jobs, name, age);
        }
        // j1-0 is the oldest but still runs.
        let running: HashSet<String> = ["j1-0".to_string()].into();
        prune(work.path(), Retention { artifacts: 2, jobs: 1 }, &running);
        assert_eq!(names(&artifacts), ["b-mid", "c-new"]);
        assert_eq!(names(&jobs), ["j1-0", "j4-0"]);
        // A use makes an old binary the newest.
        make(&artifacts, "d-newer", 5);
        touch(&artifacts.join("b-mid"));
        prune(work.path(), Retention { artifacts: 2, jobs: 1 }, &running);
        assert_eq!(names(&artifacts), ["b-mid", "d-newer"]);
    }

    #[test]
    fn missing_directories_are_no_error() {
        let work = tempfile::tempdir().unwrap();
        prune(&work.path().join("nowhere"), Retention { artifacts: 0, jobs: 0 }, &HashSet::new());
    }
}
