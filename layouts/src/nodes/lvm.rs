//! LVM: physical volumes (a partition or LUKS content), volume groups at the top of a plan, and their
//! logical volumes (plain, thin pools and thin volumes, raid and mirror), each carrying any content.
//!
//! A volume group is made of the partitions whose content is `lvm_pv = { volume_group = "<name>" }`.
//! Physical volumes get UUIDs derived from the plan, so a re-run recognises its own; a volume group is
//! the plan's when it is made of exactly the plan's physical volumes. Logical volumes are created in
//! order (thin pools first, sizes in percent of the free space last, as disko orders them), each after
//! the one before, and what they hold is made on `/dev/<group>/<volume>`.

use std::fmt;
use std::str::FromStr;

use indexmap::IndexMap;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::{Content, ContentNode, Site};
use crate::compile::{Builder, MemberDevice};
use crate::disko::{Object, Reader, Writer};
use crate::error::{shown, FieldPath};
use crate::model::Plan;
use crate::nixos::ModuleParts;
use crate::programs::Program;
use crate::size::{format_exact, parse_bytes};
use crate::steps::{CommandLine, Operation, OperationKind};
use crate::validate::Checker;

/// LVM's programs (names of one program, `lvm`), and the thin pool checker LVM itself runs when it
/// activates a thin pool.
pub const PROGRAMS: &[Program] = &[
    Program::target("pvcreate", "lvm2", "lvm2", "making physical volumes"),
    Program::target("vgcreate", "lvm2", "lvm2", "making volume groups"),
    Program::target("lvcreate", "lvm2", "lvm2", "making logical volumes"),
    Program::target("vgchange", "lvm2", "lvm2", "activating and deactivating volume groups"),
    Program::target("pvs", "lvm2", "lvm2", "reading physical volumes"),
    Program::target("lvs", "lvm2", "lvm2", "reading logical volumes"),
    Program::target(
        "thin_check",
        "thin-provisioning-tools",
        "thin-provisioning-tools",
        "run by LVM when it activates a thin pool",
    ),
];

/// A physical volume of a volume group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LvmPv {
    /// The volume group it belongs to.
    pub volume_group: String,
    /// Its UUID in LVM's form (`xxxxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxxxx`), for one that is already there
    /// (read back by probe); derived from the plan when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// A volume group: its logical volumes, in the order they are created.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeGroup {
    /// Logical volumes by name.
    #[serde(default)]
    pub volumes: IndexMap<String, LogicalVolume>,
    /// Its UUID in LVM's form, for a group that is already there (read back by probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// A group that is on the disks already: it must be there with its `uuid`, made of the plan's physical
    /// volumes (each kept, with its own `uuid`); it is never made anew. Volumes may be added to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep: bool,
}

/// What kind of logical volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LvType {
    /// A thin pool, from which thin volumes take space as they are written.
    #[serde(rename = "thin-pool")]
    ThinPool,
    /// A thin volume in a thin pool (`pool`); its size is virtual.
    #[serde(rename = "thin")]
    Thin,
    /// Striped over every physical volume.
    #[serde(rename = "raid0")]
    Raid0,
    /// Mirrored.
    #[serde(rename = "raid1")]
    Raid1,
    /// Parity on one device.
    #[serde(rename = "raid4")]
    Raid4,
    /// Distributed parity.
    #[serde(rename = "raid5")]
    Raid5,
    /// Double distributed parity.
    #[serde(rename = "raid6")]
    Raid6,
    /// Striped mirrors.
    #[serde(rename = "raid10")]
    Raid10,
    /// The older device-mapper mirror.
    #[serde(rename = "mirror")]
    Mirror,
}

