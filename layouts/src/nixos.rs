//! The NixOS module that describes a plan's layout to the installed system: file systems, swap, LUKS
//! devices, ZFS support with a stable host id, and a boot loader that keeps every ESP bootable.
//!
//! The module takes `{ config, lib, pkgs, ... }`. The host name and host id are `lib.mkDefault`, so that
//! a flake can override them; the GRUB settings apply unless the flake enables systemd-boot. Everything
//! else is plain data, computed from the plan alone: `nix-dabei nixos-module PLAN` prints the same module
//! before the install that the install writes.

use std::fmt::Write;

use crate::model::{Content, Plan};
use crate::nodes::mount::normal;

/// How the installed system finds a partition: by its GPT partition UUID, which nix-dabei sets.
pub(crate) fn partition_path(plan: &Plan, disk: &str, partition: &str) -> String {
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
    pub mountpoint: String,
    pub device: String,
    pub fs_type: String,
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
    /// A pool member is inside a LUKS container.
    pub pool_inside_luks: bool,
    /// Kernel modules the initrd loads (device-mapper targets of LVM volumes).
    pub initrd_kernel_modules: std::collections::BTreeSet<String>,
    /// An LVM thin pool needs thin-provisioning-tools at boot.
    pub lvm_thin: bool,
    /// `mdadm.conf` lines of the RAID arrays.
    pub md_arrays: Vec<String>,
    /// The filesystem UUIDs of the btrfs of several devices that boot degraded.
    pub btrfs_degraded: Vec<String>,
}

impl ModuleParts {
    /// Adds a content's part, through its node type; `device` is how the installed system finds it.
    pub(crate) fn content(&mut self, content: &Content, device: &str) {
        content.node().nixos(self, device);
    }
}

/// One place GRUB's files go: a boot partition's mountpoint and the disks whose boot sectors point at it.
#[derive(Debug)]
struct BootPath {
    /// `boot.loader.grub.mirroredBoots.*.path`.
    path: String,
    /// The ESP's mountpoint, when it is not `path` itself (`/boot/efi`, `/efi`).
    efi_mountpoint: Option<String>,
    /// Disks that get GRUB's BIOS boot code, by the plan's stable path.
    bios_disks: Vec<String>,
}

/// Where the boot loader goes: one entry for every ESP (each disk of a mirror boots alone), and the
/// disks with a BIOS boot partition attached to the ESP on the same disk, or to `/boot`.
fn boot_paths(plan: &Plan) -> Vec<BootPath> {
    let mut paths: Vec<BootPath> = Vec::new();
    let mut loose_bios_disks = Vec::new();
    for disk in plan.disks.values() {
        let has_bios_boot = disk.boots_bios();
        let mut placed = false;
        for part in disk.partitions.values() {
            let (true, Some(Content::Filesystem(fs))) = (part.is_esp(), &part.content) else { continue };
            let Some(mountpoint) = fs.mountpoint.as_deref().map(normal) else { continue };
            let (path, efi_mountpoint) = match mountpoint.as_str() {
                "/efi" | "/boot/efi" => ("/boot".to_string(), Some(mountpoint.clone())),
                _ => (mountpoint.clone(), None),
            };
            let bios_disks = if has_bios_boot && !placed { vec![disk.device.clone()] } else { vec![] };
            placed |= has_bios_boot;
            paths.push(BootPath { path, efi_mountpoint, bios_disks });
        }
        if has_bios_boot && !placed {
            loose_bios_disks.push(disk.device.clone());
        }
    }
    if !loose_bios_disks.is_empty() {
        match paths.iter_mut().find(|p| p.path == "/boot") {
            Some(boot) => boot.bios_disks.extend(loose_bios_disks),
            None => paths.push(BootPath { path: "/boot".into(), efi_mountpoint: None, bios_disks: loose_bios_disks }),
        }
    }
    paths.sort_by(|a, b| a.path.cmp(&b.path));
    paths
}

