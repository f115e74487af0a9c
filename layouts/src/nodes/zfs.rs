//! ZFS: pool members (a partition content), pools with their topology and options, and datasets
//! (filesystems and volumes).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Content, ContentNode, Site};
use crate::compile::{Builder, MemberDevice, MountSpec};
use crate::disko::{ExportError, Object, Reader, Writer};
use crate::error::FieldPath;
use crate::model::Plan;
use crate::nixos::nix_string;
use crate::nixos::{FileSystemEntry, ModuleParts};
use crate::programs::Program;
use crate::size::{format_exact, human, parse_bytes, Size};
use crate::steps::{CommandLine, Operation, OperationKind};
use crate::validate::{valid_key_location, Checker};

/// The programs of pools and datasets (the kernel's ZFS: in NixOS `boot.zfs.package`).
pub const PROGRAMS: &[Program] = &[
    Program::target("zpool", "zfs", "zfsutils-linux", "making, importing, growing and exporting pools"),
    Program::target("zfs", "zfs", "zfsutils-linux", "making datasets, loading keys, reading properties"),
];

/// Pool names may not begin with these words, which `zpool create` reads as vdev kinds.
const RESERVED_POOL_PREFIXES: &[&str] = &["mirror", "raidz", "draid", "spare"];
/// Nor be exactly one of these.
const RESERVED_POOL_NAMES: &[&str] = &["log", "cache", "special", "dedup"];

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
    /// Special allocation class vdevs (metadata and small blocks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub special: Vec<Vdev>,
    /// Deduplication table vdevs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dedup: Vec<Vdev>,
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
    /// The pool is already there (a machine read back by probe) and is never made again: it must be the
    /// pool of this `guid`, or the plan is refused before anything is written.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep: bool,
    /// The pool's GUID (decimal, as `zpool get guid` shows it), which identifies a kept pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A kept pool or dataset says its GUID, in decimal; a GUID belongs to a kept one.
fn validate_identity(check: &mut Checker, keep: bool, guid: Option<&str>, path: &FieldPath, what: &str) {
    match (guid, keep) {
        (Some(guid), _) if guid.is_empty() || !guid.bytes().all(|b| b.is_ascii_digit()) => check
            .report(path.join("guid"), format!("{} is not a {what} GUID (decimal digits)", crate::error::shown(guid))),
        (None, true) => {
            check.report(path.join("guid"), format!("a kept {what} is identified by its GUID: give the one it has"))
        }
        (Some(_), false) => {
            check.report(path.join("guid"), format!("a GUID identifies a kept {what}: set keep = true too"))
        }
        _ => {}
    }
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

fn is_filesystem(kind: &DatasetKind) -> bool {
    *kind == DatasetKind::Filesystem
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
    /// The dataset is already there (read back by probe) and is never made: it must be the dataset of this
    /// `guid`, or the run stops before it would be made.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep: bool,
    /// The dataset's GUID (decimal, as `zfs get guid` shows it), which identifies a kept dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
}

/// True when these properties turn native encryption on.
pub fn encrypted(properties: &BTreeMap<String, String>) -> bool {
    properties.get("encryption").is_some_and(|e| e != "off")
}

/// One vdev of a [`ZpoolCreate`], with device paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VdevDevices {
    /// How the devices are combined.
    pub mode: VdevMode,
    /// Device paths.
    pub devices: Vec<String>,
}

/// `zpool create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZpoolCreate {
    /// Pool name.
    pub pool: String,
    /// Temporary root the pool's mountpoints are relative to (`-R`).
    pub altroot: String,
    /// Data vdevs.
    pub vdevs: Vec<VdevDevices>,
    /// Log vdevs.
    pub log: Vec<VdevDevices>,
    /// Special vdevs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub special: Vec<VdevDevices>,
    /// Dedup vdevs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dedup: Vec<VdevDevices>,
    /// Cache devices.
    pub cache: Vec<String>,
    /// Spare devices.
    pub spare: Vec<String>,
    /// Pool properties (`-o`).
    pub options: BTreeMap<String, String>,
    /// Root dataset properties (`-O`).
    pub root_fs_options: BTreeMap<String, String>,
    /// The GUID the pool must have: it is already there, kept (never made again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
}

impl ZpoolCreate {
    /// Every member device, in vdev order.
    pub fn devices(&self) -> impl Iterator<Item = &String> {
        let vdevs = self.vdevs.iter().chain(&self.log).chain(&self.special).chain(&self.dedup);
        vdevs.flat_map(|v| &v.devices).chain(&self.cache).chain(&self.spare)
    }
}

