//! Whether a disk may be written, and whether it is the disk a plan was made for.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::discover::{DiskInfo, Usage};
use crate::error::DiskError;

/// A reason a disk must not be written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum InUse {
    /// The disk or one of its partitions is mounted.
    Mounted {
        /// The device.
        device: String,
        /// Where.
        mountpoint: String,
    },
    /// The disk or one of its partitions is active swap.
    ActiveSwap {
        /// The device.
        device: String,
    },
    /// Another device is built on it: an open LUKS mapping, md or dm.
    Holders {
        /// The device.
        device: String,
        /// The kernel names of the holders.
        holders: Vec<String>,
    },
    /// It belongs to a ZFS pool that is imported.
    ImportedPool {
        /// The device.
        device: String,
        /// The pool.
        pool: String,
    },
    /// It is a device of a mounted btrfs that spans several (the mount names another of them).
    BtrfsDevice {
        /// The device.
        device: String,
        /// The filesystem's UUID.
        filesystem: String,
    },
    /// It is another name of storage that is in use under its other name: a loop device over the same
    /// file as one in use, over a disk in use (or one of its partitions), or such a disk.
    SameStorage {
        /// The device.
        device: String,
        /// The other name.
        other: String,
        /// Why the other name is in use.
        reasons: Vec<String>,
    },
    /// What it (or one of its partitions) holds could not be read: it is never taken for blank.
    Unreadable {
        /// The device.
        device: String,
        /// Why.
        why: String,
    },
    /// It is read-only.
    ReadOnly,
    /// It holds the running system.
    RunningSystem {
        /// The device.
        device: String,
        /// What of the running system it holds.
        what: String,
    },
}

impl fmt::Display for InUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InUse::Mounted { device, mountpoint } => write!(f, "{device} is mounted at {mountpoint}"),
            InUse::ActiveSwap { device } => write!(f, "{device} is active swap"),
            InUse::Holders { device, holders } => write!(f, "{device} is held by {}", holders.join(", ")),
            InUse::ImportedPool { device, pool } => write!(f, "{device} belongs to the imported ZFS pool {pool}"),
            InUse::BtrfsDevice { device, filesystem } => {
                write!(f, "{device} is a device of the mounted btrfs {filesystem}")
            }
            InUse::SameStorage { device, other, reasons } => {
                write!(f, "{device} is {other} under another name, and {}", reasons.join("; "))
            }
            InUse::Unreadable { device, why } => write!(f, "what {device} holds cannot be read ({why})"),
            InUse::ReadOnly => write!(f, "the disk is read-only"),
            InUse::RunningSystem { device, what } => write!(f, "{device} holds the running system ({what})"),
        }
    }
}

/// Every reason the disk must not be written.
pub(crate) fn reasons(disk: &DiskInfo, usage: &Usage) -> Vec<InUse> {
    let mut reasons = Vec::new();
    if disk.read_only {
        reasons.push(InUse::ReadOnly);
    }
    let whole =
        std::iter::once((&disk.path, &disk.mountpoints, disk.swap, &disk.holders, &disk.signatures, disk.devno));
    let parts = disk.partitions.iter().map(|p| (&p.path, &p.mountpoints, p.swap, &p.holders, &p.signatures, p.devno));
    for (device, mountpoints, swap, holders, signatures, devno) in whole.chain(parts) {
        if let Some(what) = usage.system_devices.get(&devno) {
            reasons.push(InUse::RunningSystem { device: device.clone(), what: format!("mounted at {what}") });
        }
        for mountpoint in mountpoints {
            reasons.push(InUse::Mounted { device: device.clone(), mountpoint: mountpoint.clone() });
        }
        if swap {
            reasons.push(InUse::ActiveSwap { device: device.clone() });
        }
        if !holders.is_empty() {
            reasons.push(InUse::Holders { device: device.clone(), holders: holders.clone() });
        }
        if let Some(filesystem) = usage.btrfs_devices.get(&devno) {
            if mountpoints.is_empty() {
                reasons.push(InUse::BtrfsDevice { device: device.clone(), filesystem: filesystem.clone() });
            }
        }
        for pool in signatures.iter().filter_map(|s| s.zfs_pool()) {
            if usage.imported_pools.iter().any(|p| p == pool) {
                reasons.push(InUse::ImportedPool { device: device.clone(), pool: pool.to_string() });
            }
        }
    }
    reasons
}

/// Refuses a disk that is in use, listing every reason.
pub fn ensure_free(disk: &DiskInfo) -> Result<(), DiskError> {
    if disk.in_use.is_empty() {
        Ok(())
    } else {
        Err(DiskError::InUse {
            device: disk.path.clone(),
            reasons: disk.in_use.iter().map(ToString::to_string).collect(),
        })
    }
}

/// Refuses a disk whose identity differs from what the plan recorded: size, logical sector size, serial
/// and WWN, each compared where the plan has it.
pub fn check_identity(name: &str, planned: &layouts::Disk, found: &DiskInfo) -> Result<(), DiskError> {
    let mismatch = |field: &'static str, want: String, have: String| DiskError::IdentityMismatch {
        disk: name.to_string(),
        device: planned.device.clone(),
        field,
        planned: want,
        found: have,
    };
    if let Some(size) = planned.size {
        if size != found.size {
            return Err(mismatch("size", size.to_string(), found.size.to_string()));
        }
    }
    if planned.logical_sector_size != found.logical_sector_size {
        return Err(mismatch(
            "logical sector size",
            planned.logical_sector_size.to_string(),
            found.logical_sector_size.to_string(),
        ));
    }
    for (field, want, have) in
        [("serial", &planned.identity.serial, &found.serial), ("wwn", &planned.identity.wwn, &found.wwn)]
    {
        if let Some(want) = want {
            if Some(want) != have.as_ref() {
                return Err(mismatch(field, want.clone(), have.clone().unwrap_or_else(|| "(none)".to_string())));
            }
        }
    }
    Ok(())
}
