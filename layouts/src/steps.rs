//! Steps: what applying a plan does, one operation at a time, in dependency order.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::gpt::Extent;
use crate::model::{Format, VdevMode};
use crate::size::human;

/// One operation on the machine, with everything needed to perform it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Operation {
    /// Remove every signature (filesystems, LUKS, ZFS labels, RAID superblocks, partition tables) from
    /// the disk and from its current partitions.
    Wipe {
        /// The whole disk.
        device: String,
        /// Discard every block as well, where the device supports it.
        discard: bool,
    },
    /// Write a new GPT with a protective MBR, then make the kernel see its partitions.
    PartitionTable {
        /// The whole disk.
        device: String,
        /// Logical sector size the LBAs below count in.
        logical_sector_size: u32,
        /// The disk's size in bytes, as planned; checked before writing.
        disk_size: u64,
        /// The partitions, in table order.
        partitions: Vec<GptPartition>,
    },
    /// Create a LUKS2 header (argon2id) on a device.
    LuksFormat {
        /// The device to format.
        device: String,
        /// The name it will be opened as.
        name: String,
        /// The header's UUID.
        uuid: String,
        /// LUKS label.
        label: Option<String>,
        /// Where the key comes from: "prompt" or "file:///path".
        key: String,
        /// A file holding the passphrase for formatting, instead of asking.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passphrase_file: Option<String>,
    },
    /// Open a LUKS2 device as `/dev/mapper/<name>`.
    LuksOpen {
        /// The LUKS device.
        device: String,
        /// Mapper name.
        name: String,
        /// Where the key comes from: "prompt" or "file:///path".
        key: String,
        /// A file holding the passphrase, instead of asking.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passphrase_file: Option<String>,
        /// Pass discards through.
        allow_discards: bool,
    },
    /// `zpool create`.
    ZpoolCreate {
        /// Pool name.
        pool: String,
        /// Temporary root the pool's mountpoints are relative to (`-R`).
        altroot: String,
        /// Data vdevs.
        vdevs: Vec<VdevDevices>,
        /// Log vdevs.
        log: Vec<VdevDevices>,
        /// Cache devices.
        cache: Vec<String>,
        /// Spare devices.
        spare: Vec<String>,
        /// Pool properties (`-o`).
        options: BTreeMap<String, String>,
        /// Root dataset properties (`-O`).
        root_fs_options: BTreeMap<String, String>,
    },
    /// `zfs create`.
    ZfsCreate {
        /// Full dataset name.
        dataset: String,
        /// Size in bytes, for a volume.
        volume_size: Option<u64>,
        /// Properties (`-o`).
        properties: BTreeMap<String, String>,
    },
    /// Make a filesystem.
    Mkfs {
        /// The device.
        device: String,
        /// The format.
        format: Format,
        /// Filesystem label.
        label: Option<String>,
        /// Extra mkfs arguments.
        options: Vec<String>,
    },
    /// Make swap space.
    Mkswap {
        /// The device.
        device: String,
        /// Swap label.
        label: Option<String>,
    },
    /// Mount a filesystem under the target root.
    Mount {
        /// Device or dataset.
        source: String,
        /// Where, including the target root.
        target: String,
        /// `mount -t`.
        fs_type: String,
        /// `mount -o`.
        options: Vec<String>,
    },
    /// Enable swap.
    Swapon {
        /// The device.
        device: String,
    },
    /// Write the NixOS module that describes this layout.
    WriteNixosModule {
        /// Where, including the target root.
        path: String,
    },
    /// Install NixOS from a flake into the target root.
    NixosInstall {
        /// The target root.
        root: String,
        /// Flake reference.
        flake: String,
    },
    /// Unmount.
    Unmount {
        /// The mount point.
        target: String,
    },
    /// Disable swap.
    Swapoff {
        /// The device.
        device: String,
    },
    /// Export a pool so another system can import it.
    ZpoolExport {
        /// Pool name.
        pool: String,
    },
    /// Close a LUKS mapping.
    LuksClose {
        /// Mapper name.
        name: String,
    },
}

