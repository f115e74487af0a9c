//! btrfs with subvolumes: a filesystem whose subvolumes each have their own mountpoint and mount options,
//! and swap files inside it.
//!
//! A plain btrfs without subvolumes is a [`super::filesystem::Filesystem`] of format btrfs; this node is
//! for the layouts that carve one btrfs into subvolumes (`/` in one, `/nix` in another, snapshots kept
//! apart). The filesystem is made by the same [`Mkfs`] step; one more step creates the subvolumes and
//! swap files inside it, and each subvolume with a mountpoint is mounted with `subvol=<name>`.

use std::fmt;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::filesystem::{Format, Mkfs};
use super::{Content, ContentNode, Site};
use crate::compile::{Builder, MemberDevice, MountSpec};
use crate::disko::{Object, Reader, Writer};
use crate::error::{shown, FieldPath};
use crate::model::Plan;
use crate::nixos::{ModuleParts, SwapEntry};
use crate::nodes::gpt::default_partition_label;
use crate::nodes::zfs::split_member;
use crate::programs::Program;
use crate::size::{format_exact, Size};
use crate::steps::{shell_word, CommandLine, Operation, OperationKind};
use crate::validate::Checker;

/// The program of btrfs's subvolumes, swap files, checks and growing.
pub const PROGRAMS: &[Program] =
    &[Program::target("btrfs", "btrfs-progs", "btrfs-progs", "subvolumes, swap files, checks, growing")];

/// A btrfs filesystem with subvolumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Btrfs {
    /// Where the top level (subvolume id 5) is mounted in the installed system; not mounted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
    /// Mount options of the top level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
    /// Filesystem label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Extra arguments for mkfs.btrfs (the same ones a btrfs `filesystem` allows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mkfs_options: Vec<String>,
    /// Subvolumes by path inside the filesystem (`"root"`, `"/home"`, `"home/user"`), parents first.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub subvolumes: IndexMap<String, Subvolume>,
    /// Swap files in the top level, by name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub swap: IndexMap<String, SwapFile>,
    /// For a btrfs of several devices with redundant data and metadata: the installed system boots with a
    /// member missing (mounted `degraded` once the initrd stopped waiting for it), rather than stopping
    /// in the emergency shell until the disk is back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub degraded_boot: bool,
}

/// The mkfs.btrfs profiles that keep every block on more than one device.
const REDUNDANT_PROFILES: [&str; 6] = ["raid1", "raid1c3", "raid1c4", "raid10", "raid5", "raid6"];

/// One subvolume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subvolume {
    /// Where it is mounted in the installed system; a subvolume without one is reached through its
    /// parent's mount, or not at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
    /// Mount options (`compress=zstd`, `noatime`); `subvol=<name>` is added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
    /// Swap files in this subvolume, by name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub swap: IndexMap<String, SwapFile>,
}

/// A swap file inside a btrfs (made with `btrfs filesystem mkswapfile`: no copy on write, no compression).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapFile {
    /// Its size.
    pub size: Size,
    /// Its path relative to the subvolume (or the top level); the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Swap priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// A subvolume's path without leading or trailing slashes (`"/home/"` -> `"home"`).
pub fn subvolume_path(name: &str) -> String {
    name.split('/').filter(|part| !part.is_empty()).collect::<Vec<_>>().join("/")
}

/// Checks subvolume names (of btrfs or bcachefs): each a path inside the filesystem, none twice, and a
/// nested one after its parent, inside which it is created.
pub(crate) fn check_subvolume_names<'a>(
    check: &mut Checker,
    names: impl Iterator<Item = &'a String>,
    path: &FieldPath,
) {
    let mut seen: IndexMap<String, String> = IndexMap::new();
    for name in names {
        let field = path.join(name.clone());
        if let Some(reason) = inner_path_problem(name) {
            check.report(field, format!("{} {reason}", shown(name)));
            continue;
        }
        let inner = subvolume_path(name);
        if let Some(first) = seen.insert(inner.clone(), name.clone()) {
            check.report(field.clone(), format!("is the same subvolume as {}", shown(&first)));
        }
        if let Some((parent, _)) = inner.rsplit_once('/') {
            if !seen.contains_key(parent) {
                check.report(field, format!("its parent {} is not a subvolume listed before it", shown(parent)));
            }
        }
    }
}

