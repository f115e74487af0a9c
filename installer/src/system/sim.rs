//! A machine in memory: disks with partition tables and signatures, LUKS headers and mappings, ZFS pools
//! and datasets, mounts, swaps and files. It answers the executor as the real machine would (including
//! the JSON of `zpool list -j` and `zfs get -j`), records every program it is asked to run, and can
//! lose power after a chosen number of changes, so that resuming can be tried at every step boundary.
//!
//! Changes are atomic here (a program either ran or did not); what a cut *inside* a program leaves
//! behind is tried on real devices in the VM.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use layouts::gpt::partition_device;
use layouts::steps::{CommandLine, LuksFormat, LuksOpen, Mount, PartitionTable};
use partitioner::discover::DevNo;
use partitioner::table::TableEntry;
use partitioner::{DiskError, DiskInfo, InUse, KernelPartition, PartitionInfo, Signature, TableState};
use serde_json::{json, Map, Value};

use super::{MountEntry, System};
use crate::command::CommandError;
use crate::lock::{Hold, LockError};
use crate::luks::{LuksError, LuksHeader};
use crate::secret::Secret;
use crate::tools::mdadm::ArrayDetail;

#[derive(Debug, Default)]
struct SimDataset {
    volume: bool,
    encryption_root: Option<String>,
    keylocation: String,
    /// Properties given at creation or set since, as ZFS shows them.
    properties: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct SimPool {
    /// The pool's GUID, new with every `zpool create`.
    guid: u64,
    /// Member devices, canonical.
    members: Vec<String>,
    imported: bool,
    exported_cleanly: bool,
    /// The host id of the system that last imported it.
    host_id: Option<u32>,
    datasets: BTreeMap<String, SimDataset>,
    /// Encryption roots whose key is loaded.
    unlocked: BTreeSet<String>,
    key: Vec<u8>,
}

/// What a btrfs holds: subvolume paths and files (path inside the top level -> contents).
#[derive(Debug, Default)]
struct SimBtrfs {
    subvolumes: BTreeSet<String>,
    files: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Default)]
struct State {
    disks: Vec<DiskInfo>,
    /// Partition tables by the disk's kernel path.
    tables: HashMap<String, Vec<TableEntry>>,
    /// Of the tables above, the MBR ones: their signature and extended partition.
    msdos: HashMap<String, layouts::gpt::MsdosTable>,
    /// Signatures by canonical device path.
    signatures: HashMap<String, Vec<Signature>>,
    /// LUKS headers by canonical device path: UUID and key.
    luks: HashMap<String, (String, Vec<u8>)>,
    /// How many more key slots each header has (filled from additional key files).
    luks_more_keys: HashMap<String, usize>,
    /// Open mappings: name to canonical device path.
    mappings: BTreeMap<String, String>,
    pools: BTreeMap<String, SimPool>,
    mounts: Vec<MountEntry>,
    swaps: BTreeSet<String>,
    files: BTreeMap<String, String>,
    /// btrfs contents by canonical device path.
    btrfs: HashMap<String, SimBtrfs>,
    /// The subvolume mounted at each btrfs mount target ("" for the top level).
    btrfs_mounted_subvolume: BTreeMap<String, String>,
    /// RAID arrays: name -> (what `mdadm --detail --export` shows, running).
    md_arrays: BTreeMap<String, (ArrayDetail, bool)>,
    /// LVM volume groups: name -> physical volume devices (canonical).
    volume_groups: BTreeMap<String, Vec<String>>,
    /// LVM logical volumes: (group, volume) -> active.
    logical_volumes: BTreeMap<(String, String), bool>,
    /// Targets mounted read-only: mounting and unmounting them writes nothing, so they are no change.
    read_only_mounts: BTreeSet<String>,
    /// Folders made with `create_private_dir` (under /run: gone at a reboot).
    private_dirs: BTreeSet<String>,
    /// The running system's host id (lost at a reboot, as a RAM system's /etc/hostid is).
    host_id: Option<u32>,
    commands: Vec<CommandLine>,
    changes: usize,
    power_cut_at: Option<usize>,
    powered_off: bool,
    next_uuid: u64,
    /// Devices whose reads fail (a dying disk, a driver error).
    unreadable: BTreeSet<String>,
    /// Programs this machine lacks ([`SimSystem::remove_program`]).
    missing_programs: Vec<String>,
    /// Filesystems whose signature is there but that are not whole (mkfs cut short).
    damaged: BTreeSet<String>,
}

/// The simulated machine. See the module documentation.
#[derive(Debug, Default)]
pub struct SimSystem {
    state: Mutex<State>,
    /// Disks held by a run, with the holder's process id.
    holds: Arc<Mutex<BTreeMap<String, u32>>>,
}

/// Why a change did not happen: the simulated power is off.
const POWER_CUT: &str = "simulated power cut";

fn not_found(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotFound, format!("{what} does not exist"))
}

fn failed(line: &CommandLine, stderr: impl Into<String>) -> CommandError {
    CommandError::Failed {
        command: line.to_string(),
        status: "exit status: 1".into(),
        code: Some(1),
        stderr: stderr.into(),
    }
}

impl SimSystem {
    /// A machine with these disks, each blank (no table, no signatures, not in use).
    pub fn with_disks(disks: Vec<DiskInfo>) -> Self {
        let disks = disks
            .into_iter()
            .map(|mut disk| {
                disk.partitions.clear();
                disk.signatures.clear();
                disk.in_use.clear();
                disk.holders.clear();
                disk.mountpoints.clear();
                disk.swap = false;
                disk.partition_table = None;
                disk
            })
            .collect();
        SimSystem { state: Mutex::new(State { disks, ..State::default() }), holds: Arc::default() }
    }

