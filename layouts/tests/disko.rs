//! disko interop: disko's own examples (evaluated to JSON, in ../shared/disko-examples), and trickier
//! forms of our own. Supported examples import, plan and are snapshotted; unsupported ones are refused
//! with the attribute path at fault; export then import gives the same plan, also through nix-instantiate.

use std::path::{Path, PathBuf};
use std::process::Command;

use layouts::{disko, CompileOptions, Content, Plan, Size};
use serde_json::{json, Value};

/// disko's examples live in the shared folder beside the repository (NIX_DABEI_DISKO_EXAMPLES overrides).
fn examples() -> PathBuf {
    if let Some(dir) = std::env::var_os("NIX_DABEI_DISKO_EXAMPLES") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared/disko-examples"))
        .find(|dir| dir.is_dir())
        .expect("shared/disko-examples beside the repository")
}

fn example(name: &str) -> Value {
    let path = examples().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("json")
}

/// Sizes and host id, as `import-disko --offline-size 64G` fills them in.
fn with_facts(mut plan: Plan) -> Plan {
    for disk in plan.disks.values_mut() {
        disk.size = Some(64 << 30);
    }
    if plan.host_id.is_none() {
        plan.host_id = Some(plan.effective_host_id());
    }
    plan
}

fn imported(value: &Value) -> Plan {
    with_facts(disko::import(value).unwrap_or_else(|e| panic!("import: {e}")).plan)
}

const SUPPORTED: &[&str] = &[
    "btrfs-subvolumes",
    "gpt-bios-compat",
    "legacy-table",
    "luks-interactive-login",
    "luks-lvm",
    "mdadm",
    "multi-device-no-deps",
    "simple-efi",
    "swap",
    "zfs-encrypted-root",
    "zfs",
];