impl ZpoolCreate {
    /// The commands that turn a pool holding some of the planned devices into the planned pool without
    /// destroying anything: `member(device)` is the pool's name for a planned device that is already a
    /// member (as `zpool status` shows it), or `None`. A device missing from a mirror that has a member
    /// is attached to it (`zpool attach`); a log vdev, cache or spare devices missing entirely are added
    /// (`zpool add`). Anything else (a data vdev missing entirely, a device missing from a raidz or a
    /// single-device vdev planned as a stripe) cannot be had in place: the error names it. No commands:
    /// the pool holds every planned device.
    pub fn growth(&self, member: &dyn Fn(&str) -> Option<String>) -> Result<Vec<CommandLine>, String> {
        let pool = &self.pool;
        let mut base = vec![];
        if let Some(ashift) = self.options.get("ashift") {
            base.extend(["-o".to_string(), format!("ashift={ashift}")]);
        }
        let zpool = |verb: &str, rest: Vec<String>| {
            let mut args = vec![verb.to_string(), "-f".to_string()];
            args.extend(base.iter().cloned());
            args.push(pool.clone());
            args.extend(rest);
            CommandLine { program: "zpool".into(), args }
        };
        let mut commands = Vec::new();
        for (class, vdevs) in
            [("data", &self.vdevs), ("log", &self.log), ("special", &self.special), ("dedup", &self.dedup)]
        {
            for vdev in vdevs {
                let present: Vec<String> = vdev.devices.iter().filter_map(|d| member(d)).collect();
                let missing: Vec<&String> = vdev.devices.iter().filter(|d| member(d).is_none()).collect();
                match (present.first(), missing.is_empty()) {
                    (_, true) => {}
                    (Some(existing), false) if vdev.mode == VdevMode::Mirror => {
                        for device in missing {
                            commands.push(zpool("attach", vec![existing.clone(), device.clone()]));
                        }
                    }
                    (None, false) if class == "log" => {
                        let mut rest = vec!["log".to_string()];
                        rest.extend(vdev.mode.keyword().map(str::to_string));
                        rest.extend(vdev.devices.iter().cloned());
                        commands.push(zpool("add", rest));
                    }
                    (Some(_), false) => {
                        return Err(format!(
                            "{} would join a {} vdev of pool {pool} that exists: only mirrors take more devices in \
                             place (zpool attach)",
                            missing[0],
                            vdev.mode.keyword().unwrap_or("single-device")
                        ))
                    }
                    (None, false) => {
                        return Err(format!(
                            "pool {pool} exists without the {class} vdev of {}: a new {class} vdev is not added in \
                             place",
                            vdev.devices.join(", ")
                        ))
                    }
                }
            }
        }
        for (class, devices) in [("cache", &self.cache), ("spare", &self.spare)] {
            let missing: Vec<String> = devices.iter().filter(|d| member(d).is_none()).cloned().collect();
            if !missing.is_empty() {
                commands.push(zpool("add", std::iter::once(class.to_string()).chain(missing).collect()));
            }
        }
        Ok(commands)
    }
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

impl OperationKind for ZpoolCreate {
    /// Pools and their datasets' properties are read back with both of ZFS's programs.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["zpool", "zfs"]
    }

    fn destroys_data(&self) -> bool {
        true
    }

    fn command(&self) -> Option<CommandLine> {
        let mut args = vec!["create".to_string(), "-f".to_string()];
        push_properties(&mut args, "-o", &self.options);
        push_properties(&mut args, "-O", &self.root_fs_options);
        args.extend(["-R".to_string(), self.altroot.clone(), self.pool.clone()]);
        push_vdevs(&mut args, &self.vdevs);
        for (class, vdevs) in [("log", &self.log), ("special", &self.special), ("dedup", &self.dedup)] {
            if !vdevs.is_empty() {
                args.push(class.to_string());
                push_vdevs(&mut args, vdevs);
            }
        }
        if !self.cache.is_empty() {
            args.push("cache".to_string());
            args.extend(self.cache.iter().cloned());
        }
        if !self.spare.is_empty() {
            args.push("spare".to_string());
            args.extend(self.spare.iter().cloned());
        }
        Some(CommandLine { program: "zpool".into(), args })
    }

    /// To do without destroying, a pool is found on its members and only imported, which mounting does.
    fn creates(&self) -> bool {
        false
    }

    fn undo(&self) -> Option<(String, String, Operation)> {
        let pool = &self.pool;
        Some((
            format!("zpool-export:{pool}"),
            format!("Export ZFS pool {pool}"),
            Operation::ZpoolExport(ZpoolExport { pool: pool.clone(), devices: self.devices().cloned().collect() }),
        ))
    }
}

/// `zfs create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZfsCreate {
    /// Full dataset name.
    pub dataset: String,
    /// Size in bytes, for a volume.
    pub volume_size: Option<u64>,
    /// Properties (`-o`).
    pub properties: BTreeMap<String, String>,
    /// The GUID of a kept dataset: it must be there with it, and is never made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
}

impl OperationKind for ZfsCreate {
    /// The pool is listed before its datasets are.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["zpool", "zfs"]
    }

    fn destroys_data(&self) -> bool {
        false
    }

    fn creates(&self) -> bool {
        true
    }

    fn command(&self) -> Option<CommandLine> {
        let mut args = vec!["create".to_string()];
        if let Some(size) = self.volume_size {
            args.extend(["-V".to_string(), size.to_string()]);
        }
        push_properties(&mut args, "-o", &self.properties);
        args.push(self.dataset.clone());
        Some(CommandLine { program: "zfs".into(), args })
    }
}

/// Properties fixed when a dataset is made: a plan that wants another value for an existing dataset needs it
/// made again, which is not done in place.
const CREATE_ONLY_PROPERTIES: &[&str] =
    &["encryption", "keyformat", "pbkdf2iters", "casesensitivity", "normalization", "utf8only", "volblocksize"];

/// A property's value as ZFS shows it (`zfs get -p`), for comparing: sizes in bytes, `none` for no limit
/// as 0, aliases by their shown name, case folded.
fn shown_value(property: &str, value: &str) -> String {
    let value = value.trim().to_ascii_lowercase();
    match (property, value.as_str()) {
        ("acltype", "posixacl") => "posix".into(),
        ("acltype", "noacl") => "off".into(),
        (_, "none") if property.ends_with("quota") || property.ends_with("reservation") => "0".into(),
        _ => match crate::size::parse_bytes(&value) {
            Some(bytes) if value.chars().next().is_some_and(|c| c.is_ascii_digit()) => bytes.to_string(),
            _ => value,
        },
    }
}

