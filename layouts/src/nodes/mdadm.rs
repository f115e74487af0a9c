//! Linux software RAID (mdadm): arrays at the top of a plan, made of the partitions whose content is
//! `md_member = { array = "<name>" }`, each holding any content on `/dev/md/<name>`.
//!
//! An array gets a UUID derived from the plan, so a re-run recognises its members; it is created with
//! `--homehost=any`, so that the installed system assembles it under the same name. Metadata 1.0 keeps the
//! superblock at the end of each member, which lets firmware read a mirrored ESP as plain FAT.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::{Content, ContentNode, Site};
use crate::compile::{Builder, MemberDevice};
use crate::disko::{Object, Reader, Writer};
use crate::error::{shown, FieldPath};
use crate::model::Plan;
use crate::nixos::ModuleParts;
use crate::programs::Program;
use crate::steps::{CommandLine, Operation, OperationKind};
use crate::validate::Checker;

/// The program of software RAID.
pub const PROGRAMS: &[Program] =
    &[Program::target("mdadm", "mdadm", "mdadm", "making, assembling, reading and stopping arrays")];

/// A member of an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdMember {
    /// The array it belongs to.
    pub array: String,
}

/// A RAID array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raid {
    /// RAID level: 0, 1, 4, 5, 6 or 10.
    pub level: u8,
    /// Superblock format: "1.0" (at the end: for an ESP), "1.1" or "1.2" (the default).
    #[serde(default = "default_metadata")]
    pub metadata: String,
    /// More `mdadm --create` options: `--assume-clean`, `--bitmap=internal|none`, `--chunk=N`, `--layout=L`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// What the array holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Instead of `content`: a GPT inside the array, with these partitions. They are placed once the
    /// array exists (its size depends on the members and the superblock): fixed sizes from the start, a
    /// `rest` partition up to the end.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub partitions: IndexMap<String, crate::gpt::Partition>,
    /// The array's UUID in mdadm's form (`8hex:8hex:8hex:8hex`), for one that is already there (read back
    /// by probe); derived from the plan when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// An array that is on the disks already and must stay as it is, with what it holds: its members carry
    /// its `uuid`, it is never created anew, and what it holds is identified by its UUID. A plan that would
    /// need to destroy it is refused before anything is written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep: bool,
}

/// Write a GPT inside an array once it exists: the partitions are placed on the array's actual size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayPartitionTable {
    /// The array, `/dev/md/<name>`.
    pub device: String,
    /// The partitions, in table order.
    pub partitions: Vec<ArrayPartition>,
}

/// One partition of an [`ArrayPartitionTable`]: a GPT partition whose place is known only at apply time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayPartition {
    /// Partition number, from 1.
    pub number: u32,
    /// GPT partition name.
    pub name: String,
    /// Type GUID.
    pub type_guid: String,
    /// Partition UUID.
    pub uuid: String,
    /// Its size, placed as on a disk (1 MiB aligned).
    pub size: crate::size::Size,
    /// GPT attribute bits to set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<u32>,
    /// The device node it will have (udev's `/dev/md/<name><N>`, or `<name>p<N>` after a digit).
    pub device: String,
}

impl ArrayPartitionTable {
    /// The table as it is written on an array of `size` bytes with `sector`-byte sectors, or why the
    /// partitions do not fit.
    pub fn placed(&self, size: u64, sector: u32) -> Result<crate::steps::PartitionTable, crate::gpt::AllocError> {
        let geometry = crate::gpt::Geometry::new(size, u64::from(sector));
        let sizes: Vec<crate::size::Size> = self.partitions.iter().map(|p| p.size).collect();
        let extents = crate::gpt::allocate(geometry, &sizes)?;
        let partitions = self
            .partitions
            .iter()
            .zip(extents)
            .map(|(p, extent)| crate::steps::GptPartition {
                number: p.number,
                name: p.name.clone(),
                type_guid: p.type_guid.clone(),
                uuid: p.uuid.clone(),
                bootable: false,
                extent,
                attributes: p.attributes.clone(),
                device: p.device.clone(),
            })
            .collect();
        Ok(crate::steps::PartitionTable {
            device: self.device.clone(),
            logical_sector_size: sector,
            disk_size: size,
            partitions,
            msdos: None,
        })
    }
}

