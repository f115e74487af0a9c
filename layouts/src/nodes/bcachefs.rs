//! bcachefs: filesystems at the top of a plan (`[bcachefs_filesystems.<name>]`), made of the devices whose
//! content is `bcachefs = { filesystem = "<name>" }`, with subvolumes.
//!
//! A filesystem gets a UUID derived from the plan (or the plan's own), so a re-run recognises its
//! devices. It is made with one `bcachefs format` over every device, mounted as `dev1:dev2:...`, and its
//! subvolumes are created with the filesystem mounted privately. The running kernel must have bcachefs:
//! mainline Linux carried it from 6.7 to 6.16, Debian 12's 6.1 never did; the executor refuses a plan
//! with bcachefs on a kernel without it before anything is written.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Content, ContentNode, Site};
use crate::compile::{Builder, MemberDevice, MountSpec};
use crate::disko::{Object, Reader, Writer};
use crate::error::{shown, FieldPath};
use crate::model::Plan;
use crate::nixos::{FileSystemEntry, ModuleParts};
use crate::programs::Program;
use crate::steps::{CommandLine, Operation, OperationKind};
use crate::validate::Checker;

/// The program that makes bcachefs and its subvolumes.
pub const PROGRAMS: &[Program] =
    &[Program::target("bcachefs", "bcachefs-tools", "", "making bcachefs and its subvolumes")];

/// A device of a bcachefs filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BcachefsMember {
    /// The filesystem (`[bcachefs_filesystems.<name>]`) it belongs to.
    pub filesystem: String,
    /// The device's label inside the filesystem (`ssd.a`: group `ssd`), for placement options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// More `bcachefs format` options for this device (`--discard`, `--durability=N`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub format_options: Vec<String>,
}

/// A bcachefs filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BcachefsFilesystem {
    /// Where the filesystem's root is mounted, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
    /// Its mount options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
    /// More `bcachefs format` options (`--compression=lz4`, `--replicas=2`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub format_options: Vec<String>,
    /// The filesystem UUID; derived from the plan when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Encrypted with the passphrase given to `apply` (typed again at boot).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// Subvolumes by path inside the filesystem; a parent before its children.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub subvolumes: IndexMap<String, BcachefsSubvolume>,
}

/// A bcachefs subvolume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BcachefsSubvolume {
    /// Where it is mounted, if anywhere (a subvolume inside a mounted one is reached through it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
    /// Its mount options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
}

/// Format options passed through to `bcachefs format` (filesystem-wide or per device).
const ALLOWED_OPTIONS: &[&str] = &[
    "--compression=",
    "--background_compression=",
    "--replicas=",
    "--metadata_replicas=",
    "--data_replicas=",
    "--foreground_target=",
    "--background_target=",
    "--promote_target=",
    "--metadata_target=",
    "--block_size=",
    "--errors=",
    "--str_hash=",
    "--discard",
    "--durability=",
    "--force",
];

/// One device of a [`BcachefsFormat`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BcachefsDevice {
    /// The block device.
    pub device: String,
    /// Its label, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Its own format options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// `bcachefs format` over every device of a filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BcachefsFormat {
    /// The filesystem's name in the plan.
    pub filesystem: String,
    /// Its UUID.
    pub uuid: String,
    /// Filesystem-wide options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Encrypted: the passphrase goes to bcachefs on its standard input.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// The devices, in plan order.
    pub devices: Vec<BcachefsDevice>,
}

impl OperationKind for BcachefsFormat {
    /// Made with `bcachefs`.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["bcachefs"]
    }

    fn destroys_data(&self) -> bool {
        true
    }

    fn command(&self) -> Option<CommandLine> {
        let mut args = vec!["format".to_string(), format!("--uuid={}", self.uuid)];
        if self.encrypted {
            args.push("--encrypted".into());
        }
        args.extend(self.options.iter().cloned());
        for device in &self.devices {
            if let Some(label) = &device.label {
                args.push(format!("--label={label}"));
            }
            args.extend(device.options.iter().cloned());
            args.push(device.device.clone());
        }
        Some(CommandLine::new("bcachefs", args))
    }
}

/// Subvolumes created inside a bcachefs, mounted privately while they are made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BcachefsSubvolumes {
    /// The filesystem's devices, joined with `:` as mount takes them.
    pub source: String,
    /// Its UUID.
    pub uuid: String,
    /// Subvolume paths, parents first.
    pub subvolumes: Vec<String>,
}

