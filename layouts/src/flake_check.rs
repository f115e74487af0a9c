//! The check before install: the flake's NixOS configuration, as `nix eval` shows it, compared with the
//! plan. A configuration that would not find its root, would not open a LUKS device, carries another
//! host id than the pools, has no ZFS support for a ZFS root, lacks the disks' drivers or installs a boot
//! loader the machine's firmware cannot start is refused field by field before anything is written.
//!
//! This module is pure: the installer runs `nix eval` with [`SELECT`] and hands the JSON here.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::model::Plan;
use crate::nixos::{nix_string, parts};
use crate::nodes::gpt::default_partition_label;

/// The Nix function `nix eval --apply` runs on `nixosConfigurations.<host>.config`: it picks the fields
/// the check compares and gives every missing one a default, so that a small plain configuration (as
/// in the tests) evaluates as well as a full NixOS one. `boot.supportedFilesystems` is a list in older
/// NixOS and an attribute set of booleans in newer. `toplevel` is the system's derivation: evaluating it
/// makes NixOS check every assertion and option type (nixos/modules/system/activation/top-level.nix
/// throws "Failed assertions" from `system.build.toplevel`), so that a configuration `nixos-install`
/// would refuse is refused here, before the first write, naming the option.
pub const SELECT: &str = r#"c: let
  get = path: default: let v = builtins.foldl' (a: k: if builtins.isAttrs a && a ? ${k} then a.${k} else null) c path;
    in if v == null then default else v;
  names = v: if builtins.isList v then v else builtins.filter (n: v.${n}) (builtins.attrNames v);
in {
  fileSystems = builtins.mapAttrs (_: fs: { device = fs.device or null; fsType = fs.fsType or null;
    options = fs.options or [ ]; }) (get [ "fileSystems" ] { });
  swapDevices = map (s: { device = s.device or null; }) (get [ "swapDevices" ] [ ]);
  luks = builtins.mapAttrs (_: l: { device = l.device or null; }) (get [ "boot" "initrd" "luks" "devices" ] { });
  supportedFilesystems = names (get [ "boot" "supportedFilesystems" ] [ ])
    ++ names (get [ "boot" "initrd" "supportedFilesystems" ] [ ]);
  hostId = get [ "networking" "hostId" ] null;
  grub = {
    enable = get [ "boot" "loader" "grub" "enable" ] true;
    efiSupport = get [ "boot" "loader" "grub" "efiSupport" ] false;
    devices = get [ "boot" "loader" "grub" "devices" ] [ ];
    mirroredBoots = map (b: { path = b.path or "/boot"; devices = b.devices or [ ]; })
      (get [ "boot" "loader" "grub" "mirroredBoots" ] [ ]);
  };
  systemdBoot = get [ "boot" "loader" "systemd-boot" "enable" ] false;
  initrdModules = get [ "boot" "initrd" "availableKernelModules" ] [ ] ++ get [ "boot" "initrd" "kernelModules" ] [ ];
  toplevel = get [ "system" "build" "toplevel" "drvPath" ] null;
}"#;

/// What [`SELECT`] returns.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostConfig {
    /// `fileSystems`, by mountpoint.
    #[serde(default)]
    pub file_systems: BTreeMap<String, HostFileSystem>,
    /// `swapDevices`.
    #[serde(default)]
    pub swap_devices: Vec<HostDevice>,
    /// `boot.initrd.luks.devices`, by name.
    #[serde(default)]
    pub luks: BTreeMap<String, HostDevice>,
    /// `boot.supportedFilesystems` and `boot.initrd.supportedFilesystems`.
    #[serde(default)]
    pub supported_filesystems: Vec<String>,
    /// `networking.hostId`.
    #[serde(default)]
    pub host_id: Option<String>,
    /// `boot.loader.grub`.
    #[serde(default)]
    pub grub: HostGrub,
    /// `boot.loader.systemd-boot.enable`.
    #[serde(default)]
    pub systemd_boot: bool,
    /// `boot.initrd.availableKernelModules` and `boot.initrd.kernelModules`.
    #[serde(default)]
    pub initrd_modules: Vec<String>,
    /// `system.build.toplevel.drvPath`: evaluated so that NixOS's assertions and option types are checked
    /// (absent from a plain configuration, as in the tests).
    #[serde(default)]
    pub toplevel: Option<String>,
}

