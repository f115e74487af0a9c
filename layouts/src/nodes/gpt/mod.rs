//! Whole disks with a GPT: the disk's identity, its partitions and their placement, the wipe that
//! starts over and the partition table write.

mod geometry;
mod legacy;

use std::collections::HashMap;
use std::fmt;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use geometry::*;

use super::{default_type, Site};
use crate::compile::Builder;
use crate::disko::{Reader, Writer};
use crate::error::{shown, FieldPath};
use crate::model::Plan;
use crate::size::{format_exact, human, parse_bytes, Size};
use crate::steps::{Operation, OperationKind};
use crate::validate::{valid_name, Checker};

fn default_sector() -> u32 {
    512
}

fn is_default_sector(value: &u32) -> bool {
    *value == 512
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// One whole disk and the partitions to create on it. Every disk in a plan is wiped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// A stable path to the disk, such as `/dev/disk/by-id/nvme-...`; kernel names like `/dev/sda` work
    /// but can change between boots.
    pub device: String,
    /// Size in bytes, as seen when the plan was made. Needed to place the partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Logical sector size in bytes (512 or 4096).
    #[serde(default = "default_sector", skip_serializing_if = "is_default_sector")]
    pub logical_sector_size: u32,
    /// Physical sector size in bytes; decides the ZFS ashift of pools on this disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_sector_size: Option<u32>,
    /// Who the disk is: checked again before anything is written.
    #[serde(default, skip_serializing_if = "Identity::is_empty")]
    pub identity: Identity,
    /// Issue a discard (TRIM) for the whole disk when wiping it, where the device supports it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub discard: bool,
    /// The kind of partition table: `gpt` (the default) or `msdos` (an MBR, for old BIOS machines).
    #[serde(default, skip_serializing_if = "TableFormat::is_gpt")]
    pub table: TableFormat,
    /// An MBR table's disk signature (8 hex digits, as blkid's PTUUID shows it), for a table that is
    /// already there (a disk read back by probe): its partitions are known by it. Derived from the plan
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// MBR only: where the extended partition around kept logical partitions lies (a disk read back by
    /// probe). Without it, nix-dabei makes the extended partition from 1 MiB before the first logical
    /// partition to the end of the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended: Option<ExtendedPartition>,
    /// The partitions, in table order.
    #[serde(default)]
    pub partitions: IndexMap<String, Partition>,
}

/// An MBR table's extended partition that is already on the disk: the room its logical partitions and
/// their boot records take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendedPartition {
    /// Where it begins: bytes from the disk's start, a multiple of the sector size.
    pub start: Size,
    /// Its exact size in bytes.
    pub size: Size,
}

impl ExtendedPartition {
    /// Its extent in `sector`-byte sectors, when start and size are exact.
    pub fn extent(&self, sector: u64) -> Option<Extent> {
        let (start, size) = (self.start.bytes()?, self.size.bytes()?);
        (size >= sector && start % sector == 0 && size % sector == 0)
            .then(|| Extent { first_lba: start / sector, last_lba: (start + size) / sector - 1 })
    }
}

/// The kind of partition table a disk gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// A GUID partition table: up to 128 named partitions, disks of any size.
    #[default]
    Gpt,
    /// An MBR ("msdos") table, for firmware that knows nothing else: up to four primary partitions, or
    /// fewer and logical ones in an extended partition; disks up to 2 TiB with 512-byte sectors.
    Msdos,
}

impl TableFormat {
    /// True for the default, GPT.
    pub fn is_gpt(&self) -> bool {
        *self == TableFormat::Gpt
    }
}

/// The identity of a disk as recorded in a plan. Applying a plan to a disk whose recorded identity
/// differs is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Serial number reported by the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// World Wide Name, where the device has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
    /// Model string, for people reading the plan; not compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl Identity {
    /// True when nothing was recorded (a plan made for disks that were not attached).
    pub fn is_empty(&self) -> bool {
        self.serial.is_none() && self.wwn.is_none() && self.model.is_none()
    }
}

/// A GPT partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// Where the partition begins (bytes from the disk's start, a multiple of the sector size), for a
    /// partition that is already on the disk; without it, right after the partition before, aligned to
    /// 1 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Size>,
    /// Size, or `"rest"` for what remains of the disk. Starts are aligned to 1 MiB.
    pub size: Size,
    /// GPT only: the partition's number, for one that is already on the disk (numbers need not follow
    /// the disk's order); partitions without one take the lowest numbers left, in the plan's order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
    /// Partition type: `esp`, `linux`, `swap`, `luks`, `zfs`, `bios-boot`, an sgdisk code such as
    /// `BF01`, or a type GUID. Defaults from the content.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// GPT partition name; defaults to `disk-<disk>-<partition>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Partition UUID; defaults to one derived from the host id, disk and partition names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// GPT attribute bits to set (0: required by the platform, 2: legacy BIOS bootable, 60-63: type
    /// specific).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<u32>,
    /// MBR only: the boot flag, which the boot code of old BIOS machines looks for.
    #[serde(default, skip_serializing_if = "is_false")]
    pub bootable: bool,
    /// MBR only: a logical partition, inside the extended partition nix-dabei makes around all of them.
    /// Logical partitions come after the primary ones.
    #[serde(default, skip_serializing_if = "is_false")]
    pub logical: bool,
    /// What the partition holds; nothing when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<super::Content>,
    /// A partition that is on the disk already and must stay as it is, with what it holds: identified by
    /// its UUID (and its filesystem's or swap's UUID), never wiped, formatted or moved. A plan that would
    /// need to destroy it is refused before anything is written.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep: bool,
}

impl Partition {
    /// The partition type as written in the plan, or the one its content implies.
    pub fn effective_type(&self) -> String {
        self.kind.clone().unwrap_or_else(|| default_type(self.content.as_ref()).to_string())
    }

    /// True for an EFI system partition, named so or implied by its content.
    pub fn is_esp(&self) -> bool {
        let kind = self.effective_type();
        type_guid(&kind).as_deref().and_then(type_name) == Some("esp") || mbr_type(&kind) == Some(0xEF)
    }

    /// True for a BIOS boot partition (GRUB's core image on GPT), however its type is written.
    pub fn is_bios_boot(&self) -> bool {
        type_guid(&self.effective_type()).as_deref().and_then(type_name) == Some("bios-boot")
    }
}

impl Disk {
    /// A disk read from disko, which knows no size, identity or sector size.
    fn from_disko(device: String, table: TableFormat, partitions: IndexMap<String, Partition>) -> Disk {
        Disk {
            device,
            size: None,
            logical_sector_size: 512,
            physical_sector_size: None,
            identity: Identity::default(),
            discard: false,
            table,
            signature: None,
            extended: None,
            partitions,
        }
    }