impl ZfsCreate {
    /// What must change for an existing dataset, whose properties ZFS shows as `found`, to have the
    /// planned ones: the properties to set (`zfs set`), in the plan's order. A property ZFS does not show
    /// is not compared; `mountpoint` is shown under the pool's `altroot` while imported. A property fixed
    /// at creation (encryption and its key format, case sensitivity, ...) that differs is an error naming
    /// it.
    pub fn property_changes(
        &self,
        found: &BTreeMap<String, String>,
        altroot: Option<&str>,
    ) -> Result<Vec<(String, String)>, String> {
        let mut changes = Vec::new();
        for (property, planned) in &self.properties {
            let Some(have) = found.get(property) else { continue };
            let same = match property.as_str() {
                // `on` picks the default cipher, which ZFS shows by name.
                "encryption" => (planned == "off") == (have == "off") && (planned == "on" || planned == have),
                // Where the key is read from may change (the installed system reads it elsewhere).
                "keylocation" => true,
                "mountpoint" => {
                    let under_altroot = altroot
                        .filter(|root| *root != "/" && planned.starts_with('/'))
                        .map(|root| format!("{}{}", root.trim_end_matches('/'), planned.trim_end_matches('/')));
                    have == planned || under_altroot.as_deref() == Some(have.as_str())
                }
                _ => shown_value(property, planned) == shown_value(property, have),
            };
            if same {
                continue;
            }
            if CREATE_ONLY_PROPERTIES.contains(&property.as_str()) {
                return Err(format!(
                    "{} exists with {property}={have}, the plan wants {planned}: {property} is fixed when a dataset \
                     is made, so it would have to be destroyed and made again, which is not done in place",
                    self.dataset
                ));
            }
            changes.push((property.clone(), planned.clone()));
        }
        Ok(changes)
    }

    /// `zfs set` of these properties on the dataset.
    pub fn set_command(&self, changes: &[(String, String)]) -> CommandLine {
        let mut args = vec!["set".to_string()];
        args.extend(changes.iter().map(|(k, v)| format!("{k}={v}")));
        args.push(self.dataset.clone());
        CommandLine { program: "zfs".into(), args }
    }
}

/// Make this running system's host id the installed system's (`networking.hostId`) before pools are
/// created or imported: a pool records the host id that last used it, and the installed system then
/// imports it at first boot as its own, without forcing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostId {
    /// 8 hex digits.
    pub host_id: String,
}

impl HostId {
    /// The id as a number, as /etc/hostid stores it.
    pub fn value(&self) -> Option<u32> {
        u32::from_str_radix(&self.host_id, 16).ok()
    }
}

impl OperationKind for HostId {
    fn destroys_data(&self) -> bool {
        false
    }

    /// Changes the running system, like opening or mounting: `mount` runs it too.
    fn creates(&self) -> bool {
        false
    }

    /// What `zgenhostid` does.
    fn review(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zgenhostid -f {} (this system's /etc/hostid)", self.host_id)
    }
}

/// Export a pool so another system can import it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZpoolExport {
    /// Pool name.
    pub pool: String,
    /// The plan's devices of the pool: a pool of the same name made of others is not this plan's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
}

impl OperationKind for ZpoolExport {
    /// Exported with zpool, once listed.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["zpool"]
    }

    fn destroys_data(&self) -> bool {
        false
    }

    fn command(&self) -> Option<CommandLine> {
        Some(CommandLine::new("zpool", ["export", self.pool.as_str()]))
    }
}

/// A partition named in a pool's topology: `"<disk>/<partition>"`.
pub fn split_member(reference: &str) -> Option<(&str, &str)> {
    reference.split_once('/').filter(|(d, p)| !d.is_empty() && !p.is_empty())
}

impl Plan {
    /// The partitions that are members of `pool`, as `(disk, partition)` in plan order.
    pub fn pool_members(&self, pool: &str) -> Vec<(&str, &str)> {
        let mut members = Vec::new();
        for (disk_name, disk) in &self.disks {
            for (part_name, part) in &disk.partitions {
                if let Some(Content::Zfs(member)) = part.content.as_ref().map(Content::innermost) {
                    if member.pool == pool {
                        members.push((disk_name.as_str(), part_name.as_str()));
                    }
                }
            }
        }
        members
    }
}

impl ContentNode for ZfsMember {
    fn kind(&self) -> &'static str {
        "zfs"
    }

    /// Every member shows as a ZFS member; a cache (L2ARC) device carries no pool name, the others do.
    fn blkid_signature(&self) -> Option<String> {
        Some("TYPE=zfs_member".to_string())
    }

    fn validate(&self, check: &mut Checker, plan: &Plan, path: &FieldPath, _inside_luks: bool) {
        if !plan.pools.contains_key(&self.pool) {
            check.report(path.join("zfs").join("pool"), format!("pool {:?} is not among the plan's pools", self.pool));
        }
    }

    /// A member makes nothing itself: the pool is created from all its members at once.
    fn compile(&self, build: &mut Builder<'_>, site: &Site<'_>) {
        build.register_member(site.owner, site.device, site.provider);
    }

    fn nixos(&self, _module: &mut ModuleParts, _device: &str) {}

    fn to_disko(&self, w: &mut Writer) {
        w.string("type", "zfs");
        w.string("pool", &self.pool);
    }

    fn partition_type(&self) -> &'static str {
        "zfs"
    }
}

/// Reads disko's `type = "zfs"` (a pool member).
pub(crate) fn member_from_disko(
    r: &mut Reader,
    object: &Object,
    path: &FieldPath,
    _inside_luks: bool,
) -> Option<Content> {
    r.only(object, path, &["type", "pool"]);
    Some(Content::Zfs(ZfsMember { pool: r.string(object, "pool", path).unwrap_or_default() }))
}

fn valid_zfs_component(name: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_-.:".contains(c);
    !name.is_empty() && name != "." && name != ".." && name.chars().all(allowed)
}

fn valid_pool_name(name: &str) -> bool {
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let looks_like_device = name.len() >= 2 && name.starts_with('c') && name.as_bytes()[1].is_ascii_digit();
    starts_with_letter
        && name.len() <= 255
        && valid_zfs_component(name)
        && !looks_like_device
        && !RESERVED_POOL_PREFIXES.iter().any(|r| name.starts_with(r))
        && !RESERVED_POOL_NAMES.contains(&name)
}

/// The longest name of a dataset, pool included (ZFS_MAX_DATASET_NAME_LEN is 256 with its NUL).
const MAX_DATASET_NAME: usize = 255;

fn valid_dataset_name(name: &str) -> bool {
    name.split('/').all(valid_zfs_component) && name.len() < 200
}

/// Encryption whose key is typed at a prompt.
fn prompts_for_key(properties: &BTreeMap<String, String>) -> bool {
    encrypted(properties) && properties.get("keylocation").is_none_or(|l| l == "prompt")
}