/// One `fileSystems` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostFileSystem {
    /// `device`.
    pub device: Option<String>,
    /// `fsType`.
    pub fs_type: Option<String>,
    /// `options`.
    #[serde(default)]
    pub options: Vec<String>,
}

/// A swap or LUKS device.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HostDevice {
    /// `device`.
    pub device: Option<String>,
}

/// The GRUB settings that say where it is installed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostGrub {
    /// `enable`.
    #[serde(default)]
    pub enable: bool,
    /// `efiSupport`.
    #[serde(default)]
    pub efi_support: bool,
    /// `devices`.
    #[serde(default)]
    pub devices: Vec<String>,
    /// `mirroredBoots`, path and devices.
    #[serde(default)]
    pub mirrored_boots: Vec<HostBootPath>,
}

/// One `mirroredBoots` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HostBootPath {
    /// `path`.
    pub path: String,
    /// `devices`.
    #[serde(default)]
    pub devices: Vec<String>,
}

/// One way the configuration does not fit the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The configuration's option at fault, such as `fileSystems."/".device`.
    pub option: String,
    /// What is wrong, and what the plan needs.
    pub message: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.option, self.message)
    }
}

/// Filesystem types whose `fileSystems` entries need a disk: one the plan does not provide is refused.
const DISK_FILESYSTEMS: &[&str] =
    &["ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "zfs", "f2fs", "bcachefs", "ntfs", "ntfs3", "exfat", "jfs"];

/// The names a device of the plan may go by in a configuration: the module's own (partition UUID,
/// /dev/mapper name, dataset) and a partition's GPT name (disko's by-partlabel).
fn aliases(plan: &Plan) -> BTreeMap<String, BTreeSet<String>> {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (disk_name, disk) in &plan.disks {
        for (part_name, part) in &disk.partitions {
            let path = crate::nixos::partition_path(plan, disk_name, part_name);
            let label = part.label.clone().unwrap_or_else(|| default_partition_label(disk_name, part_name));
            names.entry(path.clone()).or_default().extend([path, format!("/dev/disk/by-partlabel/{label}")]);
        }
    }
    names
}

/// Compares the configuration with the plan. `booted_with_uefi` is the firmware of the machine being
/// installed, when known. An empty list means the configuration fits.
pub fn check(plan: &Plan, host: &HostConfig, booted_with_uefi: Option<bool>) -> Vec<Mismatch> {
    let mut found = Vec::new();
    let mut refuse = |option: String, message: String| found.push(Mismatch { option, message });
    let (module, _) = parts(plan);
    let aliases = aliases(plan);
    let same = |planned: &str, configured: Option<&str>| {
        configured.is_some_and(|c| c == planned || aliases.get(planned).is_some_and(|names| names.contains(c)))
    };
    let fs_option = |mountpoint: &str, field: &str| format!("fileSystems.{}{field}", nix_string(mountpoint));

    if !host.file_systems.contains_key("/") {
        refuse(fs_option("/", ""), "the configuration mounts nothing at /: the system cannot boot".into());
    }
    for planned in &module.file_systems {
        let Some(configured) = host.file_systems.get(&planned.mountpoint) else {
            let message = format!(
                "the disks provide {} ({}) here, but the configuration does not mount it",
                planned.device, planned.fs_type
            );
            refuse(fs_option(&planned.mountpoint, ""), message);
            continue;
        };
        if !same(&planned.device, configured.device.as_deref()) {
            let message = format!(
                "is {}, but the plan puts {} here (`nix-dabei nixos-module` prints the layout's module)",
                configured.device.as_deref().unwrap_or("unset"),
                planned.device
            );
            refuse(fs_option(&planned.mountpoint, ".device"), message);
        }
        if configured.fs_type.as_deref() != Some(planned.fs_type.as_str()) {
            let message = format!(
                "is {}, but the plan makes {}",
                configured.fs_type.as_deref().unwrap_or("unset"),
                planned.fs_type
            );
            refuse(fs_option(&planned.mountpoint, ".fsType"), message);
        }
    }
    for (mountpoint, configured) in &host.file_systems {
        let planned = module.file_systems.iter().any(|p| &p.mountpoint == mountpoint);
        let on_disk = configured.fs_type.as_deref().is_some_and(|t| DISK_FILESYSTEMS.contains(&t));
        let optional = configured.options.iter().any(|o| o == "nofail" || o == "noauto");
        if !planned && on_disk && !optional {
            let message = format!(
                "the configuration mounts {} ({}) here, which the disks of the plan do not provide: boot would stop",
                configured.device.as_deref().unwrap_or("a device"),
                configured.fs_type.as_deref().unwrap_or("?")
            );
            refuse(fs_option(mountpoint, ""), message);
        }
    }
    for luks in &module.luks {
        let option = format!("boot.initrd.luks.devices.{}", nix_string(&luks.name));
        match host.luks.get(&luks.name) {
            None => {
                refuse(option, format!("the initrd will not open {}, which holds what the plan mounts", luks.device))
            }
            Some(configured) if !same(&luks.device, configured.device.as_deref()) => refuse(
                option + ".device",
                format!(
                    "is {}, but the plan's LUKS device is {}",
                    configured.device.as_deref().unwrap_or("unset"),
                    luks.device
                ),
            ),
            Some(_) => {}
        }
    }
    if !plan.pools.is_empty() {
        let planned = plan.effective_host_id();
        match host.host_id.as_deref() {
            Some(id) if id.eq_ignore_ascii_case(&planned) => {}
            other => refuse(
                "networking.hostId".into(),
                format!(
                    "is {}, but the pools are made under {planned}: ZFS would refuse to import them at boot",
                    other.map_or("unset".to_string(), |id| format!("{id:?}"))
                ),
            ),
        }
        if !host.supported_filesystems.iter().any(|f| f == "zfs") {
            refuse("boot.supportedFilesystems".into(), "has no zfs: the initrd cannot import the pools".into());
        }
    }
    let configured: BTreeSet<&str> = host.initrd_modules.iter().map(String::as_str).collect();
    let missing: Vec<&str> =
        plan.initrd_kernel_modules.iter().map(String::as_str).filter(|m| !configured.contains(m)).collect();
    if !missing.is_empty() {
        refuse(
            "boot.initrd.availableKernelModules".into(),
            format!(
                "lacks {}, which the disks' controllers need: the initrd would not find the disks",
                missing.join(", ")
            ),
        );
    }
    boot_loader(host, booted_with_uefi, &mut refuse);
    found
}

/// The boot loader the configuration installs against the firmware the machine booted with.
fn boot_loader(host: &HostConfig, booted_with_uefi: Option<bool>, refuse: &mut impl FnMut(String, String)) {
    let grub = host.grub.enable && !host.systemd_boot;
    let grub_devices: Vec<&String> =
        host.grub.devices.iter().chain(host.grub.mirrored_boots.iter().flat_map(|b| &b.devices)).collect();
    let bios_grub = grub && grub_devices.iter().any(|d| *d != "nodev");
    let efi_grub = grub && host.grub.efi_support;
    if !host.systemd_boot && !grub {
        refuse("boot.loader".into(), "neither GRUB nor systemd-boot is enabled: nothing would boot".into());
        return;
    }
    match booted_with_uefi {
        Some(false) if host.systemd_boot => refuse(
            "boot.loader.systemd-boot.enable".into(),
            "this machine booted with legacy BIOS, and systemd-boot starts only from UEFI".into(),
        ),
        Some(false) if !bios_grub => refuse(
            "boot.loader.grub.devices".into(),
            "this machine booted with legacy BIOS, but GRUB goes on no disk (devices = nodev): only an EFI \
             loader would be installed"
                .into(),
        ),
        Some(true) if grub && !efi_grub => refuse(
            "boot.loader.grub.efiSupport".into(),
            "this machine booted with UEFI, but GRUB is installed without EFI support: only a BIOS loader".into(),
        ),
        _ => {}
    }
}