/// Why a subvolume name or a swap file path is not a path inside the filesystem.
fn inner_path_problem(path: &str) -> Option<&'static str> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        Some("names no path inside the filesystem")
    } else if parts.iter().any(|p| *p == "." || *p == "..") {
        Some("must not contain \".\" or \"..\"")
    } else if path.chars().any(|c| c.is_control() || c == ',') {
        Some("must not contain control characters or ','")
    } else {
        None
    }
}

/// Create the subvolumes and swap files inside a btrfs: the top level is mounted privately under
/// `/run/nix-dabei`, each one missing is created (parents first), and it is unmounted again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BtrfsSubvolumes {
    /// The device holding the filesystem.
    pub device: String,
    /// The filesystem's UUID (derived from the plan): only this plan's filesystem is touched.
    pub uuid: String,
    /// Subvolume paths inside the filesystem, parents first.
    pub subvolumes: Vec<String>,
    /// Swap files: path inside the filesystem and size in bytes.
    pub swap_files: Vec<(String, u64)>,
    /// The filesystem's other devices, named when mounting (`device=`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_devices: Vec<String>,
}

impl BtrfsSubvolumes {
    /// The options mounting the top level takes.
    pub fn top_level_options(&self) -> Vec<String> {
        let mut options = vec!["subvolid=5".to_string()];
        options.extend(self.more_devices.iter().map(|d| format!("device={d}")));
        options
    }

    /// Where the top level is mounted while the step runs.
    pub fn private_mountpoint(&self) -> String {
        format!("/run/nix-dabei/btrfs-{}", self.uuid)
    }

    /// The command creating one subvolume, with the top level mounted at [`Self::private_mountpoint`].
    pub fn create_command(&self, subvolume: &str) -> CommandLine {
        CommandLine::new("btrfs", ["subvolume".to_string(), "create".to_string(), self.inside(subvolume)])
    }

    /// The command telling whether a subvolume exists (exit 0 when it does).
    pub fn show_command(&self, subvolume: &str) -> CommandLine {
        CommandLine::new("btrfs", ["subvolume".to_string(), "show".to_string(), self.inside(subvolume)])
    }

    /// The command making one swap file.
    pub fn swap_file_command(&self, path: &str, size: u64) -> CommandLine {
        CommandLine::new(
            "btrfs",
            ["filesystem".to_string(), "mkswapfile".into(), "--size".into(), size.to_string(), self.inside(path)],
        )
    }

    /// A path inside the privately mounted top level.
    pub fn inside(&self, path: &str) -> String {
        format!("{}/{path}", self.private_mountpoint())
    }
}

impl OperationKind for BtrfsSubvolumes {
    /// Subvolumes and swap files are made and read back with `btrfs`.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["btrfs"]
    }

    fn destroys_data(&self) -> bool {
        false
    }

    /// Each command the step runs, in order, joined as a shell would run them.
    fn review(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let top = self.private_mountpoint();
        let options = self.top_level_options().join(",");
        write!(f, "mount -t btrfs -o {} {} {}", shell_word(&options), shell_word(&self.device), shell_word(&top))?;
        for subvolume in &self.subvolumes {
            write!(f, " && {}", self.create_command(subvolume))?;
        }
        for (path, size) in &self.swap_files {
            write!(f, " && {}", self.swap_file_command(path, *size))?;
        }
        write!(f, " && umount {}", shell_word(&top))
    }
}

/// A content's site with owned strings, for work done once every disk is compiled.
struct OwnedSite {
    device: String,
    provider: String,
    owner: String,
    disk: Option<String>,
}

impl OwnedSite {
    fn of(site: &Site<'_>) -> Self {
        OwnedSite {
            device: site.device.to_string(),
            provider: site.provider.to_string(),
            owner: site.owner.to_string(),
            disk: site.disk.map(str::to_string),
        }
    }
}

