//! The NixOS module, evaluated with nixpkgs' lib (`lib.evalModules`, stand-ins for the options it sets;
//! tests/nix/evaluate.nix) and compared with disko's `_config` for the same layout: disko's configurations
//! boot in disko's own VM tests, so every difference between the two is either listed in [`INTENDED`]
//! with its reason or a bug. Also: the boot loader follows the host's choice (GRUB or systemd-boot),
//! BIOS layouts put GRUB into every disk's boot sector, a degraded mirror boots, remote unlock.
//!
//! Needs nix-instantiate and ../shared/nix-sources (nixpkgs' lib and disko's source) beside the checkout.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use layouts::flake_check::{check, HostConfig, HostFileSystem};
use layouts::presets::{build, DiskFacts, Encryption, PresetKind, PresetOptions};
use layouts::{disko, BootMode, Plan, RemoteUnlock};
use serde_json::Value;

/// Where nix-dabei's module differs from disko's `_config` for the same layout on purpose. The comparison
/// below allows exactly these and nothing else.
const INTENDED: &[(&str, &str)] = &[
    (
        "partition device names",
        "nix-dabei names partitions by their GPT partition UUID (derived from the plan), disko by partition \
         label; both are stable, and the test maps each to the plan's partition",
    ),
    (
        "nofail on ESPs and swap",
        "with several ESPs each gets nofail and x-systemd.device-timeout=5s, and so does swap in a layout of \
         several disks, so that a mirror boots with a disk missing instead of waiting 90 s and failing \
         local-fs.target",
    ),
    ("nofail on LUKS members", "likewise crypttabExtraOpts = [ \"nofail\" ] for LUKS devices of several disks"),
    ("mount option defaults", "disko writes \"defaults\" where no option is given; NixOS mounts the same way"),
    ("neededForBoot on ESPs", "false: the initrd never needs an ESP"),
    (
        "boot loader",
        "disko sets only grub.devices (for BIOS boot partitions); nix-dabei puts GRUB on every ESP with \
         mirroredBoots (BIOS disks included), or keeps the other ESPs in sync when the host uses systemd-boot",
    ),
    (
        "btrfs of several devices by UUID",
        "disko mounts a btrfs spanning several devices by the device it was made on, gone with that disk; \
         nix-dabei by the filesystem UUID every member carries (the test maps it to that device)",
    ),
    (
        "ZFS settings",
        "disko leaves networking.hostId, boot.zfs.* and supportedFilesystems to the configuration; nix-dabei \
         created the pools under that host id and sets it",
    ),
];

fn run_nix(args: &[&str]) -> String {
    let output =
        Command::new("nix-instantiate").args(args).output().expect("nix-instantiate is installed (scripts/setup)");
    assert!(output.status.success(), "nix-instantiate {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// nixpkgs' lib and disko's source, unpacked once from ../shared/nix-sources.
fn nix_sources() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shared = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|dir| dir.join("shared/nix-sources"))
            .find(|dir| dir.is_dir())
            .expect("shared/nix-sources beside the repository (nixpkgs' lib and disko's source)");
        let dir = scratch().join("sources");
        std::fs::create_dir_all(&dir).expect("dir");
        for tarball in ["nixpkgs-lib.tar.gz", "disko.tar.gz"] {
            let status =
                Command::new("tar").arg("-xzf").arg(shared.join(tarball)).arg("-C").arg(&dir).status().expect("tar");
            assert!(status.success(), "cannot unpack {tarball}");
        }
        // Written once: tests run in parallel, and nix must never read it half written.
        std::fs::write(dir.join("select.nix"), layouts::flake_check::SELECT).expect("write");
        dir
    })
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nix-dabei-module-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// What the host's configuration chose for itself.
#[derive(Clone, Copy, Default)]
struct Host {
    systemd_boot: bool,
    can_touch_efi_variables: bool,
    /// A module of the host's own (Nix source).
    module: Option<&'static str>,
}

