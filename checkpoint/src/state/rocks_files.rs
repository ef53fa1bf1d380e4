//! The files of stored RocksDB checkpoints, and how they are verified.
//!
//! RocksDB checks its table files itself (block checksums, the footer, the
//! sizes its MANIFEST records), but not its MANIFEST or OPTIONS files: a cut
//! MANIFEST is read up to its last whole record, silently dropping the table
//! files it named last. So every file Sluice stores for a RocksDB checkpoint
//! carries its size and XXH64 checksum in its stored name
//! (`<name>.sz<size>.xx<checksum in hex>`), and a restore checks each file
//! against them before RocksDB opens it. Names written by older versions
//! (without the suffix) are restored with RocksDB's own checks only.

use crate::error::{Error, Result};
use crate::names::create_temporary;
use std::hash::Hasher;
use std::io::Read;
use std::path::Path;

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Storage { action, path: path.to_path_buf(), source }
}

/// A file's size and XXH64 checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digest {
    pub(crate) size: u64,
    pub(crate) checksum: u64,
}

/// The size and checksum of the file at `path`, read once.
pub(crate) fn digest_of(path: &Path) -> std::io::Result<Digest> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = twox_hash::XxHash64::with_seed(0);
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.write(buf.get(..n).unwrap_or_default());
        size += n as u64;
    }
    Ok(Digest { size, checksum: hasher.finish() })
}

/// `name` with `digest` appended.
fn with_digest(name: &str, digest: Digest) -> String {
    format!("{name}.sz{}.xx{:016x}", digest.size, digest.checksum)
}

/// The digest a stored name carries, if it carries one.
pub(crate) fn digest_in(name: &str) -> Option<Digest> {
    let (rest, hex) = name.rsplit_once(".xx")?;
    let (_, size) = rest.rsplit_once(".sz")?;
    if hex.len() != 16 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Digest { size: size.parse().ok()?, checksum: u64::from_str_radix(hex, 16).ok()? })
}

/// Checks the file at `path` against the digest its name carries (if any):
/// a missing, cut or changed file is an error naming it.
pub(crate) fn verify(path: &Path, instance: &str) -> Result<()> {
    let Some(expected) = path.file_name().and_then(|n| n.to_str()).and_then(digest_in) else {
        return Ok(());
    };
    let damaged = |reason: String| Error::MissingState {
        checkpoint: 0,
        path: path.to_path_buf(),
        reason: format!("RocksDB file of instance {instance} {reason}"),
    };
    let actual = digest_of(path).map_err(|e| damaged(format!("cannot be read: {e}")))?;
    if actual.size != expected.size {
        return Err(damaged(format!(
            "is damaged or truncated: {} bytes, its name says {}",
            actual.size, expected.size
        )));
    }
    if actual.checksum != expected.checksum {
        return Err(damaged("is damaged: checksum mismatch".into()));
    }
    Ok(())
}

/// Stores a file of a RocksDB checkpoint in `dir` under `name` with its
/// digest appended ([`digest_in`] reads it back); returns the stored name.
/// A source whose own name carries a digest is checked against it first.
/// Such files never change (SST files are immutable; the others are the
/// checkpoint's own copies), so on the same file system a hard link stores
/// one without copying a byte, as RocksDB's own checkpoints do; otherwise
/// it is copied (temporary file created new, synced, renamed). The caller
/// syncs `dir`.
pub(crate) fn store_checked(from: &Path, dir: &Path, name: &str) -> Result<String> {
    let digest = digest_of(from).map_err(io_err("read", from))?;
    if let Some(expected) = from.file_name().and_then(|n| n.to_str()).and_then(digest_in) {
        if expected != digest {
            return Err(Error::MissingState {
                checkpoint: 0,
                path: from.to_path_buf(),
                reason: "stored RocksDB file is damaged (size or checksum differs from its name)".into(),
            });
        }
    }
    let stored = with_digest(name, digest);
    link_or_copy(from, &dir.join(&stored))?;
    Ok(stored)
}

/// Stores `from` at `to`: a hard link where possible, else a copy
/// (temporary file created new, synced, renamed). The caller syncs the
/// directory of `to`.
pub(crate) fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        crate::storage::create_dir_durable(parent)?;
    }
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let mut source = std::fs::File::open(from).map_err(io_err("open", from))?;
    let (mut target, tmp) = create_temporary(to)?;
    std::io::copy(&mut source, &mut target).map_err(io_err("copy", from))?;
    target.sync_all().map_err(io_err("sync", &tmp))?;
    std::fs::rename(&tmp, to).map_err(io_err("rename", to))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn stored_names_carry_a_digest_that_a_restore_checks() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("MANIFEST-000005");
        std::fs::write(&from, b"manifest records").unwrap();
        let stored = store_checked(&from, &dir.path().join("chk"), "op-0.rocks.MANIFEST-000005").unwrap();
        assert!(stored.starts_with("op-0.rocks.MANIFEST-000005.sz16.xx"), "{stored}");
        assert_eq!(digest_in(&stored).unwrap().size, 16);
        let path = dir.path().join("chk").join(&stored);
        verify(&path, "i").unwrap();
        for name in ["000012.sst", "x.sz1.xx12", "x.szA.xx0123456789abcdef", "CURRENT"] {
            assert_eq!(digest_in(name), None, "{name}");
        }
        // A copy of a stored file is checked against its name first.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"manifest record").unwrap();
        let e = verify(&path, "i").unwrap_err().to_string();
        assert!(e.contains(&stored) && e.contains("15 bytes, its name says 16"), "{e}");
        assert!(store_checked(&path, dir.path(), "copy").is_err());
        std::fs::write(&path, b"manifest recordX").unwrap();
        assert!(verify(&path, "i").unwrap_err().to_string().contains("checksum"));
    }
}
