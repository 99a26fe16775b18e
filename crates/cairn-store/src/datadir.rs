//! A daemon's data directory: an exclusive lock (one daemon per directory) and an identity file
//! naming the cluster (fsid) and the daemon, so a directory of another cluster is refused.

use cairn_types::{errno, Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const IDENTITY_FILE: &str = "identity.json";
const LOCK_FILE: &str = "lock";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub version: u8,
    pub fsid: String,
    /// `osd.3`, `mon.a`.
    pub name: String,
}

/// An opened data directory; the lock is held until this is dropped.
#[derive(Debug)]
pub struct DataDir {
    pub path: PathBuf,
    pub identity: Identity,
    _lock: File,
}

impl DataDir {
    /// Creates `path` if needed, takes its lock, and checks (or, on first use, writes) its
    /// identity. Refuses with EBUSY when another daemon holds the lock, and with EINVAL when the
    /// directory belongs to another cluster or daemon.
    pub fn open(path: &Path, fsid: &str, name: &str) -> Result<DataDir> {
        std::fs::create_dir_all(path).map_err(|e| ctx(e, "creating", path))?;
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ctx(e, "opening", &lock_path))?;
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(Error::new(
                errno::EBUSY,
                format!(
                    "data directory {} is in use by another daemon (lock {} held)",
                    path.display(),
                    lock_path.display()
                ),
            ));
        }
        let id_path = path.join(IDENTITY_FILE);
        let identity = match std::fs::read(&id_path) {
            Ok(bytes) => {
                let found: Identity = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::einval(format!("{} is corrupt: {e}", id_path.display())))?;
                if found.fsid != fsid {
                    return Err(Error::einval(format!(
                        "data directory {} belongs to cluster {}, not {fsid}",
                        path.display(),
                        found.fsid
                    )));
                }
                if found.name != name {
                    return Err(Error::einval(format!(
                        "data directory {} belongs to {}, not {name}",
                        path.display(),
                        found.name
                    )));
                }
                found
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Identity { version: 1, fsid: fsid.into(), name: name.into() };
                write_durably(&id_path, &serde_json::to_vec_pretty(&identity).unwrap_or_default())?;
                identity
            }
            Err(e) => return Err(ctx(e, "reading", &id_path)),
        };
        Ok(DataDir { path: path.to_path_buf(), identity, _lock: lock })
    }
}

/// Writes a small file atomically and durably (temp file, fsync, rename, fsync dir).
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| ctx(e, "creating", &tmp))?;
    f.write_all(bytes).map_err(|e| ctx(e, "writing", &tmp))?;
    f.sync_all().map_err(|e| ctx(e, "syncing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| ctx(e, "renaming", path))?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ctx(e, "syncing", dir))?;
    }
    Ok(())
}

fn ctx(e: std::io::Error, what: &str, path: &Path) -> Error {
    let mut err = Error::from(e);
    err.message = format!("{what} {}: {}", path.display(), err.message);
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_identity() {
        let dir = tempfile::tempdir().unwrap();
        let a = DataDir::open(dir.path(), "fsid-1", "osd.0").unwrap();
        let busy = DataDir::open(dir.path(), "fsid-1", "osd.0").unwrap_err();
        assert_eq!(busy.errno, errno::EBUSY);
        drop(a);
        let other = DataDir::open(dir.path(), "fsid-2", "osd.0").unwrap_err();
        assert_eq!(other.errno, errno::EINVAL);
        assert!(other.message.contains("fsid-1"), "{}", other.message);
        DataDir::open(dir.path(), "fsid-1", "osd.0").unwrap();
    }
}
