//! Reading a disk back into a plan and keeping what is on it, on real loop devices (run as root): tables
//! made by sgdisk with unaligned and gapped partitions, 512- and 4096-byte sectors. A read-back plan is
//! found done and applying it writes nothing; a plan that would destroy a kept partition is refused
//! before anything is written; a partition added after the kept ones goes into free space and the kept
//! ones stay byte for byte.

use installer::{Event, InstallError, Mode, Options, Outlook, RealSystem, Secrets};
use layouts::{CompileOptions, Operation, Plan};
use partitioner::adopt::{read_back, ReadBackError};
use testkit::loopdev::{require_root, run, serialize, LoopDisk};

/// A disk as another system left it: an unaligned raw partition with data, an ext4 filesystem, swap, a
/// Windows data partition with attribute 63, an ESP (FAT16, as small ones are), and free space at the end.
fn foreign_disk(sector: u32) -> LoopDisk {
    let disk = LoopDisk::new(256 << 20, sector).expect("loop device");
    let first = if sector == 512 { "34" } else { "6" };
    let device = disk.device.as_str();
    let first = format!("1:{first}:+2M");
    let partitions = [
        vec!["-n", &first, "-t", "1:8300", "-c", "1:data"],
        vec!["-n", "2:5M:+32M", "-t", "2:8300"],
        vec!["-n", "3:0:+16M", "-t", "3:8200"],
        vec!["-n", "4:120M:+20M", "-t", "4:0700", "-c", "4:Basic data", "-A", "4:set:63"],
        vec!["-n", "5:150M:+40M", "-t", "5:EF00"],
    ];
    let mut args = vec!["-a", "1"];
    args.extend(partitions.concat());
    args.push(device);
    run("sgdisk", &args).expect("sgdisk");
    run("partx", &["-a", device]).expect("partx");
    run("dd", &["if=/dev/urandom", &format!("of={}", disk.partition(1)), "bs=64K", "count=32", "status=none"])
        .expect("data");
    run("mkfs.ext4", &["-q", "-L", "old-root", &disk.partition(2)]).expect("mkfs.ext4");
    run("mkswap", &[&disk.partition(3)]).expect("mkswap");
    run("mkfs.vfat", &["-n", "ESP", &disk.partition(5)]).expect("mkfs.vfat");
    run("dd", &["if=/dev/urandom", &format!("of={}", disk.partition(4)), "bs=64K", "count=16", "status=none"])
        .expect("data");
    disk
}

fn plan_of(disk: &LoopDisk) -> Plan {
    let disks = partitioner::discover().expect("discover");
    let info = partitioner::find_disk(&disks, &disk.device).expect("the loop device is found");
    let read = read_back(info).expect("read back");
    let mut plan = Plan { version: 1, hostname: "adopt".into(), ..Plan::default() };
    plan.disks.insert("disk0".into(), read.disk);
    plan.validate().unwrap_or_else(|e| panic!("the plan read back is refused: {e}\n{}", plan.to_toml()));
    plan
}

fn options() -> Options {
    let journal_dir = std::env::temp_dir().join(format!("nix-dabei-adopt-{}.state", std::process::id()));
    let _ = std::fs::remove_dir_all(&journal_dir);
    Options { mode: Mode::Apply, weak_kdf: true, journal_dir }
}

fn target() -> String {
    std::env::temp_dir().join(format!("nix-dabei-adopt-{}", std::process::id())).to_string_lossy().into_owned()
}

fn apply(plan: &Plan, confirmed: &[String]) -> Result<installer::Report, InstallError> {
    let steps = plan.compile(&CompileOptions { target: target(), ..Default::default() }).expect("compiles");
    let options = options();
    let preview = installer::preview(&RealSystem, plan, &steps, &options)?;
    let result =
        installer::execute(&RealSystem, plan, &preview, confirmed, &Secrets::default(), &options, &|_: Event| {});
    let _ = installer::teardown(&RealSystem, plan, &steps, &options, &|_: Event| {});
    result
}

/// Previews `plan` on the disk it was read from: every step is found done (kept swap is only turned on).
fn assert_found_done(plan: &Plan, sector: u32) -> installer::Preview {
    let steps = plan.compile(&CompileOptions { target: target(), ..Default::default() }).expect("compiles");
    let preview = installer::preview(&RealSystem, plan, &steps, &options()).expect("preview");
    for (step, outlook) in &preview.steps {
        match (&step.operation, outlook) {
            (Operation::Swapon(_), Outlook::Todo { destroys: false }) | (_, Outlook::Done(_)) => {}
            (_, other) => panic!("{sector}: {} is {other:?} on the disk it was read from", step.id),
        }
    }
    preview
}