impl Pool {
    /// Whether creating the pool or its datasets (or what its volumes hold) asks for the passphrase.
    pub fn needs_passphrase(&self) -> bool {
        prompts_for_key(&self.root_fs_options)
            || self
                .datasets
                .values()
                .any(|d| prompts_for_key(&d.properties) || d.content.as_ref().is_some_and(Content::needs_passphrase))
    }

    /// Reports every problem of this pool: name, members and topology, options, datasets, encryption.
    pub(crate) fn validate(&self, check: &mut Checker, plan: &Plan, name: &str) {
        let path = &FieldPath::root().join("pools").join(name);
        if !valid_pool_name(name) {
            let message = format!(
                "{} is not a pool name (up to 255 letters, digits, '_', '-', '.', ':', starting with a letter; not a \
                 vdev keyword)",
                crate::error::shown(name)
            );
            check.report(path.clone(), message);
        }
        let members = plan.pool_members(name);
        if members.is_empty() {
            check.report(
                path.clone(),
                format!("pool {name:?} has no members: give a partition content.zfs = {{ pool = {name:?} }}"),
            );
        }
        if self.vdevs.is_empty() {
            let classes = [&self.log, &self.special, &self.dedup].iter().any(|c| !c.is_empty());
            if classes || !self.cache.is_empty() || !self.spare.is_empty() {
                check.report(
                    path.join("vdevs"),
                    "a pool with log, special, dedup, cache or spare devices must list its data vdevs",
                );
            }
            if !members.is_empty() {
                vdev_shape(check, self.mode, members.len(), &path.join("mode"));
                vdev_disks(check, self.mode, members.iter().map(|(d, _)| *d), &path.join("mode"));
            }
        } else {
            self.validate_topology(check, plan, name, path, &members);
        }
        super::zfs_properties::check_pool_options(check, &self.options, &path.join("options"));
        super::zfs_properties::check_dataset_properties(check, &self.root_fs_options, &path.join("root_fs_options"));
        if self.mountpoint.is_some() && self.root_fs_options.contains_key("mountpoint") {
            check.report(path.join("mountpoint"), "give the mountpoint either here or in root_fs_options, not both");
        }
        if let Some(mountpoint) = &self.mountpoint {
            check.mountpoint(mountpoint, &path.join("mountpoint"));
        }
        validate_encryption(check, &self.root_fs_options, &BTreeMap::new(), &path.join("root_fs_options"));
        validate_identity(check, self.keep, self.guid.as_deref(), path, "pool");
        for (dataset_name, dataset) in &self.datasets {
            let ds_path = path.join("datasets").join(dataset_name.clone());
            let full = name.len() + 1 + dataset_name.len();
            if valid_pool_name(name) && valid_dataset_name(dataset_name) && full > MAX_DATASET_NAME {
                let message = format!(
                    "{} is {full} bytes long, and ZFS names are at most {MAX_DATASET_NAME}",
                    crate::error::shown(&format!("{name}/{dataset_name}"))
                );
                check.report(ds_path.clone(), message);
            }
            if !valid_dataset_name(dataset_name) {
                let message = format!(
                    "{dataset_name:?} is not a dataset name (components of letters, digits, '_', '-', '.', ':' \
                        separated by '/')"
                );
                check.report(ds_path.clone(), message);
            } else if let Some((parent, _)) = dataset_name.rsplit_once('/') {
                if !self.datasets.contains_key(parent) {
                    check.report(ds_path.clone(), format!("its parent dataset {parent:?} is not in the plan"));
                }
            }
            dataset.validate(check, plan, &self.root_fs_options, &ds_path);
        }
    }

    fn validate_topology(
        &self,
        check: &mut Checker,
        plan: &Plan,
        name: &str,
        path: &FieldPath,
        members: &[(&str, &str)],
    ) {
        let mut used: HashMap<String, FieldPath> = HashMap::new();
        let mut check_ref = |check: &mut Checker, reference: &str, ref_path: FieldPath| {
            let Some((disk, part)) = split_member(reference) else {
                check.report(ref_path, format!("{reference:?} is not a member reference (\"<disk>/<partition>\")"));
                return;
            };
            let known = plan.disks.get(disk).and_then(|d| d.partitions.get(part)).is_some();
            if !known {
                check.report(ref_path, format!("partition {reference:?} is not in the plan"));
            } else if !members.contains(&(disk, part)) {
                let message = format!(
                    "partition {reference:?} is not a member of pool {name:?} (its content must be zfs \
                        = {{ pool = {name:?} }})"
                );
                check.report(ref_path, message);
            } else if let Some(first) = used.insert(reference.to_string(), ref_path.clone()) {
                check.report(ref_path, format!("{reference:?} is used twice in the topology (also at {first})"));
            }
        };
        let groups = [("vdevs", &self.vdevs), ("log", &self.log), ("special", &self.special), ("dedup", &self.dedup)];
        for (group, vdevs) in groups {
            for (index, vdev) in vdevs.iter().enumerate() {
                let vdev_path = path.join(group).join(format!("[{index}]"));
                if vdev.members.is_empty() {
                    check.report(vdev_path.join("members"), "a vdev needs members");
                    continue;
                }
                vdev_shape(check, vdev.mode, vdev.members.len(), &vdev_path.join("mode"));
                let disks = vdev.members.iter().filter_map(|m| split_member(m).map(|(d, _)| d));
                vdev_disks(check, vdev.mode, disks, &vdev_path.join("members"));
                for (m, member) in vdev.members.iter().enumerate() {
                    check_ref(check, member, vdev_path.join("members").join(format!("[{m}]")));
                }
            }
        }
        for (group, list) in [("cache", &self.cache), ("spare", &self.spare)] {
            for (index, member) in list.iter().enumerate() {
                check_ref(check, member, path.join(group).join(format!("[{index}]")));
            }
        }
        for (disk, part) in members {
            let reference = format!("{disk}/{part}");
            if !used.contains_key(&reference) {
                check.report(
                    path.join("vdevs"),
                    format!("member {reference:?} of pool {name:?} is in no vdev, log, special, dedup, cache or spare"),
                );
            }
        }
    }

