//! Discovery: every whole disk of the machine, what is on it and what uses it, from sysfs, /proc and
//! libblkid, with udev's properties added when udevd runs.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::DiskError;
use crate::probe::{probe_signatures, Signature};
use crate::safety::{self, InUse};

/// A device number, `major:minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DevNo {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl DevNo {
    fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.trim().split_once(':')?;
        Some(DevNo { major: major.parse().ok()?, minor: minor.parse().ok()? })
    }

    fn from_rdev(rdev: u64) -> Self {
        DevNo { major: nix::sys::stat::major(rdev) as u32, minor: nix::sys::stat::minor(rdev) as u32 }
    }
}

/// One partition of a disk, as the kernel sees it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// Kernel name, such as `vda1`.
    pub name: String,
    /// Device node.
    pub path: String,
    /// Partition number.
    pub number: u32,
    /// Start in bytes.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
    /// GPT partition name, where udev or the table tells it.
    pub label: Option<String>,
    /// Signatures found on it.
    pub signatures: Vec<Signature>,
    /// Devices built on it (dm, md).
    pub holders: Vec<String>,
    /// Where it is mounted.
    pub mountpoints: Vec<String>,
    /// Whether it is active swap.
    pub swap: bool,
    /// Device number.
    pub devno: DevNo,
}

/// A whole disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Kernel name, such as `vda` or `nvme0n1`.
    pub name: String,
    /// Device node, `/dev/<name>`.
    pub path: String,
    /// Stable links to it under /dev/disk/by-id and /dev/disk/by-path (when udev made them).
    pub stable_paths: Vec<String>,
    /// Model.
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// World Wide Name.
    pub wwn: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Logical sector size in bytes.
    pub logical_sector_size: u32,
    /// Physical sector size in bytes.
    pub physical_sector_size: u32,
    /// Spinning disk.
    pub rotational: bool,
    /// Removable medium.
    pub removable: bool,
    /// Read-only.
    pub read_only: bool,
    /// How it is attached: virtio, nvme, sata, scsi, usb, mmc, loop.
    pub transport: Option<String>,
    /// Whether it accepts discards.
    pub discard: bool,
    /// For loop devices, the file behind it.
    pub backing_file: Option<String>,
    /// Partition table type found (gpt, dos).
    pub partition_table: Option<String>,
    /// Signatures on the whole disk.
    pub signatures: Vec<Signature>,
    /// Its partitions.
    pub partitions: Vec<PartitionInfo>,
    /// Devices built on the whole disk (dm, md).
    pub holders: Vec<String>,
    /// Where the whole disk is mounted.
    pub mountpoints: Vec<String>,
    /// Whether the whole disk is active swap.
    pub swap: bool,
    /// Device number.
    pub devno: DevNo,
    /// Every reason it must not be written; empty when it is free to use.
    pub in_use: Vec<InUse>,
    /// Why its partition table cannot be read (a GPT header that declares what no table has, or the
    /// device failing to read): such a disk is listed, and replaced only by a confirmed wipe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub table_problems: Vec<String>,
}

