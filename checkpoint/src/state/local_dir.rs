//! The base directory of RocksDB's working files
//! (`state.backend.rocksdb.localdir`, else `sluice-rocksdb-<uid>` in the
//! system temp directory): created private (0700) when missing, and refused
//! when it belongs to another user or others may write into it — such a
//! user could swap an instance's directory for a link and read or plant
//! state files.

use crate::error::{Error, Result};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The checked base directory: `configured`, or the per-user default.
pub(crate) fn private_base(configured: Option<&Path>) -> Result<PathBuf> {
    let uid = own_uid()?;
    let base =
        configured.map(Path::to_path_buf).unwrap_or_else(|| std::env::temp_dir().join(format!("sluice-rocksdb-{uid}")));
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&base) {
        Ok(()) => {}
        Err(source) => return Err(Error::Storage { action: "create", path: base, source }),
    }
    check(&base, uid)?;
    Ok(base)
}

fn check(dir: &Path, uid: u32) -> Result<()> {
    let unsafe_dir = |reason: String| Error::UnsafeDirectory { path: dir.to_path_buf(), reason };
    // Not following a link: the directory itself must be ours.
    let meta = std::fs::symlink_metadata(dir).map_err(|source| Error::Storage {
        action: "inspect",
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(unsafe_dir("is not a directory (a link, or a file)".into()));
    }
    if meta.uid() != uid {
        return Err(unsafe_dir(format!("belongs to uid {}, not to this user (uid {uid})", meta.uid())));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(unsafe_dir(format!("is writable by other users (mode {mode:o})")));
    }
    Ok(())
}

/// This process's effective user id: the owner of `/proc/self`.
fn own_uid() -> Result<u32> {
    std::fs::metadata("/proc/self").map(|m| m.uid()).map_err(|source| Error::Storage {
        action: "inspect",
        path: PathBuf::from("/proc/self"),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_made_private_and_a_shared_or_linked_one_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("a/b");
        assert_eq!(private_base(Some(&fresh)).unwrap(), fresh);
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(private_base(Some(&fresh)).is_ok(), "an existing private directory is fine");

        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_base(Some(&shared)).unwrap_err().to_string();
        assert!(e.contains("writable by other users") && e.contains("state.backend.rocksdb.localdir"), "{e}");

        let link = root.path().join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        let e = private_base(Some(&link)).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");

        let theirs = check(&fresh, own_uid().unwrap() + 1).unwrap_err().to_string();
        assert!(theirs.contains("not to this user"), "{theirs}");
    }
}
