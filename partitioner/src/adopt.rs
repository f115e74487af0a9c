//! Reading a disk back into a plan (`nix-dabei probe`): every partition of its GPT or MBR table (logical
//! ones in the extended partition where it is) where it is, kept, with the
//! filesystem or swap it holds identified by its UUID. Such a plan is found done on the machine it was
//! read from, and a change to it that would destroy a kept partition is refused before anything is
//! written. What a partition holds that a plan cannot describe yet (LUKS, ZFS, LVM, RAID, NTFS...) is kept
//! without content and reported; nothing is invented: mountpoints, mount options and keys are left out.

use indexmap::IndexMap;
use layouts::gpt::{type_name, ExtendedPartition, Identity, TableFormat, MBR_TYPES};
use layouts::{Content, Disk, Filesystem, Format, Partition, Size};

use crate::discover::DiskInfo;
use crate::error::DiskError;
use crate::probe::Signature;
use crate::table::{read_table_state, TableEntry};

/// A disk as read back, with what could not be described.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadBack {
    /// The disk as a plan describes it.
    pub disk: Disk,
    /// One line for each partition whose content is kept undescribed, and why.
    pub notes: Vec<String>,
}

/// Why a disk could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadBackError {
    /// The disk could not be read.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// It has no partition table.
    #[error("{device} has no partition table: there is nothing on it to keep")]
    NoTable {
        /// The disk.
        device: String,
    },
    /// The table is damaged or does not agree with the kernel.
    #[error("{device}: {why}")]
    Inconsistent {
        /// The disk.
        device: String,
        /// What disagrees.
        why: String,
    },
}

