//! The disk layer on real loop devices: run as root. This host's kernel scans no partitions on loop
//! devices by itself, so the partitions here appear through BLKPG, as they would on any such device.

use layouts::presets::{build, DiskFacts, PresetKind, PresetOptions};
use layouts::steps::GptPartition;
use layouts::{CompileOptions, Identity, Operation};
use partitioner::{
    check_identity, discover, ensure_free, find_disk, wipe_disk, write_partition_table, DiskInfo, InUse,
};
use testkit::loopdev::{require_root, run, serialize, LoopDisk, Mounted, SwapOn};

const SIZE: u64 = 2 << 30;

fn facts(disk: &DiskInfo) -> DiskFacts {
    DiskFacts {
        device: disk.path.clone(),
        size: Some(disk.size),
        logical_sector_size: disk.logical_sector_size,
        physical_sector_size: Some(disk.physical_sector_size),
        identity: Identity { serial: disk.serial.clone(), wwn: disk.wwn.clone(), model: disk.model.clone() },
    }
}

fn this_disk(device: &str) -> DiskInfo {
    let disks = discover().expect("discovery");
    find_disk(&disks, device).expect("the loop device is listed").clone()
}

/// The partition table a single-disk plan with swap writes to `device`.
fn planned_table(device: &str) -> (layouts::Plan, Vec<GptPartition>, u32, u64) {
    let disk = this_disk(device);
    let mut options = PresetOptions::new(PresetKind::Single, vec![facts(&disk)]);
    options.swap = Some(256 << 20);
    let plan = build(&options).expect("preset");
    let steps = plan.compile(&CompileOptions::default()).expect("compiles");
    let table = steps
        .steps
        .iter()
        .find_map(|s| match &s.operation {
            Operation::PartitionTable(table) => {
                Some((table.partitions.clone(), table.logical_sector_size, table.disk_size))
            }
            _ => None,
        })
        .expect("a partition table step");
    (plan, table.0, table.1, table.2)
}