impl LvType {
    /// Its name in plans and for `lvcreate --type`.
    pub fn name(self) -> &'static str {
        match self {
            LvType::ThinPool => "thin-pool",
            LvType::Thin => "thin",
            LvType::Raid0 => "raid0",
            LvType::Raid1 => "raid1",
            LvType::Raid4 => "raid4",
            LvType::Raid5 => "raid5",
            LvType::Raid6 => "raid6",
            LvType::Raid10 => "raid10",
            LvType::Mirror => "mirror",
        }
    }

    /// The fewest physical volumes the type needs.
    fn minimum_volumes(self) -> usize {
        match self {
            LvType::ThinPool | LvType::Thin => 1,
            LvType::Raid0 | LvType::Raid1 | LvType::Mirror => 2,
            LvType::Raid4 | LvType::Raid5 => 3,
            LvType::Raid10 => 4,
            LvType::Raid6 => 5,
        }
    }

    /// The kernel modules the installed system's initrd needs to activate it.
    fn kernel_modules(self) -> &'static [&'static str] {
        match self {
            LvType::ThinPool | LvType::Thin => &["dm-thin-pool"],
            LvType::Mirror => &["dm-mirror"],
            LvType::Raid0 => &["dm-raid", "raid0"],
            LvType::Raid1 => &["dm-raid", "raid1"],
            LvType::Raid10 => &["dm-raid", "raid10"],
            LvType::Raid4 | LvType::Raid5 | LvType::Raid6 => &["dm-raid", "raid456"],
        }
    }

    const ALL: [LvType; 9] = [
        LvType::ThinPool,
        LvType::Thin,
        LvType::Raid0,
        LvType::Raid1,
        LvType::Raid4,
        LvType::Raid5,
        LvType::Raid6,
        LvType::Raid10,
        LvType::Mirror,
    ];
}

/// What a percentage of a logical volume's size is taken of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// The volume group's free space when the volume is created.
    Free,
    /// The whole volume group.
    Vg,
    /// The physical volumes' size.
    Pvs,
}

/// The size of a logical volume: bytes, or a percentage (`100%FREE`, `50%VG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LvSize {
    /// Exactly this many bytes (rounded up to the extent size by LVM).
    Bytes(u64),
    /// A percentage of something, from 1 to 100.
    Percent(u8, Share),
}

impl LvSize {
    /// `lvcreate`'s size arguments: `-L <bytes>b` or `-l <n>%<what>`; thin volumes take `-V`.
    fn arguments(self, thin: bool) -> Vec<String> {
        match self {
            LvSize::Bytes(bytes) => vec![if thin { "-V" } else { "-L" }.to_string(), format!("{bytes}b")],
            LvSize::Percent(n, share) => vec!["-l".to_string(), format!("{n}%{}", share.name())],
        }
    }
}

impl Share {
    fn name(self) -> &'static str {
        match self {
            Share::Free => "FREE",
            Share::Vg => "VG",
            Share::Pvs => "PVS",
        }
    }
}

/// A logical volume size that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a logical volume size (bytes, a number with K, M, G, T or P, or N%FREE, N%VG, N%PVS)")]
pub struct LvSizeError(pub String);

impl FromStr for LvSize {
    type Err = LvSizeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || LvSizeError(text.to_string());
        let trimmed = text.trim();
        if let Some((number, what)) = trimmed.split_once('%') {
            let share = match what.to_ascii_uppercase().as_str() {
                // disko reads a bare percentage as one of the free space.
                "" | "FREE" => Share::Free,
                "VG" => Share::Vg,
                "PVS" => Share::Pvs,
                _ => return Err(bad()),
            };
            let n: u8 = number.parse().map_err(|_| bad())?;
            if n == 0 || n > 100 {
                return Err(bad());
            }
            return Ok(LvSize::Percent(n, share));
        }
        parse_bytes(trimmed).filter(|b| *b > 0).map(LvSize::Bytes).ok_or_else(bad)
    }
}

impl fmt::Display for LvSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LvSize::Bytes(bytes) => f.write_str(&format_exact(*bytes)),
            LvSize::Percent(n, share) => write!(f, "{n}%{}", share.name()),
        }
    }
}

impl Serialize for LvSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for LvSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// A logical volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogicalVolume {
    /// Its size.
    pub size: LvSize,
    /// Its kind; a plain linear volume when absent.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<LvType>,
    /// The thin pool of a thin volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// What it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Its UUID in LVM's form, for a volume that is already there (read back by probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// A volume of a kept group that is there already and must stay as it is, with what it holds: it must
    /// be there with its `uuid`, is never made, and what it holds is identified by its UUID.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep: bool,
}

