//! Uploaded job binaries (Flink's jars): stored under the work directory by
//! content hash, made executable, and kept in memory to be sent to the
//! TaskManagers that start the job's processes.

use super::Cluster;
use sluice::error::{Error, Result};
use std::path::PathBuf;
use std::sync::Arc;

/// An uploaded job binary.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Content hash (hex).
    pub id: String,
    /// File name.
    pub name: String,
    /// Where it is stored.
    pub path: PathBuf,
    /// Its bytes, sent to TaskManagers.
    pub bytes: Arc<Vec<u8>>,
    /// Upload time, ms since the epoch.
    pub uploaded: i64,
}

impl Cluster {
    /// Stores an uploaded binary; returns it.
    pub fn add_artifact(&mut self, name: &str, bytes: Vec<u8>) -> Result<Artifact> {
        let name = std::path::Path::new(name)
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty() && !n.starts_with('.'))
            .ok_or_else(|| Error::user(format!("'{name}' is not a usable file name")))?
            .to_string();
        let id = format!("{:016x}", sluice_checkpoint::key_group::stable_hash(&(bytes.as_slice(), name.as_str())));
        let dir = self.settings.work_dir.join("artifacts").join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("cannot create '{}'", dir.display()), e))?;
        let path = dir.join(&name);
        std::fs::write(&path, &bytes).map_err(|e| Error::io(format!("cannot write '{}'", path.display()), e))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| Error::io(format!("cannot make '{}' executable", path.display()), e))?;
        }
        let uploaded = sluice_checkpoint::clock::now_ms();
        let a = Artifact { id: id.clone(), name, path, bytes: Arc::new(bytes), uploaded };
        self.artifacts.insert(id, a.clone());
        Ok(a)
    }

    /// The uploaded binary `id`.
    pub fn artifact(&self, id: &str) -> Option<&Artifact> {
        self.artifacts.get(id)
    }
}
