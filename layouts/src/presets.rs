//! Presets: whole plans from a few answers, with the defaults a careful disko user writes.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use crate::model::{
    BootMode, Content, Dataset, Disk, Filesystem, Format, Identity, Luks, Partition, Plan, Pool, RemoteUnlock, Swap,
    VdevMode, ZfsMember, PLAN_VERSION,
};
use crate::size::Size;

/// Size of every EFI system partition (it is also /boot when booting with BIOS).
pub const ESP_SIZE: u64 = 1 << 30;

/// Size of the BIOS boot partition GRUB's core image goes into.
pub const BIOS_BOOT_SIZE: u64 = 1 << 20;

/// What is known about a disk a preset lays out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFacts {
    /// Stable path to the disk.
    pub device: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// Logical sector size in bytes.
    pub logical_sector_size: u32,
    /// Physical sector size in bytes, when known.
    pub physical_sector_size: Option<u32>,
    /// Serial, WWN and model.
    pub identity: Identity,
}

impl DiskFacts {
    /// A disk known only by path and size (512-byte sectors), as when planning for a machine that is not
    /// at hand.
    pub fn offline(device: impl Into<String>, size: u64) -> Self {
        DiskFacts {
            device: device.into(),
            size: Some(size),
            logical_sector_size: 512,
            physical_sector_size: None,
            identity: Identity::default(),
        }
    }
}

/// The layouts presets build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetKind {
    /// One disk: an ESP at /boot and a ZFS pool on the rest.
    Single,
    /// Two or more disks: an ESP on every disk and a ZFS mirror on the rest.
    Mirror,
    /// One disk: an ESP and an ext4 root, for machines without ZFS.
    Ext4,
}

impl std::str::FromStr for PresetKind {
    type Err = PresetError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "single" => Ok(PresetKind::Single),
            "mirror" => Ok(PresetKind::Mirror),
            "ext4" => Ok(PresetKind::Ext4),
            other => Err(PresetError::UnknownPreset(other.to_string())),
        }
    }
}

/// How the installed system is encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encryption {
    /// Not encrypted.
    #[default]
    None,
    /// ZFS native encryption with a passphrase, on the pool's root dataset.
    ZfsNative,
    /// LUKS2 under every pool member (or under the ext4 root).
    Luks,
}

/// The answers a preset needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetOptions {
    /// Which layout.
    pub kind: PresetKind,
    /// The disks, in order.
    pub disks: Vec<DiskFacts>,
    /// Encryption.
    pub encryption: Encryption,
    /// A swap partition of this many bytes on every disk.
    pub swap: Option<u64>,
    /// ZFS pool name.
    pub pool_name: String,
    /// Host name.
    pub hostname: String,
    /// Flake to install.
    pub flake: Option<String>,
    /// The firmware the installed system boots with; BIOS adds a BIOS boot partition to every disk.
    pub boot: BootMode,
    /// Kernel modules the installed system's initrd needs for the disks' controllers.
    pub initrd_kernel_modules: Vec<String>,
    /// Unlock the encrypted disks over SSH at boot.
    pub remote_unlock: Option<RemoteUnlock>,
}

impl PresetOptions {
    /// Options for `kind` on `disks` with every other answer at its default.
    pub fn new(kind: PresetKind, disks: Vec<DiskFacts>) -> Self {
        PresetOptions {
            kind,
            disks,
            encryption: Encryption::None,
            swap: None,
            pool_name: "rpool".to_string(),
            hostname: "nixos".to_string(),
            flake: None,
            boot: BootMode::Uefi,
            initrd_kernel_modules: Vec::new(),
            remote_unlock: None,
        }
    }
}

/// Answers a preset cannot build a plan from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresetError {
    /// No such preset.
    #[error("{0:?} is not a preset (single, mirror or ext4)")]
    UnknownPreset(String),
    /// Wrong number of disks.
    #[error("the {preset} preset needs {needed}, but {given} disk(s) were given")]
    DiskCount {
        /// The preset.
        preset: &'static str,
        /// What it needs, in words.
        needed: &'static str,
        /// How many were given.
        given: usize,
    },
    /// Native encryption asked for without ZFS.
    #[error("the ext4 preset has no ZFS: use LUKS encryption (--encrypt luks) instead of native ZFS encryption")]
    NativeEncryptionWithoutZfs,
}

/// The ZFS ashift for disks with these physical sector sizes: log2 of the largest, 12 when none is known.
pub fn ashift_for(physical_sector_sizes: &[Option<u32>]) -> u32 {
    let largest = physical_sector_sizes.iter().flatten().copied().max();
    match largest {
        Some(size) if size.is_power_of_two() => size.trailing_zeros().clamp(12, 16),
        _ => 12,
    }
}

