//! nix-dabei's disk layer: finds the machine's disks, says which are unsafe to touch and why, wipes them
//! and writes GPT partition tables.
//!
//! It works from sysfs, /proc and libblkid alone, adds udev's properties when udevd runs, and talks to
//! the kernel through ioctls. It runs no external programs.

#![deny(missing_docs)]

pub mod adopt;
pub mod discover;
pub mod error;
pub mod fat;
pub mod gpt_read;
pub mod hardware;
mod ioctl;
pub mod mbr;
pub mod probe;
pub mod safety;
pub mod select;
pub mod table;
pub mod xfs;

pub use discover::{discover, discover_for, discover_for_with, find_disk, DiskInfo, PartitionInfo, SignatureReader};
pub use error::DiskError;
pub use probe::{probe_signatures, wipe_device, wipe_ranges, Signature};
pub use safety::{check_identity, ensure_free, InUse};
pub use table::{read_partition_table, read_table_state, write_partition_table, KernelPartition, TableState};

/// Wipes a whole disk: every signature on each of its current partitions, then on the disk itself
/// (partition tables included, both copies), and discards every block when `discard` is set and the
/// device supports it.
///
/// `planned` are the `(offset, size)` byte ranges where the new table will put partitions: they are wiped
/// too, whatever the current table says.
pub fn wipe_disk(disk: &DiskInfo, discard: bool, planned: &[(u64, u64)]) -> Result<(), DiskError> {
    for partition in &disk.partitions {
        wipe_device(std::path::Path::new(&partition.path))?;
    }
    wipe_device(std::path::Path::new(&disk.path))?;
    probe::wipe_ranges(std::path::Path::new(&disk.path), planned)?;
    if discard && disk.discard {
        probe::discard_device(std::path::Path::new(&disk.path))?;
    }
    Ok(())
}