impl LogicalVolume {
    /// disko's creation order: thin pools, then the rest, then those sized by a percentage.
    fn order(&self) -> u8 {
        let pool = u8::from(self.kind != Some(LvType::ThinPool));
        let percent = u8::from(matches!(self.size, LvSize::Percent(..)));
        pool + 2 * percent
    }
}

/// Make a physical volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PvCreate {
    /// The device.
    pub device: String,
    /// Its UUID (LVM's form), derived from the plan.
    pub uuid: String,
}

impl OperationKind for PvCreate {
    /// Physical volumes are read back from `pvs`.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["pvs"]
    }

    fn destroys_data(&self) -> bool {
        true
    }

    fn command(&self) -> Option<CommandLine> {
        Some(CommandLine::new("pvcreate", ["--yes", "--norestorefile", "--uuid", &self.uuid, &self.device]))
    }
}

/// Make a volume group of the plan's physical volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgCreate {
    /// Its name.
    pub name: String,
    /// The physical volumes' devices.
    pub devices: Vec<String>,
    /// The physical volumes' UUIDs, in the same order: what makes the group the plan's own.
    pub uuids: Vec<String>,
    /// A kept group's own UUID: it may only be found, with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

impl OperationKind for VgCreate {
    /// The group is read back from `pvs`.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["pvs"]
    }

    /// It writes only on physical volumes the plan made.
    fn destroys_data(&self) -> bool {
        false
    }

    fn command(&self) -> Option<CommandLine> {
        let mut args = vec!["--yes".to_string(), self.name.clone()];
        args.extend(self.devices.iter().cloned());
        Some(CommandLine { program: "vgcreate".into(), args })
    }
}

/// Make a logical volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LvCreate {
    /// The volume group.
    pub group: String,
    /// The volume's name.
    pub name: String,
    /// `lvcreate`'s arguments for size, type and pool.
    pub arguments: Vec<String>,
    /// A kept volume's UUID: it may only be found, with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

impl OperationKind for LvCreate {
    /// Volumes are read back from `lvs`; LVM runs thin_check as it activates a thin pool.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["lvs", "thin_check"]
    }

    /// It takes free space of a group the plan made.
    fn destroys_data(&self) -> bool {
        false
    }

    fn command(&self) -> Option<CommandLine> {
        let mut args = vec!["--yes".to_string(), "--name".to_string(), self.name.clone()];
        args.extend(self.arguments.iter().cloned());
        args.push(self.group.clone());
        Some(CommandLine { program: "lvcreate".into(), args })
    }
}

/// Activate a volume group's logical volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgActivate {
    /// The volume group.
    pub name: String,
    /// The devices of its volumes that get a node once active (`/dev/<group>/<volume>`).
    pub devices: Vec<String>,
}

impl OperationKind for VgActivate {
    /// Whether the volumes are active is read from `lvs`.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["vgchange", "lvs", "thin_check"]
    }

    fn destroys_data(&self) -> bool {
        false
    }

    fn command(&self) -> Option<CommandLine> {
        // No dmeventd runs where nix-dabei does (a RAM OS, a rescue system): LVM would fail the activation
        // of a raid volume still syncing for want of monitoring it, as initramfs scripts avoid with the same
        // flag. The installed system monitors its volumes itself.
        Some(CommandLine::new("vgchange", ["--activate", "y", "--ignoremonitoring", &self.name]))
    }

    fn undo(&self) -> Option<(String, String, Operation)> {
        let name = &self.name;
        Some((
            format!("vg-deactivate:{name}"),
            format!("Deactivate volume group {name}"),
            Operation::VgDeactivate(VgDeactivate { name: name.clone(), devices: self.devices.clone() }),
        ))
    }
}

/// Deactivate a volume group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgDeactivate {
    /// The volume group.
    pub name: String,
    /// The devices of its volumes, gone once inactive.
    pub devices: Vec<String>,
}

impl OperationKind for VgDeactivate {
    /// Deactivated with vgchange, once read from `lvs`.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["vgchange", "lvs"]
    }

    fn destroys_data(&self) -> bool {
        false
    }

    fn command(&self) -> Option<CommandLine> {
        Some(CommandLine::new("vgchange", ["--activate", "n", "--ignoremonitoring", &self.name]))
    }
}