/// What the node types contribute for the whole plan, file systems sorted by mountpoint, and the devices
/// of the ESPs.
pub(crate) fn parts(plan: &Plan) -> (ModuleParts, Vec<String>) {
    let mut found = ModuleParts::default();
    let mut esp_devices = Vec::new();
    for (disk_name, disk) in &plan.disks {
        for (part_name, part) in &disk.partitions {
            let device = partition_path(plan, disk_name, part_name);
            if let Some(content) = &part.content {
                found.content(content, &device);
            }
            if part.is_esp() {
                esp_devices.push(device);
            }
        }
    }
    for (pool_name, pool) in &plan.pools {
        pool.nixos(&mut found, pool_name);
    }
    for (name, raid) in &plan.raids {
        let uuid = crate::nodes::mdadm::md_uuid(&plan.filesystem_uuid(&format!("md\0{name}")));
        raid.nixos(&mut found, name, &uuid);
    }
    for (name, group) in &plan.volume_groups {
        group.nixos(&mut found, name);
    }
    for (key, nodev) in &plan.nodev {
        nodev.nixos(&mut found, key);
    }
    for (name, filesystem) in &plan.bcachefs_filesystems {
        filesystem.nixos(&mut found, plan, name);
    }
    mount_btrfs_of_several_devices_by_uuid(plan, &mut found);
    found.file_systems.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
    (found, esp_devices)
}

/// Mount options that let the system boot without this device: for the ESPs when there are several
/// (each disk of a mirror boots alone) and for swap in a layout of several disks, so that a mirror boots
/// with a disk missing. The short timeout keeps
/// `local-fs.target` from waiting 90 s for the missing disk.
const MAY_BE_MISSING: [&str; 2] = ["nofail", "x-systemd.device-timeout=5s"];

/// The NixOS module for a plan, as Nix source.
///
/// The layout decides where the boot loader goes, and the host's configuration decides which one: GRUB
/// (NixOS's default) goes on every ESP through `mirroredBoots` and, for BIOS, into every disk's boot
/// sector; when the configuration enables systemd-boot instead, it is installed on the first ESP and
/// copied to the others after every install.
pub fn module(plan: &Plan) -> String {
    let (found, esp_devices) = parts(plan);
    let several_disks = plan.disks.len() > 1;
    let boot_paths = boot_paths(plan);
    let efi = plan.boot.is_none_or(|b| b.uefi());

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# The disk layout of {}, written by nix-dabei from its plan. Import it from the host's configuration.",
        plan.hostname
    );
    let _ = writeln!(out, "{{ config, lib, pkgs, ... }}:");
    let _ = writeln!(out, "{{");
    let _ = writeln!(out, "  networking.hostName = lib.mkDefault {};", nix_string(&plan.hostname));
    if !plan.pools.is_empty() {
        let _ = writeln!(out, "  # The pools were created under this id; ZFS refuses pools last used by another.");
        let _ = writeln!(out, "  networking.hostId = lib.mkDefault {};", nix_string(&plan.effective_host_id()));
        let _ = writeln!(out, "  boot.supportedFilesystems = [ \"zfs\" ];");
        if !found.pool_inside_luks {
            // nixos/modules/tasks/filesystems/zfs.nix imports with `zpool import -d <devNodes>`: the
            // partition UUIDs nix-dabei sets are the stable names. Pools on /dev/mapper devices keep the
            // default (/dev/disk/by-id, which has dm-uuid-* links).
            let _ = writeln!(out, "  boot.zfs.devNodes = \"/dev/disk/by-partuuid\";");
        }
        if found.native_encryption {
            let _ = writeln!(out, "  # Ask for the pool's passphrase at boot.");
            let _ = writeln!(out, "  boot.zfs.requestEncryptionCredentials = true;");
        }
    }
    let mut modules = plan.initrd_kernel_modules.clone();
    if let Some(unlock) = &plan.remote_unlock {
        modules.extend(unlock.network_kernel_modules.iter().cloned());
    }
    modules.sort();
    modules.dedup();
    if !modules.is_empty() {
        let _ = writeln!(out, "  # The drivers of the disks' controllers (and network cards for remote unlock).");
        let _ = writeln!(out, "  boot.initrd.availableKernelModules = {};", nix_list(&modules));
    }
    if !found.md_arrays.is_empty() {
        // nixos/modules/tasks/swraid.nix: mdadm and the RAID modules in the initrd, which assembles the
        // arrays named here under their names. It warns on every build (and mdmon crashes) where the
        // file has neither MAILADDR nor PROGRAM: the monitor's reports go to root.
        let _ = writeln!(out, "  boot.swraid.enable = true;");
        let mut conf = found.md_arrays.clone();
        conf.push("MAILADDR root".to_string());
        let _ = writeln!(out, "  boot.swraid.mdadmConf = {};", nix_string(&conf.join("\n")));
    }
    if !plan.volume_groups.is_empty() {
        // nixos/modules/tasks/lvm.nix: the systemd initrd activates LVM only when asked; thin pools need
        // thin-provisioning-tools (services.lvm.boot.thin).
        let _ = writeln!(out, "  boot.initrd.services.lvm.enable = true;");
        let modules: Vec<String> = found.initrd_kernel_modules.iter().cloned().collect();
        let _ = writeln!(out, "  boot.initrd.kernelModules = {};", nix_list(&modules));
        if found.lvm_thin {
            let _ = writeln!(out, "  services.lvm.boot.thin.enable = true;");
        }
    }
    zfs_imports_after_their_containers(&mut out, plan, &found);
    for uuid in &found.btrfs_degraded {
        btrfs_degraded_boot(&mut out, uuid);
    }
    for luks in &found.luks {
        let _ = writeln!(out, "  boot.initrd.luks.devices.{} = {{", nix_string(&luks.name));
        let _ = writeln!(out, "    device = {};", nix_string(&luks.device));
        let _ = writeln!(out, "    allowDiscards = {};", luks.allow_discards);
        if let Some(key_file) = &luks.key_file {
            let _ = writeln!(out, "    keyFile = {};", nix_string(key_file));
        }
        if several_disks {
            // systemd's initrd goes on without a missing member; ZFS imports the pool degraded.
            let _ = writeln!(out, "    crypttabExtraOpts = [ \"nofail\" ];");
        }
        let _ = writeln!(out, "  }};");
    }
    for fs in &found.file_systems {
        let _ = writeln!(out, "  fileSystems.{} = {{", nix_string(&fs.mountpoint));
        let _ = writeln!(out, "    device = {};", nix_string(&fs.device));
        let _ = writeln!(out, "    fsType = {};", nix_string(&fs.fs_type));
        let mut options = fs.options.clone();
        let is_esp = esp_devices.contains(&fs.device);
        if is_esp && esp_devices.len() > 1 {
            options.extend(MAY_BE_MISSING.iter().map(|o| o.to_string()));
        }
        if !options.is_empty() {
            let _ = writeln!(out, "    options = {};", nix_list(&options));
        }
        if is_esp {
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
            if several_disks {
                let options: Vec<String> = MAY_BE_MISSING.iter().map(|o| o.to_string()).collect();
                fields.push(format!("options = {};", nix_list(&options)));
            }
            let _ = writeln!(out, "    {{ {} }}", fields.join(" "));
        }
        let _ = writeln!(out, "  ];");
    }
    if let Some(resume) = found.swaps.iter().find(|s| s.resume) {
        let _ = writeln!(out, "  boot.resumeDevice = {};", nix_string(&resume.device));
    }
    if !boot_paths.is_empty() {
        boot_loader(&mut out, &boot_paths, efi);
    }
    if let Some(unlock) = &plan.remote_unlock {
        remote_unlock(&mut out, unlock);
    }
    let _ = writeln!(out, "}}");
    out
}