/// Evaluates the plan's module (and disko's `_config` of its export) to what NixOS would get.
fn evaluate(plan: &Plan, name: &str, host: Host, with_disko: bool) -> Value {
    let dir = scratch();
    let sources = nix_sources();
    let module = dir.join(format!("{name}.nix"));
    std::fs::write(&module, layouts::nixos::module(plan)).expect("write");
    let (lib, disko_src) = (sources.join("nixpkgs-lib/lib"), sources.join("disko"));
    let mut args: Vec<String> = vec!["--eval".into(), "--strict".into(), "--json".into()];
    args.push(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nix/evaluate.nix").into());
    let select = sources.join("select.nix");
    for (arg, path) in [("lib", &lib), ("disko", &disko_src), ("module", &module), ("select", &select)] {
        args.extend(["--arg".into(), arg.into(), path.display().to_string()]);
    }
    if with_disko {
        let config = dir.join(format!("{name}-disko.nix"));
        std::fs::write(&config, disko::export(plan).expect("exports")).expect("write");
        args.extend(["--arg".into(), "diskoConfig".into(), config.display().to_string()]);
    }
    for (arg, value) in [("systemdBoot", host.systemd_boot), ("canTouchEfiVariables", host.can_touch_efi_variables)] {
        args.extend(["--arg".into(), arg.into(), value.to_string()]);
    }
    if let Some(source) = host.module {
        let file = dir.join(format!("{name}-host.nix"));
        std::fs::write(&file, source).expect("write");
        args.extend(["--arg".into(), "hostModule".into(), file.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    serde_json::from_str(&run_nix(&args)).expect("json")
}

/// A device as "disk/partition" when it is a partition of the plan, else as written (datasets, mappers).
fn partition_names(plan: &Plan, disko_names: &Value) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for (disk_name, disk) in &plan.disks {
        for part_name in disk.partitions.keys() {
            let key = format!("{disk_name}/{part_name}");
            names.insert(format!("/dev/disk/by-partuuid/{}", plan.partition_uuid(disk_name, part_name)), key.clone());
            if let Some(device) = disko_names[&key].as_str() {
                names.insert(device.to_string(), key);
            }
        }
    }
    for (array, raid) in &plan.raids {
        for (index, part_name) in raid.partitions.keys().enumerate() {
            let key = format!("{array}/{part_name}");
            names.insert(layouts::nodes::mdadm::array_partition_device(array, index as u32 + 1), key.clone());
            if let Some(device) = disko_names[&key].as_str() {
                names.insert(device.to_string(), key);
            }
        }
    }
    names
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// Compares the two sides, allowing only [`INTENDED`]; returns every other difference.
fn differences(plan: &Plan, evaluated: &Value) -> Vec<String> {
    let mut names = partition_names(plan, &evaluated["partitionDevices"]);
    // A btrfs of several devices, mounted by its UUID: disko names the device it was made on.
    for (disk_name, disk) in &plan.disks {
        for (part_name, part) in &disk.partitions {
            let owner = format!("{disk_name}/{part_name}");
            let Some(content) = &part.content else { continue };
            if !matches!(content.innermost(), layouts::Content::Btrfs(_)) || plan.btrfs_members(&owner).is_empty() {
                continue;
            }
            let made_on = match content {
                layouts::Content::Luks(luks) => format!("/dev/mapper/{}", luks.name),
                _ => owner.clone(),
            };
            names.insert(format!("/dev/disk/by-uuid/{}", plan.filesystem_uuid(&owner)), made_on);
        }
    }
    let device = |value: &Value| {
        let text = value.as_str().unwrap_or_default();
        names.get(text).cloned().unwrap_or_else(|| text.to_string())
    };
    let (ours, theirs) = (&evaluated["ours"], &evaluated["disko"]);
    let mut found = Vec::new();
    let object = |v: &Value| v.as_object().cloned().unwrap_or_default();

    let (our_fs, their_fs) = (object(&ours["fileSystems"]), object(&theirs["fileSystems"]));
    let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<BTreeSet<_>>();
    if keys(&our_fs) != keys(&their_fs) {
        found.push(format!("mountpoints: ours {:?}, disko {:?}", keys(&our_fs), keys(&their_fs)));
    }
    let plain = |options: &Value| -> BTreeSet<String> {
        strings(options)
            .into_iter()
            // disko adds X-mount.mkdir to bcachefs mounts; systemd makes a mountpoint that is missing anyway.
            .filter(|o| !["defaults", "nofail", "x-systemd.device-timeout=5s", "X-mount.mkdir"].contains(&o.as_str()))
            .collect()
    };
    for (mountpoint, fs) in &our_fs {
        let Some(other) = their_fs.get(mountpoint) else { continue };
        if device(&fs["device"]) != device(&other["device"]) {
            found.push(format!("{mountpoint}: device {} against {}", fs["device"], other["device"]));
        }
        if fs["fsType"] != other["fsType"] {
            found.push(format!("{mountpoint}: fsType {} against {}", fs["fsType"], other["fsType"]));
        }
        if plain(&fs["options"]) != plain(&other["options"]) {
            found.push(format!("{mountpoint}: options {} against {}", fs["options"], other["options"]));
        }
    }

    let swaps = |side: &Value| -> BTreeSet<(String, bool)> {
        side["swapDevices"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| (device(&s["device"]), s["randomEncryption"]["enable"] == true))
            .collect()
    };
    if swaps(ours) != swaps(theirs) {
        found.push(format!("swap: ours {:?}, disko {:?}", swaps(ours), swaps(theirs)));
    }

    let luks = |side: &Value| -> BTreeMap<String, (String, Value)> {
        object(&side["luks"])
            .into_iter()
            .map(|(name, l)| (name, (device(&l["device"]), l["allowDiscards"].clone())))
            .collect()
    };
    if luks(ours) != luks(theirs) {
        found.push(format!("LUKS: ours {:?}, disko {:?}", luks(ours), luks(theirs)));
    }

    // disko's GRUB devices (BIOS boot partitions) all get GRUB from nix-dabei too.
    let our_grub: BTreeSet<String> = ours["grub"]["mirroredBoots"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| strings(&b["devices"]))
        .filter(|d| d != "nodev")
        .collect();
    for disk in strings(&theirs["grub"]["devices"]) {
        if !our_grub.contains(&disk) {
            found.push(format!("disko installs GRUB on {disk}, nix-dabei does not"));
        }
    }
    found
}

fn preset(kind: PresetKind, encryption: Encryption, boot: BootMode, disks: usize) -> Plan {
    let facts = (0..disks).map(|i| DiskFacts::offline(format!("/dev/disk/by-id/nvme-disk{i}"), 64 << 30)).collect();
    let mut options = PresetOptions::new(kind, facts);
    options.encryption = encryption;
    options.swap = Some(1 << 30);
    options.boot = boot;
    options.initrd_kernel_modules = vec!["virtio_blk".into(), "virtio_pci".into()];
    build(&options).expect("preset")
}

fn presets() -> Vec<(String, Plan)> {
    let mut plans = Vec::new();
    for kind in [PresetKind::Single, PresetKind::Mirror, PresetKind::Ext4] {
        for encryption in [Encryption::None, Encryption::ZfsNative, Encryption::Luks] {
            if kind == PresetKind::Ext4 && encryption == Encryption::ZfsNative {
                continue;
            }
            for boot in [BootMode::Uefi, BootMode::Bios, BootMode::Both] {
                let disks = if kind == PresetKind::Mirror { 3 } else { 1 };
                let name = format!("{kind:?}-{encryption:?}-{boot:?}").to_lowercase();
                plans.push((name, preset(kind, encryption, boot, disks)));
            }
        }
    }
    plans
}

/// The example plans in layouts/example-plans, one per node type the presets do not use.
fn plan_examples() -> Vec<(String, Plan)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("example-plans");
    let mut plans = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("layouts/example-plans") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let plan = Plan::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        plans.push((format!("example-{name}"), plan));
    }
    assert!(plans.len() >= 2, "the example plans are found");
    plans
}

/// disko's examples that nix-dabei imports.
fn disko_examples() -> Vec<(String, Plan)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared/disko-examples"))
        .find(|dir| dir.is_dir())
        .expect("shared/disko-examples beside the repository");
    let mut plans = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        if let Ok(imported) = disko::import(&value) {
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            plans.push((format!("disko-{name}"), imported.plan));
        }
    }
    assert!(plans.len() >= 6, "the importable disko examples are found");
    plans
}