/// A physical volume's UUID in LVM's form (32 characters in groups of 6-4-4-4-4-4-6), from a UUID.
pub fn lvm_uuid(uuid: &str) -> String {
    let hex: String = uuid.chars().filter(char::is_ascii_hexdigit).collect();
    let groups = [6, 4, 4, 4, 4, 4, 6];
    let mut out = Vec::new();
    let mut at = 0;
    for size in groups {
        out.push(hex.get(at..at + size).unwrap_or_default().to_string());
        at += size;
    }
    out.join("-")
}

/// Characters LVM allows in volume group and logical volume names.
fn valid_lvm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c))
}

impl Plan {
    /// The partitions that are physical volumes of `group`, as `"<disk>/<partition>"` in plan order.
    pub fn volume_group_members(&self, group: &str) -> Vec<String> {
        self.partitions_holding(|content| matches!(content, Content::LvmPv(pv) if pv.volume_group == group))
    }

    /// The physical volume of `"<disk>/<partition>"` (inside any LUKS container).
    fn physical_volume(&self, owner: &str) -> Option<&LvmPv> {
        match self.partition_at(owner)?.content.as_ref()?.innermost() {
            Content::LvmPv(pv) => Some(pv),
            _ => None,
        }
    }

    /// The UUID of the physical volume of `"<disk>/<partition>"`: its own where the plan gives it, else
    /// one derived from the plan.
    pub fn physical_volume_uuid(&self, owner: &str) -> String {
        let given = self.physical_volume(owner).and_then(|pv| pv.uuid.clone());
        given.unwrap_or_else(|| lvm_uuid(&self.filesystem_uuid(owner)))
    }
}

/// True for a UUID in LVM's form: 32 letters and digits in groups of 6-4-4-4-4-4-6.
pub fn is_lvm_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([6, 4, 4, 4, 4, 4, 6])
        && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl ContentNode for LvmPv {
    fn kind(&self) -> &'static str {
        "lvm_pv"
    }

    fn blkid_signature(&self) -> Option<String> {
        Some("TYPE=LVM2_member".to_string())
    }

    fn validate(&self, check: &mut Checker, plan: &Plan, path: &FieldPath, _inside_luks: bool) {
        if let Some(uuid) = self.uuid.as_deref().filter(|u| !is_lvm_uuid(u)) {
            let message = format!("{} is not a physical volume UUID (LVM's form, 6-4-4-4-4-4-6)", shown(uuid));
            check.report(path.join("lvm_pv").join("uuid"), message);
        }
        if !plan.volume_groups.contains_key(&self.volume_group) {
            check.report(
                path.join("lvm_pv").join("volume_group"),
                format!("volume group {} is not among the plan's volume_groups", shown(&self.volume_group)),
            );
        }
    }

    /// A physical volume is made at once; the group is created from all of them after every disk.
    fn compile(&self, build: &mut Builder<'_>, site: &Site<'_>) {
        let uuid = self.uuid.clone().unwrap_or_else(|| lvm_uuid(&build.plan.filesystem_uuid(site.owner)));
        let made = build.push(
            format!("pvcreate:{}", site.owner),
            format!("Make {} a physical volume of {}", site.owner, self.volume_group),
            vec![site.device.to_string()],
            site.disk,
            vec![site.provider.to_string()],
            Operation::PvCreate(PvCreate { device: site.device.to_string(), uuid }),
        );
        build.register_member(site.owner, site.device, &made);
    }

    fn nixos(&self, _module: &mut ModuleParts, _device: &str) {}

    fn to_disko(&self, w: &mut Writer) {
        w.string("type", "lvm_pv");
        w.string("vg", &self.volume_group);
    }

    fn partition_type(&self) -> &'static str {
        "lvm"
    }
}