    /// The partition numbers, in the plan's order: on GPT, a partition's own `number`, else the lowest
    /// number no partition of the disk has, taken in order (1, 2, ... when none gives one); on MBR, primary
    /// partitions from 1 and logical ones from 5, as the kernel numbers them.
    pub fn partition_numbers(&self) -> Vec<u32> {
        if self.table == TableFormat::Gpt {
            let mut taken: std::collections::BTreeSet<u32> =
                self.partitions.values().filter_map(|p| p.number).collect();
            let mut next = 1;
            return self
                .partitions
                .values()
                .map(|p| {
                    p.number.unwrap_or_else(|| {
                        while taken.contains(&next) {
                            next += 1;
                        }
                        taken.insert(next);
                        next
                    })
                })
                .collect();
        }
        let (mut primary, mut logical) = (0, 4);
        let msdos = self.table == TableFormat::Msdos;
        self.partitions
            .values()
            .map(|p| {
                let counter = if msdos && p.logical { &mut logical } else { &mut primary };
                *counter += 1;
                *counter
            })
            .collect()
    }

    /// True when GRUB can go on this disk for legacy BIOS firmware: it has a BIOS boot partition (GPT), or
    /// an MBR table, whose 1 MiB gap before the first partition holds GRUB's core image.
    pub fn boots_bios(&self) -> bool {
        self.table == TableFormat::Msdos || self.partitions.values().any(Partition::is_bios_boot)
    }
}

/// What holds a partition table, for checking its partitions.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TableOn {
    /// A disk, with its table format and logical sector size.
    Disk {
        /// GPT or MBR.
        table: TableFormat,
        /// Bytes per logical sector.
        sector: u32,
    },
    /// A RAID array (always GPT).
    Array,
}

/// The entries a GPT holds (the entry array nix-dabei writes has 128).
pub const MAX_PARTITIONS: usize = 128;

/// The smallest partition a plan may ask for: one alignment unit.
pub const MIN_PARTITION: u64 = 1 << 20;

/// FAT32 needs at least 65525 clusters, and a cluster is at least one sector: a vfat partition (made with
/// `-F 32`) needs this many bytes with sectors of `sector` bytes (clusters, two FATs, reserved sectors).
pub fn fat32_minimum(sector: u64) -> u64 {
    const CLUSTERS: u64 = 65525;
    let fat = (CLUSTERS + 2) * 4;
    (CLUSTERS + 32) * sector + 2 * fat.div_ceil(sector) * sector
}

/// The GPT partition name a partition gets when the plan gives none.
pub fn default_partition_label(disk: &str, partition: &str) -> String {
    format!("disk-{disk}-{partition}")
}

/// Remove every signature (filesystems, LUKS, ZFS labels, RAID superblocks, partition tables) from the
/// disk and from its current partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wipe {
    /// The whole disk.
    pub device: String,
    /// Discard every block as well, where the device supports it.
    pub discard: bool,
}

impl OperationKind for Wipe {
    fn destroys_data(&self) -> bool {
        true
    }

    /// The wipefs equivalent of what the executor does through libblkid.
    fn review(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wipefs --all {}*", self.device)?;
        if self.discard {
            write!(f, "; blkdiscard {}", self.device)?;
        }
        Ok(())
    }
}

/// Write a new GPT with a protective MBR, then make the kernel see its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionTable {
    /// The whole disk.
    pub device: String,
    /// Logical sector size the LBAs below count in.
    pub logical_sector_size: u32,
    /// The disk's size in bytes, as planned; checked before writing.
    pub disk_size: u64,
    /// The partitions, in table order.
    pub partitions: Vec<GptPartition>,
    /// Set for an MBR table instead of a GPT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msdos: Option<MsdosTable>,
}

/// What an MBR table holds besides its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsdosTable {
    /// The disk signature (bytes 440-443), derived from the plan: partition UUIDs on MBR are
    /// `<signature>-<number>`, so it makes the table recognisable as the plan's own.
    pub signature: u32,
    /// The extended partition around the logical ones, where there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended: Option<Extent>,
}

impl MsdosTable {
    /// The table entry number the extended partition takes: the one after the primary partitions.
    pub fn extended_number(&self, partitions: &[GptPartition]) -> Option<u32> {
        self.extended.map(|_| partitions.iter().filter(|p| p.number <= 4).count() as u32 + 1)
    }
}

impl OperationKind for PartitionTable {
    fn destroys_data(&self) -> bool {
        true
    }

    fn review(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.msdos {
            Some(msdos) => write!(
                f,
                "write MBR to {} ({}-byte sectors, signature {:08x}):",
                self.device, self.logical_sector_size, msdos.signature
            )?,
            None => write!(f, "write GPT to {} ({}-byte sectors):", self.device, self.logical_sector_size)?,
        }
        for p in &self.partitions {
            let size = p.extent.sectors() * u64::from(self.logical_sector_size);
            let kind = type_name(&p.type_guid).unwrap_or(&p.type_guid);
            let (first, last) = (p.extent.first_lba, p.extent.last_lba);
            if self.msdos.is_some() {
                let flag = if p.bootable { " boot" } else { "" };
                write!(f, " {}={first}..{last} {} 0x{kind}{flag};", p.number, human(size))?;
            } else {
                write!(f, " {}={first}..{last} {} {kind} {:?};", p.number, human(size), p.name)?;
            }
        }
        if let Some(extended) = self.msdos.as_ref().and_then(|m| m.extended) {
            write!(f, " extended {}..{};", extended.first_lba, extended.last_lba)?;
        }
        Ok(())
    }
}

/// One partition of a [`PartitionTable`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GptPartition {
    /// Partition number, from 1 (on MBR, logical partitions from 5).
    pub number: u32,
    /// GPT partition name (empty on MBR).
    pub name: String,
    /// Type GUID; on MBR, the type byte as two upper-case hex digits.
    pub type_guid: String,
    /// Partition UUID; on MBR, `<disk signature>-<number>` in hex, as blkid and udev show it.
    pub uuid: String,
    /// MBR only: the boot flag.
    #[serde(default, skip_serializing_if = "is_false")]
    pub bootable: bool,
    /// Where it lies.
    #[serde(flatten)]
    pub extent: Extent,
    /// GPT attribute bits to set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<u32>,
    /// The device node it will have.
    pub device: String,
}

impl GptPartition {
    /// The attribute bits as a GPT holds them: each once, in order (on MBR, none).
    pub fn attribute_bits(&self) -> Vec<u32> {
        let bits: std::collections::BTreeSet<u32> = self.attributes.iter().copied().filter(|bit| *bit < 64).collect();
        bits.into_iter().collect()
    }
}

/// Whether a disk's device path is one whose partitions are named after it: the kernel's name directly
/// under /dev, or a udev link in /dev/disk/by-id, by-path or by-diskseq (each `-partN` beside it). A link
/// elsewhere (`/tmp/disk`, `/dev/mapper/x`) would be wiped and then waited on for partitions that never
/// appear under its name.
fn names_its_partitions(device: &str) -> bool {
    let plain = |name: &str| !name.is_empty() && !name.contains('/') && name != "." && name != "..";
    ["/dev/disk/by-id/", "/dev/disk/by-path/", "/dev/disk/by-diskseq/"]
        .iter()
        .any(|prefix| device.strip_prefix(prefix).is_some_and(plain))
        || device.strip_prefix("/dev/").is_some_and(plain)
}