#[test]
#[cfg_attr(
    any(no_nix_sources, no_disko_examples),
    ignore = "needs ../shared/nix-sources and ../shared/disko-examples beside the checkout (README)"
)]
fn the_module_agrees_with_disko_for_every_preset_and_imported_example() {
    assert!(!INTENDED.is_empty());
    let mut failures = Vec::new();
    let cases: Vec<(String, Plan)> = presets().into_iter().chain(disko_examples()).chain(plan_examples()).collect();
    for (name, plan) in &cases {
        let evaluated = evaluate(plan, name, Host::default(), true);
        for difference in differences(plan, &evaluated) {
            failures.push(format!("{name}: {difference}"));
        }
        // ESPs when there are several, and the swaps of several disks, may be missing at boot.
        let ours = &evaluated["ours"];
        let several = plan.disks.len() > 1;
        // ESP filesystems of their own (a mirrored ESP is one filesystem on an array).
        let esp_filesystems = plan.disks.values().flat_map(|d| d.partitions.values());
        let several_esps = esp_filesystems
            .filter(|p| p.is_esp() && matches!(p.content, Some(layouts::Content::Filesystem(_))))
            .count()
            > 1;
        for fs in ours["fileSystems"].as_object().expect("fileSystems").values() {
            let esp = fs["fsType"] == "vfat";
            // The short device timeout comes only with the nofail nix-dabei adds (a plan may have its own).
            let nofail = strings(&fs["options"]).contains(&"x-systemd.device-timeout=5s".to_string());
            if esp && nofail != several_esps {
                failures.push(format!("{name}: ESP {} has nofail = {nofail}", fs["device"]));
            }
        }
        for swap in ours["swapDevices"].as_array().expect("swapDevices") {
            if strings(&swap["options"]).contains(&"x-systemd.device-timeout=5s".to_string()) != several {
                failures.push(format!("{name}: swap {} nofail", swap["device"]));
            }
        }
        // swraid.nix's warning on every build: mdadm.conf names neither MAILADDR nor PROGRAM.
        if ours["swraidWarns"] != false {
            failures.push(format!("{name}: NixOS warns that mdadm.conf has no MAILADDR or PROGRAM"));
        }
    }
    assert!(failures.is_empty(), "{} cases, differences:\n{}", cases.len(), failures.join("\n"));
}