impl OperationKind for ArrayPartitionTable {
    /// Arrays are read back with `mdadm --detail`.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["mdadm"]
    }

    fn destroys_data(&self) -> bool {
        true
    }

    fn review(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "write GPT to {} (placed on the array's size):", self.device)?;
        for p in &self.partitions {
            let kind = crate::gpt::type_name(&p.type_guid).unwrap_or(&p.type_guid);
            write!(f, " {}={} {kind} {:?};", p.number, p.size, p.name)?;
        }
        Ok(())
    }
}

fn default_metadata() -> String {
    "1.2".to_string()
}

/// The smallest number of members of each level.
fn minimum_members(level: u8) -> Option<usize> {
    // As mdadm --create takes them: RAID 4/5 of two devices (parity mirrors the data) and RAID 10 of two
    // (the near layout is a mirror) are arrays it makes.
    match level {
        0 | 1 | 4 | 5 | 10 => Some(2),
        6 => Some(4),
        _ => None,
    }
}

/// Create an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdCreate {
    /// Its name: the array is `/dev/md/<name>`.
    pub name: String,
    /// Its UUID, derived from the plan, in mdadm's form (four groups of eight hex digits).
    pub uuid: String,
    /// RAID level.
    pub level: u8,
    /// Superblock format.
    pub metadata: String,
    /// More `mdadm --create` options.
    pub options: Vec<String>,
    /// The members' devices.
    pub devices: Vec<String>,
}

impl MdCreate {
    /// The UUID as blkid shows it on each member.
    pub fn blkid_uuid(&self) -> String {
        blkid_form(&self.uuid)
    }
}

impl OperationKind for MdCreate {
    /// Arrays are read back with `mdadm --detail`.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["mdadm"]
    }

    fn destroys_data(&self) -> bool {
        true
    }

    fn command(&self) -> Option<CommandLine> {
        let mut args = vec![
            "--create".to_string(),
            format!("/dev/md/{}", self.name),
            "--run".into(),
            format!("--level={}", self.level),
            format!("--raid-devices={}", self.devices.len()),
            format!("--metadata={}", self.metadata),
            "--homehost=any".into(),
            format!("--uuid={}", self.uuid),
        ];
        args.extend(self.options.iter().cloned());
        args.extend(self.devices.iter().cloned());
        Some(CommandLine { program: "mdadm".into(), args })
    }
}

/// Assemble an array from its members (after a reboot, or when mounting again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdAssemble {
    /// The array's name.
    pub name: String,
    /// Its UUID, mdadm's form.
    pub uuid: String,
    /// The members' devices.
    pub devices: Vec<String>,
}

impl MdAssemble {
    /// The array's device.
    pub fn device(&self) -> String {
        format!("/dev/md/{}", self.name)
    }

    /// The command reading what the running array is.
    pub fn detail_command(&self) -> CommandLine {
        detail_command(&self.device())
    }
}

/// The command that prints what the array at `device` is (`mdadm --detail --export`), read by
/// the executor's mdadm adapter.
pub fn detail_command(device: &str) -> CommandLine {
    CommandLine::new("mdadm", ["--detail", "--export", device])
}

impl OperationKind for MdAssemble {
    /// Arrays are read back with `mdadm --detail`.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["mdadm"]
    }

    fn destroys_data(&self) -> bool {
        false
    }

    fn command(&self) -> Option<CommandLine> {
        let mut args = vec!["--assemble".to_string(), self.device(), format!("--uuid={}", self.uuid)];
        args.extend(self.devices.iter().cloned());
        Some(CommandLine { program: "mdadm".into(), args })
    }

    fn undo(&self) -> Option<(String, String, Operation)> {
        let name = &self.name;
        Some((
            format!("md-stop:{name}"),
            format!("Stop array {name}"),
            Operation::MdStop(MdStop { name: name.clone() }),
        ))
    }
}

/// Stop an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdStop {
    /// The array's name.
    pub name: String,
}

impl OperationKind for MdStop {
    /// Arrays are read back with `mdadm --detail`.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["mdadm"]
    }

    fn destroys_data(&self) -> bool {
        false
    }

    fn command(&self) -> Option<CommandLine> {
        Some(CommandLine::new("mdadm", ["--stop".to_string(), format!("/dev/md/{}", self.name)]))
    }
}