impl VolumeGroup {
    pub(crate) fn validate(&self, check: &mut Checker, plan: &Plan, name: &str) {
        let path = FieldPath::root().join("volume_groups").join(name.to_string());
        if !valid_lvm_name(name) {
            check.report(path.clone(), format!("{} is not a volume group name (letters, digits, +_.-)", shown(name)));
        }
        if plan.disks.contains_key(name) || plan.pools.contains_key(name) {
            let message =
                format!("{} is also the name of a disk or pool: give the volume group another name", shown(name));
            check.report(path.clone(), message);
        }
        self.validate_identity(check, plan, name, &path);
        let members = plan.volume_group_members(name).len();
        if members == 0 {
            let message = format!(
                "volume group {name:?} has no physical volumes: give a partition content.lvm_pv = {{ volume_group = \
                 {name:?} }}"
            );
            check.report(path.clone(), message);
        }
        for (lv_name, lv) in &self.volumes {
            let lv_path = path.join("volumes").join(lv_name.clone());
            if !valid_lvm_name(lv_name) || lv_name.starts_with("snapshot") || lv_name.starts_with("pvmove") {
                check.report(lv_path.clone(), format!("{} is not a logical volume name", shown(lv_name)));
            }
            let kind = lv.kind;
            if let Some(kind) = kind {
                if members > 0 && members < kind.minimum_volumes() {
                    check.report(
                        lv_path.join("type"),
                        format!(
                            "{} needs {} physical volumes, the group has {members}",
                            kind.name(),
                            kind.minimum_volumes()
                        ),
                    );
                }
            }
            match (kind, &lv.pool) {
                (Some(LvType::Thin), Some(pool)) => {
                    let is_pool = self.volumes.get(pool).is_some_and(|p| p.kind == Some(LvType::ThinPool));
                    if !is_pool {
                        check.report(lv_path.join("pool"), format!("{} is not a thin pool of this group", shown(pool)));
                    }
                    if !matches!(lv.size, LvSize::Bytes(_)) {
                        check.report(lv_path.join("size"), "a thin volume's size is virtual: give it in bytes");
                    }
                }
                (Some(LvType::Thin), None) => check.report(lv_path.join("pool"), "a thin volume needs its thin pool"),
                (_, Some(_)) => check.report(lv_path.join("pool"), "only a thin volume has a pool"),
                _ => {}
            }
            if kind == Some(LvType::ThinPool) && lv.content.is_some() {
                check.report(lv_path.join("content"), "a thin pool holds thin volumes, not a content");
            }
            if let Some(content) = &lv.content {
                check.content(plan, content, &lv_path.join("content"), false);
            }
        }
    }

    /// A kept group is known by its UUID and made of kept physical volumes known by theirs; a kept volume
    /// is a kept group's, known by its UUID, and holds nothing it cannot identify.
    fn validate_identity(&self, check: &mut Checker, plan: &Plan, name: &str, path: &FieldPath) {
        let uuids = std::iter::once((path.join("uuid"), &self.uuid)).chain(
            self.volumes
                .iter()
                .map(|(lv_name, lv)| (path.join("volumes").join(lv_name.clone()).join("uuid"), &lv.uuid)),
        );
        for (field, uuid) in uuids {
            if let Some(uuid) = uuid.as_deref().filter(|u| !is_lvm_uuid(u)) {
                check.report(field, format!("{} is not an LVM UUID (6-4-4-4-4-4-6 letters and digits)", shown(uuid)));
            }
        }
        if self.keep {
            if self.uuid.is_none() {
                check.report(path.join("uuid"), "a kept volume group is identified by its UUID: give the one it has");
            }
            let members = plan.volume_group_members(name);
            super::validate_kept_members(check, plan, &members, &format!("a physical volume of kept group {name}"));
            for member in members.iter().filter(|m| plan.partition_at(m).is_some_and(|p| p.keep)) {
                if plan.physical_volume(member).is_some_and(|pv| pv.uuid.is_none()) {
                    check.report(
                        super::partition_field(member).join("content"),
                        format!(
                            "a physical volume of kept group {name} is identified by its UUID: give the one it has"
                        ),
                    );
                }
            }
        }
        for (lv_name, lv) in self.volumes.iter().filter(|(_, lv)| lv.keep) {
            let lv_path = path.join("volumes").join(lv_name.clone());
            if !self.keep {
                check
                    .report(lv_path.join("keep"), "a kept logical volume belongs to a kept volume group (keep = true)");
            }
            if lv.uuid.is_none() {
                check.report(
                    lv_path.join("uuid"),
                    "a kept logical volume is identified by its UUID: give the one it has",
                );
            }
            super::validate_kept_content(check, lv.content.as_ref(), &lv_path, "logical volume");
        }
    }

