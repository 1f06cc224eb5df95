//! The data directory of a single-node mediator (`data_dir`, `./data` by default): the embedded
//! store's files and, when no `master_secret` is configured, the one generated on the first
//! start, so that a restarted mediator has the same keys (its invitation, routing key and every
//! connection keep working).
//!
//! The directory is created owner-only (0700) and the secret file is written owner-only (0600),
//! completely or not at all (a temporary file, synced, then renamed). A configured secret always
//! wins; the file is then neither read nor written.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use didcomm_envelope::KeyPair;
use tracing::{info, warn};

use crate::config::Secret;

/// The generated master secret's file in the data directory.
pub const SECRET_FILE: &str = "master_secret";

/// The data directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Creating or reading the directory or a file in it failed.
    #[error("data directory {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The path exists and is not a directory.
    #[error("data directory {0} is not a directory")]
    NotADirectory(PathBuf),
    /// The directory holds a store but not the secret its keys came from: a new secret would
    /// make every stored connection unusable and change the invitation and routing key.
    #[error(
        "{0} is missing but the data directory holds a store made with it: restore the file from \
         a backup, or configure the master_secret it was made with"
    )]
    SecretMissing(PathBuf),
    /// The kept secret is not one this mediator wrote (too short, or not text).
    #[error(
        "{0} does not hold a master secret (at least 32 characters); remove it only if no client \
         depends on this mediator's keys, or configure master_secret"
    )]
    BadSecret(PathBuf),
    /// Randomness for a new secret was not available.
    #[error("no randomness for a new master secret")]
    Random,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A data directory, created if it was not there.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// Opens `path`, creating it (and its parents) owner-only when missing. An existing
    /// directory that others may read is used, with a warning.
    pub fn create(path: &Path) -> Result<Self, DataDirError> {
        match fs::metadata(path) {
            Ok(meta) if !meta.is_dir() => return Err(DataDirError::NotADirectory(path.into())),
            Ok(meta) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    if meta.permissions().mode() & 0o077 != 0 {
                        warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "the data directory is open to other users (chmod 700 it)");
                    }
                }
                #[cfg(not(unix))]
                let _ = meta;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut builder = fs::DirBuilder::new();
                builder.recursive(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::DirBuilderExt;
                    builder.mode(0o700);
                }
                builder.create(path).map_err(io(path))?;
                info!(path = %path.display(), "data directory created");
            }
            Err(err) => return Err(io(path)(err)),
        }
        Ok(Self { path: path.into() })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The master secret kept here, generated and kept when there is none and `may_generate`
    /// (the directory holds no data made with another one); `true` when it was generated now.
    pub fn master_secret(&self, may_generate: bool) -> Result<(Secret, bool), DataDirError> {
        let file = self.path.join(SECRET_FILE);
        match fs::read(&file) {
            Ok(bytes) => {
                let text =
                    String::from_utf8(bytes).map_err(|_| DataDirError::BadSecret(file.clone()))?;
                let secret = text.trim();
                if secret.len() < 32 {
                    return Err(DataDirError::BadSecret(file));
                }
                Ok((Secret::new(secret), false))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !may_generate => {
                Err(DataDirError::SecretMissing(file))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let secret = random_secret()?;
                write_new(&self.path, &file, secret.as_bytes())?;
                Ok((Secret::new(secret), true))
            }
            Err(err) => Err(io(&file)(err)),
        }
    }
}

impl DataDir {
    /// Keeps `secret` as this directory's master secret (a directory filled by `mediator copy`
    /// from a cluster, which runs with a configured secret). Fails if one is kept already.
    pub fn keep_master_secret(&self, secret: &Secret) -> Result<(), DataDirError> {
        let file = self.path.join(SECRET_FILE);
        write_new(&self.path, &file, secret.expose())
    }
}

/// 32 random bytes as 64 hex digits.
fn random_secret() -> Result<String, DataDirError> {
    let key = KeyPair::generate().map_err(|_| DataDirError::Random)?;
    Ok(key.secret_bytes()[..32]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Writes `file` (owner-only) whole or not at all: a temporary file beside it, synced, renamed
/// over it, the directory synced. A file that appeared meanwhile (another process) is an error
/// rather than overwritten.
fn write_new(dir: &Path, file: &Path, contents: &[u8]) -> Result<(), DataDirError> {
    let temporary = dir.join(format!(".{SECRET_FILE}.{}", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options.open(&temporary).map_err(io(&temporary))?;
    out.write_all(contents)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.sync_all())
        .map_err(io(&temporary))?;
    drop(out);
    // hard_link fails when the name is taken: never replaces a secret another process kept.
    let linked = fs::hard_link(&temporary, file).map_err(io(file));
    let _ = fs::remove_file(&temporary);
    linked?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_secret_is_generated_once_kept_owner_only_and_read_back() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("nested/data");
        let dir = DataDir::create(&path).unwrap();
        let (first, generated) = dir.master_secret(true).unwrap();
        assert!(generated);
        assert_eq!(first.expose().len(), 64);
        let (again, generated) = DataDir::create(&path)
            .unwrap()
            .master_secret(false)
            .unwrap();
        assert!(!generated);
        assert_eq!(first.expose(), again.expose());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o700);
            assert_eq!(mode(&path.join(SECRET_FILE)), 0o600);
        }
        // Only the secret is left (no temporary file).
        let names: Vec<_> = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [SECRET_FILE]);
    }

    #[test]
    fn a_damaged_secret_or_a_file_in_the_way_is_a_clear_error() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join(SECRET_FILE), "short").unwrap();
        let err = DataDir::create(root.path())
            .unwrap()
            .master_secret(true)
            .unwrap_err();
        assert!(matches!(err, DataDirError::BadSecret(_)), "{err}");
        // No secret kept, and data made with one: refused rather than a new identity.
        let other = tempfile::tempdir().unwrap();
        let err = DataDir::create(other.path())
            .unwrap()
            .master_secret(false)
            .unwrap_err();
        assert!(matches!(err, DataDirError::SecretMissing(_)), "{err}");
        let file = root.path().join("plain-file");
        fs::write(&file, "x").unwrap();
        let err = DataDir::create(&file).unwrap_err();
        assert!(matches!(err, DataDirError::NotADirectory(_)), "{err}");
    }
}