    /// `zpool create` from the members' devices, then each dataset, then what volumes hold.
    pub(crate) fn compile(&self, build: &mut Builder<'_>, name: &str) {
        let member_refs: Vec<String> =
            build.plan.pool_members(name).into_iter().map(|(d, p)| format!("{d}/{p}")).collect();
        let members: Vec<MemberDevice> = member_refs.iter().filter_map(|r| build.member(r)).cloned().collect();
        let after: Vec<String> = members.iter().map(|m| m.provided_by.clone()).collect();
        let devices: Vec<String> = members.iter().map(|m| m.device.clone()).collect();
        let vdevs = if self.vdevs.is_empty() {
            vec![VdevDevices { mode: self.mode, devices: devices.clone() }]
        } else {
            vdev_devices(build, &self.vdevs)
        };
        let lookup = |list: &[String]| -> Vec<String> {
            list.iter().filter_map(|m| build.member(m)).map(|m| m.device.clone()).collect()
        };
        let cache = lookup(&self.cache);
        let spare = lookup(&self.spare);
        let log = vdev_devices(build, &self.log);
        let special = vdev_devices(build, &self.special);
        let dedup = vdev_devices(build, &self.dedup);
        let mut root_fs_options = self.root_fs_options.clone();
        if self.mountpoint.is_some() {
            root_fs_options.insert("mountpoint".to_string(), "legacy".to_string());
        } else {
            // Nothing of the pool mounts itself onto the installer's own filesystem.
            root_fs_options.entry("mountpoint".to_string()).or_insert_with(|| "none".to_string());
        }
        let shape = describe_vdevs(&vdevs);
        let host_id = "host-id".to_string();
        if !build.steps.iter().any(|s| s.id == host_id) {
            let id = build.plan.effective_host_id();
            build.push(
                host_id.clone(),
                format!("Use host id {id} (the installed system's networking.hostId) for the pools"),
                vec![],
                None,
                vec![],
                Operation::HostId(HostId { host_id: id }),
            );
        }
        let mut after = after;
        after.push(host_id);
        let create = build.push(
            format!("zpool-create:{name}"),
            format!("Create ZFS pool {name} ({shape})"),
            devices,
            None,
            after,
            Operation::ZpoolCreate(ZpoolCreate {
                pool: name.to_string(),
                altroot: build.options.target.clone(),
                vdevs,
                log,
                special,
                dedup,
                cache,
                spare,
                options: self.options.clone(),
                root_fs_options,
                guid: self.guid.clone().filter(|_| self.keep),
            }),
        );
        if self.keep {
            // Made anew, the kept pool would be destroyed: it may only be found, by its GUID.
            if let Some(step) = build.steps.iter_mut().find(|s| s.id == create) {
                step.keeps = Some(format!("pool {name}"));
            }
        }
        if let Some(mountpoint) = &self.mountpoint {
            build.add_mount(MountSpec::new(mountpoint, name, "zfs", &[], create.clone()));
        }
        for (dataset_name, dataset) in &self.datasets {
            dataset.compile(build, name, dataset_name, &create);
        }
    }

    /// The pool as disko's `type = "zpool"`.
    pub(crate) fn to_disko(&self, w: &mut Writer, plan: &Plan, pool_name: &str) -> Result<(), ExportError> {
        let pool_path = FieldPath::root().join("pools").join(pool_name);
        w.open(pool_name);
        w.string("type", "zpool");
        let disk_of = |member: &str, path: &FieldPath| -> Result<String, ExportError> {
            let (disk, _) = split_member(member).ok_or_else(|| ExportError {
                path: path.clone(),
                message: format!("{member:?} is not a member reference"),
            })?;
            let count = plan.pool_members(pool_name).iter().filter(|(d, _)| *d == disk).count();
            if count > 1 {
                // disko names a member by its disk, or by an absolute path: the partition's label here.
                let (_, part) = split_member(member).unwrap_or_default();
                let label = plan.disks.get(disk).and_then(|d| d.partitions.get(part)).and_then(|p| p.label.clone());
                let label = label.unwrap_or_else(|| super::gpt::default_partition_label(disk, part));
                return Ok(format!("/dev/disk/by-partlabel/{label}"));
            }
            Ok(disk.to_string())
        };
        if self.vdevs.is_empty() {
            w.string("mode", self.mode.keyword().unwrap_or(""));
        } else {
            w.open("mode");
            w.open("topology");
            w.string("type", "topology");
            let groups =
                [("vdev", &self.vdevs), ("log", &self.log), ("special", &self.special), ("dedup", &self.dedup)];
            for (group, vdevs) in groups {
                if vdevs.is_empty() {
                    continue;
                }
                w.line(&format!("{group} = ["));
                w.indent += 1;
                for (index, vdev) in vdevs.iter().enumerate() {
                    let path = pool_path.join(if group == "vdev" { "vdevs" } else { group }).join(format!("[{index}]"));
                    let members = vdev.members.iter().map(|m| disk_of(m, &path)).collect::<Result<Vec<_>, _>>()?;
                    let quoted: Vec<String> = members.iter().map(|m| nix_string(m)).collect();
                    w.line(&format!(
                        "{{ mode = {}; members = [ {} ]; }}",
                        nix_string(vdev.mode.keyword().unwrap_or("")),
                        quoted.join(" ")
                    ));
                }
                w.indent -= 1;
                w.line("];");
            }
            for (group, list) in [("cache", &self.cache), ("spare", &self.spare)] {
                if !list.is_empty() {
                    let members =
                        list.iter().map(|m| disk_of(m, &pool_path.join(group))).collect::<Result<Vec<_>, _>>()?;
                    w.list(group, &members);
                }
            }
            w.close();
            w.close();
        }
        w.properties("options", &self.options);
        let mut root_fs = self.root_fs_options.clone();
        if let Some(mountpoint) = &self.mountpoint {
            w.string("mountpoint", mountpoint);
            root_fs.insert("mountpoint".into(), "legacy".into());
        }
        w.properties("rootFsOptions", &root_fs);
        if !self.datasets.is_empty() {
            w.open("datasets");
            for (ds_name, dataset) in &self.datasets {
                dataset.to_disko(w, ds_name);
            }
            w.close();
        }
        w.close();
        Ok(())
    }