/// Checks that no two disks of the plan name the same device, serial or WWN.
pub(crate) fn validate_identities(check: &mut Checker, plan: &Plan) {
    let mut devices: HashMap<&str, &str> = HashMap::new();
    let mut serials: HashMap<&str, &str> = HashMap::new();
    let mut wwns: HashMap<&str, &str> = HashMap::new();
    for (name, disk) in &plan.disks {
        let path = FieldPath::root().join("disks").join(name.clone());
        if let Some(first) = devices.insert(disk.device.as_str(), name) {
            check.report(
                path.join("device"),
                format!("{} is used twice: disk {first:?} is the same device", disk.device),
            );
        }
        if let Some(serial) = disk.identity.serial.as_deref().filter(|s| !s.is_empty()) {
            if let Some(first) = serials.insert(serial, name) {
                let message = format!("serial {serial:?} is used twice: disk {first:?} is the same disk");
                check.report(path.join("identity").join("serial"), message);
            }
        }
        if let Some(wwn) = disk.identity.wwn.as_deref().filter(|s| !s.is_empty()) {
            if let Some(first) = wwns.insert(wwn, name) {
                check.report(
                    path.join("identity").join("wwn"),
                    format!("WWN {wwn:?} is used twice: disk {first:?} is the same disk"),
                );
            }
        }
    }
}

impl Disk {
    /// Reports every problem of this disk and its partitions.
    pub(crate) fn validate(&self, check: &mut Checker, plan: &Plan, name: &str) {
        let path = FieldPath::root().join("disks").join(name);
        if !valid_name(name) {
            check.report(path.clone(), format!("{name:?} is not a usable disk name (no '/', not empty)"));
        }
        if !self.device.starts_with('/') || self.device.chars().any(char::is_control) {
            check.report(path.join("device"), format!("{} is not an absolute device path", shown(&self.device)));
        } else if !names_its_partitions(&self.device) {
            check.report(
                path.join("device"),
                format!(
                    "{}: the partitions' names are made from the disk's, which works for the kernel's name \
                     (/dev/sda, /dev/nvme0n1) and udev's /dev/disk/by-id/, by-path/ and by-diskseq/ links only",
                    shown(&self.device)
                ),
            );
        }
        if self.logical_sector_size != 512 && self.logical_sector_size != 4096 {
            check.report(
                path.join("logical_sector_size"),
                format!("{} is not a sector size (512 or 4096)", self.logical_sector_size),
            );
        }
        if let Some(physical) = self.physical_sector_size {
            if !physical.is_power_of_two() || physical < self.logical_sector_size || physical > 65536 {
                let message = format!(
                    "{physical} is not a physical sector size (a power of two from the logical sector size to 65536)"
                );
                check.report(path.join("physical_sector_size"), message);
            }
        }
        if self.partitions.is_empty() {
            check.report(path.join("partitions"), "the disk has no partitions");
        }
        if self.partitions.len() > MAX_PARTITIONS {
            let message =
                format!("{} partitions do not fit a GPT, which holds {MAX_PARTITIONS}", self.partitions.len());
            check.report(path.join("partitions"), message);
        }
        let mut numbers: HashMap<u32, &str> = HashMap::new();
        for (part_name, part) in self.partitions.iter().filter(|_| self.table == TableFormat::Gpt) {
            let Some(number) = part.number else { continue };
            let field = path.join("partitions").join(part_name.clone()).join("number");
            if number == 0 || number as usize > MAX_PARTITIONS {
                check.report(field, format!("{number} is not a GPT partition number (1 to {MAX_PARTITIONS})"));
            } else if let Some(first) = numbers.insert(number, part_name) {
                check.report(field, format!("partition {first:?} has number {number} too"));
            }
        }
        for (part_name, part) in &self.partitions {
            let part_path = path.join("partitions").join(part_name.clone());
            let on = TableOn::Disk { table: self.table, sector: self.logical_sector_size };
            part.validate(check, plan, name, part_name, &part_path, on);
        }
        if self.table == TableFormat::Msdos {
            self.validate_msdos(check, &path);
        } else if self.extended.is_some() {
            check.report(path.join("extended"), "an extended partition belongs to an MBR table (table = \"msdos\")");
        }
        self.validate_signature(check, &path);
        self.validate_allocation(check, name, &path);
    }

    /// The disk signature of this disk's MBR table: the one given, or one derived from the plan.
    pub fn mbr_signature(&self, plan: &Plan, disk_name: &str) -> u32 {
        self.signature
            .as_deref()
            .and_then(|s| u32::from_str_radix(s, 16).ok())
            .unwrap_or_else(|| plan.disk_signature(disk_name))
    }

    /// A signature is an MBR table's: 8 hex digits, not zero; a kept MBR partition is known by it.
    fn validate_signature(&self, check: &mut Checker, path: &FieldPath) {
        let kept = self.partitions.values().any(|p| p.keep);
        match (&self.signature, self.table) {
            (Some(_), TableFormat::Gpt) => {
                check.report(path.join("signature"), "a disk signature belongs to an MBR table (table = \"msdos\")")
            }
            (Some(text), TableFormat::Msdos) => {
                let valid = text.len() == 8 && u32::from_str_radix(text, 16).is_ok_and(|s| s != 0);
                if !valid {
                    check.report(
                        path.join("signature"),
                        format!("{} is not a disk signature (8 hex digits, not all zero)", shown(text)),
                    );
                }
            }
            (None, TableFormat::Msdos) if kept => check.report(
                path.join("signature"),
                "an MBR table with kept partitions is identified by its disk signature: give the one it has",
            ),
            (None, _) => {}
        }
    }

    /// The limits of an MBR table: four entries, one of them the extended partition when there are
    /// logical ones, which come last.
    fn validate_msdos(&self, check: &mut Checker, path: &FieldPath) {
        let primaries = self.partitions.values().filter(|p| !p.logical).count();
        let any_logical = self.partitions.values().any(|p| p.logical);
        let room = if any_logical { 3 } else { 4 };
        if primaries > room {
            let message = if any_logical {
                format!("{primaries} primary partitions and an extended one do not fit an MBR table, which holds 4")
            } else {
                format!(
                    "{primaries} partitions do not fit an MBR table, which holds 4 primary ones: mark the later \
                     ones logical = true"
                )
            };
            check.report(path.join("partitions"), message);
        }
        let mut seen_logical = false;
        for (part_name, part) in &self.partitions {
            if seen_logical && !part.logical {
                check.report(
                    path.join("partitions").join(part_name.clone()).join("logical"),
                    "a primary partition cannot follow a logical one: logical partitions come last",
                );
            }
            seen_logical |= part.logical;
        }
        let kept_logical = self.partitions.values().any(|p| p.logical && p.keep);
        if any_logical && !kept_logical {
            let started = self.partitions.iter().find(|(_, p)| p.start.is_some() && !p.logical);
            if let Some((part_name, _)) = started {
                check.report(
                    path.join("partitions").join(part_name.clone()).join("start"),
                    "a start on an MBR disk with logical partitions is supported when they are kept only, so far",
                );
            }
        }
        if kept_logical {
            // The boot records of logical partitions lie where the table's maker put them, which a plan does
            // not say: such a table is only ever found, never written again.
            for (part_name, _) in self.partitions.iter().filter(|(_, p)| !p.keep) {
                check.report(
                    path.join("partitions").join(part_name.clone()).join("keep"),
                    "an MBR table with kept logical partitions is kept whole, so far: keep every partition of it",
                );
            }
        }
        match (&self.extended, kept_logical) {
            (None, true) => check.report(
                path.join("extended"),
                "kept logical partitions lie in the disk's extended partition: give its start and size (as probe \
                 reads them)",
            ),
            (Some(_), false) => check.report(
                path.join("extended"),
                "an extended partition is given for kept logical partitions only (nix-dabei places its own)",
            ),
            (Some(extended), true) if extended.extent(u64::from(self.logical_sector_size)).is_none() => check.report(
                path.join("extended"),
                format!(
                    "start and size are exact byte counts, multiples of the sector size ({} bytes)",
                    self.logical_sector_size
                ),
            ),
            _ => {}
        }
    }