#[test]
#[cfg_attr(no_disko_examples, ignore = "needs ../shared/disko-examples beside the checkout (README)")]
fn supported_examples_import_and_plan() {
    for name in SUPPORTED {
        let plan = imported(&example(name));
        let steps = plan.compile(&CompileOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        insta::assert_snapshot!(format!("{name}-plan"), plan.to_toml());
        insta::assert_snapshot!(format!("{name}-steps"), steps.render());
    }
}

#[test]
#[cfg_attr(no_disko_examples, ignore = "needs ../shared/disko-examples beside the checkout (README)")]
fn unsupported_examples_are_refused_at_their_path() {
    let hybrid = serde_json::json!({ "disko": { "devices": { "disk": { "main": {
        "type": "disk",
        "device": "/dev/sda",
        "content": { "type": "gpt", "efiGptPartitionFirst": false, "partitions": {} }
    } } } } });
    let error = disko::import(&hybrid).expect_err("a hybrid MBR").to_string();
    let expected = "disko.devices.disk.main.content.efiGptPartitionFirst: hybrid MBRs are not supported";
    assert!(error.lines().next().is_some_and(|l| l.starts_with(expected)), "{error}");
    // Its types are supported, but nothing is mounted at "/": it prepares disks, and cannot install.
    let mut plan = imported(&example("multi-device-no-deps"));
    plan.compile(&CompileOptions::default()).expect("a plan of data disks");
    plan.flake = Some("github:me/machines#data".into());
    let error = plan.validate().expect_err("no root").to_string();
    assert!(error.contains("nothing is mounted at \"/\", and the plan installs a flake"), "{error}");
}

#[test]
#[cfg_attr(no_disko_examples, ignore = "needs ../shared/disko-examples beside the checkout (README)")]
fn disko_defaults_are_applied() {
    let plan = imported(&example("swap"));
    let disk = &plan.disks["main"];
    let order: Vec<&str> = disk.partitions.keys().map(String::as_str).collect();
    assert_eq!(order, ["ESP", "encryptedSwap", "root", "plainSwap"], "priority 9001 for 100% goes last, then names");
    assert_eq!(disk.partitions["root"].size, Size::AllBut(1 << 30));
    assert_eq!(disk.partitions["plainSwap"].kind.as_deref(), Some("swap"), "swap content defaults to 8200");
    assert_eq!(disk.partitions["root"].kind.as_deref(), Some("linux"));
    let steps = plan.compile(&CompileOptions::default()).expect("compiles");
    let table = steps.steps.iter().find_map(|s| match &s.operation {
        layouts::Operation::PartitionTable(table) => Some(table.partitions.clone()),
        _ => None,
    });
    let table = table.expect("a table");
    assert_eq!(table[3].extent.sectors() * 512, 1 << 30, "the last partition gets the 1G the root leaves");
    assert_eq!(table[2].name, "disk-main-root", "disko's label");

    let bios = imported(&example("gpt-bios-compat"));
    let boot = &bios.disks["main"].partitions["boot"];
    assert_eq!(boot.kind.as_deref(), Some("bios-boot"));
    assert_eq!(boot.attributes, [0]);
    assert_eq!(bios.disks["main"].partitions.keys().next().map(String::as_str), Some("boot"), "EF02 has priority 100");

    let luks = imported(&example("luks-interactive-login"));
    match &luks.disks["main"].partitions["luks"].content {
        Some(Content::Luks(l)) => {
            assert_eq!(l.passphrase_file.as_deref(), Some("/tmp/secret.key"));
            assert_eq!(l.key, "prompt");
            assert!(l.allow_discards);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
#[cfg_attr(no_disko_examples, ignore = "needs ../shared/disko-examples beside the checkout (README)")]
fn hooks_are_reported_not_dropped() {
    let result = disko::import(&example("zfs")).expect("imports");
    assert!(
        result.warnings.iter().any(|w| w.starts_with("disko.devices.zpool.zroot.postCreateHook: not carried over")),
        "{:?}",
        result.warnings
    );
}

fn nix_eval(file: &Path) -> Value {
    let output = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(file)
        .output()
        .expect("nix-instantiate (scripts/setup installs it)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("json")
}

fn round_trip(plan: &Plan, name: &str) {
    let text = disko::export(plan).unwrap_or_else(|e| panic!("{name}: export: {e}"));
    let dir = std::env::temp_dir().join(format!("nix-dabei-disko-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join(format!("{name}.nix"));
    std::fs::write(&file, &text).expect("write");
    let evaluated = nix_eval(&file);
    let back = imported(&evaluated);
    let mut expected = plan.clone();
    for disk in expected.disks.values_mut() {
        // A partition type the content implies comes back written out.
        for partition in disk.partitions.values_mut() {
            partition.kind = Some(partition.effective_type());
        }
        disk.identity = Default::default();
        disk.physical_sector_size = None;
        disk.logical_sector_size = 512;
        disk.size = Some(64 << 30);
    }
    for partition in expected.raids.values_mut().flat_map(|raid| raid.partitions.values_mut()) {
        partition.kind = Some(partition.effective_type());
    }
    // A bcachefs's UUID is written out, so that disko's configuration names the same filesystem.
    let uuids: Vec<String> = plan.bcachefs_filesystems.iter().map(|(name, fs)| fs.effective_uuid(plan, name)).collect();
    for (filesystem, uuid) in expected.bcachefs_filesystems.values_mut().zip(uuids) {
        filesystem.uuid = Some(uuid);
    }
    assert_eq!(back, expected, "{name}: export, evaluate, import changed the plan:\n{text}");
}

#[test]
#[cfg_attr(no_disko_examples, ignore = "needs ../shared/disko-examples beside the checkout (README)")]
fn export_then_import_gives_the_same_plan() {
    for name in SUPPORTED {
        round_trip(&imported(&example(name)), name);
    }
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("example-plans")).expect("example plans")
    {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let plan = Plan::from_toml(&std::fs::read_to_string(&path).expect("read")).expect("an example plan");
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let mut plan = with_facts(plan);
        // disko has no place for the flake; the rest must come back.
        plan.flake = None;
        round_trip(&plan, &format!("example-{name}"));
    }
    use layouts::presets::{build, DiskFacts, Encryption, PresetKind, PresetOptions};
    for (kind, encryption) in [
        (PresetKind::Mirror, Encryption::ZfsNative),
        (PresetKind::Single, Encryption::Luks),
        (PresetKind::Ext4, Encryption::None),
    ] {
        let count = if kind == PresetKind::Mirror { 2 } else { 1 };
        let mut options = PresetOptions::new(
            kind,
            (0..count).map(|i| DiskFacts::offline(format!("/dev/vd{}", ["a", "b"][i]), 64 << 30)).collect(),
        );
        options.encryption = encryption;
        options.swap = Some(1 << 30);
        let plan = build(&options).expect("preset");
        round_trip(&plan, &format!("preset-{kind:?}-{encryption:?}"));
    }
}

#[test]
fn trickier_forms() {
    let long = "a-partition-name-that-is-much-too-long-for-gpt";
    let config = json!({
        "disk": {
            "my disk": {
                "type": "disk",
                "device": "/dev/sda",
                "content": {
                    "type": "gpt",
                    "partitions": {
                        "z last": { "size": "100%", "content": { "type": "zfs", "pool": "tank" } },
                        "a first": {
                            "priority": 1, "start": "1M", "end": "+512M", "type": "EF00",
                            "content": { "type": "filesystem", "format": "vfat", "mountpoint": "/boot" }
                        },
                        "middle": {
                            "end": "-8G",
                            "content": {
                                "type": "filesystem", "format": "xfs", "mountpoint": "/srv",
                                "extraArgs": ["-L", "srv", "-m", "crc=1"]
                            }
                        },
                        "tail": {
                            "priority": 9000, "size": "4G", "content": { "type": "swap", "extraArgs": ["-L", "swap"] }
                        },
                        (long): { "size": "1G" }
                    }
                }
            },
            "second": {
                "type": "disk",
                "device": "/dev/sdb",
                "content": {
                    "type": "gpt",
                    "partitions": { "zfs": { "size": "100%", "content": { "type": "zfs", "pool": "tank" } } }
                }
            }
        },
        "zpool": {
            "tank": {
                "type": "zpool",
                "mode": { "type": "topology", "vdev": [ { "mode": "mirror", "members": ["my disk", "second"] } ] },
                "rootFsOptions": { "mountpoint": "none" },
                "datasets": {
                    "root/home/alice": { "type": "zfs_fs", "mountpoint": "/home/alice" },
                    "root": { "type": "zfs_fs", "mountpoint": "/" }
                }
            }
        }
    });
    let result = disko::import(&config).expect("imports");
    let plan = with_facts(result.plan.clone());
    let disk = &plan.disks["my disk"];
    let order: Vec<&str> = disk.partitions.keys().map(String::as_str).collect();
    assert_eq!(order, ["a first", long, "middle", "tail", "z last"]);
    assert_eq!(disk.partitions["a first"].size, Size::Bytes(512 << 20));
    assert_eq!(disk.partitions["middle"].size, Size::AllBut(8 << 30));
    let label = disk.partitions[long].label.clone().expect("a shortened label");
    assert_eq!(label.chars().count(), 36);
    assert!(result.warnings.iter().any(|w| w.contains("longer than GPT allows")), "{:?}", result.warnings);
    assert!(result.warnings.iter().any(|w| w.contains("parent dataset \"root/home\" added")), "{:?}", result.warnings);
    match &disk.partitions["middle"].content {
        Some(Content::Filesystem(fs)) => {
            assert_eq!(fs.label.as_deref(), Some("srv"));
            assert_eq!(fs.mkfs_options, ["-m", "crc=1"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(plan.pools["tank"].vdevs[0].members, ["my disk/z last", "second/zfs"]);
    plan.compile(&CompileOptions::default()).expect("plans");
    round_trip(&plan, "tricky");

    let bad = json!({ "disk": { "d": { "type": "disk", "device": "/dev/sda", "content": { "type": "gpt", "partitions": {
        "p": { "size": "50%", "content": { "type": "filesystem", "format": "ntfs", "mountpoint": "/" } },
        "q": { "start": "10000K", "size": "1G" },
        "r": { "size": "1G", "hybrid": { "mbrPartitionType": "0x0c" } }
    } } } }, "nodev": { "/proc": { "fsType": "proc" } } });
    let error = disko::import(&bad).expect_err("refused").to_string();
    for expected in [
        "nodev.\"/proc\".fsType: \"proc\" is not a filesystem without a device nix-dabei mounts (tmpfs, ramfs)",
        "disk.d.content.partitions.p.size: \"50%\" is not a size",
        "disk.d.content.partitions.q.start: \"10000K\": a start is",
        "disk.d.content.partitions.r.hybrid: is not supported by nix-dabei",
    ] {
        assert!(error.contains(expected), "missing {expected:?} in:\n{error}");
    }
}

#[test]
fn luks_format_arguments_keep_the_label_and_drop_key_derivation_tuning() {
    let config = |args: Value| {
        serde_json::json!({ "disk": { "main": {
            "type": "disk",
            "device": "/dev/sda",
            "content": { "type": "gpt", "partitions": { "crypt": {
                "size": "100%",
                "content": { "type": "luks", "name": "crypted", "extraFormatArgs": args,
                    "content": { "type": "filesystem", "format": "ext4", "mountpoint": "/" } }
            } } }
        } } })
    };
    let imported = disko::import(&config(serde_json::json!(["--iter-time 1", "--label", "vault"]))).expect("imports");
    assert!(imported.warnings.iter().any(|w| w.contains("--iter-time 1 not carried over")), "{:?}", imported.warnings);
    let toml = imported.plan.to_toml();
    assert!(toml.contains("label = \"vault\""), "{toml}");
    let error = disko::import(&config(serde_json::json!(["--sector-size 4096"]))).expect_err("refused").to_string();
    assert!(error.contains("content.extraFormatArgs: only a label"), "{error}");
}

#[test]
fn a_pool_on_a_whole_disk_gets_one_partition_covering_it() {
    let config = serde_json::json!({
        "disk": {
            "main": { "type": "disk", "device": "/dev/vdb", "content": { "type": "gpt", "partitions": {
                "ESP": { "size": "500M", "type": "EF00",
                    "content": { "type": "filesystem", "format": "vfat", "mountpoint": "/boot" } },
                "root": { "size": "100%", "content": { "type": "filesystem", "format": "ext4", "mountpoint": "/" } }
            } } },
            "data": { "type": "disk", "device": "/dev/vdc", "content": { "type": "zfs", "pool": "tank" } }
        },
        "zpool": { "tank": { "type": "zpool", "datasets": { "srv": { "type": "zfs_fs", "mountpoint": "/srv" } } } }
    });
    let imported = disko::import(&config).expect("imports");
    assert!(imported.warnings.iter().any(|w| w.contains("disk.data.content: the pool's member is a partition")));
    let plan = with_facts(imported.plan);
    let partition = &plan.disks["data"].partitions["zfs"];
    assert_eq!(partition.size, layouts::Size::Rest);
    assert_eq!(partition.effective_type(), "zfs");
    assert_eq!(plan.pool_members("tank"), [("data", "zfs")]);
    let steps = plan.compile(&CompileOptions::default()).expect("compiles");
    let create = steps.steps.iter().find(|s| s.id == "zpool-create:tank").expect("the pool is created");
    assert!(create.devices.iter().any(|d| d == "/dev/vdc1"), "{:?}", create.devices);
}

#[test]
fn kept_partitions_are_exported_to_the_sector_and_marked() {
    let plan = Plan::from_toml(
        r#"
hostname = "alongside"
[disks.disk0]
device = "/dev/disk/by-id/virtio-old"
size = 268435456
[disks.disk0.partitions.p1]
number = 1
start = 17408
size = "8M"
type = "microsoft-basic-data"
label = "Basic data"
uuid = "3863fa68-41ae-4638-9a13-a85bf9ba0493"
keep = true
[disks.disk0.partitions.swap]
size = "64M"
content.swap = { uuid = "5d0c4f2e-8a43-4b8e-9f0e-2b7d3c9a1e55", label = "old-swap" }
[disks.disk0.partitions.esp]
size = "64M"
content.filesystem = { format = "vfat", uuid = "759A-7434" }
[disks.disk0.partitions.root]
size = "rest"
content.filesystem = { format = "xfs", mountpoint = "/", uuid = "0b7cd0b2-3c0e-4f39-9d25-3a1e0e6f3c11" }
"#,
    )
    .expect("a plan keeping a partition");
    let text = disko::export(&plan).expect("exports");
    // sgdisk (which disko runs) reads a number with "s" as sectors, and disko then aligns to 1 sector.
    assert!(text.contains("start = \"34s\";") && text.contains("end = \"16417s\";"), "{text}");
    assert!(text.contains("type = \"0700\";"), "{text}");
    assert!(text.contains("# kept by nix-dabei: disko's _create would destroy it"), "{text}");

    // Evaluated and imported again: the same places, the same UUIDs; only the keeping is gone.
    let dir = std::env::temp_dir().join(format!("nix-dabei-disko-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("kept.nix");
    std::fs::write(&file, &text).expect("write");
    let result = disko::import(&nix_eval(&file)).expect("imports");
    assert!(result.warnings.iter().any(|w| w.contains("512-byte sectors")), "{:?}", result.warnings);
    let (before, after) = (&plan.disks["disk0"].partitions, &result.plan.disks["disk0"].partitions);
    let p1 = &after["p1"];
    assert_eq!((p1.start, p1.size, p1.keep), (Some(Size::Bytes(17408)), Size::Bytes(8 << 20), false));
    assert_eq!((&p1.uuid, &p1.label), (&before["p1"].uuid, &before["p1"].label));
    for name in ["swap", "esp", "root"] {
        assert_eq!(after[name].content, before[name].content, "{name}");
    }
    // disko's mkfs and mkswap get the flags that make them so.
    for flags in ["[ \"-U\" \"5d0c4f2e", "[ \"-i\" \"759A7434\" ]", "[ \"-m\" \"uuid=0b7cd0b2"] {
        assert!(text.contains(flags), "{flags}: {text}");
    }

    // disko numbers partitions in their order: numbers that do not follow it cannot be written.
    let mut out_of_order = plan.clone();
    out_of_order.disks["disk0"].partitions["p1"].number = Some(2);
    let error = disko::export(&out_of_order).expect_err("numbers out of order").to_string();
    assert!(error.contains("disks.disk0.partitions.p1.number") && error.contains("disko numbers"), "{error}");
}
