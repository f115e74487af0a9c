//! GPT geometry: partition types, 1 MiB-aligned placement and partition device names.

use serde::{Deserialize, Serialize};

use crate::size::{Size, MIB};

/// A partition type nix-dabei knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownType {
    /// Name used in plans.
    pub name: &'static str,
    /// sgdisk's short code.
    pub code: &'static str,
    /// The type GUID.
    pub guid: &'static str,
}

/// Every partition type plans may name.
pub const KNOWN_TYPES: &[KnownType] = &[
    KnownType { name: "esp", code: "EF00", guid: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" },
    KnownType { name: "bios-boot", code: "EF02", guid: "21686148-6449-6E6F-744E-656564454649" },
    KnownType { name: "linux", code: "8300", guid: "0FC63DAF-8483-4772-8E79-3D69D8477DE4" },
    KnownType { name: "linux-root-x86-64", code: "8304", guid: "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" },
    KnownType { name: "swap", code: "8200", guid: "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" },
    KnownType { name: "luks", code: "8309", guid: "CA7D7CCB-63ED-4C53-861C-1742536059CC" },
    KnownType { name: "zfs", code: "BF01", guid: "6A898CC3-1DD2-11B2-99A6-080020736631" },
    KnownType { name: "raid", code: "FD00", guid: "A19D880F-05FC-4D3B-A006-743F0F84911E" },
    KnownType { name: "lvm", code: "8E00", guid: "E6D6D379-F507-44C2-A23C-238F2A3DF928" },
    // What Windows leaves, so that a plan keeping it reads as what it is.
    KnownType { name: "microsoft-basic-data", code: "0700", guid: "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" },
    KnownType { name: "microsoft-reserved", code: "0C01", guid: "E3C9E316-0B5C-4DB8-817D-F92DF00215AE" },
    KnownType { name: "windows-recovery", code: "2700", guid: "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC" },
];

/// The MBR partition type byte of each type name plans may use on an `msdos` disk (util-linux's names:
/// 0xE8 is "LUKS", 0xBF "Solaris", which ZFS on MBR uses).
pub const MBR_TYPES: &[(&str, u8)] = &[
    ("esp", 0xEF),
    ("linux", 0x83),
    ("linux-root-x86-64", 0x83),
    ("swap", 0x82),
    ("luks", 0xE8),
    ("zfs", 0xBF),
    ("raid", 0xFD),
    ("lvm", 0x8E),
];

/// The MBR type byte for a type written as a name (see [`MBR_TYPES`]) or as a byte in hex (`0x83`, `83`).
/// Empty entries (0), extended partitions (0x05, 0x0F, 0x85) and GPT's protective type (0xEE) are no
/// partition's type.
pub fn mbr_type(written: &str) -> Option<u8> {
    if let Some((_, byte)) = MBR_TYPES.iter().find(|(name, _)| name.eq_ignore_ascii_case(written)) {
        return Some(*byte);
    }
    let digits = written.strip_prefix("0x").or_else(|| written.strip_prefix("0X")).unwrap_or(written);
    if digits.len() != 2 {
        return None;
    }
    u8::from_str_radix(digits, 16).ok().filter(|b| ![0x00, 0x05, 0x0F, 0x85, 0xEE].contains(b))
}

/// True for the type bytes of an extended partition.
pub fn is_extended_mbr_type(byte: u8) -> bool {
    matches!(byte, 0x05 | 0x0F | 0x85)
}

/// The type GUID (upper case) for a type written as a name, an sgdisk code or a GUID.
pub fn type_guid(written: &str) -> Option<String> {
    let known =
        KNOWN_TYPES.iter().find(|t| t.name.eq_ignore_ascii_case(written) || t.code.eq_ignore_ascii_case(written));
    if let Some(known) = known {
        return Some(known.guid.to_string());
    }
    is_guid(written).then(|| written.to_ascii_uppercase())
}

/// The plan name of a type GUID, where it has one.
pub fn type_name(guid: &str) -> Option<&'static str> {
    KNOWN_TYPES.iter().find(|t| t.guid.eq_ignore_ascii_case(guid)).map(|t| t.name)
}

/// True for text of the form `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` (hex digits).
pub fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Where one partition lies on its disk, in logical sectors (both ends included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    /// First sector.
    pub first_lba: u64,
    /// Last sector.
    pub last_lba: u64,
}

impl Extent {
    /// Number of sectors.
    pub fn sectors(&self) -> u64 {
        self.last_lba - self.first_lba + 1
    }
}

/// The usable area of a GPT disk, in logical sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes per logical sector.
    pub sector_size: u64,
    /// Sectors on the disk.
    pub total_sectors: u64,
    /// An MBR table: no GPT header and entries at either end.
    pub msdos: bool,
}