fn partition_and_check(sector: u32) {
    let _lock = serialize();
    let disk = LoopDisk::new(SIZE, sector).expect("loop device");
    let (_, partitions, logical, size) = planned_table(&disk.device);
    assert_eq!(logical, sector);
    wipe_disk(&this_disk(&disk.device), false, &[]).expect("wipe");
    write_partition_table(&disk.device, logical, size, &partitions, None).expect("write table");

    // sgdisk reads the same table back, and finds nothing wrong with it.
    let printed = run("sgdisk", &["-p", &disk.device]).expect("sgdisk -p");
    assert!(printed.contains(&format!("Sector size (logical/physical): {sector}/")), "{printed}");
    let rows: Vec<Vec<&str>> = printed
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("Number"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{printed}");
    for (row, planned) in rows.iter().zip(&partitions) {
        assert_eq!(row[0], planned.number.to_string());
        assert_eq!(row[1], planned.extent.first_lba.to_string(), "{printed}");
        assert_eq!(row[2], planned.extent.last_lba.to_string(), "{printed}");
        assert_eq!(row.last().copied(), Some(planned.name.as_str()));
        assert_eq!(planned.extent.first_lba * u64::from(sector) % (1 << 20), 0, "not 1 MiB aligned");
    }
    let codes: Vec<&str> = rows.iter().map(|r| r[r.len() - 2]).collect();
    assert_eq!(codes, ["EF00", "8200", "BF01"]);
    let verified = run("sgdisk", &["-v", &disk.device]).expect("sgdisk -v");
    assert!(verified.contains("No problems found"), "{verified}");

    // The kernel sees the partitions, and blkid reads their names, types and UUIDs.
    for planned in &partitions {
        let node = disk.partition(planned.number);
        assert_eq!(planned.device, node);
        let export = run("blkid", &["-p", "-o", "export", &node]).expect("blkid");
        assert!(export.contains(&format!("PART_ENTRY_NAME={}", planned.name)), "{export}");
        assert!(export.contains(&format!("PART_ENTRY_UUID={}", planned.uuid)), "{export}");
        assert!(export.contains(&format!("PART_ENTRY_TYPE={}", planned.type_guid.to_lowercase())), "{export}");
    }
    let found = this_disk(&disk.device);
    assert_eq!(found.partition_table.as_deref(), Some("gpt"));
    let starts: Vec<(u32, u64, u64)> = found.partitions.iter().map(|p| (p.number, p.start, p.size)).collect();
    let planned: Vec<(u32, u64, u64)> = partitions
        .iter()
        .map(|p| (p.number, p.extent.first_lba * u64::from(sector), p.extent.sectors() * u64::from(sector)))
        .collect();
    assert_eq!(starts, planned);
    let read_back = partitioner::read_partition_table(&disk.device).expect("read").expect("a GPT");
    assert_eq!(
        read_back.iter().map(|e| e.uuid.to_lowercase()).collect::<Vec<_>>(),
        partitions.iter().map(|p| p.uuid.clone()).collect::<Vec<_>>()
    );
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn gpt_on_512_byte_sectors() {
    require_root();
    partition_and_check(512);
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn gpt_on_4096_byte_sectors() {
    require_root();
    partition_and_check(4096);
}

fn partitioned_loop() -> LoopDisk {
    let disk = LoopDisk::new(SIZE, 512).expect("loop device");
    let (_, partitions, logical, size) = planned_table(&disk.device);
    write_partition_table(&disk.device, logical, size, &partitions, None).expect("write table");
    disk
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_mounted_partition_makes_the_disk_unusable() {
    require_root();
    let _lock = serialize();
    let disk = partitioned_loop();
    let esp = disk.partition(1);
    // This host kernel mounts ext4 but not vfat.
    run("mkfs.ext4", &["-q", &esp]).expect("mkfs");
    let mounted = Mounted::new(&esp).expect("mount");
    let found = this_disk(&disk.device);
    let mountpoint = mounted.target.to_string_lossy().into_owned();
    assert!(
        found.in_use.contains(&InUse::Mounted { device: esp.clone(), mountpoint: mountpoint.clone() }),
        "{:?}",
        found.in_use
    );
    let refusal = ensure_free(&found).expect_err("refused").to_string();
    assert!(refusal.contains(&format!("{esp} is mounted at {mountpoint}")), "{refusal}");
    drop(mounted);
    assert!(this_disk(&disk.device).in_use.is_empty());
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn active_swap_makes_the_disk_unusable() {
    require_root();
    let _lock = serialize();
    let disk = partitioned_loop();
    let swap = disk.partition(2);
    run("mkswap", &[&swap]).expect("mkswap");
    let active = SwapOn::new(&swap).expect("swapon");
    let found = this_disk(&disk.device);
    assert!(found.in_use.contains(&InUse::ActiveSwap { device: swap.clone() }), "{:?}", found.in_use);
    assert!(ensure_free(&found).expect_err("refused").to_string().contains(&format!("{swap} is active swap")));
    drop(active);
    assert!(this_disk(&disk.device).in_use.is_empty());
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_different_disk_is_refused() {
    require_root();
    let _lock = serialize();
    let disk = LoopDisk::new(SIZE, 512).expect("loop device");
    let (plan, ..) = planned_table(&disk.device);
    let found = this_disk(&disk.device);
    let planned = &plan.disks["main"];
    check_identity("main", planned, &found).expect("the same disk is accepted");

    let mut other_size = planned.clone();
    other_size.size = Some(SIZE * 2);
    let error = check_identity("main", &other_size, &found).expect_err("size differs").to_string();
    assert!(error.contains("size was \"4294967296\" when planned, now \"2147483648\""), "{error}");

    let mut other_serial = planned.clone();
    other_serial.identity.serial = Some("WD-1234".into());
    let error = check_identity("main", &other_serial, &found).expect_err("serial differs").to_string();
    assert!(error.contains("serial was \"WD-1234\" when planned, now \"(none)\""), "{error}");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn wiping_leaves_no_signature() {
    require_root();
    let _lock = serialize();
    let disk = partitioned_loop();
    run("mkfs.vfat", &[&disk.partition(1)]).expect("mkfs.vfat");
    run("mkswap", &[&disk.partition(2)]).expect("mkswap");
    run("mkfs.ext4", &["-q", &disk.partition(3)]).expect("mkfs.ext4");
    let before = run("wipefs", &[&disk.device]).expect("wipefs");
    assert!(before.contains("gpt") && before.contains("PMBR"), "{before}");
    assert!(!run("wipefs", &[&disk.partition(3)]).expect("wipefs").is_empty());

    wipe_disk(&this_disk(&disk.device), false, &[]).expect("wipe");
    for device in [disk.device.clone(), disk.partition(1), disk.partition(2), disk.partition(3)] {
        let left = run("wipefs", &[&device]).expect("wipefs");
        assert!(left.trim().is_empty(), "{device} still has: {left}");
    }
    // The backup GPT at the end is gone too: sgdisk finds no table at all.
    let verify = std::process::Command::new("sgdisk").args(["-v", &disk.device]).output().expect("sgdisk");
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(text.contains("Creating new GPT entries") || text.contains("GPT: not present"), "{text}");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn luks_headers_are_wiped() {
    require_root();
    let _lock = serialize();
    let disk = partitioned_loop();
    let part = disk.partition(3);
    let mut child = std::process::Command::new("cryptsetup")
        .args([
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            "-",
            &part,
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("cryptsetup");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(b"a test key").expect("key");
    assert!(child.wait().expect("cryptsetup").success());
    assert!(run("wipefs", &[&part]).expect("wipefs").contains("crypto_LUKS"));
    wipe_disk(&this_disk(&disk.device), false, &[]).expect("wipe");
    assert_eq!(run("wipefs", &[&part]).expect("wipefs").trim(), "");
    let is_luks = std::process::Command::new("cryptsetup").args(["isLuks", &part]).status().expect("isLuks");
    assert!(!is_luks.success(), "the LUKS header survived");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn partitions_are_not_disks() {
    require_root();
    let _lock = serialize();
    let disk = partitioned_loop();
    let disks = discover().expect("discovery");
    let error = find_disk(&disks, &disk.partition(1)).expect_err("a partition").to_string();
    assert_eq!(error, format!("{}: is a partition of {}; give the whole disk", disk.partition(1), disk.device));
    let error = find_disk(&disks, "/dev/does-not-exist").expect_err("missing").to_string();
    assert!(error.starts_with("/dev/does-not-exist: cannot be resolved"), "{error}");
}

/// An MBR table with primary and logical partitions, as a plan with `table = "msdos"` writes it.
fn msdos_table(device: &str) -> layouts::steps::PartitionTable {
    let disk = this_disk(device);
    let text = format!(
        "hostname = \"mbr\"\n[disks.a]\ndevice = \"{device}\"\nsize = {}\nlogical_sector_size = {}\n\
         table = \"msdos\"\n\
         [disks.a.partitions.boot]\nsize = \"256M\"\nbootable = true\ncontent.filesystem = {{ \
         format = \"ext4\", mountpoint = \"/boot\" }}\n\
         [disks.a.partitions.swap]\nsize = \"128M\"\ncontent.swap = {{}}\n\
         [disks.a.partitions.root]\nsize = \"512M\"\nlogical = true\ncontent.filesystem = {{ \
         format = \"ext4\", mountpoint = \"/\" }}\n\
         [disks.a.partitions.data]\nsize = \"rest\"\nlogical = true\ntype = \"lvm\"\n\
         [disks.a.partitions.tail]\nsize = \"64M\"\nlogical = true\n",
        disk.size, disk.logical_sector_size
    );
    let plan = layouts::Plan::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let steps = plan.compile(&CompileOptions::default()).expect("compiles");
    steps
        .steps
        .iter()
        .find_map(|s| match &s.operation {
            Operation::PartitionTable(table) => Some(table.clone()),
            _ => None,
        })
        .expect("a partition table step")
}

fn msdos_partition_and_check(sector: u32) {
    let _lock = serialize();
    let disk = LoopDisk::new(SIZE, sector).expect("loop device");
    let table = msdos_table(&disk.device);
    let msdos = table.msdos.clone().expect("an MBR table");
    assert_eq!(table.partitions.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2, 5, 6, 7]);
    wipe_disk(&this_disk(&disk.device), false, &[]).expect("wipe");
    write_partition_table(&disk.device, table.logical_sector_size, table.disk_size, &table.partitions, Some(&msdos))
        .expect("write table");

    // sfdisk follows the chain of extended boot records and reads back each planned partition.
    let dump = run("sfdisk", &["--dump", &disk.device]).expect("sfdisk --dump");
    assert!(dump.contains("label: dos"), "{dump}");
    assert!(dump.contains(&format!("label-id: 0x{:08x}", msdos.signature)), "{dump}");
    let rows: Vec<&str> = dump.lines().filter(|l| l.starts_with(&disk.device)).collect();
    // Four entries in the MBR (two primaries, the extended one) and three logical partitions.
    assert_eq!(rows.len(), 6, "{dump}");
    for planned in &table.partitions {
        let row = rows
            .iter()
            .find(|r| r.starts_with(&format!("{} ", planned.device)))
            .unwrap_or_else(|| panic!("{} missing:\n{dump}", planned.device));
        assert!(row.contains(&format!("start={:>12}", planned.extent.first_lba)), "{row}");
        assert!(row.contains(&format!("size={:>12}", planned.extent.sectors())), "{row}");
        assert!(row.contains(&format!("type={}", planned.type_guid.to_lowercase().trim_start_matches('0'))), "{row}");
        assert_eq!(row.contains("bootable"), planned.bootable, "{row}");
        assert_eq!(planned.extent.first_lba * u64::from(sector) % (1 << 20), 0, "not 1 MiB aligned");
    }
    let extended = msdos.extended.expect("an extended partition");
    let extended_row = format!("start={:>12}, size={:>12}, type=5", extended.first_lba, extended.sectors());
    assert!(rows.iter().any(|r| r.contains(&extended_row)), "{extended_row}\n{dump}");
    let verified = run("sfdisk", &["--verify", &disk.device]).expect("sfdisk --verify");
    assert!(verified.contains("No errors detected"), "{verified}");

    // The kernel has the partitions (through BLKPG here), and blkid names them as udev's links will.
    for planned in &table.partitions {
        let export = run("blkid", &["-p", "-o", "export", &disk.partition(planned.number)]).expect("blkid");
        assert!(export.contains(&format!("PART_ENTRY_UUID={}", planned.uuid)), "{export}");
        assert!(export.contains("PART_ENTRY_SCHEME=dos"), "{export}");
    }
    let found = this_disk(&disk.device);
    assert_eq!(found.partition_table.as_deref(), Some("dos"));

    // The table reads back as written, and no GPT is taken for present.
    let state = partitioner::read_table_state(&disk.device, u64::from(sector)).expect("read");
    assert!(state.primary.is_none() && state.backup.is_none() && !state.protective_mbr);
    let mbr = state.mbr.expect("the MBR table");
    assert_eq!(mbr.signature, msdos.signature);
    assert!(!mbr.broken_chain);
    assert_eq!(mbr.extended, Some((3, extended)));
    let read: Vec<(u32, u64, u64, String, bool)> =
        mbr.entries.iter().map(|e| (e.number, e.first_lba, e.last_lba, e.uuid.to_lowercase(), e.bootable)).collect();
    let planned: Vec<(u32, u64, u64, String, bool)> = table
        .partitions
        .iter()
        .map(|p| (p.number, p.extent.first_lba, p.extent.last_lba, p.uuid.clone(), p.bootable))
        .collect();
    assert_eq!(read, planned);
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn msdos_on_512_byte_sectors() {
    require_root();
    msdos_partition_and_check(512);
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn msdos_on_4096_byte_sectors() {
    require_root();
    msdos_partition_and_check(4096);
}

/// The free space of FAT12, FAT16 and FAT32 filesystems (an ESP's) as dosfstools counts it, before and
/// after files are written into them (with mtools: this kernel has no vfat).
#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn fat_free_space_is_what_fsck_fat_counts() {
    require_root();
    let _lock = serialize();
    let kernel = std::env::temp_dir().join(format!("nix-dabei-fat-{}", std::process::id()));
    std::fs::write(&kernel, vec![7u8; 3 << 20]).expect("a file");
    for (size_mib, fat) in [(8u64, "12"), (40, "16"), (300, "32")] {
        let disk = LoopDisk::new(size_mib << 20, 512).expect("loop device");
        run("mkfs.vfat", &["-F", fat, &disk.device]).expect("mkfs.vfat");
        for written in [false, true] {
            if written {
                run("mmd", &["-i", &disk.device, "::/EFI"]).expect("mmd");
                run("mcopy", &["-i", &disk.device, &kernel.to_string_lossy(), "::/EFI/kernel"]).expect("mcopy");
            }
            let report = run("fsck.fat", &["-n", "-v", &disk.device]).expect("fsck.fat");
            let number_before = |suffix: &str| -> u64 {
                let line = report.lines().find(|l| l.trim_end().ends_with(suffix)).expect(suffix);
                line.split_whitespace().next().and_then(|n| n.parse().ok()).expect("a number")
            };
            let cluster_bytes = number_before("bytes per cluster");
            let counts = report.lines().last().and_then(|l| l.split(", ").nth(1)).expect("clusters line");
            let (used, total) = counts.trim_end_matches(" clusters").split_once('/').expect("used/total");
            let (used, total): (u64, u64) = (used.parse().expect("used"), total.parse().expect("total"));
            let space = partitioner::fat::fat_space(&disk.device).expect("a FAT");
            assert_eq!((space.clusters, space.cluster_bytes), (total, cluster_bytes), "FAT{fat}: {report}");
            assert_eq!(space.free_bytes(), (total - used) * cluster_bytes, "FAT{fat}, written {written}: {report}");
            assert!(!written || space.free_bytes() + (3 << 20) <= (total * cluster_bytes), "the file counts");
        }
    }
    let _ = std::fs::remove_file(&kernel);
    let blank = LoopDisk::new(8 << 20, 512).expect("loop device");
    let error = partitioner::fat::fat_space(&blank.device).expect_err("not a FAT");
    assert!(error.to_string().contains("not a FAT filesystem"), "{error}");
}

/// A disk whose backup GPT header declares entries it cannot hold (with valid checksums, as the
/// adversarial tests crafted it): reading its table, reading it back and discovery finish without a
/// panic; the copy counts as missing and says why, and discovery lists the disk with the reason;
/// wiping the disk removes both copies, and a new table reads back whole.
#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_crafted_backup_gpt_header_is_refused_with_its_reason_and_wiped() {
    require_root();
    let _lock = serialize();
    let disk = LoopDisk::new(64 << 20, 512).expect("loop device");
    run("sgdisk", &["-n1:0:+8M", "-n2:0:0", &disk.device]).expect("sgdisk");
    let last = (64u64 << 20) / 512 - 1;
    for (count, size, reason) in [(0xFFFF_FFFFu32, 128u32, "4294967295 entries"), (64, 100, "entries of 100 bytes")] {
        let mut image = std::fs::read(&disk.device).expect("the disk");
        let header = (last * 512) as usize;
        image[header + 80..header + 84].copy_from_slice(&count.to_le_bytes());
        image[header + 84..header + 88].copy_from_slice(&size.to_le_bytes());
        partitioner::gpt_read::seal_header(&mut image, 512, last);
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new().write(true).open(&disk.device).expect("open");
        file.seek(SeekFrom::Start(last * 512)).expect("seek");
        file.write_all(&image[header..header + 512]).expect("write the crafted header");
        file.sync_all().expect("sync");
        drop(file);

        let state = partitioner::read_table_state(&disk.device, 512).expect("no panic, no error");
        assert!(state.primary.is_some() && state.backup.is_none(), "{state:?}");
        assert!(state.unreadable.iter().any(|why| why.contains(reason)), "{:?}", state.unreadable);
        let found = this_disk(&disk.device);
        let listed = found.table_problems.iter().any(|why| why.contains(reason));
        assert!(listed, "discovery does not say why: {:?}", found.table_problems);
        match partitioner::adopt::read_back(&found) {
            Err(error) => assert!(error.to_string().contains(reason), "{error}"),
            Ok(read) => panic!("read back: {read:?}"),
        }
    }
    wipe_disk(&this_disk(&disk.device), false, &[]).expect("wipe");
    let state = partitioner::read_table_state(&disk.device, 512).expect("read");
    assert!(state.is_blank() && state.unreadable.is_empty(), "{state:?}");
}

/// One disk under two names: a second loop device over the file of a mounted one is in use, naming the
/// other and why (it was applied to, destroying the mounted filesystem); so is a loop device over a
/// partition that is mounted; and both names share one storage, which the per-disk lock goes by.
#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_second_name_of_a_disk_in_use_is_in_use() {
    require_root();
    let _lock = serialize();
    let disk = LoopDisk::new(256 << 20, 512).expect("loop device");
    run("mkfs.ext4", &["-q", &disk.device]).expect("mkfs");
    let mounted = testkit::loopdev::Mounted::new(&disk.device).expect("mount");
    let file = disk.file().to_string_lossy().into_owned();
    let second = run("losetup", &["--find", "--show", &file]).expect("a second loop device").trim().to_string();
    let found = this_disk(&second);
    let first = this_disk(&disk.device);
    let _ = run("losetup", &["-d", &second]);
    drop(mounted);
    assert_eq!(found.storage(), first.storage(), "one storage");
    let refused = ensure_free(&found).expect_err("in use under its other name").to_string();
    assert!(refused.contains(&disk.device) && refused.contains("is mounted at"), "{refused}");
    assert!(found.in_use.iter().any(|r| matches!(r, InUse::SameStorage { .. })), "{:?}", found.in_use);

    // A loop device over a mounted partition of another disk.
    let other = LoopDisk::new(256 << 20, 512).expect("loop device");
    run("sgdisk", &["-n1:0:+64M", &other.device]).expect("sgdisk");
    run("partx", &["-a", &other.device]).expect("partx");
    run("mkfs.ext4", &["-q", &other.partition(1)]).expect("mkfs");
    let mounted = testkit::loopdev::Mounted::new(&other.partition(1)).expect("mount");
    let over = run("losetup", &["--find", "--show", &other.partition(1)]).expect("a loop over it").trim().to_string();
    let found = this_disk(&over);
    let _ = run("losetup", &["-d", &over]);
    drop(mounted);
    let refused = ensure_free(&found).expect_err("in use through the partition").to_string();
    assert!(refused.contains(&other.partition(1)) || refused.contains(&other.device), "{refused}");
}

/// A table for the transition tests: partitions of the given sizes and gaps (MiB), from 1 MiB on.
fn table_of(device: &str, layout: &[(u64, u64)]) -> Vec<GptPartition> {
    let mut next = 2048u64;
    layout
        .iter()
        .enumerate()
        .map(|(index, (gap, size))| {
            let first_lba = next + gap * 2048;
            let last_lba = first_lba + size * 2048 - 1;
            next = last_lba + 1;
            GptPartition {
                number: index as u32 + 1,
                name: format!("p{}", index + 1),
                type_guid: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
                uuid: format!("00000000-0000-4000-8000-{:012x}", index + 1),
                bootable: false,
                extent: layouts::gpt::Extent { first_lba, last_lba },
                attributes: vec![],
                device: format!("{device}p{}", index + 1),
            }
        })
        .collect()
}

/// Writes `table` and checks that the kernel holds exactly its partitions.
fn write_and_check(disk: &LoopDisk, table: &[GptPartition]) -> Result<(), String> {
    write_partition_table(&disk.device, 512, 128 << 20, table, None).map_err(|e| e.to_string())?;
    let state = partitioner::read_table_state(&disk.device, 512).map_err(|e| e.to_string())?;
    let mut kernel: Vec<(u32, u64, u64)> =
        state.kernel.unwrap_or_default().iter().map(|k| (k.number, k.start, k.size)).collect();
    kernel.sort_unstable();
    let planned: Vec<(u32, u64, u64)> =
        table.iter().map(|p| (p.number, p.extent.first_lba * 512, p.extent.sectors() * 512)).collect();
    if kernel == planned {
        Ok(())
    } else {
        Err(format!("the kernel has {kernel:?}, the table {planned:?}"))
    }
}

/// Growing the first partition into the second's place (same start) on the BLKPG path: the second goes
/// before the first grows. It failed with EBUSY after the wipe and the new table, on every retry.
#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_partition_grows_into_the_place_of_one_that_goes() {
    require_root();
    let _lock = serialize();
    let disk = LoopDisk::new(128 << 20, 512).expect("loop device");
    write_and_check(&disk, &table_of(&disk.device, &[(0, 16), (0, 16)])).expect("16 + 16 MiB");
    write_and_check(&disk, &table_of(&disk.device, &[(0, 32)])).expect("grown to 32 MiB");
    write_and_check(&disk, &table_of(&disk.device, &[(0, 8), (0, 40)])).expect("shrunk, and a second after it");
}

/// Every transition between two random tables (up to four partitions, gaps between them) leaves the
/// kernel with exactly the second table's partitions: on one loop device, each case going from the last
/// case's table to its first, then to its second.
#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn every_transition_between_two_tables_reaches_the_kernel() {
    use proptest::collection::vec;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    require_root();
    let _lock = serialize();
    let disk = LoopDisk::new(128 << 20, 512).expect("loop device");
    let mut runner = TestRunner::new(Config { cases: 48, ..Config::default() });
    let tables = (vec((0u64..4, 1u64..24), 1..=4), vec((0u64..4, 1u64..24), 1..=4));
    let result = runner.run(&tables, |(before, after)| {
        write_and_check(&disk, &table_of(&disk.device, &before)).map_err(TestCaseError::fail)?;
        write_and_check(&disk, &table_of(&disk.device, &after)).map_err(TestCaseError::fail)?;
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
