//! The NixOS module that describes a plan's layout to the installed system: file systems, swap, LUKS
//! devices, ZFS support with a stable host id, and a boot loader that keeps every ESP bootable.
//!
//! The module takes `{ lib, ... }` and uses only `lib.mkDefault`, so that a flake can override the boot
//! loader and host name; everything else is plain data.

use std::fmt::Write;

use crate::model::{Content, Plan};
use crate::nodes::mount::normal;

/// How the installed system finds a partition: by its GPT partition UUID, which nix-dabei sets.
fn partition_path(plan: &Plan, disk: &str, partition: &str) -> String {
    format!("/dev/disk/by-partuuid/{}", plan.partition_uuid(disk, partition))
}

/// A Nix string literal.
pub fn nix_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' => out.push_str("\\$"),
            other => out.push(other),
        }
    }
    out.push('"');
    out
}

fn nix_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| nix_string(i)).collect();
    format!("[ {} ]", quoted.join(" "))
}

/// One `fileSystems` entry.
#[derive(Debug)]
pub(crate) struct FileSystemEntry {
    mountpoint: String,
    device: String,
    fs_type: String,
    options: Vec<String>,
}

impl FileSystemEntry {
    pub(crate) fn new(mountpoint: &str, device: &str, fs_type: &str, options: &[String]) -> Self {
        FileSystemEntry {
            mountpoint: normal(mountpoint),
            device: device.to_string(),
            fs_type: fs_type.to_string(),
            options: options.to_vec(),
        }
    }
}

/// One `swapDevices` entry.
#[derive(Debug)]
pub(crate) struct SwapEntry {
    pub device: String,
    pub random_encryption: bool,
    pub priority: Option<i32>,
    pub discard_policy: Option<String>,
    pub resume: bool,
}

/// One `boot.initrd.luks.devices` entry.
#[derive(Debug)]
pub(crate) struct LuksEntry {
    pub name: String,
    pub device: String,
    pub allow_discards: bool,
    pub key_file: Option<String>,
}

/// What the node types contribute to the module; rendered as Nix by [`module`].
#[derive(Debug, Default)]
pub(crate) struct ModuleParts {
    pub file_systems: Vec<FileSystemEntry>,
    pub swaps: Vec<SwapEntry>,
    pub luks: Vec<LuksEntry>,
    /// A pool or dataset uses ZFS native encryption.
    pub native_encryption: bool,
}

impl ModuleParts {
    /// Adds a content's part, through its node type; `device` is how the installed system finds it.
    pub(crate) fn content(&mut self, content: &Content, device: &str) {
        content.node().nixos(self, device);
    }
}

/// The NixOS module for a plan, as Nix source.
pub fn module(plan: &Plan) -> String {
    let mut found = ModuleParts::default();
    let mut esps = Vec::new();
    for (disk_name, disk) in &plan.disks {
        for (part_name, part) in &disk.partitions {
            let device = partition_path(plan, disk_name, part_name);
            if let Some(content) = &part.content {
                found.content(content, &device);
            }
            if let (true, Some(Content::Filesystem(fs))) = (part.is_esp(), &part.content) {
                if let Some(mountpoint) = &fs.mountpoint {
                    esps.push(normal(mountpoint));
                }
            }
        }
    }
    for (pool_name, pool) in &plan.pools {
        pool.nixos(&mut found, pool_name);
    }
    found.file_systems.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
    esps.sort();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# The disk layout of {}, written by nix-dabei. Import it from the host's configuration.",
        plan.hostname
    );
    let _ = writeln!(out, "{{ lib, ... }}:");
    let _ = writeln!(out, "{{");
    let _ = writeln!(out, "  networking.hostName = lib.mkDefault {};", nix_string(&plan.hostname));
    if !plan.pools.is_empty() {
        let _ = writeln!(out, "  # ZFS refuses to import a pool last used by a host with another id.");
        let _ = writeln!(out, "  networking.hostId = {};", nix_string(&plan.effective_host_id()));
        let _ = writeln!(out, "  boot.supportedFilesystems = [ \"zfs\" ];");
        let _ = writeln!(out, "  boot.zfs.devNodes = \"/dev/disk/by-partuuid\";");
        if found.native_encryption {
            let _ = writeln!(out, "  # Ask for the pool's passphrase at boot.");
            let _ = writeln!(out, "  boot.zfs.requestEncryptionCredentials = true;");
        }
    }
    for luks in &found.luks {
        let _ = writeln!(out, "  boot.initrd.luks.devices.{} = {{", nix_string(&luks.name));
        let _ = writeln!(out, "    device = {};", nix_string(&luks.device));
        let _ = writeln!(out, "    allowDiscards = {};", luks.allow_discards);
        if let Some(key_file) = &luks.key_file {
            let _ = writeln!(out, "    keyFile = {};", nix_string(key_file));
        }
        let _ = writeln!(out, "  }};");
    }
    for fs in &found.file_systems {
        let _ = writeln!(out, "  fileSystems.{} = {{", nix_string(&fs.mountpoint));
        let _ = writeln!(out, "    device = {};", nix_string(&fs.device));
        let _ = writeln!(out, "    fsType = {};", nix_string(&fs.fs_type));
        if !fs.options.is_empty() {
            let _ = writeln!(out, "    options = {};", nix_list(&fs.options));
        }
        if esps.contains(&fs.mountpoint) {
            // A missing ESP must not stop a mirror from booting off the other disk.
            let _ = writeln!(out, "    neededForBoot = false;");
        }
        let _ = writeln!(out, "  }};");
    }
    if !found.swaps.is_empty() {
        let _ = writeln!(out, "  swapDevices = [");
        for swap in &found.swaps {
            let mut fields = vec![format!("device = {};", nix_string(&swap.device))];
            if swap.random_encryption {
                fields.push("randomEncryption.enable = true;".to_string());
            }
            if let Some(priority) = swap.priority {
                fields.push(format!("priority = {priority};"));
            }
            if let Some(policy) = &swap.discard_policy {
                fields.push(format!("discardPolicy = {};", nix_string(policy)));
            }
            let _ = writeln!(out, "    {{ {} }}", fields.join(" "));
        }
        let _ = writeln!(out, "  ];");
    }
    if let Some(resume) = found.swaps.iter().find(|s| s.resume) {
        let _ = writeln!(out, "  boot.resumeDevice = {};", nix_string(&resume.device));
    }
    if !esps.is_empty() {
        let _ = writeln!(out, "  # GRUB on every ESP, so that each disk can boot alone.");
        let _ = writeln!(out, "  boot.loader.grub = {{");
        let _ = writeln!(out, "    enable = lib.mkDefault true;");
        let _ = writeln!(out, "    efiSupport = lib.mkDefault true;");
        let _ = writeln!(out, "    efiInstallAsRemovable = lib.mkDefault true;");
        let _ = writeln!(out, "    mirroredBoots = lib.mkDefault [");
        for esp in &esps {
            let _ = writeln!(out, "      {{ devices = [ \"nodev\" ]; path = {}; }}", nix_string(esp));
        }
        let _ = writeln!(out, "    ];");
        let _ = writeln!(out, "  }};");
    }
    let _ = writeln!(out, "}}");
    out
}