    /// The pool's part of the NixOS module: its mounts and the contents of its volumes.
    pub(crate) fn nixos(&self, module: &mut ModuleParts, pool_name: &str) {
        if encrypted(&self.root_fs_options) {
            module.native_encryption = true;
        }
        if let Some(mountpoint) = &self.mountpoint {
            module.file_systems.push(FileSystemEntry::new(mountpoint, pool_name, "zfs", &[]));
        }
        for (dataset_name, dataset) in &self.datasets {
            let full = format!("{pool_name}/{dataset_name}");
            if encrypted(&dataset.properties) {
                module.native_encryption = true;
            }
            match dataset.kind {
                DatasetKind::Filesystem => {
                    if let Some(mountpoint) = &dataset.mountpoint {
                        module.file_systems.push(FileSystemEntry::new(
                            mountpoint,
                            &full,
                            "zfs",
                            &dataset.mount_options,
                        ));
                    }
                }
                DatasetKind::Volume => {
                    if let Some(content) = &dataset.content {
                        module.content(content, &format!("/dev/zvol/{full}"));
                    }
                }
            }
        }
    }
}

impl Dataset {
    fn validate(&self, check: &mut Checker, plan: &Plan, inherited: &BTreeMap<String, String>, ds_path: &FieldPath) {
        check.mount_options(&self.mount_options, &ds_path.join("mount_options"));
        if self.mountpoint.is_some() && self.properties.contains_key("mountpoint") {
            check.report(ds_path.join("mountpoint"), "give the mountpoint either here or in properties, not both");
        }
        match self.kind {
            DatasetKind::Filesystem => {
                if self.size.is_some() {
                    check.report(ds_path.join("size"), "only volumes have a size");
                }
                if self.content.is_some() {
                    check.report(ds_path.join("content"), "only volumes hold content");
                }
                if let Some(mountpoint) = &self.mountpoint {
                    check.mountpoint(mountpoint, &ds_path.join("mountpoint"));
                }
            }
            DatasetKind::Volume => {
                if !matches!(self.size, Some(Size::Bytes(_))) {
                    check.report(ds_path.join("size"), "a volume needs a size in bytes or units (not \"rest\")");
                }
                if self.mountpoint.is_some() {
                    check.report(
                        ds_path.join("mountpoint"),
                        "a volume is not mounted itself: give its content a mountpoint",
                    );
                }
                match &self.content {
                    Some(Content::Zfs(_)) => {
                        check.report(ds_path.join("content"), "a pool cannot be built on a volume")
                    }
                    Some(content) => check.content(plan, content, &ds_path.join("content"), false),
                    None => {}
                }
            }
        }
        super::zfs_properties::check_dataset_properties(check, &self.properties, &ds_path.join("properties"));
        validate_encryption(check, &self.properties, inherited, &ds_path.join("properties"));
        validate_identity(check, self.keep, self.guid.as_deref(), ds_path, "dataset");
    }

    fn compile(&self, build: &mut Builder<'_>, pool: &str, dataset_name: &str, create: &str) {
        let full = format!("{pool}/{dataset_name}");
        let mut after = vec![create.to_string()];
        if let Some((parent, _)) = dataset_name.rsplit_once('/') {
            after.push(format!("zfs-create:{pool}/{parent}"));
        }
        let mut properties = self.properties.clone();
        if self.mountpoint.is_some() {
            properties.insert("mountpoint".to_string(), "legacy".to_string());
        }
        let volume_size = match self.kind {
            DatasetKind::Volume => self.size.and_then(Size::bytes),
            DatasetKind::Filesystem => None,
        };
        let description = match volume_size {
            Some(bytes) => format!("Create {} volume {full}", human(bytes)),
            None => format!("Create dataset {full}"),
        };
        let created = build.push(
            format!("zfs-create:{full}"),
            description,
            vec![full.clone()],
            None,
            after,
            Operation::ZfsCreate(ZfsCreate {
                dataset: full.clone(),
                volume_size,
                properties,
                guid: self.guid.clone().filter(|_| self.keep),
            }),
        );
        if let Some(mountpoint) = &self.mountpoint {
            build.add_mount(MountSpec::new(mountpoint, &full, "zfs", &self.mount_options, created.clone()));
        }
        if let Some(content) = &self.content {
            let device = format!("/dev/zvol/{full}");
            build.content(content, &Site { device: &device, provider: &created, owner: &full, disk: None });
        }
    }

    fn to_disko(&self, w: &mut Writer, ds_name: &str) {
        w.open(ds_name);
        let mut properties = self.properties.clone();
        match self.kind {
            DatasetKind::Filesystem => {
                w.string("type", "zfs_fs");
                if let Some(m) = &self.mountpoint {
                    w.string("mountpoint", m);
                    properties.insert("mountpoint".into(), "legacy".into());
                }
                if !self.mount_options.is_empty() {
                    w.list("mountOptions", &self.mount_options);
                }
            }
            DatasetKind::Volume => {
                w.string("type", "zfs_volume");
                if let Some(Size::Bytes(bytes)) = self.size {
                    w.string("size", &format_exact(bytes));
                }
                if let Some(content) = &self.content {
                    // No partition: nothing of the plan names a volume as the filesystem it joins.
                    w.content_of(&format!("zfs volume {ds_name}"), content);
                }
            }
        }
        w.properties("options", &properties);
        w.close();
    }
}