    /// The group from its physical volumes (once every disk is compiled), its volumes in order, their
    /// activation, and what they hold.
    pub(crate) fn compile(&self, build: &mut Builder<'_>, name: &str) {
        let references = build.plan.volume_group_members(name);
        let members: Vec<MemberDevice> = references.iter().filter_map(|r| build.member(r)).cloned().collect();
        let uuids: Vec<String> = references.iter().map(|owner| build.plan.physical_volume_uuid(owner)).collect();
        let devices: Vec<String> = members.iter().map(|m| m.device.clone()).collect();
        let mut last = build.push(
            format!("vgcreate:{name}"),
            format!("Create volume group {name} of {} physical volume(s)", devices.len()),
            devices.clone(),
            None,
            members.iter().map(|m| m.provided_by.clone()).collect(),
            Operation::VgCreate(VgCreate {
                name: name.to_string(),
                devices: devices.clone(),
                uuids,
                uuid: self.uuid.clone().filter(|_| self.keep),
            }),
        );
        let mut ordered: Vec<(&String, &LogicalVolume)> = self.volumes.iter().collect();
        ordered.sort_by_key(|(_, lv)| lv.order());
        for (lv_name, lv) in &ordered {
            let mut arguments = lv.size.arguments(lv.kind == Some(LvType::Thin));
            match (lv.kind, &lv.pool) {
                (Some(LvType::Thin), Some(pool)) => arguments.push(format!("--thinpool={pool}")),
                (Some(kind), _) => arguments.push(format!("--type={}", kind.name())),
                _ => {}
            }
            last = build.push(
                format!("lvcreate:{name}/{lv_name}"),
                format!("Create logical volume {name}/{lv_name} ({})", lv.size),
                devices.clone(),
                None,
                vec![last],
                Operation::LvCreate(LvCreate {
                    group: name.to_string(),
                    name: lv_name.to_string(),
                    arguments,
                    uuid: lv.uuid.clone().filter(|_| lv.keep),
                }),
            );
        }
        let volume_devices: Vec<String> = ordered
            .iter()
            .filter(|(_, lv)| lv.kind != Some(LvType::ThinPool))
            .map(|(lv_name, _)| format!("/dev/{name}/{lv_name}"))
            .collect();
        let active = build.push(
            format!("vg-activate:{name}"),
            format!("Activate volume group {name}"),
            devices,
            None,
            vec![last],
            Operation::VgActivate(VgActivate { name: name.to_string(), devices: volume_devices }),
        );
        for (lv_name, lv) in &ordered {
            if let Some(content) = &lv.content {
                let device = format!("/dev/{name}/{lv_name}");
                let owner = format!("{name}/{lv_name}");
                let first = build.steps.len();
                build.content(content, &Site { device: &device, provider: &active, owner: &owner, disk: None });
                if lv.keep {
                    // Made anew, what a kept volume holds would be destroyed: it may only be found.
                    let kept = format!("logical volume {owner}");
                    build.steps[first..]
                        .iter_mut()
                        .filter(|s| s.destructive)
                        .for_each(|s| s.keeps = Some(kept.clone()));
                }
            }
        }
    }

    pub(crate) fn nixos(&self, module: &mut ModuleParts, name: &str) {
        module.initrd_kernel_modules.insert("dm-snapshot".to_string());
        for (lv_name, lv) in &self.volumes {
            if let Some(kind) = lv.kind {
                module.initrd_kernel_modules.extend(kind.kernel_modules().iter().map(|m| m.to_string()));
                module.lvm_thin |= kind == LvType::ThinPool;
            }
            if let Some(content) = &lv.content {
                module.content(content, &format!("/dev/{name}/{lv_name}"));
            }
        }
    }

