//! The plan: what the disks of a machine should look like after an install.
//!
//! A [`Plan`] is written by people (TOML) or programs (JSON). It names whole disks by a stable path and the
//! identity they had when the plan was made, lays GPT partitions on them, and says what each partition
//! holds: a filesystem, swap, a LUKS2 container or a member of a ZFS pool. Pools carry their topology,
//! options and datasets.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::size::Size;

/// The version of the plan format this library reads and writes.
pub const PLAN_VERSION: u32 = 1;

/// A whole disk layout and the host it is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Format version; always [`PLAN_VERSION`].
    #[serde(default = "plan_version")]
    pub version: u32,
    /// Host name of the installed system.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// `networking.hostId` of the installed system (8 hex digits); ZFS refuses to import pools on a host
    /// whose id differs from the one that last used them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// Flake reference to install, such as `github:me/machines#web1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flake: Option<String>,
    /// The disks, by the name the plan gives them.
    #[serde(default)]
    pub disks: IndexMap<String, Disk>,
    /// The ZFS pools, by pool name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub pools: IndexMap<String, Pool>,
}

fn plan_version() -> u32 {
    PLAN_VERSION
}

fn default_hostname() -> String {
    "nixos".to_string()
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
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
    /// The GPT partitions, in table order.
    #[serde(default)]
    pub partitions: IndexMap<String, Partition>,
}

fn default_sector() -> u32 {
    512
}

fn is_default_sector(value: &u32) -> bool {
    *value == 512
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
    /// Size, or `"rest"` for what remains of the disk. Starts are aligned to 1 MiB.
    pub size: Size,
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
    /// What the partition holds; nothing when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
}

/// What a partition, a LUKS container or a ZFS volume holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    /// A filesystem.
    Filesystem(Filesystem),
    /// Swap space.
    Swap(Swap),
    /// A LUKS2 container and what it holds.
    Luks(Luks),
    /// A member of a ZFS pool.
    Zfs(ZfsMember),
}

impl Content {
    /// The kind of content, as written in plans.
    pub fn kind(&self) -> &'static str {
        match self {
            Content::Filesystem(_) => "filesystem",
            Content::Swap(_) => "swap",
            Content::Luks(_) => "luks",
            Content::Zfs(_) => "zfs",
        }
    }
}

/// A filesystem format nix-dabei can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// FAT32, for EFI system partitions.
    Vfat,
    /// ext4.
    Ext4,
    /// XFS.
    Xfs,
    /// Btrfs (a single filesystem; subvolumes are not modelled).
    Btrfs,
}

impl Format {
    /// The name `mount -t` and `fileSystems.*.fsType` use.
    pub fn fs_type(self) -> &'static str {
        match self {
            Format::Vfat => "vfat",
            Format::Ext4 => "ext4",
            Format::Xfs => "xfs",
            Format::Btrfs => "btrfs",
        }
    }
}

/// A filesystem on a partition, LUKS container or ZFS volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    /// The format to create.
    pub format: Format,
    /// Where it is mounted in the installed system; not mounted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
    /// Mount options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
    /// Filesystem label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Extra arguments for mkfs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mkfs_options: Vec<String>,
}

/// Swap space.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Swap {
    /// Encrypt with a fresh random key at every boot (the contents never survive a reboot).
    #[serde(default, skip_serializing_if = "is_false")]
    pub random_encryption: bool,
    /// Swap priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Swap label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// How the installed system discards freed swap: "once", "pages" or "both".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_policy: Option<String>,
    /// Resume from hibernation from this swap.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resume_device: bool,
}

/// A LUKS2 container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Luks {
    /// Name of the opened device, `/dev/mapper/<name>`.
    pub name: String,
    /// Where the key comes from when formatting and at boot: `"prompt"` (a passphrase typed or given to
    /// `apply`) or `"file:///path"` (a key file that exists when applying and in the booted initrd).
    #[serde(default = "default_key_location")]
    pub key: String,
    /// LUKS label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// With `key = "prompt"`: read the passphrase from this file when formatting instead of asking;
    /// the booted system still asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<String>,
    /// Pass discards through to the disk.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub allow_discards: bool,
    /// What the opened container holds.
    pub content: Box<Content>,
}

fn default_key_location() -> String {
    "prompt".to_string()
}

/// A partition (or the LUKS container on it) that belongs to a ZFS pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZfsMember {
    /// The pool's name; it must be one of the plan's pools.
    pub pool: String,
}

/// How the devices of one vdev are combined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VdevMode {
    /// Plain devices, striped (no redundancy).
    #[default]
    Stripe,
    /// Copies on every device.
    Mirror,
    /// Single parity.
    Raidz1,
    /// Double parity.
    Raidz2,
    /// Triple parity.
    Raidz3,
}

impl VdevMode {
    /// The fewest devices `zpool create` accepts for one vdev of this mode.
    pub fn minimum_members(self) -> usize {
        match self {
            VdevMode::Stripe => 1,
            VdevMode::Mirror => 2,
            VdevMode::Raidz1 => 2,
            VdevMode::Raidz2 => 3,
            VdevMode::Raidz3 => 4,
        }
    }

    /// The word `zpool create` uses, or `None` for plain devices.
    pub fn keyword(self) -> Option<&'static str> {
        match self {
            VdevMode::Stripe => None,
            VdevMode::Mirror => Some("mirror"),
            VdevMode::Raidz1 => Some("raidz1"),
            VdevMode::Raidz2 => Some("raidz2"),
            VdevMode::Raidz3 => Some("raidz3"),
        }
    }
}

/// One vdev: a mode and its members, each written `"<disk>/<partition>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vdev {
    /// How the members are combined.
    #[serde(default)]
    pub mode: VdevMode,
    /// The member partitions, `"<disk>/<partition>"`.
    pub members: Vec<String>,
}

/// A ZFS pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// The mode of the single data vdev formed by every member partition, when `vdevs` is not given.
    #[serde(default)]
    pub mode: VdevMode,
    /// Explicit data vdevs. When given, every member partition of the pool must appear in exactly one
    /// vdev, log, cache or spare.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vdevs: Vec<Vdev>,
    /// Separate intent log vdevs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<Vdev>,
    /// Cache devices, `"<disk>/<partition>"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<String>,
    /// Hot spares, `"<disk>/<partition>"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spare: Vec<String>,
    /// Pool properties (`zpool create -o`), such as `ashift` and `autotrim`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Properties of the pool's root dataset (`zpool create -O`), inherited by every dataset;
    /// native encryption set here covers the whole pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub root_fs_options: BTreeMap<String, String>,
    /// Where the pool's root dataset is mounted in the installed system; not mounted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
    /// Datasets, by name relative to the pool (`"root"`, `"home/alice"`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub datasets: IndexMap<String, Dataset>,
}

/// What a dataset is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// A ZFS filesystem.
    #[default]
    Filesystem,
    /// A ZFS volume (a block device), which may hold a filesystem or swap.
    Volume,
}

/// A ZFS dataset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// Filesystem or volume.
    #[serde(default, skip_serializing_if = "is_filesystem")]
    pub kind: DatasetKind,
    /// Where the filesystem is mounted in the installed system. nix-dabei mounts it as a legacy mount
    /// (`mountpoint=legacy`), listed in `fileSystems`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
    /// Mount options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
    /// ZFS properties (`zfs create -o`); native encryption may be set here too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// Size of a volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// What a volume holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
}

fn is_filesystem(kind: &DatasetKind) -> bool {
    *kind == DatasetKind::Filesystem
}