/// A btrfs over several devices is mounted by its filesystem UUID, which every member carries, rather
/// than by the device it was made on: udev's by-uuid link (and systemd's device unit for it, which
/// btrfs's udev rule holds back until every member was scanned) stands for the whole filesystem, where
/// the first member's path is gone with its disk.
fn mount_btrfs_of_several_devices_by_uuid(plan: &Plan, found: &mut ModuleParts) {
    for (disk_name, disk) in &plan.disks {
        for (part_name, part) in &disk.partitions {
            let Some(content) = &part.content else { continue };
            let Content::Btrfs(btrfs) = content.innermost() else { continue };
            let owner = format!("{disk_name}/{part_name}");
            if plan.btrfs_members(&owner).is_empty() {
                continue;
            }
            let device = if let Content::Luks(luks) = content {
                format!("/dev/mapper/{}", luks.name)
            } else {
                partition_path(plan, disk_name, part_name)
            };
            let uuid = plan.filesystem_uuid(&owner);
            let by_uuid = format!("/dev/disk/by-uuid/{uuid}");
            for fs in found.file_systems.iter_mut().filter(|fs| fs.fs_type == "btrfs" && fs.device == device) {
                fs.device = by_uuid.clone();
                if btrfs.degraded_boot {
                    fs.options.push("degraded".to_string());
                }
            }
            if btrfs.degraded_boot {
                found.btrfs_degraded.push(uuid);
            }
        }
    }
}

/// How long the initrd waits for every member of a btrfs that may boot degraded.
const BTRFS_MEMBERS_WAIT_SECONDS: u32 = 30;