/// A device of a btrfs made on another partition (a multi-device btrfs, `-d raid1 -m raid1`): it makes
/// nothing itself; the filesystem is made on all its devices at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BtrfsMember {
    /// The partition holding the btrfs, `"<disk>/<partition>"` (its content, or inside its LUKS).
    pub filesystem: String,
}

impl BtrfsMember {
    /// A member read from disko before the btrfs naming it is found.
    pub(crate) fn unlinked() -> Self {
        BtrfsMember { filesystem: String::new() }
    }
}

impl Plan {
    /// The partitions that are members of the btrfs on `owner`, as `"<disk>/<partition>"` in plan order.
    pub fn btrfs_members(&self, owner: &str) -> Vec<String> {
        self.partitions_holding(|content| matches!(content, Content::BtrfsMember(m) if m.filesystem == owner))
    }
}

impl ContentNode for BtrfsMember {
    fn kind(&self) -> &'static str {
        "btrfs_member"
    }

    fn blkid_signature(&self) -> Option<String> {
        Some("TYPE=btrfs".to_string())
    }

    fn validate(&self, check: &mut Checker, plan: &Plan, path: &FieldPath, _inside_luks: bool) {
        let path = path.join("btrfs_member").join("filesystem");
        let target = split_member(&self.filesystem)
            .and_then(|(disk, part)| plan.disks.get(disk).and_then(|d| d.partitions.get(part)));
        let btrfs = match target.and_then(|p| p.content.as_ref()).map(Content::innermost) {
            Some(Content::Btrfs(btrfs)) => Some(btrfs),
            _ => None,
        };
        // The kernel swaps only to files on a btrfs of one device.
        if btrfs.is_some_and(|b| !b.all_swap_files().is_empty()) {
            check.report(
                path.clone(),
                format!(
                    "the btrfs on {} has swap files, which a btrfs of several devices cannot hold",
                    self.filesystem
                ),
            );
        }
        if btrfs.is_none() {
            check.report(
                path,
                format!(
                    "{} is not a partition of the plan holding a btrfs (\"<disk>/<partition>\" whose content, or \
                     whose LUKS container's, is btrfs)",
                    shown(&self.filesystem)
                ),
            );
        }
    }

    fn compile(&self, build: &mut Builder<'_>, site: &Site<'_>) {
        build.register_member(site.owner, site.device, site.provider);
    }

    fn nixos(&self, _module: &mut ModuleParts, _device: &str) {}

    /// disko has no member content: the device is a partition or LUKS container without content that the
    /// btrfs names in its `extraArgs`.
    fn to_disko(&self, _w: &mut Writer) {}

    fn omitted_in_disko(&self) -> bool {
        true
    }

    fn partition_type(&self) -> &'static str {
        "linux"
    }
}

impl Btrfs {
    /// The profile mkfs.btrfs is given for data (`-d`) or metadata (`-m`), if any.
    fn profile(&self, short: &str, long: &str) -> Option<&str> {
        let mut options = self.mkfs_options.iter();
        while let Some(option) = options.next() {
            if option == short || option == long {
                return options.next().map(String::as_str);
            }
            if let Some(value) = option.strip_prefix(&format!("{long}=")) {
                return Some(value);
            }
        }
        None
    }

    /// `degraded_boot` needs members (only a btrfs in a disk's partition has them) and profiles that keep
    /// a second copy: mkfs.btrfs makes data `single` unless told otherwise, and metadata `raid1` on
    /// several devices.
    fn validate_degraded_boot(&self, check: &mut Checker, plan: &Plan, path: &FieldPath) {
        let field = path.join("degraded_boot");
        let owner = match path.segments() {
            [disks, disk, partitions, part, ..] if disks == "disks" && partitions == "partitions" => {
                Some(format!("{disk}/{part}"))
            }
            _ => None,
        };
        if owner.is_none_or(|owner| plan.btrfs_members(&owner).is_empty()) {
            check.report(field, "a btrfs on one device cannot boot degraded: no partition is a btrfs_member of it");
            return;
        }
        let redundant = |profile: Option<&str>| profile.is_some_and(|p| REDUNDANT_PROFILES.contains(&p));
        if !redundant(self.profile("-d", "--data")) {
            check.report(
                field.clone(),
                "needs mkfs_options with a redundant data profile (\"-d\", \"raid1\"; or raid1c3, raid1c4, raid10, \
                 raid5, raid6): data in the default single profile is lost with a device",
            );
        }
        if self.profile("-m", "--metadata").is_some_and(|p| !redundant(Some(p))) {
            check.report(field, "needs a redundant metadata profile (\"-m\", \"raid1\"), not the one given");
        }
    }