/// Room for the 128 entries of 128 bytes that every GPT header describes.
const ENTRY_ARRAY_BYTES: u64 = 128 * 128;

impl Geometry {
    /// The geometry of a disk of `size_bytes` with `sector_size`-byte sectors.
    pub fn new(size_bytes: u64, sector_size: u64) -> Self {
        Geometry { sector_size, total_sectors: size_bytes / sector_size, msdos: false }
    }

    /// The geometry of the same disk with an MBR table.
    pub fn msdos(size_bytes: u64, sector_size: u64) -> Self {
        Geometry { msdos: true, ..Geometry::new(size_bytes, sector_size) }
    }

    fn entry_sectors(&self) -> u64 {
        ENTRY_ARRAY_BYTES.div_ceil(self.sector_size)
    }

    /// First sector a partition may use (after the protective MBR, header and entries; after the MBR).
    pub fn first_usable(&self) -> u64 {
        if self.msdos {
            1
        } else {
            2 + self.entry_sectors()
        }
    }

    /// Last sector a partition may use (before the backup entries and header; the last one with an MBR).
    pub fn last_usable(&self) -> Option<u64> {
        let reserved = if self.msdos { 1 } else { 2 + self.entry_sectors() };
        self.total_sectors.checked_sub(reserved)
    }

    /// Sectors in one alignment unit (1 MiB).
    pub fn alignment(&self) -> u64 {
        (MIB / self.sector_size).max(1)
    }

    fn align_up(&self, lba: u64) -> u64 {
        // Saturating: sizes near u64::MAX become "does not fit", never an overflow.
        lba.div_ceil(self.alignment()).saturating_mul(self.alignment())
    }

    fn align_down(&self, lba: u64) -> u64 {
        lba / self.alignment() * self.alignment()
    }
}

/// Why partitions could not be placed on a disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// The disk is too small to hold a partition table at all.
    #[error("the disk is too small for a GPT partition table")]
    DiskTooSmall,
    /// A partition does not fit in what is left.
    #[error(
        "does not fit: needs {needed} bytes from {start} bytes on, but the disk can hold partitions only \
        up to {end} bytes"
    )]
    DoesNotFit {
        /// Index of the partition in the list.
        index: usize,
        /// Bytes the partition needs.
        needed: u64,
        /// Byte offset where it would start.
        start: u64,
        /// Byte offset where usable space ends.
        end: u64,
    },
    /// Nothing is left for a "rest" partition.
    #[error("nothing is left for \"rest\" ({left} bytes remain after the partitions around it)")]
    NothingLeft {
        /// Index of the partition in the list.
        index: usize,
        /// Bytes that remained.
        left: u64,
    },
    /// More than one partition asks for the rest of the disk.
    #[error("only one partition per disk can take the rest of the disk")]
    TwoRests {
        /// Index of the second one.
        index: usize,
    },
    /// A partition that ends relative to the disk's end comes after one that takes the rest.
    #[error("a partition that ends before the disk's end cannot follow one that takes the rest")]
    EndAfterRest {
        /// Its index.
        index: usize,
    },
    /// A partition's given start lies before the end of the partition before it, or before the first
    /// usable sector.
    #[error("starts at byte {start}, before byte {free}, the first one free after what comes before it")]
    StartOverlaps {
        /// Its index.
        index: usize,
        /// The byte offset asked for.
        start: u64,
        /// The first free byte offset.
        free: u64,
    },
    /// A partition of an MBR table reaches past what its 32-bit sector numbers can address.
    #[error("ends past sector 2^32, the last an MBR table can address: use gpt")]
    BeyondMbr {
        /// Its index.
        index: usize,
    },
}

impl AllocError {
    /// Index of the partition at fault, if one is.
    pub fn partition_index(&self) -> Option<usize> {
        match self {
            AllocError::DiskTooSmall => None,
            AllocError::DoesNotFit { index, .. }
            | AllocError::NothingLeft { index, .. }
            | AllocError::TwoRests { index }
            | AllocError::EndAfterRest { index }
            | AllocError::StartOverlaps { index, .. }
            | AllocError::BeyondMbr { index } => Some(*index),
        }
    }
}

/// Places partitions of the given sizes, in order, each starting on a 1 MiB boundary. A `Rest` partition
/// takes everything the partitions after it do not need, ending on a 1 MiB boundary.
pub fn allocate(geometry: Geometry, sizes: &[Size]) -> Result<Vec<Extent>, AllocError> {
    allocate_at(geometry, sizes, &vec![None; sizes.len()])
}