fn vdev_devices(build: &Builder<'_>, vdevs: &[Vdev]) -> Vec<VdevDevices> {
    vdevs
        .iter()
        .map(|v| VdevDevices {
            mode: v.mode,
            devices: v.members.iter().filter_map(|m| build.member(m)).map(|m| m.device.clone()).collect(),
        })
        .collect()
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

fn vdev_shape(check: &mut Checker, mode: VdevMode, count: usize, path: &FieldPath) {
    let needed = mode.minimum_members();
    if count < needed {
        let what = match mode {
            VdevMode::Mirror => "a mirror".to_string(),
            other => format!("a {} vdev", other.keyword().unwrap_or("")),
        };
        check.report(path.clone(), format!("{what} needs at least {needed} members, but has {count}"));
    }
}

fn vdev_disks<'a>(check: &mut Checker, mode: VdevMode, disks: impl Iterator<Item = &'a str>, path: &FieldPath) {
    if mode == VdevMode::Stripe {
        return;
    }
    let mut seen = HashSet::new();
    for disk in disks {
        if !seen.insert(disk) {
            let keyword = mode.keyword().unwrap_or("");
            check.report(
                path.clone(),
                format!("two members of this {keyword} vdev are on disk {disk:?}: losing that disk loses both"),
            );
            return;
        }
    }
}

/// Native encryption needs a key format, and a key location that can be read.
fn validate_encryption(
    check: &mut Checker,
    properties: &BTreeMap<String, String>,
    inherited: &BTreeMap<String, String>,
    path: &FieldPath,
) {
    let encryption = properties.get("encryption").map(String::as_str);
    let is_encrypted = matches!(encryption, Some(e) if e != "off");
    let keyformat = properties.get("keyformat").or_else(|| is_encrypted.then(|| inherited.get("keyformat")).flatten());
    if is_encrypted {
        match keyformat.map(String::as_str) {
            None => check.report(
                path.join("encryption"),
                "encryption is on but no keyformat says how the key is given (keyformat = \"passphrase\")",
            ),
            Some("passphrase" | "hex" | "raw") => {}
            Some(other) => {
                check.report(path.join("keyformat"), format!("{other:?} is not a keyformat (passphrase, hex or raw)"))
            }
        }
        let location = properties.get("keylocation").map(String::as_str).unwrap_or("prompt");
        if !valid_key_location(location) {
            let message =
                format!("{location:?} gives no way to get the key: use \"prompt\" or \"file:///path/to/keyfile\"");
            check.report(path.join("keylocation"), message);
        } else if location == "prompt" && keyformat.map(String::as_str) == Some("raw") {
            check.report(
                path.join("keylocation"),
                "a raw key cannot be typed at a prompt: use keyformat = \"passphrase\" or a key file",
            );
        }
    } else if properties.contains_key("keyformat") && encryption.is_some() {
        check.report(path.join("keyformat"), "keyformat is set but encryption is off");
    }
}

fn mode_from_disko(r: &mut Reader, text: &str, path: &FieldPath) -> Option<VdevMode> {
    match text {
        "" => Some(VdevMode::Stripe),
        "mirror" => Some(VdevMode::Mirror),
        "raidz" | "raidz1" => Some(VdevMode::Raidz1),
        "raidz2" => Some(VdevMode::Raidz2),
        "raidz3" => Some(VdevMode::Raidz3),
        other => {
            r.refuse(
                path,
                format!("{other:?} is not a vdev mode nix-dabei supports (\"\", mirror, raidz1, raidz2, raidz3)"),
            );
            None
        }
    }
}

/// disko names vdev members by disk; the plan by partition.
fn member_reference(
    r: &mut Reader,
    disks: &IndexMap<String, super::gpt::Disk>,
    pool: &str,
    name: &str,
    path: &FieldPath,
) -> Option<String> {
    if let Some(label) = name.strip_prefix("/dev/disk/by-partlabel/") {
        let in_pool = |p: &super::gpt::Partition| {
            let member = p.content.as_ref().map(Content::innermost);
            matches!(member, Some(Content::Zfs(m)) if m.pool == pool)
        };
        for (disk_name, disk) in disks {
            for (part_name, part) in &disk.partitions {
                let own =
                    part.label.clone().unwrap_or_else(|| super::gpt::default_partition_label(disk_name, part_name));
                if own == label && in_pool(part) {
                    return Some(format!("{disk_name}/{part_name}"));
                }
            }
        }
        r.refuse(path, format!("{name:?} is not a partition of pool {pool:?} in this configuration"));
        return None;
    }
    let Some(disk) = disks.get(name) else {
        r.refuse(path, format!("{name:?} is not a disk of this configuration"));
        return None;
    };
    let members: Vec<&String> = disk
        .partitions
        .iter()
        .filter(|(_, p)| matches!(p.content.as_ref().map(Content::innermost), Some(Content::Zfs(m)) if m.pool == pool))
        .map(|(k, _)| k)
        .collect();
    match members.as_slice() {
        [one] => Some(format!("{name}/{one}")),
        [] => {
            r.refuse(path, format!("disk {name:?} has no partition in pool {pool:?}"));
            None
        }
        _ => {
            r.refuse(
                path,
                format!("disk {name:?} has several partitions in pool {pool:?}; nix-dabei cannot tell which is meant"),
            );
            None
        }
    }
}

/// Where disko gives a mountpoint both as the node's `mountpoint` and as a ZFS property: a legacy
/// property goes; an equal one goes with a warning; a different one is refused.
fn legacy_mountpoint(
    r: &mut Reader,
    properties: &mut BTreeMap<String, String>,
    mountpoint: Option<&str>,
    path: &FieldPath,
    what: &str,
) -> bool {
    if mountpoint.is_none() {
        return true;
    }
    match properties.get("mountpoint").map(String::as_str) {
        Some("legacy") => {
            properties.remove("mountpoint");
        }
        Some(other) if Some(other) == mountpoint => {
            properties.remove("mountpoint");
            r.warn(format!("{}: mounted as a legacy mount at the same place", path.join("mountpoint")));
        }
        Some(_) => {
            r.refuse(&path.join("mountpoint"), format!("differs from the {what}'s mountpoint"));
            return false;
        }
        None => {}
    }
    true
}