#[test]
#[cfg_attr(
    any(no_nix_sources, no_disko_examples),
    ignore = "needs ../shared/nix-sources and ../shared/disko-examples beside the checkout (README)"
)]
fn zfs_pools_inside_luks_keep_the_default_device_nodes() {
    for (encryption, dev_nodes) in [
        (Encryption::None, Some("/dev/disk/by-partuuid")),
        (Encryption::ZfsNative, Some("/dev/disk/by-partuuid")),
        (Encryption::Luks, None),
    ] {
        let plan = preset(PresetKind::Mirror, encryption, BootMode::Uefi, 2);
        let ours = &evaluate(&plan, &format!("devnodes-{encryption:?}"), Host::default(), false)["ours"];
        assert_eq!(ours["zfs"]["devNodes"].as_str(), dev_nodes, "{encryption:?}");
        assert_eq!(ours["zfs"]["requestEncryptionCredentials"] == true, encryption == Encryption::ZfsNative);
        assert_eq!(ours["networking"]["hostId"], plan.effective_host_id());
    }
}

#[test]
#[cfg_attr(
    any(no_nix_sources, no_disko_examples),
    ignore = "needs ../shared/nix-sources and ../shared/disko-examples beside the checkout (README)"
)]
fn grub_goes_on_every_esp_and_into_every_bios_disk() {
    let mirroredboots = |plan: &Plan, host: Host, name: &str| -> Vec<(String, Vec<String>)> {
        let grub = evaluate(plan, name, host, false)["ours"]["grub"].clone();
        grub["mirroredBoots"]
            .as_array()
            .expect("mirroredBoots")
            .iter()
            .map(|b| (b["path"].as_str().expect("path").to_string(), strings(&b["devices"])))
            .collect()
    };
    let uefi = preset(PresetKind::Mirror, Encryption::None, BootMode::Uefi, 2);
    assert_eq!(
        mirroredboots(&uefi, Host::default(), "grub-uefi"),
        vec![("/boot".to_string(), vec!["nodev".to_string()]), ("/boot-1".to_string(), vec!["nodev".to_string()])]
    );
    for (boot, efi) in [(BootMode::Bios, false), (BootMode::Both, true)] {
        let plan = preset(PresetKind::Mirror, Encryption::None, boot, 2);
        assert_eq!(plan.disks["disk0"].partitions.keys().next().map(String::as_str), Some("bios"));
        let name = format!("grub-{boot:?}");
        assert_eq!(
            mirroredboots(&plan, Host::default(), &name),
            vec![
                ("/boot".to_string(), vec!["/dev/disk/by-id/nvme-disk0".to_string()]),
                ("/boot-1".to_string(), vec!["/dev/disk/by-id/nvme-disk1".to_string()])
            ],
            "{boot:?}: each disk boots by itself"
        );
        let grub = &evaluate(&plan, &name, Host::default(), false)["ours"]["grub"];
        assert_eq!(grub["efiSupport"] == true, efi, "{boot:?}");
    }
    // The host's own EFI variables choice wins, without tripping grub.nix's assertion.
    let grub = &evaluate(&uefi, "grub-nvram", Host { can_touch_efi_variables: true, ..Host::default() }, false)["ours"]
        ["grub"];
    assert_eq!(grub["efiInstallAsRemovable"], false);
    let grub = &evaluate(&uefi, "grub-removable", Host::default(), false)["ours"]["grub"];
    assert_eq!(grub["efiInstallAsRemovable"], true);
    // A host that sets grub.devices gets an entry from grub.nix (a definition of normal priority): the
    // layout's entries stay beside it rather than losing to it.
    let own = "{ boot.loader.grub.mirroredBoots = [ { path = \"/boot\"; devices = [ \"/dev/sda\" ]; } ]; }";
    let host = Host { module: Some(own), ..Host::default() };
    let paths: Vec<String> = mirroredboots(&uefi, host, "grub-host-devices").into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["/boot", "/boot-1", "/boot"], "every ESP keeps its GRUB");
}

#[test]
#[cfg_attr(
    any(no_nix_sources, no_disko_examples),
    ignore = "needs ../shared/nix-sources and ../shared/disko-examples beside the checkout (README)"
)]
fn systemd_boot_hosts_get_no_grub_and_every_esp_kept_in_sync() {
    let plan = preset(PresetKind::Mirror, Encryption::None, BootMode::Uefi, 3);
    let ours = &evaluate(&plan, "sdboot", Host { systemd_boot: true, ..Host::default() }, false)["ours"];
    assert_eq!(ours["grub"]["mirroredBoots"], serde_json::json!([]), "no GRUB settings collide with systemd-boot");
    assert!(ours["grub"].get("efiSupport").is_none());
    let commands = ours["systemdBoot"]["extraInstallCommands"].as_str().expect("commands");
    for other in ["'/boot-1'/", "'/boot-2'/"] {
        assert!(commands.contains(&format!("'/boot'/ {other}")), "{commands}");
    }
    let grub_host = &evaluate(&plan, "sdboot-off", Host::default(), false)["ours"];
    assert_eq!(grub_host["systemdBoot"]["extraInstallCommands"], "");
}