/// Like [`allocate`], but a partition with a start (a byte offset, a multiple of the sector size) begins
/// exactly there, aligned or not: a partition that is already on the disk stays where it is. A `Rest`
/// partition before one with a start ends where that one's predecessors need it to.
pub fn allocate_at(geometry: Geometry, sizes: &[Size], starts: &[Option<u64>]) -> Result<Vec<Extent>, AllocError> {
    let last_usable = geometry.last_usable().ok_or(AllocError::DiskTooSmall)?;
    let end_exclusive = last_usable + 1;
    if geometry.align_up(geometry.first_usable()) >= end_exclusive {
        return Err(AllocError::DiskTooSmall);
    }
    if let Some(second) = sizes.iter().enumerate().filter(|(_, s)| **s == Size::Rest).nth(1) {
        return Err(AllocError::TwoRests { index: second.0 });
    }
    if let Some(rest) = sizes.iter().position(|s| *s == Size::Rest) {
        if let Some(offset) = sizes[rest..].iter().position(|s| matches!(s, Size::AllBut(_))) {
            return Err(AllocError::EndAfterRest { index: rest + offset });
        }
    }
    let sectors_of = |bytes: u64| bytes.div_ceil(geometry.sector_size).max(1);
    let bytes_at = |lba: u64| lba * geometry.sector_size;
    let mut extents = Vec::with_capacity(sizes.len());
    let mut cursor = geometry.first_usable();
    let start_lba = |index: usize| starts.get(index).copied().flatten().map(|bytes| bytes / geometry.sector_size);
    for (index, size) in sizes.iter().enumerate() {
        let start = match start_lba(index) {
            Some(lba) if lba < cursor => {
                return Err(AllocError::StartOverlaps { index, start: bytes_at(lba), free: bytes_at(cursor) })
            }
            Some(lba) => lba,
            None => geometry.align_up(cursor),
        };
        let last = match size {
            Size::Bytes(bytes) => {
                let last = start.checked_add(sectors_of(*bytes) - 1);
                match last {
                    Some(last) if last <= last_usable => last,
                    _ => {
                        return Err(AllocError::DoesNotFit {
                            index,
                            needed: *bytes,
                            start: bytes_at(start),
                            end: bytes_at(end_exclusive),
                        })
                    }
                }
            }
            Size::AllBut(bytes) => {
                let end = end_exclusive.checked_sub(sectors_of(*bytes)).map(|e| geometry.align_down(e));
                match end {
                    Some(end) if end > start => end - 1,
                    _ => {
                        return Err(AllocError::NothingLeft {
                            index,
                            left: bytes_at(end_exclusive.saturating_sub(start)),
                        })
                    }
                }
            }
            Size::Rest => {
                // Up to the next partition with a start of its own, or the disk's end, less what the
                // partitions in between need.
                let fixed = (index + 1..sizes.len()).find(|&i| start_lba(i).is_some());
                let limit = fixed.and_then(start_lba).unwrap_or(end_exclusive);
                let reserved: u64 = sizes[index + 1..fixed.unwrap_or(sizes.len())]
                    .iter()
                    .filter_map(|s| s.bytes())
                    .map(|bytes| geometry.align_up(sectors_of(bytes)))
                    .fold(0, u64::saturating_add);
                let end = limit.checked_sub(reserved).map(|e| geometry.align_down(e));
                match end {
                    Some(end) if end > start => end - 1,
                    _ => {
                        let left = end_exclusive.saturating_sub(start).saturating_sub(reserved);
                        return Err(AllocError::NothingLeft { index, left: bytes_at(left) });
                    }
                }
            }
        };
        extents.push(Extent { first_lba: start, last_lba: last });
        cursor = last + 1;
    }
    Ok(extents)
}

/// Where the partitions of an MBR table lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsdosPlacement {
    /// Each partition, in the plan's order.
    pub extents: Vec<Extent>,
    /// The extended partition around the logical ones, where there are any. Each logical partition's
    /// extended boot record lies one alignment unit (1 MiB) before it.
    pub extended: Option<Extent>,
}