impl BcachefsSubvolumes {
    /// Where the filesystem is mounted while the step runs.
    pub fn private_mountpoint(&self) -> String {
        format!("/run/nix-dabei/bcachefs-{}", self.uuid)
    }

    /// The command creating one subvolume, with the filesystem mounted at [`Self::private_mountpoint`].
    pub fn create_command(&self, subvolume: &str) -> CommandLine {
        let path = format!("{}/{}", self.private_mountpoint(), subvolume.trim_matches('/'));
        CommandLine::new("bcachefs", ["subvolume".to_string(), "create".to_string(), path])
    }
}

impl OperationKind for BcachefsSubvolumes {
    /// Made with `bcachefs`.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["bcachefs"]
    }

    fn destroys_data(&self) -> bool {
        false
    }

    fn review(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mount {} at {}; ", self.source, self.private_mountpoint())?;
        for subvolume in &self.subvolumes {
            write!(f, "{}; ", self.create_command(subvolume))?;
        }
        write!(f, "umount {}", self.private_mountpoint())
    }
}

impl Plan {
    /// The devices (`disk/partition`) of the bcachefs `name`, in plan order.
    pub fn bcachefs_members(&self, name: &str) -> Vec<String> {
        self.partitions_holding(|content| matches!(content, Content::Bcachefs(m) if m.filesystem == name))
    }
}

impl ContentNode for BcachefsMember {
    fn kind(&self) -> &'static str {
        "bcachefs"
    }

    fn blkid_signature(&self) -> Option<String> {
        Some("TYPE=bcachefs".to_string())
    }

    fn validate(&self, check: &mut Checker, plan: &Plan, path: &FieldPath, _inside_luks: bool) {
        let path = path.join("bcachefs");
        if !plan.bcachefs_filesystems.contains_key(&self.filesystem) {
            check.report(
                path.join("filesystem"),
                format!("{} is not among the plan's bcachefs_filesystems", shown(&self.filesystem)),
            );
        }
        if let Some(label) = &self.label {
            if label.is_empty() || label.chars().any(|c| c.is_whitespace() || c.is_control()) {
                check.report(path.join("label"), format!("{} is not a device label", shown(label)));
            }
        }
        check.passed_options(&self.format_options, ALLOWED_OPTIONS, "bcachefs format", &path.join("format_options"));
    }

    /// The device is made by the filesystem's format, after every disk.
    fn compile(&self, build: &mut Builder<'_>, site: &Site<'_>) {
        build.register_member(site.owner, site.device, site.provider);
    }

    fn nixos(&self, _module: &mut ModuleParts, _device: &str) {}

    fn to_disko(&self, w: &mut Writer) {
        w.string("type", "bcachefs");
        w.string("filesystem", &self.filesystem);
        if let Some(label) = &self.label {
            w.string("label", label);
        }
        if !self.format_options.is_empty() {
            w.list("extraFormatArgs", &self.format_options);
        }
    }

    fn partition_type(&self) -> &'static str {
        "linux"
    }
}

impl BcachefsFilesystem {
    /// The UUID: the plan's own or one derived from the plan.
    pub fn effective_uuid(&self, plan: &Plan, name: &str) -> String {
        self.uuid.clone().map_or_else(|| plan.filesystem_uuid(&format!("bcachefs\0{name}")), |u| u.to_lowercase())
    }

    pub(crate) fn validate(&self, check: &mut Checker, plan: &Plan, name: &str) {
        let path = FieldPath::root().join("bcachefs_filesystems").join(name.to_string());
        if plan.bcachefs_members(name).is_empty() {
            let message = format!(
                "bcachefs {name:?} has no devices: give a partition content.bcachefs = {{ filesystem = {name:?} }}"
            );
            check.report(path.clone(), message);
        }
        if let Some(uuid) = &self.uuid {
            if !crate::gpt::is_guid(uuid) {
                check.report(path.join("uuid"), format!("{} is not a UUID", shown(uuid)));
            }
        }
        check.passed_options(&self.format_options, ALLOWED_OPTIONS, "bcachefs format", &path.join("format_options"));
        if let Some(mountpoint) = &self.mountpoint {
            check.mountpoint(mountpoint, &path.join("mountpoint"));
        }
        super::btrfs::check_subvolume_names(check, self.subvolumes.keys(), &path.join("subvolumes"));
        for (sub_name, subvolume) in &self.subvolumes {
            if let Some(mountpoint) = &subvolume.mountpoint {
                check.mountpoint(mountpoint, &path.join("subvolumes").join(sub_name.clone()).join("mountpoint"));
            }
        }
    }