/// Reads disko's `type = "zpool"`, with its topology, properties and datasets.
pub(crate) fn pool_from_disko(
    r: &mut Reader,
    name: &str,
    value: &Value,
    disks: &IndexMap<String, super::gpt::Disk>,
    path: &FieldPath,
) -> Option<Pool> {
    let object = r.object(value, path)?;
    r.only(
        object,
        path,
        &["type", "name", "mode", "options", "rootFsOptions", "mountpoint", "mountOptions", "datasets"],
    );
    let mut pool = Pool {
        options: r.properties(object, "options", path),
        root_fs_options: r.properties(object, "rootFsOptions", path),
        ..Pool::default()
    };
    match object.get("mode") {
        None | Some(Value::Null) => {}
        Some(Value::String(mode)) => pool.mode = mode_from_disko(r, mode, &path.join("mode"))?,
        Some(Value::Object(mode)) => {
            // disko writes `mode = { topology = { type = "topology"; vdev = ...; }; }`.
            let (topology, topology_path) = match mode.get("topology").and_then(Value::as_object) {
                Some(inner) if mode.len() == 1 => (inner, path.join("mode").join("topology")),
                _ => (mode, path.join("mode")),
            };
            r.only(topology, &topology_path, &["type", "vdev", "log", "cache", "spare", "special", "dedup"]);
            let groups = [
                ("vdev", &mut pool.vdevs),
                ("log", &mut pool.log),
                ("special", &mut pool.special),
                ("dedup", &mut pool.dedup),
            ];
            for (group, target) in groups {
                let group_path = topology_path.join(group);
                // disko takes one special vdev as an attribute set, several as a list.
                let one;
                let list = match topology.get(group) {
                    Some(Value::Array(list)) => list,
                    Some(object @ Value::Object(_)) => {
                        one = vec![object.clone()];
                        &one
                    }
                    _ => continue,
                };
                for (index, vdev) in list.iter().enumerate() {
                    let vdev_path = group_path.join(format!("[{index}]"));
                    let Some(vdev) = r.object(vdev, &vdev_path) else { continue };
                    r.only(vdev, &vdev_path, &["mode", "members"]);
                    let mode_text = r.string(vdev, "mode", &vdev_path).unwrap_or_default();
                    let Some(mode) = mode_from_disko(r, &mode_text, &vdev_path.join("mode")) else { continue };
                    let names = r.strings(vdev, "members", &vdev_path);
                    let members = names
                        .iter()
                        .enumerate()
                        .filter_map(|(i, m)| {
                            member_reference(r, disks, name, m, &vdev_path.join("members").join(format!("[{i}]")))
                        })
                        .collect();
                    target.push(Vdev { mode, members });
                }
            }
            for (group, target) in [("cache", &mut pool.cache), ("spare", &mut pool.spare)] {
                let names = r.strings(topology, group, &topology_path);
                *target = names
                    .iter()
                    .enumerate()
                    .filter_map(|(i, m)| {
                        member_reference(r, disks, name, m, &topology_path.join(group).join(format!("[{i}]")))
                    })
                    .collect();
            }
        }
        Some(_) => r.refuse(&path.join("mode"), "is neither a mode nor a topology"),
    }
    if !r.mount_options(object, path).is_empty() {
        r.refuse(&path.join("mountOptions"), "mount options for the pool's root dataset are not supported");
    }
    pool.mountpoint = r.string(object, "mountpoint", path);
    legacy_mountpoint(r, &mut pool.root_fs_options, pool.mountpoint.as_deref(), &path.join("rootFsOptions"), "pool");
    let datasets_path = path.join("datasets");
    if let Some(datasets) = object.get("datasets").and_then(|d| r.object(d, &datasets_path)) {
        for (ds_name, value) in datasets {
            let ds_path = datasets_path.join(ds_name.clone());
            if let Some(dataset) = dataset_from_disko(r, value, &ds_path) {
                pool.datasets.insert(ds_name.clone(), dataset);
            }
        }
    }
    // disko creates missing parents; the plan lists them.
    let names: Vec<String> = pool.datasets.keys().cloned().collect();
    for dataset in names {
        let mut parent = dataset.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            if !pool.datasets.contains_key(up) {
                r.warn(format!(
                    "{}: parent dataset {up:?} added (disko creates it implicitly)",
                    datasets_path.join(dataset.clone())
                ));
                pool.datasets.insert(up.to_string(), Dataset::default());
            }
            parent = up;
        }
    }
    pool.datasets.sort_by(|a, _, b, _| a.cmp(b));
    Some(pool)
}

fn dataset_from_disko(r: &mut Reader, value: &Value, path: &FieldPath) -> Option<Dataset> {
    let object = r.object(value, path)?;
    let kind = r.string(object, "type", path).unwrap_or_default();
    let mut properties = r.properties(object, "options", path);
    match kind.as_str() {
        "zfs_fs" => {
            r.only(object, path, &["type", "name", "mountpoint", "options", "mountOptions"]);
            let mountpoint = r.string(object, "mountpoint", path);
            if !legacy_mountpoint(r, &mut properties, mountpoint.as_deref(), &path.join("options"), "dataset") {
                return None;
            }
            let mount_options = r.mount_options(object, path);
            Some(Dataset {
                kind: DatasetKind::Filesystem,
                mountpoint,
                mount_options,
                properties,
                size: None,
                content: None,
                ..Dataset::default()
            })
        }
        "zfs_volume" => {
            r.only(object, path, &["type", "name", "size", "options", "content"]);
            let size_text = r.string(object, "size", path).unwrap_or_default();
            let Some(bytes) = parse_bytes(&size_text) else {
                r.refuse(&path.join("size"), format!("{size_text:?} is not a size"));
                return None;
            };
            let content = object.get("content").and_then(|c| r.content(c, &path.join("content"), false));
            Some(Dataset {
                kind: DatasetKind::Volume,
                mountpoint: None,
                mount_options: vec![],
                properties,
                size: Some(Size::Bytes(bytes)),
                content,
                ..Dataset::default()
            })
        }
        other => {
            r.refuse(&path.join("type"), format!("{other:?} is not a dataset type (zfs_fs, zfs_volume)"));
            None
        }
    }
}