/// Builds the plan for a preset.
pub fn build(options: &PresetOptions) -> Result<Plan, PresetError> {
    let given = options.disks.len();
    let (preset, needed, count_ok) = match options.kind {
        PresetKind::Single => ("single", "exactly one disk", given == 1),
        PresetKind::Ext4 => ("ext4", "exactly one disk", given == 1),
        PresetKind::Mirror => ("mirror", "two or more disks", given >= 2),
    };
    if !count_ok {
        return Err(PresetError::DiskCount { preset, needed, given });
    }
    if options.kind == PresetKind::Ext4 && options.encryption == Encryption::ZfsNative {
        return Err(PresetError::NativeEncryptionWithoutZfs);
    }
    let single_disk = given == 1;
    let mut disks = IndexMap::new();
    for (index, facts) in options.disks.iter().enumerate() {
        let name = if single_disk { "main".to_string() } else { format!("disk{index}") };
        let luks_name = if single_disk { "cryptroot".to_string() } else { format!("crypt{index}") };
        let mut partitions = IndexMap::new();
        if options.boot.bios() {
            // First on the disk, as GRUB's core image is found by type, wherever it is.
            partitions.insert(
                "bios".to_string(),
                Partition {
                    number: None,
                    keep: false,
                    start: None,
                    size: Size::Bytes(BIOS_BOOT_SIZE),
                    kind: Some("bios-boot".to_string()),
                    label: None,
                    uuid: None,
                    attributes: vec![],
                    bootable: false,
                    logical: false,
                    content: None,
                },
            );
        }
        let esp_mount = if index == 0 { "/boot".to_string() } else { format!("/boot-{index}") };
        partitions.insert(
            "esp".to_string(),
            Partition {
                number: None,
                keep: false,
                start: None,
                size: Size::Bytes(ESP_SIZE),
                kind: Some("esp".to_string()),
                label: None,
                uuid: None,
                attributes: vec![],
                bootable: false,
                logical: false,
                content: Some(Content::Filesystem(Filesystem {
                    uuid: None,
                    format: Format::Vfat,
                    mountpoint: Some(esp_mount),
                    mount_options: vec!["umask=0077".to_string()],
                    label: None,
                    mkfs_options: vec![],
                })),
            },
        );
        if let Some(swap) = options.swap {
            partitions.insert(
                "swap".to_string(),
                Partition {
                    number: None,
                    keep: false,
                    start: None,
                    size: Size::Bytes(swap),
                    kind: Some("swap".to_string()),
                    label: None,
                    uuid: None,
                    attributes: vec![],
                    bootable: false,
                    logical: false,
                    content: Some(Content::Swap(Swap {
                        random_encryption: options.encryption != Encryption::None,
                        ..Swap::default()
                    })),
                },
            );
        }
        let (part_name, inner) = match options.kind {
            PresetKind::Ext4 => (
                "root",
                Content::Filesystem(Filesystem {
                    uuid: None,
                    format: Format::Ext4,
                    mountpoint: Some("/".to_string()),
                    mount_options: vec![],
                    label: None,
                    mkfs_options: vec![],
                }),
            ),
            PresetKind::Single | PresetKind::Mirror => {
                let name = if options.encryption == Encryption::Luks { "luks" } else { "zfs" };
                (name, Content::Zfs(ZfsMember { pool: options.pool_name.clone() }))
            }
        };
        let (kind, content) = match options.encryption {
            Encryption::Luks => (
                "luks",
                Content::Luks(Luks {
                    name: luks_name,
                    key: "prompt".to_string(),
                    label: None,
                    uuid: None,
                    passphrase_file: None,
                    allow_discards: true,
                    additional_key_files: vec![],
                    content: Box::new(inner),
                }),
            ),
            _ if options.kind == PresetKind::Ext4 => ("linux", inner),
            _ => ("zfs", inner),
        };
        partitions.insert(
            part_name.to_string(),
            Partition {
                number: None,
                keep: false,
                start: None,
                size: Size::Rest,
                kind: Some(kind.to_string()),
                label: None,
                uuid: None,
                attributes: vec![],
                bootable: false,
                logical: false,
                content: Some(content),
            },
        );
        disks.insert(
            name,
            Disk {
                device: facts.device.clone(),
                size: facts.size,
                logical_sector_size: facts.logical_sector_size,
                physical_sector_size: facts.physical_sector_size,
                identity: facts.identity.clone(),
                discard: false,
                table: Default::default(),
                signature: None,
                extended: None,
                partitions,
            },
        );
    }
    let mut pools = IndexMap::new();
    if options.kind != PresetKind::Ext4 {
        pools.insert(options.pool_name.clone(), zfs_pool(options));
    }
    let mut plan = Plan {
        version: PLAN_VERSION,
        hostname: options.hostname.clone(),
        flake: options.flake.clone(),
        boot: Some(options.boot),
        initrd_kernel_modules: options.initrd_kernel_modules.clone(),
        remote_unlock: options.remote_unlock.clone(),
        disks,
        pools,
        ..Plan::default()
    };
    plan.host_id = Some(plan.effective_host_id());
    Ok(plan)
}

fn properties(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn zfs_pool(options: &PresetOptions) -> Pool {
    let ashift = ashift_for(&options.disks.iter().map(|d| d.physical_sector_size).collect::<Vec<_>>());
    let mut root_fs_options = properties(&[
        ("compression", "zstd"),
        ("acltype", "posixacl"),
        ("xattr", "sa"),
        ("relatime", "on"),
        ("mountpoint", "none"),
    ]);
    if options.encryption == Encryption::ZfsNative {
        root_fs_options.extend(properties(&[
            ("encryption", "aes-256-gcm"),
            ("keyformat", "passphrase"),
            ("keylocation", "prompt"),
        ]));
    }
    let dataset = |mountpoint: &str, props: &[(&str, &str)]| Dataset {
        mountpoint: Some(mountpoint.to_string()),
        properties: properties(props),
        ..Dataset::default()
    };
    let mut datasets = IndexMap::new();
    datasets.insert("root".to_string(), dataset("/", &[]));
    datasets.insert("nix".to_string(), dataset("/nix", &[("atime", "off")]));
    datasets.insert("home".to_string(), dataset("/home", &[]));
    datasets.insert("var".to_string(), dataset("/var", &[]));
    Pool {
        mode: if options.kind == PresetKind::Mirror { VdevMode::Mirror } else { VdevMode::Stripe },
        options: properties(&[("ashift", &ashift.to_string()), ("autotrim", "on")]),
        root_fs_options,
        datasets,
        ..Pool::default()
    }
}
