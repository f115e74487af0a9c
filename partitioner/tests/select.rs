//! Choosing disks by rules (`--disk-select`): what a person renting a server would ask for.

use partitioner::discover::DevNo;
use partitioner::select::{parse_rules, select, Rule, SelectError};
use partitioner::{DiskInfo, InUse};

const GIB: u64 = 1 << 30;

fn disk(name: &str, size_gib: u64, rotational: bool, transport: &str, model: &str, serial: &str) -> DiskInfo {
    DiskInfo {
        name: name.into(),
        path: format!("/dev/{name}"),
        stable_paths: vec![format!("/dev/disk/by-id/{transport}-{model}_{serial}")],
        model: Some(model.into()),
        serial: Some(serial.into()),
        wwn: None,
        size: size_gib * GIB,
        logical_sector_size: 512,
        physical_sector_size: 4096,
        rotational,
        removable: false,
        read_only: false,
        transport: Some(transport.into()),
        discard: !rotational,
        backing_file: None,
        partition_table: None,
        signatures: vec![],
        partitions: vec![],
        holders: vec![],
        mountpoints: vec![],
        swap: false,
        devno: DevNo { major: 259, minor: 0 },
        in_use: vec![],
        table_problems: vec![],
    }
}

/// A rented server: the rescue system's own USB stick, two NVMe SSDs, two big disks, one in use.
fn server() -> Vec<DiskInfo> {
    let mut usb = disk("sda", 16, false, "usb", "Cruzer", "U1");
    usb.removable = true;
    let mut busy = disk("sdc", 4000, true, "sata", "HGST_HUS726", "H2");
    busy.in_use = vec![InUse::Mounted { device: "/dev/sdc1".into(), mountpoint: "/srv".into() }];
    vec![
        usb,
        disk("nvme0n1", 512, false, "nvme", "SAMSUNG_MZVL2512", "S1"),
        disk("nvme1n1", 512, false, "nvme", "SAMSUNG_MZVL2512", "S2"),
        disk("sdb", 4000, true, "sata", "HGST_HUS726", "H1"),
        busy,
        disk("loop0", 8, false, "loop", "", ""),
    ]
}

fn names(disks: &[&DiskInfo]) -> Vec<String> {
    disks.iter().map(|d| d.name.clone()).collect()
}

#[test]
fn the_two_largest_ssds() {
    let disks = server();
    assert_eq!(names(&select("ssd,largest:2", &disks).expect("select")), ["nvme0n1", "nvme1n1"]);
}

#[test]
fn largest_skips_disks_in_use_and_says_so_when_too_few_are_left() {
    let disks = server();
    assert_eq!(names(&select("largest:1", &disks).expect("select")), ["sdb"], "sdc is bigger but mounted");
    let error = select("hdd,largest:2", &disks).expect_err("one free HDD");
    assert!(matches!(error, SelectError::TooFew { wanted: 2, found: 1, .. }), "{error}");
    assert!(error.to_string().contains("/dev/sdc in use (/dev/sdc1 is mounted at /srv)"), "{error}");
}

#[test]
fn sizes_models_serials_paths_and_transports() {
    let disks = server();
    assert_eq!(names(&select("size>1T", &disks).expect("select")), ["sdb"]);
    assert_eq!(names(&select("size<=512G,transport:nvme", &disks).expect("select")), ["nvme0n1", "nvme1n1"]);
    assert_eq!(names(&select("model:samsung,smallest:1", &disks).expect("select")), ["nvme0n1"]);
    assert_eq!(names(&select("serial:S2", &disks).expect("select")), ["nvme1n1"]);
    assert_eq!(names(&select("path:/dev/disk/by-id/nvme-*", &disks).expect("select")), ["nvme0n1", "nvme1n1"]);
    assert_eq!(names(&select("path:/dev/sdb", &disks).expect("select")), ["sdb"]);
}

#[test]
fn removable_media_and_loop_devices_count_only_when_asked_for() {
    let disks = server();
    assert!(select("transport:usb", &disks).is_err(), "the rescue stick is never chosen");
    assert!(!names(&select("smallest:1", &disks).expect("select")).contains(&"loop0".to_string()));
    assert_eq!(names(&select("transport:loop", &disks).expect("select")), ["loop0"]);
}

#[test]
fn rules_that_do_not_parse_name_themselves() {
    assert_eq!(parse_rules("ssd, largest:2").expect("rules"), [Rule::Ssd, Rule::Largest(2)]);
    for (text, needle) in [
        ("largest:0", "at least 1"),
        ("size>lots", "not a size"),
        ("fast", "unknown"),
        ("ssd,,hdd", "empty rule"),
        ("largest:1,smallest:1", "at most one"),
        ("model:", "nothing after"),
    ] {
        let error = parse_rules(text).expect_err(text).to_string();
        assert!(error.contains(needle), "{text}: {error}");
    }
}