    fn all_swap_files(&self) -> Vec<(Option<&str>, &str, &SwapFile)> {
        let top = self.swap.iter().map(|(name, file)| (None, name.as_str(), file));
        let inner = self
            .subvolumes
            .iter()
            .flat_map(|(sub, s)| s.swap.iter().map(move |(name, file)| (Some(sub.as_str()), name.as_str(), file)));
        top.chain(inner).collect()
    }

    fn validate_swap(
        check: &mut Checker,
        swap: &IndexMap<String, SwapFile>,
        mountpoint: Option<&str>,
        path: &FieldPath,
    ) {
        for (name, file) in swap {
            let field = path.join("swap").join(name.clone());
            if mountpoint.is_none() {
                check.report(
                    field.clone(),
                    "a swap file needs a mountpoint on what holds it: the installed system finds it there",
                );
            }
            let inner = file.path.as_deref().unwrap_or(name);
            let at = if file.path.is_some() { field.join("path") } else { field.clone() };
            if let Some(reason) = inner_path_problem(inner) {
                check.report(at, format!("{} {reason}", shown(inner)));
            } else if subvolume_path(inner).contains('/') {
                // mkswapfile makes no folders; a swap file lives directly in its subvolume.
                check.report(
                    at,
                    format!("{} is not a file name: put the swap file in a subvolume of its own", shown(inner)),
                );
            }
            match file.size {
                Size::Bytes(bytes) if bytes >= 40 * 1024 && bytes % 4096 == 0 => {}
                _ => check.report(field.join("size"), "is not a swap file size (a multiple of 4K, at least 40K)"),
            }
        }
    }
}

impl Btrfs {
    /// The steps of the filesystem on `site` and on the devices of its members.
    fn compile_on(&self, build: &mut Builder<'_>, site: &OwnedSite, members: &[MemberDevice]) {
        let uuid = build.plan.filesystem_uuid(&site.owner);
        let more_devices: Vec<String> = members.iter().map(|m| m.device.clone()).collect();
        let mut devices = vec![site.device.clone()];
        devices.extend(more_devices.iter().cloned());
        let mut after = vec![site.provider.clone()];
        after.extend(members.iter().map(|m| m.provided_by.clone()));
        // Spread over several disks, its steps belong to none of them alone.
        let disk = if members.is_empty() { site.disk.as_deref() } else { None };
        let spans = if members.is_empty() { String::new() } else { format!(" and {} more device(s)", members.len()) };
        let mut made = build.push(
            format!("mkfs:{}", site.owner),
            format!("Make a btrfs filesystem on {}{spans}", site.owner),
            devices.clone(),
            disk,
            after,
            Operation::Mkfs(Mkfs {
                device: site.device.clone(),
                uuid: uuid.clone(),
                format: Format::Btrfs,
                label: self.label.clone(),
                options: self.mkfs_options.clone(),
                more_devices: more_devices.clone(),
            }),
        );
        let subvolumes: Vec<String> = self.subvolumes.keys().map(|name| subvolume_path(name)).collect();
        let swap_files: Vec<(String, u64)> = self
            .all_swap_files()
            .into_iter()
            .map(|(sub, name, file)| {
                let inner = subvolume_path(file.path.as_deref().unwrap_or(name));
                let path = sub.map_or(inner.clone(), |sub| format!("{}/{inner}", subvolume_path(sub)));
                (path, file.size.bytes().unwrap_or_default())
            })
            .collect();
        if !subvolumes.is_empty() || !swap_files.is_empty() {
            made = build.push(
                format!("btrfs-subvolumes:{}", site.owner),
                format!("Create the subvolumes and swap files in {}'s btrfs", site.owner),
                devices,
                disk,
                vec![made],
                Operation::BtrfsSubvolumes(BtrfsSubvolumes {
                    device: site.device.clone(),
                    uuid,
                    subvolumes,
                    swap_files,
                    more_devices: more_devices.clone(),
                }),
            );
        }
        // The installer names every other device when mounting, so the kernel need not have scanned them.
        let device_options = more_devices.iter().map(|d| format!("device={d}"));
        if let Some(mountpoint) = &self.mountpoint {
            let options: Vec<String> = self.mount_options.iter().cloned().chain(device_options.clone()).collect();
            build.add_mount(MountSpec::new(mountpoint, &site.device, "btrfs", &options, made.clone()));
        }
        for (name, subvolume) in &self.subvolumes {
            if let Some(mountpoint) = &subvolume.mountpoint {
                let mut options = subvolume_options(name, subvolume);
                options.extend(device_options.clone());
                build.add_mount(MountSpec::new(mountpoint, &site.device, "btrfs", &options, made.clone()));
            }
        }
    }
}

