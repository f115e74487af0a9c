//! Turns a validated plan into steps.

use std::collections::BTreeMap;

use crate::error::{FieldPath, PlanError};
use crate::gpt::{self, Geometry};
use crate::graph::topological_order;
use crate::model::{Content, DatasetKind, Plan, Pool, Swap, VdevMode};
use crate::size::{human, Size};
use crate::steps::{GptPartition, Operation, Step, Steps, VdevDevices};
use crate::validate::{default_partition_label, normalize_mountpoint, split_member};

/// Where the NixOS module for a layout is written, relative to the target root.
pub const NIXOS_MODULE_PATH: &str = "etc/nixos/nix-dabei.nix";

/// Choices that shape the steps but are not part of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileOptions {
    /// The directory the installed system is mounted under.
    pub target: String,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions { target: "/mnt".to_string() }
    }
}

/// Something that can be mounted once created.
#[derive(Debug, Clone)]
struct MountSpec {
    mountpoint: String,
    source: String,
    fs_type: String,
    options: Vec<String>,
    created_by: String,
}

/// A device a pool is built from, with the step that provides it.
#[derive(Debug, Clone)]
struct MemberDevice {
    device: String,
    provided_by: String,
}

struct Builder<'a> {
    plan: &'a Plan,
    options: &'a CompileOptions,
    steps: Vec<Step>,
    mounts: Vec<MountSpec>,
    members: BTreeMap<(String, String), MemberDevice>,
}

impl Plan {
    /// The host id: the plan's own, or one derived from the host name and disks so that it stays the
    /// same every time this plan is compiled.
    pub fn effective_host_id(&self) -> String {
        if let Some(id) = &self.host_id {
            return id.to_ascii_lowercase();
        }
        let mut seed = self.hostname.clone();
        for disk in self.disks.values() {
            seed.push('\0');
            seed.push_str(&disk.device);
        }
        format!("{:08x}", (fnv1a(seed.as_bytes(), 0) >> 32) as u32)
    }

    /// The UUID of a partition: the plan's own, or one derived from the host id and the names.
    pub fn partition_uuid(&self, disk: &str, partition: &str) -> String {
        if let Some(uuid) = self.disks.get(disk).and_then(|d| d.partitions.get(partition)).and_then(|p| p.uuid.clone()) {
            return uuid.to_ascii_lowercase();
        }
        self.derived_uuid(&format!("{disk}\0{partition}"))
    }

    /// The UUID of the LUKS header named `name`, derived like partition UUIDs so that a re-run can
    /// recognise its own header.
    pub fn luks_uuid(&self, name: &str) -> String {
        self.derived_uuid(&format!("luks\0{name}"))
    }

    fn derived_uuid(&self, what: &str) -> String {
        let seed = format!("{}\0{what}", self.effective_host_id());
        let high = fnv1a(seed.as_bytes(), 0x6e69_782d_6461_6265);
        let low = fnv1a(seed.as_bytes(), 0x692d_7061_7274_7575);
        // Version 4 and the RFC 4122 variant, so tools treat it as an ordinary random UUID.
        let high = (high & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
        let low = (low & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xffff,
            high & 0xffff,
            low >> 48,
            low & 0xffff_ffff_ffff
        )
    }

    /// Validates the plan and compiles it into ordered steps.
    pub fn compile(&self, options: &CompileOptions) -> Result<Steps, PlanError> {
        self.validate()?;
        let mut builder = Builder { plan: self, options, steps: Vec::new(), mounts: Vec::new(), members: BTreeMap::new() };
        builder.disks();
        for (name, pool) in &self.pools {
            builder.pool(name, pool);
        }
        builder.mount_steps();
        builder.nixos_steps();
        builder.finish()
    }
}

/// 64-bit FNV-1a with a chosen offset: stable across builds and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8], offset: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325 ^ offset;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn join_target(target: &str, mountpoint: &str) -> String {
    let target = target.trim_end_matches('/');
    if mountpoint == "/" {
        if target.is_empty() { "/".to_string() } else { target.to_string() }
    } else {
        format!("{target}{mountpoint}")
    }
}