    /// Kept logical partitions lie inside the extended partition, each after room for its boot record;
    /// primary ones lie outside it.
    fn validate_extended(&self, check: &mut Checker, path: &FieldPath, extents: &[Extent]) {
        let sector = u64::from(self.logical_sector_size);
        let Some(extended) = self.extended.and_then(|e| e.extent(sector)) else { return };
        if self.table != TableFormat::Msdos {
            return;
        }
        let mut record_room_from = extended.first_lba;
        for ((part_name, part), extent) in self.partitions.iter().zip(extents) {
            let field = path.join("partitions").join(part_name.clone()).join("start");
            let inside = extent.first_lba >= extended.first_lba && extent.last_lba <= extended.last_lba;
            let overlaps = extent.first_lba <= extended.last_lba && extent.last_lba >= extended.first_lba;
            if part.logical && (!inside || extent.first_lba <= record_room_from) {
                check.report(
                    field,
                    "is outside the extended partition, or leaves no room for its boot record before it: a logical \
                     partition lies inside it, after that room",
                );
            } else if !part.logical && overlaps {
                check.report(field, "overlaps the extended partition: a primary partition lies outside it");
            }
            if part.logical {
                record_room_from = extent.last_lba + 1;
            }
        }
    }

    fn validate_allocation(&self, check: &mut Checker, name: &str, path: &FieldPath) {
        let Some(size) = self.size else {
            let message = format!(
                "the size of disk {name:?} is not known: make the plan on the machine with the disk attached, \
                    or write its size in bytes"
            );
            check.report(path.join("size"), message);
            return;
        };
        if self.logical_sector_size != 512 && self.logical_sector_size != 4096 {
            return;
        }
        let sector = u64::from(self.logical_sector_size);
        // A start off a sector boundary is reported at its field; placing around it would only mislead.
        if self.partitions.values().any(|p| p.start.and_then(Size::bytes).is_some_and(|b| b % sector != 0)) {
            return;
        }
        match self.place(size) {
            Ok((extents, _)) => {
                self.validate_extended(check, path, &extents);
                for ((part_name, part), extent) in self.partitions.iter().zip(extents) {
                    // A kept FAT may be FAT16 or FAT12: it is never made again, so FAT32's minimum does not hold.
                    let vfat = !part.keep
                        && matches!(&part.content, Some(super::Content::Filesystem(fs))
                        if fs.format == super::filesystem::Format::Vfat);
                    let bytes = extent.sectors().saturating_mul(sector);
                    if vfat && bytes < fat32_minimum(sector) {
                        let message = format!(
                            "{} is too small for FAT32 with {sector}-byte sectors: give it at least {}",
                            human(bytes),
                            human(fat32_minimum(sector).div_ceil(MIN_PARTITION) * MIN_PARTITION)
                        );
                        check.report(path.join("partitions").join(part_name.clone()).join("size"), message);
                    }
                }
            }
            Err(error) => self.report_allocation(check, name, size, path, error),
        }
    }

    /// Where the partitions lie on a disk of `size` bytes, and the extended partition of an MBR table.
    fn place(&self, size: u64) -> Result<(Vec<Extent>, Option<Extent>), AllocError> {
        let sector = u64::from(self.logical_sector_size);
        let sizes: Vec<Size> = self.partitions.values().map(|p| p.size).collect();
        match self.table {
            TableFormat::Gpt => {
                let starts: Vec<Option<u64>> =
                    self.partitions.values().map(|p| p.start.and_then(|s| s.bytes())).collect();
                Ok((allocate_at(Geometry::new(size, sector), &sizes, &starts)?, None))
            }
            // Partitions where they are (kept ones), logical ones in the extended partition the disk has.
            TableFormat::Msdos if self.partitions.values().any(|p| p.start.is_some()) => {
                let starts: Vec<Option<u64>> =
                    self.partitions.values().map(|p| p.start.and_then(|s| s.bytes())).collect();
                let extents = allocate_at(Geometry::msdos(size, sector), &sizes, &starts)?;
                if let Some(index) = extents.iter().position(|e| e.last_lba > u64::from(u32::MAX)) {
                    return Err(AllocError::BeyondMbr { index });
                }
                let extended = self.extended.and_then(|e| e.extent(sector));
                Ok((extents, extended.filter(|_| self.partitions.values().any(|p| p.logical))))
            }
            TableFormat::Msdos => {
                let logical: Vec<bool> = self.partitions.values().map(|p| p.logical).collect();
                let placed = allocate_msdos(Geometry::msdos(size, sector), &sizes, &logical)?;
                Ok((placed.extents, placed.extended))
            }
        }
    }

    fn report_allocation(&self, check: &mut Checker, name: &str, size: u64, path: &FieldPath, error: AllocError) {
        let at_fault = error.partition_index().and_then(|i| self.partitions.get_index(i));
        let field = match (at_fault, &error) {
            (Some((part_name, _)), AllocError::StartOverlaps { .. }) => {
                path.join("partitions").join(part_name.clone()).join("start")
            }
            (Some((part_name, _)), _) => path.join("partitions").join(part_name.clone()).join("size"),
            (None, _) => path.join("size"),
        };
        let message = match (error, at_fault.map(|(_, p)| p.size)) {
            (AllocError::DoesNotFit { needed, start, end, .. }, _) => format!(
                "{} does not fit: it would start at {} but disk {name:?} ({}) has room up to {}",
                human(needed),
                human(start),
                human(size),
                human(end)
            ),
            (AllocError::NothingLeft { left, .. }, Some(Size::AllBut(before_end))) => format!(
                "\"-{}\" ends {} before the end of disk {name:?}, which has {} in all: nothing is left for this \
                 partition ({} remain where it would start)",
                format_exact(before_end),
                human(before_end),
                human(size),
                human(left)
            ),
            (AllocError::StartOverlaps { start, free, .. }, _) => format!(
                "starts at {} ({start} bytes), inside what comes before it: the first free byte is {free} ({})",
                human(start),
                human(free)
            ),
            (other, _) => other.to_string(),
        };
        check.report(field, message);
    }