/// One partition of a [`Operation::PartitionTable`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GptPartition {
    /// Partition number, from 1.
    pub number: u32,
    /// GPT partition name.
    pub name: String,
    /// Type GUID.
    pub type_guid: String,
    /// Partition UUID.
    pub uuid: String,
    /// Where it lies.
    #[serde(flatten)]
    pub extent: Extent,
    /// GPT attribute bits to set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<u32>,
    /// The device node it will have.
    pub device: String,
}

/// One vdev of a [`Operation::ZpoolCreate`], with device paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VdevDevices {
    /// How the devices are combined.
    pub mode: VdevMode,
    /// Device paths.
    pub devices: Vec<String>,
}

fn push_properties(args: &mut Vec<String>, flag: &str, properties: &BTreeMap<String, String>) {
    for (key, value) in properties {
        args.push(flag.to_string());
        args.push(format!("{key}={value}"));
    }
}

fn push_vdevs(args: &mut Vec<String>, vdevs: &[VdevDevices]) {
    for vdev in vdevs {
        if let Some(keyword) = vdev.mode.keyword() {
            args.push(keyword.to_string());
        }
        args.extend(vdev.devices.iter().cloned());
    }
}

impl Operation {
    /// `zpool create` arguments (without the program name) for a [`Operation::ZpoolCreate`].
    pub fn zpool_create_args(&self) -> Option<Vec<String>> {
        let Operation::ZpoolCreate { pool, altroot, vdevs, log, cache, spare, options, root_fs_options } = self else {
            return None;
        };
        let mut args = vec!["create".to_string(), "-f".to_string()];
        push_properties(&mut args, "-o", options);
        push_properties(&mut args, "-O", root_fs_options);
        args.extend(["-R".to_string(), altroot.clone(), pool.clone()]);
        push_vdevs(&mut args, vdevs);
        if !log.is_empty() {
            args.push("log".to_string());
            push_vdevs(&mut args, log);
        }
        if !cache.is_empty() {
            args.push("cache".to_string());
            args.extend(cache.iter().cloned());
        }
        if !spare.is_empty() {
            args.push("spare".to_string());
            args.extend(spare.iter().cloned());
        }
        Some(args)
    }

    /// `zfs create` arguments (without the program name) for a [`Operation::ZfsCreate`].
    pub fn zfs_create_args(&self) -> Option<Vec<String>> {
        let Operation::ZfsCreate { dataset, volume_size, properties } = self else { return None };
        let mut args = vec!["create".to_string()];
        if let Some(size) = volume_size {
            args.extend(["-V".to_string(), size.to_string()]);
        }
        push_properties(&mut args, "-o", properties);
        args.push(dataset.clone());
        Some(args)
    }

    /// True when performing the operation destroys what the device held.
    pub fn destroys_data(&self) -> bool {
        matches!(
            self,
            Operation::Wipe { .. }
                | Operation::PartitionTable { .. }
                | Operation::LuksFormat { .. }
                | Operation::ZpoolCreate { .. }
                | Operation::Mkfs { .. }
                | Operation::Mkswap { .. }
        )
    }
}