#[test]
#[cfg_attr(
    any(no_nix_sources, no_disko_examples),
    ignore = "needs ../shared/nix-sources and ../shared/disko-examples beside the checkout (README)"
)]
fn drivers_and_remote_unlock_reach_the_initrd() {
    let mut plan = preset(PresetKind::Single, Encryption::Luks, BootMode::Uefi, 1);
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop";
    plan.remote_unlock = Some(RemoteUnlock {
        authorized_keys: vec![key.into()],
        port: 2222,
        network_kernel_modules: vec!["virtio_net".into()],
    });
    plan.validate().expect("valid");
    let ours = &evaluate(&plan, "unlock", Host::default(), false)["ours"];
    assert_eq!(strings(&ours["availableKernelModules"]), ["virtio_blk", "virtio_net", "virtio_pci"]);
    assert_eq!(ours["network"]["enable"], true);
    assert_eq!(ours["network"]["ssh"]["port"], 2222);
    assert_eq!(strings(&ours["network"]["ssh"]["authorizedKeys"]), [key]);
    assert_eq!(strings(&ours["network"]["ssh"]["hostKeys"]), [layouts::boot::INITRD_HOST_KEY]);
    assert_eq!(strings(&ours["kernelParams"]), ["ip=dhcp"]);

    let mut clear = preset(PresetKind::Ext4, Encryption::None, BootMode::Uefi, 1);
    clear.remote_unlock = plan.remote_unlock.clone();
    let error = clear.validate().expect_err("nothing to unlock").to_string();
    assert!(error.contains("remote_unlock") && error.contains("nothing to unlock"), "{error}");
    let mut optioned = plan.clone();
    optioned.remote_unlock.as_mut().expect("unlock").authorized_keys = vec![format!("command=\"echo\" {key}")];
    let error = optioned.validate().expect_err("options").to_string();
    assert!(error.contains("remote_unlock.authorized_keys[0]"), "{error}");
}

#[test]
#[cfg_attr(
    any(no_nix_sources, no_disko_examples),
    ignore = "needs ../shared/nix-sources and ../shared/disko-examples beside the checkout (README)"
)]
fn bios_plans_need_a_bios_boot_partition() {
    let mut plan = preset(PresetKind::Single, Encryption::None, BootMode::Uefi, 1);
    plan.boot = Some(BootMode::Bios);
    let error = plan.validate().expect_err("no EF02").to_string();
    assert!(error.contains("boot") && error.contains("bios-boot"), "{error}");
    let mut plan = preset(PresetKind::Single, Encryption::None, BootMode::Bios, 1);
    plan.validate().expect("valid");
    // The type written as sgdisk's code or as the GUID is the same BIOS boot partition.
    for written in ["EF02", "21686148-6449-6E6F-744E-656564454649"] {
        let mut same = plan.clone();
        same.disks["main"].partitions["bios"].kind = Some(written.into());
        same.validate().unwrap_or_else(|e| panic!("{written}: {e}"));
    }
    plan.boot = Some(BootMode::Both);
    plan.disks["main"].partitions.shift_remove("esp");
    plan.disks["main"].partitions.insert("boot".into(), plan_partition_without_esp());
    let error = plan.validate().expect_err("no ESP").to_string();
    assert!(error.contains("EFI system partition"), "{error}");
}

fn plan_partition_without_esp() -> layouts::Partition {
    let mut partition =
        preset(PresetKind::Ext4, Encryption::None, BootMode::Uefi, 1).disks["main"].partitions["root"].clone();
    if let Some(layouts::Content::Filesystem(fs)) = &mut partition.content {
        fs.mountpoint = Some("/data".into());
    }
    partition
}

/// The configuration the module gives, as the flake check reads it.
fn host_config(plan: &Plan, name: &str, host: Host) -> HostConfig {
    serde_json::from_value(evaluate(plan, name, host, false)["selected"].clone()).expect("the check's fields")
}

#[test]
#[cfg_attr(
    any(no_nix_sources, no_disko_examples),
    ignore = "needs ../shared/nix-sources and ../shared/disko-examples beside the checkout (README)"
)]
fn the_flake_check_accepts_every_module_and_the_firmware_it_was_made_for() {
    // Layouts that can be installed: a disko example without "/" is refused by `plan` itself.
    let installable = presets().into_iter().chain(disko_examples()).filter(|(_, plan)| plan.validate().is_ok());
    for (name, plan) in installable {
        let host = host_config(&plan, &format!("check-{name}"), Host::default());
        let firmwares: &[Option<bool>] = match plan.boot {
            Some(BootMode::Uefi) => &[Some(true), None],
            Some(BootMode::Bios) => &[Some(false), None],
            Some(BootMode::Both) | None => &[Some(true), Some(false), None],
        };
        for firmware in firmwares {
            let found = check(&plan, &host, *firmware);
            assert!(found.is_empty(), "{name} ({firmware:?}): {found:?}");
        }
    }
}