    /// Format (from the devices on every disk), the subvolumes, and the mounts.
    pub(crate) fn compile(&self, build: &mut Builder<'_>, name: &str) {
        let references = build.plan.bcachefs_members(name);
        let members: Vec<(String, MemberDevice)> =
            references.iter().filter_map(|r| build.member(r).map(|m| (r.clone(), m.clone()))).collect();
        let uuid = self.effective_uuid(build.plan, name);
        let devices: Vec<BcachefsDevice> = members
            .iter()
            .map(|(reference, member)| {
                let content = member_content(build.plan, reference);
                BcachefsDevice {
                    device: member.device.clone(),
                    label: content.and_then(|c| c.label.clone()),
                    options: content.map(|c| c.format_options.clone()).unwrap_or_default(),
                }
            })
            .collect();
        let paths: Vec<String> = devices.iter().map(|d| d.device.clone()).collect();
        let mut made = build.push(
            format!("bcachefs:{name}"),
            format!("Make bcachefs {name} on {} device(s)", paths.len()),
            paths.clone(),
            None,
            members.iter().map(|(_, m)| m.provided_by.clone()).collect(),
            Operation::BcachefsFormat(BcachefsFormat {
                filesystem: name.to_string(),
                uuid: uuid.clone(),
                options: self.format_options.clone(),
                encrypted: self.encrypted,
                devices,
            }),
        );
        let source = paths.join(":");
        if !self.subvolumes.is_empty() {
            made = build.push(
                format!("bcachefs-subvolumes:{name}"),
                format!("Create {} subvolume(s) in bcachefs {name}", self.subvolumes.len()),
                paths.clone(),
                None,
                vec![made],
                Operation::BcachefsSubvolumes(BcachefsSubvolumes {
                    source: source.clone(),
                    uuid,
                    subvolumes: self.subvolumes.keys().map(|k| k.trim_matches('/').to_string()).collect(),
                }),
            );
        }
        for (mountpoint, options) in self.mounts() {
            build.add_mount(MountSpec::new(&mountpoint, &source, "bcachefs", &options, made.clone()));
        }
    }

    /// Each mount: the filesystem's root, and subvolumes through `X-mount.subdir=` (util-linux mount).
    fn mounts(&self) -> Vec<(String, Vec<String>)> {
        let mut mounts = Vec::new();
        if let Some(mountpoint) = &self.mountpoint {
            mounts.push((mountpoint.clone(), self.mount_options.clone()));
        }
        for (name, subvolume) in &self.subvolumes {
            if let Some(mountpoint) = &subvolume.mountpoint {
                let mut options = vec![format!("X-mount.subdir={}", name.trim_matches('/'))];
                options.extend(subvolume.mount_options.iter().cloned());
                mounts.push((mountpoint.clone(), options));
            }
        }
        mounts
    }

    /// `fileSystems` entries by UUID, as the installed system finds a filesystem of several devices.
    pub(crate) fn nixos(&self, module: &mut ModuleParts, plan: &Plan, name: &str) {
        let device = format!("/dev/disk/by-uuid/{}", self.effective_uuid(plan, name));
        for (mountpoint, options) in self.mounts() {
            module.file_systems.push(FileSystemEntry::new(&mountpoint, &device, "bcachefs", &options));
        }
    }

    pub(crate) fn to_disko(&self, w: &mut Writer, plan: &Plan, name: &str) {
        w.open(name);
        w.string("type", "bcachefs_filesystem");
        w.string("uuid", &self.effective_uuid(plan, name));
        if let Some(mountpoint) = &self.mountpoint {
            w.string("mountpoint", mountpoint);
        }
        if !self.mount_options.is_empty() {
            w.list("mountOptions", &self.mount_options);
        }
        if !self.format_options.is_empty() {
            w.list("extraFormatArgs", &self.format_options);
        }
        if self.encrypted {
            w.string("passwordFile", "/tmp/secret.key");
        }
        if !self.subvolumes.is_empty() {
            w.open("subvolumes");
            for (sub_name, subvolume) in &self.subvolumes {
                w.open(sub_name);
                if let Some(mountpoint) = &subvolume.mountpoint {
                    w.string("mountpoint", mountpoint);
                }
                if !subvolume.mount_options.is_empty() {
                    w.list("mountOptions", &subvolume.mount_options);
                }
                w.close();
            }
            w.close();
        }
        w.close();
    }
}