/// Places the partitions of an MBR table like [`allocate`]: a logical partition (`logical[i]`) gets 1 MiB
/// before it for its extended boot record, and the extended partition spans from the first of those to the
/// end of the last logical partition.
pub fn allocate_msdos(geometry: Geometry, sizes: &[Size], logical: &[bool]) -> Result<MsdosPlacement, AllocError> {
    let mut expanded = Vec::with_capacity(sizes.len() * 2);
    // For each entry of `expanded`: the partition it belongs to, and whether it is a boot record's room.
    let mut owners = Vec::with_capacity(sizes.len() * 2);
    for (index, size) in sizes.iter().enumerate() {
        if logical.get(index).copied().unwrap_or(false) {
            expanded.push(Size::Bytes(MIB));
            owners.push((index, true));
        }
        expanded.push(*size);
        owners.push((index, false));
    }
    let placed = allocate(geometry, &expanded).map_err(|error| match error {
        AllocError::DoesNotFit { index, needed, start, end } => {
            AllocError::DoesNotFit { index: owners[index].0, needed, start, end }
        }
        AllocError::NothingLeft { index, left } => AllocError::NothingLeft { index: owners[index].0, left },
        AllocError::TwoRests { index } => AllocError::TwoRests { index: owners[index].0 },
        AllocError::EndAfterRest { index } => AllocError::EndAfterRest { index: owners[index].0 },
        other => other,
    })?;
    let mut extents = Vec::with_capacity(sizes.len());
    let mut extended: Option<Extent> = None;
    for (extent, (index, is_record)) in placed.into_iter().zip(owners) {
        if extent.last_lba > u64::from(u32::MAX) {
            return Err(AllocError::BeyondMbr { index });
        }
        if is_record {
            extended.get_or_insert(Extent { first_lba: extent.first_lba, last_lba: extent.last_lba });
        } else {
            if let Some(extended) = extended.as_mut().filter(|_| logical[index]) {
                extended.last_lba = extent.last_lba;
            }
            extents.push(extent);
        }
    }
    Ok(MsdosPlacement { extents, extended })
}

/// The device node of partition `number` of the disk at `disk`: `-partN` for udev's by-id and by-path
/// links, `pN` when the disk name ends in a digit (nvme0n1, mmcblk0, loop0), `N` otherwise (sda, vda).
pub fn partition_device(disk: &str, number: u32) -> String {
    if disk.starts_with("/dev/disk/by-") {
        format!("{disk}-part{number}")
    } else if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{number}")
    } else {
        format!("{disk}{number}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_with_a_start_stay_where_they_are_and_the_rest_fills_the_gap_before_them() {
        let g = Geometry::new(64 * MIB, 512);
        // Unaligned at sector 34 (as old tools made them), a gap, then one at 40 MiB.
        let sizes = [Size::Bytes(MIB), Size::Rest, Size::Bytes(8 * MIB)];
        let starts = [Some(34 * 512), None, Some(40 * MIB)];
        let extents = allocate_at(g, &sizes, &starts).expect("fits");
        assert_eq!(extents[0], Extent { first_lba: 34, last_lba: 34 + 2047 });
        assert_eq!(extents[1].first_lba, 4096, "the next one is aligned again");
        assert_eq!(extents[1].last_lba, 40 * 2048 - 1, "rest ends where the next fixed one starts");
        assert_eq!(extents[2], Extent { first_lba: 40 * 2048, last_lba: 48 * 2048 - 1 });
        let overlapping = allocate_at(g, &sizes[..1], &[Some(16 * 512)]);
        assert!(matches!(overlapping, Err(AllocError::StartOverlaps { index: 0, .. })), "{overlapping:?}");
        let overlapping = allocate_at(g, &[Size::Bytes(8 * MIB), Size::Bytes(MIB)], &[None, Some(4 * MIB)]);
        assert!(matches!(overlapping, Err(AllocError::StartOverlaps { index: 1, .. })), "{overlapping:?}");
    }

    #[test]
    fn partition_names_follow_the_kernel() {
        assert_eq!(partition_device("/dev/sda", 1), "/dev/sda1");
        assert_eq!(partition_device("/dev/vdb", 2), "/dev/vdb2");
        assert_eq!(partition_device("/dev/nvme0n1", 1), "/dev/nvme0n1p1");
        assert_eq!(partition_device("/dev/mmcblk0", 3), "/dev/mmcblk0p3");
        assert_eq!(partition_device("/dev/loop7", 1), "/dev/loop7p1");
        assert_eq!(partition_device("/dev/disk/by-id/virtio-a1", 2), "/dev/disk/by-id/virtio-a1-part2");
    }

    #[test]
    fn types_by_name_code_or_guid() {
        assert_eq!(type_guid("esp").as_deref(), Some("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"));
        assert_eq!(type_guid("bf01").as_deref(), Some("6A898CC3-1DD2-11B2-99A6-080020736631"));
        assert_eq!(
            type_guid("0fc63daf-8483-4772-8e79-3d69d8477de4").as_deref(),
            Some("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
        );
        assert_eq!(type_guid("ext4"), None);
    }

    #[test]
    fn first_partition_starts_at_one_mebibyte() {
        let g512 = Geometry::new(1 << 30, 512);
        let g4k = Geometry::new(1 << 30, 4096);
        assert_eq!(allocate(g512, &[Size::Rest]).expect("fits")[0].first_lba, 2048);
        assert_eq!(allocate(g4k, &[Size::Rest]).expect("fits")[0].first_lba, 256);
    }
}