/// The operation as the equivalent command line, for people reviewing a plan.
impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Wipe { device, discard } => {
                write!(f, "wipefs --all {device}*")?;
                if *discard {
                    write!(f, "; blkdiscard {device}")?;
                }
                Ok(())
            }
            Operation::PartitionTable { device, partitions, logical_sector_size, .. } => {
                write!(f, "write GPT to {device} ({logical_sector_size}-byte sectors):")?;
                for p in partitions {
                    let size = p.extent.sectors() * u64::from(*logical_sector_size);
                    let kind = crate::gpt::type_name(&p.type_guid).unwrap_or(&p.type_guid);
                    write!(f, " {}={}..{} {} {} {:?};", p.number, p.extent.first_lba, p.extent.last_lba, human(size), kind, p.name)?;
                }
                Ok(())
            }
            Operation::LuksFormat { device, label, key, uuid, .. } => {
                write!(f, "cryptsetup luksFormat --type luks2 --pbkdf argon2id --uuid {uuid}")?;
                if let Some(label) = label {
                    write!(f, " --label {label}")?;
                }
                write!(f, " {device} (key: {key})")
            }
            Operation::LuksOpen { device, name, allow_discards, key, .. } => {
                write!(f, "cryptsetup open")?;
                if *allow_discards {
                    write!(f, " --allow-discards")?;
                }
                write!(f, " {device} {name} (key: {key})")
            }
            Operation::ZpoolCreate { .. } => write!(f, "zpool {}", self.zpool_create_args().unwrap_or_default().join(" ")),
            Operation::ZfsCreate { .. } => write!(f, "zfs {}", self.zfs_create_args().unwrap_or_default().join(" ")),
            Operation::Mkfs { device, format, label, options } => {
                write!(f, "mkfs.{}", format.fs_type())?;
                for option in options {
                    write!(f, " {option}")?;
                }
                if let Some(label) = label {
                    let flag = if *format == Format::Vfat { "-n" } else { "-L" };
                    write!(f, " {flag} {label}")?;
                }
                write!(f, " {device}")
            }
            Operation::Mkswap { device, label } => match label {
                Some(label) => write!(f, "mkswap -L {label} {device}"),
                None => write!(f, "mkswap {device}"),
            },
            Operation::Mount { source, target, fs_type, options } => {
                write!(f, "mount -t {fs_type}")?;
                if !options.is_empty() {
                    write!(f, " -o {}", options.join(","))?;
                }
                write!(f, " {source} {target}")
            }
            Operation::Swapon { device } => write!(f, "swapon {device}"),
            Operation::WriteNixosModule { path } => write!(f, "write {path}"),
            Operation::NixosInstall { root, flake } => {
                write!(f, "nixos-install --root {root} --flake {flake} --no-root-passwd --no-channel-copy")
            }
            Operation::Unmount { target } => write!(f, "umount {target}"),
            Operation::Swapoff { device } => write!(f, "swapoff {device}"),
            Operation::ZpoolExport { pool } => write!(f, "zpool export {pool}"),
            Operation::LuksClose { name } => write!(f, "cryptsetup close {name}"),
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Unique id, such as `gpt:disk0` or `mount:/boot`.
    pub id: String,
    /// One line for people.
    pub description: String,
    /// The devices it touches.
    pub devices: Vec<String>,
    /// The plan disk it belongs to, for steps on one disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// Whether it destroys data.
    pub destructive: bool,
    /// Steps that must be finished first.
    pub after: Vec<String>,
    /// Exactly what it does.
    pub operation: Operation,
}

/// A compiled plan: the steps that apply it and the steps that tear the result down again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Steps {
    /// The steps that apply the plan, in an order that respects every dependency.
    pub steps: Vec<Step>,
    /// Unmount, swapoff, export and close, in the reverse order.
    pub teardown: Vec<Step>,
}

impl Steps {
    /// The plan disks that will be wiped.
    pub fn wiped_disks(&self) -> Vec<&Step> {
        self.steps.iter().filter(|s| matches!(s.operation, Operation::Wipe { .. })).collect()
    }

    /// A readable dry run: one line per step, destructive ones marked.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let width = self.steps.len().to_string().len();
        for (index, step) in self.steps.iter().enumerate() {
            let mark = if step.destructive { "DESTROYS" } else { "        " };
            out.push_str(&format!("{:>width$}. {mark} {}\n", index + 1, step.description));
            out.push_str(&format!("{:>width$}           {}\n", "", step.operation));
        }
        out
    }
}