/// A btrfs that boots with a member missing (`degraded_boot`). systemd's 64-btrfs.rules holds every member
/// back from systemd (SYSTEMD_READY=0) until `btrfs ready` says all of them were seen, so the mount waits
/// for a device that never comes and the boot ends in the emergency shell. This initrd service gives the
/// members [`BTRFS_MEMBERS_WAIT_SECONDS`] from the first one's arrival to be complete, then overrides
/// the rule for this filesystem (a rule under /run/udev/rules.d, read after 64-btrfs.rules) and has udev
/// tell systemd again; the mount's `degraded` option lets btrfs mount without the missing member. A
/// complete filesystem is never marked early, so it never mounts degraded by a race.
fn btrfs_degraded_boot(out: &mut String, uuid: &str) {
    let short: String = uuid.chars().take(8).collect();
    let link = format!("/dev/disk/by-uuid/{uuid}");
    let _ = writeln!(out, "  # Boots with a member of btrfs {short} missing, after waiting for it.");
    let _ = writeln!(out, "  boot.initrd.systemd.services.\"nix-dabei-btrfs-degraded-{short}\" = {{");
    let _ = writeln!(out, "    description = \"Let btrfs {short} mount degraded when a member is missing\";");
    let _ = writeln!(out, "    wantedBy = [ \"initrd.target\" ];");
    let _ = writeln!(out, "    after = [ \"systemd-udevd.service\" \"systemd-udev-trigger.service\" ];");
    let _ = writeln!(out, "    unitConfig.DefaultDependencies = false;");
    let _ = writeln!(out, "    serviceConfig.Type = \"oneshot\";");
    let _ = writeln!(out, "    serviceConfig.TimeoutStartSec = \"infinity\";");
    let _ = writeln!(out, "    script = ''");
    let _ = writeln!(
        out,
        "      ready() {{ [ -e {link} ] && ! udevadm info --query=property {link} | grep -q '^SYSTEMD_READY=0$'; }}"
    );
    // The wait starts once a member is there: containers open only when their passphrase is typed.
    let _ = writeln!(out, "      until [ -e {link} ]; do sleep 1; done");
    let _ = writeln!(out, "      for i in $(seq {BTRFS_MEMBERS_WAIT_SECONDS}); do ready && exit 0; sleep 1; done");
    let _ = writeln!(out, "      echo \"nix-dabei: btrfs {uuid} is missing a member: mounting it degraded\" >&2");
    let _ = writeln!(out, "      mkdir -p /run/udev/rules.d");
    let rule = format!("ENV{{ID_FS_UUID}}==\"{uuid}\", ENV{{SYSTEMD_READY}}=\"1\"");
    let _ = writeln!(out, "      echo '{rule}' > /run/udev/rules.d/99-nix-dabei-btrfs-{short}.rules");
    let _ = writeln!(out, "      udevadm control --reload");
    let _ = writeln!(out, "      udevadm trigger --action=change --property-match=ID_FS_UUID={uuid}");
    let _ = writeln!(out, "    '';");
    let _ = writeln!(out, "  }};");
}

/// The mount points NixOS mounts in the initrd (nixos/lib/utils.nix, `pathsNeededForBoot`): a ZFS pool
/// holding one of them is a root pool, imported in the initrd.
const NEEDED_FOR_BOOT: [&str; 9] =
    ["/", "/nix", "/nix/store", "/var", "/var/log", "/var/lib", "/var/lib/nixos", "/etc", "/usr"];