/// An array UUID in mdadm's form as blkid shows it on the members: the same 16 bytes, in the standard
/// groups of 8-4-4-4-12.
pub fn blkid_form(md_uuid: &str) -> String {
    let hex: String = md_uuid.chars().filter(char::is_ascii_hexdigit).collect::<String>().to_ascii_lowercase();
    let part = |from: usize, to: usize| hex.get(from..to).unwrap_or_default().to_string();
    format!("{}-{}-{}-{}-{}", part(0, 8), part(8, 12), part(12, 16), part(16, 20), part(20, 32))
}

/// A UUID in mdadm's form: four groups of eight hex digits.
pub fn md_uuid(uuid: &str) -> String {
    let hex: String = uuid.chars().filter(char::is_ascii_hexdigit).collect();
    (0..4).map(|i| hex.get(i * 8..i * 8 + 8).unwrap_or_default()).collect::<Vec<_>>().join(":")
}

impl Plan {
    /// The partitions that are members of array `name`, as `"<disk>/<partition>"` in plan order.
    pub fn array_members(&self, name: &str) -> Vec<String> {
        self.partitions_holding(|content| matches!(content, Content::MdMember(m) if m.array == name))
    }
}

/// Options a plan may pass to `mdadm --create`; none names a device or file.
const ALLOWED_OPTIONS: &[&str] = &["--assume-clean", "--bitmap=internal", "--bitmap=none", "--chunk=", "--layout="];

impl ContentNode for MdMember {
    fn kind(&self) -> &'static str {
        "md_member"
    }

    fn blkid_signature(&self) -> Option<String> {
        Some("TYPE=linux_raid_member".to_string())
    }

    fn validate(&self, check: &mut Checker, plan: &Plan, path: &FieldPath, _inside_luks: bool) {
        if !plan.raids.contains_key(&self.array) {
            check.report(
                path.join("md_member").join("array"),
                format!("array {} is not among the plan's raids", shown(&self.array)),
            );
        }
    }

    /// A member makes nothing itself: the array is created from all its members at once.
    fn compile(&self, build: &mut Builder<'_>, site: &Site<'_>) {
        build.register_member(site.owner, site.device, site.provider);
    }

    fn nixos(&self, _module: &mut ModuleParts, _device: &str) {}

    fn to_disko(&self, w: &mut Writer) {
        w.string("type", "mdraid");
        w.string("name", &self.array);
    }

    fn partition_type(&self) -> &'static str {
        "raid"
    }
}

impl Raid {
    pub(crate) fn validate(&self, check: &mut Checker, plan: &Plan, name: &str) {
        let path = FieldPath::root().join("raids").join(name.to_string());
        let name_ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !name_ok || name.starts_with('.') {
            check.report(path.clone(), format!("{} is not an array name (letters, digits, _.-)", shown(name)));
        }
        if plan.disks.contains_key(name) || plan.pools.contains_key(name) || plan.volume_groups.contains_key(name) {
            check.report(path.clone(), format!("{} is also the name of a disk, pool or volume group", shown(name)));
        }
        let members = plan.array_members(name).len();
        match minimum_members(self.level) {
            None => check.report(path.join("level"), format!("{} is not a RAID level (0, 1, 4, 5, 6, 10)", self.level)),
            Some(least) if members < least => {
                let level = self.level;
                let message = format!(
                    "RAID {level} needs {least} members, array {name:?} has {members}: give partitions \
                     content.md_member = {{ array = {name:?} }}"
                );
                check.report(path.clone(), message);
            }
            Some(_) => {}
        }
        if !["1.0", "1.1", "1.2"].contains(&self.metadata.as_str()) {
            check.report(
                path.join("metadata"),
                format!("{} is not a superblock format (1.0, 1.1, 1.2)", shown(&self.metadata)),
            );
        }
        check.passed_options(&self.options, ALLOWED_OPTIONS, "mdadm --create", &path.join("options"));
        if let Some(content) = &self.content {
            Self::validate_content(check, content, &path.join("content"));
            check.content(plan, content, &path.join("content"), false);
        }
        if self.content.is_some() && !self.partitions.is_empty() {
            check.report(path.join("partitions"), "an array holds either content or partitions, not both");
        }
        self.validate_identity(check, &path);
        if self.keep {
            super::validate_kept_members(
                check,
                plan,
                &plan.array_members(name),
                &format!("a member of kept array {name}"),
            );
        }
        if self.partitions.len() > crate::gpt::MAX_PARTITIONS {
            check.report(path.join("partitions"), "more partitions than a GPT holds (128)");
        }
        for (part_name, part) in &self.partitions {
            let part_path = path.join("partitions").join(part_name.clone());
            part.validate(check, plan, name, part_name, &part_path, crate::gpt::TableOn::Array);
            if let Some(content) = &part.content {
                Self::validate_content(check, content, &part_path.join("content"));
            }
        }
    }

