//! Filesystems without a device: tmpfs (and ramfs) mounts, such as `/` in memory for an impermanence
//! setup with `/nix` and `/persist` on disk, or a size-limited `/tmp`.
//!
//! They sit at the top of a plan (`[nodev."/tmp"]`, keyed like disko's `nodev` by mountpoint) and make
//! nothing: the install mounts them under the target so that what is installed beneath them lands on
//! the disks mounted inside, and the NixOS module mounts them at every boot.

use serde::{Deserialize, Serialize};

use crate::compile::{Builder, MountSpec};
use crate::disko::{Object, Reader, Writer};
use crate::error::{shown, FieldPath};
use crate::nixos::{FileSystemEntry, ModuleParts};
use crate::validate::Checker;

/// The filesystem types a nodev mount may have: those that live in memory.
pub const NODEV_TYPES: [&str; 2] = ["tmpfs", "ramfs"];

fn not_in_memory(fs_type: &str) -> String {
    format!("{} is not a filesystem without a device nix-dabei mounts ({})", shown(fs_type), NODEV_TYPES.join(", "))
}

/// A filesystem without a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nodev {
    /// `tmpfs` or `ramfs`.
    pub fs_type: String,
    /// Where it is mounted; the plan's key when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
    /// Mount options (`size=2G`, `mode=755`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
}

impl Nodev {
    /// The mountpoint: its own, or the key it is listed under.
    pub fn mountpoint<'a>(&'a self, key: &'a str) -> &'a str {
        self.mountpoint.as_deref().unwrap_or(key)
    }

    /// The source mount(2) and `fileSystems.*.device` get: the type's name, as disko and NixOS write it.
    pub fn source(&self) -> &str {
        &self.fs_type
    }

    pub(crate) fn validate(&self, check: &mut Checker, key: &str, path: &FieldPath) {
        if !NODEV_TYPES.contains(&self.fs_type.as_str()) {
            check.report(path.join("fs_type"), not_in_memory(&self.fs_type));
        }
        let at = if self.mountpoint.is_some() { path.join("mountpoint") } else { path.clone() };
        check.mountpoint(self.mountpoint(key), &at);
        check.mount_options(&self.mount_options, &path.join("mount_options"));
        check.mount_option_values(&self.fs_type, &self.mount_options, &path.join("mount_options"));
        if self.mount_options.iter().any(|o| o == "bind" || o == "rbind") {
            check.report(path.join("mount_options"), "bind mounts are not supported");
        }
    }

    pub(crate) fn compile(&self, build: &mut Builder<'_>, key: &str) {
        build.add_mount(MountSpec::new(self.mountpoint(key), self.source(), &self.fs_type, &self.mount_options, None));
    }

    pub(crate) fn nixos(&self, module: &mut ModuleParts, key: &str) {
        module.file_systems.push(FileSystemEntry::new(
            self.mountpoint(key),
            self.source(),
            &self.fs_type,
            &self.mount_options,
        ));
    }

    pub(crate) fn to_disko(&self, w: &mut Writer, key: &str) {
        w.open(key);
        w.string("fsType", &self.fs_type);
        if let Some(mountpoint) = &self.mountpoint {
            w.string("mountpoint", mountpoint);
        }
        if !self.mount_options.is_empty() {
            w.list("mountOptions", &self.mount_options);
        }
        w.close();
    }
}

/// Reads one entry of disko's `nodev`.
pub(crate) fn from_disko(r: &mut Reader, key: &str, object: &Object, path: &FieldPath) -> Option<Nodev> {
    r.only(object, path, &["type", "fsType", "device", "mountpoint", "mountOptions"]);
    let fs_type = r.string(object, "fsType", path).unwrap_or_default();
    if let Some(device) = r.string(object, "device", path).filter(|d| d != "none" && *d != fs_type) {
        r.refuse(&path.join("device"), format!("{} as the source of a nodev mount is not supported", shown(&device)));
    }
    if !NODEV_TYPES.contains(&fs_type.as_str()) {
        r.refuse(&path.join("fsType"), not_in_memory(&fs_type));
    }
    let mountpoint = r.string(object, "mountpoint", path).filter(|m| m != key);
    Some(Nodev { fs_type, mountpoint, mount_options: r.mount_options(object, path) })
}