    pub(crate) fn to_disko(&self, w: &mut Writer, name: &str) {
        w.open(name);
        w.string("type", "lvm_vg");
        w.open("lvs");
        let mut ordered: Vec<(&String, &LogicalVolume)> = self.volumes.iter().collect();
        ordered.sort_by_key(|(_, lv)| lv.order());
        for (index, (lv_name, lv)) in ordered.iter().enumerate() {
            w.open(lv_name);
            // disko orders by priority: keep the order volumes are created in.
            w.line(&format!("priority = {};", 1000 + index));
            w.string("size", &lv.size.to_string());
            match lv.kind {
                Some(LvType::Thin) => w.string("lvm_type", "thinlv"),
                Some(kind) => w.string("lvm_type", kind.name()),
                None => {}
            }
            if let Some(pool) = &lv.pool {
                w.string("pool", pool);
            }
            if let Some(content) = &lv.content {
                w.content_of(&format!("{name}/{lv_name}"), content);
            }
            w.close();
        }
        w.close();
        w.close();
    }
}

/// Reads disko's `type = "lvm_pv"`.
pub(crate) fn pv_from_disko(r: &mut Reader, object: &Object, path: &FieldPath, _inside_luks: bool) -> Option<Content> {
    r.only(object, path, &["type", "vg"]);
    let group = r.string(object, "vg", path).unwrap_or_default();
    Some(Content::LvmPv(LvmPv { volume_group: group, uuid: None }))
}

/// Reads disko's `type = "lvm_vg"`.
pub(crate) fn vg_from_disko(r: &mut Reader, object: &Object, path: &FieldPath) -> Option<VolumeGroup> {
    r.only(object, path, &["type", "name", "lvs"]);
    let mut volumes: Vec<(i64, String, LogicalVolume)> = Vec::new();
    let lvs_path = path.join("lvs");
    let empty = Object::new();
    let lvs = match object.get("lvs") {
        Some(value) => r.object(value, &lvs_path)?,
        None => &empty,
    };
    for (key, value) in lvs {
        let lv_path = lvs_path.join(key.clone());
        let Some(lv) = r.object(value, &lv_path) else { continue };
        r.only(lv, &lv_path, &["name", "size", "lvm_type", "pool", "extraArgs", "priority", "content"]);
        let name = r.string(lv, "name", &lv_path).unwrap_or_else(|| key.clone());
        if !r.strings(lv, "extraArgs", &lv_path).is_empty() {
            r.refuse(&lv_path.join("extraArgs"), "arguments to lvcreate are not supported");
        }
        let size_text = r.string(lv, "size", &lv_path).unwrap_or_default();
        let size = match size_text.parse::<LvSize>() {
            Ok(size) => size,
            Err(error) => {
                r.refuse(&lv_path.join("size"), error.to_string());
                continue;
            }
        };
        let kind = match r.string(lv, "lvm_type", &lv_path).as_deref() {
            None => None,
            Some("thinlv") => Some(LvType::Thin),
            Some(other) => match LvType::ALL.into_iter().find(|k| k.name() == other) {
                Some(kind) => Some(kind),
                None => {
                    r.refuse(
                        &lv_path.join("lvm_type"),
                        format!("{other:?} is not a logical volume type nix-dabei makes"),
                    );
                    continue;
                }
            },
        };
        let content =
            lv.get("content").filter(|c| !c.is_null()).and_then(|c| r.content(c, &lv_path.join("content"), false));
        let pool = r.string(lv, "pool", &lv_path);
        let volume = LogicalVolume { size, kind, pool, content, uuid: None, keep: false };
        // disko's default priority: thin pools 501, others 1000, plus 251 for a "100%" size.
        let default =
            if kind == Some(LvType::ThinPool) { 501 } else { 1000 } + if size_text.contains("100%") { 251 } else { 0 };
        let priority = lv.get("priority").and_then(serde_json::Value::as_i64).unwrap_or(default);
        volumes.push((priority, name, volume));
    }
    volumes.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let volumes = volumes.into_iter().map(|(_, name, lv)| (name, lv)).collect();
    Some(VolumeGroup { volumes, uuid: None, keep: false })
}
