//! Snapshots of the steps of every preset and option, and checks of what a careful user expects of them.

use layouts::presets::{build, DiskFacts, Encryption, PresetError, PresetKind, PresetOptions};
use layouts::{CompileOptions, Identity, Operation, Plan};

fn disk(index: usize, sector: u32) -> DiskFacts {
    DiskFacts {
        device: format!("/dev/disk/by-id/virtio-disk{index}"),
        size: Some(32 << 30),
        logical_sector_size: sector,
        physical_sector_size: Some(sector),
        identity: Identity { serial: Some(format!("disk{index}")), wwn: None, model: Some("QEMU".into()) },
    }
}

fn preset(kind: PresetKind, encryption: Encryption, swap: Option<u64>) -> PresetOptions {
    let count = if kind == PresetKind::Mirror { 2 } else { 1 };
    let mut options = PresetOptions::new(kind, (0..count).map(|i| disk(i, 512)).collect());
    options.encryption = encryption;
    options.swap = swap;
    options.hostname = "web1".into();
    options
}

fn rendered(options: &PresetOptions) -> String {
    let plan = build(options).expect("preset builds");
    let steps = plan.compile(&CompileOptions::default()).expect("compiles");
    let mut out = steps.render();
    out.push_str("-- teardown --\n");
    for step in &steps.teardown {
        out.push_str(&format!("{}: {}\n", step.id, step.operation));
    }
    out
}

#[test]
fn every_preset_and_option() {
    let kinds = [("single", PresetKind::Single), ("mirror", PresetKind::Mirror), ("ext4", PresetKind::Ext4)];
    let encryptions = [("plain", Encryption::None), ("native", Encryption::ZfsNative), ("luks", Encryption::Luks)];
    for (kind_name, kind) in kinds {
        for (enc_name, encryption) in encryptions {
            if kind == PresetKind::Ext4 && encryption == Encryption::ZfsNative {
                continue;
            }
            for (swap_name, swap) in [("", None), ("-swap", Some(4u64 << 30))] {
                let name = format!("{kind_name}-{enc_name}{swap_name}");
                insta::assert_snapshot!(name, rendered(&preset(kind, encryption, swap)));
            }
        }
    }
}

#[test]
fn mirror_on_4k_disks_as_json() {
    let mut options = PresetOptions::new(PresetKind::Mirror, vec![disk(0, 4096), disk(1, 4096), disk(2, 4096)]);
    options.encryption = Encryption::ZfsNative;
    let plan = build(&options).expect("builds");
    let steps = plan.compile(&CompileOptions::default()).expect("compiles");
    insta::assert_json_snapshot!("mirror-3-disks-4k-native", steps.steps);
}