/// Reads a disk's GPT and what each partition holds, partitions in the disk's order with their numbers.
/// Fails closed: a table whose two copies differ, whose partitions overlap, or that the kernel sees
/// otherwise, is an error, never a guess.
pub fn read_back(disk: &DiskInfo) -> Result<ReadBack, ReadBackError> {
    let device = disk.path.clone();
    let sector = u64::from(disk.logical_sector_size);
    let state = read_table_state(&device, sector)?;
    let inconsistent = |why: String| ReadBackError::Inconsistent { device: device.clone(), why };
    if let Some(why) = state.unreadable.first() {
        return Err(inconsistent(format!("{why}: it cannot be read back (wiping the disk replaces it)")));
    }
    let (entries, table, signature) = match (&state.primary, &state.backup, &state.mbr) {
        (Some(primary), Some(backup), _) if primary == backup => (primary.clone(), TableFormat::Gpt, None),
        (Some(_), Some(_), _) => {
            return Err(inconsistent("the two GPT copies differ: repair the table first (sgdisk -v)".into()))
        }
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err(inconsistent("one GPT copy is missing or damaged: repair the table first (sgdisk -v)".into()))
        }
        (None, None, Some(mbr)) if mbr.broken_chain => {
            return Err(inconsistent(
                "the chain of extended boot records ends in a sector that is none: repair the table first (fdisk)"
                    .into(),
            ))
        }
        (None, None, Some(mbr)) => {
            // On MBR, a plan numbers partitions in its order, primary ones from 1 and the extended one
            // after them: a table with a gap in its numbers (entries 1 and 3 used) cannot be described, so far.
            let primaries = mbr.entries.iter().filter(|e| e.number <= 4);
            let used: Vec<u32> = primaries.map(|e| e.number).chain(mbr.extended.map(|(n, _)| n)).collect();
            if let Some((_, number)) = used.iter().enumerate().find(|(i, n)| **n != *i as u32 + 1) {
                return Err(inconsistent(format!(
                    "MBR entry {number} is used while an earlier one is empty (or the extended partition is not \
                     the last entry used): reading such a table back is not supported yet"
                )));
            }
            (mbr.entries.clone(), TableFormat::Msdos, Some(format!("{:08x}", mbr.signature)))
        }
        (None, None, None) => return Err(ReadBackError::NoTable { device }),
    };
    // A plan lists partitions in the disk's order; each keeps its number.
    let mut entries: Vec<TableEntry> = entries;
    entries.sort_by_key(|e| e.first_lba);
    let mut partitions = IndexMap::new();
    let mut notes = Vec::new();
    for pair in entries.windows(2) {
        if pair[1].first_lba <= pair[0].last_lba {
            let (a, b) = (pair[0].number, pair[1].number);
            return Err(inconsistent(format!("partitions {a} and {b} overlap: repair the table first (sgdisk -v)")));
        }
    }
    let extended = match &state.mbr {
        Some(mbr) if table == TableFormat::Msdos => mbr.extended.map(|(_, extent)| extent),
        _ => None,
    };
    if table == TableFormat::Msdos {
        // The plan's order is the disk's, and it numbers primary partitions from 1 and logical ones from 5.
        let (mut primary, mut logical) = (0, 4);
        for entry in &entries {
            let counter = if entry.number > 4 { &mut logical } else { &mut primary };
            *counter += 1;
            if entry.number != *counter {
                return Err(inconsistent(format!(
                    "MBR partition {} is not the {}. {} partition in the disk's order: reading a table whose \
                     numbers do not follow the disk's order back is not supported yet",
                    entry.number,
                    *counter - if entry.number > 4 { 4 } else { 0 },
                    if entry.number > 4 { "logical" } else { "primary" }
                )));
            }
        }
    }
    for entry in &entries {
        let (start, size) = (entry.first_lba * sector, (entry.last_lba + 1 - entry.first_lba) * sector);
        let kernel = disk.partitions.iter().find(|p| p.number == entry.number);
        let kernel = match kernel {
            Some(k) if k.start == start && k.size == size => k,
            Some(_) => {
                return Err(inconsistent(format!(
                    "the kernel sees partition {} elsewhere than the table says: let it re-read the table \
                     (partprobe)",
                    entry.number
                )))
            }
            None => {
                return Err(inconsistent(format!(
                    "the kernel does not see partition {}: let it re-read the table (partprobe)",
                    entry.number
                )))
            }
        };
        let name = format!("p{}", entry.number);
        let (content, note) = describe(&kernel.signatures);
        if let Some(note) = note {
            notes.push(format!("{}: {note}; kept without content", kernel.path));
        }
        let gpt = table == TableFormat::Gpt;
        let kind = if gpt {
            type_name(&entry.type_guid).map_or_else(|| entry.type_guid.clone(), str::to_string)
        } else {
            mbr_type_name(&entry.type_guid)
        };
        // On MBR, the number is the plan's order, the UUID the disk signature's, and there is no name.
        let partition = Partition {
            start: Some(Size::Bytes(start)),
            size: Size::Bytes(size),
            number: gpt.then_some(entry.number),
            kind: Some(kind),
            label: gpt.then(|| entry.name.clone()),
            uuid: gpt.then(|| entry.uuid.to_ascii_lowercase()),
            attributes: entry.attributes.clone(),
            bootable: entry.bootable,
            logical: !gpt && entry.number > 4,
            content,
            keep: true,
        };
        partitions.insert(name, partition);
    }
    let identity = Identity { serial: disk.serial.clone(), wwn: disk.wwn.clone(), model: None };
    let disk = Disk {
        device: disk.preferred_path().to_string(),
        size: Some(disk.size),
        logical_sector_size: disk.logical_sector_size,
        physical_sector_size: Some(disk.physical_sector_size),
        identity,
        discard: false,
        table,
        signature,
        extended: extended.map(|extent| ExtendedPartition {
            start: Size::Bytes(extent.first_lba * sector),
            size: Size::Bytes(extent.sectors() * sector),
        }),
        partitions,
    };
    Ok(ReadBack { disk, notes })
}

/// An MBR type byte (two hex digits) as a plan writes it: the name where it has one, else `0x..`.
fn mbr_type_name(byte: &str) -> String {
    let value = u8::from_str_radix(byte, 16).ok();
    let named = MBR_TYPES.iter().find(|(_, b)| Some(*b) == value).map(|(name, _)| name.to_string());
    named.unwrap_or_else(|| format!("0x{}", byte.to_ascii_lowercase()))
}

