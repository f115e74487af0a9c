//! Signatures on a device, read and removed through libblkid.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use libblkid_rs::{BlkidProbe, BlkidProbeRet, BlkidSublks, BlkidSublksFlags};
use serde::{Deserialize, Serialize};

use crate::error::DiskError;
use crate::ioctl;

/// A signature libblkid recognised: a filesystem, LUKS header, ZFS label, swap, RAID superblock or
/// partition table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// libblkid's TYPE (ext4, vfat, crypto_LUKS, zfs_member, swap, linux_raid_member, gpt, ...).
    pub kind: String,
    /// What it is used for (filesystem, crypto, raid, other, partition_table).
    pub usage: Option<String>,
    /// Label; for a ZFS member, the pool name.
    pub label: Option<String>,
    /// UUID.
    pub uuid: Option<String>,
}

impl Signature {
    /// The pool a ZFS member belongs to.
    pub fn zfs_pool(&self) -> Option<&str> {
        (self.kind == "zfs_member").then_some(self.label.as_deref()).flatten()
    }
}

fn blkid_error(device: &Path, error: impl std::fmt::Display) -> DiskError {
    DiskError::Blkid { device: device.display().to_string(), message: error.to_string() }
}

fn superblock_flags() -> BlkidSublksFlags {
    BlkidSublksFlags::new(vec![
        BlkidSublks::Type,
        BlkidSublks::Label,
        BlkidSublks::Uuid,
        BlkidSublks::Usage,
        BlkidSublks::Magic,
        BlkidSublks::Badcsum,
    ])
}

/// Every signature on a device (opened read-only).
pub fn probe_signatures(device: &Path) -> Result<Vec<Signature>, DiskError> {
    let mut probe = BlkidProbe::new_from_filename(device).map_err(|e| blkid_error(device, e))?;
    probe.enable_superblocks(true).map_err(|e| blkid_error(device, e))?;
    probe.set_superblock_flags(superblock_flags()).map_err(|e| blkid_error(device, e))?;
    probe.enable_partitions(true).map_err(|e| blkid_error(device, e))?;
    let mut found = Vec::new();
    // do_probe walks every chain and every matching signature; an ambiguous device still lists each. An
    // error is an error: a device that cannot be read is never taken for a blank one.
    loop {
        match probe.do_probe() {
            Ok(BlkidProbeRet::Success) => {}
            Ok(BlkidProbeRet::Done) => break,
            Err(error) => return Err(blkid_error(device, error)),
        }
        let value = |key: &str| probe.lookup_value(key).ok().filter(|v| !v.is_empty());
        if let Some(kind) = value("TYPE") {
            found.push(Signature { kind, usage: value("USAGE"), label: value("LABEL"), uuid: value("UUID") });
        } else if let Some(table) = value("PTTYPE") {
            found.push(Signature {
                kind: table,
                usage: Some("partition_table".to_string()),
                label: None,
                uuid: value("PTUUID"),
            });
        }
    }
    found.dedup();
    Ok(found)
}

/// Bytes zeroed at both ends of every wiped device: the protective MBR and both GPT copies, and the four
/// ZFS labels (two in the first 512 KiB, two in the last), MD superblocks and LUKS headers' magic.
const END_ZONE: u64 = 1 << 20;

/// Removes every signature from a device: whatever libblkid recognises (filesystems, LUKS, ZFS, swap,
/// RAID), then both ends of the device, where partition tables and ZFS labels live.
pub fn wipe_device(device: &Path) -> Result<usize, DiskError> {
    let name = device.display().to_string();
    let file = open_for_wiping(device)?;
    let wiped = wipe_signatures(&file, device, 0, 0)?;
    zero_ends(&file, &name)?;
    file.sync_all().map_err(|e| DiskError::device(&name, "flush", e))?;
    Ok(wiped)
}