impl ContentNode for Btrfs {
    fn kind(&self) -> &'static str {
        "btrfs"
    }

    fn blkid_signature(&self) -> Option<String> {
        Some("TYPE=btrfs".to_string())
    }

    fn validate(&self, check: &mut Checker, plan: &Plan, path: &FieldPath, _inside_luks: bool) {
        let path = path.join("btrfs");
        if let Some(mountpoint) = &self.mountpoint {
            check.mountpoint(mountpoint, &path.join("mountpoint"));
        }
        check.mount_options(&self.mount_options, &path.join("mount_options"));
        check.mount_option_values("btrfs", &self.mount_options, &path.join("mount_options"));
        if let Some(label) = &self.label {
            if label.is_empty() || label.len() > Format::Btrfs.max_label_bytes() || label.chars().any(char::is_control)
            {
                check.report(path.join("label"), format!("{} is not a label for btrfs (1 to 255 bytes)", shown(label)));
            }
        }
        if let Err((index, message)) = Format::Btrfs.check_mkfs_options(&self.mkfs_options) {
            let value = self.mkfs_options.get(index).map_or_else(String::new, |v| format!("{} ", shown(v)));
            check.report(path.join("mkfs_options").join(format!("[{index}]")), format!("{value}{message}"));
        }
        Btrfs::validate_swap(check, &self.swap, self.mountpoint.as_deref(), &path);
        if self.degraded_boot {
            self.validate_degraded_boot(check, plan, &path);
        }
        check_subvolume_names(check, self.subvolumes.keys(), &path.join("subvolumes"));
        for (name, subvolume) in &self.subvolumes {
            let field = path.join("subvolumes").join(name.clone());
            if inner_path_problem(name).is_some() {
                continue;
            }
            if let Some(mountpoint) = &subvolume.mountpoint {
                check.mountpoint(mountpoint, &field.join("mountpoint"));
            }
            check.mount_options(&subvolume.mount_options, &field.join("mount_options"));
            check.mount_option_values("btrfs", &subvolume.mount_options, &field.join("mount_options"));
            if subvolume.mount_options.iter().any(|o| o.starts_with("subvol=") || o.starts_with("subvolid=")) {
                check.report(field.join("mount_options"), "names its subvolume itself: nix-dabei adds subvol=");
            }
            Btrfs::validate_swap(check, &subvolume.swap, subvolume.mountpoint.as_deref(), &field);
        }
    }

    fn compile(&self, build: &mut Builder<'_>, site: &Site<'_>) {
        let at = OwnedSite::of(site);
        let members = build.plan.btrfs_members(site.owner);
        if members.is_empty() {
            self.compile_on(build, &at, &[]);
            return;
        }
        // The other devices may be on disks compiled after this one.
        let this = self.clone();
        build.once_disks_are_compiled(move |build| {
            let devices: Vec<MemberDevice> = members.iter().filter_map(|r| build.member(r)).cloned().collect();
            this.compile_on(build, &at, &devices);
        });
    }

    fn nixos(&self, module: &mut ModuleParts, device: &str) {
        use crate::nixos::FileSystemEntry;
        if let Some(mountpoint) = &self.mountpoint {
            module.file_systems.push(FileSystemEntry::new(mountpoint, device, "btrfs", &self.mount_options));
        }
        for (name, subvolume) in &self.subvolumes {
            if let Some(mountpoint) = &subvolume.mountpoint {
                let options = subvolume_options(name, subvolume);
                module.file_systems.push(FileSystemEntry::new(mountpoint, device, "btrfs", &options));
            }
        }
        for (sub, name, file) in self.all_swap_files() {
            let mountpoint = match sub {
                None => self.mountpoint.as_deref(),
                Some(sub) => self.subvolumes.get(sub).and_then(|s| s.mountpoint.as_deref()),
            };
            let Some(mountpoint) = mountpoint.map(crate::nodes::mount::normal) else { continue };
            let inner = subvolume_path(file.path.as_deref().unwrap_or(name));
            let device = if mountpoint == "/" { format!("/{inner}") } else { format!("{mountpoint}/{inner}") };
            module.swaps.push(SwapEntry {
                device,
                random_encryption: false,
                priority: file.priority,
                discard_policy: None,
                resume: false,
            });
        }
    }

    fn to_disko(&self, w: &mut Writer) {
        w.string("type", "btrfs");
        if let Some(m) = &self.mountpoint {
            w.string("mountpoint", m);
        }
        if !self.mount_options.is_empty() {
            w.list("mountOptions", &self.mount_options);
        }
        let mut extra = Vec::new();
        if let Some(label) = &self.label {
            extra.extend(["-L".to_string(), label.clone()]);
        }
        extra.extend(self.mkfs_options.iter().cloned());
        // disko makes a multi-device btrfs from the other devices named in extraArgs.
        for member in w.plan.btrfs_members(&w.owner) {
            extra.push(member_path_in_disko(w.plan, &member));
        }
        if !extra.is_empty() {
            w.list("extraArgs", &extra);
        }
        swap_to_disko(w, &self.swap);
        if !self.subvolumes.is_empty() {
            w.open("subvolumes");
            for (name, subvolume) in &self.subvolumes {
                w.open(name);
                if let Some(m) = &subvolume.mountpoint {
                    w.string("mountpoint", m);
                }
                if !subvolume.mount_options.is_empty() {
                    w.list("mountOptions", &subvolume.mount_options);
                }
                swap_to_disko(w, &subvolume.swap);
                w.close();
            }
            w.close();
        }
    }

    fn partition_type(&self) -> &'static str {
        "linux"
    }
}