/// What a partition (or an open LUKS container) holds, as a plan content, or why it is left undescribed.
pub fn describe(signatures: &[Signature]) -> (Option<Content>, Option<String>) {
    // A member of an array with its superblock at the end (metadata 1.0) shows the array's content too.
    let member = signatures.iter().find(|s| s.kind == "linux_raid_member");
    let [signature] = member.map(std::slice::from_ref).unwrap_or(signatures) else {
        return match signatures {
            [] => (None, None),
            many => {
                let kinds: Vec<&str> = many.iter().map(|s| s.kind.as_str()).collect();
                (None, Some(format!("it carries several signatures ({})", kinds.join(", "))))
            }
        };
    };
    // The filesystem types the plan model knows, by the name blkid gives them.
    let format = Format::ALL.into_iter().find(|f| f.fs_type() == signature.kind);
    let Some(uuid) = signature.uuid.clone() else {
        return (None, Some(format!("it holds {} without a UUID", signature.kind)));
    };
    match (format, signature.kind.as_str()) {
        (Some(format), _) => {
            let filesystem = Filesystem {
                format,
                mountpoint: None,
                mount_options: Vec::new(),
                label: signature.label.clone().filter(|l| !l.is_empty()),
                mkfs_options: Vec::new(),
                uuid: Some(uuid),
            };
            (Some(Content::Filesystem(filesystem)), None)
        }
        (None, "swap") => {
            let swap = layouts::nodes::swap::Swap {
                label: signature.label.clone().filter(|l| !l.is_empty()),
                uuid: Some(uuid),
                ..Default::default()
            };
            (Some(Content::Swap(swap)), None)
        }
        // What a container holds is read only once it is open, with its key, which reading back has not.
        (None, "crypto_LUKS") => (
            None,
            Some(format!(
                "it holds a LUKS container (header UUID {uuid}{}); to keep it and use what it holds, give the \
                 partition `content.luks` with `uuid = \"{uuid}\"`, a `name`, and what it holds with its `uuid`",
                signature
                    .label
                    .as_deref()
                    .filter(|l| !l.is_empty())
                    .map(|l| format!(", label {l}"))
                    .unwrap_or_default()
            )),
        ),
        // Pools are read with the members on every disk (`installer::adopt`, in `nix-dabei probe`).
        (None, "zfs_member") => {
            let pool = signature.label.as_deref().unwrap_or_default();
            (None, Some(format!("it is a member of ZFS pool {pool} (GUID {uuid})")))
        }
        // Arrays are read with the members on every disk (`installer::adopt`, in `nix-dabei probe`).
        (None, "linux_raid_member") => {
            let name = signature.label.as_deref().unwrap_or_default();
            let name = name.rsplit_once(':').map_or(name, |(_, name)| name);
            (None, Some(format!("it is a member of RAID array {name} (UUID {uuid})")))
        }
        // Volume groups are read with the physical volumes on every disk, in `nix-dabei probe`.
        (None, "LVM2_member") => (None, Some(format!("it is an LVM physical volume (UUID {uuid})"))),
        (None, kind) => (None, Some(format!("it holds {kind} (UUID {uuid}), which a plan cannot describe yet"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature(kind: &str, uuid: &str, label: Option<&str>) -> Signature {
        Signature { kind: kind.into(), usage: None, label: label.map(str::to_string), uuid: Some(uuid.into()) }
    }

    #[test]
    fn a_luks_container_is_kept_undescribed_with_what_keeping_it_takes() {
        let uuid = "3c909942-6252-4a73-b0c9-1b7c63fbdf03";
        let (content, note) = describe(&[signature("crypto_LUKS", uuid, Some("secrets"))]);
        assert!(content.is_none(), "nothing is invented for what the container holds");
        let note = note.expect("a note");
        assert!(
            note.contains(&format!("header UUID {uuid}, label secrets")) && note.contains("content.luks"),
            "{note}"
        );
    }

    #[test]
    fn a_member_of_an_array_with_its_superblock_at_the_end_is_named_as_one_not_as_what_the_array_holds() {
        let member = signature("linux_raid_member", "4d1a9332-a8c5-4514-805d-7249fa746744", Some("any:boot"));
        let fat = signature("vfat", "791B-0D01", None);
        let (content, note) = describe(&[fat, member]);
        assert!(content.is_none(), "the array's FAT was taken for the partition's own");
        assert_eq!(
            note.as_deref(),
            Some("it is a member of RAID array boot (UUID 4d1a9332-a8c5-4514-805d-7249fa746744)")
        );
    }
}