/// Removes every signature in each `(offset, size)` range of a device, and zeroes both ends of each: the
/// places where a new partition table will put partitions, whatever the current table says, so that
/// nothing an old layout left there is later taken for this plan's work.
pub fn wipe_ranges(device: &Path, ranges: &[(u64, u64)]) -> Result<usize, DiskError> {
    let name = device.display().to_string();
    let file = open_for_wiping(device)?;
    let mut wiped = 0;
    for &(offset, size) in ranges {
        let signed = |n: u64| {
            i64::try_from(n).map_err(|_| DiskError::device(&name, "wipe", std::io::Error::other("offset out of range")))
        };
        wiped += wipe_signatures(&file, device, signed(offset)?, signed(size)?)?;
        zero_range_ends(&file, &name, offset, size)?;
    }
    file.sync_all().map_err(|e| DiskError::device(&name, "flush", e))?;
    Ok(wiped)
}

/// Opened read-write by us: libblkid's own read-only open cannot wipe.
fn open_for_wiping(device: &Path) -> Result<File, DiskError> {
    let name = device.display().to_string();
    OpenOptions::new().read(true).write(true).open(device).map_err(|e| DiskError::device(&name, "open for wiping", e))
}

/// Wipes what libblkid recognises in `size` bytes from `offset` (0 and 0: the whole device).
fn wipe_signatures(file: &File, device: &Path, offset: i64, size: i64) -> Result<usize, DiskError> {
    let mut probe = BlkidProbe::new().map_err(|e| blkid_error(device, e))?;
    probe.set_device(file.as_raw_fd(), offset, size).map_err(|e| blkid_error(device, e))?;
    probe.enable_superblocks(true).map_err(|e| blkid_error(device, e))?;
    probe.set_superblock_flags(superblock_flags()).map_err(|e| blkid_error(device, e))?;
    probe.enable_partitions(true).map_err(|e| blkid_error(device, e))?;
    let mut wiped = 0;
    loop {
        match probe.do_probe() {
            Ok(BlkidProbeRet::Success) => {
                probe.do_wipe(false).map_err(|e| blkid_error(device, e))?;
                wiped += 1;
            }
            Ok(BlkidProbeRet::Done) => break,
            Err(error) => return Err(blkid_error(device, error)),
        }
    }
    Ok(wiped)
}

/// Zeroes up to [`END_ZONE`] at both ends of a range.
fn zero_range_ends(file: &File, name: &str, offset: u64, size: u64) -> Result<(), DiskError> {
    let zone = END_ZONE.min(size);
    let zeros = vec![0u8; zone as usize];
    let mut writer = file;
    for start in [offset, offset + size - zone] {
        writer.seek(SeekFrom::Start(start)).map_err(|e| DiskError::device(name, "seek", e))?;
        writer.write_all(&zeros).map_err(|e| DiskError::device(name, format!("zero {zone} bytes at {start}"), e))?;
    }
    Ok(())
}

fn zero_ends(file: &File, name: &str) -> Result<(), DiskError> {
    let size = ioctl::size_bytes(file)
        .or_else(|_| file.metadata().map(|m| m.len()))
        .map_err(|e| DiskError::device(name, "read size", e))?;
    let zone = END_ZONE.min(size);
    let zeros = vec![0u8; zone as usize];
    let mut writer = file;
    for offset in [0, size - zone] {
        writer.seek(SeekFrom::Start(offset)).map_err(|e| DiskError::device(name, "seek", e))?;
        writer.write_all(&zeros).map_err(|e| DiskError::device(name, format!("zero {zone} bytes at {offset}"), e))?;
    }
    Ok(())
}

/// Discards every block of a device.
pub fn discard_device(device: &Path) -> Result<(), DiskError> {
    let name = device.display().to_string();
    let file =
        OpenOptions::new().write(true).open(device).map_err(|e| DiskError::device(&name, "open for discard", e))?;
    let size = ioctl::size_bytes(&file).map_err(|e| DiskError::device(&name, "read size", e))?;
    ioctl::discard(&file, 0, size).map_err(|e| DiskError::device(&name, "discard", e))
}
