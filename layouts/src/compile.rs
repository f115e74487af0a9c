//! Turns a validated plan into steps. Each node type adds its own steps through [`Builder`]; this
//! module walks the plan, derives the identities that make re-runs recognise their own work (host id,
//! partition and LUKS UUIDs), orders the steps by their dependencies and derives the teardown.

use std::collections::BTreeMap;

use crate::error::{FieldPath, PlanError};
use crate::graph::topological_order;
use crate::model::{Content, Plan};
use crate::nodes::mount::normal;
use crate::nodes::Site;
use crate::steps::{Operation, Step, Steps};

pub use crate::nodes::default_type;
pub use crate::nodes::install::NIXOS_MODULE_PATH;

/// Choices that shape the steps but are not part of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileOptions {
    /// The directory the installed system is mounted under.
    pub target: String,
    /// A NixOS system built elsewhere (`/nix/store/...-nixos-system-...`) and already copied into the
    /// target's store: the install step installs it (`nixos-install --system`) instead of building the
    /// plan's flake.
    pub system: Option<String>,
}

impl CompileOptions {
    /// The target must be an absolute, normal path other than `/`: everything is mounted under it, and
    /// the installer's own root is never the target.
    pub fn validate(&self) -> Result<(), PlanError> {
        let target = &self.target;
        let problem = match crate::nodes::mount::normalize_mountpoint(target) {
            Err(reason) => Some(format!("{} {reason}", crate::error::shown(target))),
            Ok(normal) if normal == "/" => Some("the target cannot be \"/\": that is the running system".to_string()),
            Ok(normal) if normal != *target => {
                Some(format!("{} is not a normal path: write {normal:?}", crate::error::shown(target)))
            }
            Ok(_) => None,
        };
        if let Some(message) = problem {
            return Err(PlanError::single(FieldPath::root().join("target"), message));
        }
        match self.system.as_deref().map(store_path_problem) {
            Some(Some(message)) => Err(PlanError::single(FieldPath::root().join("system"), message)),
            _ => Ok(()),
        }
    }
}

/// Why `path` is not a store path as Nix writes them (`/nix/store/`, 32 characters of Nix's base32, `-`,
/// a name of letters, digits and `+-._?=`): it reaches nixos-install's command line.
fn store_path_problem(path: &str) -> Option<String> {
    const BASE32: &str = "0123456789abcdfghijklmnpqrsvwxyz";
    let shown = crate::error::shown(path);
    let Some(base) = path.strip_prefix("/nix/store/") else {
        return Some(format!("{shown} is not in /nix/store"));
    };
    let (hash, name) = base.split_at_checked(32).unwrap_or((base, ""));
    let name_ok = |c: char| c.is_ascii_alphanumeric() || "+-._?=".contains(c);
    let fits = hash.len() == 32
        && hash.chars().all(|c| BASE32.contains(c))
        && name.strip_prefix('-').is_some_and(|n| !n.is_empty() && !n.starts_with('.') && n.chars().all(name_ok));
    (!fits).then(|| format!("{shown} is not a store path (/nix/store/HASH-NAME)"))
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions { target: "/mnt".to_string(), system: None }
    }
}

/// Something that can be mounted once created.
#[derive(Debug, Clone)]
pub(crate) struct MountSpec {
    /// The mountpoint in the installed system, normalised.
    pub mountpoint: String,
    /// Device or dataset.
    pub source: String,
    /// `mount -t`.
    pub fs_type: String,
    /// Mount options.
    pub options: Vec<String>,
    /// The step that makes what is mounted; none for a filesystem without a device.
    pub created_by: Option<String>,
}

impl MountSpec {
    pub(crate) fn new(
        mountpoint: &str,
        source: &str,
        fs_type: &str,
        options: &[String],
        created_by: impl Into<Option<String>>,
    ) -> Self {
        MountSpec {
            mountpoint: normal(mountpoint),
            source: source.to_string(),
            fs_type: fs_type.to_string(),
            options: options.to_vec(),
            created_by: created_by.into(),
        }
    }
}

/// A device a pool or a multi-device filesystem is built from, with the step that provides it.
#[derive(Debug, Clone)]
pub(crate) struct MemberDevice {
    pub device: String,
    pub provided_by: String,
}