#[test]
fn mirror_gives_every_disk_a_bootable_esp() {
    let plan = build(&preset(PresetKind::Mirror, Encryption::None, None)).expect("builds");
    let steps = plan.compile(&CompileOptions::default()).expect("compiles");
    let esp_mounts: Vec<&str> = steps
        .steps
        .iter()
        .filter_map(|s| match &s.operation {
            Operation::Mount(mount) if mount.fs_type == "vfat" => Some(mount.target.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(esp_mounts, ["/mnt/boot", "/mnt/boot-1"]);
}

#[test]
fn native_encryption_is_on_the_pools_root_dataset() {
    let plan = build(&preset(PresetKind::Single, Encryption::ZfsNative, None)).expect("builds");
    let pool = &plan.pools["rpool"];
    assert_eq!(pool.root_fs_options.get("encryption").map(String::as_str), Some("aes-256-gcm"));
    assert_eq!(pool.root_fs_options.get("keyformat").map(String::as_str), Some("passphrase"));
    assert_eq!(pool.root_fs_options.get("keylocation").map(String::as_str), Some("prompt"));
}

#[test]
fn ashift_follows_the_physical_sector_size() {
    let mut options = preset(PresetKind::Single, Encryption::None, None);
    options.disks[0].physical_sector_size = Some(8192);
    assert_eq!(build(&options).expect("builds").pools["rpool"].options["ashift"], "13");
    options.disks[0].physical_sector_size = None;
    assert_eq!(build(&options).expect("builds").pools["rpool"].options["ashift"], "12");
    options.disks[0].physical_sector_size = Some(512);
    assert_eq!(build(&options).expect("builds").pools["rpool"].options["ashift"], "12");
}

#[test]
fn presets_refuse_what_they_cannot_build() {
    let one = PresetOptions::new(PresetKind::Mirror, vec![disk(0, 512)]);
    assert_eq!(build(&one), Err(PresetError::DiskCount { preset: "mirror", needed: "two or more disks", given: 1 }));
    let two = PresetOptions::new(PresetKind::Single, vec![disk(0, 512), disk(1, 512)]);
    assert!(matches!(build(&two), Err(PresetError::DiskCount { preset: "single", .. })));
    let mut ext4 = PresetOptions::new(PresetKind::Ext4, vec![disk(0, 512)]);
    ext4.encryption = Encryption::ZfsNative;
    assert_eq!(build(&ext4), Err(PresetError::NativeEncryptionWithoutZfs));
}

#[test]
fn a_plan_survives_toml_and_json() {
    for options in
        [preset(PresetKind::Mirror, Encryption::Luks, Some(1 << 30)), preset(PresetKind::Ext4, Encryption::None, None)]
    {
        let plan = build(&options).expect("builds");
        assert_eq!(Plan::from_toml(&plan.to_toml()).expect("toml reads back"), plan);
        assert_eq!(Plan::from_json(&plan.to_json()).expect("json reads back"), plan);
    }
}

#[test]
fn compiling_is_deterministic() {
    let plan = build(&preset(PresetKind::Mirror, Encryption::ZfsNative, None)).expect("builds");
    let first = plan.compile(&CompileOptions::default()).expect("compiles");
    let second = plan.compile(&CompileOptions::default()).expect("compiles");
    assert_eq!(first, second);
}

#[test]
fn every_step_waits_only_for_earlier_steps() {
    let plan = build(&preset(PresetKind::Mirror, Encryption::Luks, Some(1 << 30))).expect("builds");
    let steps = plan.compile(&CompileOptions::default()).expect("compiles");
    for (index, step) in steps.steps.iter().enumerate() {
        for dep in &step.after {
            let position = steps.steps.iter().position(|s| &s.id == dep).expect("dependency exists");
            assert!(position < index, "{} runs before its dependency {dep}", step.id);
        }
    }
    let teardown: Vec<&str> = steps.teardown.iter().map(|s| s.id.as_str()).collect();
    let first_close = teardown.iter().position(|id| id.starts_with("luks-close")).expect("closes");
    let export = teardown.iter().position(|id| id.starts_with("zpool-export")).expect("exports");
    let last_unmount = teardown.iter().rposition(|id| id.starts_with("unmount")).expect("unmounts");
    assert!(last_unmount < export && export < first_close, "{teardown:?}");
}

#[test]
fn a_passphrase_is_needed_exactly_when_a_key_is_typed() {
    for kind in [PresetKind::Single, PresetKind::Mirror, PresetKind::Ext4] {
        for encryption in [Encryption::None, Encryption::ZfsNative, Encryption::Luks] {
            let Ok(mut plan) = build(&preset(kind, encryption, None)) else { continue };
            let typed = encryption != Encryption::None;
            assert_eq!(plan.needs_passphrase(), typed, "{kind:?} {encryption:?}");
            // A key file in place of the typed passphrase: nothing to ask.
            for pool in plan.pools.values_mut() {
                if pool.root_fs_options.contains_key("encryption") {
                    pool.root_fs_options.insert("keylocation".into(), "file:///etc/zfs.key".into());
                }
            }
            for part in plan.disks.values_mut().flat_map(|d| d.partitions.values_mut()) {
                if let Some(layouts::Content::Luks(luks)) = &mut part.content {
                    luks.key = "file:///etc/luks.key".into();
                }
            }
            assert!(!plan.needs_passphrase(), "{kind:?} {encryption:?} with key files");
        }
    }
}

#[test]
fn blkid_signatures_follow_the_content() {
    let plan = build(&preset(PresetKind::Mirror, Encryption::Luks, Some(1 << 30))).expect("preset");
    let disk = &plan.disks["disk0"];
    let signatures: Vec<Option<String>> =
        disk.partitions.values().map(|p| p.content.as_ref().and_then(layouts::Content::blkid_signature)).collect();
    assert_eq!(
        signatures,
        // The presets' swap gets a fresh random key at every boot: the install makes nothing on it.
        [Some("TYPE=vfat".to_string()), None, Some("TYPE=crypto_LUKS".to_string())],
        "{disk:#?}"
    );
}

#[test]
fn swap_in_the_clear_is_turned_on_only_after_the_install() {
    for kind in [PresetKind::Single, PresetKind::Mirror, PresetKind::Ext4] {
        for encryption in [Encryption::None, Encryption::ZfsNative, Encryption::Luks] {
            let mut options = preset(kind, encryption, Some(1 << 30));
            options.flake = Some("github:me/machines#web1".into());
            let Ok(plan) = build(&options) else { continue };
            let steps = plan.compile(&CompileOptions::default()).expect("compiles").steps;
            let position = |id: &str| steps.iter().position(|s| s.id == id);
            let install = position("nixos-install").expect("an install step");
            for (index, step) in steps.iter().enumerate() {
                if let Operation::Swapon(swapon) = &step.operation {
                    let clear = !swapon.device.starts_with("/dev/mapper/");
                    assert!(!clear || index > install, "{kind:?} {encryption:?}: {} before the install", step.id);
                }
            }
        }
    }
}