/// A systemd unit name's instance part for `name` (systemd's unit_name_escape): `/` becomes `-`, and
/// every byte that is not a letter, a digit, `:`, `_` or a `.` after the first becomes `\xNN`.
pub fn systemd_escape(name: &str) -> String {
    let mut out = String::new();
    for (index, byte) in name.bytes().enumerate() {
        match byte {
            b'/' => out.push('-'),
            b'.' if index > 0 => out.push('.'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b':' | b'_' => out.push(byte as char),
            other => {
                let _ = write!(out, "\\x{other:02x}");
            }
        }
    }
    out
}

/// Orders the initrd's import of each root pool whose members are LUKS containers after the
/// containers' unlock. nixpkgs' zfs.nix (nixos/modules/tasks/filesystems/zfs.nix, `createImportService`
/// for the initrd's root pools) starts the import once udev settled and polls about 60 s for the pool's
/// devices before one last import: a passphrase typed later, as remote unlock over SSH takes, left the
/// pool unimported and the boot in the emergency shell (nixpkgs issue 250003 gives this ordering as the
/// remedy; `cryptsetup.target` is not enough where the members are `nofail`). `after` waits for a
/// missing disk's unit to give up without requiring it, so a degraded pool still imports.
fn zfs_imports_after_their_containers(out: &mut String, plan: &Plan, found: &ModuleParts) {
    let mut containers: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (_, content) in plan.contents() {
        if let Content::Luks(luks) = content {
            if let Content::Zfs(member) = &*luks.content {
                let unit = format!("systemd-cryptsetup@{}.service", systemd_escape(&luks.name));
                containers.entry(member.pool.as_str()).or_default().push(unit);
            }
        }
    }
    let root_pools: std::collections::BTreeSet<&str> = found
        .file_systems
        .iter()
        .filter(|fs| fs.fs_type == "zfs" && NEEDED_FOR_BOOT.contains(&fs.mountpoint.as_str()))
        .filter_map(|fs| fs.device.split('/').next())
        .collect();
    for (pool, units) in containers.into_iter().filter(|(pool, _)| root_pools.contains(pool)) {
        let _ = writeln!(out, "  # Imported once every member's LUKS container is open (or its disk given up on).");
        let service = format!("zfs-import-{pool}");
        let _ = writeln!(out, "  boot.initrd.systemd.services.{} = {{", nix_string(&service));
        let _ = writeln!(out, "    after = {};", nix_list(&units));
        let _ = writeln!(out, "    wants = {};", nix_list(&units));
        let _ = writeln!(out, "  }};");
    }
}

/// GRUB on every boot path unless the configuration chose systemd-boot, which then gets its other ESPs
/// kept in sync.
fn boot_loader(out: &mut String, paths: &[BootPath], efi: bool) {
    // systemd-boot.nix sets `grub.enable = mkDefault false` when it is enabled: the layout's GRUB
    // settings apply only without it, so neither choice collides with the other.
    let _ = writeln!(out, "  boot.loader.grub = lib.mkIf (!config.boot.loader.systemd-boot.enable) {{");
    if efi {
        let _ = writeln!(out, "    efiSupport = lib.mkDefault true;");
        // grub.nix asserts that efiInstallAsRemovable and canTouchEfiVariables are not both set.
        let _ =
            writeln!(out, "    efiInstallAsRemovable = lib.mkDefault (!config.boot.loader.efi.canTouchEfiVariables);");
    }
    // A definition of normal priority: grub.nix adds its own entry for `grub.devices` to the list
    // rather than replacing this one.
    let _ = writeln!(out, "    mirroredBoots = [");
    for boot in paths {
        let devices = if boot.bios_disks.is_empty() { vec!["nodev".to_string()] } else { boot.bios_disks.clone() };
        let mut fields =
            vec![format!("path = {};", nix_string(&boot.path)), format!("devices = {};", nix_list(&devices))];
        if let Some(efi) = &boot.efi_mountpoint {
            fields.push(format!("efiSysMountPoint = {};", nix_string(efi)));
        }
        let _ = writeln!(out, "      {{ {} }}", fields.join(" "));
    }
    let _ = writeln!(out, "    ];");
    let _ = writeln!(out, "  }};");
    let others: Vec<&BootPath> = paths.iter().skip(1).filter(|p| p.efi_mountpoint.is_none()).collect();
    if efi && !others.is_empty() && paths[0].efi_mountpoint.is_none() {
        let first = &paths[0].path;
        let _ =
            writeln!(out, "  # systemd-boot installs on {first} only: copy it to the other ESPs after each install,");
        let _ = writeln!(out, "  # each only where it is mounted (a missing disk's is an empty directory on /).");
        let _ = writeln!(
            out,
            "  boot.loader.systemd-boot.extraInstallCommands = lib.mkIf config.boot.loader.systemd-boot.enable ''"
        );
        for other in others {
            let (from, to) = (shell_word(first), shell_word(&other.path));
            let _ = writeln!(out, "    if ${{pkgs.util-linux}}/bin/mountpoint -q {to}; then");
            let _ = writeln!(
                out,
                "      ${{pkgs.rsync}}/bin/rsync -a --delete --exclude=/loader/random-seed {from}/ {to}/"
            );
            let _ = writeln!(out, "    else");
            let message =
                format!("nix-dabei: \"{to}\" is not mounted (is its disk missing?): its boot loader is not updated");
            let _ = writeln!(out, "      echo \"{message}\" >&2");
            let _ = writeln!(out, "    fi");
        }
        let _ = writeln!(out, "  '';");
    }
    if paths.len() > 1 {
        missing_esps(out, paths);
    }
}

/// A mirror's ESPs are `nofail`: when a disk is gone, its ESP's mount point is an empty directory on the
/// root filesystem. GRUB's install (install-grub.sh in nixos/modules/system/boot/loader/grub/grub.nix runs
/// install-grub.pl for every `mirroredBoots` entry under `set -e`) would write the boot files there and
/// then fail in grub-install, breaking every nixos-rebuild until the disk is replaced. At boot, each ESP
/// mount point left unmounted gets an ESP that is mounted bound onto it, with a message, so that
/// installing the boot loader keeps working (it installs into that ESP twice).
fn missing_esps(out: &mut String, paths: &[BootPath]) {
    let esps: Vec<String> = paths.iter().map(|p| shell_word(p.efi_mountpoint.as_deref().unwrap_or(&p.path))).collect();
    let list = esps.join(" ");
    let _ = writeln!(out, "  # Each ESP that did not mount (its disk is missing) gets a mounted one bound onto it.");
    let _ = writeln!(out, "  systemd.services.nix-dabei-missing-esps = {{");
    let _ = writeln!(out, "    description = \"Stand in a mounted ESP for each missing one\";");
    let _ = writeln!(out, "    wantedBy = [ \"multi-user.target\" ];");
    let _ = writeln!(out, "    after = [ \"local-fs.target\" ];");
    let _ = writeln!(out, "    serviceConfig.Type = \"oneshot\";");
    let _ = writeln!(out, "    script = ''");
    let _ = writeln!(out, "      mounted=");
    let _ = writeln!(out, "      for esp in {list}; do");
    let _ = writeln!(out, "        if ${{pkgs.util-linux}}/bin/mountpoint -q \"$esp\"; then mounted=$esp; break; fi");
    let _ = writeln!(out, "      done");
    let _ = writeln!(out, "      if [ -z \"$mounted\" ]; then echo \"nix-dabei: no ESP is mounted\" >&2; exit 0; fi");
    let _ = writeln!(out, "      for esp in {list}; do");
    let _ = writeln!(out, "        if ! ${{pkgs.util-linux}}/bin/mountpoint -q \"$esp\"; then");
    let message = "nix-dabei: $esp is not mounted (is its disk missing?): $mounted is bound there until the disk is \
                   replaced (then unmount it)";
    let _ = writeln!(out, "          echo \"{message}\" >&2");
    let _ = writeln!(out, "          mkdir -p \"$esp\"");
    let _ = writeln!(out, "          ${{pkgs.util-linux}}/bin/mount --bind \"$mounted\" \"$esp\"");
    let _ = writeln!(out, "        fi");
    let _ = writeln!(out, "      done");
    let _ = writeln!(out, "    '';");
    let _ = writeln!(out, "  }};");
}

/// A mountpoint as one word for the shell inside a Nix indented string: single-quoted, with the
/// characters Nix's `''` strings treat specially escaped (`''` and `${`).
fn shell_word(path: &str) -> String {
    let quoted = format!("'{}'", path.replace('\'', r"'\''"));
    quoted.replace("''", "'''").replace("${", "''${")
}

/// SSH in the installed system's initrd, to type the passphrase on a machine without a console.
fn remote_unlock(out: &mut String, unlock: &crate::boot::RemoteUnlock) {
    let _ = writeln!(out, "  # Unlock over SSH at boot: log in and run `systemd-tty-ask-password-agent` (systemd");
    let _ = writeln!(out, "  # initrd) or `cryptsetup-askpass` / `zfs load-key -a` (scripted initrd).");
    let _ = writeln!(out, "  boot.kernelParams = [ \"ip=dhcp\" ];");
    let _ = writeln!(out, "  boot.initrd.network = {{");
    let _ = writeln!(out, "    enable = true;");
    let _ = writeln!(out, "    ssh = {{");
    let _ = writeln!(out, "      enable = true;");
    let _ = writeln!(out, "      port = {};", unlock.port);
    let _ = writeln!(out, "      authorizedKeys = {};", nix_list(&unlock.authorized_keys));
    let _ =
        writeln!(out, "      # Generated by nix-dabei during the install; nixos-install copies it into the initrd.");
    let _ = writeln!(out, "      hostKeys = [ {} ];", nix_string(crate::boot::INITRD_HOST_KEY));
    let _ = writeln!(out, "    }};");
    let _ = writeln!(out, "  }};");
}