/// A subvolume's mount options with `subvol=` naming it as the plan writes it.
fn subvolume_options(name: &str, subvolume: &Subvolume) -> Vec<String> {
    let mut options = subvolume.mount_options.clone();
    options.push(format!("subvol={name}"));
    options
}

/// How disko names a member: its LUKS mapping, or the partition by its label.
fn member_path_in_disko(plan: &Plan, member: &str) -> String {
    let (disk, part) = split_member(member).unwrap_or_default();
    let partition = plan.disks.get(disk).and_then(|d| d.partitions.get(part));
    match partition.and_then(|p| p.content.as_ref()) {
        Some(Content::Luks(luks)) => luks.mapped_device(),
        _ => {
            let label = partition.and_then(|p| p.label.clone());
            format!("/dev/disk/by-partlabel/{}", label.unwrap_or_else(|| default_partition_label(disk, part)))
        }
    }
}

fn swap_to_disko(w: &mut Writer, swap: &IndexMap<String, SwapFile>) {
    if swap.is_empty() {
        return;
    }
    w.open("swap");
    for (name, file) in swap {
        w.open(name);
        w.string("size", &disko_size(file.size));
        if let Some(path) = &file.path {
            w.string("path", path);
        }
        if let Some(priority) = file.priority {
            w.line(&format!("priority = {priority};"));
        }
        w.close();
    }
    w.close();
}

/// disko's swap file sizes are a number with a unit letter (`^([0-9]+[KMGTP])?$`).
fn disko_size(size: Size) -> String {
    let bytes = size.bytes().unwrap_or_default();
    let exact = format_exact(bytes);
    if exact.ends_with(|c: char| "KMGTP".contains(c)) {
        exact
    } else {
        format!("{}K", bytes / 1024)
    }
}