    /// The wipe, the partition table, and the contents of every partition.
    pub(crate) fn compile(&self, build: &mut Builder<'_>, disk_name: &str) {
        let device = self.device.clone();
        // Validation has made sure of both; a plan compiled without it gets no steps for this disk.
        let Some(size) = self.size else { return };
        let Ok((extents, extended)) = self.place(size) else { return };
        let wipe = build.push(
            format!("wipe:{disk_name}"),
            format!("Wipe disk {disk_name} ({device}, {}): every signature and partition table", human(size)),
            vec![device.clone()],
            Some(disk_name),
            vec![],
            Operation::Wipe(Wipe { device: device.clone(), discard: self.discard }),
        );
        let mut partitions = Vec::new();
        let msdos = (self.table == TableFormat::Msdos)
            .then(|| MsdosTable { signature: self.mbr_signature(build.plan, disk_name), extended });
        let numbers = self.partition_numbers();
        for (((part_name, part), extent), number) in self.partitions.iter().zip(extents).zip(numbers) {
            let (name, type_guid) = match msdos {
                Some(_) => (String::new(), format!("{:02X}", mbr_type(&part.effective_type()).unwrap_or(0x83))),
                None => (
                    part.label.clone().unwrap_or_else(|| default_partition_label(disk_name, part_name)),
                    type_guid(&part.effective_type()).unwrap_or_default(),
                ),
            };
            partitions.push(GptPartition {
                number,
                name,
                type_guid,
                uuid: build.plan.partition_uuid(disk_name, part_name),
                bootable: part.bootable,
                extent,
                attributes: part.attributes.clone(),
                device: partition_device(&device, number),
            });
        }
        let (id, description) = match msdos {
            Some(_) => (format!("mbr:{disk_name}"), "an MBR (msdos) table"),
            None => (format!("gpt:{disk_name}"), "a GPT"),
        };
        let table = build.push(
            id,
            format!("Write {description} with {} partition(s) to disk {disk_name} ({device})", partitions.len()),
            vec![device.clone()],
            Some(disk_name),
            vec![wipe.clone()],
            Operation::PartitionTable(PartitionTable {
                device: device.clone(),
                logical_sector_size: self.logical_sector_size,
                disk_size: size,
                partitions: partitions.clone(),
                msdos,
            }),
        );
        // The wipe and a table that differs would destroy a kept partition: both may only be found done.
        let kept: Vec<String> =
            self.partitions.iter().filter(|(_, p)| p.keep).map(|(name, _)| format!("{disk_name}/{name}")).collect();
        if !kept.is_empty() {
            let kept = kept.join(", ");
            build.steps.iter_mut().filter(|s| s.id == wipe || s.id == table).for_each(|s| s.keeps = Some(kept.clone()));
        }
        for ((part_name, part), entry) in self.partitions.iter().zip(partitions) {
            if let Some(content) = &part.content {
                let owner = format!("{disk_name}/{part_name}");
                let first = build.steps.len();
                build.content(
                    content,
                    &Site { device: &entry.device, provider: &table, owner: &owner, disk: Some(disk_name) },
                );
                if part.keep {
                    build.steps[first..]
                        .iter_mut()
                        .filter(|s| s.destructive)
                        .for_each(|s| s.keeps = Some(owner.clone()));
                }
            }
        }
    }

    /// The disk as disko's `type = "disk"` with a gpt content (a legacy `table` for MBR).
    pub(crate) fn to_disko(&self, w: &mut Writer, disk_name: &str) -> Result<(), crate::disko::ExportError> {
        if self.table == TableFormat::Msdos {
            return legacy::to_disko(self, w, disk_name);
        }
        // disko numbers partitions in its (priority) order, which is the plan's.
        let numbers = self.partition_numbers();
        if let Some((index, number)) = numbers.iter().enumerate().find(|(i, n)| **n != *i as u32 + 1) {
            let name = self.partitions.get_index(index).map(|(name, _)| name.clone()).unwrap_or_default();
            return Err(crate::disko::ExportError {
                path: FieldPath::root().join("disks").join(disk_name).join("partitions").join(name).join("number"),
                message: format!(
                    "is {number}, the {}. partition in the disk's order: disko numbers partitions in their order",
                    index + 1
                ),
            });
        }
        w.open(disk_name);
        w.string("type", "disk");
        w.string("device", &self.device);
        w.open("content");
        w.string("type", "gpt");
        partitions_to_disko(w, disk_name, &self.partitions, u64::from(self.logical_sector_size));
        w.close();
        w.close();
        Ok(())
    }
}

/// Whether the partition `owner` (`disk/partition`) may have grown: it is kept, and the last of its disk's
/// partitions, so the free space after it is what it grows into.
pub(crate) fn may_grow(plan: &Plan, owner: &str) -> bool {
    let Some((disk, part)) = owner.split_once('/') else { return false };
    let Some(disk) = plan.disks.get(disk) else { return false };
    disk.partitions.last().is_some_and(|(name, p)| name == part && p.keep)
}

/// Whether the filesystem of `owner` grows with its partition: it lies on the partition itself (inside a
/// LUKS container it would need the container resized first, which nix-dabei does not do yet).
pub(crate) fn filesystem_may_grow(plan: &Plan, owner: &str) -> bool {
    may_grow(plan, owner)
        && matches!(plan.partition_at(owner).and_then(|p| p.content.as_ref()), Some(super::Content::Filesystem(_)))
}

/// The `partitions` of disko's gpt type (on a disk or inside an array), in the plan's order.
pub(crate) fn partitions_to_disko(
    w: &mut Writer,
    disk_name: &str,
    partitions: &IndexMap<String, Partition>,
    sector: u64,
) {
    w.open("partitions");
    for (index, (part_name, part)) in partitions.iter().enumerate() {
        w.open(part_name);
        // disko orders by priority: keep the plan's order.
        w.line(&format!("priority = {};", 1000 + index));
        if part.keep {
            // disko has no such thing: its _create formats the whole disk.
            w.line("# kept by nix-dabei: disko's _create would destroy it");
        }
        match (part.start.and_then(Size::bytes), part.size) {
            // Where it is, to the sector (disko aligns to 1 for starts in sectors).
            (Some(start), Size::Bytes(bytes)) => {
                w.string("start", &format!("{}s", start / sector));
                w.string("end", &format!("{}s", (start + bytes) / sector - 1));
            }
            (_, Size::Bytes(bytes)) => w.string("size", &format_exact(bytes)),
            (_, Size::Rest) => w.string("size", "100%"),
            (_, Size::AllBut(bytes)) => w.string("end", &format!("-{}", format_exact(bytes))),
        }
        w.string("type", &code_of(&part.effective_type()));
        w.string("label", &part.label.clone().unwrap_or_else(|| default_partition_label(disk_name, part_name)));
        if let Some(uuid) = &part.uuid {
            w.string("uuid", uuid);
        }
        if !part.attributes.is_empty() {
            let bits: Vec<String> = part.attributes.iter().map(u32::to_string).collect();
            w.line(&format!("attributes = [ {} ];", bits.join(" ")));
        }
        if let Some(content) = &part.content {
            w.content_of(&format!("{disk_name}/{part_name}"), content);
        }
        w.close();
    }
    w.close();
}

