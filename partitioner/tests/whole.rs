//! `fat_whole` against dosfstools' own `fsck.vfat -n` as the oracle: FATs made by `mkfs.fat` in image files
//! (no loop device needed), then each region mkfs writes lost or overwritten as a run cut inside mkfs
//! leaves it (its writes reach the disk in any order until it syncs). `fat_whole` must refuse every
//! damaged one, pass every whole one, and never pass what `fsck.vfat -n` refuses (it is stricter in one
//! place: a lost backup boot sector, which `fsck.vfat -n` lets pass, is mkfs's own write, so not whole).

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use partitioner::fat::fat_whole;

/// A directory of its own under the system's temporary one, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("nix-dabei-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).expect("temporary directory");
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn have(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program}")]).output().is_ok_and(|o| o.status.success())
}

/// Whether a program of `package` a test needs is missing (the test is then skipped, and says so).
fn lacks(package: &str, programs: &[&str]) -> bool {
    let missing = !programs.iter().all(|program| have(program));
    if missing {
        eprintln!("skipped: {package} is not installed");
    }
    missing
}

/// A FAT image of `mib` MiB made with `mkfs.fat` and the arguments given.
fn image(dir: &Path, name: &str, mib: u64, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).expect("image");
    file.set_len(mib << 20).expect("size");
    let status = Command::new("mkfs.fat").args(args).arg(&path).output().expect("mkfs.fat");
    assert!(status.status.success(), "mkfs.fat: {}", String::from_utf8_lossy(&status.stderr));
    path
}

fn u16_at(path: &Path, offset: u64) -> u64 {
    let bytes = std::fs::read(path).expect("read");
    let at = usize::try_from(offset).expect("offset");
    u64::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    let mut file = OpenOptions::new().write(true).open(path).expect("open");
    file.seek(SeekFrom::Start(offset)).expect("seek");
    file.write_all(bytes).expect("write");
}

fn fsck_passes(path: &Path) -> bool {
    Command::new("fsck.vfat").arg("-n").arg(path).output().expect("fsck.vfat").status.success()
}

/// Where mkfs put each region of a FAT32 (bytes): FSInfo, backup boot sector, the FATs, the root directory.
struct Regions {
    info: u64,
    backup: u64,
    fat: u64,
    second_fat: u64,
    root: u64,
}

fn regions(path: &Path) -> Regions {
    let sector = u16_at(path, 11);
    let reserved = u16_at(path, 14);
    let bytes = std::fs::read(path).expect("read");
    let fat_sectors = u64::from(u32::from_le_bytes([bytes[36], bytes[37], bytes[38], bytes[39]]));
    let cluster_sectors = u64::from(bytes[13]);
    let root_cluster = u64::from(u32::from_le_bytes([bytes[44], bytes[45], bytes[46], bytes[47]]));
    let data = reserved + 2 * fat_sectors;
    Regions {
        info: u16_at(path, 48) * sector,
        backup: u16_at(path, 50) * sector,
        fat: reserved * sector,
        second_fat: (reserved + fat_sectors) * sector,
        root: (data + (root_cluster - 2) * cluster_sectors) * sector,
    }
}