fn swap_from_disko(r: &mut Reader, object: &Object, path: &FieldPath) -> IndexMap<String, SwapFile> {
    let mut files = IndexMap::new();
    let Some(value) = object.get("swap") else { return files };
    let path = path.join("swap");
    let Some(swap) = r.object(value, &path) else { return files };
    for (name, value) in swap {
        let field = path.join(name.clone());
        let Some(file) = r.object(value, &field) else { continue };
        r.only(file, &field, &["size", "path", "priority", "options"]);
        let options = r.strings(file, "options", &field);
        if options.iter().any(|o| o != "defaults") {
            r.refuse(&field.join("options"), "swap file options other than \"defaults\" are not supported");
        }
        let size_text = r.string(file, "size", &field).unwrap_or_default();
        let size = match size_text.parse::<Size>() {
            Ok(size @ Size::Bytes(_)) => size,
            _ => {
                r.refuse(&field.join("size"), format!("{size_text:?} is not a swap file size"));
                continue;
            }
        };
        let priority = match file.get("priority") {
            None | Some(serde_json::Value::Null) => None,
            Some(value) => match value.as_i64().and_then(|p| i32::try_from(p).ok()) {
                Some(p) => Some(p),
                None => {
                    r.refuse(&field.join("priority"), "is not a number");
                    None
                }
            },
        };
        let file_path = r.string(file, "path", &field).filter(|p| p != name);
        files.insert(name.clone(), SwapFile { size, path: file_path, priority });
    }
    files
}

/// Reads disko's `type = "btrfs"`. One without subvolumes or swap files is a plain btrfs `filesystem`.
/// disko passes `extraArgs` to mkfs.btrfs unquoted, so each is split at spaces as the shell does.
pub(crate) fn from_disko(r: &mut Reader, object: &Object, path: &FieldPath, _inside_luks: bool) -> Option<Content> {
    r.only(object, path, &["type", "device", "mountpoint", "mountOptions", "extraArgs", "subvolumes", "swap"]);
    if object.get("device").is_some() {
        r.warn(format!(
            "{}: not carried over: nix-dabei makes the filesystem where the content sits",
            path.join("device")
        ));
    }
    let mut extra: Vec<String> =
        r.strings(object, "extraArgs", path).iter().flat_map(|a| a.split_whitespace().map(str::to_string)).collect();
    let label = (extra.len() >= 2 && extra[0] == "-L").then(|| {
        let label = extra[1].clone();
        extra.drain(..2);
        label
    });
    let mut subvolumes = IndexMap::new();
    if let Some(value) = object.get("subvolumes") {
        let field = path.join("subvolumes");
        if let Some(map) = r.object(value, &field) {
            let mut names: Vec<&String> = map.keys().collect();
            // Parents before their children, as disko creates them (it sorts by name).
            names.sort_by_key(|n| subvolume_path(n));
            for name in names {
                let sub_field = field.join(name.clone());
                let Some(sub) = r.object(&map[name], &sub_field) else { continue };
                r.only(sub, &sub_field, &["name", "type", "mountpoint", "mountOptions", "extraArgs", "swap"]);
                let own_name = r.string(sub, "name", &sub_field).unwrap_or_else(|| name.clone());
                if !r.strings(sub, "extraArgs", &sub_field).is_empty() {
                    r.refuse(&sub_field.join("extraArgs"), "arguments to `btrfs subvolume create` are not supported");
                }
                let subvolume = Subvolume {
                    mountpoint: r.string(sub, "mountpoint", &sub_field),
                    mount_options: r.mount_options(sub, &sub_field),
                    swap: swap_from_disko(r, sub, &sub_field),
                };
                subvolumes.insert(own_name, subvolume);
            }
        }
    }
    let swap = swap_from_disko(r, object, path);
    let mountpoint = r.string(object, "mountpoint", path);
    let mount_options = r.mount_options(object, path);
    if subvolumes.is_empty() && swap.is_empty() {
        return Some(Content::Filesystem(super::filesystem::Filesystem {
            uuid: None,
            format: Format::Btrfs,
            mountpoint,
            mount_options,
            label,
            mkfs_options: extra,
        }));
    }
    Some(Content::Btrfs(Btrfs {
        mountpoint,
        mount_options,
        label,
        mkfs_options: extra,
        subvolumes,
        swap,
        degraded_boot: false,
    }))
}