impl Partition {
    pub(crate) fn validate(
        &self,
        check: &mut Checker,
        plan: &Plan,
        disk_name: &str,
        part_name: &str,
        path: &FieldPath,
        on: TableOn,
    ) {
        let (table, disk_sector) = match on {
            TableOn::Disk { table, sector } => (table, Some(sector)),
            TableOn::Array => (TableFormat::Gpt, None),
        };
        if !valid_name(part_name) {
            check.report(path.clone(), format!("{part_name:?} is not a usable partition name (no '/', not empty)"));
        }
        if table == TableFormat::Msdos {
            self.validate_msdos(check, path);
        } else {
            for (field, set) in [("bootable", self.bootable), ("logical", self.logical)] {
                if set {
                    let message = if field == "bootable" {
                        "the boot flag is an MBR one: on gpt, set attributes = [2] (legacy BIOS bootable)"
                    } else {
                        "logical partitions exist only in MBR tables (table = \"msdos\" on the disk)"
                    };
                    check.report(path.join(field), message);
                }
            }
        }
        if let Some(kind) = self.kind.as_ref().filter(|_| table == TableFormat::Gpt) {
            match type_guid(kind) {
                None => check.report(
                    path.join("type"),
                    format!(
                        "{kind:?} is not a partition type (esp, bios-boot, linux, swap, luks, zfs, raid, \
                        lvm, an sgdisk code or a GUID)"
                    ),
                ),
                Some(guid) if type_name(&guid) == Some("esp") => {
                    let is_vfat = |content: Option<&super::Content>| {
                        let format = match content {
                            Some(super::Content::Filesystem(fs)) => Some(fs.format),
                            _ => None,
                        };
                        format == Some(super::filesystem::Format::Vfat)
                    };
                    // A mirrored ESP: firmware reads each member as FAT when the superblock is at the end.
                    let mirrored = match &self.content {
                        Some(super::Content::MdMember(m)) => plan
                            .raids
                            .get(&m.array)
                            .is_some_and(|r| r.level == 1 && r.metadata == "1.0" && is_vfat(r.content.as_ref())),
                        _ => false,
                    };
                    // A kept ESP read back without a filesystem is described as it is: a plan may format it.
                    let kept_blank = self.keep && self.content.is_none();
                    if !is_vfat(self.content.as_ref()) && !mirrored && !kept_blank {
                        check.report(
                            path.join("content"),
                            "an EFI system partition must hold a vfat filesystem (or be a member of a RAID 1 array \
                             with metadata 1.0 holding one)",
                        );
                    }
                }
                Some(_) => {}
            }
        }
        let last = may_grow(plan, &format!("{disk_name}/{part_name}"));
        // A member of a kept pool, array or volume group: each is known by its GUID or UUID.
        let member_of_kept = |content: &super::Content| match content {
            super::Content::Zfs(member) => plan.pools.get(&member.pool).is_some_and(|p| p.keep),
            super::Content::MdMember(member) => plan.raids.get(&member.array).is_some_and(|r| r.keep),
            super::Content::LvmPv(pv) => plan.volume_groups.get(&pv.volume_group).is_some_and(|g| g.keep),
            _ => false,
        };
        self.validate_start_and_keep(check, path, table, disk_sector, last, &member_of_kept);
        // A kept partition is as small as it was made.
        if let (Size::Bytes(bytes), false) = (self.size, self.keep) {
            if bytes < MIN_PARTITION {
                let message = format!("{} is smaller than a partition can be (1 MiB, its alignment)", human(bytes));
                check.report(path.join("size"), message);
            }
        }
        if let Some(content) = &self.content {
            check.content(plan, content, &path.join("content"), false);
        }
        if table == TableFormat::Msdos {
            return;
        }
        let label = self.label.clone().unwrap_or_else(|| default_partition_label(disk_name, part_name));
        if label.encode_utf16().count() > 36 || label.chars().any(char::is_control) {
            let message =
                format!("{} is not a GPT partition name (up to 36 characters, no control characters)", shown(&label));
            check.report(path.join("label"), message);
        }
        // A kept partition's name is whatever it was given: two may share one (often the empty one).
        if !self.keep {
            check.claim_partition_label(&label, path.join("label"));
        }
        for (index, bit) in self.attributes.iter().enumerate() {
            if *bit > 63 {
                check.report(
                    path.join("attributes").join(format!("[{index}]")),
                    format!("{bit} is not a GPT attribute bit (0 to 63)"),
                );
            }
        }
        if let Some(uuid) = &self.uuid {
            if !is_guid(uuid) {
                check.report(path.join("uuid"), format!("{} is not a UUID", shown(uuid)));
            } else {
                check.claim_partition_uuid(uuid, path.join("uuid"));
            }
        }
    }