/// The member content of a `disk/partition` reference.
fn member_content<'p>(plan: &'p Plan, reference: &str) -> Option<&'p BcachefsMember> {
    match plan.partition_at(reference)?.content.as_ref()?.innermost() {
        Content::Bcachefs(member) => Some(member),
        _ => None,
    }
}

/// Reads disko's `type = "bcachefs"` (a device of a filesystem).
pub(crate) fn member_from_disko(
    r: &mut Reader,
    object: &Object,
    path: &FieldPath,
    _inside_luks: bool,
) -> Option<Content> {
    r.only(object, path, &["type", "filesystem", "label", "extraFormatArgs", "device"]);
    let Some(filesystem) = r.string(object, "filesystem", path) else {
        r.refuse(&path.join("filesystem"), "is missing");
        return None;
    };
    Some(Content::Bcachefs(BcachefsMember {
        filesystem,
        label: r.string(object, "label", path).filter(|l| !l.is_empty()),
        format_options: r.strings(object, "extraFormatArgs", path),
    }))
}

/// Reads disko's `bcachefs_filesystems`.
pub(crate) fn filesystems_from_disko(
    r: &mut Reader,
    list: &Object,
    path: &FieldPath,
) -> IndexMap<String, BcachefsFilesystem> {
    let mut found = IndexMap::new();
    for (key, value) in list {
        let at = path.join(key.clone());
        let Some(object) = r.object(value, &at).cloned() else { continue };
        let known =
            ["type", "name", "mountpoint", "mountOptions", "extraFormatArgs", "uuid", "passwordFile", "subvolumes"];
        r.only(&object, &at, &known);
        let name = object.get("name").and_then(Value::as_str).unwrap_or(key).to_string();
        if object.get("passwordFile").is_some_and(|p| !p.is_null()) {
            r.warn(format!(
                "{}: the filesystem is encrypted with the passphrase given to apply",
                at.join("passwordFile")
            ));
        }
        let mut subvolumes = IndexMap::new();
        if let Some(list) = object.get("subvolumes").and_then(|s| r.object(s, &at.join("subvolumes"))).cloned() {
            for (sub_key, sub_value) in &list {
                let sub_path = at.join("subvolumes").join(sub_key.clone());
                let Some(sub) = r.object(sub_value, &sub_path).cloned() else { continue };
                r.only(&sub, &sub_path, &["type", "name", "mountpoint", "mountOptions"]);
                let sub_name = sub.get("name").and_then(Value::as_str).unwrap_or(sub_key).to_string();
                let mount_options = r.strings(&sub, "mountOptions", &sub_path);
                let mountpoint = r.string(&sub, "mountpoint", &sub_path);
                subvolumes
                    .insert(sub_name, BcachefsSubvolume { mountpoint, mount_options: without_mkdir(mount_options) });
            }
        }
        // disko creates parents before children by sorting; the plan lists them so.
        subvolumes.sort_by(|a, _, b, _| a.split('/').count().cmp(&b.split('/').count()).then(a.cmp(b)));
        let filesystem = BcachefsFilesystem {
            mountpoint: r.string(&object, "mountpoint", &at),
            mount_options: without_mkdir(r.strings(&object, "mountOptions", &at)),
            format_options: r.strings(&object, "extraFormatArgs", &at),
            uuid: r.string(&object, "uuid", &at),
            encrypted: object.get("passwordFile").is_some_and(|p| !p.is_null()),
            subvolumes,
        };
        found.insert(name, filesystem);
    }
    found
}

/// disko adds `X-mount.mkdir` to every mount; nix-dabei makes mountpoints itself.
fn without_mkdir(options: Vec<String>) -> Vec<String> {
    options.into_iter().filter(|o| o != "X-mount.mkdir").collect()
}
