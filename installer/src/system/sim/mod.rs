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
use layouts::Format;
use partitioner::discover::DevNo;
use partitioner::table::TableEntry;
use partitioner::{DiskError, DiskInfo, InUse, KernelPartition, PartitionInfo, Signature, TableState};

use super::{MountEntry, System};
use crate::command::CommandError;
use crate::lock::{Hold, LockError};
use crate::luks::{LuksError, LuksHeader};
use crate::secret::Secret;
use crate::tools::mdadm::ArrayDetail;
use btrfs::SimBtrfs;
use lvm::{SimGroup, SimVolume};
use zfs::{SimDataset, SimPool};

mod btrfs;
mod lvm;
mod mdadm;
mod mkfs;
mod zfs;

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
    /// LVM volume groups by name.
    volume_groups: BTreeMap<String, SimGroup>,
    /// LVM logical volumes by (group, volume).
    logical_volumes: BTreeMap<(String, String), SimVolume>,
    /// Targets mounted read-only: mounting and unmounting them writes nothing, so they are no change.
    read_only_mounts: BTreeSet<String>,
    /// Folders made with `create_private_dir` (under /run: gone at a reboot).
    private_dirs: BTreeSet<String>,
    /// The running system's host id (lost at a reboot, as a RAM system's /etc/hostid is).
    host_id: Option<u32>,
    commands: Vec<CommandLine>,
    /// Devices whose filesystem was read whole in-process (`System::filesystem_whole`), in order.
    whole_reads: Vec<String>,
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

    /// Every device whose filesystem was read whole in-process so far, in order: the checks that run no
    /// program.
    pub fn whole_reads(&self) -> Vec<String> {
        self.lock().whole_reads.clone()
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
        state.logical_volumes.values_mut().for_each(|volume| volume.active = false);
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
        state.next_uuid += 1;
        let guid = 0x5157_0000_0000_0000 | state.next_uuid;
        let tree = zfs::vdev_tree(name, guid, std::slice::from_ref(&device));
        let mut pool =
            SimPool { guid, members: vec![device], tree, imported, exported_cleanly: true, ..SimPool::default() };
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
            if let Some(lv) = self.logical_volumes.get(&(group.to_string(), volume.to_string())) {
                return lv.active;
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
                | ("udevadm" | "e2fsck" | "fsck.f2fs" | "fsck.exfat", _, _)
        );
        if writes {
            self.change().map_err(|e| failed(line, e.to_string()))?;
        }
        match line.program.as_str() {
            program if program.starts_with("mkfs.") || program == "mkswap" => self.mkfs(line, &args),
            "btrfs" if matches!(args.first(), Some(&"subvolume" | &"filesystem")) => self.btrfs(line, &args),
            "tune.exfat" => self.tune_exfat(line, &args),
            "e2fsck" | "fsck.f2fs" | "fsck.exfat" | "btrfs" => self.check(line, &args),
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
    fn filesystem_whole(&self, _format: Format, device: &str) -> std::io::Result<Result<(), String>> {
        let mut state = self.lock();
        if !state.exists(device) {
            return Err(not_found(device));
        }
        let canonical = state.canonical(device);
        state.whole_reads.push(canonical);
        Ok(state.whole(device))
    }

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