    /// A UUID is mdadm's four groups of 8 hex digits; a kept array is known by it, and holds nothing it
    /// cannot identify.
    fn validate_identity(&self, check: &mut Checker, path: &FieldPath) {
        if let Some(uuid) = &self.uuid {
            let groups: Vec<&str> = uuid.split(':').collect();
            let valid =
                groups.len() == 4 && groups.iter().all(|g| g.len() == 8 && g.chars().all(|c| c.is_ascii_hexdigit()));
            if !valid {
                check.report(
                    path.join("uuid"),
                    format!("{} is not an array UUID (mdadm's 8hex:8hex:8hex:8hex)", shown(uuid)),
                );
            }
        }
        if !self.keep {
            return;
        }
        if self.uuid.is_none() {
            check.report(path.join("uuid"), "a kept array is identified by its UUID: give the one it has");
        }
        if !self.partitions.is_empty() {
            check.report(path.join("partitions"), "keeping the partitions inside an array is not supported yet");
        }
        super::validate_kept_content(check, self.content.as_ref(), path, "array");
    }

    /// Members register by partition of a disk; an array and its partitions are not one.
    fn validate_content(check: &mut Checker, content: &Content, path: &FieldPath) {
        if matches!(
            content.innermost(),
            Content::LvmPv(_) | Content::Zfs(_) | Content::BtrfsMember(_) | Content::MdMember(_)
        ) {
            check.report(path.clone(), format!("a {} inside an array is not supported", content.innermost().kind()));
        }
    }

    /// Create (from the members on every disk), assemble, and what the array holds.
    pub(crate) fn compile(&self, build: &mut Builder<'_>, name: &str) {
        let members: Vec<MemberDevice> =
            build.plan.array_members(name).iter().filter_map(|r| build.member(r)).cloned().collect();
        let devices: Vec<String> = members.iter().map(|m| m.device.clone()).collect();
        let uuid = match &self.uuid {
            Some(uuid) => uuid.to_ascii_lowercase(),
            None => md_uuid(&build.plan.filesystem_uuid(&format!("md\0{name}"))),
        };
        let created = build.push(
            format!("md-create:{name}"),
            format!("Create RAID {} array {name} of {} member(s)", self.level, devices.len()),
            devices.clone(),
            None,
            members.iter().map(|m| m.provided_by.clone()).collect(),
            Operation::MdCreate(MdCreate {
                name: name.to_string(),
                uuid: uuid.clone(),
                level: self.level,
                metadata: self.metadata.clone(),
                options: self.options.clone(),
                devices: devices.clone(),
            }),
        );
        let assembled = build.push(
            format!("md-assemble:{name}"),
            format!("Assemble array {name}"),
            devices.clone(),
            None,
            vec![created],
            Operation::MdAssemble(MdAssemble { name: name.to_string(), uuid, devices }),
        );
        let device = format!("/dev/md/{name}");
        let first = build.steps.len();
        if let Some(content) = &self.content {
            build.content(content, &Site { device: &device, provider: &assembled, owner: name, disk: None });
        }
        if self.keep {
            // Made anew, the kept array would be destroyed with what it holds: both may only be found.
            let created = format!("md-create:{name}");
            for step in
                build.steps.iter_mut().enumerate().filter(|(i, s)| s.id == created || *i >= first && s.destructive)
            {
                step.1.keeps = Some(format!("array {name}"));
            }
        }
        if self.partitions.is_empty() {
            return;
        }
        let partitions: Vec<ArrayPartition> = self
            .partitions
            .iter()
            .enumerate()
            .map(|(index, (part_name, part))| {
                let number = index as u32 + 1;
                ArrayPartition {
                    number,
                    name: part.label.clone().unwrap_or_else(|| crate::gpt::default_partition_label(name, part_name)),
                    type_guid: crate::gpt::type_guid(&part.effective_type()).unwrap_or_default(),
                    uuid: build.plan.partition_uuid(name, part_name),
                    size: part.size,
                    attributes: part.attributes.clone(),
                    device: array_partition_device(name, number),
                }
            })
            .collect();
        let table = build.push(
            format!("md-gpt:{name}"),
            format!("Write a GPT with {} partition(s) to array {name} ({device})", partitions.len()),
            vec![device.clone()],
            None,
            vec![assembled],
            Operation::ArrayPartitionTable(ArrayPartitionTable {
                device: device.clone(),
                partitions: partitions.clone(),
            }),
        );
        for ((part_name, part), entry) in self.partitions.iter().zip(&partitions) {
            if let Some(content) = &part.content {
                let owner = format!("{name}/{part_name}");
                build.content(content, &Site { device: &entry.device, provider: &table, owner: &owner, disk: None });
            }
        }
    }

