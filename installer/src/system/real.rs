//! The machine nix-dabei runs on.

use std::path::Path;

use layouts::steps::{CommandLine, LuksFormat, LuksOpen, Mount, PartitionTable};
use layouts::Format;
use partitioner::TableState;
use partitioner::{DiskError, DiskInfo, Signature, SignatureReader};

use super::linux::{self, MountEntry};

/// Where ZFS (and glibc's gethostid) read the host id from.
const HOST_ID_FILE: &str = "/etc/hostid";
use super::System;
use crate::command::{self, CommandError};
use crate::lock::{self, Hold, LockError, DISK_LOCK_DIR};
use crate::luks::{self, LuksError, LuksHeader};
use crate::secret::Secret;

/// The real machine: sysfs, libblkid, ioctls, libcryptsetup, mount(2) and programs on PATH.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealSystem;

impl System for RealSystem {
    fn discover(&self) -> Result<Vec<DiskInfo>, DiskError> {
        partitioner::discover()
    }

    fn discover_for(&self, devices: &[String], signatures: SignatureReader<'_>) -> Result<Vec<DiskInfo>, DiskError> {
        partitioner::discover_for_with(devices, signatures)
    }

    fn find_disk<'a>(&self, disks: &'a [DiskInfo], path: &str) -> Result<&'a DiskInfo, DiskError> {
        partitioner::find_disk(disks, path)
    }

    fn whole_disk_of(&self, device: &str) -> Option<String> {
        let kernel = linux::kernel_name(device)?;
        let sysfs = std::fs::canonicalize(format!("/sys/class/block/{kernel}")).ok()?;
        if sysfs.join("partition").exists() {
            sysfs.parent().and_then(|q| q.file_name()).map(|n| n.to_string_lossy().into_owned())
        } else {
            Some(kernel)
        }
    }

    fn same_device(&self, a: &str, b: &str) -> bool {
        linux::same_device(a, b)
    }

    fn kernel_name(&self, device: &str) -> Option<String> {
        linux::kernel_name(device)
    }

    fn exists(&self, path: &str) -> bool {
        Path::new(path).exists()
    }

    fn signatures(&self, device: &str) -> Result<Vec<Signature>, DiskError> {
        partitioner::probe_signatures(Path::new(device))
    }

    fn filesystem_whole(&self, format: Format, device: &str) -> std::io::Result<Result<(), String>> {
        match format {
            Format::Vfat => partitioner::fat::fat_whole(device),
            Format::Xfs => partitioner::xfs::xfs_whole(device),
            Format::Ext4 | Format::Btrfs | Format::F2fs | Format::Exfat => {
                Err(std::io::Error::other(format!("{} is checked by its own program", format.fs_type())))
            }
        }
    }

    fn wipe_disk(&self, disk: &DiskInfo, discard: bool, planned: &[(u64, u64)]) -> Result<(), DiskError> {
        partitioner::wipe_disk(disk, discard, planned)
    }

    fn read_table_state(&self, device: &str, sector: u64) -> Result<TableState, DiskError> {
        partitioner::read_table_state(device, sector)
    }

    fn write_partition_table(&self, table: &PartitionTable) -> Result<(), DiskError> {
        partitioner::write_partition_table(
            &table.device,
            table.logical_sector_size,
            table.disk_size,
            &table.partitions,
            table.msdos.as_ref(),
        )
    }

    fn device_geometry(&self, device: &str) -> Result<(u64, u32), DiskError> {
        partitioner::table::device_geometry(device)
    }

    fn wait_for_nodes(&self, device: &str, nodes: &[&str]) -> Result<(), DiskError> {
        partitioner::table::wait_for_nodes(device, nodes.iter().copied(), partitioner::table::PARTITION_WAIT)
    }

    fn has_program(&self, name: &str) -> bool {
        command::available(name)
    }

    fn settle(&self) {
        if Path::new("/run/udev/control").exists() && command::available("udevadm") {
            let _ = command::run("udevadm", &["settle".to_string(), "--timeout=30".to_string()], None);
        }
    }

    fn lock_disk(&self, disk: &DiskInfo) -> Result<Hold, LockError> {
        // By what its bytes are, not its name: two loop devices over one file are one disk.
        let path = Path::new(DISK_LOCK_DIR).join(format!("disk-{}.lock", disk.storage()));
        lock::exclusive(&path, &format!("disk {}", disk.path))
    }

    fn luks_format(
        &self,
        op: &LuksFormat,
        key: &Secret,
        more_keys: &[Secret],
        weak_kdf: bool,
    ) -> Result<(), LuksError> {
        luks::format(&op.device, &op.uuid, op.label.as_deref(), key, more_keys, weak_kdf)
    }

    fn luks_header(&self, device: &str) -> Result<Option<LuksHeader>, LuksError> {
        let signatures = partitioner::probe_signatures(Path::new(device)).map_err(|e| LuksError {
            device: device.to_string(),
            action: "probe",
            error: e.to_string(),
            messages: vec![],
        })?;
        if !signatures.iter().any(|s| s.kind == "crypto_LUKS") {
            return Ok(None);
        }
        luks::header(device).map(Some)
    }

    fn luks_open(&self, op: &LuksOpen, key: &Secret) -> Result<(), LuksError> {
        luks::open(&op.device, &op.name, key, op.allow_discards)
    }

    fn luks_close(&self, name: &str) -> Result<(), LuksError> {
        luks::close(name)
    }

    fn mapping_of(&self, name: &str) -> Option<Vec<String>> {
        linux::mapper_slaves(name)
    }

    fn run(&self, line: &CommandLine, input: Option<&Secret>) -> Result<String, CommandError> {
        command::run(&line.program, &line.args, input.map(Secret::expose))
    }

    fn stream(&self, line: &CommandLine, on_line: &mut dyn FnMut(&str)) -> Result<(), CommandError> {
        command::stream(&line.program, &line.args, on_line)
    }

    fn mount(&self, op: &Mount) -> std::io::Result<()> {
        linux::mount(&op.source, &op.target, &op.fs_type, &op.options)
    }

    fn unmount(&self, target: &str) -> std::io::Result<()> {
        linux::unmount(target)
    }

    fn mounted_at(&self, target: &str) -> std::io::Result<Option<MountEntry>> {
        linux::mounted_at(target)
    }

    fn read_bytes(&self, device: &str, offset: u64, length: usize) -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(device)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = vec![0; length];
        file.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    fn is_mounted(&self, device: &str) -> std::io::Result<bool> {
        Ok(linux::mounts()?.iter().any(|m| linux::same_device(&m.source, device)))
    }

    fn swap_active(&self, device: &str) -> std::io::Result<bool> {
        linux::is_swap_active(device)
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write_file(&self, path: &str, contents: &str) -> std::io::Result<()> {
        if let Some(dir) = Path::new(path).parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, contents)
    }

    fn host_id(&self) -> std::io::Result<Option<u32>> {
        match std::fs::read(HOST_ID_FILE) {
            Ok(bytes) => {
                let bytes: [u8; 4] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{HOST_ID_FILE} is not 4 bytes"))
                })?;
                Ok(Some(u32::from_ne_bytes(bytes)))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Written beside and renamed over: /etc/hostid may be a link into a read-only store (NixOS).
    fn set_host_id(&self, id: u32) -> std::io::Result<()> {
        let new = format!("{HOST_ID_FILE}.nix-dabei");
        std::fs::write(&new, id.to_ne_bytes())?;
        std::fs::File::open(&new)?.sync_all()?;
        std::fs::rename(&new, HOST_ID_FILE)
    }

    fn create_private_dir(&self, path: &str) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
    }
}
