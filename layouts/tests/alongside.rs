//! Installing alongside kept partitions: the new partitions go into the largest free extent, an ESP with
//! room is reused at /boot, one without gets a new ESP beside it, and a disk without room is refused.

use layouts::alongside::{alongside, free_extents, AlongsideError, ESP_ROOM};
use layouts::presets::{DiskFacts, PresetKind, PresetOptions};
use layouts::{Content, Disk, Plan};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// A dual-boot disk as read back: an ESP, Windows, free space, a recovery partition at the end.
fn windows_disk(size: u64, recovery_start: u64) -> Disk {
    let text = format!(
        r#"hostname = "read-back"
[disks.main]
device = "/dev/disk/by-id/nvme-A"
size = {size}
[disks.main.partitions.p1]
number = 1
start = "1M"
size = "200M"
type = "esp"
uuid = "2f2c1b56-7d34-4c1e-9f0a-0b6a6c1d1e01"
keep = true
content.filesystem = {{ format = "vfat", uuid = "1A2B-3C4D" }}
[disks.main.partitions.p2]
number = 2
start = "201M"
size = "1G"
type = "microsoft-basic-data"
uuid = "2f2c1b56-7d34-4c1e-9f0a-0b6a6c1d1e02"
keep = true
[disks.main.partitions.p3]
number = 3
start = {recovery_start}
size = "500M"
type = "windows-recovery"
uuid = "2f2c1b56-7d34-4c1e-9f0a-0b6a6c1d1e03"
keep = true
"#
    );
    let plan = Plan::from_toml(&text).unwrap_or_else(|e| panic!("{e}"));
    plan.validate().unwrap_or_else(|e| panic!("{e}"));
    plan.disks["main"].clone()
}

fn options(size: u64) -> PresetOptions {
    PresetOptions::new(PresetKind::Ext4, vec![DiskFacts::offline("/dev/disk/by-id/nvme-A", size)])
}

fn names(plan: &Plan) -> Vec<&str> {
    plan.disks["main"].partitions.keys().map(String::as_str).collect()
}

#[test]
fn the_new_partitions_go_into_the_largest_gap_and_an_esp_with_room_is_reused() {
    // Free: 1225 MiB to 20 GiB - 500 MiB (the recovery partition at the end), and nothing else.
    let size = 20 * GIB;
    let disk = windows_disk(size, size - 501 * MIB);
    let extents = free_extents(&disk, size).expect("placed");
    assert_eq!(extents.len(), 1, "{extents:?}");
    assert_eq!((extents[0].start, extents[0].after), (1225 * MIB, 2));

    let result = alongside(&disk, &options(size), &|name| (name == "p1").then_some(ESP_ROOM + MIB)).expect("fits");
    let plan = &result.plan;
    plan.validate().unwrap_or_else(|e| panic!("{e}\n{}", plan.to_toml()));
    assert_eq!(names(plan), ["p1", "p2", "root", "p3"], "the root goes into the gap before the recovery partition");
    let esp = &plan.disks["main"].partitions["p1"];
    assert!(esp.keep, "the ESP stays kept");
    match &esp.content {
        Some(Content::Filesystem(fs)) => assert_eq!(fs.mountpoint.as_deref(), Some("/boot")),
        other => panic!("{other:?}"),
    }
    assert!(result.notes.iter().any(|n| n.contains("p1") && n.contains("reused")), "{:?}", result.notes);
    // The steps that could destroy the kept partitions carry them, so that they are refused rather than
    // run should the machine differ; the ESP is mounted at /boot.
    let steps =
        plan.compile(&layouts::CompileOptions { target: "/mnt".into(), ..Default::default() }).expect("compiles");
    for id in ["wipe:main", "gpt:main", "mkfs:main/p1"] {
        let step = steps.steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("{id}"));
        assert!(step.keeps.is_some(), "{id} does not carry what it keeps");
    }
    assert!(steps.steps.iter().any(|s| s.id == "mount:/boot"));
    // Shown without the machine, they are marked as keeping, not destroying, and not counted as such.
    let shown = steps.render();
    let wipe = shown.lines().find(|l| l.contains("Wipe disk main")).expect("the wipe");
    assert!(wipe.contains("KEEPS") && !wipe.contains("DESTROYS"), "{shown}");
    assert!(shown.contains("found done where main/p1"), "{shown}");
    assert!(steps.destructive() < steps.steps.iter().filter(|s| s.destructive).count());
}

#[test]
fn an_esp_without_room_gets_a_new_esp_beside_it() {
    let size = 20 * GIB;
    let disk = windows_disk(size, size - 501 * MIB);
    let result = alongside(&disk, &options(size), &|_| Some(70 * MIB)).expect("fits");
    result.plan.validate().unwrap_or_else(|e| panic!("{e}\n{}", result.plan.to_toml()));
    assert_eq!(names(&result.plan), ["p1", "p2", "esp", "root", "p3"]);
    assert!(result.notes.iter().any(|n| n.contains("70 MiB free")), "{:?}", result.notes);
    match &result.plan.disks["main"].partitions["p1"].content {
        Some(Content::Filesystem(fs)) => assert_eq!(fs.mountpoint, None, "the full ESP is left alone"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_largest_of_several_gaps_is_chosen_and_too_little_room_is_refused() {
    // Free: 1225 MiB .. 3 GiB (small), and 3.5 GiB .. the end (large).
    let size = 12 * GIB;
    let disk = windows_disk(size, 3 * GIB);
    let extents = free_extents(&disk, size).expect("placed");
    assert_eq!(extents.len(), 2, "{extents:?}");
    let result = alongside(&disk, &options(size), &|_| Some(ESP_ROOM)).expect("fits");
    assert_eq!(names(&result.plan), ["p1", "p2", "p3", "root"], "after the recovery partition");
    result.plan.validate().unwrap_or_else(|e| panic!("{e}\n{}", result.plan.to_toml()));

    let full = windows_disk(2 * GIB, 1225 * MIB);
    let error = alongside(&full, &options(2 * GIB), &|_| Some(10 * MIB)).expect_err("no room for an ESP of 1 GiB");
    assert!(matches!(error, AlongsideError::NoRoom { .. }), "{error}");
    assert!(error.to_string().contains("needs at least 1.0 GiB"), "{error}");
    let mirror = PresetOptions { kind: PresetKind::Mirror, ..options(size) };
    assert_eq!(alongside(&disk, &mirror, &|_| None), Err(AlongsideError::NotOneDisk));
}

#[test]
fn an_mbr_disk_is_refused_naming_its_table() {
    let mut disk = windows_disk(20 * GIB, 19 * GIB);
    disk.table = layouts::gpt::TableFormat::Msdos;
    let error = alongside(&disk, &options(20 * GIB), &|_| None).expect_err("an MBR disk");
    assert_eq!(error, AlongsideError::Mbr);
    assert!(error.to_string().contains("MBR table"), "{error}");
}