    pub(crate) fn nixos(&self, module: &mut ModuleParts, name: &str, uuid: &str) {
        module.md_arrays.push(format!("ARRAY /dev/md/{name} metadata={} UUID={uuid}", self.metadata));
        if let Some(content) = &self.content {
            module.content(content, &format!("/dev/md/{name}"));
        }
        // udev names an array's partitions after the array (md* devices get no by-partuuid links).
        for (index, part) in self.partitions.values().enumerate() {
            if let Some(content) = &part.content {
                module.content(content, &array_partition_device(name, index as u32 + 1));
            }
        }
    }

    pub(crate) fn to_disko(&self, w: &mut Writer, name: &str) {
        w.open(name);
        w.string("type", "mdadm");
        w.line(&format!("level = {};", self.level));
        w.string("metadata", &self.metadata);
        if !self.options.is_empty() {
            w.list("extraArgs", &self.options);
        }
        if let Some(content) = &self.content {
            w.content_of(name, content);
        }
        if !self.partitions.is_empty() {
            w.open("content");
            w.string("type", "gpt");
            crate::gpt::partitions_to_disko(w, name, &self.partitions, 512);
            w.close();
        }
        w.close();
    }
}

/// The device node of partition `number` of array `name`, as mdadm's udev rules link it:
/// `/dev/md/<name><N>`, or `/dev/md/<name>p<N>` when the name ends in a digit.
pub fn array_partition_device(name: &str, number: u32) -> String {
    crate::gpt::partition_device(&format!("/dev/md/{name}"), number)
}

/// Reads disko's `type = "mdraid"` (a member).
pub(crate) fn member_from_disko(
    r: &mut Reader,
    object: &Object,
    path: &FieldPath,
    _inside_luks: bool,
) -> Option<Content> {
    r.only(object, path, &["type", "name"]);
    Some(Content::MdMember(MdMember { array: r.string(object, "name", path).unwrap_or_default() }))
}

/// Reads disko's `type = "mdadm"`.
pub(crate) fn raid_from_disko(r: &mut Reader, name: &str, object: &Object, path: &FieldPath) -> Option<Raid> {
    r.only(object, path, &["type", "name", "level", "metadata", "extraArgs", "content"]);
    let level = match object.get("level") {
        None => 1,
        Some(value) => match value.as_u64().and_then(|l| u8::try_from(l).ok()) {
            Some(level) => level,
            None => {
                r.refuse(&path.join("level"), "is not a RAID level");
                return None;
            }
        },
    };
    let metadata = match r.string(object, "metadata", path).as_deref() {
        None | Some("default") => default_metadata(),
        Some("1") => "1.2".to_string(),
        Some(other) => other.to_string(),
    };
    let mut partitions = IndexMap::new();
    let content = match object.get("content") {
        None | Some(serde_json::Value::Null) => None,
        Some(value) if value.get("type").and_then(serde_json::Value::as_str) == Some("gpt") => {
            let table = r.object(value, &path.join("content"))?.clone();
            partitions = crate::gpt::partitions_from_disko(r, name, &table, &path.join("content"));
            None
        }
        Some(value) => Some(r.content(value, &path.join("content"), false)?),
    };
    let options = r.strings(object, "extraArgs", path);
    Some(Raid { level, metadata, options, content, partitions, uuid: None, keep: false })
}

/// Arrays by name, as disko lists them.
pub(crate) fn raids_from_disko(r: &mut Reader, list: &Object, path: &FieldPath) -> IndexMap<String, Raid> {
    let mut raids = IndexMap::new();
    for (key, value) in list {
        let at = path.join(key.clone());
        let Some(object) = r.object(value, &at).cloned() else { continue };
        let name = object.get("name").and_then(serde_json::Value::as_str).unwrap_or(key).to_string();
        if let Some(raid) = raid_from_disko(r, &name, &object, &at) {
            raids.insert(name, raid);
        }
    }
    raids
}
