//! The checks on the host of what a scenario's guest left in its share (`out/` and the plan), each named
//! by the manifests that use it. A file a check reads that the guest did not leave fails the check.

use std::fs;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use super::{Check, BYSTANDER, PASSPHRASE};

/// Every check a manifest may name.
pub const CHECKS: &[(&str, Check)] = &[
    ("harness", verify_harness),
    ("layout", verify_layout),
    ("single", verify_single),
    ("remote-unlock", verify_remote_unlock),
    ("probe-round-trip", verify_probe_round_trip),
    ("power-cuts", verify_power_cuts),
    ("resume", verify_resume),
    ("remote", verify_remote),
    ("built-there", verify_built_there),
    ("alongside", verify_alongside),
    ("grow", verify_grow),
    ("btrfs-tmpfs", verify_btrfs_tmpfs),
    ("lvm", verify_lvm),
    ("zfs-classes", verify_zfs_classes),
    ("mbr", verify_mbr),
    ("mdadm", verify_mdadm),
];

/// The check a manifest names.
pub fn by_name(name: &str) -> Option<Check> {
    CHECKS.iter().find(|(known, _)| *known == name).map(|(_, check)| *check)
}

/// For a scenario whose driver checks everything while the guest runs (kexec-ssh).
pub fn nothing_beyond_the_driver(_: &Path) -> Result<()> {
    Ok(())
}

pub fn read_json(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

pub fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The leaf devices of every vdev of a pool in `zpool status -j` output, by vdev type.
fn vdev_shape(status: &Value, pool: &str) -> Result<Vec<(String, usize)>> {
    let root = &status["pools"][pool]["vdevs"][pool];
    ensure!(root.is_object(), "pool {pool} is not in zpool status: {status}");
    let vdevs = root["vdevs"].as_object().context("no vdevs")?;
    Ok(vdevs
        .values()
        .map(|v| {
            let kind = v["vdev_type"].as_str().unwrap_or("?").to_string();
            let children = v["vdevs"].as_object().map_or(1, |c| c.len());
            (kind, children)
        })
        .collect())
}

/// The raw harness check: an encrypted ZFS mirror made by hand survives a reboot.
fn verify_harness(share: &Path) -> Result<()> {
    let status = read_json(&share.join("out/zpool-status.json"))?;
    ensure!(status["pools"]["tank"]["state"] == "ONLINE", "pool not online: {status}");
    ensure!(vdev_shape(&status, "tank")? == [("mirror".to_string(), 2)], "not a two-way mirror");
    let props = read_json(&share.join("out/zfs-get.json"))?;
    let encryption = &props["datasets"]["tank/data"]["properties"]["encryption"]["value"];
    ensure!(encryption == "aes-256-gcm", "tank/data encryption is {encryption}");
    ensure!(read(&share.join("out/hello.txt"))?.trim() == "written in boot 1", "the file did not survive");
    Ok(())
}

fn events(path: &Path) -> Result<Vec<Value>> {
    read(path)?
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("{}: not a JSON event: {l}", path.display())))
        .collect()
}

/// The closing event of a run, checked to be a success.
pub fn finished(path: &Path) -> Result<Value> {
    let list = events(path)?;
    let last = list.last().cloned().with_context(|| format!("{} is empty", path.display()))?;
    ensure!(last["event"] == "finished" && last["ok"] == true, "{} did not finish well: {last}", path.display());
    ensure!(!list.iter().any(|e| e["event"] == "step-failed"), "{}: a step failed", path.display());
    Ok(last)
}