    /// A start is a byte offset on a sector boundary (GPT only, so far); a kept partition says exactly
    /// where it is and which it is, and holds nothing nix-dabei cannot identify.
    /// `sector` is the disk's; `None` inside an array, where neither is supported yet.
    /// A kept partition that is the disk's `last` may give a larger size (or `"rest"`): it grows into the
    /// free space after it.
    fn validate_start_and_keep(
        &self,
        check: &mut Checker,
        path: &FieldPath,
        table: TableFormat,
        sector: Option<u32>,
        last: bool,
        member_of_kept: &dyn Fn(&super::Content) -> bool,
    ) {
        let Some(sector) = sector else {
            for (field, set) in
                [("start", self.start.is_some()), ("number", self.number.is_some()), ("keep", self.keep)]
            {
                if set {
                    check.report(path.join(field), "is supported on a disk's partitions only, so far, not an array's");
                }
            }
            return;
        };
        match self.start {
            None => {}
            Some(_) if table == TableFormat::Msdos && self.logical && !self.keep => check.report(
                path.join("start"),
                "a start on a logical MBR partition is supported on a kept one only (as probe reads it), so far",
            ),
            Some(Size::Bytes(bytes)) if bytes % u64::from(sector) == 0 => {}
            Some(Size::Bytes(bytes)) => check.report(
                path.join("start"),
                format!("{bytes} is not on a sector boundary (a multiple of {sector} bytes on this disk)"),
            ),
            Some(_) => check.report(path.join("start"), "a start is a byte offset from the disk's beginning"),
        }
        if !self.keep {
            return;
        }
        let msdos = table == TableFormat::Msdos;
        // On MBR, numbers follow the plan's order and the disk signature identifies the partitions.
        let missing = [
            ("number", !msdos && self.number.is_none(), "its number"),
            ("start", self.start.is_none(), "where it begins"),
            (
                "size",
                self.size.bytes().is_none() && !last && !self.logical,
                "its exact size in bytes (only the last may grow)",
            ),
            (
                "size",
                self.size.bytes().is_none() && self.logical,
                "its exact size in bytes (a logical one does not grow)",
            ),
            ("uuid", !msdos && self.uuid.is_none(), "its partition UUID, which identifies it"),
        ];
        for (field, is_missing, what) in missing {
            if is_missing {
                check.report(path.join(field), format!("a kept partition must say {what}"));
            }
        }
        let identified = |content: &super::Content| match content {
            super::Content::Filesystem(fs) => fs.uuid.is_some(),
            super::Content::Swap(swap) => swap.uuid.is_some(),
            _ => false,
        };
        match &self.content {
            None => {}
            Some(content @ (super::Content::Filesystem(_) | super::Content::Swap(_))) if identified(content) => {}
            Some(super::Content::Filesystem(_) | super::Content::Swap(_)) => check.report(
                path.join("content").join("uuid"),
                "what a kept partition holds is identified by its UUID: give the one it has",
            ),
            // A kept LUKS container: its header's UUID identifies it, the UUID of what it holds its content.
            Some(super::Content::Luks(luks)) => {
                let at = path.join("content").join("luks");
                if luks.uuid.is_none() {
                    check.report(at.join("uuid"), "a kept LUKS container is identified by its header's UUID: give it");
                }
                match luks.content.as_ref() {
                    content @ (super::Content::Filesystem(_) | super::Content::Swap(_)) if !identified(content) => {
                        check.report(
                            at.join("content").join("uuid"),
                            "what a kept LUKS container holds is identified by its UUID: give the one it has",
                        )
                    }
                    super::Content::Filesystem(_) | super::Content::Swap(_) => {}
                    content if member_of_kept(content) => {}
                    _ => check.report(
                        at.join("content"),
                        "a kept LUKS container may hold a filesystem or swap (with their UUIDs), or a physical \
                         volume of a kept volume group, so far",
                    ),
                }
            }
            // A member of a kept pool: the pool is known by its GUID.
            Some(content) if member_of_kept(content) => {}
            Some(_) => check.report(
                path.join("content"),
                "a kept partition may hold a filesystem or swap (with their UUIDs), a LUKS container of one, a \
                 member of a kept pool, array or volume group, or be left without content, so far",
            ),
        }
    }

    /// What an MBR partition cannot have: a GPT name, UUID or attributes, a type with no MBR byte.
    fn validate_msdos(&self, check: &mut Checker, path: &FieldPath) {
        if let Some(kind) = &self.kind {
            if mbr_type(kind).is_none() {
                let message = if type_guid(kind).is_some_and(|g| type_name(&g) == Some("bios-boot")) {
                    "an MBR disk needs no BIOS boot partition: GRUB's core image goes in the 1 MiB before the first \
                     partition"
                        .to_string()
                } else {
                    format!(
                        "{kind:?} is not an MBR partition type (esp, linux, swap, luks, zfs, raid, lvm, or a byte \
                         such as 0x83)"
                    )
                };
                check.report(path.join("type"), message);
            }
        }
        if self.number.is_some() {
            check.report(
                path.join("number"),
                "on MBR, numbers follow the plan's order (primary partitions from 1, logical ones from 5)",
            );
        }
        let gpt_only = [
            ("label", self.label.is_some()),
            ("uuid", self.uuid.is_some()),
            ("attributes", !self.attributes.is_empty()),
        ];
        for (field, set) in gpt_only {
            if set {
                let message = format!(
                    "MBR partitions have no {field}: it exists only on gpt (MBR partition UUIDs are the disk \
                     signature and the number)"
                );
                check.report(path.join(field), message);
            }
        }
        let vfat = matches!(&self.content, Some(super::Content::Filesystem(fs))
            if fs.format == super::filesystem::Format::Vfat);
        if self.is_esp() && !vfat && !(self.keep && self.content.is_none()) {
            check.report(path.join("content"), "an EFI system partition must hold a vfat filesystem");
        }
    }
}

fn code_of(kind: &str) -> String {
    KNOWN_TYPES.iter().find(|t| t.name == kind).map_or_else(|| kind.to_string(), |t| t.code.to_string())
}

/// A label of at most 36 characters that stays unique: a prefix and a hash of the whole.
fn shorten_label(label: &str) -> String {
    let hash = crate::compile::fnv1a(label.as_bytes(), 0);
    let prefix: String = label.chars().take(27).collect();
    format!("{prefix}-{:08x}", hash as u32)
}

/// Reads disko's `type = "disk"` with a gpt content. Disks carry no size or identity: disko has none.
pub(crate) fn disk_from_disko(r: &mut Reader, name: &str, value: &Value, path: &FieldPath) -> Option<Disk> {
    let object = r.object(value, path)?;
    r.only(object, path, &["type", "device", "content", "imageSize", "imageName", "name"]);
    for key in ["imageSize", "imageName"] {
        if object.contains_key(key) {
            r.warn(format!("{}: not carried over: only disko's VM images use it", path.join(key)));
        }
    }
    let Some(device) = r.string(object, "device", path) else {
        r.refuse(&path.join("device"), "is missing");
        return None;
    };
    let content_path = path.join("content");
    let content = r.object(object.get("content").unwrap_or(&Value::Null), &content_path)?;
    let kind = r.string(content, "type", &content_path).unwrap_or_default();
    match kind.as_str() {
        "gpt" => {}
        "table" => return legacy::disk_from_disko(r, device, content, &content_path),
        "zfs" => {
            // zpool itself puts a GPT on a whole disk and the pool in its first partition: the plan says so.
            let member = r.content(&Value::Object(content.clone()), &content_path, false)?;
            r.warn(format!(
                "{content_path}: the pool's member is a partition covering the disk (zpool partitions a whole \
                 disk the same way)"
            ));
            let partition = Partition {
                number: None,
                keep: false,
                start: None,
                size: Size::Rest,
                kind: Some("zfs".into()),
                label: None,
                uuid: None,
                attributes: vec![],
                bootable: false,
                logical: false,
                content: Some(member),
            };
            let partitions = IndexMap::from([("zfs".to_string(), partition)]);
            return Some(Disk::from_disko(device, TableFormat::Gpt, partitions));
        }
        other => {
            r.refuse(
                &content_path.join("type"),
                format!("{other:?} directly on the disk is not supported: partition it with gpt"),
            );
            return None;
        }
    }
    let partitions = partitions_from_disko(r, name, content, &content_path);
    Some(Disk::from_disko(device, TableFormat::Gpt, partitions))
}