#[test]
#[cfg_attr(
    any(no_nix_sources, no_disko_examples),
    ignore = "needs ../shared/nix-sources and ../shared/disko-examples beside the checkout (README)"
)]
fn the_flake_check_refuses_each_mismatch_naming_the_option() {
    let plan = preset(PresetKind::Mirror, Encryption::Luks, BootMode::Uefi, 2);
    let good = host_config(&plan, "mismatch", Host::default());
    assert!(check(&plan, &good, Some(true)).is_empty());
    let options = |host: &HostConfig, firmware: Option<bool>| -> Vec<String> {
        check(&plan, host, firmware).into_iter().map(|m| m.option).collect()
    };

    let mut host = good.clone();
    host.file_systems.remove("/");
    assert_eq!(options(&host, Some(true)), ["fileSystems.\"/\"", "fileSystems.\"/\""], "no / at all");
    let mut host = good.clone();
    host.file_systems.get_mut("/boot").expect("/boot").device = Some("/dev/sda1".into());
    assert_eq!(options(&host, Some(true)), ["fileSystems.\"/boot\".device"]);
    let mut host = good.clone();
    host.file_systems.get_mut("/home").expect("/home").fs_type = Some("ext4".into());
    assert_eq!(options(&host, Some(true)), ["fileSystems.\"/home\".fsType"]);
    let mut host = good.clone();
    let data =
        HostFileSystem { device: Some("/dev/disk/by-label/data".into()), fs_type: Some("xfs".into()), options: vec![] };
    host.file_systems.insert("/data".into(), data.clone());
    assert_eq!(options(&host, Some(true)), ["fileSystems.\"/data\""], "a mount the disks do not provide");
    host.file_systems.get_mut("/data").expect("/data").options = vec!["nofail".into()];
    assert!(options(&host, Some(true)).is_empty(), "an optional mount may stay");
    let mut host = good.clone();
    host.host_id = Some("deadbeef".into());
    assert_eq!(options(&host, Some(true)), ["networking.hostId"]);
    host.host_id = None;
    assert_eq!(options(&host, Some(true)), ["networking.hostId"]);
    let mut host = good.clone();
    host.supported_filesystems.clear();
    assert_eq!(options(&host, Some(true)), ["boot.supportedFilesystems"]);
    let mut host = good.clone();
    host.luks.remove("crypt1");
    assert_eq!(options(&host, Some(true)), ["boot.initrd.luks.devices.\"crypt1\""]);
    let mut host = good.clone();
    host.initrd_modules.retain(|m| m != "virtio_blk");
    assert_eq!(options(&host, Some(true)), ["boot.initrd.availableKernelModules"]);
    // Firmware: this UEFI layout's GRUB has devices = nodev, so a BIOS machine would not boot it.
    assert_eq!(options(&good, Some(false)), ["boot.loader.grub.devices"]);
    let systemd = host_config(&plan, "mismatch-sdboot", Host { systemd_boot: true, ..Host::default() });
    assert!(check(&plan, &systemd, Some(true)).is_empty(), "systemd-boot on UEFI is fine");
    assert_eq!(
        check(&plan, &systemd, Some(false)).into_iter().map(|m| m.option).collect::<Vec<_>>(),
        ["boot.loader.systemd-boot.enable"]
    );
    let mut host = good.clone();
    host.grub.efi_support = false;
    assert_eq!(options(&host, Some(true)), ["boot.loader.grub.efiSupport"]);
    host.grub.enable = false;
    assert_eq!(options(&host, Some(true)), ["boot.loader"]);
    // The same partition under disko's name is the same device.
    let mut host = good.clone();
    host.file_systems.get_mut("/boot").expect("/boot").device = Some("/dev/disk/by-partlabel/disk-disk0-esp".into());
    assert!(options(&host, Some(true)).is_empty());
}

#[test]
#[cfg_attr(
    any(no_nix_sources, no_disko_examples),
    ignore = "needs ../shared/nix-sources and ../shared/disko-examples beside the checkout (README)"
)]
fn strings_are_escaped_for_nix() {
    assert_eq!(layouts::nixos::nix_string("a\"b${c}\\"), "\"a\\\"b\\${c}\\\\\"");
}

