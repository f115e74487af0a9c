//! The engine seam: everything the executor asks of the machine, as one trait with two implementations.
//!
//! [`RealSystem`] is the machine nix-dabei runs on (sysfs, libblkid, ioctls, libcryptsetup, mount(2),
//! and programs through [`crate::command`]). [`SimSystem`] keeps disks, partition tables, signatures,
//! LUKS mappings, pools, mounts and files in memory, so that the scheduler, the probes and resuming run
//! in ordinary tests without root, and the TUI's dry run goes through the real engine without writing.

mod linux;
mod real;
pub mod sim;

use std::fmt;

use layouts::steps::{CommandLine, LuksFormat, LuksOpen, Mount, PartitionTable};
use layouts::Format;
use partitioner::TableState;
use partitioner::{DiskError, DiskInfo, Signature, SignatureReader};

use crate::command::CommandError;
use crate::lock::{Hold, LockError};
use crate::luks::{LuksError, LuksHeader};
use crate::secret::Secret;

pub use linux::MountEntry;
pub use real::RealSystem;
pub use sim::SimSystem;

/// What the executor asks of a machine. Every call that reads or writes the machine goes through here.
pub trait System: fmt::Debug + Send + Sync {
    /// Every whole disk, with its partitions, signatures and the reasons it is in use.
    fn discover(&self) -> Result<Vec<DiskInfo>, DiskError>;
    /// [`System::discover`] for a run of a plan whose disks `devices` name: those in full, the others only
    /// as far as they bear on whether those are in use (`partitioner::discover_for`). The signatures on
    /// them are read with `signatures`, which may keep them for the probes that follow.
    fn discover_for(&self, devices: &[String], signatures: SignatureReader<'_>) -> Result<Vec<DiskInfo>, DiskError> {
        let _ = (devices, signatures);
        self.discover()
    }
    /// The disk among `disks` that `path` names (a kernel name or any link to it).
    fn find_disk<'a>(&self, disks: &'a [DiskInfo], path: &str) -> Result<&'a DiskInfo, DiskError>;
    /// The kernel name of the whole disk that holds `device` (the disk itself for a disk), when it is one.
    fn whole_disk_of(&self, device: &str) -> Option<String>;
    /// Whether two paths name the same device.
    fn same_device(&self, a: &str, b: &str) -> bool;
    /// The kernel name of a device (`vda2`, `dm-0`).
    fn kernel_name(&self, device: &str) -> Option<String>;
    /// Whether a device node or file exists.
    fn exists(&self, path: &str) -> bool;

    /// Every signature on a device.
    fn signatures(&self, device: &str) -> Result<Vec<Signature>, DiskError>;
    /// Whether the filesystem of `format` on `device` is whole, read without a program, for the formats
    /// whose [`layouts::nodes::filesystem::WholeCheck`] says so: `Ok(Err(why))` when a cut left it
    /// unfinished.
    fn filesystem_whole(&self, format: Format, device: &str) -> std::io::Result<Result<(), String>>;
    /// Removes every signature from a disk, its current partitions and the `(offset, size)` byte ranges
    /// where the plan will put partitions (and discards, when asked and able).
    fn wipe_disk(&self, disk: &DiskInfo, discard: bool, planned: &[(u64, u64)]) -> Result<(), DiskError>;
    /// The state of a disk's partition table: both GPT copies, the protective MBR, the kernel's view.
    fn read_table_state(&self, device: &str, sector: u64) -> Result<TableState, DiskError>;
    /// Writes a GPT and a protective MBR, and makes the kernel see the partitions.
    fn write_partition_table(&self, table: &PartitionTable) -> Result<(), DiskError>;
    /// The size in bytes and logical sector size of a block device (an array, once it exists).
    fn device_geometry(&self, device: &str) -> Result<(u64, u32), DiskError>;
    /// Waits until the device nodes exist.
    fn wait_for_nodes(&self, device: &str, nodes: &[&str]) -> Result<(), DiskError>;
    /// Lets udev finish creating links for new devices, where udevd runs.
    fn settle(&self);
    /// Holds a disk for the length of a run; a second run asking for it is refused.
    fn lock_disk(&self, disk: &DiskInfo) -> Result<Hold, LockError>;

    /// Makes a LUKS2 header with [`layouts::nodes::luks::LUKS_PARAMETERS`] (or a fast key derivation,
    /// for tests under emulation).
    fn luks_format(&self, op: &LuksFormat, key: &Secret, more_keys: &[Secret], weak_kdf: bool)
        -> Result<(), LuksError>;
    /// The LUKS2 header on a device, `None` when it has none; an error when it cannot tell.
    fn luks_header(&self, device: &str) -> Result<Option<LuksHeader>, LuksError>;
    /// Opens a LUKS2 device as `/dev/mapper/<name>`.
    fn luks_open(&self, op: &LuksOpen, key: &Secret) -> Result<(), LuksError>;
    /// Closes a mapping.
    fn luks_close(&self, name: &str) -> Result<(), LuksError>;
    /// The kernel names of the devices under an open mapping, or `None` when it is not open.
    fn mapping_of(&self, name: &str) -> Option<Vec<String>>;

    /// Runs a program with `input` on its standard input; returns its standard output.
    fn run(&self, command: &CommandLine, input: Option<&Secret>) -> Result<String, CommandError>;
    /// Whether a program can be run: found on PATH.
    fn has_program(&self, name: &str) -> bool;
    /// Runs a program, handing each line it prints to `on_line` as it comes.
    fn stream(&self, command: &CommandLine, on_line: &mut dyn FnMut(&str)) -> Result<(), CommandError>;

    /// Mounts, creating the mountpoint.
    fn mount(&self, op: &Mount) -> std::io::Result<()>;
    /// Unmounts.
    fn unmount(&self, target: &str) -> std::io::Result<()>;
    /// What is mounted at a path (the top of the stack).
    fn mounted_at(&self, target: &str) -> std::io::Result<Option<MountEntry>>;
    /// Reads `length` bytes at `offset` of a device (read-only).
    fn read_bytes(&self, device: &str, offset: u64, length: usize) -> std::io::Result<Vec<u8>>;
    /// Whether a device is mounted anywhere.
    fn is_mounted(&self, device: &str) -> std::io::Result<bool>;
    /// Whether a device is active swap.
    fn swap_active(&self, device: &str) -> std::io::Result<bool>;

    /// Reads a text file.
    fn read_file(&self, path: &str) -> std::io::Result<String>;
    /// Writes a text file, creating its directory.
    fn write_file(&self, path: &str, contents: &str) -> std::io::Result<()>;
    /// This system's host id (`/etc/hostid`), which ZFS records in the pools it uses; `None` without one.
    fn host_id(&self) -> std::io::Result<Option<u32>>;
    /// Sets this system's host id, as `zgenhostid -f` does.
    fn set_host_id(&self, id: u32) -> std::io::Result<()>;
    /// Creates a directory and its parents, readable by root alone (it may hold keys).
    fn create_private_dir(&self, path: &str) -> std::io::Result<()>;
}
