//! Uploaded job binaries (Flink's jars): stored under the work directory
//! under a random id and made executable. TaskManagers fetch a job's binary
//! by its SHA-256 when they start the job's processes (streamed from the
//! file, not held in memory) and check it. `DELETE /jars/{id}` removes one.

use super::Cluster;
use sluice::error::{Error, Result};
use std::path::PathBuf;

/// An uploaded job binary.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// A random id (hex): no one can guess the id of another's upload.
    pub id: String,
    /// SHA-256 of the content (hex): TaskManagers verify what they run.
    pub sha256: String,
    /// File name.
    pub name: String,
    /// Where it is stored.
    pub path: PathBuf,
    /// Its size in bytes (TaskManagers fetch it from `path`, by `sha256`).
    pub size: u64,
    /// Upload time, ms since the epoch.
    pub uploaded: i64,
}

impl Artifact {
    /// Stores an uploaded binary below `work_dir` (hashing and writing it:
    /// slow for a large binary, so not on the JobManager's event loop; see
    /// [`Cluster::insert_artifact`]).
    pub fn store(work_dir: &std::path::Path, name: &str, bytes: Vec<u8>) -> Result<Artifact> {
        let name = std::path::Path::new(name)
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty() && !n.starts_with('.'))
            .ok_or_else(|| Error::user(format!("'{name}' is not a usable file name")))?
            .to_string();
        let id = sluice::transport::random_hex(16)?;
        let sha256 = sluice::transport::sha256_hex(&bytes);
        let dir = work_dir.join("artifacts").join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("cannot create '{}'", dir.display()), e))?;
        let path = dir.join(&name);
        {
            use std::io::Write;
            // A fresh file in a fresh directory: never through a planted link.
            let mut f = crate::create_private_file(&path)?;
            f.write_all(&bytes)
                .and_then(|()| f.sync_all())
                .map_err(|e| Error::io(format!("cannot write '{}'", path.display()), e))?;
        }
        let uploaded = sluice_checkpoint::clock::now_ms();
        Ok(Artifact { id, sha256, name, path, size: bytes.len() as u64, uploaded })
    }
}

impl Cluster {
    /// Where uploaded binaries are stored (see [`Artifact::store`]).
    pub fn work_dir(&self) -> std::path::PathBuf {
        self.settings.work_dir.clone()
    }

    /// Lists a stored binary; past `web.upload.retained` uploads, deletes
    /// the oldest ones no unfinished job runs from.
    pub fn insert_artifact(&mut self, a: Artifact) {
        self.artifacts.insert(a.id.clone(), a);
        while self.artifacts.len() > self.settings.retained_uploads {
            let in_use =
                |a: &Artifact| self.jobs.values().any(|j| !j.status.is_terminal() && j.artifact.path == a.path);
            let oldest = self
                .artifacts
                .values()
                .filter(|a| !in_use(a))
                .min_by_key(|a| (a.uploaded, a.id.clone()))
                .map(|a| a.id.clone());
            let Some(id) = oldest else {
                tracing::warn!(
                    "{} uploaded binaries, more than web.upload.retained ({}), but unfinished jobs run from all of them",
                    self.artifacts.len(),
                    self.settings.retained_uploads
                );
                break;
            };
            tracing::info!("deleting the uploaded binary {id}: more than web.upload.retained uploads");
            let _ = self.remove_artifact(&id);
        }
    }

    /// Forgets the uploaded binary `id` and deletes its file (jobs started
    /// from it keep running).
    pub fn remove_artifact(&mut self, id: &str) -> Result<()> {
        let a = self.artifacts.remove(id).ok_or_else(|| Error::user(format!("no uploaded binary with id '{id}'")))?;
        if let Some(dir) = a.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    }

    /// Where the binary of `job` is, if `secret` is the job's and `sha256`
    /// its hash (a TaskManager fetching it).
    pub(crate) fn artifact_for(
        &self,
        job: sluice::ids::JobId,
        secret: &sluice::transport::JobSecret,
        sha256: &str,
    ) -> std::result::Result<PathBuf, String> {
        let entry = self.jobs.get(&job).ok_or_else(|| format!("no job {job}"))?;
        if !entry.secret.matches(secret) {
            return Err(format!("wrong secret for job {job}"));
        }
        if entry.artifact.sha256 != sha256 {
            return Err(format!("job {job} has no binary {sha256}"));
        }
        Ok(entry.artifact.path.clone())
    }

    /// The uploaded binary `id`.
    pub fn artifact(&self, id: &str) -> Option<&Artifact> {
        self.artifacts.get(id)
    }
}
