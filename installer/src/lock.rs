//! Exclusive holds for the length of a run: one run per disk, and one per state directory. A second run
//! is refused, naming the process that holds what it needs.
//!
//! The holds are BSD locks on files under /run/lock/nix-dabei (one per disk, by what its bytes are:
//! `DiskInfo::storage`, so that two names of one disk share a lock) and in
//! the state directory, not on the disks themselves: udev does not process a disk's events while it is
//! locked, and the executor waits for udev's links after writing a partition table.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Where the per-disk lock files live.
pub const DISK_LOCK_DIR: &str = "/run/lock/nix-dabei";

/// Why a hold could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds it.
    #[error("{what} is in use by another nix-dabei run (PID {holder}); let it finish, or stop it, and run again")]
    Busy {
        /// What was to be held.
        what: String,
        /// The holder's process id, as it wrote it.
        holder: String,
    },
    /// The lock file could not be used.
    #[error("cannot lock {what} ({path}): {source}")]
    Io {
        /// What was to be held.
        what: String,
        /// The lock file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A hold, released when dropped.
pub struct Hold(#[allow(dead_code)] Box<dyn Send + Sync>);

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hold")
    }
}

impl Hold {
    /// A hold that runs `release` when dropped (for holds kept in memory, as the simulated system's).
    pub fn on_release(release: impl FnMut() + Send + Sync + 'static) -> Self {
        struct Release<F: FnMut()>(F);
        impl<F: FnMut()> Drop for Release<F> {
            fn drop(&mut self) {
                (self.0)();
            }
        }
        Hold(Box::new(Release(release)))
    }
}

/// Takes an exclusive lock on `path` (created if needed) and writes this process's id into it.
pub fn exclusive(path: &Path, what: &str) -> Result<Hold, LockError> {
    let io =
        |source: std::io::Error| LockError::Io { what: what.to_string(), path: path.display().to_string(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io)?;
    let mut held = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(held) => held,
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = if holder.trim().is_empty() { "unknown".to_string() } else { holder.trim().to_string() };
            return Err(LockError::Busy { what: what.to_string(), holder });
        }
        Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
    };
    let file: &mut File = &mut held;
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    Ok(Hold(Box::new(held)))
}