    /// A blank disk `/dev/<kernel>` with the link `/dev/disk/by-id/<id>`, 512-byte sectors.
    pub fn disk(kernel: &str, id: &str, size: u64, serial: &str) -> DiskInfo {
        DiskInfo {
            name: kernel.to_string(),
            path: format!("/dev/{kernel}"),
            stable_paths: vec![format!("/dev/disk/by-id/{id}")],
            model: Some("SIMULATED".into()),
            serial: Some(serial.to_string()),
            wwn: None,
            size,
            logical_sector_size: 512,
            physical_sector_size: 4096,
            rotational: false,
            removable: false,
            read_only: false,
            transport: Some("virtio".into()),
            discard: true,
            backing_file: None,
            partition_table: None,
            signatures: vec![],
            partitions: vec![],
            holders: vec![],
            mountpoints: vec![],
            swap: false,
            devno: DevNo { major: 254, minor: 0 },
            in_use: vec![],
            table_problems: vec![],
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every program run so far, queries included, in order.
    pub fn commands(&self) -> Vec<CommandLine> {
        self.lock().commands.clone()
    }

    /// How many changes (writes of any kind) were made so far.
    pub fn changes(&self) -> usize {
        self.lock().changes
    }

    /// The power goes off before the change after the next `changes` ones: that change and every one
    /// after it fails, as on a machine that went down.
    pub fn cut_power_after(&self, changes: usize) {
        let mut state = self.lock();
        state.power_cut_at = Some(state.changes + changes);
    }

    /// Power comes back: what lived in memory (mounts, swaps, mappings, imported pools, loaded keys) is
    /// gone; what was written to the disks stays. Pools were not exported.
    pub fn reboot(&self) {
        let mut state = self.lock();
        state.powered_off = false;
        state.power_cut_at = None;
        state.mounts.clear();
        state.read_only_mounts.clear();
        state.logical_volumes.values_mut().for_each(|active| *active = false);
        state.md_arrays.values_mut().for_each(|(_, running)| *running = false);
        state.private_dirs.clear();
        state.swaps.clear();
        state.host_id = None;
        state.mappings.clear();
        for pool in state.pools.values_mut() {
            pool.imported = false;
            pool.unlocked.clear();
        }
    }

    /// The host id recorded in a pool: the id of the system that created or last imported it.
    pub fn pool_host_id(&self, name: &str) -> Option<u32> {
        self.lock().pools.get(name).and_then(|p| p.host_id)
    }

    /// A pool made elsewhere, of `device` alone (a disk outside the plan), imported or only present.
    pub fn add_foreign_pool(&self, name: &str, device: &str, imported: bool) {
        let mut state = self.lock();
        let device = state.canonical(device);
        let uuid = state.uuid();
        state.set_signature(&device, "zfs_member", Some(name.to_string()), uuid);
        let mut pool = SimPool { members: vec![device], imported, exported_cleanly: true, ..SimPool::default() };
        pool.datasets.insert(name.to_string(), SimDataset::default());
        state.pools.insert(name.to_string(), pool);
    }

    /// The filesystem on this device keeps its signature but is no longer whole, as when mkfs was cut
    /// short; making it again heals it.
    pub fn damage_filesystem(&self, device: &str) {
        let mut state = self.lock();
        let canonical = state.canonical(device);
        state.damaged.insert(canonical);
    }

    /// The pool is made anew on the same devices behind the plan's back: same name, same members,
    /// another GUID.
    pub fn remake_pool(&self, name: &str) {
        let mut state = self.lock();
        state.next_uuid += 1;
        let guid = 0x5157_1000_0000_0000 | state.next_uuid;
        if let Some(pool) = state.pools.get_mut(name) {
            pool.guid = guid;
        }
    }

    /// The program is not on this machine from now on.
    pub fn remove_program(&self, name: &str) {
        self.lock().missing_programs.push(name.to_string());
    }

    /// Every read of this device fails from now on, as on a disk that gives I/O errors.
    pub fn make_unreadable(&self, device: &str) {
        let mut state = self.lock();
        let canonical = state.canonical(device);
        state.unreadable.insert(canonical);
    }

    /// What is mounted, in mount order.
    pub fn mounts(&self) -> Vec<MountEntry> {
        self.lock().mounts.clone()
    }

    /// The contents of a file written through the system.
    pub fn file(&self, path: &str) -> Option<String> {
        self.lock().files.get(path).cloned()
    }
}

impl State {
    /// Counts a change, or refuses it when the power is (or goes) off.
    fn change(&mut self) -> Result<(), std::io::Error> {
        if self.powered_off || self.power_cut_at == Some(self.changes) {
            self.powered_off = true;
            return Err(std::io::Error::other(POWER_CUT));
        }
        self.changes += 1;
        Ok(())
    }

    fn uuid(&mut self) -> String {
        self.next_uuid += 1;
        format!("5157{:04x}-0000-4000-8000-{:012x}", self.next_uuid, self.next_uuid)
    }

    /// A path as the kernel names it: links to disks and their partitions resolve to `/dev/<kernel>...`.
    fn canonical(&self, path: &str) -> String {
        for disk in &self.disks {
            if path == disk.path {
                return disk.path.clone();
            }
            for link in &disk.stable_paths {
                if path == link {
                    return disk.path.clone();
                }
                if let Some(number) =
                    path.strip_prefix(link.as_str()).and_then(|r| r.strip_prefix("-part")).and_then(|n| n.parse().ok())
                {
                    return partition_device(&disk.path, number);
                }
            }
        }
        path.to_string()
    }

    fn disk_of(&self, canonical: &str) -> Option<(&DiskInfo, Option<u32>)> {
        for disk in &self.disks {
            if canonical == disk.path {
                return Some((disk, None));
            }
            for entry in self.tables.get(&disk.path).into_iter().flatten() {
                if partition_device(&disk.path, entry.number) == canonical {
                    return Some((disk, Some(entry.number)));
                }
            }
        }
        None
    }

    fn dataset_exists(&self, name: &str) -> bool {
        let pool = name.split('/').next().unwrap_or(name);
        self.pools.get(pool).is_some_and(|p| p.imported && p.datasets.contains_key(name))
    }

    /// The size of a running array: its smallest member's, less what mdadm keeps for the superblock
    /// (the simulation does not tell levels apart).
    fn array_size(&self, canonical: &str) -> Option<u64> {
        let name = canonical.strip_prefix("/dev/md/")?;
        let (ArrayDetail { members, .. }, running) = self.md_arrays.get(name)?;
        if !*running {
            return None;
        }
        let sizes = members.iter().filter_map(|m| {
            let (disk, number) = self.disk_of(&self.canonical(m))?;
            let entry = self.tables.get(&disk.path)?.iter().find(|e| Some(e.number) == number)?;
            Some((entry.last_lba - entry.first_lba + 1) * u64::from(disk.logical_sector_size))
        });
        sizes.min().map(|smallest| smallest.saturating_sub(8 << 20))
    }

    /// True for a partition of a running array that has a partition table.
    fn is_array_partition(&self, canonical: &str) -> bool {
        self.tables.iter().any(|(array, entries)| {
            array.starts_with("/dev/md/")
                && self.array_size(array).is_some()
                && entries.iter().any(|e| partition_device(array, e.number) == canonical)
        })
    }

    fn exists(&self, path: &str) -> bool {
        let canonical = self.canonical(path);
        if self.disk_of(&canonical).is_some() || self.is_array_partition(&canonical) {
            return true;
        }
        if let Some(name) = canonical.strip_prefix("/dev/mapper/") {
            return self.mappings.contains_key(name);
        }
        if let Some(name) = canonical.strip_prefix("/dev/zvol/") {
            return self.dataset_exists(name)
                && self.pools.values().any(|p| p.datasets.get(name).is_some_and(|d| d.volume));
        }
        if let Some(name) = canonical.strip_prefix("/dev/md/") {
            return self.md_arrays.get(name).is_some_and(|(_, running)| *running);
        }
        if let Some((group, volume)) = canonical.strip_prefix("/dev/").and_then(|rest| rest.split_once('/')) {
            if let Some(active) = self.logical_volumes.get(&(group.to_string(), volume.to_string())) {
                return *active;
            }
        }
        if let Some((device, inner)) = self.btrfs_path(path) {
            let tree = self.btrfs.get(&device);
            return inner.is_empty()
                || tree.is_some_and(|t| t.subvolumes.contains(&inner) || t.files.contains_key(&inner));
        }
        self.files.contains_key(path)
    }

    fn holders(&self, canonical: &str) -> Vec<String> {
        self.mappings.iter().filter(|(_, device)| *device == canonical).map(|(name, _)| format!("dm-{name}")).collect()
    }

    fn in_use(&self, device: &str, signatures: &[Signature], in_use: &mut Vec<InUse>) {
        for mount in self.mounts.iter().filter(|m| m.source == device) {
            in_use.push(InUse::Mounted { device: device.to_string(), mountpoint: mount.target.clone() });
        }
        if self.swaps.contains(device) {
            in_use.push(InUse::ActiveSwap { device: device.to_string() });
        }
        let holders = self.holders(device);
        if !holders.is_empty() {
            in_use.push(InUse::Holders { device: device.to_string(), holders });
        }
        for pool in signatures.iter().filter_map(Signature::zfs_pool) {
            if self.pools.get(pool).is_some_and(|p| p.imported) {
                in_use.push(InUse::ImportedPool { device: device.to_string(), pool: pool.to_string() });
            }
        }
    }

    fn discover(&self) -> Vec<DiskInfo> {
        let mut disks = self.disks.clone();
        for disk in &mut disks {
            let sector = u64::from(disk.logical_sector_size);
            disk.signatures = self.signatures.get(&disk.path).cloned().unwrap_or_default();
            let kind = if self.msdos.contains_key(&disk.path) { "dos" } else { "gpt" };
            disk.partition_table = self.tables.contains_key(&disk.path).then(|| kind.to_string());
            let mut in_use = disk.in_use.clone();
            self.in_use(&disk.path, &disk.signatures, &mut in_use);
            disk.partitions = self
                .tables
                .get(&disk.path)
                .into_iter()
                .flatten()
                .map(|entry| {
                    let path = partition_device(&disk.path, entry.number);
                    let signatures = self.signatures.get(&path).cloned().unwrap_or_default();
                    self.in_use(&path, &signatures, &mut in_use);
                    PartitionInfo {
                        name: path.trim_start_matches("/dev/").to_string(),
                        path: path.clone(),
                        number: entry.number,
                        start: entry.first_lba * sector,
                        size: (entry.last_lba - entry.first_lba + 1) * sector,
                        label: Some(entry.name.clone()),
                        holders: self.holders(&path),
                        mountpoints: self
                            .mounts
                            .iter()
                            .filter(|m| m.source == path)
                            .map(|m| m.target.clone())
                            .collect(),
                        swap: self.swaps.contains(&path),
                        devno: DevNo { major: disk.devno.major, minor: disk.devno.minor + entry.number },
                        signatures,
                    }
                })
                .collect();
            disk.in_use = in_use;
        }
        disks
    }

    fn set_signature(&mut self, device: &str, kind: &str, label: Option<String>, uuid: String) {
        let usage = match kind {
            "crypto_LUKS" => "crypto",
            "zfs_member" | "swap" => "other",
            _ => "filesystem",
        };
        let signature = Signature { kind: kind.to_string(), usage: Some(usage.to_string()), label, uuid: Some(uuid) };
        self.signatures.insert(device.to_string(), vec![signature]);
        self.btrfs.remove(device);
    }

    /// tune.exfat: `-I 0xSERIAL` (blkid then reads `SERI-AL..`) or `-L LABEL` (empty: none), on the last
    /// argument's exFAT.
    fn tune_exfat(&mut self, line: &CommandLine, args: &[&str]) -> Result<String, CommandError> {
        let device = self.canonical(args.last().copied().unwrap_or_default());
        let Some(exfat) = self.signatures.get_mut(&device).and_then(|s| s.iter_mut().find(|s| s.kind == "exfat"))
        else {
            return Err(failed(line, format!("{device}: no exFAT there")));
        };
        match args {
            ["-I", serial, _] => {
                let hex = serial.trim_start_matches("0x").to_ascii_uppercase();
                if hex.len() != 8 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(failed(line, format!("invalid serial {serial}")));
                }
                exfat.uuid = Some(format!("{}-{}", &hex[..4], &hex[4..]));
            }
            ["-L", label, _] => exfat.label = (!label.is_empty()).then(|| label.to_string()),
            _ => return Err(failed(line, format!("the simulated tune.exfat cannot do {line}"))),
        }
        Ok(String::new())
    }

    /// The btrfs device and the path inside its top level that a path under a btrfs mount names.
    fn btrfs_path(&self, path: &str) -> Option<(String, String)> {
        let mount = self
            .mounts
            .iter()
            .rev()
            .filter(|m| m.fs_type == "btrfs")
            .filter(|m| path == m.target || path.strip_prefix(&m.target).is_some_and(|rest| rest.starts_with('/')))
            .max_by_key(|m| m.target.len())?;
        let rest = path[mount.target.len()..].trim_matches('/');
        let subvolume = self.btrfs_mounted_subvolume.get(&mount.target).cloned().unwrap_or_default();
        let inner = [subvolume.trim_matches('/'), rest].iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>();
        Some((mount.source.clone(), inner.join("/")))
    }

    /// mdadm, as far as the executor uses it.
    fn mdadm(&mut self, line: &CommandLine, args: &[&str]) -> Result<String, CommandError> {
        let name = args.get(1).and_then(|a| a.strip_prefix("/dev/md/")).unwrap_or_default().to_string();
        let uuid = args.iter().find_map(|a| a.strip_prefix("--uuid=")).unwrap_or_default().to_string();
        let members: Vec<String> =
            args.iter().skip(2).filter(|a| !a.starts_with('-')).map(|d| self.canonical(d)).collect();
        match args.first().copied() {
            Some("--create") => {
                if let Some(missing) = members.iter().find(|d| !self.exists(d)) {
                    return Err(failed(line, format!("cannot open {missing}: No such file or directory")));
                }
                let dashed = layouts::nodes::mdadm::blkid_form(&uuid);
                // A new array holds nothing: no table, no signatures, on it or on its partitions.
                let array = format!("/dev/md/{name}");
                self.tables.remove(&array);
                self.signatures.retain(|device, _| device != &array && !device.starts_with(&array));
                for member in &members {
                    self.set_signature(member, "linux_raid_member", Some(format!("any:{name}")), dashed.clone());
                }
                let option = |key: &str| args.iter().find_map(|a| a.strip_prefix(key)).unwrap_or_default().to_string();
                let detail = ArrayDetail {
                    level: format!("raid{}", option("--level=")),
                    devices: members.len(),
                    metadata: option("--metadata="),
                    uuid,
                    members,
                };
                self.md_arrays.insert(name, (detail, true));
                Ok(String::new())
            }
            Some("--assemble") => match self.md_arrays.get_mut(&name) {
                Some((known, running)) if known.uuid == uuid => {
                    *running = true;
                    Ok(String::new())
                }
                _ => Err(failed(line, format!("/dev/md/{name}: no devices found for this array"))),
            },
            Some("--stop") => match self.md_arrays.get_mut(&name) {
                Some((_, running)) if *running => {
                    *running = false;
                    Ok(String::new())
                }
                _ => Err(failed(line, format!("error opening /dev/md/{name}: No such file or directory"))),
            },
            _ => {
                let name = args.last().and_then(|a| a.strip_prefix("/dev/md/")).unwrap_or_default();
                match self.md_arrays.get(name) {
                    Some((detail, true)) => Ok(detail.export(name)),
                    _ => Err(failed(line, format!("cannot open /dev/md/{name}"))),
                }
            }
        }
    }

    /// LVM's programs, as far as the executor uses them.
    fn lvm(&mut self, line: &CommandLine, args: &[&str]) -> Result<String, CommandError> {
        let last = args.last().copied().unwrap_or_default();
        match line.program.as_str() {
            "pvcreate" => {
                let device = self.canonical(last);
                let uuid = args.windows(2).find(|w| w[0] == "--uuid").map(|w| w[1].to_string()).unwrap_or_default();
                if !self.exists(&device) {
                    return Err(failed(line, format!("No device found for {device}")));
                }
                self.set_signature(&device, "LVM2_member", None, uuid);
                Ok(String::new())
            }
            "vgcreate" => {
                let name = args.iter().find(|a| !a.starts_with('-')).copied().unwrap_or_default().to_string();
                let devices: Vec<String> =
                    args.iter().skip_while(|a| **a != name).skip(1).map(|d| self.canonical(d)).collect();
                if self.volume_groups.contains_key(&name) {
                    return Err(failed(line, format!("A volume group called {name} already exists.")));
                }
                let is_pv = |s: &State, d: &String| {
                    s.signatures.get(d).is_some_and(|s| s.iter().any(|s| s.kind == "LVM2_member"))
                };
                if let Some(device) = devices.iter().find(|d| !is_pv(self, d)) {
                    return Err(failed(line, format!("{device} is not a physical volume")));
                }
                self.volume_groups.insert(name, devices);
                Ok(String::new())
            }
            "lvcreate" => {
                let name = args.windows(2).find(|w| w[0] == "--name").map(|w| w[1].to_string()).unwrap_or_default();
                let key = (last.to_string(), name);
                if !self.volume_groups.contains_key(last) {
                    return Err(failed(line, format!("Volume group \"{last}\" not found")));
                }
                if self.logical_volumes.contains_key(&key) {
                    return Err(failed(line, format!("Logical Volume \"{}\" already exists", key.1)));
                }
                self.logical_volumes.insert(key, true);
                Ok(String::new())
            }
            "vgchange" => {
                let active = args.windows(2).any(|w| w[0] == "--activate" && w[1] == "y");
                if !self.volume_groups.contains_key(last) {
                    return Err(failed(line, format!("Volume group \"{last}\" not found")));
                }
                for ((group, _), state) in self.logical_volumes.iter_mut() {
                    if group == last {
                        *state = active;
                    }
                }
                Ok(String::new())
            }
            "pvs" => {
                let rows: Vec<serde_json::Value> = self
                    .signatures
                    .iter()
                    .filter_map(|(device, s)| s.iter().find(|s| s.kind == "LVM2_member").map(|s| (device, s)))
                    .map(|(device, s)| {
                        let group = self.volume_groups.iter().find(|(_, pvs)| pvs.contains(device)).map(|(g, _)| g);
                        let group = group.cloned().unwrap_or_default();
                        serde_json::json!({ "pv_name": device, "pv_uuid": s.uuid, "vg_name": group })
                    })
                    .collect();
                Ok(serde_json::json!({ "report": [{ "pv": rows }] }).to_string())
            }
            _ => {
                let rows: Vec<serde_json::Value> = self
                    .logical_volumes
                    .keys()
                    .map(|(group, name)| serde_json::json!({ "lv_name": name, "vg_name": group }))
                    .collect();
                Ok(serde_json::json!({ "report": [{ "lv": rows }] }).to_string())
            }
        }
    }

    /// `btrfs subvolume show|create PATH` and `btrfs filesystem mkswapfile --size N PATH`.
    fn btrfs(&mut self, line: &CommandLine, args: &[&str]) -> Result<String, CommandError> {
        let path = args.last().copied().unwrap_or_default();
        let Some((device, inner)) = self.btrfs_path(path) else {
            return Err(failed(line, format!("ERROR: not a btrfs filesystem: {path}")));
        };
        let parent = inner.rsplit_once('/').map_or("", |(parent, _)| parent).to_string();
        let tree = self.btrfs.entry(device).or_default();
        let parent_there = parent.is_empty() || tree.subvolumes.contains(&parent);
        match args {
            ["subvolume", "show", ..] if tree.subvolumes.contains(&inner) => Ok(format!("{inner}\n")),
            ["subvolume", "show", ..] => Err(failed(line, format!("ERROR: cannot find {path}"))),
            ["subvolume", "create", ..] if tree.subvolumes.contains(&inner) || tree.files.contains_key(&inner) => {
                Err(failed(line, format!("ERROR: target path already exists: {path}")))
            }
            ["subvolume", "create", ..] if !parent_there => {
                Err(failed(line, format!("ERROR: cannot access {parent}: No such file or directory")))
            }
            ["subvolume", "create", ..] => {
                tree.subvolumes.insert(inner);
                Ok(format!("Create subvolume '{path}'\n"))
            }
            ["filesystem", "mkswapfile", "--size", size, _] if parent_there && !tree.files.contains_key(&inner) => {
                let size: usize = size.parse().map_err(|_| failed(line, format!("bad size {size}")))?;
                let mut bytes = vec![0; size.min(4096)];
                if bytes.len() == 4096 {
                    bytes[4086..].copy_from_slice(b"SWAPSPACE2");
                }
                tree.files.insert(inner, bytes);
                Ok(String::new())
            }
            _ => Err(failed(line, format!("the simulated btrfs cannot do {line}"))),
        }
    }

    /// Runs a program as the machine would; `Ok` holds its standard output.
    fn run(&mut self, line: &CommandLine, input: Option<&Secret>) -> Result<String, CommandError> {
        self.commands.push(line.clone());
        let args: Vec<&str> = line.args.iter().map(String::as_str).collect();
        let writes = !matches!(
            (line.program.as_str(), args.first(), args.get(1)),
            ("zpool", Some(&"list" | &"status" | &"get"), _)
                | ("zfs", Some(&"get"), _)
                | ("btrfs", Some(&"check"), _)
                | ("btrfs", Some(&"subvolume"), Some(&"show"))
                | ("pvs" | "lvs", _, _)
                | ("mdadm", Some(&"--detail"), _)
                | ("udevadm" | "fsck.vfat" | "e2fsck" | "xfs_db" | "fsck.f2fs" | "fsck.exfat", _, _)
        );
        if writes {
            self.change().map_err(|e| failed(line, e.to_string()))?;
        }
        match line.program.as_str() {
            program if program.starts_with("mkfs.") || program == "mkswap" => {
                let device = self.canonical(args.last().copied().unwrap_or_default());
                if !self.exists(&device) {
                    return Err(failed(line, format!("{device}: No such file or directory")));
                }
                // mkfs.btrfs takes every device of the filesystem at the end; all get its signature.
                let devices: Vec<String> =
                    args.iter().rev().map(|a| self.canonical(a)).take_while(|d| self.exists(d)).collect();
                let label = args.windows(2).find(|w| w[0] == "-L" || w[0] == "-n").map(|w| w[1].to_string());
                let kind = program.strip_prefix("mkfs.").unwrap_or("swap");
                let given = args.windows(2).find_map(|w| match w[0] {
                    "-U" => Some(w[1].to_string()),
                    "-m" => w[1].strip_prefix("uuid=").map(str::to_string),
                    "-i" => Some(format!("{}-{}", &w[1][..4.min(w[1].len())], &w[1][4.min(w[1].len())..])),
                    _ => None,
                });
                let uuid = given.unwrap_or_else(|| self.uuid());
                for device in devices {
                    self.set_signature(&device, kind, label.clone(), uuid.clone());
                    self.damaged.remove(&device);
                }
                Ok(String::new())
            }
            "btrfs" if matches!(args.first(), Some(&"subvolume" | &"filesystem")) => self.btrfs(line, &args),
            "tune.exfat" => self.tune_exfat(line, &args),
            "fsck.vfat" | "e2fsck" | "xfs_db" | "fsck.f2fs" | "fsck.exfat" | "btrfs" => {
                let device = self.canonical(args.last().copied().unwrap_or_default());
                let made = self.signatures.get(&device).is_some_and(|s| !s.is_empty());
                if made && !self.damaged.contains(&device) {
                    Ok(if line.program == "xfs_db" { "inprogress = 0\n".into() } else { String::new() })
                } else {
                    Err(failed(line, format!("{device}: the filesystem is not whole")))
                }
            }
            "swapon" | "swapoff" => {
                let device = self.canonical(args.last().copied().unwrap_or_default());
                if line.program == "swapoff" {
                    self.swaps.remove(&device);
                } else if self.signatures.get(&device).is_some_and(|s| s.iter().any(|s| s.kind == "swap")) {
                    self.swaps.insert(device);
                } else {
                    return Err(failed(line, format!("swapon: {device}: read swap header failed")));
                }
                Ok(String::new())
            }
            "mdadm" => self.mdadm(line, &args),
            "pvcreate" | "vgcreate" | "lvcreate" | "vgchange" | "pvs" | "lvs" => self.lvm(line, &args),
            "zpool" => self.zpool(line, &args, input),
            "zfs" => self.zfs(line, &args, input),
            "udevadm" => Ok(String::new()),
            "ssh-keygen" => {
                let path = args.windows(2).find(|w| w[0] == "-f").map(|w| w[1].to_string()).unwrap_or_default();
                if self.files.contains_key(&path) {
                    return Err(failed(line, format!("{path} already exists")));
                }
                self.files.insert(format!("{path}.pub"), "ssh-ed25519 AAAA initrd\n".into());
                self.files.insert(path, "simulated private key\n".into());
                Ok(String::new())
            }
            "nixos-install" => {
                let root = args
                    .windows(2)
                    .find(|w| w[0] == "--root")
                    .map(|w| w[1].trim_end_matches('/').to_string())
                    .unwrap_or_default();
                if !self.mounts.iter().any(|m| m.target == root) {
                    return Err(failed(line, format!("nothing is mounted at {root}")));
                }
                Ok("simulated: the system would be built and installed here\n".into())
            }
            other => Err(CommandError::Spawn { command: line.to_string(), source: not_found(other) }),
        }
    }

    fn zpool(&mut self, line: &CommandLine, args: &[&str], input: Option<&Secret>) -> Result<String, CommandError> {
        match args.first().copied() {
            Some("list") => {
                let pools: Map<String, Value> = self
                    .pools
                    .iter()
                    .filter(|(_, p)| p.imported)
                    .map(|(n, p)| (n.clone(), json!({ "name": n, "pool_guid": p.guid.to_string() })))
                    .collect();
                Ok(if pools.is_empty() { String::new() } else { json!({ "pools": pools }).to_string() })
            }
            Some("create") => {
                let mut root_options = BTreeMap::new();
                let mut words = args[1..].iter();
                let mut name = None;
                while let Some(word) = words.next() {
                    match *word {
                        "-f" => {}
                        "-o" | "-R" => {
                            words.next();
                        }
                        "-O" => {
                            if let Some((k, v)) = words.next().and_then(|kv| kv.split_once('=')) {
                                root_options.insert(k.to_string(), v.to_string());
                            }
                        }
                        pool => {
                            name = Some(pool.to_string());
                            break;
                        }
                    }
                }
                let name = name.ok_or_else(|| failed(line, "missing pool name"))?;
                let keywords = ["mirror", "raidz1", "raidz2", "raidz3", "log", "special", "dedup", "cache", "spare"];
                let members: Vec<String> = words.filter(|w| !keywords.contains(w)).map(|w| self.canonical(w)).collect();
                if self.pools.get(&name).is_some_and(|p| p.imported) {
                    return Err(failed(line, format!("cannot create '{name}': pool already exists")));
                }
                if let Some(missing) = members.iter().find(|m| !self.exists(m)) {
                    return Err(failed(line, format!("cannot open '{missing}': no such device")));
                }
                let encrypted = root_options.get("encryption").is_some_and(|e| e != "off");
                let keylocation = root_options.get("keylocation").cloned().unwrap_or_else(|| "prompt".into());
                let key = input.map(|k| k.expose().to_vec()).unwrap_or_default();
                if encrypted && keylocation == "prompt" && key.is_empty() {
                    return Err(failed(line, "no key given on standard input"));
                }
                self.next_uuid += 1;
                let guid = 0x5157_0000_0000_0000 | self.next_uuid;
                let host_id = self.host_id;
                let mut pool =
                    SimPool { guid, members: members.clone(), imported: true, key, host_id, ..SimPool::default() };
                let root = SimDataset {
                    volume: false,
                    encryption_root: encrypted.then(|| name.clone()),
                    keylocation,
                    properties: root_options.clone(),
                };
                pool.datasets.insert(name.clone(), root);
                if encrypted {
                    pool.unlocked.insert(name.clone());
                }
                for member in &members {
                    let uuid = self.uuid();
                    self.set_signature(member, "zfs_member", Some(name.clone()), uuid);
                }
                self.pools.insert(name, pool);
                Ok(String::new())
            }
            Some("import") => {
                let force = args.contains(&"-f");
                let name = args.last().copied().unwrap_or_default().to_string();
                let host_id = self.host_id;
                let searched: Vec<String> =
                    args.windows(2).filter(|w| w[0] == "-d").map(|w| self.canonical(w[1])).collect();
                let pool = self
                    .pools
                    .get_mut(&name)
                    .ok_or_else(|| failed(line, format!("cannot import '{name}': no such pool available")))?;
                if pool.imported {
                    return Err(failed(line, format!("cannot import '{name}': a pool with that name already exists")));
                }
                // With -d, only the devices named are searched.
                if !searched.is_empty() && !pool.members.iter().all(|m| searched.contains(m)) {
                    return Err(failed(line, format!("cannot import '{name}': no such pool available")));
                }
                // ZFS imports a pool that was not exported only on the host that last used it, or forced.
                if !pool.exported_cleanly && pool.host_id != host_id && !force {
                    return Err(failed(
                        line,
                        format!(
                            "cannot import '{name}': pool was previously in use from \
                        another system. The pool can be imported, use 'zpool import -f' to import the pool."
                        ),
                    ));
                }
                pool.imported = true;
                pool.exported_cleanly = false;
                pool.host_id = host_id;
                Ok(String::new())
            }
            // `zpool attach [-f] [-o P=V] POOL EXISTING NEW` and `zpool add [-f] [-o P=V] POOL [CLASS] DEVICES`.
            Some(verb @ ("attach" | "add")) => {
                let mut words = args[1..].iter().copied().peekable();
                while let Some(&word) = words.peek() {
                    match word {
                        "-f" => {}
                        "-o" => {
                            words.next();
                        }
                        _ => break,
                    }
                    words.next();
                }
                let name = words.next().ok_or_else(|| failed(line, "missing pool name"))?.to_string();
                let keywords = ["mirror", "raidz1", "raidz2", "raidz3", "log", "special", "dedup", "cache", "spare"];
                let mut devices: Vec<String> =
                    words.filter(|w| !keywords.contains(w)).map(|w| self.canonical(w)).collect();
                let pool = self
                    .pools
                    .get(&name)
                    .filter(|p| p.imported)
                    .ok_or_else(|| failed(line, format!("cannot open '{name}': no such pool")))?;
                if verb == "attach" {
                    let existing = devices.first().cloned().unwrap_or_default();
                    if devices.len() != 2 || !pool.members.contains(&existing) {
                        return Err(failed(line, format!("cannot attach to {existing}: no such device in pool")));
                    }
                    devices.remove(0);
                }
                if let Some(missing) = devices.iter().find(|m| !self.exists(m)) {
                    return Err(failed(line, format!("cannot open '{missing}': no such device")));
                }
                if let Some(taken) = devices.iter().find(|d| self.pools.values().any(|p| p.members.contains(d))) {
                    return Err(failed(line, format!("{taken} is part of a pool")));
                }
                for device in &devices {
                    let uuid = self.uuid();
                    self.set_signature(device, "zfs_member", Some(name.clone()), uuid);
                }
                self.pools.get_mut(&name).expect("checked").members.extend(devices);
                Ok(String::new())
            }
            Some("get") => {
                let name = args.last().copied().unwrap_or_default();
                let pool = self
                    .pools
                    .get(name)
                    .filter(|p| p.imported)
                    .ok_or_else(|| failed(line, format!("cannot open '{name}': no such pool")))?;
                Ok(format!("{}\n", pool.guid))
            }
            Some("status") => {
                let name = args.last().copied().unwrap_or_default();
                let no_pool = || failed(line, format!("cannot open '{name}': no such pool"));
                let pool = self.pools.get(name).filter(|p| p.imported).ok_or_else(no_pool)?;
                let leaves: Map<String, Value> = pool
                    .members
                    .iter()
                    .map(|m| (m.rsplit('/').next().unwrap_or(m).to_string(), json!({ "vdev_type": "disk", "path": m })))
                    .collect();
                let root = json!({ "name": name, "vdev_type": "root", "vdevs": leaves });
                Ok(json!({ "pools": { name: { "name": name, "state": "ONLINE", "vdevs": { name: root } } } })
                    .to_string())
            }
            Some("export") => {
                let name = args.last().copied().unwrap_or_default().to_string();
                let busy = self.mounts.iter().any(|m| m.source == name || m.source.starts_with(&format!("{name}/")));
                let pool = self
                    .pools
                    .get_mut(&name)
                    .filter(|p| p.imported)
                    .ok_or_else(|| failed(line, format!("cannot open '{name}': no such pool")))?;
                if busy {
                    return Err(failed(line, format!("cannot export '{name}': pool is busy")));
                }
                pool.imported = false;
                pool.exported_cleanly = true;
                pool.unlocked.clear();
                Ok(String::new())
            }
            _ => Err(failed(line, "not simulated")),
        }
    }

    fn zfs(&mut self, line: &CommandLine, args: &[&str], input: Option<&Secret>) -> Result<String, CommandError> {
        let name = args.last().copied().unwrap_or_default().to_string();
        let pool_name = name.split('/').next().unwrap_or_default().to_string();
        let missing = || failed(line, format!("cannot open '{name}': dataset does not exist"));
        match args.first().copied() {
            Some("get") if args.contains(&"-r") => {
                let pool = self.pools.get(&pool_name).filter(|p| p.imported).ok_or_else(missing)?;
                let datasets: Map<String, Value> = pool
                    .datasets
                    .iter()
                    .map(|(ds, d)| {
                        let root = d.encryption_root.clone().unwrap_or_else(|| "-".into());
                        let status = match &d.encryption_root {
                            None => "-",
                            Some(root) if pool.unlocked.contains(root) => "available",
                            Some(_) => "unavailable",
                        };
                        let mut properties = json!({
                            "encryptionroot": { "value": root },
                            "keystatus": { "value": status },
                            "keylocation": { "value": d.keylocation },
                        });
                        // Its own properties over those it inherits, as ZFS shows every property.
                        let mut lineage: Vec<&str> =
                            ds.match_indices('/').map(|(i, _)| &ds[..i]).chain([ds.as_str()]).collect();
                        lineage.retain(|name| pool.datasets.contains_key(*name));
                        for name in lineage {
                            for (key, value) in &pool.datasets[name].properties {
                                properties[key.as_str()] = json!({ "value": value });
                            }
                        }
                        (
                            ds.clone(),
                            json!({ "type": if d.volume { "VOLUME" } else { "FILESYSTEM" }, "properties": properties }),
                        )
                    })
                    .collect();
                Ok(json!({ "datasets": datasets }).to_string())
            }
            Some("get") => {
                let pool = self.pools.get(&pool_name).filter(|p| p.imported).ok_or_else(missing)?;
                let dataset = pool.datasets.get(&name).ok_or_else(missing)?;
                let kind = if dataset.volume { "volume" } else { "filesystem" };
                let entry = json!({ "type": kind.to_uppercase(), "properties": { "type": { "value": kind } } });
                Ok(json!({ "datasets": { name.clone(): entry } }).to_string())
            }
            Some("create") => {
                let mut properties = BTreeMap::new();
                let mut volume = false;
                let mut words = args[1..args.len() - 1].iter();
                while let Some(word) = words.next() {
                    match *word {
                        "-V" => {
                            volume = true;
                            words.next();
                        }
                        "-o" => {
                            if let Some((k, v)) = words.next().and_then(|kv| kv.split_once('=')) {
                                properties.insert(k.to_string(), v.to_string());
                            }
                        }
                        _ => {}
                    }
                }
                let parent =
                    name.rsplit_once('/').map(|(p, _)| p.to_string()).ok_or_else(|| failed(line, "no parent"))?;
                let pool = self.pools.get_mut(&pool_name).filter(|p| p.imported).ok_or_else(missing)?;
                let inherited = pool
                    .datasets
                    .get(&parent)
                    .ok_or_else(|| failed(line, format!("cannot create '{name}': parent does not exist")))?;
                if pool.datasets.contains_key(&name) {
                    return Err(failed(line, format!("cannot create '{name}': dataset already exists")));
                }
                let encrypted = properties.get("encryption").is_some_and(|e| e != "off");
                let keylocation = properties.get("keylocation").cloned().unwrap_or_else(|| "prompt".into());
                let dataset = if encrypted {
                    if keylocation == "prompt" && input.is_none() {
                        return Err(failed(line, "no key given on standard input"));
                    }
                    pool.unlocked.insert(name.clone());
                    SimDataset { volume, encryption_root: Some(name.clone()), keylocation, properties }
                } else {
                    if inherited.encryption_root.as_ref().is_some_and(|root| !pool.unlocked.contains(root)) {
                        return Err(failed(line, format!("cannot create '{name}': encryption key not loaded")));
                    }
                    SimDataset {
                        volume,
                        encryption_root: inherited.encryption_root.clone(),
                        keylocation: inherited.keylocation.clone(),
                        properties,
                    }
                };
                pool.datasets.insert(name, dataset);
                Ok(String::new())
            }
            Some("set") => {
                let pool = self.pools.get_mut(&pool_name).filter(|p| p.imported).ok_or_else(missing)?;
                let dataset = pool.datasets.get_mut(&name).ok_or_else(missing)?;
                for assignment in &args[1..args.len() - 1] {
                    let (key, value) = assignment.split_once('=').ok_or_else(|| failed(line, "bad property"))?;
                    dataset.properties.insert(key.to_string(), value.to_string());
                }
                Ok(String::new())
            }
            Some("load-key") => {
                let pool = self.pools.get_mut(&pool_name).filter(|p| p.imported).ok_or_else(missing)?;
                let key = input.map(|k| k.expose().to_vec()).unwrap_or_default();
                let file_key = pool.datasets.get(&name).is_some_and(|d| d.keylocation.starts_with("file://"));
                if !file_key && key != pool.key {
                    return Err(failed(line, "Key load error: Incorrect key provided"));
                }
                pool.unlocked.insert(name);
                Ok(String::new())
            }
            _ => Err(failed(line, "not simulated")),
        }
    }
}

fn device_error(device: &str, action: &str, source: std::io::Error) -> DiskError {
    DiskError::Device { device: device.to_string(), action: action.to_string(), source }
}

fn luks_error(device: &str, action: &'static str, error: impl ToString) -> LuksError {
    LuksError { device: device.to_string(), action, error: error.to_string(), messages: vec![] }
}

impl System for SimSystem {
    fn discover(&self) -> Result<Vec<DiskInfo>, DiskError> {
        Ok(self.lock().discover())
    }