/// A disk as `nix-dabei probe` reads it back, exported: disko's own `_create` (evaluated from disko's
/// source) puts each partition on the sectors where it is, with its partition UUID, and makes each
/// filesystem and swap with the UUID it has, so the configuration describes this machine's disk.
#[test]
#[cfg_attr(no_nix_sources, ignore = "needs ../shared/nix-sources beside the checkout (README)")]
fn disko_makes_a_read_back_disk_where_it_is_with_its_uuids() {
    let plan = Plan::from_toml(
        r#"
hostname = "probed"
[disks.disk0]
device = "/dev/vda"
size = 268435456
[disks.disk0.partitions.p1]
number = 1
start = 17408
size = "8M"
uuid = "3863fa68-41ae-4638-9a13-a85bf9ba0493"
keep = true
content.filesystem = { format = "ext4", uuid = "0b7cd0b2-3c0e-4f39-9d25-3a1e0e6f3c11" }
[disks.disk0.partitions.p2]
number = 2
start = "16M"
size = "34M"
type = "esp"
uuid = "a1f0c9de-5b7e-4d1c-8f2a-6e3b9c0d4f17"
keep = true
content.filesystem = { format = "vfat", uuid = "759A-7434" }
[disks.disk0.partitions.p3]
number = 3
start = "50M"
size = "16M"
type = "swap"
uuid = "c4e8a2b6-1d3f-4a5c-9e7b-0f2d4c6a8e13"
keep = true
content.swap = { uuid = "5d0c4f2e-8a43-4b8e-9f0e-2b7d3c9a1e55" }
"#,
    )
    .expect("a read-back plan");
    let dir = scratch();
    let config = dir.join("probed-disko.nix");
    std::fs::write(&config, disko::export(&plan).expect("exports")).expect("write");
    let sources = nix_sources();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../vm-tests/bench/disko-scripts.nix");
    let (lib, disko_src) = (sources.join("nixpkgs-lib/lib"), sources.join("disko"));
    let (lib, disko_src, config) = (lib.display().to_string(), disko_src.display().to_string(), config.display());
    let config = config.to_string();
    let json = run_nix(&[
        "--eval",
        "--strict",
        "--json",
        script,
        "--arg",
        "nixpkgsLib",
        &lib,
        "--arg",
        "disko",
        &disko_src,
        "--arg",
        "config",
        &config,
        "--argstr",
        "attr",
        "_create",
        "--arg",
        "weak",
        "false",
    ]);
    let create: String = serde_json::from_str(&json).expect("a script");
    let squeezed = create.replace("\\\n", " ").split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "--new=1:34s:16417s",
        "--partition-guid=\"1:3863fa68-41ae-4638-9a13-a85bf9ba0493\"",
        "--new=2:32768s:102399s",
        "--new=3:102400s:135167s",
        "--partition-guid=\"3:c4e8a2b6-1d3f-4a5c-9e7b-0f2d4c6a8e13\"",
        "mkfs.ext4 -U 0b7cd0b2-3c0e-4f39-9d25-3a1e0e6f3c11",
        "mkfs.vfat -i 759A7434",
        "mkswap -U 5d0c4f2e-8a43-4b8e-9f0e-2b7d3c9a1e55",
    ] {
        assert!(squeezed.contains(expected), "disko's _create lacks {expected:?}:\n{create}");
    }
}

/// ZFS on LUKS: the initrd imports the root pool only once every member's container is open, with and
/// without remote unlock (nixpkgs' import service otherwise gives up on devices after about 60 s, before
/// a passphrase typed over SSH arrives); a pool outside LUKS is left as nixpkgs has it.
#[test]
#[cfg_attr(
    any(no_nix_sources, no_disko_examples),
    ignore = "needs ../shared/nix-sources and ../shared/disko-examples beside the checkout (README)"
)]
fn zfs_on_luks_imports_only_after_every_member_is_unlocked() {
    let mut plan = preset(PresetKind::Mirror, Encryption::Luks, BootMode::Uefi, 2);
    for unlock in [false, true] {
        if unlock {
            plan.remote_unlock = Some(RemoteUnlock {
                authorized_keys: vec![
                    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me".into(),
                ],
                port: 22,
                network_kernel_modules: vec![],
            });
            plan.validate().expect("valid");
        }
        let ours = &evaluate(&plan, &format!("zfs-import-{unlock}"), Host::default(), false)["ours"];
        let import = &ours["initrdServices"]["zfs-import-rpool"];
        let units = ["systemd-cryptsetup@crypt0.service", "systemd-cryptsetup@crypt1.service"];
        assert_eq!(strings(&import["after"]), units, "remote unlock {unlock}: {import}");
        assert_eq!(strings(&import["wants"]), units, "remote unlock {unlock}: {import}");
    }
    let native = preset(PresetKind::Mirror, Encryption::ZfsNative, BootMode::Uefi, 2);
    let ours = &evaluate(&native, "zfs-import-native", Host::default(), false)["ours"];
    assert_eq!(ours["initrdServices"], serde_json::json!({}), "nothing to wait for outside LUKS");
    // The container's name as systemd-cryptsetup's unit has it.
    assert_eq!(layouts::nixos::systemd_escape("crypt-0.x"), "crypt\\x2d0.x");
    assert_eq!(layouts::nixos::systemd_escape(".a/b"), "\\x2ea-b");
}