/// Checks a layout scenario's results against its plan.
fn verify_layout(share: &Path) -> Result<()> {
    let plan =
        layouts::Plan::from_toml(&read(&share.join("plan.toml"))?).map_err(|e| anyhow::anyhow!("plan.toml: {e}"))?;
    let steps = plan.compile(&layouts::CompileOptions::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let out = share.join("out");
    // Installed through the TUI, whose boot leaves its last screen; every other install boot leaves the
    // events of its apply and the disks as listed before it, and a missing one fails the check.
    let through_tui = out.join("tui.txt").exists();
    if through_tui {
        // Installed through the TUI: its last screen says so.
        let screen = read(&out.join("tui.txt"))?;
        ensure!(
            screen.contains("Installed.") && screen.contains("step(s) applied"),
            "the TUI did not finish:\n{screen}"
        );
    } else {
        let first = finished(&out.join("apply1.jsonl"))?;
        // After the power-cut boots, the resumed install may have had little or nothing left to do.
        let resumed = out.join("cuts.jsonl").exists();
        ensure!(resumed || first["applied"].as_u64() > Some(0), "the first apply applied nothing");
    }
    let second = finished(&out.join("apply2.jsonl"))?;
    ensure!(second["applied"] == 0, "the second apply was not a no-op: {second}");
    finished(&out.join("mount.jsonl"))?;
    finished(&out.join("unmount1.jsonl"))?;
    finished(&out.join("unmount2.jsonl"))?;
    ensure!(read(&out.join("hello.txt"))?.trim() == "written in boot 1", "the file written in boot 1 is gone");

    // Every planned mount is there, with its filesystem type.
    let mounts = read(&out.join("mounts.txt"))?;
    for step in &steps.steps {
        if let layouts::Operation::Mount(layouts::steps::Mount { target, fs_type, source, .. }) = &step.operation {
            let line = mounts.lines().find(|l| l.split(' ').nth(1) == Some(target.as_str()));
            let line = line.with_context(|| format!("{target} is not mounted in boot 2"))?;
            ensure!(line.split(' ').nth(2) == Some(fs_type.as_str()), "{target} is not {fs_type}: {line}");
            if fs_type == "zfs" {
                ensure!(line.starts_with(&format!("{source} ")), "{target} holds {line}, not {source}");
            }
        }
    }
    // Partitions carry the planned UUIDs, which the NixOS module uses.
    let partuuids = read(&out.join("partuuids.txt"))?;
    for (disk, d) in &plan.disks {
        for part in d.partitions.keys() {
            let uuid = plan.partition_uuid(disk, part);
            ensure!(partuuids.lines().any(|l| l == uuid), "no partition with UUID {uuid} ({disk}/{part})");
        }
    }
    // Discovery saw each planned disk with udev's stable path, its serial and size; once installed, the
    // disks are in use (mounted, in an imported pool) and the bystander is still free.
    if !through_tui {
        let before = read_json(&out.join("disks.json"))?;
        let after = read_json(&out.join("disks-in-use.json"))?;
        let find = |list: &Value, device: &str| {
            list["disks"].as_array().and_then(|disks| {
                disks
                    .iter()
                    .find(|d| d["stable_paths"].as_array().is_some_and(|p| p.iter().any(|p| p == device)))
                    .cloned()
            })
        };
        for (name, disk) in &plan.disks {
            let seen =
                find(&before, &disk.device).with_context(|| format!("nix-dabei disks did not list {}", disk.device))?;
            ensure!(
                seen["in_use"].as_array().is_some_and(Vec::is_empty),
                "{name} was in use before the install: {seen}"
            );
            ensure!(seen["size"].as_u64() == disk.size, "{name}: size {} differs from the plan", seen["size"]);
            ensure!(
                seen["serial"].as_str() == disk.identity.serial.as_deref(),
                "{name}: serial {} differs from the plan",
                seen["serial"]
            );
            let used = find(&after, &disk.device).with_context(|| format!("{} vanished", disk.device))?;
            let reasons: Vec<String> = used["in_use"]
                .as_array()
                .map(|r| r.iter().map(|x| x["reason"].as_str().unwrap_or("").to_string()).collect())
                .unwrap_or_default();
            ensure!(!reasons.is_empty(), "{name} is not in use after the install");
            let in_pool = plan.pools.keys().any(|p| plan.pool_members(p).iter().any(|(d, _)| d == name));
            let luks = disk.partitions.values().any(|p| matches!(p.content, Some(layouts::Content::Luks(_))));
            if in_pool && !luks {
                ensure!(
                    reasons.iter().any(|r| r == "imported-pool"),
                    "{name} is not reported in an imported pool: {reasons:?}"
                );
            }
            if luks {
                ensure!(
                    reasons.iter().any(|r| r == "holders"),
                    "{name}: its open LUKS mapping is not reported: {reasons:?}"
                );
            }
        }
        let bystander =
            find(&after, &format!("/dev/disk/by-id/virtio-{BYSTANDER}")).context("the bystander is not listed")?;
        ensure!(bystander["in_use"].as_array().is_some_and(Vec::is_empty), "the bystander looks in use: {bystander}");
    }
    // blkid sees on every partition what the plan put there.
    let blkid = read(&out.join("blkid.txt"))?;
    let blocks: Vec<&str> = blkid.split("\n\n").collect();
    for (disk, d) in &plan.disks {
        for (part, p) in &d.partitions {
            let uuid = plan.partition_uuid(disk, part);
            let expected = p.content.as_ref().and_then(layouts::Content::blkid_signature);
            let Some(expected) = expected else { continue };
            let block = blocks
                .iter()
                .find(|b| b.lines().any(|l| l == format!("PARTUUID={uuid}")))
                .with_context(|| format!("blkid does not list {disk}/{part} (PARTUUID {uuid})"))?;
            ensure!(
                block.lines().any(|l| l == expected),
                "{disk}/{part}: blkid says\n{block}\nbut the plan puts {expected} there"
            );
        }
    }
    let planned_module = layouts::nixos::module(&plan);
    let is_root = |m: &str| layouts::nodes::mount::normalize_mountpoint(m).is_ok_and(|m| m == "/");
    let root_in_memory = plan.nodev.iter().any(|(key, n)| is_root(n.mountpoint(key)));
    let standin = if root_in_memory {
        // `/` is a tmpfs: boot 2 mounted it empty, and the store on disk kept the install's record.
        ensure!(!out.join("nix-dabei.nix").exists(), "the root in memory kept /etc/nixos over a reboot");
        ensure!(!out.join("standin.txt").exists(), "the root in memory kept /var/log over a reboot");
        let module = read(&out.join("module-in-store.nix"))?;
        ensure!(module == planned_module, "the install saw a NixOS module other than the plan's");
        read(&out.join("standin-in-store.txt"))?
    } else {
        let module = read(&out.join("nix-dabei.nix"))?;
        ensure!(module == planned_module, "the NixOS module in the target differs from the plan's");
        read(&out.join("standin.txt"))?
    };
    verify_module(&plan, &planned_module)?;
    verify_released(&plan, &out)?;
    // The stand-in nixos-install ran with the flake, after everything was mounted.
    ensure!(
        standin.contains("flake=path:/etc/nixos#vm") && standin.contains("root=/mnt"),
        "nixos-install did not run as expected: {standin}"
    );

    for (name, pool) in &plan.pools {
        let status = read_json(&out.join("zpool-status.json"))?;
        ensure!(status["pools"][name]["state"] == "ONLINE", "pool {name} is not online");
        let members = plan.pool_members(name).len();
        let expected = match pool.mode.keyword() {
            Some(kind) => vec![(kind.trim_end_matches('1').to_string(), members)],
            None => vec![("disk".to_string(), 1); members],
        };
        // A pool with its vdevs written out is checked by its scenario (`zpool list -v`).
        if pool.vdevs.is_empty() {
            let shape: Vec<(String, usize)> =
                vdev_shape(&status, name)?.into_iter().map(|(k, n)| (k.trim_end_matches('1').to_string(), n)).collect();
            ensure!(shape == expected, "pool {name} has vdevs {shape:?}, the plan says {expected:?}");
        }
        let props = read_json(&out.join("zfs-get.json"))?;
        let property = |dataset: &str, key: &str| {
            props["datasets"][dataset]["properties"][key]["value"].as_str().map(str::to_string)
        };
        let encryption = pool.root_fs_options.get("encryption").cloned().unwrap_or_else(|| "off".into());
        ensure!(
            property(name, "encryption").as_deref() == Some(encryption.as_str()),
            "pool {name}: encryption is {:?}, planned {encryption}",
            property(name, "encryption")
        );
        for (dataset, planned) in &pool.datasets {
            let full = format!("{name}/{dataset}");
            if planned.mountpoint.is_some() {
                ensure!(property(&full, "mountpoint").as_deref() == Some("legacy"), "{full} is not a legacy mount");
            }
            if encryption != "off" {
                ensure!(property(&full, "keystatus").as_deref() == Some("available"), "{full} is still locked");
            }
        }
    }
    // No passphrase reached a command line, the journal or the console.
    let argv = read(&out.join("argv.log"))?;
    ensure!(argv.contains("zpool ") || plan.pools.is_empty(), "the argument log recorded no zpool call");
    // Each file a step of the install wrote must be there to be checked: a missing one fails.
    let through_tui = out.join("tui.txt").exists();
    let written: &[&str] = if through_tui {
        &["argv.log", "journal-boot1.json", "journal-boot2.json", "tui.txt"]
    } else {
        &["argv.log", "journal-boot1.json", "journal-boot2.json", "apply1.jsonl", "plan.txt"]
    };
    for file in written {
        let text = read(&out.join(file))?;
        ensure!(!text.contains(PASSPHRASE), "the passphrase appears in {file}");
    }
    ensure!(!read(&share.join("plan.toml"))?.contains(PASSPHRASE), "the passphrase appears in the plan");
    Ok(())
}

/// What the written module must say for the installed system to boot on this VM: the drivers of the
/// disks' controllers (virtio, virtio-scsi, NVMe) in the initrd; GRUB in every disk's boot sector, since
/// the VM boots with SeaBIOS (no EFI) and plans made here get BIOS boot partitions; every ESP and swap of
/// a mirror may be missing; pools inside LUKS keep ZFS's default device directory.
fn verify_module(plan: &layouts::Plan, module: &str) -> Result<()> {
    let made_here = !plan.initrd_kernel_modules.is_empty();
    if made_here {
        ensure!(plan.boot == Some(layouts::BootMode::Both), "booted without EFI, the plan boots {:?}", plan.boot);
        let modules = module
            .lines()
            .find(|l| l.trim_start().starts_with("boot.initrd.availableKernelModules"))
            .context("the module names no initrd kernel modules")?;
        // virtio disks and the virtio-scsi controller sit on virtio's PCI transport; NVMe is a PCI driver itself.
        let virtio = plan.disks.values().any(|d| !d.device.contains("nvme-"));
        ensure!(!virtio || modules.contains("\"virtio_pci\""), "virtio_pci is not in the initrd: {modules}");
        for disk in plan.disks.values() {
            let driver = match disk.device {
                ref d if d.contains("virtio-") => "virtio_blk",
                ref d if d.contains("nvme-") => "nvme",
                _ => "virtio_scsi",
            };
            ensure!(modules.contains(&format!("\"{driver}\"")), "{driver} for {} is not in the initrd", disk.device);
            let bios = disk.partitions.values().filter(|p| p.kind.as_deref() == Some("bios-boot")).count();
            ensure!(bios == 1, "{} has {bios} BIOS boot partitions", disk.device);
            ensure!(
                module.contains(&format!("devices = [ \"{}\" ];", disk.device)),
                "GRUB does not go into the boot sector of {}",
                disk.device
            );
        }
    }
    let in_luks = plan.disks.values().flat_map(|d| d.partitions.values()).any(
        |p| matches!(&p.content, Some(layouts::Content::Luks(l)) if matches!(*l.content, layouts::Content::Zfs(_))),
    );
    ensure!(
        module.contains("boot.zfs.devNodes") == (!plan.pools.is_empty() && !in_luks),
        "boot.zfs.devNodes is wrong for pools {} LUKS",
        if in_luks { "inside" } else { "outside" }
    );
    // ESPs with a filesystem of their own: a mirrored ESP is one filesystem on an array.
    let esps = plan
        .disks
        .values()
        .flat_map(|d| d.partitions.values())
        .filter(|p| p.is_esp() && matches!(p.content, Some(layouts::Content::Filesystem(_))))
        .count();
    let nofail = module.matches("\"nofail\" \"x-systemd.device-timeout=5s\"").count();
    let swaps = plan
        .disks
        .values()
        .flat_map(|d| d.partitions.values())
        .filter(|p| matches!(p.content, Some(layouts::Content::Swap(_))))
        .count();
    let expected = if esps > 1 { esps } else { 0 } + if plan.disks.len() > 1 { swaps } else { 0 };
    ensure!(nofail == expected, "{nofail} ESPs and swaps may be missing at boot, expected {expected}");
    Ok(())
}

/// After an apply that installed, the disks were released so that the installed system imports its
/// pools cleanly: nothing mounted, no pool imported, LUKS closed, and every readable pool label says
/// exported (state 1) under the installed system's host id.
fn verify_released(plan: &layouts::Plan, out: &Path) -> Result<()> {
    // Through the TUI (it has no events file) the install ran when it says "Installed."; the check before
    // install passed there too, against the module of the same plan made with the CLI.
    let installed = if out.join("tui.txt").exists() {
        true
    } else {
        events(&out.join("apply1.jsonl"))?.iter().any(|e| e["event"] == "step-finished" && e["id"] == "nixos-install")
    };
    if !installed {
        // A resumed run that found the install done earlier leaves things as they are.
        return Ok(());
    }
    finished(&out.join("mount-after-install.jsonl"))?;
    ensure!(read(&out.join("pools-after-install.txt"))?.trim().is_empty(), "pools stayed imported after the install");
    let mounts = read(&out.join("mounts-after-install.txt"))?;
    ensure!(mounts.trim().is_empty(), "still mounted after the install:\n{mounts}");
    let mappers = read(&out.join("mappers-after-install.txt"))?;
    ensure!(mappers.trim().is_empty(), "LUKS mappings stayed open after the install: {mappers}");
    let host_id = u64::from_str_radix(&plan.effective_host_id(), 16)?;
    let labels = read(&out.join("labels-after-install.txt"))?;
    for (name, pool) in &plan.pools {
        for (disk, part) in plan.pool_members(name) {
            let in_luks = matches!(plan.disks[disk].partitions[part].content, Some(layouts::Content::Luks(_)));
            // Cache and spare labels carry no pool state or host id (ZFS's L2CACHE and SPARE states).
            let reference = format!("{disk}/{part}");
            if in_luks || pool.cache.contains(&reference) || pool.spare.contains(&reference) {
                continue;
            }
            let uuid = plan.partition_uuid(disk, part);
            let block = labels
                .split("== ")
                .find(|b| b.starts_with(&uuid))
                .with_context(|| format!("no label listing for {disk}/{part}"))?;
            ensure!(block.contains("    state: 1"), "{disk}/{part}: pool {name} was not exported:\n{block}");
            ensure!(
                block.contains(&format!("    hostid: {host_id}")),
                "{disk}/{part}: pool {name} does not carry host id {}:\n{block}",
                plan.effective_host_id()
            );
        }
    }
    Ok(())
}

/// Remote unlock: the plan carries root's key without its options, the module lets it into the initrd,
/// and the install generated the initrd's host key (private, readable by root alone) on the target.
fn verify_remote_unlock(share: &Path) -> Result<()> {
    let plan =
        layouts::Plan::from_toml(&read(&share.join("plan.toml"))?).map_err(|e| anyhow::anyhow!("plan.toml: {e}"))?;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl unlock@test";
    let unlock = plan.remote_unlock.as_ref().context("the plan has no remote_unlock")?;
    ensure!(unlock.authorized_keys == [key], "the carried keys are {:?}", unlock.authorized_keys);
    ensure!(unlock.network_kernel_modules.is_empty(), "the VM has no network card, yet {unlock:?}");
    let module = read(&share.join("out/nix-dabei.nix"))?;
    ensure!(module.contains(&format!("authorizedKeys = [ \"{key}\" ];")), "the module lets no key in");
    let keys = read(&share.join("out/initrd-keys.txt"))?;
    let private = "600 root /mnt/etc/secrets/initrd/ssh_host_ed25519_key\n";
    ensure!(keys.contains(private) && keys.contains("700 root /mnt/etc/secrets/initrd\n"), "{keys}");
    ensure!(keys.contains("initrd (ED25519)"), "no ed25519 host key: {keys}");
    verify_layout(share)
}

/// The plan `probe` wrote, in `out/probed.toml`.
fn probed_plan(out: &Path) -> Result<layouts::Plan> {
    layouts::Plan::from_toml(&read(&out.join("probed.toml"))?).map_err(|e| anyhow::anyhow!("probed: {e}"))
}

/// The review of the probed plan (`out/probed-review.json`): every step done or to do, none destroying,
/// no disk wiped.
fn review_destroys_nothing(out: &Path) -> Result<()> {
    let review = read_json(&out.join("probed-review.json"))?;
    for step in review["steps"].as_array().context("steps")? {
        ensure!(step["state"] == "done" || step["state"] == "todo", "{step}");
        ensure!(step["destroys"] != true, "a step of the probed plan destroys: {step}");
    }
    ensure!(review["wipes"].as_array().is_some_and(Vec::is_empty), "the probed plan wipes: {review}");
    Ok(())
}

/// The ids of the steps a run (its JSON events) started.
fn steps_started(path: &Path) -> Result<Vec<String>> {
    let events = events(path)?;
    let started = events.iter().filter(|e| e["event"] == "step-started");
    Ok(started.filter_map(|e| e["id"].as_str().map(String::from)).collect())
}

/// Issue item 1 and 2 for pools: the probed plan keeps the pool by its GUID, with its datasets and their
/// properties; it changes nothing when applied (the pool is imported, no dataset made); another GUID is
/// refused before anything is written.
fn verify_probed_pool(share: &Path) -> Result<()> {
    let out = share.join("out");
    let probed = probed_plan(&out)?;
    let pool = probed.pools.get("rpool").context("the pool is not read back")?;
    let status = read_json(&out.join("zpool-status.json"))?;
    let guid = status["pools"]["rpool"]["pool_guid"].to_string();
    ensure!(pool.keep && pool.guid.as_deref() == Some(guid.trim_matches('"')), "kept by GUID {guid}: {pool:?}");
    ensure!(probed.pool_members("rpool").len() == 1, "members: {:?}", probed.pool_members("rpool"));
    for dataset in ["root", "nix", "home", "var"] {
        let found = pool.datasets.get(dataset).with_context(|| format!("dataset {dataset} is not read back"))?;
        ensure!(found.properties.get("mountpoint").map(String::as_str) == Some("legacy"), "{dataset}: {found:?}");
        ensure!(found.keep && found.guid.is_some(), "{dataset} is not kept by its GUID: {found:?}");
    }
    ensure!(pool.datasets["nix"].properties.get("atime").map(String::as_str) == Some("off"), "nix's atime");
    ensure!(read(&out.join("pools-after-probe.txt"))?.trim().is_empty(), "probe left the pool imported");
    review_destroys_nothing(&out)?;
    let refused = read(&out.join("other-guid.jsonl"))?;
    ensure!(refused.contains("not the kept pool's 12345"), "another GUID was not refused by it:\n{refused}");
    ensure!(!refused.contains("\"step-started\""), "a step ran under another GUID:\n{refused}");
    finished(&out.join("probed-apply.jsonl"))?;
    let started = steps_started(&out.join("probed-apply.jsonl"))?;
    ensure!(!started.iter().any(|id| id.starts_with("zfs-create:") || id.starts_with("mkfs:")), "{started:?}");
    ensure!(read(&out.join("guids-after-probed-apply.txt"))?.lines().count() == 5, "the pool's datasets changed");
    finished(&out.join("probed-unmount.jsonl"))?;
    Ok(())
}

fn verify_single(share: &Path) -> Result<()> {
    verify_probed_pool(share)?;
    let out = share.join("out");
    let expected: [(&str, &[&str]); 4] = [
        ("1", &["networking.hostId", "fileSystems.\"/data\"", "Nothing was written"]),
        ("2", &["fileSystems.\"/\"", "mounts nothing at /"]),
        ("3", &["boot.loader.systemd-boot.enable", "legacy BIOS"]),
        // The system's own assertions, evaluated before the first write (system.build.toplevel).
        ("4", &["Failed assertions", "duplicated devices in mirroredBoots"]),
    ];
    for (n, words) in expected {
        let text = read(&out.join(format!("bad-flake-{n}.txt")))?;
        ensure!(!text.contains("apply exited 0"), "bad flake {n} was installed:\n{text}");
        for word in words {
            ensure!(text.contains(word), "bad flake {n}: the refusal does not name {word}:\n{text}");
        }
    }
    let (before, after) = (read(&out.join("disk-before-bad-flakes"))?, read(&out.join("disk-after-bad-flakes"))?);
    ensure!(before == after, "the disk changed while bad flakes were refused");
    verify_layout(share)
}

fn verify_btrfs_tmpfs(share: &Path) -> Result<()> {
    verify_layout(share)?;
    let out = share.join("out");
    let show = read(&out.join("btrfs-show.txt"))?;
    ensure!(show.contains("Total devices 2"), "the btrfs does not span both disks:\n{show}");
    let df = read(&out.join("btrfs-df.txt"))?;
    ensure!(df.contains("Data, RAID1") && df.contains("Metadata, RAID1"), "the btrfs is not mirrored:\n{df}");
    let subvolumes = read(&out.join("btrfs-subvolumes.txt"))?;
    for name in ["nix", "home", "persist"] {
        let top = format!(" top level 5 path {name}");
        ensure!(subvolumes.lines().any(|l| l.ends_with(&top)), "no subvolume {name}:\n{subvolumes}");
    }
    // The nested one lies inside home (btrfs lists it relative to its parent).
    let nested = read(&out.join("btrfs-nested.txt"))?;
    ensure!(nested.lines().next().is_some_and(|l| l.trim() == "home/shared"), "home/shared:\n{nested}");
    // Only the mountpoints of what is mounted inside it: the root in memory kept nothing else.
    let listing = read(&out.join("root-listing.txt"))?;
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort_unstable();
    ensure!(names == ["boot", "boot-1", "home", "nix", "persist", "srv", "tmp"], "/ holds {names:?}");
    Ok(())
}

/// Issue item 1 for LVM: the probed plan keeps the group and its volumes by their UUIDs, with their kinds
/// and thin pool, the filesystems in them and each physical volume (in its LUKS container) by its UUID;
/// applying it opens, activates and makes nothing; another group UUID is refused before anything is
/// written.
fn verify_probed_volumes(share: &Path) -> Result<()> {
    let out = share.join("out");
    let probed = probed_plan(&out)?;
    let lvs = read_json(&out.join("lvs.json"))?;
    let rows = lvs["report"][0]["lv"].as_array().context("lvs printed no volumes")?;
    let group = probed.volume_groups.get("main").context("volume group main is not read back")?;
    let vg_uuid = rows.first().and_then(|r| r["vg_uuid"].as_str()).context("no vg_uuid")?;
    ensure!(group.keep && group.uuid.as_deref() == Some(vg_uuid), "main is not kept by {vg_uuid}: {group:?}");
    for row in rows {
        let name = row["lv_name"].as_str().unwrap_or_default();
        let volume = group.volumes.get(name).with_context(|| format!("{name} is not read back: {group:?}"))?;
        ensure!(volume.keep && volume.uuid.as_deref() == row["lv_uuid"].as_str(), "{name}: {volume:?}");
    }
    let kind = |name: &str| group.volumes.get(name).and_then(|v| v.kind.map(|k| k.name()));
    ensure!(kind("pool") == Some("thin-pool") && kind("srv") == Some("raid1"), "kinds: {group:?}");
    ensure!(group.volumes["root"].pool.as_deref() == Some("pool"), "root's pool: {group:?}");
    let holds = |name: &str, format: layouts::Format| {
        matches!(&group.volumes[name].content, Some(layouts::Content::Filesystem(fs))
            if fs.format == format && fs.uuid.is_some())
    };
    ensure!(holds("root", layouts::Format::Ext4) && holds("home", layouts::Format::Xfs), "contents: {group:?}");
    let members = probed.volume_group_members("main");
    ensure!(members.len() == 2, "physical volumes: {members:?}");
    let left = read(&out.join("mapper-after-probe.txt"))?;
    ensure!(!left.contains("nix-dabei-probe") && !left.contains("main-"), "probe left mappings:\n{left}");
    review_destroys_nothing(&out)?;
    let refused = read(&out.join("other-uuid.txt"))? + &read(&out.join("other-uuid.jsonl"))?;
    ensure!(refused.contains("not the kept group's"), "another group UUID was not refused:\n{refused}");
    let made =
        |id: &str| ["pvcreate:", "vgcreate:", "lvcreate:", "mkfs:", "luks-format:"].iter().any(|p| id.starts_with(p));
    let other = steps_started(&out.join("other-uuid.jsonl"))?;
    ensure!(!other.iter().any(|id| made(id)), "a step ran under another group UUID: {other:?}");
    finished(&out.join("probed-apply.jsonl"))?;
    let applied = steps_started(&out.join("probed-apply.jsonl"))?;
    ensure!(!applied.iter().any(|id| made(id)), "applying the probed plan made something: {applied:?}");
    let after = read(&out.join("lvs-after-probed-apply.json"))?;
    for row in rows {
        let uuid = row["lv_uuid"].as_str().unwrap_or_default();
        ensure!(after.contains(uuid), "volume {uuid} changed:\n{after}");
    }
    finished(&out.join("probed-unmount.jsonl"))?;
    Ok(())
}

fn verify_lvm(share: &Path) -> Result<()> {
    verify_probed_volumes(share)?;
    verify_layout(share)?;
    let out = share.join("out");
    let lvs = read_json(&out.join("lvs.json"))?;
    let rows = lvs["report"][0]["lv"].as_array().context("lvs printed no volumes")?;
    let row = |name: &str| rows.iter().find(|r| r["lv_name"] == name).cloned().unwrap_or_default();
    ensure!(row("pool")["segtype"] == "thin-pool", "pool is not a thin pool: {lvs}");
    for thin in ["root", "home"] {
        ensure!(row(thin)["segtype"] == "thin" && row(thin)["pool_lv"] == "pool", "{thin} is not thin in pool: {lvs}");
    }
    ensure!(row("srv")["segtype"] == "raid1", "srv is not raid1: {lvs}");
    let pvs = read(&out.join("pvs.json"))?;
    ensure!(pvs.contains("/dev/mapper/pv0") && pvs.contains("/dev/mapper/pv1"), "the group is not on both LUKS: {pvs}");
    // The additional key file opened pv1's container (the script stops otherwise): a second key slot.
    let dump = read(&out.join("luks-dump-v1.txt"))?;
    ensure!(dump.contains("  0: luks2") && dump.contains("  1: luks2"), "pv1 has not two key slots:\n{dump}");
    Ok(())
}

fn verify_mbr(share: &Path) -> Result<()> {
    verify_layout(share)?;
    let out = share.join("out");
    ensure!(read(&out.join("firmware.txt"))?.trim() == "bios", "the VM did not boot with SeaBIOS");
    let dump = read(&out.join("sfdisk.txt"))?;
    ensure!(dump.contains("label: dos"), "not an MBR table:\n{dump}");
    let rows: Vec<&str> = dump.lines().filter(|l| l.contains(" : start=")).collect();
    // Two primary partitions, the extended one, two logical ones (5 and 6).
    ensure!(rows.len() == 5, "{} entries:\n{dump}", rows.len());
    let row = |suffix: &str| rows.iter().find(|r| r.split(' ').next().is_some_and(|d| d.ends_with(suffix)));
    let first = row("1").with_context(|| format!("no partition 1:\n{dump}"))?;
    ensure!(first.contains("start=        2048") && first.contains("bootable"), "partition 1: {first}");
    ensure!(row("3").is_some_and(|r| r.contains("type=5")), "no extended partition 3:\n{dump}");
    for (suffix, kind) in [("2", "type=82"), ("5", "type=e8"), ("6", "type=83")] {
        ensure!(row(suffix).is_some_and(|r| r.contains(kind)), "partition {suffix} is not {kind}:\n{dump}");
    }
    let verified = read(&out.join("sfdisk-verify.txt"))?;
    ensure!(verified.contains("No errors detected"), "sfdisk --verify: {verified}");
    Ok(())
}

/// Issue items 1 and 2 for arrays: the probed plan keeps each array by its UUID, with its level, superblock
/// format and filesystem (the GPT inside the RAID 5 array is said, not described); applying it creates and
/// formats nothing; another UUID is refused before anything is written.
fn verify_probed_arrays(share: &Path) -> Result<()> {
    let out = share.join("out");
    let probed = probed_plan(&out)?;
    for (array, level, metadata) in [("boot", 1, "1.0"), ("data", 5, "1.2")] {
        let raid = probed.raids.get(array).with_context(|| format!("array {array} is not read back"))?;
        let detail = read(&out.join(format!("md-{array}.txt")))?;
        let uuid = detail.lines().find_map(|l| l.strip_prefix("MD_UUID=")).context("no MD_UUID")?;
        ensure!(raid.keep && raid.uuid.as_deref() == Some(uuid), "{array} is not kept by UUID {uuid}: {raid:?}");
        ensure!(raid.level == level && raid.metadata == metadata, "{array}: {raid:?}");
        ensure!(probed.array_members(array).len() == 3, "{array}'s members: {:?}", probed.array_members(array));
    }
    let boot = &probed.raids["boot"];
    let fat = |fs: &layouts::Filesystem| fs.format == layouts::Format::Vfat && fs.uuid.is_some();
    let read_back = matches!(&boot.content, Some(layouts::Content::Filesystem(fs)) if fat(fs));
    ensure!(read_back, "the ESP array's FAT is not read back: {boot:?}");
    ensure!(probed.raids["data"].content.is_none(), "the GPT inside the RAID 5 array was described");
    let notes = read(&out.join("probe-notes.txt"))?;
    ensure!(notes.contains("array data") && notes.contains("partition table"), "probe's notes:\n{notes}");
    let left = read(&out.join("md-after-probe.txt"))?;
    ensure!(!left.contains("nix-dabei-probe"), "probe left an array running:\n{left}");
    review_destroys_nothing(&out)?;
    let refused = read(&out.join("other-uuid.jsonl"))?;
    ensure!(refused.contains("md-create:boot") && refused.contains("kept"), "another UUID was not refused:\n{refused}");
    ensure!(!refused.contains("\"step-started\""), "a step ran under another UUID:\n{refused}");
    finished(&out.join("probed-apply.jsonl"))?;
    let started = steps_started(&out.join("probed-apply.jsonl"))?;
    ensure!(!started.iter().any(|id| id.starts_with("md-create:") || id.starts_with("mkfs:")), "{started:?}");
    let running = read(&out.join("md-boot-after-probed-apply.txt"))?;
    ensure!(running.contains("MD_LEVEL=raid1"), "the kept array is not assembled by apply:\n{running}");
    finished(&out.join("probed-unmount.jsonl"))?;
    Ok(())
}

fn verify_mdadm(share: &Path) -> Result<()> {
    verify_probed_arrays(share)?;
    verify_layout(share)?;
    let out = share.join("out");
    for (array, level) in [("boot", "raid1"), ("data", "raid5")] {
        let detail = read(&out.join(format!("md-{array}.txt")))?;
        ensure!(detail.contains(&format!("MD_LEVEL={level}")), "{array} is not {level}:\n{detail}");
        ensure!(detail.contains("MD_DEVICES=3"), "{array} does not have 3 members:\n{detail}");
    }
    ensure!(out.join("esp-halves.txt").exists(), "an ESP half does not read as FAT");
    // The GPT inside the RAID 5 array: its two partitions, linked by udev under the array's name.
    let links = read(&out.join("md-links.txt"))?;
    ensure!(links.lines().any(|l| l == "data1") && links.lines().any(|l| l == "data2"), "md links:\n{links}");
    let table = read(&out.join("md-data-gpt.txt"))?;
    for name in ["disk-data-root", "disk-data-srv"] {
        ensure!(table.lines().any(|l| l.trim_end().ends_with(name)), "no partition {name}:\n{table}");
    }
    let verified = read(&out.join("md-data-verify.txt"))?;
    ensure!(verified.contains("No problems found"), "sgdisk -v /dev/md/data:\n{verified}");
    // `nix-dabei disks` names each member's holder by the array's name.
    let in_use = read(&out.join("disks-in-use.json"))?;
    for array in ["boot", "data"] {
        ensure!(in_use.contains(&format!("(/dev/md/{array})")), "no member held by /dev/md/{array}:\n{in_use}");
    }
    Ok(())
}

fn verify_zfs_classes(share: &Path) -> Result<()> {
    verify_layout(share)?;
    let list = read(&share.join("out/zpool-list.txt"))?;
    // A section (dedup, special, logs, cache) starts with its name; the vdevs and devices in it, with a tab.
    let mut sections: Vec<(String, Vec<String>)> = vec![("data".into(), vec![])];
    for line in list.lines().skip(1) {
        let first = line.split_whitespace().next().unwrap_or_default().to_string();
        if !line.starts_with('\t') {
            sections.push((first, vec![]));
        } else if let Some(last) = sections.last_mut() {
            last.1.push(first);
        }
    }
    let section = |name: &str| sections.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default();
    for class in ["data", "special", "dedup"] {
        let vdevs = section(class);
        ensure!(vdevs.first().is_some_and(|v| v.starts_with("mirror")), "no mirror in {class}:\n{list}");
    }
    ensure!(section("logs").iter().any(|v| v.contains("virtio-c0-part5")), "no log device:\n{list}");
    ensure!(section("cache").iter().any(|v| v.contains("virtio-c1-part5")), "no cache device:\n{list}");
    Ok(())
}

/// The resume scenario: the interrupted run stopped right after the pool, the next one finished it
/// without redoing the destructive steps, and the result is a normal install.
fn verify_resume(share: &Path) -> Result<()> {
    let out = share.join("out");
    let interrupted = events(&out.join("apply0.jsonl"))?;
    let last = interrupted.last().context("no events from the interrupted run")?;
    ensure!(
        last["event"] == "step-finished" && last["id"] == "zpool-create:rpool",
        "the interrupted run ended with {last}"
    );
    let resumed = events(&out.join("apply1.jsonl"))?;
    for id in ["wipe:disk0", "gpt:disk0", "wipe:disk1", "gpt:disk1", "mkfs:disk0/esp", "mkfs:disk1/esp"] {
        ensure!(
            resumed.iter().any(|e| e["event"] == "step-skipped" && e["id"] == id),
            "the resumed run did not skip {id}"
        );
        ensure!(!resumed.iter().any(|e| e["event"] == "step-started" && e["id"] == id), "the resumed run redid {id}");
    }
    verify_layout(share)
}

fn verify_power_cuts(share: &Path) -> Result<()> {
    let out = share.join("out");
    let before = read(&out.join("foreign-before"))?;
    ensure!(before == read(&out.join("foreign-after"))?, "the disk outside the plan was written to");
    let importable = read(&out.join("importable.txt"))?;
    ensure!(importable.contains("virtio-f0-part2"), "the foreign pool is gone from its disk:\n{importable}");
    let cuts = events(&out.join("cuts.jsonl"))?;
    let applied = cuts.iter().filter(|e| e["event"] == "step-finished").count();
    ensure!(applied >= 10, "the interrupted runs applied only {applied} steps");
    ensure!(!cuts.iter().any(|e| e["event"] == "step-failed"), "a step failed after a power cut: {cuts:?}");
    // A run killed after a step left the kernel as the step made it: the next run, in the same boot, found
    // it done and did not run it again.
    let mut killed = Vec::new();
    for boot in cuts.split(|e| e["event"] == "boot") {
        let runs: Vec<&[Value]> = boot.split(|e| e["event"] == "started").filter(|r| !r.is_empty()).collect();
        for pair in runs.windows(2) {
            let (run, next) = (pair[0], pair[1]);
            if run.iter().any(|e| e["event"] == "finished") {
                continue;
            }
            let last = run.iter().rev().find(|e| e["event"] == "step-finished").context("a killed run did nothing")?;
            let id = &last["id"];
            ensure!(
                !next.iter().any(|e| e["event"] == "step-started" && e["id"] == *id),
                "{id} ran again in the same boot after the run was killed right after it"
            );
            killed.push(id.clone());
        }
    }
    ensure!(killed.len() >= 3, "only {} runs were killed after a step: {killed:?}", killed.len());
    let hooks = read(&out.join("cuts.err"))?;
    let cut_after = hooks.lines().filter(|l| l.starts_with("nix-dabei: test hook: powering off after step ")).count();
    let cut_inside = hooks.lines().filter(|l| l.starts_with("nix-dabei: test hook: powering off during step ")).count();
    ensure!(cut_after >= 10, "the power was cut after only {cut_after} steps");
    ensure!(
        cut_inside == 3,
        "the power was cut inside {cut_inside} steps, not inside luksFormat, zpool create and mkfs"
    );
    verify_layout(share)
}

/// The remote and hetzner scenarios' install: the system built on the host from its flake, copied
/// into the target's store and installed as it is.
fn verify_remote(share: &Path) -> Result<()> {
    let out = share.join("out");
    // The system built on the host, copied into the target's store, is what the profile holds.
    let standin = read(&out.join("standin.txt"))?;
    let system = read(&out.join("system-profile.txt"))?;
    let system = system.trim();
    ensure!(system.starts_with("/nix/store/") && system.ends_with("-nixos-system-vm"), "the profile: {system}");
    ensure!(standin.contains(&format!("flake=system:{system}")), "the install did not get the built system: {standin}");
    installed_mirror_mounted(&out)
}

/// The hetzner-robot scenario's install: the flake installed by the far side's nixos-install.
fn verify_built_there(share: &Path) -> Result<()> {
    let out = share.join("out");
    let standin = read(&out.join("standin.txt"))?;
    ensure!(standin.contains("flake=path:/etc/nixos#vm"), "the install did not get the flake: {standin}");
    installed_mirror_mounted(&out)
}

/// The remote and hetzner scenarios' installed system: a two-way ZFS mirror that the third boot mounted.
fn installed_mirror_mounted(out: &Path) -> Result<()> {
    let status = read_json(&out.join("zpool-status.json"))?;
    let pool = status["pools"].as_object().and_then(|p| p.keys().next().cloned()).context("no pool")?;
    ensure!(vdev_shape(&status, &pool)? == [("mirror".to_string(), 2)], "not a two-way mirror: {status}");
    let mount = read(&out.join("mount.jsonl"))?;
    ensure!(mount.contains(r#""event":"finished","ok":true"#), "the installed system did not mount: {mount}");
    Ok(())
}

fn verify_alongside(share: &Path) -> Result<()> {
    verify_layout(share)?;
    let out = share.join("out");
    let notes = read(&out.join("plan-notes.txt"))?;
    ensure!(notes.contains("p1") && notes.contains("reused at /boot"), "the ESP was not reused: {notes}");
    ensure!(
        read(&out.join("foreign-after.txt"))? == read(&out.join("foreign-before.txt"))?,
        "a partition of the other system changed"
    );
    let bootmgr = read(&out.join("bootmgr.txt"))?;
    ensure!(bootmgr.trim() == "the other system's boot manager", "the ESP lost the other system's file: {bootmgr}");
    let first = events(&out.join("apply1.jsonl"))?;
    for step in ["wipe:main", "mkfs:main/p1"] {
        let ran = first.iter().any(|e| e["event"] == "step-finished" && e["id"] == step);
        ensure!(!ran, "{step} ran on the disk shared with the other system");
    }
    Ok(())
}

fn verify_grow(share: &Path) -> Result<()> {
    let out = share.join("out");
    let review = read_json(&out.join("grow-review.json"))?;
    let steps = review["steps"].as_array().context("the review's steps")?;
    let pool = steps.iter().find(|s| s["id"] == "zpool-create:rpool").context("the pool's step")?;
    ensure!(pool["state"] == "change", "the pool is not changed in place: {pool}");
    ensure!(pool["detail"].as_str().is_some_and(|d| d.contains("zpool attach")), "no attach shown: {pool}");
    for step in steps.iter().filter(|s| s["id"].as_str().is_some_and(|id| id.contains(":main"))) {
        ensure!(step["state"] == "done", "a step on the installed disk is not done: {step}");
    }
    let wipes: Vec<&Value> = review["wipes"].as_array().context("wipes")?.iter().map(|w| &w["disk"]).collect();
    ensure!(wipes == [&Value::from("second")], "only the new disk is wiped: {wipes:?}");
    finished(&out.join("grow-apply.jsonl"))?;
    let ran: Vec<String> = events(&out.join("grow-apply.jsonl"))?
        .iter()
        .filter(|e| e["event"] == "step-finished")
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect();
    ensure!(!ran.iter().any(|id| id.contains(":main")), "a step ran on the installed disk: {ran:?}");
    ensure!(ran.iter().any(|id| id == "zpool-create:rpool"), "the pool was not changed: {ran:?}");
    // Of the existing datasets, only the one whose properties the plan changed is touched: what real ZFS
    // shows for the others (inherited values, aliases, sizes) is found as planned.
    let datasets: Vec<&String> = ran.iter().filter(|id| id.starts_with("zfs-create:")).collect();
    ensure!(datasets == ["zfs-create:rpool/home"], "datasets changed: {datasets:?}");
    ensure!(read(&out.join("home-compression.txt"))?.trim() == "lz4", "the property was not set");
    let status = read_json(&out.join("zpool-status-grown.json"))?;
    ensure!(vdev_shape(&status, "rpool")? == [("mirror".to_string(), 2)], "not a two-way mirror: {status}");
    let scan = &status["pools"]["rpool"]["scan_stats"];
    ensure!(scan["function"] == "RESILVER" && scan["state"] == "FINISHED", "the resilver is not done: {scan}");
    ensure!(read(&out.join("hello-grown.txt"))?.trim() == "written in boot 1", "the data did not stay");
    ensure!(read(&out.join("esp-after.txt"))? == read(&out.join("esp-before.txt"))?, "the installed ESP changed");
    let again = finished(&out.join("grow-again.jsonl"))?;
    ensure!(again["applied"] == 0, "applying the grown plan again did something: {again}");
    // Boot 3 mounts the mirror as the installed system would, from both disks.
    ensure!(read(&out.join("hello.txt"))?.trim() == "written in boot 1", "the file did not survive the reboot");
    let status = read_json(&out.join("zpool-status.json"))?;
    ensure!(vdev_shape(&status, "rpool")? == [("mirror".to_string(), 2)], "not a mirror after the reboot: {status}");
    Ok(())
}

/// What is on a device: its kind and UUID, and for a LUKS container the kind and UUID of what it holds.
type Made = (String, String, Option<Box<(String, String)>>);

/// What a compiled plan makes on a device, as reading it back describes it: the filesystem, swap or LUKS
/// header with its UUID (a FAT's as its volume id), and for LUKS what the opened container holds.
fn made_on(steps: &layouts::Steps, device: &str) -> Option<Made> {
    steps.steps.iter().find_map(|step| match &step.operation {
        layouts::Operation::Mkfs(m) if m.device == device => Some((m.format.fs_type().into(), m.blkid_uuid(), None)),
        layouts::Operation::Mkswap(m) if m.device == device => Some(("swap".into(), m.uuid.clone(), None)),
        layouts::Operation::LuksFormat(f) if f.device == device => {
            let inner =
                made_on(steps, &format!("/dev/mapper/{}", f.name)).map(|(kind, uuid, _)| Box::new((kind, uuid)));
            Some(("luks".into(), f.uuid.clone(), inner))
        }
        _ => None,
    })
}

/// A read-back content in the same terms as [`made_on`].
fn read_as(content: &layouts::Content) -> Option<Made> {
    match content {
        layouts::Content::Filesystem(fs) => Some((fs.format.fs_type().into(), fs.uuid.clone()?, None)),
        layouts::Content::Swap(swap) => Some(("swap".into(), swap.uuid.clone()?, None)),
        layouts::Content::Luks(luks) => {
            let inner = read_as(&luks.content).map(|(kind, uuid, _)| Box::new((kind, uuid)));
            Some(("luks".into(), luks.uuid.clone()?, inner))
        }
        _ => None,
    }
}

/// The installed layout is read back whole: the probed plan has every partition where the plan put
/// it, with the plan's partition UUIDs, and what the plan made on each with its UUID (the LUKS header's
/// and the filesystem's inside it, read with the passphrase); through disko's format and back it still
/// does, and the machine finds every step of it done (swap is off once unmounted: only swapon is left).
fn verify_probe_round_trip(share: &Path) -> Result<()> {
    verify_layout(share)?;
    let out = share.join("out");
    let plan = layouts::Plan::from_toml(&read(&share.join("plan.toml"))?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let steps = plan.compile(&layouts::CompileOptions::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let probed = probed_plan(&out)?;
    let imported =
        layouts::Plan::from_toml(&read(&out.join("imported.toml"))?).map_err(|e| anyhow::anyhow!("imported: {e}"))?;
    let (disk_name, disk) = plan.disks.first().context("a disk")?;
    let numbers = disk.partition_numbers();
    let mut luks = 0;
    for read_back in [&probed, &imported] {
        let again = read_back.disks.values().next().context("a disk read back")?;
        ensure!(again.partitions.len() == disk.partitions.len(), "partitions differ: {:?}", again.partitions.keys());
        for (((name, _), (_, found)), number) in disk.partitions.iter().zip(&again.partitions).zip(&numbers) {
            let uuid = plan.partition_uuid(disk_name, name);
            ensure!(found.uuid.as_deref() == Some(uuid.as_str()), "{name}: partition UUID {:?}", found.uuid);
            let expected = made_on(&steps, &layouts::gpt::partition_device(&disk.device, *number));
            let seen = found.content.as_ref().and_then(read_as);
            ensure!(seen == expected, "{name}: read back as {seen:?}, made as {expected:?}");
            luks += usize::from(expected.is_some_and(|(kind, _, _)| kind == "luks"));
        }
    }
    ensure!(luks == 2, "the layout has no LUKS container to read back");
    ensure!(probed.disks.values().all(|d| d.partitions.values().all(|p| p.keep)), "probe kept not everything");
    let mappers = read(&out.join("mappers-after-probe.txt"))?;
    ensure!(!mappers.contains("nix-dabei-probe"), "probe left a container open: {mappers}");
    let warnings = read(&out.join("import-warnings.txt"))?;
    ensure!(warnings.contains("512-byte sectors"), "the sector size assumption is not said: {warnings}");
    let review = read_json(&out.join("imported-review.json"))?;
    let steps = review["steps"].as_array().context("the review's steps")?;
    let in_containers: Vec<String> = imported
        .disks
        .iter()
        .flat_map(|(d, disk)| disk.partitions.iter().map(move |(p, part)| (d, p, part)))
        .filter(|(_, _, part)| matches!(part.content, Some(layouts::Content::Luks(_))))
        .map(|(d, p, _)| format!("mkfs:{d}/{p}"))
        .collect();
    let mapped = |id: &str| in_containers.iter().any(|inside| inside == id);
    for step in steps {
        let id = step["id"].as_str().unwrap_or_default();
        // Opening the container and turning swap on is all a released disk has left to do; what the
        // closed container holds is read once it is open (the mount below).
        let opens = id.starts_with("swapon:") || id.starts_with("luks-open:");
        let inside = id.starts_with("mkfs:") && mapped(id);
        ensure!(step["state"] == "done" || ((opens || inside) && step["state"] != "conflict"), "not done: {step}");
    }
    ensure!(steps.len() >= 5, "the review has too few steps: {steps:?}");
    ensure!(review["wipes"].as_array().is_some_and(Vec::is_empty), "the review wipes: {review}");
    // Mounting makes and changes nothing: it finishing shows every step of the imported plan done.
    finished(&out.join("imported-mount.jsonl"))?;
    finished(&out.join("imported-unmount.jsonl"))?;
    Ok(())
}