/// Links disko's multi-device btrfs: the devices its `extraArgs` name (`/dev/mapper/<luks name>`,
/// `/dev/disk/by-partlabel/<label>`) become members of it, and each LUKS container or partition without
/// content that no btrfs names is refused.
pub(crate) fn link_members_from_disko(
    r: &mut Reader,
    disks: &mut IndexMap<String, super::gpt::Disk>,
    path: &FieldPath,
) {
    // Which partition each disko device path stands for.
    let mut by_path: IndexMap<String, String> = IndexMap::new();
    for (disk_name, disk) in disks.iter() {
        for (part_name, part) in &disk.partitions {
            let reference = format!("{disk_name}/{part_name}");
            let label = part.label.clone().unwrap_or_else(|| default_partition_label(disk_name, part_name));
            by_path.insert(format!("/dev/disk/by-partlabel/{label}"), reference.clone());
            if let Some(Content::Luks(luks)) = &part.content {
                by_path.insert(luks.mapped_device(), reference);
            }
        }
    }
    let mut links: Vec<(String, String)> = Vec::new();
    for (disk_name, disk) in disks.iter_mut() {
        for (part_name, part) in disk.partitions.iter_mut() {
            let owner = format!("{disk_name}/{part_name}");
            let Some(content) = part.content.as_mut() else { continue };
            let inner = innermost_mut(content);
            let options = match inner {
                Content::Btrfs(btrfs) => &mut btrfs.mkfs_options,
                Content::Filesystem(fs) if fs.format == Format::Btrfs => &mut fs.mkfs_options,
                _ => continue,
            };
            let (paths, rest): (Vec<String>, Vec<String>) = options.drain(..).partition(|o| o.starts_with('/'));
            *options = rest;
            if paths.is_empty() {
                continue;
            }
            for device in paths {
                match by_path.get(&device) {
                    Some(member) => links.push((member.clone(), owner.clone())),
                    None => r.refuse(
                        &path.join(disk_name.clone()),
                        format!("the btrfs on {owner} names {device:?}, which is no partition or LUKS container here"),
                    ),
                }
            }
            // A btrfs of several devices is the btrfs node, whether or not it has subvolumes.
            if let Content::Filesystem(fs) = inner {
                *inner = Content::Btrfs(Btrfs {
                    mountpoint: fs.mountpoint.take(),
                    mount_options: std::mem::take(&mut fs.mount_options),
                    label: fs.label.take(),
                    mkfs_options: std::mem::take(&mut fs.mkfs_options),
                    subvolumes: IndexMap::new(),
                    swap: IndexMap::new(),
                    degraded_boot: false,
                });
            }
        }
    }
    for (member, filesystem) in links {
        let (disk, part) = split_member(&member).unwrap_or_default();
        let Some(partition) = disks.get_mut(disk).and_then(|d| d.partitions.get_mut(part)) else { continue };
        let joins = Content::BtrfsMember(BtrfsMember { filesystem });
        match partition.content.as_mut().map(innermost_mut) {
            None => partition.content = Some(joins),
            Some(inner @ Content::BtrfsMember(_)) => *inner = joins,
            Some(_) => r.refuse(
                &path.join(disk.to_string()),
                format!("{member} holds something else and cannot also be a device of a btrfs"),
            ),
        }
    }
    for (disk_name, disk) in disks.iter() {
        for (part_name, part) in &disk.partitions {
            if let Some(Content::BtrfsMember(m)) = part.content.as_ref().map(Content::innermost) {
                if m.filesystem.is_empty() {
                    let at = path.join(disk_name.clone()).join("content").join("partitions").join(part_name.clone());
                    r.refuse(
                        &at.join("content"),
                        "a LUKS container without content is supported only as a device a btrfs names in its \
                         extraArgs",
                    );
                }
            }
        }
    }
}

fn innermost_mut(content: &mut Content) -> &mut Content {
    match content {
        Content::Luks(luks) => innermost_mut(&mut luks.content),
        other => other,
    }
}