#[test]
fn fat_whole_says_what_fsck_vfat_says_of_whole_and_cut_short_fats() {
    if lacks("dosfstools", &["mkfs.fat", "fsck.vfat"]) {
        return;
    }
    let scratch = Scratch::new("fat-whole");
    let dir = scratch.0.as_path();
    let esp = ["-F", "32", "-n", "ESP", "-i", "1234ABCD"];
    let unlabelled = ["-F", "32", "-i", "1234ABCD"];
    let garbage = vec![0xA5u8; 4096];
    let zeros = vec![0u8; 512];
    // (case, image, whether it is whole)
    let mut cases: Vec<(String, PathBuf, bool)> = Vec::new();
    for (name, args) in [("labelled", &esp[..]), ("unlabelled", &unlabelled[..])] {
        cases.push((format!("{name}: as made"), image(dir, &format!("{name}-whole"), 128, args), true));
        let cut = |what: &str| image(dir, &format!("{name}-{what}"), 128, args);
        let path = cut("info");
        overwrite(&path, regions(&path).info, &zeros);
        cases.push((format!("{name}: FSInfo lost"), path, false));
        let path = cut("backup");
        overwrite(&path, regions(&path).backup, &zeros);
        cases.push((format!("{name}: backup boot sector lost"), path, false));
        let path = cut("fat1");
        overwrite(&path, regions(&path).fat, &zeros);
        cases.push((format!("{name}: first FAT's start lost"), path, false));
        let path = cut("fat2");
        overwrite(&path, regions(&path).second_fat, &zeros);
        cases.push((format!("{name}: second FAT's start lost"), path, false));
        let path = cut("fat2-stale");
        overwrite(&path, regions(&path).second_fat + 8192, &garbage);
        cases.push((format!("{name}: second FAT stale inside"), path, false));
        let path = cut("both-fats-stale");
        let r = regions(&path);
        overwrite(&path, r.fat + 8192, &garbage);
        overwrite(&path, r.second_fat + 8192, &garbage);
        cases.push((format!("{name}: both FATs stale inside"), path, false));
        let path = cut("root");
        overwrite(&path, regions(&path).root, &garbage);
        cases.push((format!("{name}: root directory stale"), path, false));
    }
    // Used since: files and a directory written by mtools.
    let used = image(dir, "used", 128, &esp);
    if have("mcopy") {
        let payload = dir.join("kernel");
        std::fs::write(&payload, vec![7u8; 3 << 20]).expect("payload");
        let target = format!("{}", used.display());
        for args in [
            vec!["mmd", "-i", &target, "::EFI"],
            vec!["mcopy", "-i", &target, payload.to_str().expect("a UTF-8 path"), "::EFI/"],
        ] {
            let out = Command::new(args[0]).args(&args[1..]).output().expect("mtools");
            assert!(out.status.success(), "{}: {}", args[0], String::from_utf8_lossy(&out.stderr));
        }
        cases.push(("used: a directory and a file written".into(), used, true));
    }
    // The smaller FAT types an ESP may have.
    cases.push(("FAT16 as made".into(), image(dir, "fat16", 64, &["-F", "16", "-n", "ESP"]), true));
    cases.push(("FAT12 as made".into(), image(dir, "fat12", 4, &["-F", "12"]), true));
    let path = image(dir, "fat16-fat2", 64, &["-F", "16", "-n", "ESP"]);
    let fat2 = (u16_at(&path, 14) + u16_at(&path, 22)) * u16_at(&path, 11);
    overwrite(&path, fat2, &zeros);
    cases.push(("FAT16: second FAT's start lost".into(), path, false));
    // One entry deep inside otherwise free stretches of the FAT (both copies) pointing past the last
    // cluster: at the start of a FAT32 stretch, and a FAT12 entry across two bytes.
    let path = image(dir, "fat32-far-entry", 128, &esp);
    let r = regions(&path);
    for fat in [r.fat, r.second_fat] {
        overwrite(&path, fat + (2 + 256 * 3) * 4, &0x0FFF_FFF0u32.to_le_bytes());
    }
    cases.push(("FAT32: one entry far inside points outside".into(), path, false));
    // The same past the first 768 KiB of the FAT, which is read a piece at a time; and the second copy
    // alone differing there.
    let path = image(dir, "fat32-second-piece", 128, &esp);
    let r = regions(&path);
    for fat in [r.fat, r.second_fat] {
        overwrite(&path, fat + 196_615 * 4, &0x0FFF_FFF0u32.to_le_bytes());
    }
    cases.push(("FAT32: an entry in the FAT's second piece points outside".into(), path, false));
    let path = image(dir, "fat32-second-piece-copy", 128, &esp);
    overwrite(&path, regions(&path).second_fat + 900_000, &[0x07]);
    cases.push(("FAT32: the second copy differs in the FAT's second piece".into(), path, false));
    let path = image(dir, "fat12-far-entry", 4, &["-F", "12"]);
    let (reserved, fat_sectors, sector) = (u16_at(&path, 14), u16_at(&path, 22), u16_at(&path, 11));
    for fat in [reserved * sector, (reserved + fat_sectors) * sector] {
        // Cluster 257 is odd: its 12 bits are the high nibble of byte 385 and all of byte 386.
        overwrite(&path, fat + 257 * 3 / 2, &[0x00, 0xFF]);
    }
    cases.push(("FAT12: one entry far inside points outside".into(), path, false));
    let mut disagreements = Vec::new();
    for (case, path, whole) in &cases {
        let ours = fat_whole(path.to_str().expect("a UTF-8 path")).expect("readable");
        let oracle = fsck_passes(path);
        eprintln!("{case}: fat_whole {ours:?}, fsck.vfat -n passes: {oracle}");
        if ours.is_ok() != *whole || (ours.is_ok() && !oracle) || (*whole && !oracle) {
            disagreements.push(format!("{case}: expected whole = {whole}, fat_whole {ours:?}, fsck.vfat {oracle}"));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

#[test]
fn a_fat_larger_than_its_device_is_not_whole() {
    if lacks("dosfstools", &["mkfs.fat"]) {
        return;
    }
    let scratch = Scratch::new("fat-cut");
    let path = image(&scratch.0, "cut", 64, &["-F", "32"]);
    std::fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(32 << 20).expect("truncate");
    assert!(fat_whole(path.to_str().expect("a UTF-8 path")).expect("readable").is_err());
}

#[test]
fn xfs_whole_reads_the_in_progress_flag_that_xfs_db_prints() {
    if lacks("xfsprogs", &["mkfs.xfs", "xfs_db"]) {
        return;
    }
    let scratch = Scratch::new("xfs-whole");
    let path = scratch.0.join("xfs");
    std::fs::File::create(&path).expect("image").set_len(300 << 20).expect("size");
    let made = Command::new("mkfs.xfs").arg("-q").arg(&path).output().expect("mkfs.xfs");
    assert!(made.status.success(), "mkfs.xfs: {}", String::from_utf8_lossy(&made.stderr));
    let xfs_db_says = |path: &Path| {
        let out = Command::new("xfs_db")
            .args(["-r", "-c", "sb 0", "-c", "print inprogress"])
            .arg(path)
            .output()
            .expect("xfs_db");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let device = path.to_str().expect("a UTF-8 path");
    assert_eq!(xfs_db_says(&path), "inprogress = 0");
    assert_eq!(partitioner::xfs::xfs_whole(device).expect("readable"), Ok(()));
    // As mkfs.xfs leaves it when cut before its last write.
    overwrite(&path, 126, &[1]);
    assert_eq!(xfs_db_says(&path), "inprogress = 1");
    assert!(partitioner::xfs::xfs_whole(device).expect("readable").is_err());
    // Its superblock lost: no XFS at all.
    overwrite(&path, 0, &[0; 512]);
    assert!(partitioner::xfs::xfs_whole(device).expect("readable").is_err());
}
