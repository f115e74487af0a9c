//! The NixOS module of every preset parses with nix-instantiate, and evaluates (with a stand-in for
//! `lib.mkDefault`) to exactly what the plan says.

use std::process::Command;

use layouts::presets::{build, DiskFacts, Encryption, PresetKind, PresetOptions};
use layouts::{CompileOptions, Operation};
use serde_json::Value;

fn nix(args: &[&str]) -> String {
    let output =
        Command::new("nix-instantiate").args(args).output().expect("nix-instantiate is installed (scripts/setup)");
    assert!(output.status.success(), "nix-instantiate {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn every_preset_module_parses_and_evaluates_to_the_plan() {
    let dir = std::env::temp_dir().join(format!("nix-dabei-modules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases = [
        (PresetKind::Single, Encryption::None),
        (PresetKind::Single, Encryption::ZfsNative),
        (PresetKind::Mirror, Encryption::Luks),
        (PresetKind::Mirror, Encryption::ZfsNative),
        (PresetKind::Ext4, Encryption::Luks),
        (PresetKind::Ext4, Encryption::None),
    ];
    for (index, (kind, encryption)) in cases.into_iter().enumerate() {
        let count = if kind == PresetKind::Mirror { 3 } else { 1 };
        let disks = (0..count).map(|i| DiskFacts::offline(format!("/dev/disk/by-id/nvme-disk{i}"), 64 << 30)).collect();
        let mut options = PresetOptions::new(kind, disks);
        options.encryption = encryption;
        options.swap = Some(1 << 30);
        options.hostname = format!("host{index}");
        let plan = build(&options).expect("preset");
        let module = layouts::nixos::module(&plan);
        let file = dir.join(format!("case{index}.nix"));
        std::fs::write(&file, &module).expect("write");
        let path = file.to_string_lossy().into_owned();
        nix(&["--parse", &path]);
        let json = nix(&[
            "--eval",
            "--strict",
            "--json",
            "-E",
            &format!("(import {path}) {{ lib = {{ mkDefault = x: x; }}; }}"),
        ]);
        let config: Value = serde_json::from_str(&json).expect("json");

        assert_eq!(config["networking"]["hostName"], format!("host{index}"));
        let steps = plan.compile(&CompileOptions::default()).expect("compiles");
        let mut planned: Vec<String> = steps
            .steps
            .iter()
            .filter_map(|s| match &s.operation {
                Operation::Mount(mount) => {
                    Some(mount.target.strip_prefix("/mnt").filter(|t| !t.is_empty()).unwrap_or("/").to_string())
                }
                _ => None,
            })
            .collect();
        planned.sort();
        let mut declared: Vec<String> =
            config["fileSystems"].as_object().expect("fileSystems").keys().cloned().collect();
        declared.sort();
        assert_eq!(declared, planned, "{module}");
        let esps = config["boot"]["loader"]["grub"]["mirroredBoots"].as_array().expect("grub mirroredBoots").len();
        assert_eq!(esps, count, "every ESP boots");
        assert_eq!(config["swapDevices"].as_array().map(Vec::len), Some(count));
        let luks = config["boot"]["initrd"]["luks"]["devices"].as_object().map_or(0, |d| d.len());
        assert_eq!(luks, if encryption == Encryption::Luks { count } else { 0 });
        if kind != PresetKind::Ext4 {
            assert_eq!(config["networking"]["hostId"], plan.effective_host_id());
            assert_eq!(
                config["boot"]["zfs"]["requestEncryptionCredentials"] == true,
                encryption == Encryption::ZfsNative
            );
            assert_eq!(config["fileSystems"]["/"]["device"], "rpool/root");
        } else {
            assert!(config["networking"]["hostId"].is_null());
        }
        for fs in config["fileSystems"].as_object().expect("fs").values() {
            let device = fs["device"].as_str().expect("device");
            assert!(
                device.starts_with("/dev/disk/by-partuuid/")
                    || device.starts_with("/dev/mapper/")
                    || device.starts_with("rpool/"),
                "{device}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn strings_are_escaped_for_nix() {
    assert_eq!(layouts::nixos::nix_string("a\"b${c}\\"), "\"a\\\"b\\${c}\\\\\"");
}