/// The partitions of disko's gpt type (on a disk or inside an array), in disko's order: by priority,
/// then by name.
pub(crate) fn partitions_from_disko(
    r: &mut Reader,
    name: &str,
    content: &crate::disko::Object,
    content_path: &FieldPath,
) -> IndexMap<String, Partition> {
    r.only(content, content_path, &["type", "partitions", "efiGptPartitionFirst"]);
    if content.get("efiGptPartitionFirst") == Some(&Value::Bool(false)) {
        r.refuse(&content_path.join("efiGptPartitionFirst"), "hybrid MBRs are not supported");
    }
    let parts_path = content_path.join("partitions");
    let mut partitions: Vec<(u32, String, Partition)> = Vec::new();
    if let Some(parts) = content.get("partitions").and_then(|p| r.object(p, &parts_path)) {
        for (key, value) in parts {
            if let Some(part) = partition_from_disko(r, name, key, value, &parts_path.join(key.clone())) {
                partitions.push(part);
            }
        }
    }
    partitions.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    partitions.into_iter().map(|(_, key, part)| (key, part)).collect()
}

/// disko's `size`/`start`/`end` as a plan's start and size, or the reason there are none. A start in
/// sectors (`"2048s"`, as export writes where a partition is) or on a MiB boundary past the first MiB
/// is where the partition begins; `"0"` or up to `"1M"` means "where the one before ends".
fn size_from_disko(r: &mut Reader, object: &crate::disko::Object, path: &FieldPath) -> Option<(Option<Size>, Size)> {
    let start = r.string(object, "start", path).unwrap_or_else(|| "0".into());
    let (start_bytes, exact_start) = match start.as_str() {
        "0" => (0, None),
        other => match sectors_from_disko(r, other).or_else(|| parse_bytes(other)) {
            Some(bytes) if bytes <= 1 << 20 && !other.ends_with('s') => (bytes, None),
            Some(bytes) if other.ends_with('s') || bytes % (1 << 20) == 0 => (bytes, Some(Size::Bytes(bytes))),
            _ => {
                let message = format!(
                    "{other:?}: a start is \"0\", up to \"1M\" (where the one before ends), a MiB boundary or \
                     a sector (\"2048s\")"
                );
                r.refuse(&path.join("start"), message);
                return None;
            }
        },
    };
    // Where the partition begins, for an absolute end: a start up to 1 MiB means 1 MiB, as disko aligns.
    let begins = if exact_start.is_some() { start_bytes } else { start_bytes.max(1 << 20) };
    size_of_disko(r, object, path, begins).map(|size| (exact_start, size))
}

/// A disko position in sectors (`"4096s"`) as bytes. disko's disks have no sector size: 512 bytes is
/// assumed, and said.
fn sectors_from_disko(r: &mut Reader, text: &str) -> Option<u64> {
    let sectors: u64 = text.strip_suffix('s')?.parse().ok()?;
    r.warn(
        "positions in sectors (\"2048s\") are read as 512-byte sectors: disko's disks have no sector size; for \
         a disk with 4096-byte ones, set its logical_sector_size and the starts and sizes in bytes"
            .to_string(),
    );
    sectors.checked_mul(512)
}

/// disko's `size` or `end` as a plan size, for a partition that begins at byte `begins`.
fn size_of_disko(r: &mut Reader, object: &crate::disko::Object, path: &FieldPath, begins: u64) -> Option<Size> {
    let size_text = r.string(object, "size", path);
    let end_text = r.string(object, "end", path);
    match (size_text.as_deref(), end_text.as_deref()) {
        (Some("100%"), _) => Some(Size::Rest),
        (Some(text), _) => match parse_bytes(text) {
            Some(bytes) => Some(Size::Bytes(bytes)),
            None => {
                r.refuse(
                    &path.join("size"),
                    format!("{text:?} is not a size (a number with K, M, G, T or P, or \"100%\")"),
                );
                None
            }
        },
        (None, Some("100%" | "-0")) => Some(Size::Rest),
        (None, Some(end)) => {
            let parsed = if let Some(rest) = end.strip_prefix('-') {
                parse_bytes(rest).map(Size::AllBut)
            } else if let Some(rest) = end.strip_prefix('+') {
                parse_bytes(rest).map(Size::Bytes)
            } else if end.ends_with('s') {
                // The last sector, as sgdisk takes it.
                sectors_from_disko(r, end)
                    .and_then(|e| (e + 512).checked_sub(begins))
                    .filter(|b| *b > 0)
                    .map(Size::Bytes)
            } else {
                parse_bytes(end).and_then(|e| e.checked_sub(begins)).filter(|b| *b > 0).map(Size::Bytes)
            };
            if parsed.is_none() {
                r.refuse(
                    &path.join("end"),
                    format!("{end:?} is not an end (\"-1G\", \"+1G\", an offset after the start, or \"100%\")"),
                );
            }
            parsed
        }
        (None, None) => {
            r.refuse(path, "has neither size nor end");
            None
        }
    }
}

/// One partition of a disko gpt, with the priority disko sorts by.
fn partition_from_disko(
    r: &mut Reader,
    disk: &str,
    key: &str,
    value: &Value,
    path: &FieldPath,
) -> Option<(u32, String, Partition)> {
    let object = r.object(value, path)?;
    let known = [
        "size",
        "start",
        "end",
        "type",
        "label",
        "priority",
        "content",
        "uuid",
        "attributes",
        "name",
        "alignment",
        "device",
        "_index",
    ];
    r.only(object, path, &known);
    if object.contains_key("alignment") && object.get("alignment") != Some(&Value::from(0)) {
        r.refuse(&path.join("alignment"), "nix-dabei aligns every partition to 1 MiB");
    }
    let name = r.string(object, "name", path).unwrap_or_else(|| key.to_string());
    let (start, size) = size_from_disko(r, object, path)?;
    let content = object.get("content").and_then(|c| r.content(c, &path.join("content"), false));
    let default_code = if matches!(content, Some(super::Content::Swap(_))) { "8200" } else { "8300" };
    let code = r.string(object, "type", path).unwrap_or_else(|| default_code.into());
    let kind =
        KNOWN_TYPES.iter().find(|t| t.code.eq_ignore_ascii_case(&code)).map_or(code.clone(), |t| t.name.to_string());
    let default_priority = if code.eq_ignore_ascii_case("EF02") {
        100
    } else if size == Size::Rest {
        9001
    } else {
        1000
    };
    let priority = object.get("priority").and_then(Value::as_u64).map_or(default_priority, |p| p as u32);
    // A label equal to disko's default is the plan's default too.
    let mut label = r.string(object, "label", path).filter(|l| *l != default_partition_label(disk, key));
    if label.is_none() {
        let default = default_partition_label(disk, &name);
        if default.encode_utf16().count() > 36 {
            let short = shorten_label(&default);
            r.warn(format!("{}: the label {default:?} is longer than GPT allows; using {short:?}", path.join("label")));
            label = Some(short);
        } else if name != key {
            label = Some(default);
        }
    }
    let attributes = match object.get("attributes") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(bits)) => bits.iter().filter_map(|b| b.as_u64().map(|b| b as u32)).collect(),
        Some(_) => {
            r.refuse(&path.join("attributes"), "is not a list of bit numbers");
            vec![]
        }
    };
    let uuid = r.string(object, "uuid", path);
    Some((
        priority,
        key.to_string(),
        Partition {
            number: None,
            keep: false,
            start,
            size,
            kind: Some(kind),
            label,
            uuid,
            attributes,
            bootable: false,
            logical: false,
            content,
        },
    ))
}
