//! Names that checkpoints carry, and files created on their behalf.
//!
//! A checkpoint or savepoint names its files: `_metadata` names the state
//! file of each subtask and the shared files it uses, a keyed snapshot names
//! its change files and RocksDB files. A restore joins those names onto a
//! directory, so a crafted or damaged checkpoint could otherwise reach any
//! file (`/etc/passwd`, `../../x`). Every such name must be one normal path
//! component ([`check_file_name`]), and every file a restore or a
//! checkpoint creates is created new, without following a symbolic link
//! ([`create_new`]), so that nothing planted at its name is overwritten.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Why `name` is not a single normal path component, if it is not.
fn problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.contains('\0') {
        return Some("it contains a NUL byte");
    }
    if name.starts_with('/') {
        return Some("it is an absolute path");
    }
    if name.contains('/') {
        return Some("it contains '/'");
    }
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(c)), None) if c == name => None,
        _ => Some("it is '.' or '..'"),
    }
}

/// Checks that `name`, read from the file `from`, is one normal path
/// component: not empty, not absolute, without `/` or NUL, not `.` or
/// `..`. Returns it, or [`Error::UnsafeName`] naming `from` and `name`.
pub fn check_file_name<'a>(name: &'a str, from: &Path) -> Result<&'a str> {
    match problem(name) {
        None => Ok(name),
        Some(reason) => Err(Error::UnsafeName { file: from.to_path_buf(), name: name.to_string(), reason }),
    }
}

/// `dir` joined with `name` once [`check_file_name`] accepts `name`.
pub fn join_checked(dir: &Path, name: &str, from: &Path) -> Result<PathBuf> {
    Ok(dir.join(check_file_name(name, from)?))
}

/// Creates `path` for writing (and reading back); fails if anything (a file, a symbolic link,
/// even a dangling one) is already there (`O_CREAT|O_EXCL|O_NOFOLLOW`).
pub fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| Error::Storage { action: "create", path: path.to_path_buf(), source })
}

/// The temporary name `path` is written under before it is renamed into
/// place: the whole file name with `.inprogress` appended, so that names
/// that differ only after a dot (`op.a-0`, `op.a-1`) keep distinct
/// temporary files.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".inprogress");
    path.with_file_name(name)
}

/// Creates the temporary file of `path` ([`temporary_path`]) anew: a
/// leftover of a crashed attempt is removed first (the link itself, never
/// what it points to).
pub fn create_temporary(path: &Path) -> Result<(File, PathBuf)> {
    let tmp = temporary_path(path);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(Error::Storage { action: "remove", path: tmp, source }),
    }
    Ok((create_new(&tmp)?, tmp))
}

/// Checks a path given as text (a savepoint path of a request, a
/// command line or a configuration): it must not be empty nor hold control
/// characters (a newline would start another `key=value` line of the
/// settings a job is started with).
pub fn check_path_text(path: &str) -> Result<()> {
    let refused = |reason: &str| Err(Error::SavepointPath { path: path.to_string(), reason: reason.to_string() });
    if path.trim().is_empty() {
        return refused("it is empty");
    }
    if path.chars().any(char::is_control) {
        return refused("it contains control characters (a newline, a tab, ...)");
    }
    Ok(())
}

/// The directory a savepoint requested at `requested` is written under.
/// With `allowed` (`state.savepoints.dir`) set, a relative `requested` is
/// taken below it and an absolute one must lie below it; `..` is refused
/// either way. Without it, any path without control characters is used as
/// given.
pub fn savepoint_target(requested: &str, allowed: Option<&Path>) -> Result<PathBuf> {
    check_path_text(requested)?;
    let path = Path::new(requested);
    let Some(root) = allowed else { return Ok(path.to_path_buf()) };
    let refused = |reason: String| Error::SavepointPath { path: requested.to_string(), reason };
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(refused("it contains '..'".into()));
    }
    let target = if path.is_absolute() { path.to_path_buf() } else { root.join(path) };
    if !target.starts_with(root) {
        return Err(refused(format!("savepoints may only be written below state.savepoints.dir '{}'", root.display())));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn only_single_normal_components_are_file_names() {
        let from = Path::new("chk-1/_metadata");
        for good in ["op-0", "a.b.c", "..x", "x..", "-", "000009.sst", "é"] {
            assert_eq!(check_file_name(good, from).unwrap(), good);
        }
        for bad in ["", "/tmp/x", "../x", "..", ".", "a/b", "a/", "x\0y", "/", "./x"] {
            let e = check_file_name(bad, from).unwrap_err().to_string();
            assert!(e.contains("chk-1/_metadata") && e.contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[test]
    fn savepoint_paths_stay_below_the_configured_directory_and_hold_no_newline() {
        let root = Path::new("/data/savepoints");
        assert_eq!(savepoint_target("/anywhere", None).unwrap(), Path::new("/anywhere"));
        assert_eq!(savepoint_target("/data/savepoints/a", Some(root)).unwrap(), root.join("a"));
        assert_eq!(savepoint_target("nightly", Some(root)).unwrap(), root.join("nightly"));
        for bad in ["/etc", "/data/savepoints/../x", "../x", "/data/savepointsX"] {
            let e = savepoint_target(bad, Some(root)).unwrap_err().to_string();
            assert!(e.contains("refused"), "{e}");
        }
        for bad in ["/tmp/x\nexecution.savepoint.path=/y", "/tmp/\r", "", "  "] {
            assert!(savepoint_target(bad, None).is_err(), "{bad:?}");
            assert!(check_path_text(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn created_files_never_follow_or_replace_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(create_new(&link).is_err(), "a symbolic link is not followed");
        assert!(create_new(&victim).is_err(), "an existing file is not replaced");
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(create_new(&dangling).is_err());
        assert!(!dir.path().join("nowhere").exists());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        // A leftover temporary that is a link is removed, not written through.
        let target = dir.path().join("out");
        std::os::unix::fs::symlink(&victim, temporary_path(&target)).unwrap();
        let (_, tmp) = create_temporary(&target).unwrap();
        assert_eq!(tmp, dir.path().join("out.inprogress"));
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_ne!(temporary_path(Path::new("d/op.a-0")), temporary_path(Path::new("d/op.a-1")));
    }
}
