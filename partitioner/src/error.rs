//! Errors of the disk layer; each names the device it is about.

use std::path::PathBuf;

/// Something went wrong on a disk.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A file under /sys, /proc or /dev could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// What was read.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A device could not be opened, read, written or controlled.
    #[error("{device}: {action}: {source}")]
    Device {
        /// The device.
        device: String,
        /// What was being done.
        action: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// libblkid failed.
    #[error("{device}: probing signatures: {message}")]
    Blkid {
        /// The device.
        device: String,
        /// libblkid's message.
        message: String,
    },
    /// The partition table could not be built or written.
    #[error("{device}: partition table: {message}")]
    Table {
        /// The device.
        device: String,
        /// What went wrong.
        message: String,
    },
    /// A path names no whole disk on this machine.
    #[error("{path}: {reason}")]
    NotADisk {
        /// The path given.
        path: String,
        /// Why it is not one.
        reason: String,
    },
    /// The disk is not the one the plan was made for.
    #[error(
        "disk {disk} ({device}) is not the disk the plan was made for: {field} was {planned:?} when \
        planned, now {found:?}"
    )]
    IdentityMismatch {
        /// Plan name of the disk.
        disk: String,
        /// Its device path.
        device: String,
        /// What differs (size, serial, wwn, logical sector size).
        field: &'static str,
        /// What the plan recorded.
        planned: String,
        /// What the disk reports now.
        found: String,
    },
    /// The disk is in use and must not be written.
    #[error("disk {device} is in use: {}", reasons.join("; "))]
    InUse {
        /// The disk.
        device: String,
        /// Every reason, for people.
        reasons: Vec<String>,
    },
    /// Device nodes (of partitions, of logical volumes) did not appear.
    #[error("{device}: device nodes did not appear within {seconds} s: {}", missing.join(", "))]
    PartitionsMissing {
        /// The disk.
        device: String,
        /// How long was waited.
        seconds: u64,
        /// The nodes still missing.
        missing: Vec<String>,
    },
}

impl DiskError {
    pub(crate) fn device(device: &str, action: impl Into<String>, source: std::io::Error) -> Self {
        DiskError::Device { device: device.to_string(), action: action.into(), source }
    }
}