/// Work a node leaves until every disk is compiled: what it builds from devices on other disks.
type Later = Box<dyn FnOnce(&mut Builder<'_>)>;

/// The steps compiled so far, and what later steps need to know: mounts and pool members.
pub(crate) struct Builder<'a> {
    pub plan: &'a Plan,
    pub options: &'a CompileOptions,
    pub steps: Vec<Step>,
    mounts: Vec<MountSpec>,
    /// `(disk, partition)` of each member of a pool or a multi-device filesystem, with its device.
    pub members: BTreeMap<(String, String), MemberDevice>,
    later: Vec<Later>,
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
    /// On an MBR disk, `<disk signature>-<number>` in hex, as udev's by-partuuid links name it.
    pub fn partition_uuid(&self, disk: &str, partition: &str) -> String {
        if let Some(plan_disk) = self.disks.get(disk).filter(|d| d.table == crate::gpt::TableFormat::Msdos) {
            let number = plan_disk.partitions.get_index_of(partition).map_or(0, |i| plan_disk.partition_numbers()[i]);
            return format!("{:08x}-{number:02x}", plan_disk.mbr_signature(self, disk));
        }
        let planned = self.disks.get(disk).and_then(|d| d.partitions.get(partition)).and_then(|p| p.uuid.clone());
        if let Some(uuid) = planned {
            return uuid.to_ascii_lowercase();
        }
        self.derived_uuid(&format!("{disk}\0{partition}"))
    }

    /// The signature of an MBR disk (never 0, which tools read as "none"), derived like partition UUIDs.
    pub fn disk_signature(&self, disk: &str) -> u32 {
        let uuid = self.derived_uuid(&format!("mbr\0{disk}"));
        u32::from_str_radix(&uuid[..8], 16).ok().filter(|s| *s != 0).unwrap_or(1)
    }

    /// The UUID of the LUKS header named `name`, derived like partition UUIDs so that a re-run can
    /// recognise its own header.
    pub fn luks_uuid(&self, name: &str) -> String {
        self.derived_uuid(&format!("luks\0{name}"))
    }

    /// The UUID of the filesystem or swap made for `owner` (`disk/partition`, or a volume's dataset),
    /// derived like partition UUIDs: a re-run recognises its own filesystem, and nothing else passes for it.
    pub fn filesystem_uuid(&self, owner: &str) -> String {
        self.derived_uuid(&format!("fs\0{owner}"))
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

    /// A stable id for the plan (a hash of its JSON form), the same on every machine and build.
    pub fn id(&self) -> String {
        format!("{:016x}", fnv1a(self.to_json().as_bytes(), 0))
    }

    /// Validates the plan and compiles it into ordered steps.
    pub fn compile(&self, options: &CompileOptions) -> Result<Steps, PlanError> {
        options.validate()?;
        self.validate()?;
        let mut builder = Builder {
            plan: self,
            options,
            steps: Vec::new(),
            mounts: Vec::new(),
            members: BTreeMap::new(),
            later: Vec::new(),
        };
        for (name, disk) in &self.disks {
            disk.compile(&mut builder, name);
        }
        for later in std::mem::take(&mut builder.later) {
            later(&mut builder);
        }
        for (name, pool) in &self.pools {
            pool.compile(&mut builder, name);
        }
        for (name, raid) in &self.raids {
            raid.compile(&mut builder, name);
        }
        for (name, group) in &self.volume_groups {
            group.compile(&mut builder, name);
        }
        for (key, nodev) in &self.nodev {
            nodev.compile(&mut builder, key);
        }
        for (name, filesystem) in &self.bcachefs_filesystems {
            filesystem.compile(&mut builder, name);
        }
        let mounts = std::mem::take(&mut builder.mounts);
        crate::nodes::mount::compile(&mut builder, &mounts);
        crate::nodes::install::compile(&mut builder);
        check_kept_content_first(&mut builder.steps);
        builder.finish()
    }
}

/// What a kept partition or container holds is checked (its mkfs, mkswap or pvcreate found done by UUID) before
/// anything is destroyed: inside a kept LUKS container that can only be read once it is open, during
/// the run, so every step that destroys and keeps nothing waits for those checks.
fn check_kept_content_first(steps: &mut [Step]) {
    let checks: Vec<String> = steps
        .iter()
        .filter(|s| {
            s.keeps.is_some()
                && matches!(s.operation, Operation::Mkfs(_) | Operation::Mkswap(_) | Operation::PvCreate(_))
        })
        .map(|s| s.id.clone())
        .collect();
    if checks.is_empty() {
        return;
    }
    for step in steps.iter_mut().filter(|s| s.destructive && s.keeps.is_none()) {
        for check in &checks {
            if !step.after.contains(check) {
                step.after.push(check.clone());
            }
        }
    }
}

/// 64-bit FNV-1a with a chosen offset: stable across builds and platforms, unlike std's hasher.
pub(crate) fn fnv1a(bytes: &[u8], offset: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325 ^ offset;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

impl Builder<'_> {
    /// Adds a step; returns its id, for the steps that come after it.
    pub(crate) fn push(
        &mut self,
        id: String,
        description: String,
        devices: Vec<String>,
        disk: Option<&str>,
        after: Vec<String>,
        operation: Operation,
    ) -> String {
        self.steps.push(Step {
            destructive: operation.destroys_data(),
            id: id.clone(),
            description,
            devices,
            disk: disk.map(str::to_string),
            after,
            operation,
            keeps: None,
        });
        id
    }

    /// Adds the steps of a content on its site, through its node type.
    pub(crate) fn content(&mut self, content: &Content, site: &Site<'_>) {
        content.node().compile(self, site);
    }

    /// Runs `work` once every disk is compiled, when the members on other disks are known.
    pub(crate) fn once_disks_are_compiled(&mut self, work: impl FnOnce(&mut Builder<'_>) + 'static) {
        self.later.push(Box::new(work));
    }

    /// Records something to mount once every node has been compiled.
    pub(crate) fn add_mount(&mut self, mount: MountSpec) {
        self.mounts.push(mount);
    }

    /// Records the partition `owner` (`"<disk>/<partition>"`) as a member with its device, made by the
    /// step `provided_by`, for the pool, array, group or filesystem built from it.
    pub(crate) fn register_member(&mut self, owner: &str, device: &str, provided_by: &str) {
        if let Some((disk, part)) = crate::nodes::zfs::split_member(owner) {
            let member = MemberDevice { device: device.to_string(), provided_by: provided_by.to_string() };
            self.members.insert((disk.to_string(), part.to_string()), member);
        }
    }

    /// The device of a pool member named `"<disk>/<partition>"`.
    pub(crate) fn member(&self, reference: &str) -> Option<&MemberDevice> {
        let (disk, part) = crate::nodes::zfs::split_member(reference)?;
        self.members.get(&(disk.to_string(), part.to_string()))
    }

    fn finish(self) -> Result<Steps, PlanError> {
        let nodes: Vec<(&str, Vec<&str>)> =
            self.steps.iter().map(|s| (s.id.as_str(), s.after.iter().map(String::as_str).collect())).collect();
        let order = topological_order(&nodes).map_err(|e| PlanError::single(FieldPath::root(), e.to_string()))?;
        let mut slots: Vec<Option<Step>> = self.steps.into_iter().map(Some).collect();
        let steps: Vec<Step> = order.into_iter().filter_map(|i| slots[i].take()).collect();
        let teardown = teardown(&steps);
        Ok(Steps { steps, teardown })
    }
}

/// The undo of every step that leaves something active, in reverse order, each waiting for the one before.
fn teardown(steps: &[Step]) -> Vec<Step> {
    let mut undo: Vec<Step> = Vec::new();
    for step in steps.iter().rev() {
        let Some((id, description, operation)) = step.operation.kind().undo() else { continue };
        let after = undo.last().map(|s| vec![s.id.clone()]).unwrap_or_default();
        undo.push(Step {
            id,
            description,
            devices: step.devices.clone(),
            disk: step.disk.clone(),
            destructive: false,
            after,
            operation,
            keeps: None,
        });
    }
    undo
}