/// A mirror's missing disk: systemd-boot's copy to each other ESP runs only where that ESP is mounted
/// (else it says so), and at boot each ESP that did not mount gets a mounted one bound onto it, so that
/// GRUB's install for every `mirroredBoots` path keeps working; one ESP needs neither.
#[test]
#[cfg_attr(
    any(no_nix_sources, no_disko_examples),
    ignore = "needs ../shared/nix-sources and ../shared/disko-examples beside the checkout (README)"
)]
fn a_missing_esp_breaks_neither_the_copy_nor_the_boot_loader_install() {
    let plan = preset(PresetKind::Mirror, Encryption::None, BootMode::Uefi, 2);
    let ours = &evaluate(&plan, "missing-esp-sdboot", Host { systemd_boot: true, ..Host::default() }, false)["ours"];
    let commands = ours["systemdBoot"]["extraInstallCommands"].as_str().expect("commands");
    let guard = commands.find("mountpoint -q '/boot-1'").expect(commands);
    let copy = commands.find("rsync").expect(commands);
    assert!(guard < copy && commands.contains("is not mounted"), "{commands}");
    for host in [Host::default(), Host { systemd_boot: true, ..Host::default() }] {
        let ours = &evaluate(&plan, "missing-esp", host, false)["ours"];
        let service = &ours["services"]["nix-dabei-missing-esps"];
        let script = service["script"].as_str().expect("a service for missing ESPs");
        assert!(script.contains("for esp in '/boot' '/boot-1'; do"), "{script}");
        assert!(script.contains("/bin/mount --bind \"$mounted\" \"$esp\""), "{script}");
        assert_eq!(strings(&service["wantedBy"]), ["multi-user.target"]);
    }
    let single = preset(PresetKind::Single, Encryption::None, BootMode::Uefi, 1);
    let ours = &evaluate(&single, "one-esp", Host::default(), false)["ours"];
    assert!(ours["services"].get("nix-dabei-missing-esps").is_none(), "{}", ours["services"]);
}

/// A btrfs across several devices is mounted by the UUID its mkfs step gives it (every member carries
/// it), not by the first member's path; with `degraded_boot` its mounts get `degraded` and the initrd a
/// service that lets the members that came mount once the wait for the rest is over.
#[test]
#[cfg_attr(
    any(no_nix_sources, no_disko_examples),
    ignore = "needs ../shared/nix-sources and ../shared/disko-examples beside the checkout (README)"
)]
fn btrfs_of_several_devices_is_mounted_by_uuid_and_boots_degraded_when_the_plan_says_so() {
    let text = include_str!("../example-plans/btrfs-raid1-on-luks.toml");
    let mut plan = Plan::from_toml(text).expect("example");
    let steps = plan.compile(&layouts::CompileOptions::default()).expect("compiles");
    let uuid = steps
        .steps
        .iter()
        .find_map(|s| match &s.operation {
            layouts::Operation::Mkfs(m) if m.format == layouts::Format::Btrfs => Some(m.blkid_uuid()),
            _ => None,
        })
        .expect("a btrfs mkfs step");
    let by_uuid = format!("/dev/disk/by-uuid/{uuid}");
    let ours = &evaluate(&plan, "btrfs-uuid", Host::default(), false)["ours"];
    for mountpoint in ["/", "/nix", "/home"] {
        assert_eq!(ours["fileSystems"][mountpoint]["device"], by_uuid.as_str(), "{mountpoint}");
        assert!(!strings(&ours["fileSystems"][mountpoint]["options"]).contains(&"degraded".to_string()));
    }
    assert_eq!(ours["initrdServices"], serde_json::json!({}), "no degraded boot unless the plan asks");

    let Some(layouts::Content::Luks(luks)) = plan.disks["disk0"].partitions["crypt"].content.as_mut() else {
        panic!("the example's first container")
    };
    let layouts::Content::Btrfs(btrfs) = luks.content.as_mut() else { panic!("its btrfs") };
    btrfs.degraded_boot = true;
    plan.validate().expect("a raid1 btrfs of two devices may boot degraded");
    let ours = &evaluate(&plan, "btrfs-degraded", Host::default(), false)["ours"];
    for mountpoint in ["/", "/nix", "/home"] {
        assert!(strings(&ours["fileSystems"][mountpoint]["options"]).contains(&"degraded".to_string()));
    }
    let short = &uuid[..8];
    let service = &ours["initrdServices"][format!("nix-dabei-btrfs-degraded-{short}")];
    let script = service["script"].as_str().expect("the degraded boot's initrd service");
    assert!(script.contains(&format!("until [ -e {by_uuid} ]")), "{script}");
    assert!(script.contains(&format!("ENV{{ID_FS_UUID}}==\"{uuid}\", ENV{{SYSTEMD_READY}}=\"1\"")), "{script}");
    assert_eq!(strings(&service["wantedBy"]), ["initrd.target"]);
}