    fn find_disk<'a>(&self, disks: &'a [DiskInfo], path: &str) -> Result<&'a DiskInfo, DiskError> {
        let state = self.lock();
        let canonical = state.canonical(path);
        if let Some(disk) = disks.iter().find(|d| d.path == canonical) {
            return Ok(disk);
        }
        let reason = match state.disk_of(&canonical) {
            Some((disk, Some(_))) => format!("is a partition of {}; give the whole disk", disk.path),
            _ => "cannot be resolved: no such device".to_string(),
        };
        Err(DiskError::NotADisk { path: path.to_string(), reason })
    }

    fn whole_disk_of(&self, device: &str) -> Option<String> {
        let state = self.lock();
        state.disk_of(&state.canonical(device)).map(|(disk, _)| disk.name.clone())
    }

    fn same_device(&self, a: &str, b: &str) -> bool {
        let state = self.lock();
        state.canonical(a) == state.canonical(b)
    }

    fn kernel_name(&self, device: &str) -> Option<String> {
        let state = self.lock();
        if !state.exists(device) {
            return None;
        }
        let canonical = state.canonical(device);
        match canonical.strip_prefix("/dev/mapper/") {
            Some(name) => Some(format!("dm-{name}")),
            None => canonical.rsplit('/').next().map(str::to_string),
        }
    }

    fn exists(&self, path: &str) -> bool {
        self.lock().exists(path)
    }

    fn signatures(&self, device: &str) -> Result<Vec<Signature>, DiskError> {
        let state = self.lock();
        if !state.exists(device) {
            return Err(device_error(device, "open", not_found(device)));
        }
        if state.unreadable.contains(&state.canonical(device)) {
            return Err(DiskError::Blkid { device: device.to_string(), message: "Input/output error".into() });
        }
        Ok(state.signatures.get(&state.canonical(device)).cloned().unwrap_or_default())
    }

    /// Signatures here live on partition nodes, not offsets: the planned ranges are modelled by clearing
    /// every partition number the disk could have, table or no table.
    fn wipe_disk(&self, disk: &DiskInfo, _discard: bool, _planned: &[(u64, u64)]) -> Result<(), DiskError> {
        let mut state = self.lock();
        state.change().map_err(|e| device_error(&disk.path, "wipe", e))?;
        for number in 1..=layouts::gpt::MAX_PARTITIONS as u32 {
            let partition = partition_device(&disk.path, number);
            state.signatures.remove(&partition);
            state.luks.remove(&partition);
            state.btrfs.remove(&partition);
        }
        state.signatures.remove(&disk.path);
        state.luks.remove(&disk.path);
        state.tables.remove(&disk.path);
        state.msdos.remove(&disk.path);
        Ok(())
    }

    fn read_table_state(&self, device: &str, sector: u64) -> Result<TableState, DiskError> {
        let state = self.lock();
        let canonical = state.canonical(device);
        if !state.disks.iter().any(|d| d.path == canonical) && state.array_size(&canonical).is_none() {
            return Err(device_error(device, "open", not_found(device)));
        }
        if state.unreadable.contains(&canonical) {
            return Err(device_error(device, "read the partition table", std::io::Error::from_raw_os_error(5)));
        }
        let table = state.tables.get(&canonical).cloned();
        let kernel = table
            .iter()
            .flatten()
            .map(|e| KernelPartition {
                number: e.number,
                start: e.first_lba * sector,
                size: (e.last_lba - e.first_lba + 1) * sector,
            })
            .collect();
        if let Some(msdos) = state.msdos.get(&canonical) {
            let entries = table.unwrap_or_default();
            // The extended partition takes the entry after the primary ones, as the table writer puts it.
            let number = entries.iter().filter(|e| e.number <= 4).count() as u32 + 1;
            let extended = msdos.extended.map(|e| (number, e));
            let mbr = partitioner::mbr::MbrState { signature: msdos.signature, entries, extended, broken_chain: false };
            return Ok(TableState {
                protective_mbr: false,
                primary: None,
                backup: None,
                mbr: Some(mbr),
                kernel: Some(kernel),
                unreadable: Vec::new(),
            });
        }
        Ok(TableState {
            protective_mbr: table.is_some(),
            primary: table.clone(),
            backup: table,
            mbr: None,
            kernel: Some(kernel),
            unreadable: Vec::new(),
        })
    }

    fn write_partition_table(&self, table: &PartitionTable) -> Result<(), DiskError> {
        let mut state = self.lock();
        let canonical = state.canonical(&table.device);
        let size = state.disks.iter().find(|d| d.path == canonical).map(|d| d.size).or(state.array_size(&canonical));
        let Some(size) = size else {
            return Err(device_error(&table.device, "open", not_found(&table.device)));
        };
        if size != table.disk_size {
            let message = format!("the disk has {size} bytes, the plan was made for {}", table.disk_size);
            return Err(DiskError::Table { device: table.device.clone(), message });
        }
        state.change().map_err(|e| device_error(&table.device, "write the partition table", e))?;
        let entries = table
            .partitions
            .iter()
            .map(|p| TableEntry {
                number: p.number,
                name: p.name.clone(),
                type_guid: p.type_guid.to_ascii_uppercase(),
                uuid: p.uuid.to_ascii_uppercase(),
                first_lba: p.extent.first_lba,
                last_lba: p.extent.last_lba,
                bootable: p.bootable,
                attributes: p.attribute_bits(),
            })
            .collect();
        match &table.msdos {
            Some(msdos) => state.msdos.insert(canonical.clone(), msdos.clone()),
            None => state.msdos.remove(&canonical),
        };
        state.tables.insert(canonical, entries);
        Ok(())
    }

    fn device_geometry(&self, device: &str) -> Result<(u64, u32), DiskError> {
        let state = self.lock();
        let canonical = state.canonical(device);
        if let Some(disk) = state.disks.iter().find(|d| d.path == canonical) {
            return Ok((disk.size, disk.logical_sector_size));
        }
        state
            .array_size(&canonical)
            .map(|size| (size, 512))
            .ok_or_else(|| device_error(device, "open", not_found(device)))
    }

    fn wait_for_nodes(&self, device: &str, nodes: &[&str]) -> Result<(), DiskError> {
        let state = self.lock();
        let missing: Vec<String> = nodes.iter().filter(|n| !state.exists(n)).map(|n| n.to_string()).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(DiskError::PartitionsMissing { device: device.to_string(), seconds: 0, missing })
        }
    }

    fn has_program(&self, name: &str) -> bool {
        !self.lock().missing_programs.iter().any(|m| m == name)
    }

    fn settle(&self) {}

    fn lock_disk(&self, disk: &DiskInfo) -> Result<Hold, LockError> {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(holder) = holds.get(&disk.path) {
            return Err(LockError::Busy { what: format!("disk {}", disk.path), holder: holder.to_string() });
        }
        holds.insert(disk.path.clone(), std::process::id());
        let (holds, path) = (Arc::clone(&self.holds), disk.path.clone());
        Ok(Hold::on_release(move || {
            holds.lock().unwrap_or_else(|p| p.into_inner()).remove(&path);
        }))
    }

    fn luks_format(
        &self,
        op: &LuksFormat,
        key: &Secret,
        more_keys: &[Secret],
        _weak_kdf: bool,
    ) -> Result<(), LuksError> {
        let mut state = self.lock();
        let device = state.canonical(&op.device);
        if !state.exists(&device) {
            return Err(luks_error(&op.device, "open", "no such device"));
        }
        state.change().map_err(|e| luks_error(&op.device, "format", e))?;
        state.luks.insert(device.clone(), (op.uuid.clone(), key.expose().to_vec()));
        state.luks_more_keys.insert(device.clone(), more_keys.len());
        state.set_signature(&device, "crypto_LUKS", op.label.clone(), op.uuid.clone());
        Ok(())
    }

    fn luks_header(&self, device: &str) -> Result<Option<LuksHeader>, LuksError> {
        let state = self.lock();
        let header = state.luks.get(&state.canonical(device));
        let more = state.luks_more_keys.get(&state.canonical(device)).copied().unwrap_or_default();
        Ok(header.map(|(uuid, key)| {
            let key_slots = usize::from(!key.is_empty()) + more;
            LuksHeader { uuid: uuid.clone(), usable: !key.is_empty(), key_slots }
        }))
    }

    fn luks_open(&self, op: &LuksOpen, key: &Secret) -> Result<(), LuksError> {
        let mut state = self.lock();
        let device = state.canonical(&op.device);
        let Some((_, stored)) = state.luks.get(&device) else {
            return Err(luks_error(&op.device, "read the LUKS header", "no LUKS header"));
        };
        if stored.as_slice() != key.expose() {
            return Err(luks_error(&op.device, "unlock", "Operation not permitted (os error 1)"));
        }
        if state.mappings.contains_key(&op.name) {
            return Err(luks_error(&op.device, "unlock", "the mapping exists"));
        }
        state.change().map_err(|e| luks_error(&op.device, "unlock", e))?;
        state.mappings.insert(op.name.clone(), device);
        Ok(())
    }

    fn luks_close(&self, name: &str) -> Result<(), LuksError> {
        let mut state = self.lock();
        let path = format!("/dev/mapper/{name}");
        if !state.mappings.contains_key(name) {
            return Err(luks_error(&path, "find", "not open"));
        }
        state.change().map_err(|e| luks_error(&path, "close", e))?;
        state.mappings.remove(name);
        Ok(())
    }

    fn mapping_of(&self, name: &str) -> Option<Vec<String>> {
        let state = self.lock();
        let device = state.mappings.get(name)?;
        Some(vec![device.rsplit('/').next().unwrap_or(device).to_string()])
    }

    fn run(&self, line: &CommandLine, input: Option<&Secret>) -> Result<String, CommandError> {
        self.lock().run(line, input)
    }

    fn stream(&self, line: &CommandLine, on_line: &mut dyn FnMut(&str)) -> Result<(), CommandError> {
        let output = self.lock().run(line, None)?;
        output.lines().for_each(on_line);
        Ok(())
    }

    fn mount(&self, op: &Mount) -> std::io::Result<()> {
        let mut state = self.lock();
        let source = state.canonical(&op.source);
        let present = if op.fs_type == "zfs" {
            let pool = source.split('/').next().unwrap_or_default();
            let unlocked = state.pools.get(pool).is_some_and(|p| {
                p.datasets
                    .get(&source)
                    .and_then(|d| d.encryption_root.as_ref())
                    .is_none_or(|root| p.unlocked.contains(root))
            });
            state.dataset_exists(&source) && unlocked
        } else if layouts::nodes::nodev::NODEV_TYPES.contains(&op.fs_type.as_str()) {
            true
        } else {
            state.signatures.get(&source).is_some_and(|s| s.iter().any(|s| s.kind == op.fs_type))
        };
        if !present {
            return Err(not_found(&format!("a {} filesystem on {source}", op.fs_type)));
        }
        let subvolume = op.options.iter().find_map(|o| o.strip_prefix("subvol=")).unwrap_or_default();
        let subvolume = subvolume.trim_matches('/').to_string();
        let subvolume_there = state.btrfs.get(&source).is_some_and(|t| t.subvolumes.contains(&subvolume));
        if op.fs_type == "btrfs" && !subvolume.is_empty() && !subvolume_there {
            return Err(not_found(&format!("subvolume {subvolume} on {source}")));
        }
        let read_only = op.options.iter().any(|o| o == "ro");
        if !read_only {
            state.change()?;
        }
        let target = op.target.trim_end_matches('/').to_string();
        if read_only {
            state.read_only_mounts.insert(target.clone());
        }
        if op.fs_type == "btrfs" {
            state.btrfs_mounted_subvolume.insert(target.clone(), subvolume);
        }
        state.mounts.push(MountEntry { target, fs_type: op.fs_type.clone(), source });
        Ok(())
    }

    fn unmount(&self, target: &str) -> std::io::Result<()> {
        let mut state = self.lock();
        let target = target.trim_end_matches('/');
        let Some(index) = state.mounts.iter().rposition(|m| m.target == target) else {
            return Err(std::io::Error::from_raw_os_error(22));
        };
        if !state.read_only_mounts.remove(target) {
            state.change()?;
        }
        state.mounts.remove(index);
        Ok(())
    }

    fn mounted_at(&self, target: &str) -> std::io::Result<Option<MountEntry>> {
        let target = target.trim_end_matches('/');
        let target = if target.is_empty() { "/" } else { target };
        Ok(self.lock().mounts.iter().rev().find(|m| m.target == target).cloned())
    }

    /// Filesystems here carry no bytes: every marker reads as never used.
    /// Files in a btrfs keep their bytes (swap files' headers).
    fn read_bytes(&self, device: &str, offset: u64, length: usize) -> std::io::Result<Vec<u8>> {
        let state = self.lock();
        if !state.exists(device) {
            return Err(not_found(device));
        }
        if let Some((fs, inner)) = state.btrfs_path(device) {
            let file = state.btrfs.get(&fs).and_then(|t| t.files.get(&inner)).ok_or_else(|| not_found(device))?;
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(file.len());
            let bytes = &file[start..file.len().min(start.saturating_add(length))];
            if bytes.len() < length {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            return Ok(bytes.to_vec());
        }
        Ok(vec![0; length])
    }

    fn is_mounted(&self, device: &str) -> std::io::Result<bool> {
        let state = self.lock();
        let device = state.canonical(device);
        Ok(state.mounts.iter().any(|m| m.source == device))
    }

    fn swap_active(&self, device: &str) -> std::io::Result<bool> {
        let state = self.lock();
        Ok(state.swaps.contains(&state.canonical(device)))
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        self.lock().files.get(path).cloned().ok_or_else(|| not_found(path))
    }

    fn write_file(&self, path: &str, contents: &str) -> std::io::Result<()> {
        let mut state = self.lock();
        state.change()?;
        state.files.insert(path.to_string(), contents.to_string());
        Ok(())
    }

    fn host_id(&self) -> std::io::Result<Option<u32>> {
        Ok(self.lock().host_id)
    }

    fn set_host_id(&self, id: u32) -> std::io::Result<()> {
        let mut state = self.lock();
        state.change()?;
        state.host_id = Some(id);
        Ok(())
    }

    fn create_private_dir(&self, path: &str) -> std::io::Result<()> {
        let mut state = self.lock();
        if state.private_dirs.contains(path) {
            return Ok(());
        }
        state.change()?;
        state.private_dirs.insert(path.to_string());
        Ok(())
    }
}
