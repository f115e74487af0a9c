//! Filesystems (vfat, ext4, xfs, btrfs) on a partition, a LUKS container or a ZFS volume.

use serde::{Deserialize, Serialize};

use super::{Content, ContentNode, Site};
use crate::compile::{Builder, MountSpec};
use crate::disko::{Object, Reader, Writer};
use crate::error::FieldPath;
use crate::model::Plan;
use crate::nixos::{FileSystemEntry, ModuleParts};
use crate::steps::{CommandLine, OperationKind};
use crate::validate::Checker;

/// A filesystem format nix-dabei can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Format {
    /// FAT32, for EFI system partitions.
    Vfat,
    /// ext4.
    Ext4,
    /// XFS.
    Xfs,
    /// Btrfs (a single filesystem; subvolumes are not modelled).
    Btrfs,
}

impl Format {
    /// Every format, in the order plans document them.
    pub const ALL: [Format; 4] = [Format::Vfat, Format::Ext4, Format::Xfs, Format::Btrfs];

    /// The name `mount -t` and `fileSystems.*.fsType` use.
    pub fn fs_type(self) -> &'static str {
        match self {
            Format::Vfat => "vfat",
            Format::Ext4 => "ext4",
            Format::Xfs => "xfs",
            Format::Btrfs => "btrfs",
        }
    }

    /// The mkfs program and the arguments that make it work unattended on a device that held something.
    fn mkfs(self) -> (&'static str, &'static [&'static str]) {
        match self {
            // FAT32 whatever the size, as UEFI firmware expects on an ESP.
            Format::Vfat => ("mkfs.vfat", &["-F", "32"]),
            Format::Ext4 => ("mkfs.ext4", &["-F", "-q"]),
            Format::Xfs => ("mkfs.xfs", &["-f", "-q"]),
            Format::Btrfs => ("mkfs.btrfs", &["-f", "-q"]),
        }
    }

    /// The mkfs flag that sets the label.
    pub fn label_flag(self) -> &'static str {
        if self == Format::Vfat {
            "-n"
        } else {
            "-L"
        }
    }
}

/// A filesystem on a partition, LUKS container or ZFS volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    /// The format to create.
    pub format: Format,
    /// Where it is mounted in the installed system; not mounted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
    /// Mount options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
    /// Filesystem label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Extra arguments for mkfs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mkfs_options: Vec<String>,
}

/// Make a filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mkfs {
    /// The device.
    pub device: String,
    /// The format.
    pub format: Format,
    /// Filesystem label.
    pub label: Option<String>,
    /// Extra mkfs arguments.
    pub options: Vec<String>,
}

impl OperationKind for Mkfs {
    fn destroys_data(&self) -> bool {
        true
    }

    fn command(&self) -> Option<CommandLine> {
        let (program, unattended) = self.format.mkfs();
        let mut args: Vec<String> = unattended.iter().map(|s| s.to_string()).collect();
        if let Some(label) = &self.label {
            args.extend([self.format.label_flag().to_string(), label.clone()]);
        }
        args.extend(self.options.iter().cloned());
        args.push(self.device.clone());
        Some(CommandLine { program: program.to_string(), args })
    }
}

impl ContentNode for Filesystem {
    fn kind(&self) -> &'static str {
        "filesystem"
    }

    fn blkid_signature(&self) -> Option<String> {
        Some(format!("TYPE={}", self.format.fs_type()))
    }

    fn validate(&self, check: &mut Checker, _plan: &Plan, path: &FieldPath, _inside_luks: bool) {
        if let Some(mountpoint) = &self.mountpoint {
            check.mountpoint(mountpoint, &path.join("filesystem").join("mountpoint"));
        }
        check.mount_options(&self.mount_options, &path.join("filesystem").join("mount_options"));
    }

    fn compile(&self, build: &mut Builder<'_>, site: &Site<'_>) {
        let article = if self.format == Format::Ext4 { "an" } else { "a" };
        let mkfs = build.push(
            format!("mkfs:{}", site.owner),
            format!("Make {article} {} filesystem on {}", self.format.fs_type(), site.owner),
            vec![site.device.to_string()],
            site.disk,
            vec![site.provider.to_string()],
            crate::steps::Operation::Mkfs(Mkfs {
                device: site.device.to_string(),
                format: self.format,
                label: self.label.clone(),
                options: self.mkfs_options.clone(),
            }),
        );
        if let Some(mountpoint) = &self.mountpoint {
            build.add_mount(MountSpec::new(mountpoint, site.device, self.format.fs_type(), &self.mount_options, mkfs));
        }
    }

    fn nixos(&self, module: &mut ModuleParts, device: &str) {
        if let Some(mountpoint) = &self.mountpoint {
            module.file_systems.push(FileSystemEntry::new(
                mountpoint,
                device,
                self.format.fs_type(),
                &self.mount_options,
            ));
        }
    }

    fn to_disko(&self, w: &mut Writer) {
        w.string("type", "filesystem");
        w.string("format", self.format.fs_type());
        if let Some(m) = &self.mountpoint {
            w.string("mountpoint", m);
        }
        if !self.mount_options.is_empty() {
            w.list("mountOptions", &self.mount_options);
        }
        let mut extra = Vec::new();
        if let Some(label) = &self.label {
            extra.push(self.format.label_flag().to_string());
            extra.push(label.clone());
        }
        extra.extend(self.mkfs_options.iter().cloned());
        if !extra.is_empty() {
            w.list("extraArgs", &extra);
        }
    }

    fn partition_type(&self) -> &'static str {
        let boot = self.mountpoint.as_deref().is_some_and(|m| m.starts_with("/boot"));
        if self.format == Format::Vfat && boot {
            "esp"
        } else {
            "linux"
        }
    }
}

/// Reads disko's `type = "filesystem"`; a leading label flag in `extraArgs` becomes the label.
pub(crate) fn from_disko(r: &mut Reader, object: &Object, path: &FieldPath, _inside_luks: bool) -> Option<Content> {
    r.only(object, path, &["type", "format", "mountpoint", "mountOptions", "extraArgs"]);
    let format_name = r.string(object, "format", path).unwrap_or_default();
    let Some(format) = Format::ALL.into_iter().find(|f| f.fs_type() == format_name) else {
        r.refuse(
            &path.join("format"),
            format!("{format_name:?} is not a format nix-dabei makes (vfat, ext4, xfs, btrfs)"),
        );
        return None;
    };
    let mut extra = r.strings(object, "extraArgs", path);
    let label = (extra.len() >= 2 && extra[0] == format.label_flag()).then(|| {
        let label = extra[1].clone();
        extra.drain(..2);
        label
    });
    Some(Content::Filesystem(Filesystem {
        format,
        mountpoint: r.string(object, "mountpoint", path),
        mount_options: r.mount_options(object, path),
        label,
        mkfs_options: extra,
    }))
}