impl Builder<'_> {
    fn push(&mut self, id: String, description: String, devices: Vec<String>, disk: Option<&str>, after: Vec<String>, operation: Operation) -> String {
        self.steps.push(Step {
            destructive: operation.destroys_data(),
            id: id.clone(),
            description,
            devices,
            disk: disk.map(str::to_string),
            after,
            operation,
        });
        id
    }

    fn disks(&mut self) {
        let plan = self.plan;
        for (disk_name, disk) in &plan.disks {
            let device = disk.device.clone();
            let Some(size) = disk.size else { continue };
            let geometry = Geometry::new(size, u64::from(disk.logical_sector_size));
            let sizes: Vec<Size> = disk.partitions.values().map(|p| p.size).collect();
            let Ok(extents) = gpt::allocate(geometry, &sizes) else { continue };
            let wipe = self.push(
                format!("wipe:{disk_name}"),
                format!("Wipe disk {disk_name} ({device}, {}): every signature and partition table", human(size)),
                vec![device.clone()],
                Some(disk_name),
                vec![],
                Operation::Wipe { device: device.clone(), discard: disk.discard },
            );
            let mut partitions = Vec::new();
            for (index, ((part_name, part), extent)) in disk.partitions.iter().zip(extents).enumerate() {
                let number = index as u32 + 1;
                let kind = part.kind.clone().unwrap_or_else(|| default_type(part.content.as_ref()).to_string());
                partitions.push(GptPartition {
                    number,
                    name: part.label.clone().unwrap_or_else(|| default_partition_label(disk_name, part_name)),
                    type_guid: gpt::type_guid(&kind).unwrap_or_default(),
                    uuid: plan.partition_uuid(disk_name, part_name),
                    extent,
                    attributes: part.attributes.clone(),
                    device: gpt::partition_device(&device, number),
                });
            }
            let table = self.push(
                format!("gpt:{disk_name}"),
                format!("Write a GPT with {} partition(s) to disk {disk_name} ({device})", partitions.len()),
                vec![device.clone()],
                Some(disk_name),
                vec![wipe],
                Operation::PartitionTable {
                    device: device.clone(),
                    logical_sector_size: disk.logical_sector_size,
                    disk_size: size,
                    partitions: partitions.clone(),
                },
            );
            for ((part_name, part), entry) in disk.partitions.iter().zip(partitions) {
                if let Some(content) = &part.content {
                    let owner = format!("{disk_name}/{part_name}");
                    self.content(content, &entry.device, &table, &owner, Some(disk_name));
                }
            }
        }
    }

    fn content(&mut self, content: &Content, device: &str, provider: &str, owner: &str, disk: Option<&str>) {
        match content {
            Content::Filesystem(fs) => {
                let mkfs = self.push(
                    format!("mkfs:{owner}"),
                    format!("Make {} {} filesystem on {owner}", if fs.format == crate::model::Format::Ext4 { "an" } else { "a" }, fs.format.fs_type()),
                    vec![device.to_string()],
                    disk,
                    vec![provider.to_string()],
                    Operation::Mkfs { device: device.to_string(), format: fs.format, label: fs.label.clone(), options: fs.mkfs_options.clone() },
                );
                if let Some(mountpoint) = &fs.mountpoint {
                    self.mounts.push(MountSpec {
                        mountpoint: normalize_mountpoint(mountpoint).unwrap_or_else(|_| mountpoint.clone()),
                        source: device.to_string(),
                        fs_type: fs.format.fs_type().to_string(),
                        options: fs.mount_options.clone(),
                        created_by: mkfs,
                    });
                }
            }
            Content::Swap(Swap { random_encryption: true, .. }) => {}
            Content::Swap(swap) => {
                let mkswap = self.push(
                    format!("mkswap:{owner}"),
                    format!("Make swap on {owner}"),
                    vec![device.to_string()],
                    disk,
                    vec![provider.to_string()],
                    Operation::Mkswap { device: device.to_string(), label: swap.label.clone() },
                );
                self.push(
                    format!("swapon:{owner}"),
                    format!("Enable swap on {owner}"),
                    vec![device.to_string()],
                    disk,
                    vec![mkswap],
                    Operation::Swapon { device: device.to_string() },
                );
            }
            Content::Luks(luks) => {
                let format = self.push(
                    format!("luks-format:{owner}"),
                    format!("Format {owner} as LUKS2 ({})", luks.name),
                    vec![device.to_string()],
                    disk,
                    vec![provider.to_string()],
                    Operation::LuksFormat {
                        device: device.to_string(),
                        name: luks.name.clone(),
                        uuid: self.plan.luks_uuid(&luks.name),
                        label: luks.label.clone(),
                        key: luks.key.clone(),
                        passphrase_file: luks.passphrase_file.clone(),
                    },
                );
                let mapped = format!("/dev/mapper/{}", luks.name);
                let open = self.push(
                    format!("luks-open:{owner}"),
                    format!("Open {owner} as {mapped}"),
                    vec![device.to_string(), mapped.clone()],
                    disk,
                    vec![format],
                    Operation::LuksOpen {
                        device: device.to_string(),
                        name: luks.name.clone(),
                        key: luks.key.clone(),
                        passphrase_file: luks.passphrase_file.clone(),
                        allow_discards: luks.allow_discards,
                    },
                );
                self.content(&luks.content, &mapped, &open, owner, disk);
            }
            Content::Zfs(_) => {
                if let Some((disk_name, part_name)) = split_member(owner) {
                    self.members.insert(
                        (disk_name.to_string(), part_name.to_string()),
                        MemberDevice { device: device.to_string(), provided_by: provider.to_string() },
                    );
                }
            }
        }
    }

    fn member(&self, reference: &str) -> Option<&MemberDevice> {
        let (disk, part) = split_member(reference)?;
        self.members.get(&(disk.to_string(), part.to_string()))
    }

    fn vdevs(&self, vdevs: &[crate::model::Vdev]) -> Vec<VdevDevices> {
        vdevs
            .iter()
            .map(|v| VdevDevices { mode: v.mode, devices: v.members.iter().filter_map(|m| self.member(m)).map(|m| m.device.clone()).collect() })
            .collect()
    }

    fn pool(&mut self, name: &str, pool: &Pool) {
        let member_refs: Vec<String> = self.plan.pool_members(name).into_iter().map(|(d, p)| format!("{d}/{p}")).collect();
        let members: Vec<&MemberDevice> = member_refs.iter().filter_map(|r| self.member(r)).collect();
        let after: Vec<String> = members.iter().map(|m| m.provided_by.clone()).collect();
        let devices: Vec<String> = members.iter().map(|m| m.device.clone()).collect();
        let vdevs = if pool.vdevs.is_empty() {
            vec![VdevDevices { mode: pool.mode, devices: devices.clone() }]
        } else {
            self.vdevs(&pool.vdevs)
        };
        let lookup = |list: &[String]| -> Vec<String> { list.iter().filter_map(|m| self.member(m)).map(|m| m.device.clone()).collect() };
        let cache = lookup(&pool.cache);
        let spare = lookup(&pool.spare);
        let log = self.vdevs(&pool.log);
        let mut root_fs_options = pool.root_fs_options.clone();
        if pool.mountpoint.is_some() {
            root_fs_options.insert("mountpoint".to_string(), "legacy".to_string());
        } else {
            // Nothing of the pool mounts itself onto the installer's own filesystem.
            root_fs_options.entry("mountpoint".to_string()).or_insert_with(|| "none".to_string());
        }
        let shape = describe_vdevs(&vdevs);
        let create = self.push(
            format!("zpool-create:{name}"),
            format!("Create ZFS pool {name} ({shape})"),
            devices,
            None,
            after,
            Operation::ZpoolCreate {
                pool: name.to_string(),
                altroot: self.options.target.clone(),
                vdevs,
                log,
                cache,
                spare,
                options: pool.options.clone(),
                root_fs_options,
            },
        );
        if let Some(mountpoint) = &pool.mountpoint {
            self.mounts.push(MountSpec {
                mountpoint: normalize_mountpoint(mountpoint).unwrap_or_else(|_| mountpoint.clone()),
                source: name.to_string(),
                fs_type: "zfs".to_string(),
                options: vec![],
                created_by: create.clone(),
            });
        }
        for (dataset_name, dataset) in &pool.datasets {
            let full = format!("{name}/{dataset_name}");
            let mut after = vec![create.clone()];
            if let Some((parent, _)) = dataset_name.rsplit_once('/') {
                after.push(format!("zfs-create:{name}/{parent}"));
            }
            let mut properties = dataset.properties.clone();
            if dataset.mountpoint.is_some() {
                properties.insert("mountpoint".to_string(), "legacy".to_string());
            }
            let volume_size = match dataset.kind {
                DatasetKind::Volume => dataset.size.and_then(Size::bytes),
                DatasetKind::Filesystem => None,
            };
            let description = match volume_size {
                Some(bytes) => format!("Create {} volume {full}", human(bytes)),
                None => format!("Create dataset {full}"),
            };
            let created = self.push(
                format!("zfs-create:{full}"),
                description,
                vec![full.clone()],
                None,
                after,
                Operation::ZfsCreate { dataset: full.clone(), volume_size, properties },
            );
            if let Some(mountpoint) = &dataset.mountpoint {
                self.mounts.push(MountSpec {
                    mountpoint: normalize_mountpoint(mountpoint).unwrap_or_else(|_| mountpoint.clone()),
                    source: full.clone(),
                    fs_type: "zfs".to_string(),
                    options: dataset.mount_options.clone(),
                    created_by: created.clone(),
                });
            }
            if let Some(content) = &dataset.content {
                self.content(content, &format!("/dev/zvol/{full}"), &created, &full, None);
            }
        }
    }

    /// Mounts go parents first; each waits for its filesystem and for the mount it lies under.
    fn mount_steps(&mut self) {
        let mut mounts = self.mounts.clone();
        mounts.sort_by_key(|m| if m.mountpoint == "/" { 0 } else { m.mountpoint.matches('/').count() });
        for (index, mount) in mounts.iter().enumerate() {
            let parent = mounts[..index]
                .iter()
                .filter(|p| is_under(&mount.mountpoint, &p.mountpoint))
                .max_by_key(|p| p.mountpoint.len())
                .map(|p| format!("mount:{}", p.mountpoint));
            let mut after = vec![mount.created_by.clone()];
            after.extend(parent);
            let target = join_target(&self.options.target, &mount.mountpoint);
            self.push(
                format!("mount:{}", mount.mountpoint),
                format!("Mount {} at {target}", mount.source),
                vec![mount.source.clone()],
                None,
                after,
                Operation::Mount { source: mount.source.clone(), target, fs_type: mount.fs_type.clone(), options: mount.options.clone() },
            );
        }
    }

    fn nixos_steps(&mut self) {
        let after: Vec<String> = self.steps.iter().filter(|s| matches!(s.operation, Operation::Mount { .. } | Operation::Swapon { .. })).map(|s| s.id.clone()).collect();
        let root = self.options.target.clone();
        let path = format!("{}/{NIXOS_MODULE_PATH}", root.trim_end_matches('/'));
        let module = self.push(
            "nixos-module".to_string(),
            format!("Write the NixOS module for this layout to {path}"),
            vec![],
            None,
            after,
            Operation::WriteNixosModule { path },
        );
        if let Some(flake) = self.plan.flake.clone() {
            self.push(
                "nixos-install".to_string(),
                format!("Install NixOS from {flake} into {root}"),
                vec![],
                None,
                vec![module],
                Operation::NixosInstall { root, flake },
            );
        }
    }

    fn finish(self) -> Result<Steps, PlanError> {
        let nodes: Vec<(&str, Vec<&str>)> = self.steps.iter().map(|s| (s.id.as_str(), s.after.iter().map(String::as_str).collect())).collect();
        let order = topological_order(&nodes).map_err(|e| PlanError::single(FieldPath::root(), e.to_string()))?;
        let mut slots: Vec<Option<Step>> = self.steps.into_iter().map(Some).collect();
        let steps: Vec<Step> = order.into_iter().filter_map(|i| slots[i].take()).collect();
        let teardown = teardown(&steps);
        Ok(Steps { steps, teardown })
    }
}