impl DiskInfo {
    /// What the disk's bytes are, whatever its name: for a loop device, its backing file (`file-DEV-INODE`)
    /// or block device (`block-MAJOR-MINOR`, the same as that device's own); for any other disk its device
    /// number. Two disks with one storage are one disk: the in-use checks and the per-disk lock go by it.
    pub fn storage(&self) -> String {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let backing = self
            .backing_file
            .as_deref()
            .filter(|path| !path.ends_with(" (deleted)"))
            .and_then(|path| fs::metadata(path).ok());
        match backing {
            Some(meta) if meta.file_type().is_block_device() => {
                let rdev = meta.rdev();
                format!("block-{}-{}", nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
            }
            Some(meta) => format!("file-{}-{}", meta.dev(), meta.ino()),
            None => format!("block-{}-{}", self.devno.major, self.devno.minor),
        }
    }

    /// The storage of each partition, for a loop device over one of them.
    fn partition_storages(&self) -> Vec<String> {
        self.partitions.iter().map(|p| format!("block-{}-{}", p.devno.major, p.devno.minor)).collect()
    }

    /// The best path to record in a plan: a by-id link when there is one (serial-based ones first, then
    /// WWN-based ones), else a by-path link, else the kernel name.
    pub fn preferred_path(&self) -> &str {
        let by_id = |wwn: bool| {
            self.stable_paths.iter().find(|p| {
                p.starts_with("/dev/disk/by-id/") && p.contains("/by-id/wwn-") == wwn && !p.contains("/by-id/nvme-eui.")
            })
        };
        by_id(false)
            .or_else(|| by_id(true))
            .or_else(|| self.stable_paths.iter().find(|p| p.starts_with("/dev/disk/by-path/")))
            .map_or(self.path.as_str(), String::as_str)
    }
}

/// Where discovery looks; tests may point it elsewhere.
#[derive(Debug, Clone)]
pub struct SystemRoots {
    /// Usually `/sys`.
    pub sys: PathBuf,
    /// Usually `/proc`.
    pub proc: PathBuf,
    /// Usually `/dev`.
    pub dev: PathBuf,
}

impl Default for SystemRoots {
    fn default() -> Self {
        SystemRoots { sys: "/sys".into(), proc: "/proc".into(), dev: "/dev".into() }
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn read_number(path: &Path) -> Option<u64> {
    read_trimmed(path)?.parse().ok()
}

/// Kernel devices that are not disks to install on: memory disks, device-mapper and md devices (they are
/// reported as holders), optical drives and floppies.
fn is_candidate(name: &str) -> bool {
    !["ram", "zram", "dm-", "md", "sr", "fd", "zd"].iter().any(|prefix| name.starts_with(prefix))
}

/// What the running system uses: mounts and swap by device number, and the ZFS pools it has imported.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    mounts: HashMap<DevNo, Vec<String>>,
    swaps: Vec<DevNo>,
    pub(crate) imported_pools: Vec<String>,
    pub(crate) system_devices: HashMap<DevNo, String>,
    /// The devices of mounted btrfs filesystems, with the filesystem's UUID: only one of them shows as
    /// the mount's source.
    pub(crate) btrfs_devices: HashMap<DevNo, String>,
}

impl Usage {
    fn read(roots: &SystemRoots) -> Result<Self, DiskError> {
        let mut usage = Usage::default();
        let mountinfo = roots.proc.join("self/mountinfo");
        let text =
            fs::read_to_string(&mountinfo).map_err(|source| DiskError::Read { path: mountinfo.clone(), source })?;
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let (Some(devno), Some(mountpoint)) = (fields.get(2).and_then(|d| DevNo::parse(d)), fields.get(4)) else {
                continue;
            };
            let mountpoint = unescape_mount(mountpoint);
            // Mount sources like /dev/vda1 name the device even when the device number is a filesystem's
            // anonymous one (btrfs); the number covers everything else.
            let separator = fields.iter().position(|f| *f == "-");
            let source_devno = separator
                .and_then(|s| fields.get(s + 2))
                .filter(|s| s.starts_with("/dev/"))
                .and_then(|s| fs::metadata(s).ok())
                .filter(|m| m.file_type().is_block_device())
                .map(|m| DevNo::from_rdev(m.rdev()));
            for number in [Some(devno), source_devno].into_iter().flatten() {
                let list = usage.mounts.entry(number).or_default();
                if !list.contains(&mountpoint) {
                    list.push(mountpoint.clone());
                }
                if ["/", "/nix/store", "/nix/.ro-store", "/iso", "/run/rootfsbase"].contains(&mountpoint.as_str()) {
                    usage.system_devices.insert(number, mountpoint.clone());
                }
            }
        }
        if let Ok(swaps) = fs::read_to_string(roots.proc.join("swaps")) {
            for line in swaps.lines().skip(1) {
                let Some(path) = line.split_whitespace().next() else { continue };
                if let Ok(meta) = fs::metadata(unescape_mount(path)) {
                    if meta.file_type().is_block_device() {
                        usage.swaps.push(DevNo::from_rdev(meta.rdev()));
                    }
                }
            }
        }
        // A mounted btrfs lists every device it spans under /sys/fs/btrfs/<uuid>/devices.
        if let Ok(filesystems) = fs::read_dir(roots.sys.join("fs/btrfs")) {
            for filesystem in filesystems.flatten() {
                let uuid = filesystem.file_name().to_string_lossy().into_owned();
                let Ok(devices) = fs::read_dir(filesystem.path().join("devices")) else { continue };
                for device in devices.flatten() {
                    if let Some(devno) = read_trimmed(&device.path().join("dev")).and_then(|d| DevNo::parse(&d)) {
                        usage.btrfs_devices.insert(devno, uuid.clone());
                    }
                }
            }
        }
        // An imported pool has a kstat directory; this works without running `zpool`.
        if let Ok(entries) = fs::read_dir(roots.proc.join("spl/kstat/zfs")) {
            for entry in entries.flatten() {
                if entry.path().is_dir() {
                    usage.imported_pools.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
        Ok(usage)
    }
}

/// /proc/self/mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mount(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.clone().take(3).collect();
            if digits.len() == 3 && digits.chars().all(|d| ('0'..='7').contains(&d)) {
                if let Ok(value) = u8::from_str_radix(&digits, 8) {
                    out.push(value as char);
                    for _ in 0..3 {
                        chars.next();
                    }
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// The holders of a device (from its sysfs `holders` directory), each named as a person knows it: a
/// device-mapper device with its mapping name (`dm-0 (cryptroot)`), an md array with its `/dev/md` link
/// (`md127 (/dev/md/boot)`), anything else by its kernel name.
fn holder_names(roots: &SystemRoots, holders_dir: &Path) -> Vec<String> {
    list_names(holders_dir).into_iter().map(|kernel| describe_holder(roots, &kernel)).collect()
}

fn describe_holder(roots: &SystemRoots, kernel: &str) -> String {
    let block = roots.sys.join("block").join(kernel);
    if let Some(name) = read_trimmed(&block.join("dm").join("name")).filter(|n| !n.is_empty()) {
        return format!("{kernel} ({name})");
    }
    if block.join("md").is_dir() {
        let md_dir = roots.dev.join("md");
        let mut links: Vec<String> = fs::read_dir(&md_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| fs::read_link(e.path()).is_ok_and(|t| t.file_name().is_some_and(|f| f == kernel)))
                    .map(|e| format!("/dev/md/{}", e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        links.sort();
        if let Some(link) = links.first() {
            return format!("{kernel} ({link})");
        }
    }
    kernel.to_string()
}

fn list_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Links under /dev/disk/by-* that point at each kernel name.
fn stable_links(roots: &SystemRoots) -> HashMap<String, Vec<String>> {
    let mut links: HashMap<String, Vec<String>> = HashMap::new();
    for kind in ["by-id", "by-path"] {
        let dir = roots.dev.join("disk").join(kind);
        for name in list_names(&dir) {
            let link = dir.join(&name);
            if let Ok(target) = fs::canonicalize(&link) {
                if let Some(kernel) = target.file_name() {
                    links
                        .entry(kernel.to_string_lossy().into_owned())
                        .or_default()
                        .push(link.to_string_lossy().into_owned());
                }
            }
        }
    }
    links
}

fn transport_of(sys_device: &Path, name: &str) -> Option<String> {
    if name.starts_with("loop") {
        return Some("loop".to_string());
    }
    let resolved = fs::canonicalize(sys_device).ok()?.to_string_lossy().into_owned();
    let transport = if resolved.contains("/virtio") {
        "virtio"
    } else if resolved.contains("/nvme") {
        "nvme"
    } else if resolved.contains("/usb") {
        "usb"
    } else if resolved.contains("/mmc") {
        "mmc"
    } else if resolved.contains("/ata") {
        "sata"
    } else if resolved.contains("/host") {
        "scsi"
    } else {
        return None;
    };
    Some(transport.to_string())
}

/// The serial from SCSI VPD page 0x80: a 4-byte header, then the serial.
fn vpd_serial(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    let text =
        String::from_utf8_lossy(bytes.get(4..)?).trim_matches(|c: char| c.is_whitespace() || c == '\0').to_string();
    (!text.is_empty()).then_some(text)
}

struct UdevFacts {
    model: Option<String>,
    serial: Option<String>,
    wwn: Option<String>,
    bus: Option<String>,
    part_names: HashMap<String, String>,
}

/// udev's view of a disk, when udevd runs (its database exists).
fn udev_facts(name: &str, partitions: &[String]) -> Option<UdevFacts> {
    if !Path::new("/run/udev/data").is_dir() {
        return None;
    }
    let device = udev::Device::from_subsystem_sysname("block".to_string(), name.to_string()).ok()?;
    let property = |dev: &udev::Device, key: &str| {
        dev.property_value(key).map(|v| v.to_string_lossy().trim().to_string()).filter(|v| !v.is_empty())
    };
    let mut part_names = HashMap::new();
    for part in partitions {
        if let Ok(dev) = udev::Device::from_subsystem_sysname("block".to_string(), part.clone()) {
            if let Some(label) = property(&dev, "ID_PART_ENTRY_NAME") {
                part_names.insert(part.clone(), label);
            }
        }
    }
    Some(UdevFacts {
        model: property(&device, "ID_MODEL").map(|m| m.replace('_', " ")),
        serial: property(&device, "ID_SERIAL_SHORT"),
        wwn: property(&device, "ID_WWN"),
        bus: property(&device, "ID_BUS"),
        part_names,
    })
}

/// Every whole disk of this machine, with its partitions, signatures and uses.
pub fn discover() -> Result<Vec<DiskInfo>, DiskError> {
    discover_in(&SystemRoots::default())
}

/// [`discover`] with other roots for /sys, /proc and /dev.
pub fn discover_in(roots: &SystemRoots) -> Result<Vec<DiskInfo>, DiskError> {
    discover_some(roots, None, &read_signatures)
}

/// [`discover`] for a run of a plan: the disks `devices` name (any path to a disk) and every loop device
/// described in full, every other disk only as far as it bears on whether those are in use (its size,
/// partitions, mounts, swap, holders and the storage behind it), without probing its contents, asking
/// udev or reading its partition table. A run needs nothing else of them, and on a machine with more
/// disks than the plan's those reads were most of the time `nix-dabei mount` took (`vm-tests bench`).
pub fn discover_for(devices: &[String]) -> Result<Vec<DiskInfo>, DiskError> {
    discover_for_with(devices, &read_signatures)
}

/// How discovery reads the signatures on a device (a path under /dev).
pub type SignatureReader<'a> = &'a (dyn Fn(&str) -> Result<Vec<Signature>, DiskError> + Sync);

/// [`discover_for`], reading signatures with `signatures`: a caller that probes the same partitions
/// while discovery runs (the executor's preview) passes one that keeps what was read, so that each is
/// read once.
pub fn discover_for_with(devices: &[String], signatures: SignatureReader<'_>) -> Result<Vec<DiskInfo>, DiskError> {
    discover_some(&SystemRoots::default(), Some(devices), signatures)
}

fn read_signatures(device: &str) -> Result<Vec<Signature>, DiskError> {
    probe_signatures(Path::new(device))
}

fn discover_some(
    roots: &SystemRoots,
    only: Option<&[String]>,
    signatures: SignatureReader<'_>,
) -> Result<Vec<DiskInfo>, DiskError> {
    // The kernel names of the disks described in full; a path that does not resolve names none (finding
    // its disk fails later with the reason).
    let full: Option<Vec<String>> = only.map(|devices| {
        devices
            .iter()
            .filter_map(|device| fs::canonicalize(device).ok())
            .filter_map(|path| path.file_name().map(|name| name.to_string_lossy().into_owned()))
            .collect()
    });
    let usage = Usage::read(roots)?;
    let links = stable_links(roots);
    let block = roots.sys.join("block");
    let names = list_names(&block);
    if names.is_empty() {
        return Err(DiskError::Read {
            path: block,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no block devices listed"),
        });
    }
    let mut disks = Vec::new();
    for name in names.into_iter().filter(|n| is_candidate(n)) {
        let dir = block.join(&name);
        let size = read_number(&dir.join("size")).unwrap_or(0) * 512;
        if size == 0 {
            continue; // detached loop devices, empty card readers
        }
        // Loop devices are read in full whatever the plan: one over the same storage as a plan's disk
        // makes that disk in use by its own uses (`mark_aliases`), an imported pool on it among them.
        let in_full = full.as_ref().is_none_or(|names| names.contains(&name)) || name.starts_with("loop");
        let facts = Facts { roots, usage: &usage, links: &links, signatures };
        if let Some(disk) = describe(&facts, &name, &dir, size, in_full) {
            disks.push(disk);
        }
    }
    mark_aliases(&mut disks);
    Ok(disks)
}

/// A disk in use makes every other name of its storage ([`DiskInfo::storage`]) in use too: a second loop
/// device over the file of a mounted one, a loop device over a disk (or one of its partitions) in use,
/// and that disk while such a loop device is.
fn mark_aliases(disks: &mut [DiskInfo]) {
    let storages: Vec<String> = disks.iter().map(DiskInfo::storage).collect();
    let partition_storages: Vec<Vec<String>> = disks.iter().map(DiskInfo::partition_storages).collect();
    let own: Vec<Vec<String>> = disks.iter().map(|d| d.in_use.iter().map(ToString::to_string).collect()).collect();
    for this in 0..disks.len() {
        for other in (0..disks.len()).filter(|other| *other != this && !own[*other].is_empty()) {
            let same = storages[this] == storages[other]
                || partition_storages[other].contains(&storages[this])
                || partition_storages[this].contains(&storages[other]);
            if same {
                let alias = InUse::SameStorage {
                    device: disks[this].path.clone(),
                    other: disks[other].path.clone(),
                    reasons: own[other].clone(),
                };
                disks[this].in_use.push(alias);
            }
        }
    }
}

/// What every disk's description draws on.
struct Facts<'a> {
    roots: &'a SystemRoots,
    usage: &'a Usage,
    links: &'a HashMap<String, Vec<String>>,
    signatures: SignatureReader<'a>,
}

fn describe(facts: &Facts<'_>, name: &str, dir: &Path, size: u64, in_full: bool) -> Option<DiskInfo> {
    let Facts { roots, usage, links, signatures } = *facts;
    let devno = DevNo::parse(&read_trimmed(&dir.join("dev"))?)?;
    let queue = dir.join("queue");
    let part_names: Vec<String> =
        list_names(dir).into_iter().filter(|p| dir.join(p).join("partition").exists()).collect();
    let device_dir = dir.join("device");
    let path = roots.dev.join(name).to_string_lossy().into_owned();
    // What the disk and each partition hold, read at once: cold reads of the superblock areas wait on the
    // disk, and one after another they were most of a disk's discovery (`vm-tests bench`).
    let part_paths: Vec<String> =
        part_names.iter().map(|part| roots.dev.join(part).to_string_lossy().into_owned()).collect();
    let logical_sector_size = read_number(&queue.join("logical_block_size")).unwrap_or(512);
    // udev's facts and the partition table are read while the signatures are: each waits on something
    // else (udev's database and sysfs, the table's sectors), and one after another they were a third of
    // a disk's discovery (`vm-tests bench`).
    let (udev, mut found, table_problems) = if in_full {
        std::thread::scope(|scope| {
            let udev = scope.spawn(|| udev_facts(name, &part_names));
            let table = scope.spawn(|| table_problems(&path, logical_sector_size));
            let found = probe_all(&[std::slice::from_ref(&path), part_paths.as_slice()].concat(), signatures);
            // udev's facts are optional (without udevd there are none); a table that could not be read
            // keeps the disk from being written.
            let udev = udev.join().unwrap_or(None);
            let table = table.join().unwrap_or_else(|_| vec!["its partition table could not be read".into()]);
            (udev, found, table)
        })
    } else {
        (None, HashMap::new(), Vec::new())
    };
    let serial = udev
        .as_ref()
        .and_then(|u| u.serial.clone())
        .or_else(|| read_trimmed(&dir.join("serial")))
        .or_else(|| read_trimmed(&device_dir.join("serial")))
        .or_else(|| vpd_serial(&device_dir.join("vpd_pg80")));
    let wwn = udev
        .as_ref()
        .and_then(|u| u.wwn.clone())
        .or_else(|| read_trimmed(&device_dir.join("wwid")))
        .or_else(|| read_trimmed(&dir.join("wwid")));
    let model = udev.as_ref().and_then(|u| u.model.clone()).or_else(|| read_trimmed(&device_dir.join("model")));
    let mut partitions = Vec::new();
    // A device whose signatures cannot be read is in use by that reason, never blank.
    let mut unreadable = Vec::new();
    for (part, part_path) in part_names.iter().zip(part_paths) {
        let part_dir = dir.join(part);
        let Some(part_devno) = read_trimmed(&part_dir.join("dev")).and_then(|d| DevNo::parse(&d)) else { continue };
        partitions.push(PartitionInfo {
            name: part.clone(),
            number: read_number(&part_dir.join("partition")).unwrap_or(0) as u32,
            start: read_number(&part_dir.join("start")).unwrap_or(0) * 512,
            size: read_number(&part_dir.join("size")).unwrap_or(0) * 512,
            label: udev.as_ref().and_then(|u| u.part_names.get(part).cloned()),
            signatures: signatures_or_unreadable(&part_path, found.remove(&part_path), &mut unreadable),
            holders: holder_names(roots, &part_dir.join("holders")),
            mountpoints: usage.mounts.get(&part_devno).cloned().unwrap_or_default(),
            swap: usage.swaps.contains(&part_devno),
            devno: part_devno,
            path: part_path,
        });
    }
    partitions.sort_by_key(|p| p.number);
    let signatures = signatures_or_unreadable(&path, found.remove(&path), &mut unreadable);
    let partition_table =
        signatures.iter().find(|s| s.usage.as_deref() == Some("partition_table")).map(|s| s.kind.clone());
    let mut stable_paths = links.get(name).cloned().unwrap_or_default();
    stable_paths.sort();
    let mut disk = DiskInfo {
        name: name.to_string(),
        path,
        stable_paths,
        model,
        serial,
        wwn,
        size,
        logical_sector_size: logical_sector_size as u32,
        physical_sector_size: read_number(&queue.join("physical_block_size")).unwrap_or(512) as u32,
        rotational: read_number(&queue.join("rotational")) == Some(1),
        removable: read_number(&dir.join("removable")) == Some(1),
        read_only: read_number(&dir.join("ro")) == Some(1),
        transport: udev
            .as_ref()
            .and_then(|u| u.bus.clone())
            .filter(|b| b != "scsi" && b != "ata")
            .or_else(|| transport_of(&device_dir, name)),
        discard: read_number(&queue.join("discard_max_bytes")).unwrap_or(0) > 0,
        backing_file: read_trimmed(&dir.join("loop/backing_file")),
        partition_table,
        signatures: signatures.into_iter().filter(|s| s.usage.as_deref() != Some("partition_table")).collect(),
        partitions,
        holders: holder_names(roots, &dir.join("holders")),
        mountpoints: usage.mounts.get(&devno).cloned().unwrap_or_default(),
        swap: usage.swaps.contains(&devno),
        devno,
        in_use: Vec::new(),
        table_problems,
    };
    disk.in_use = safety::reasons(&disk, usage);
    disk.in_use.extend(unreadable);
    Some(disk)
}

/// What is wrong with a disk's partition table, read as nix-dabei reads tables before writing them
/// (crate::gpt_read), so that a crafted header shows here with its reason rather than at the first step.
fn table_problems(path: &str, logical_sector_size: u64) -> Vec<String> {
    if !Path::new(path).exists() {
        return Vec::new();
    }
    match crate::table::read_table_state(path, logical_sector_size) {
        Ok(state) => state.unreadable,
        Err(error) => vec![format!("its partition table cannot be read: {error}")],
    }
}

/// The signatures on each device, probed at once (one thread per device).
fn probe_all(
    devices: &[String],
    signatures: SignatureReader<'_>,
) -> HashMap<String, Result<Vec<Signature>, DiskError>> {
    std::thread::scope(|scope| {
        let probes: Vec<_> = devices.iter().map(|device| (device, scope.spawn(move || signatures(device)))).collect();
        probes
            .into_iter()
            .map(|(device, probe)| {
                let result = probe.join().unwrap_or_else(|_| {
                    Err(DiskError::Read {
                        path: device.into(),
                        source: std::io::Error::other("the thread reading its signatures panicked"),
                    })
                });
                (device.clone(), result)
            })
            .collect()
    })
}

/// The signatures probed on a device (none when it was not probed: a disk outside the plan); when they
/// cannot be read, none, with the reason kept in `unreadable`.
fn signatures_or_unreadable(
    device: &str,
    probed: Option<Result<Vec<Signature>, DiskError>>,
    unreadable: &mut Vec<InUse>,
) -> Vec<Signature> {
    match probed {
        None => Vec::new(),
        Some(Ok(signatures)) => signatures,
        Some(Err(error)) => {
            unreadable.push(InUse::Unreadable { device: device.to_string(), why: error.to_string() });
            Vec::new()
        }
    }
}

/// Finds the disk a path names (a kernel name or any link to it). Partitions are refused.
pub fn find_disk<'a>(disks: &'a [DiskInfo], path: &str) -> Result<&'a DiskInfo, DiskError> {
    let resolved = fs::canonicalize(path)
        .map_err(|e| DiskError::NotADisk { path: path.to_string(), reason: format!("cannot be resolved: {e}") })?;
    let meta =
        fs::metadata(&resolved).map_err(|e| DiskError::NotADisk { path: path.to_string(), reason: e.to_string() })?;
    if !meta.file_type().is_block_device() {
        return Err(DiskError::NotADisk { path: path.to_string(), reason: "is not a block device".to_string() });
    }
    let devno = DevNo::from_rdev(meta.rdev());
    if let Some(disk) = disks.iter().find(|d| d.devno == devno) {
        return Ok(disk);
    }
    let partition_of = disks.iter().find(|d| d.partitions.iter().any(|p| p.devno == devno));
    let reason = match partition_of {
        Some(disk) => format!("is a partition of {}; give the whole disk", disk.path),
        None => "is not a whole disk".to_string(),
    };
    Err(DiskError::NotADisk { path: path.to_string(), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk whose signatures (or a partition's) cannot be read is in use for that reason: it is never
    /// listed as blank, so no rule chooses it and nothing wipes it.
    #[test]
    fn a_disk_that_cannot_be_read_is_never_blank() {
        let root = std::env::temp_dir().join(format!("nix-dabei-unreadable-{}", std::process::id()));
        let roots = SystemRoots { sys: root.join("sys"), proc: "/proc".into(), dev: root.join("dev") };
        let disk = roots.sys.join("block/vdz");
        fs::create_dir_all(disk.join("vdz1")).expect("sysfs");
        fs::create_dir_all(disk.join("queue")).expect("queue");
        fs::write(disk.join("size"), "2097152\n").expect("size");
        fs::write(disk.join("dev"), "252:0\n").expect("dev");
        fs::write(disk.join("vdz1/partition"), "1\n").expect("partition");
        fs::write(disk.join("vdz1/dev"), "252:1\n").expect("dev");
        fs::write(disk.join("vdz1/size"), "2048\n").expect("size");
        // The device nodes are missing: blkid cannot open them.
        fs::create_dir_all(&roots.dev).expect("dev");
        let disks = discover_in(&roots).expect("discovery itself works");
        let _ = fs::remove_dir_all(&root);
        let found = disks.iter().find(|d| d.name == "vdz").expect("the disk is listed");
        let unreadable: Vec<&str> = found
            .in_use
            .iter()
            .filter_map(|reason| match reason {
                InUse::Unreadable { device, .. } => Some(device.as_str()),
                _ => None,
            })
            .collect();
        let (disk, partition) = (roots.dev.join("vdz"), roots.dev.join("vdz1"));
        assert_eq!(unreadable, [partition.to_string_lossy(), disk.to_string_lossy()], "{:?}", found.in_use);
        assert!(crate::safety::ensure_free(found).is_err(), "wiping it is refused");
        let chosen = crate::select::select("largest:1", &disks);
        assert!(chosen.map_or(true, |c| c.iter().all(|d| d.name != "vdz")), "no rule chooses it");
    }

    /// A run of a plan reads the contents of the plan's disks only: another disk is listed with its size
    /// and uses, unprobed.
    #[test]
    fn a_run_probes_only_the_plans_disks() {
        let root = std::env::temp_dir().join(format!("nix-dabei-only-{}", std::process::id()));
        let roots = SystemRoots { sys: root.join("sys"), proc: "/proc".into(), dev: root.join("dev") };
        for (name, minor) in [("loop9", 32), ("vdy", 16), ("vdz", 0)] {
            let disk = roots.sys.join("block").join(name);
            fs::create_dir_all(disk.join("queue")).expect("sysfs");
            fs::write(disk.join("size"), "2097152\n").expect("size");
            fs::write(disk.join("dev"), format!("252:{minor}\n")).expect("dev");
        }
        // vdy's node is there (an empty file); vdz's and loop9's are missing, so probing them fails.
        fs::create_dir_all(&roots.dev).expect("dev");
        fs::write(roots.dev.join("vdy"), "").expect("node");
        let plan_disk = roots.dev.join("vdy").to_string_lossy().into_owned();
        let some = discover_some(&roots, Some(&[plan_disk]), &read_signatures).expect("discovery for a plan");
        let all = discover_in(&roots).expect("discovery of everything");
        let _ = fs::remove_dir_all(&root);
        let unreadable = |disks: &[DiskInfo], name: &str| {
            disks.iter().any(|d| d.name == name && d.in_use.iter().any(|r| matches!(r, InUse::Unreadable { .. })))
        };
        assert!(unreadable(&all, "vdz"), "in full, vdz is probed and found unreadable");
        assert!(!unreadable(&some, "vdz"), "for a plan of vdy, vdz is not probed");
        // A loop device may be another name of a plan's disk, in use by what it holds: always read.
        assert!(unreadable(&some, "loop9"), "a loop device is probed whatever the plan");
        let names: Vec<&str> = some.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["loop9", "vdy", "vdz"], "all are listed");
    }

    #[test]
    fn holders_are_named_as_people_know_them() {
        let root = std::env::temp_dir().join(format!("nix-dabei-holders-{}", std::process::id()));
        let roots = SystemRoots { sys: root.join("sys"), proc: root.join("proc"), dev: root.join("dev") };
        fs::create_dir_all(roots.sys.join("block/dm-0/dm")).expect("dm");
        fs::write(roots.sys.join("block/dm-0/dm/name"), "cryptroot\n").expect("dm name");
        fs::create_dir_all(roots.sys.join("block/md127/md")).expect("md");
        fs::create_dir_all(roots.sys.join("block/sdz")).expect("other");
        fs::create_dir_all(roots.dev.join("md")).expect("dev/md");
        std::os::unix::fs::symlink("../md127", roots.dev.join("md/boot")).expect("link");
        let holders = root.join("holders");
        for name in ["dm-0", "md127", "sdz"] {
            fs::create_dir_all(holders.join(name)).expect("holder");
        }
        assert_eq!(holder_names(&roots, &holders), ["dm-0 (cryptroot)", "md127 (/dev/md/boot)", "sdz"]);
        fs::remove_dir_all(&root).expect("clean up");
    }
}