fn sums(disk: &LoopDisk, numbers: &[u32]) -> Vec<String> {
    numbers.iter().map(|n| run("sha256sum", &[&disk.partition(*n)]).expect("sha256sum")).collect()
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_disk_read_back_is_found_done_and_applying_it_writes_nothing() {
    require_root();
    let _lock = serialize();
    for sector in [512, 4096] {
        let disk = foreign_disk(sector);
        let plan = plan_of(&disk);
        let kept = &plan.disks["disk0"];
        assert_eq!(kept.partitions.len(), 5, "{}", plan.to_toml());
        assert!(kept.partitions.values().all(|p| p.keep), "every partition is kept");
        let toml = plan.to_toml();
        assert!(toml.contains("format = \"ext4\"") && toml.contains("[disks.disk0.partitions.p3.content.swap]"));
        assert!(toml.contains("attributes = [63]") && toml.contains("label = \"Basic data\""), "{toml}");
        assert!(!toml.contains("mountpoint"), "a mountpoint was invented: {toml}");
        let esp = run("blkid", &["-o", "value", "-s", "UUID", &disk.partition(5)]).expect("blkid");
        assert!(toml.contains(&format!("uuid = \"{}\"", esp.trim())), "no FAT volume id: {toml}");

        let preview = assert_found_done(&plan, sector);
        assert!(preview.wipes.is_empty(), "{sector}: a wipe on a read-back disk");

        let whole = run("sha256sum", &[&disk.device]).expect("sha256sum");
        let report = apply(&plan, &[]).expect("apply of the read-back plan");
        assert_eq!(report.applied, 1, "{sector}: only swap is turned on: {report:?}");
        assert_eq!(run("sha256sum", &[&disk.device]).expect("sha256sum"), whole, "{sector}: the disk changed");
    }
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_plan_that_would_destroy_a_kept_partition_is_refused_before_anything_is_written() {
    require_root();
    let _lock = serialize();
    let disk = foreign_disk(512);
    let plan = plan_of(&disk);
    let whole = run("sha256sum", &[&disk.device]).expect("sha256sum");
    let all = vec!["disk0".to_string()];

    // Another filesystem UUID: the kept ext4 would be made again.
    let mut other_uuid = plan.clone();
    if let Some(layouts::Content::Filesystem(fs)) = &mut other_uuid.disks["disk0"].partitions["p2"].content {
        fs.uuid = Some("0b7cd0b2-3c0e-4f39-9d25-3a1e0e6f3c11".into());
    }
    let error = apply(&other_uuid, &all).expect_err("a kept filesystem would be made again").to_string();
    assert!(error.contains("mkfs:disk0/p2") && error.contains("disk0/p2 is kept"), "{error}");
    assert!(!error.contains("wipefs"), "clearing a kept filesystem is advised: {error}");

    // A kept partition one mebibyte larger: the table would be rewritten over it.
    let mut larger = plan.clone();
    let p4 = &mut larger.disks["disk0"].partitions["p4"];
    p4.size = layouts::Size::Bytes(p4.size.bytes().expect("exact") + (1 << 20));
    let error = apply(&larger, &all).expect_err("a kept partition would change").to_string();
    assert!(error.contains("wipe:disk0") && error.contains("disk0/p4"), "{error}");

    assert_eq!(run("sha256sum", &[&disk.device]).expect("sha256sum"), whole, "a refused plan wrote to the disk");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn installing_alongside_puts_a_new_partition_in_the_free_space_between_kept_ones_and_leaves_them_byte_for_byte() {
    require_root();
    let _lock = serialize();
    let disk = foreign_disk(4096);
    let before = sums(&disk, &[1, 2, 3, 4, 5]);
    let mut plan = plan_of(&disk);
    let addition = Plan::from_toml(
        "hostname = \"adopt\"\n[disks.d]\ndevice = \"/dev/null\"\nsize = 1073741824\n\
         [disks.d.partitions.root]\nsize = \"rest\"\n\
         [disks.d.partitions.root.content.filesystem]\nformat = \"ext4\"\nmountpoint = \"/\"\n",
    )
    .expect("a partition");
    let root = addition.disks["d"].partitions["root"].clone();
    // In the disk's order: after the swap (ending at 53 MiB), before the Windows data partition at 120 MiB.
    let partitions = &mut plan.disks["disk0"].partitions;
    partitions.shift_insert(3, "root".to_string(), root);
    plan.validate().unwrap_or_else(|e| panic!("{e}\n{}", plan.to_toml()));

    let report = apply(&plan, &[]).expect("install alongside needs no wipe");
    assert!(report.applied >= 3, "{report:?}");
    assert_eq!(sums(&disk, &[1, 2, 3, 4, 5]), before, "a kept partition changed");
    // The lowest free number, in the gap, aligned to 1 MiB.
    let name = disk.partition(6).trim_start_matches("/dev/").to_string();
    let sysfs = |field: &str| -> u64 {
        let text = std::fs::read_to_string(format!("/sys/class/block/{name}/{field}")).expect("the kernel sees it");
        text.trim().parse::<u64>().expect("a number") * 512
    };
    let (start, size) = (sysfs("start"), sysfs("size"));
    assert_eq!((start, start + size), (53 << 20, 120 << 20), "partition 6 is not the gap");
    let probed = run("blkid", &["-o", "value", "-s", "TYPE", &disk.partition(6)]).expect("blkid");
    assert_eq!(probed.trim(), "ext4");

    // Read back again: six partitions in the disk's order, numbered as they are, all kept, all done.
    let again = plan_of(&disk);
    let numbers: Vec<Option<u32>> = again.disks["disk0"].partitions.values().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 2, 3, 6, 4, 5].map(Some));
    assert_eq!(apply(&again, &[]).expect("apply again").applied, 1, "only swap is turned on");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn blank_disks_and_mbr_tables_out_of_order_are_refused_with_why_and_numbers_with_gaps_kept() {
    require_root();
    let _lock = serialize();
    // Primary partition 1 lies after partition 2 on the disk: a plan numbers MBR partitions in its order.
    let unordered = LoopDisk::new(64 << 20, 512).expect("loop device");
    let script = "label: dos\nstart=40960, size=8192, type=83\nstart=2048, size=8192, type=83\n";
    run("sh", &["-c", &format!("printf '{script}' | sfdisk -q {}", unordered.device)]).expect("sfdisk");
    run("partx", &["-a", &unordered.device]).expect("partx");
    let gapped = LoopDisk::new(64 << 20, 512).expect("loop device");
    run("sgdisk", &["-n", "2:0:+8M", &gapped.device]).expect("sgdisk");
    run("partx", &["-a", &gapped.device]).expect("partx");
    let blank = LoopDisk::new(64 << 20, 512).expect("loop device");
    let disks = partitioner::discover().expect("discover");
    let find = |disk: &LoopDisk| partitioner::find_disk(&disks, &disk.device).expect("found").clone();
    let error = read_back(&find(&unordered)).expect_err("numbers against the disk's order").to_string();
    assert!(error.contains("MBR partition 2 is not the 1. primary partition in the disk's order"), "{error}");
    assert!(matches!(read_back(&find(&blank)), Err(ReadBackError::NoTable { .. })));
    let read = read_back(&find(&gapped)).expect("a table without partition 1");
    let numbers: Vec<(&String, Option<u32>)> = read.disk.partitions.iter().map(|(n, p)| (n, p.number)).collect();
    assert_eq!(numbers, [(&"p2".to_string(), Some(2))]);
}

/// A disk with an MBR table as fdisk's sfdisk leaves it: signature 0x1a2b3c4d, a FAT partition at the
/// old DOS alignment (sector 63), a bootable ext4, a Windows (0x07) partition of random data, and free
/// space at the end.
fn foreign_mbr_disk(sector: u32) -> LoopDisk {
    let disk = LoopDisk::new(256 << 20, sector).expect("loop device");
    let mib = (1 << 20) / u64::from(sector);
    let script = format!(
        "label: dos\nlabel-id: 0x1a2b3c4d\nstart=63, size={}, type=c\nstart={}, size={}, type=83, bootable\n\
         start={}, size={}, type=7\n",
        40 * mib,
        48 * mib,
        32 * mib,
        100 * mib,
        20 * mib
    );
    run("sh", &["-c", &format!("printf '{script}' | sfdisk -q {}", disk.device)]).expect("sfdisk");
    run("partx", &["-a", &disk.device]).expect("partx");
    run("mkfs.vfat", &["-n", "OLDFAT", &disk.partition(1)]).expect("mkfs.vfat");
    run("mkfs.ext4", &["-q", "-L", "old-boot", &disk.partition(2)]).expect("mkfs.ext4");
    run("dd", &["if=/dev/urandom", &format!("of={}", disk.partition(3)), "bs=64K", "count=16", "status=none"])
        .expect("data");
    disk
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn an_mbr_disk_is_read_back_done_and_a_partition_goes_into_its_free_space_leaving_the_others_as_they_were() {
    require_root();
    let _lock = serialize();
    for sector in [512u32, 4096] {
        let disk = foreign_mbr_disk(sector);
        let plan = plan_of(&disk);
        let toml = plan.to_toml();
        let kept = &plan.disks["disk0"];
        assert_eq!(kept.table, layouts::gpt::TableFormat::Msdos, "{toml}");
        assert_eq!(kept.signature.as_deref(), Some("1a2b3c4d"), "{toml}");
        let starts: Vec<Option<u64>> = kept.partitions.values().map(|p| p.start.and_then(|s| s.bytes())).collect();
        let sector_bytes = u64::from(sector);
        assert_eq!(starts, [Some(63 * sector_bytes), Some(48 << 20), Some(100 << 20)], "{toml}");
        let kinds: Vec<Option<&str>> = kept.partitions.values().map(|p| p.kind.as_deref()).collect();
        assert_eq!(kinds, [Some("0x0c"), Some("linux"), Some("0x07")]);
        let flags: Vec<bool> = kept.partitions.values().map(|p| p.bootable).collect();
        assert_eq!(flags, [false, true, false]);
        assert!(toml.contains("format = \"vfat\"") && toml.contains("format = \"ext4\""), "{toml}");

        let whole = run("sha256sum", &[&disk.device]).expect("sha256sum");
        assert_found_done(&plan, sector);
        assert_eq!(apply(&plan, &[]).expect("apply of the read-back plan").applied, 0);
        assert_eq!(run("sha256sum", &[&disk.device]).expect("sha256sum"), whole, "{sector}: the disk changed");

        // Another signature: not this table; it would be written anew over the kept partitions: refused.
        let mut other = plan.clone();
        other.disks["disk0"].signature = Some("0badcafe".into());
        let error = apply(&other, &["disk0".to_string()]).expect_err("another table").to_string();
        assert!(error.contains("wipe:disk0") && error.contains("is kept"), "{error}");

        // Alongside: a fourth primary partition in the free space after the last.
        let before = sums(&disk, &[1, 2, 3]);
        let mut alongside = plan.clone();
        let addition = Plan::from_toml(
            "hostname = \"adopt\"\n[disks.d]\ndevice = \"/dev/null\"\nsize = 1073741824\ntable = \"msdos\"\n\
             [disks.d.partitions.root]\nsize = \"rest\"\n\
             [disks.d.partitions.root.content.filesystem]\nformat = \"ext4\"\nmountpoint = \"/\"\n",
        )
        .expect("a partition");
        alongside.disks["disk0"].partitions.insert("root".into(), addition.disks["d"].partitions["root"].clone());
        alongside.validate().unwrap_or_else(|e| panic!("{e}\n{}", alongside.to_toml()));
        let report = apply(&alongside, &[]).expect("alongside on MBR needs no wipe");
        assert!(report.applied >= 2, "{report:?}");
        assert_eq!(sums(&disk, &[1, 2, 3]), before, "{sector}: a kept partition changed");
        let probed = run("blkid", &["-o", "value", "-s", "TYPE", &disk.partition(4)]).expect("blkid");
        assert_eq!(probed.trim(), "ext4");
        let again = plan_of(&disk);
        assert_eq!(again.disks["disk0"].partitions.len(), 4);
        assert_eq!(apply(&again, &[]).expect("apply again").applied, 0, "{sector}");
    }
}

/// A disk with an MBR table with logical partitions as sfdisk makes them: a primary ext4, the extended
/// partition up to the disk's end (entry 2), an ext4 with a file (5) and swap (6) in it, each after its boot
/// record, and free space after them inside the extended partition.
fn foreign_logical_disk(sector: u32) -> LoopDisk {
    let disk = LoopDisk::new(128 << 20, sector).expect("loop device");
    let mib = (1 << 20) / u64::from(sector);
    let script = format!(
        "label: dos\nlabel-id: 0x5eed1e55\nstart={}, size={}, type=83\nstart={}, type=5\n\
         start={}, size={}, type=83\nstart={}, size={}, type=82\n",
        mib,
        16 * mib,
        20 * mib,
        21 * mib,
        16 * mib,
        40 * mib,
        8 * mib
    );
    run("sh", &["-c", &format!("printf '{script}' | sfdisk -q {}", disk.device)]).expect("sfdisk");
    // partx adds the extended partition as 1 KiB, which a disk of 4096-byte sectors refuses: the others
    // one by one.
    for number in ["1:1", "5:6"] {
        run("partx", &["-a", "-n", number, &disk.device]).expect("partx");
    }
    run("mkfs.ext4", &["-q", "-L", "first", &disk.partition(1)]).expect("mkfs.ext4");
    run("mkfs.ext4", &["-q", "-L", "logical", &disk.partition(5)]).expect("mkfs.ext4");
    run("mkswap", &[&disk.partition(6)]).expect("mkswap");
    disk
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn an_mbr_table_with_logical_partitions_is_read_back_with_its_extended_partition_and_found_done() {
    require_root();
    let _lock = serialize();
    for sector in [512u32, 4096] {
        let disk = foreign_logical_disk(sector);
        let plan = plan_of(&disk);
        let toml = plan.to_toml();
        let kept = &plan.disks["disk0"];
        assert_eq!(kept.signature.as_deref(), Some("5eed1e55"), "{toml}");
        let extended = kept.extended.expect("the extended partition is read back");
        assert_eq!(extended.start.bytes(), Some(20 << 20), "{toml}");
        assert_eq!(extended.size.bytes(), Some((128 - 20) << 20), "it reaches the disk's end: {toml}");
        let logical: Vec<bool> = kept.partitions.values().map(|p| p.logical).collect();
        assert_eq!(logical, [false, true, true], "{toml}");
        assert_eq!(kept.partition_numbers(), [1, 5, 6]);
        let starts: Vec<Option<u64>> = kept.partitions.values().map(|p| p.start.and_then(|s| s.bytes())).collect();
        assert_eq!(starts, [Some(1 << 20), Some(21 << 20), Some(40 << 20)], "{toml}");
        assert!(toml.contains("label = \"logical\"") && toml.contains("content.swap"), "{toml}");
        // disko's legacy table gets the extended partition where it is, before the logical ones.
        let disko = layouts::disko::export(&plan).expect("export-disko");
        let at = |text: &str| disko.find(text).unwrap_or_else(|| panic!("no {text} in {disko}"));
        assert!(at("part-type = \"extended\"") < at("part-type = \"logical\""), "{disko}");
        assert!(disko.contains("start = \"20MiB\"") && disko.contains("end = \"128MiB\""), "{disko}");

        let whole = run("sha256sum", &[&disk.device]).expect("sha256sum");
        assert_found_done(&plan, sector);
        assert_eq!(apply(&plan, &[]).expect("apply of the read-back plan").applied, 1, "{sector}: swap only");
        assert_eq!(run("sha256sum", &[&disk.device]).expect("sha256sum"), whole, "{sector}: the disk changed");

        // The extended partition elsewhere: not this table, and rewriting it would destroy: refused.
        let mut other = plan.clone();
        let moved = layouts::gpt::ExtendedPartition { start: layouts::Size::Bytes(19 << 20), ..extended };
        other.disks["disk0"].extended = Some(moved);
        other.validate().expect("a valid plan, of another table");
        let error = apply(&other, &["disk0".to_string()]).expect_err("another table").to_string();
        assert!(error.contains("is kept"), "{error}");
        assert_eq!(run("sha256sum", &[&disk.device]).expect("sha256sum"), whole, "{sector}: the disk changed");
    }
}

/// Removes a volume group made for a test, whatever happened.
struct VolumeGroupGone(String);

impl Drop for VolumeGroupGone {
    fn drop(&mut self) {
        let _ = std::process::Command::new("vgremove").args(["--force", "--yes", &self.0]).output();
    }
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_volume_group_is_read_back_kept_by_its_uuid_and_another_uuid_is_refused() {
    require_root();
    let _lock = serialize();
    // No device-mapper here: a group without volumes, which LVM makes and reads without activating anything.
    let disk = LoopDisk::new(64 << 20, 512).expect("loop device");
    run("sgdisk", &["-n", "1:1M:+32M", "-t", "1:8E00", &disk.device]).expect("sgdisk");
    run("partx", &["-a", &disk.device]).expect("partx");
    let group = format!("ndprobe{}", std::process::id());
    run("pvcreate", &["--yes", &disk.partition(1)]).expect("pvcreate");
    run("vgcreate", &["--yes", &group, &disk.partition(1)]).expect("vgcreate");
    let _gone = VolumeGroupGone(group.clone());
    let report = |fields: &str| run("pvs", &["--noheadings", "-o", fields, &disk.partition(1)]).expect("pvs");
    let (pv_uuid, vg_uuid) = (report("pv_uuid").trim().to_string(), report("vg_uuid").trim().to_string());

    let mut plan = plan_of(&disk);
    let open = installer::adopt::OpenContainers::none(&RealSystem);
    let lines = installer::adopt::read_volume_groups(&RealSystem, &mut plan, open).expect("groups read");
    assert!(lines.iter().any(|l| l.contains(&format!("volume group {group} (UUID {vg_uuid})"))), "{lines:?}");
    plan.validate().unwrap_or_else(|e| panic!("the plan read back is refused: {e}\n{}", plan.to_toml()));
    let read = &plan.volume_groups[&group];
    assert!(read.keep && read.uuid.as_deref() == Some(vg_uuid.as_str()), "{}", plan.to_toml());
    let pv = match &plan.disks["disk0"].partitions["p1"].content {
        Some(layouts::Content::LvmPv(pv)) => pv.clone(),
        other => panic!("the physical volume is not read back: {other:?}"),
    };
    assert_eq!((pv.volume_group.as_str(), pv.uuid.as_deref()), (group.as_str(), Some(pv_uuid.as_str())));
    let disko = layouts::disko::export(&plan).expect("export-disko");
    assert!(disko.contains("type = \"lvm_vg\"") && disko.contains(&format!("vg = \"{group}\"")), "{disko}");

    let whole = run("sha256sum", &[&disk.device]).expect("sha256sum");
    assert_found_done(&plan, 512);
    assert_eq!(apply(&plan, &[]).expect("apply of the read-back plan").applied, 0);
    assert_eq!(run("sha256sum", &[&disk.device]).expect("sha256sum"), whole, "the disk changed");

    // Another group UUID: not this group, which is never made anew: refused, nothing written.
    let mut other = plan.clone();
    other.volume_groups[&group].uuid = Some("AAAAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAAAA".into());
    let error = apply(&other, &["disk0".to_string()]).expect_err("another group").to_string();
    assert!(error.contains("not the kept group's AAAAAA-AAAA"), "{error}");
    assert_eq!(run("sha256sum", &[&disk.device]).expect("sha256sum"), whole, "the disk changed");
}

/// What a random partition holds.
#[derive(Debug, Clone, Copy)]
enum Holds {
    Nothing,
    Vfat,
    Ext4,
    Swap,
}

/// A plan of random partitions (1 to 24 MiB each, FAT 34 MiB at least, the last possibly "rest") on `device`.
fn random_plan(device: &str, size: u64, sector: u32, partitions: &[(u64, Holds)], rest: bool) -> Plan {
    let mut text = format!(
        "hostname = \"random\"\n[disks.disk0]\ndevice = \"{device}\"\nsize = {size}\nlogical_sector_size = {sector}\n"
    );
    for (index, (mib, holds)) in partitions.iter().enumerate() {
        // FAT32 needs 65525 clusters: 33 MiB with 512-byte sectors, more than the disk with 4096-byte ones.
        let holds = match holds {
            Holds::Vfat if sector == 4096 => &Holds::Ext4,
            other => other,
        };
        let mib = if matches!(holds, Holds::Vfat) { (*mib).max(34) } else { *mib };
        let size = if rest && index + 1 == partitions.len() { "\"rest\"".to_string() } else { format!("\"{mib}M\"") };
        text.push_str(&format!("[disks.disk0.partitions.p{index}]\nsize = {size}\n"));
        match holds {
            Holds::Nothing => {}
            Holds::Vfat => text.push_str("content.filesystem = { format = \"vfat\" }\n"),
            Holds::Ext4 => text.push_str("content.filesystem = { format = \"ext4\" }\n"),
            Holds::Swap => text.push_str("content.swap = {}\n"),
        }
    }
    Plan::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

proptest::proptest! {
    // Each case makes filesystems on a loop device: a few cases, and no file of failures in the tree.
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 5,
        max_shrink_iters: 4,
        failure_persistence: None,
        ..Default::default()
    })]

    /// Whatever a plan made, probe reads back as done: the same partitions (sizes, types, UUIDs of
    /// partitions, filesystems and swap), and applying the read-back plan writes nothing.
    #[test]
    #[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
    fn whatever_apply_made_probe_reads_back_as_done(
        sector in proptest::sample::select(vec![512u32, 4096]),
        partitions in proptest::collection::vec(
            (1u64..=24, proptest::sample::select(vec![Holds::Nothing, Holds::Vfat, Holds::Ext4, Holds::Swap])),
            1..=5,
        ),
        rest in proptest::bool::ANY,
    ) {
        require_root();
        let _lock = serialize();
        let disk = LoopDisk::new(256 << 20, sector).expect("loop device");
        let size = run("blockdev", &["--getsize64", &disk.device]).expect("size").trim().parse().expect("bytes");
        let planned = random_plan(&disk.device, size, sector, &partitions, rest);
        apply(&planned, &["disk0".to_string()]).unwrap_or_else(|e| panic!("apply: {e}\n{}", planned.to_toml()));

        let read = plan_of(&disk);
        let (made, probed) = (&planned.disks["disk0"].partitions, &read.disks["disk0"].partitions);
        proptest::prop_assert_eq!(made.len(), probed.len(), "{}", read.to_toml());
        let steps = planned.compile(&CompileOptions { target: target(), ..Default::default() }).expect("compiles");
        let layout = installer::preview(&RealSystem, &planned, &steps, &options()).expect("preview of the plan");
        for ((_, made), (_, probed)) in made.iter().zip(probed.iter()) {
            if let Some(exact) = made.size.bytes() {
                proptest::prop_assert_eq!(probed.size.bytes(), Some(exact));
            }
            let content = |p: &layouts::Partition| p.content.as_ref().map(std::mem::discriminant);
            proptest::prop_assert_eq!(content(made), content(probed));
        }
        for (step, outlook) in &layout.steps {
            let done = matches!(outlook, Outlook::Done(_)) || matches!(step.operation, Operation::Swapon(_));
            proptest::prop_assert!(done, "{} of the applied plan is {:?}", step.id, outlook);
        }

        let steps = read.compile(&CompileOptions { target: target(), ..Default::default() }).expect("compiles");
        let preview = installer::preview(&RealSystem, &read, &steps, &options()).expect("preview");
        for (step, outlook) in &preview.steps {
            proptest::prop_assert!(
                matches!(outlook, Outlook::Done(_)) || matches!(step.operation, Operation::Swapon(_)),
                "{} is {:?} on the disk it was read from:\n{}", step.id, outlook, read.to_toml()
            );
        }
        let whole = run("sha256sum", &[&disk.device]).expect("sha256sum");
        apply(&read, &[]).expect("apply of the read-back plan");
        proptest::prop_assert_eq!(run("sha256sum", &[&disk.device]).expect("sha256sum"), whole);
    }
}

/// The free space after a disk's last partition is taken by it and by the filesystem on it (ext4
/// offline, xfs and btrfs mounted privately): the review shows both as changes, the data stays, the other
/// partition stays byte for byte, and applying again does nothing.
#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn the_last_kept_partition_grows_into_the_free_space_after_it_and_its_filesystem_with_it() {
    require_root();
    let _lock = serialize();
    let mountpoint = std::env::temp_dir().join(format!("nix-dabei-grow-{}", std::process::id()));
    std::fs::create_dir_all(&mountpoint).expect("dir");
    let mountpoint = mountpoint.to_string_lossy().into_owned();
    for (format, mkfs) in [("ext4", "mkfs.ext4"), ("xfs", "mkfs.xfs"), ("btrfs", "mkfs.btrfs")] {
        let disk = LoopDisk::new(1 << 30, 512).expect("loop device");
        run("sgdisk", &["-n", "1:1M:+16M", "-t", "1:8300", "-n", "2:17M:+320M", "-t", "2:8300", &disk.device])
            .expect("sgdisk");
        run("partx", &["-a", &disk.device]).expect("partx");
        run("dd", &["if=/dev/urandom", &format!("of={}", disk.partition(1)), "bs=64K", "count=16", "status=none"])
            .expect("data");
        run(mkfs, &["-q", &disk.partition(2)]).expect("mkfs");
        let file = format!("{mountpoint}/data");
        run("mount", &[&disk.partition(2), &mountpoint]).expect("mount");
        run("dd", &["if=/dev/urandom", &format!("of={file}"), "bs=64K", "count=32", "status=none"]).expect("a file");
        let data = run("sha256sum", &[&file]).expect("sha256sum");
        let size_before = df_size(&mountpoint);
        run("umount", &[&mountpoint]).expect("umount");
        let other = sums(&disk, &[1]);

        let mut plan = plan_of(&disk);
        // Only the plan's last partition grows: one with a new partition after it in the plan is refused.
        if format == "ext4" {
            let mut before_another = plan.clone();
            let p2 = &mut before_another.disks["disk0"].partitions["p2"];
            p2.size = layouts::Size::Bytes(p2.size.bytes().expect("exact") + (16 << 20));
            let mut new = p2.clone();
            (new.keep, new.start, new.number, new.uuid, new.content, new.size) =
                (false, None, None, None, None, layouts::Size::Rest);
            before_another.disks["disk0"].partitions.insert("new".into(), new);
            let whole = run("sha256sum", &[&disk.device]).expect("sha256sum");
            let error = apply(&before_another, &["disk0".to_string()]).expect_err("not the last").to_string();
            assert!(error.contains("disk0/p2"), "{error}");
            assert_eq!(run("sha256sum", &[&disk.device]).expect("sha256sum"), whole, "a refused plan wrote");
        }
        plan.disks["disk0"].partitions["p2"].size = layouts::Size::Rest;
        plan.validate().unwrap_or_else(|e| panic!("{format}: a growing last partition is refused: {e}"));
        let steps = plan.compile(&CompileOptions { target: target(), ..Default::default() }).expect("compiles");
        let preview = installer::preview(&RealSystem, &plan, &steps, &options()).expect("preview");
        let state = |id: &str| preview.steps.iter().find(|(s, _)| s.id == id).map(|(_, o)| o.clone());
        assert!(matches!(state("gpt:disk0"), Some(Outlook::Change(what)) if what.contains("partition 2 grows")));
        assert!(matches!(state("grow:disk0/p2"), Some(Outlook::Change(_))), "{format}: {:?}", preview.steps);
        assert!(matches!(state("wipe:disk0"), Some(Outlook::Done(_))), "{format}");
        assert!(preview.wipes.is_empty(), "{format}: growing wipes nothing");

        let report = apply(&plan, &[]).expect("growing needs no confirmation");
        assert_eq!(report.applied, 2, "{format}: {report:?}");
        let name = disk.partition(2).trim_start_matches("/dev/").to_string();
        let sectors: u64 = std::fs::read_to_string(format!("/sys/class/block/{name}/size"))
            .expect("the kernel sees partition 2")
            .trim()
            .parse()
            .expect("a number");
        assert!(sectors * 512 > 1000 << 20, "{format}: partition 2 did not grow: {sectors} sectors");
        run("mount", &[&disk.partition(2), &mountpoint]).expect("mount the grown filesystem");
        let (data_after, size_after) = (run("sha256sum", &[&file]), df_size(&mountpoint));
        run("umount", &[&mountpoint]).expect("umount");
        assert_eq!(data_after.expect("the file is there"), data, "{format}: the data changed");
        assert!(size_after > size_before + (600 << 20), "{format}: {size_before} -> {size_after} bytes");
        assert_eq!(sums(&disk, &[1]), other, "{format}: the other partition changed");
        assert_eq!(apply(&plan, &[]).expect("apply again").applied, 0, "{format}: applying again did something");
    }
}

/// The size `df` gives a mounted filesystem, in bytes.
fn df_size(mountpoint: &str) -> u64 {
    let out = run("df", &["-B1", "--output=size", mountpoint]).expect("df");
    out.lines().last().and_then(|l| l.trim().parse().ok()).expect("a size")
}

/// Installing alongside keeps what it keeps exactly: a kept partition's name that no text can hold (an
/// unpaired UTF-16 surrogate, read as U+FFFD) goes back byte for byte, and a hybrid MBR (a protective
/// entry beside one for partition 1, which sgdisk -h makes) stays as it was; the result is found done.
#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn installing_alongside_keeps_odd_names_and_a_hybrid_mbr_byte_for_byte() {
    use std::io::{Read, Seek, SeekFrom};
    require_root();
    let _lock = serialize();
    let disk = foreign_disk(512);
    let sectors = (256u64 << 20) / 512;
    // "da", an unpaired high surrogate, "t".
    let mut odd = [0u8; 72];
    odd[..8].copy_from_slice(&[0x64, 0, 0x61, 0, 0x00, 0xD8, 0x74, 0]);
    {
        let mut file = std::fs::OpenOptions::new().read(true).write(true).open(&disk.device).expect("open");
        partitioner::gpt_read::write_raw_names(&mut file, 512, sectors, &[(1, odd)]).expect("an odd name");
        file.sync_all().expect("sync");
    }
    run("sgdisk", &["-h", "1", &disk.device]).expect("a hybrid MBR");
    let sector0 = |device: &str| {
        let mut bytes = vec![0u8; 512];
        let mut file = std::fs::File::open(device).expect("open");
        file.seek(SeekFrom::Start(0)).expect("seek");
        file.read_exact(&mut bytes).expect("read");
        bytes
    };
    let mbr_before = sector0(&disk.device);
    assert!(partitioner::gpt_read::is_hybrid_mbr(&mbr_before), "sgdisk made no hybrid MBR");

    let mut plan = plan_of(&disk);
    assert_eq!(
        plan.disks["disk0"].partitions.values().next().and_then(|p| p.label.clone()).as_deref(),
        Some("da\u{fffd}t")
    );
    let addition = Plan::from_toml(
        "hostname = \"adopt\"\n[disks.d]\ndevice = \"/dev/null\"\nsize = 1073741824\n\
         [disks.d.partitions.root]\nsize = \"rest\"\n\
         [disks.d.partitions.root.content.filesystem]\nformat = \"ext4\"\nmountpoint = \"/\"\n",
    )
    .expect("a partition");
    plan.disks["disk0"].partitions.shift_insert(3, "root".to_string(), addition.disks["d"].partitions["root"].clone());
    plan.validate().unwrap_or_else(|e| panic!("{e}\n{}", plan.to_toml()));
    apply(&plan, &[]).expect("install alongside");

    let mut file = std::fs::File::open(&disk.device).expect("open");
    let names = partitioner::gpt_read::raw_names(&mut file, 512, sectors).expect("names");
    assert_eq!(names.iter().find(|n| n.number == 1).map(|n| n.bytes), Some(odd), "the kept name was rewritten");
    assert_eq!(sector0(&disk.device), mbr_before, "the hybrid MBR was replaced");
    assert_eq!(apply(&plan_of(&disk), &[]).expect("apply again").applied, 1, "only swap is turned on");
}

/// An ESP that holds no filesystem yet is read back as it is (kept, no content), not refused; the plan
/// read back is found done, and one that gives it a FAT (no longer kept: made where it is) formats it
/// while the other partition stays byte for byte.
#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn an_esp_without_a_filesystem_is_read_back_and_may_be_formatted() {
    require_root();
    let _lock = serialize();
    let disk = LoopDisk::new(256 << 20, 512).expect("loop device");
    run("sgdisk", &["-n1:0:+64M", "-t1:EF00", "-n2:0:+64M", "-t2:8300", &disk.device]).expect("sgdisk");
    run("partx", &["-a", &disk.device]).expect("partx");
    run("mkfs.ext4", &["-q", &disk.partition(2)]).expect("mkfs.ext4");
    let mut plan = plan_of(&disk);
    let esp = plan.disks["disk0"].partitions.values().next().cloned().expect("the ESP");
    assert!(esp.keep && esp.content.is_none() && esp.is_esp(), "{esp:?}");
    assert_found_done(&plan, 512);
    let fat = Plan::from_toml(
        "hostname = \"adopt\"\n[disks.d]\ndevice = \"/dev/null\"\nsize = 1073741824\n\
         [disks.d.partitions.esp]\nsize = \"64M\"\ntype = \"esp\"\n\
         [disks.d.partitions.esp.content.filesystem]\nformat = \"vfat\"\n",
    )
    .expect("an ESP");
    // Formatting it is making it anew where it is: no longer kept, at its place and number.
    let first = plan.disks["disk0"].partitions.values_mut().next().expect("the ESP");
    first.keep = false;
    first.content = fat.disks["d"].partitions["esp"].content.clone();
    plan.validate().unwrap_or_else(|e| panic!("{e}\n{}", plan.to_toml()));
    let before = sums(&disk, &[2]);
    apply(&plan, &[]).expect("format the ESP");
    let kind = run("blkid", &["-o", "value", "-s", "TYPE", &disk.partition(1)]).expect("blkid");
    assert_eq!(kind.trim(), "vfat");
    assert_eq!(sums(&disk, &[2]), before, "the other partition changed");
}
