//! The plan: what the disks of a machine should look like after an install.
//!
//! A [`Plan`] is written by people (TOML) or programs (JSON). It names whole disks by a stable path and the
//! identity they had when the plan was made, lays GPT partitions on them, and says what each partition
//! holds: a filesystem, swap, a LUKS2 container or a member of a ZFS pool. Pools carry their topology,
//! options and datasets. Each of these types lives with its node type under [`crate::nodes`]; they are
//! re-exported here and at the crate root.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

pub use crate::boot::{BootMode, RemoteUnlock};
pub use crate::nodes::btrfs::{Btrfs, Subvolume, SwapFile};
pub use crate::nodes::filesystem::{Filesystem, Format};
pub use crate::nodes::gpt::{Disk, Identity, Partition};
pub use crate::nodes::luks::Luks;
pub use crate::nodes::lvm::{LogicalVolume, LvSize, LvType, LvmPv, Share, VolumeGroup};
pub use crate::nodes::mdadm::{MdMember, Raid};
pub use crate::nodes::nodev::Nodev;
pub use crate::nodes::swap::Swap;
pub use crate::nodes::zfs::{Dataset, DatasetKind, Pool, Vdev, VdevMode, ZfsMember};
pub use crate::nodes::Content;

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
    /// The firmware the installed system boots with: `uefi`, `bios` or `both`. Without it the plan's
    /// ESPs get GRUB for UEFI and nothing is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootMode>,
    /// Kernel modules the installed system's initrd needs to reach the disks (their controllers'
    /// drivers, as `nix-dabei plan` finds them in sysfs), beyond NixOS's defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initrd_kernel_modules: Vec<String>,
    /// Unlock the encrypted disks over SSH at boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_unlock: Option<RemoteUnlock>,
    /// The disks, by the name the plan gives them.
    #[serde(default)]
    pub disks: IndexMap<String, Disk>,
    /// The ZFS pools, by pool name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub pools: IndexMap<String, Pool>,
    /// Software RAID arrays (mdadm), by name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub raids: IndexMap<String, Raid>,
    /// LVM volume groups, by name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub volume_groups: IndexMap<String, VolumeGroup>,
    /// Filesystems without a device (tmpfs), by mountpoint.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub nodev: IndexMap<String, Nodev>,
    /// bcachefs filesystems, by name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub bcachefs_filesystems: IndexMap<String, crate::nodes::bcachefs::BcachefsFilesystem>,
}

impl Plan {
    /// The partitions whose content (inside any LUKS container) `wanted` accepts, as
    /// `"<disk>/<partition>"` in plan order.
    pub fn partitions_holding(&self, wanted: impl Fn(&Content) -> bool) -> Vec<String> {
        let mut found = Vec::new();
        for (disk_name, disk) in &self.disks {
            for (part_name, part) in &disk.partitions {
                if part.content.as_ref().map(Content::innermost).is_some_and(&wanted) {
                    found.push(format!("{disk_name}/{part_name}"));
                }
            }
        }
        found
    }

    /// The partition a `"<disk>/<partition>"` reference names.
    pub fn partition_at(&self, reference: &str) -> Option<&crate::gpt::Partition> {
        let (disk, part) = reference.split_once('/')?;
        self.disks.get(disk)?.partitions.get(part)
    }

    /// Every content the plan holds, with the field path where it is (`disks.a.partitions.b.content`):
    /// in disks' partitions (GPT or MBR), in arrays and their partitions, in volume groups' volumes and in
    /// pools' volumes, and inside LUKS containers (after the container). Plan-wide questions about
    /// contents ask this one walk, so that no kind of container is passed over.
    pub fn contents(&self) -> Vec<(String, &Content)> {
        // A container first, then what it holds ([`Content::children`]).
        fn with_inner<'a>(found: &mut Vec<(String, &'a Content)>, path: String, content: &'a Content) {
            let children = content.children();
            found.push((path.clone(), content));
            for (below, child) in children {
                with_inner(found, format!("{path}.{below}"), child);
            }
        }
        let mut found = Vec::new();
        for (disk, d) in &self.disks {
            for (part, p) in &d.partitions {
                if let Some(content) = &p.content {
                    with_inner(&mut found, format!("disks.{disk}.partitions.{part}.content"), content);
                }
            }
        }
        for (name, raid) in &self.raids {
            if let Some(content) = &raid.content {
                with_inner(&mut found, format!("raids.{name}.content"), content);
            }
            for (part, p) in &raid.partitions {
                if let Some(content) = &p.content {
                    with_inner(&mut found, format!("raids.{name}.partitions.{part}.content"), content);
                }
            }
        }
        for (group, g) in &self.volume_groups {
            for (volume, v) in &g.volumes {
                if let Some(content) = &v.content {
                    with_inner(&mut found, format!("volume_groups.{group}.volumes.{volume}.content"), content);
                }
            }
        }
        for (pool, p) in &self.pools {
            for (dataset, d) in &p.datasets {
                if let Some(content) = &d.content {
                    with_inner(&mut found, format!("pools.{pool}.datasets.{dataset}.content"), content);
                }
            }
        }
        found
    }

    /// Whether applying the plan needs a passphrase: a LUKS container (wherever it is: [`Plan::contents`])
    /// or ZFS or bcachefs encryption whose key is typed.
    pub fn needs_passphrase(&self) -> bool {
        self.contents().iter().any(|(_, content)| content.needs_passphrase())
            || self.pools.values().any(Pool::needs_passphrase)
            || self.bcachefs_filesystems.values().any(|f| f.encrypted)
    }
}

impl Default for Plan {
    /// An empty plan for the host `nixos`.
    fn default() -> Self {
        Plan {
            version: PLAN_VERSION,
            hostname: default_hostname(),
            host_id: None,
            flake: None,
            boot: None,
            initrd_kernel_modules: Vec::new(),
            remote_unlock: None,
            disks: IndexMap::new(),
            pools: IndexMap::new(),
            raids: IndexMap::new(),
            volume_groups: IndexMap::new(),
            nodev: IndexMap::new(),
            bcachefs_filesystems: IndexMap::new(),
        }
    }
}

fn plan_version() -> u32 {
    PLAN_VERSION
}

fn default_hostname() -> String {
    "nixos".to_string()
}