fn is_under(path: &str, parent: &str) -> bool {
    parent == "/" && path != "/" || path.strip_prefix(parent).is_some_and(|rest| rest.starts_with('/'))
}

fn describe_vdevs(vdevs: &[VdevDevices]) -> String {
    let parts: Vec<String> = vdevs
        .iter()
        .map(|v| match v.mode {
            VdevMode::Stripe if v.devices.len() == 1 => "1 device".to_string(),
            VdevMode::Stripe => format!("stripe of {}", v.devices.len()),
            VdevMode::Mirror => format!("mirror of {}", v.devices.len()),
            other => format!("{} of {}", other.keyword().unwrap_or(""), v.devices.len()),
        })
        .collect();
    parts.join(", ")
}

/// The undo of every step that leaves something active, in reverse order, each waiting for the one before.
fn teardown(steps: &[Step]) -> Vec<Step> {
    let mut undo: Vec<Step> = Vec::new();
    for step in steps.iter().rev() {
        let (id, description, operation) = match &step.operation {
            Operation::Mount { target, .. } => (format!("unmount:{target}"), format!("Unmount {target}"), Operation::Unmount { target: target.clone() }),
            Operation::Swapon { device } => (format!("swapoff:{device}"), format!("Disable swap on {device}"), Operation::Swapoff { device: device.clone() }),
            Operation::ZpoolCreate { pool, .. } => (format!("zpool-export:{pool}"), format!("Export ZFS pool {pool}"), Operation::ZpoolExport { pool: pool.clone() }),
            Operation::LuksOpen { name, .. } => (format!("luks-close:{name}"), format!("Close /dev/mapper/{name}"), Operation::LuksClose { name: name.clone() }),
            _ => continue,
        };
        let after = undo.last().map(|s| vec![s.id.clone()]).unwrap_or_default();
        undo.push(Step { id, description, devices: step.devices.clone(), disk: step.disk.clone(), destructive: false, after, operation });
    }
    undo
}

/// The partition type a partition gets from its content when the plan names none.
pub fn default_type(content: Option<&Content>) -> &'static str {
    match content {
        Some(Content::Filesystem(fs)) if fs.format == crate::model::Format::Vfat && fs.mountpoint.as_deref().is_some_and(|m| m.starts_with("/boot")) => "esp",
        Some(Content::Swap(_)) => "swap",
        Some(Content::Luks(_)) => "luks",
        Some(Content::Zfs(_)) => "zfs",
        _ => "linux",
    }
}
