//! Filesystems (vfat, ext4, xfs, btrfs, f2fs, exfat) on a partition, a LUKS container or a ZFS volume.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Content, ContentNode, Site};
use crate::compile::{Builder, MountSpec};
use crate::disko::{Object, Reader, Writer};
use crate::error::{shown, FieldPath};
use crate::model::Plan;
use crate::nixos::{FileSystemEntry, ModuleParts};
use crate::programs::Program;
use crate::steps::{CommandLine, OperationKind};
use crate::validate::Checker;

/// The programs the filesystem steps run: mkfs, the read-only checks that tell a whole filesystem from
/// one a cut left, and growing.
pub const PROGRAMS: &[Program] = &[
    Program::target("mkfs.vfat", "dosfstools", "dosfstools", "making FAT (EFI system partitions)"),
    Program::target("mkfs.ext4", "e2fsprogs", "e2fsprogs", "making ext4"),
    Program::target("e2fsck", "e2fsprogs", "e2fsprogs", "checking an ext4 is whole (read-only), before growing it"),
    Program::target("resize2fs", "e2fsprogs", "e2fsprogs", "growing ext4"),
    Program::target("mkfs.xfs", "xfsprogs", "xfsprogs", "making XFS"),
    Program::target("xfs_growfs", "xfsprogs", "xfsprogs", "growing XFS"),
    Program::target("mkfs.btrfs", "btrfs-progs", "btrfs-progs", "making btrfs"),
    Program::target("mkfs.f2fs", "f2fs-tools", "f2fs-tools", "making F2FS"),
    Program::target("fsck.f2fs", "f2fs-tools", "f2fs-tools", "checking an F2FS is whole (read-only)"),
    Program::target("mkfs.exfat", "exfatprogs", "exfatprogs", "making exFAT (data shared with other systems)"),
    Program::target("tune.exfat", "exfatprogs", "exfatprogs", "giving an exFAT the plan's serial and label"),
    Program::target("fsck.exfat", "exfatprogs", "exfatprogs", "checking an exFAT is whole (read-only)"),
];

/// A filesystem format nix-dabei can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// FAT32, for EFI system partitions.
    Vfat,
    /// ext4.
    Ext4,
    /// XFS.
    Xfs,
    /// Btrfs without subvolumes (with them, it is the `btrfs` content: [`crate::nodes::btrfs`]).
    Btrfs,
    /// F2FS, for flash storage.
    F2fs,
    /// exFAT, for data that other systems read too (it keeps no owners, permissions or links: never
    /// where the system lives). The installed system needs nothing more than its `fileSystems` entry:
    /// nixpkgs' `tasks/filesystems.nix` adds every entry's `fsType` to `boot.supportedFilesystems`, and
    /// `tasks/filesystems/exfat.nix` then installs exfatprogs (the kernel's own driver since 5.7).
    Exfat,
}

impl Format {
    /// Every format, in the order plans document them.
    pub const ALL: [Format; 6] = [Format::Vfat, Format::Ext4, Format::Xfs, Format::Btrfs, Format::F2fs, Format::Exfat];

    /// The name `mount -t` and `fileSystems.*.fsType` use.
    pub fn fs_type(self) -> &'static str {
        match self {
            Format::Vfat => "vfat",
            Format::Ext4 => "ext4",
            Format::Xfs => "xfs",
            Format::Btrfs => "btrfs",
            Format::F2fs => "f2fs",
            Format::Exfat => "exfat",
        }
    }

    /// The mkfs program and the arguments that make it work unattended on a device that held something.
    fn mkfs(self) -> (&'static str, &'static [&'static str]) {
        match self {
            // FAT32 whatever the size, as UEFI firmware expects on an ESP.
            Format::Vfat => ("mkfs.vfat", &["-F", "32"]),
            Format::Ext4 => ("mkfs.ext4", &["-F", "-q"]),
            Format::Xfs => ("mkfs.xfs", &["-f", "-q"]),
            Format::Btrfs => ("mkfs.btrfs", &["-f", "-q"]),
            Format::F2fs => ("mkfs.f2fs", &["-f", "-q"]),
            // It asks nothing, whatever the device held.
            Format::Exfat => ("mkfs.exfat", &[]),
        }
    }

    /// The longest label the format keeps, in bytes (mkfs cuts longer ones silently or refuses them).
    pub fn max_label_bytes(self) -> usize {
        match self {
            Format::Vfat => 11,
            Format::Ext4 => 16,
            Format::Xfs => 12,
            Format::Btrfs => 255,
            // mkfs.f2fs keeps up to 512 UTF-16 units; a byte limit that any UTF-8 label within it meets.
            Format::F2fs => 512,
            // 11 UTF-16 units; a byte limit that any UTF-8 label within it meets.
            Format::Exfat => 11,
        }
    }

    /// The mkfs options a plan may give, and whether each takes a value. Everything else is refused: some
    /// options name other devices or files (a btrfs device list, xfs `-l logdev=`, ext4 `-J device=`,
    /// `-d`/`-r` root directories), some make mkfs write nothing (`-n`/`-N`), and the label has its own field.
    fn allowed_mkfs_options(self) -> &'static [(&'static str, bool)] {
        match self {
            Format::Vfat => &[
                ("-a", false),
                ("-A", false),
                ("-b", true),
                ("-f", true),
                ("-h", true),
                ("-I", false),
                ("-m", true),
                ("-r", true),
                ("-R", true),
                ("-s", true),
                ("-S", true),
                ("-v", false),
                ("--codepage", true),
                ("--invariant", false),
                ("-F", true),
            ],
            Format::Ext4 => &[
                ("-b", true),
                ("-C", true),
                ("-e", true),
                ("-E", true),
                ("-g", true),
                ("-G", true),
                ("-i", true),
                ("-I", true),
                ("-j", false),
                ("-m", true),
                ("-N", true),
                ("-o", true),
                ("-O", true),
                ("-r", true),
                ("-t", true),
                ("-T", true),
                ("-v", false),
                ("-F", false),
                ("-q", false),
            ],
            Format::Xfs => &[
                ("-b", true),
                ("-d", true),
                ("-i", true),
                ("-l", true),
                ("-m", true),
                ("-n", true),
                ("-s", true),
                ("-K", false),
                ("-f", false),
                ("-q", false),
            ],
            Format::Btrfs => &[
                ("-d", true),
                ("-m", true),
                ("-M", false),
                ("-n", true),
                ("-s", true),
                ("-O", true),
                ("-R", true),
                ("-K", false),
                ("--csum", true),
                ("--data", true),
                ("--metadata", true),
                ("--nodesize", true),
                ("--sectorsize", true),
                ("--features", true),
                ("--nodiscard", false),
                ("--mixed", false),
                ("-f", false),
                ("-q", false),
            ],
            // Not -c (more devices), -d (debug output), -r/-R/-S/-m (test and zoned-device settings).
            Format::F2fs => &[
                ("-O", true),
                ("-a", true),
                ("-i", false),
                ("-o", true),
                ("-s", true),
                ("-z", true),
                ("-t", true),
                ("-w", true),
                ("-C", true),
                ("-e", true),
                ("-E", true),
                ("-g", true),
                ("-T", true),
                ("-f", false),
                ("-q", false),
            ],
            // Cluster size, boundary alignment, the bitmap's place and a full format; the label is the
            // plan's field.
            Format::Exfat => &[("-c", true), ("-b", true), ("--pack-bitmap", false), ("-f", false)],
        }
    }

    /// The sub-options (`key` of `key=value`, comma-separated) that an option's value may not hold, with
    /// why: they put part of the filesystem on another device or into a file, whatever its spelling
    /// (mkfs.xfs resolves `logdev=loop43` against its working directory), write away from the start of
    /// the device, make it something else, or set the UUID that the plan derives and resuming finds the
    /// filesystem by.
    fn forbidden_sub_options(self) -> &'static [(&'static str, &'static str, &'static str)] {
        const ELSEWHERE: &str = "puts part of the filesystem on another device or in a file";
        const UUID: &str = "sets the UUID, which is the plan's own (resuming finds the filesystem by it)";
        match self {
            Format::Xfs => &[
                ("-l", "logdev", ELSEWHERE),
                ("-l", "name", ELSEWHERE),
                ("-l", "file", ELSEWHERE),
                ("-d", "name", ELSEWHERE),
                ("-d", "file", ELSEWHERE),
                ("-m", "uuid", UUID),
            ],
            Format::Ext4 => &[
                ("-E", "offset", "writes the filesystem away from the start of its device"),
                ("-E", "device", ELSEWHERE),
                ("-O", "journal_dev", "makes the device another filesystem's external journal"),
            ],
            Format::Vfat | Format::Btrfs | Format::F2fs | Format::Exfat => &[],
        }
    }

    /// Checks mkfs options against [`Format::allowed_mkfs_options`]; values may not name a path.
    pub fn check_mkfs_options(self, options: &[String]) -> Result<(), (usize, String)> {
        let allowed = self.allowed_mkfs_options();
        let mut index = 0;
        while index < options.len() {
            let option = options[index].as_str();
            let (flag, attached) = match option.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
                _ => (option, None),
            };
            let known = allowed.iter().find(|(name, _)| *name == flag).or_else(|| {
                // A short option with its value attached: "-m0", "-Ofeature".
                allowed
                    .iter()
                    .find(|(name, takes)| *takes && name.len() == 2 && option.len() > 2 && option.starts_with(name))
            });
            let Some((name, takes_value)) = known else {
                let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
                return Err((
                    index,
                    format!("is not an option nix-dabei passes to mkfs.{} ({})", self.fs_type(), names.join(" ")),
                ));
            };
            let value = match (takes_value, attached) {
                (false, _) => None,
                (true, Some(value)) => Some(value),
                (true, None) if option.len() > name.len() && !name.starts_with("--") => Some(&option[name.len()..]),
                (true, None) => {
                    index += 1;
                    match options.get(index) {
                        Some(value) => Some(value.as_str()),
                        None => return Err((index - 1, format!("{name} needs a value"))),
                    }
                }
            };
            if let Some(value) = value {
                if value.contains('/') || value.starts_with('-') || value.chars().any(char::is_control) {
                    return Err((
                        index,
                        "is not a value nix-dabei passes to mkfs: values may not name a path".to_string(),
                    ));
                }
                for sub_option in value.split(',') {
                    let key = sub_option.split_once('=').map_or(sub_option, |(key, _)| key).trim();
                    let forbidden = self.forbidden_sub_options().iter().find(|(f, k, _)| *f == *name && *k == key);
                    if let Some((flag, key, why)) = forbidden {
                        return Err((index, format!("is refused: {flag} {key} {why}")));
                    }
                }
            }
            index += 1;
        }
        Ok(())
    }

    /// The mkfs flag that sets the label.
    pub fn label_flag(self) -> &'static str {
        match self {
            Format::Vfat => "-n",
            Format::F2fs => "-l",
            Format::Ext4 | Format::Xfs | Format::Btrfs | Format::Exfat => "-L",
        }
    }

    /// The mkfs arguments that give the filesystem `uuid` (for vfat, a volume id: its first 8 hex digits).
    /// None for exFAT, whose mkfs cannot set a serial: [`Mkfs::follow_up`] sets it.
    pub fn uuid_args(self, uuid: &str) -> Vec<String> {
        match self {
            Format::Vfat => vec!["-i".to_string(), volume_id(uuid)],
            Format::Ext4 | Format::Btrfs | Format::F2fs => vec!["-U".to_string(), uuid.to_string()],
            Format::Xfs => vec!["-m".to_string(), format!("uuid={uuid}")],
            Format::Exfat => Vec::new(),
        }
    }

    /// Whether the filesystem's UUID is a FAT-style volume id (`ABCD-1234`), not a UUID.
    pub fn has_volume_id(self) -> bool {
        matches!(self, Format::Vfat | Format::Exfat)
    }

    /// The UUID that `uuid_args` sets, read from a pair of mkfs arguments (vfat: as `ABCD-1234`).
    pub fn uuid_from_args(self, flag: &str, value: &str) -> Option<String> {
        match (self, flag) {
            (Format::Vfat, "-i") => {
                let hex = value.len() == 8 && value.chars().all(|c| c.is_ascii_hexdigit());
                hex.then(|| format!("{}-{}", &value[..4], &value[4..]).to_ascii_uppercase())
            }
            (Format::Ext4 | Format::Btrfs | Format::F2fs, "-U") => Some(value.to_string()),
            (Format::Xfs, "-m") => value.strip_prefix("uuid=").map(str::to_string),
            _ => None,
        }
    }
}

/// A FAT volume id (vfat, exfat) from a plan's UUID: its first 8 hex digits, upper case.
fn volume_id(uuid: &str) -> String {
    uuid.chars().filter(char::is_ascii_hexdigit).take(8).collect::<String>().to_ascii_uppercase()
}

/// How to tell a filesystem that was in use (and may fail a read-only check after a crash) from one
/// whose making was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsedMarker {
    /// A bit of the byte at this offset is set once mounted.
    ByteBit {
        /// Byte offset on the device.
        offset: u64,
        /// Bit number, from 0.
        bit: u8,
    },
    /// A little-endian 16-bit counter at this offset is above zero once mounted.
    NonZeroU16 {
        /// Byte offset on the device.
        offset: u64,
    },
    /// The check exits with this code for a filesystem that was mounted and not cleanly unmounted.
    CheckExitCode(i32),
    /// Nothing needed: the check passes for a used filesystem.
    None,
}

/// A filesystem on a partition, LUKS container or ZFS volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    /// The format to create.
    pub format: Format,
    /// Where it is mounted in the installed system; not mounted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
    /// Mount options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
    /// Filesystem label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Extra arguments for mkfs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mkfs_options: Vec<String>,
    /// The filesystem's UUID (vfat: its volume id, `ABCD-1234`), for a filesystem that is already there (a
    /// kept partition's); derived from the plan when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// Make a filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mkfs {
    /// The device.
    pub device: String,
    /// The format.
    pub format: Format,
    /// The filesystem's UUID, derived from the plan (for vfat, its first 8 hex digits are the volume id).
    pub uuid: String,
    /// Filesystem label.
    pub label: Option<String>,
    /// Extra mkfs arguments.
    pub options: Vec<String>,
    /// More devices the filesystem spans (a multi-device btrfs), after `device`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_devices: Vec<String>,
}

impl Mkfs {
    /// The UUID blkid reports for the filesystem once made (`ABCD-1234` for vfat's volume id).
    pub fn blkid_uuid(&self) -> String {
        if self.format.has_volume_id() {
            let id = volume_id(&self.uuid);
            format!("{}-{}", &id[..4], &id[4..])
        } else {
            self.uuid.to_ascii_lowercase()
        }
    }

    /// The label mkfs.exfat gives an exFAT before its serial is set: derived from the plan's serial, it
    /// tells this plan's exFAT that a cut left with mkfs's own serial from anyone else's (which is never
    /// made again).
    pub fn exfat_marker(&self) -> String {
        format!("ND{}", volume_id(&self.uuid))
    }

    /// The programs that finish what [`OperationKind::command`] made, in order: for exFAT, the plan's
    /// serial, then its label (none when the plan has none, which removes the marker).
    pub fn follow_up(&self) -> Vec<CommandLine> {
        match self.format {
            Format::Exfat => vec![
                CommandLine::new("tune.exfat", ["-I", &format!("0x{}", volume_id(&self.uuid)), &self.device]),
                CommandLine::new("tune.exfat", ["-L", self.label.as_deref().unwrap_or(""), &self.device]),
            ],
            Format::Vfat | Format::Ext4 | Format::Xfs | Format::Btrfs | Format::F2fs => Vec::new(),
        }
    }

    /// What shows that a filesystem was mounted before (so mkfs finished long ago), where a crash may
    /// have left it failing the read-only check: such a filesystem is whole and is never made again.
    pub fn used_marker(&self) -> UsedMarker {
        match self.format {
            // FAT32's state byte (offset 0x41) has bit 0 set while mounted; a crash leaves it set.
            Format::Vfat => UsedMarker::ByteBit { offset: 0x41, bit: 0 },
            // ext4's s_mnt_count (little endian, at 0x34 in the superblock at 1024).
            Format::Ext4 => UsedMarker::NonZeroU16 { offset: 1024 + 0x34 },
            // The XFS check reads mkfs's own in-progress flag, which a used filesystem never has set.
            Format::Xfs => UsedMarker::None,
            // Copy on write: a btrfs a crash left behind still checks clean.
            Format::Btrfs => UsedMarker::None,
            // mkfs.f2fs writes the superblock blkid reads last, after the checkpoint it needs to mount.
            Format::F2fs => UsedMarker::None,
            // exFAT's VolumeFlags (offset 106): bit 1, VolumeDirty, is set while mounted.
            Format::Exfat => UsedMarker::ByteBit { offset: 106, bit: 1 },
        }
    }

    /// How to tell that the filesystem is whole: a run cut inside mkfs leaves a signature that blkid reads
    /// but a filesystem that never mounts.
    pub fn whole_check(&self) -> WholeCheck {
        let device = self.device.as_str();
        match self.format {
            // What mkfs.fat writes (boot sectors, FSInfo, both FATs, the root directory), read directly:
            // `fsck.vfat -n` refuses no cut mkfs that this passes (partitioner/tests/whole.rs) and
            // started a program on the way of every mount of an ESP.
            Format::Vfat => WholeCheck::Read,
            Format::Ext4 => WholeCheck::Program(CommandLine::new("e2fsck", ["-n", "-f", device])),
            // mkfs.xfs sets sb_inprogress first and clears it with its last write: read directly.
            Format::Xfs => WholeCheck::Read,
            Format::Btrfs => WholeCheck::Program(CommandLine::new("btrfs", ["check", "--readonly", device])),
            Format::F2fs => WholeCheck::Program(CommandLine::new("fsck.f2fs", ["--dry-run", device])),
            Format::Exfat => WholeCheck::Program(CommandLine::new("fsck.exfat", ["-n", device])),
        }
    }
}

/// How a filesystem is told whole ([`Mkfs::whole_check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WholeCheck {
    /// nix-dabei reads what mkfs writes itself (`partitioner::fat::fat_whole`, `partitioner::xfs::xfs_whole`).
    Read,
    /// A read-only program: exit status 0 means whole.
    Program(CommandLine),
}

impl OperationKind for Mkfs {
    /// The read-only check that tells a whole filesystem from one a cut left.
    fn other_programs(&self) -> Vec<&'static str> {
        match self.format {
            Format::Vfat | Format::Xfs => Vec::new(),
            Format::Ext4 => vec!["e2fsck"],
            Format::Btrfs => vec!["btrfs"],
            Format::F2fs => vec!["fsck.f2fs"],
            Format::Exfat => vec!["fsck.exfat"],
        }
    }

    /// mkfs, then what finishes it ([`Mkfs::follow_up`]).
    fn commands(&self) -> Vec<CommandLine> {
        self.command().into_iter().chain(self.follow_up()).collect()
    }

    fn destroys_data(&self) -> bool {
        true
    }

    fn command(&self) -> Option<CommandLine> {
        let (program, unattended) = self.format.mkfs();
        let mut args: Vec<String> = unattended.iter().map(|s| s.to_string()).collect();
        args.extend(self.format.uuid_args(&self.uuid));
        if self.format == Format::Exfat {
            args.extend(["-L".to_string(), self.exfat_marker()]);
        } else if let Some(label) = &self.label {
            args.extend([self.format.label_flag().to_string(), label.clone()]);
        }
        args.extend(self.options.iter().cloned());
        args.push(self.device.clone());
        args.extend(self.more_devices.iter().cloned());
        Some(CommandLine { program: program.to_string(), args })
    }
}

/// Grow a filesystem that is already there (a kept partition's, the last on its disk) to fill its
/// partition once the partition has grown into the free space after it. Found done when the filesystem
/// fills the partition but for its slack ([`GrowFs::size_and_slack`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrowFs {
    /// The partition.
    pub device: String,
    /// The filesystem's format: ext4, xfs or btrfs.
    pub format: Format,
    /// The filesystem's UUID (xfs and btrfs grow only while mounted: this names the private mountpoint).
    pub uuid: String,
}

impl GrowFs {
    /// Whether nix-dabei grows filesystems of this format.
    pub fn grows(format: Format) -> bool {
        match format {
            Format::Ext4 | Format::Xfs | Format::Btrfs => true,
            Format::Vfat | Format::F2fs | Format::Exfat => false,
        }
    }

    /// Where xfs and btrfs are mounted, privately, while they grow.
    pub fn private_mountpoint(&self) -> String {
        format!("/run/nix-dabei/grow-{}", self.uuid)
    }

    /// The programs that grow it, in order: ext4 offline after the forced check resize2fs asks for (or
    /// online, when `mounted`), xfs and btrfs at the private mountpoint.
    pub fn commands(&self, mounted: bool) -> Vec<CommandLine> {
        let device = self.device.as_str();
        match self.format {
            Format::Ext4 if mounted => vec![CommandLine::new("resize2fs", [device])],
            Format::Ext4 => {
                vec![CommandLine::new("e2fsck", ["-f", "-p", device]), CommandLine::new("resize2fs", [device])]
            }
            Format::Xfs => vec![CommandLine::new("xfs_growfs", [self.private_mountpoint()])],
            Format::Btrfs => vec![CommandLine::new(
                "btrfs",
                ["filesystem".to_string(), "resize".to_string(), "max".to_string(), self.private_mountpoint()],
            )],
            // Never compiled ([`GrowFs::grows`]).
            Format::Vfat | Format::F2fs | Format::Exfat => Vec::new(),
        }
    }

    /// Where the superblock that says the filesystem's size lies: (offset, length) in bytes.
    pub fn superblock(&self) -> (u64, usize) {
        match self.format {
            Format::Ext4 => (1024, 0x158),
            Format::Xfs => (0, 16),
            Format::Btrfs => (0x10000, 0x78),
            Format::Vfat | Format::F2fs | Format::Exfat => (0, 0),
        }
    }

    /// The filesystem's size in bytes, and the room at the partition's end it may leave unused and still
    /// fill it (mkfs and the grow tools leave a last ext4 block group too small for its own metadata
    /// unused, and a last xfs or btrfs piece smaller than a block or allocation group), read from the
    /// superblock at [`GrowFs::superblock`]. `None` when the bytes are no such superblock.
    pub fn size_and_slack(&self, sb: &[u8]) -> Option<(u64, u64)> {
        let le32 = |at: usize| sb.get(at..at + 4).map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        let le16 = |at: usize| sb.get(at..at + 2).map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])));
        match self.format {
            Format::Ext4 => {
                (le16(0x38)? == 0xEF53).then_some(())?;
                let block = 1024u64.checked_shl(u32::try_from(le32(0x18)?).ok()?)?;
                let wide = le32(0x60)? & 0x80 != 0;
                let blocks = le32(0x04)? | if wide { le32(0x150)? << 32 } else { 0 };
                // ext2fs drops a last group smaller than its overhead (inode table, reserved descriptors)
                // and 50 blocks; twice that is the slack.
                let inode_blocks = (le32(0x28)? * le16(0x58)?).div_ceil(block);
                let slack = 2 * (3 + inode_blocks + le16(0xCE)? + 50) * block;
                Some((blocks.checked_mul(block)?, slack))
            }
            Format::Xfs => {
                (sb.get(0..4)? == b"XFSB").then_some(())?;
                let block = u64::from(u32::from_be_bytes(sb.get(4..8)?.try_into().ok()?));
                let blocks = u64::from_be_bytes(sb.get(8..16)?.try_into().ok()?);
                Some((blocks.checked_mul(block)?, 1 << 20))
            }
            Format::Btrfs => {
                (sb.get(0x40..0x48)? == b"_BHRfS_M").then_some(())?;
                let total = u64::from_le_bytes(sb.get(0x70..0x78)?.try_into().ok()?);
                Some((total, 1 << 20))
            }
            Format::Vfat | Format::F2fs | Format::Exfat => None,
        }
    }
}

impl OperationKind for GrowFs {
    /// The programs that grow it ([`GrowFs::commands`]).
    fn other_programs(&self) -> Vec<&'static str> {
        match self.format {
            Format::Ext4 => vec!["e2fsck", "resize2fs"],
            Format::Xfs => vec!["xfs_growfs"],
            Format::Btrfs => vec!["btrfs"],
            Format::Vfat | Format::F2fs | Format::Exfat => Vec::new(),
        }
    }

    fn destroys_data(&self) -> bool {
        false
    }

    /// It changes the filesystem: never run when only mounting.
    fn creates(&self) -> bool {
        true
    }

    fn review(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let commands: Vec<String> = self.commands(false).iter().map(ToString::to_string).collect();
        write!(f, "{}", commands.join(" && "))
    }
}

impl ContentNode for Filesystem {
    fn kind(&self) -> &'static str {
        "filesystem"
    }

    fn blkid_signature(&self) -> Option<String> {
        Some(format!("TYPE={}", self.format.fs_type()))
    }

    fn validate(&self, check: &mut Checker, _plan: &Plan, path: &FieldPath, _inside_luks: bool) {
        let path = path.join("filesystem");
        if let Some(mountpoint) = &self.mountpoint {
            check.mountpoint(mountpoint, &path.join("mountpoint"));
        }
        if let (Format::Exfat, Some(mountpoint)) = (self.format, &self.mountpoint) {
            if let Some(needs) = needs_unix_semantics(&crate::nodes::mount::normal(mountpoint)) {
                check.report(
                    path.join("mountpoint"),
                    format!(
                        "exFAT keeps no owners, permissions or symbolic links, which {needs}: give {} another \
                         format, and exFAT to data shared with other systems",
                        shown(mountpoint)
                    ),
                );
            }
        }
        check.mount_options(&self.mount_options, &path.join("mount_options"));
        check.mount_option_values(self.format.fs_type(), &self.mount_options, &path.join("mount_options"));
        if let Some(label) = &self.label {
            let limit = self.format.max_label_bytes();
            if label.is_empty() || label.len() > limit || label.chars().any(char::is_control) {
                let message =
                    format!("{} is not a label for {} (1 to {limit} bytes)", shown(label), self.format.fs_type());
                check.report(path.join("label"), message);
            }
        }
        if let Some(uuid) = &self.uuid {
            let volume_id = uuid.len() == 9
                && uuid.char_indices().all(|(i, c)| if i == 4 { c == '-' } else { c.is_ascii_hexdigit() });
            let fits = if self.format.has_volume_id() { volume_id } else { crate::gpt::is_guid(uuid) };
            if !fits {
                let wanted = if self.format.has_volume_id() { "a FAT volume id (ABCD-1234)" } else { "a UUID" };
                check.report(path.join("uuid"), format!("{} is not {wanted}", shown(uuid)));
            }
        }
        if let Err((index, message)) = self.format.check_mkfs_options(&self.mkfs_options) {
            let value = self.mkfs_options.get(index).map_or_else(String::new, |v| format!("{} ", shown(v)));
            check.report(path.join("mkfs_options").join(format!("[{index}]")), format!("{value}{message}"));
        }
    }

    fn compile(&self, build: &mut Builder<'_>, site: &Site<'_>) {
        let article = if matches!(self.format, Format::Ext4 | Format::Exfat) { "an" } else { "a" };
        let mkfs = build.push(
            format!("mkfs:{}", site.owner),
            format!("Make {article} {} filesystem on {}", self.format.fs_type(), site.owner),
            vec![site.device.to_string()],
            site.disk,
            vec![site.provider.to_string()],
            crate::steps::Operation::Mkfs(Mkfs {
                device: site.device.to_string(),
                uuid: self
                    .uuid
                    .as_ref()
                    .map_or_else(|| build.plan.filesystem_uuid(site.owner), |u| u.to_ascii_lowercase()),
                format: self.format,
                label: self.label.clone(),
                options: self.mkfs_options.clone(),
                more_devices: Vec::new(),
            }),
        );
        // A filesystem that is there, on a kept partition that may have grown, grows with it before it
        // is mounted.
        let mut made = mkfs;
        if let (Some(uuid), true) =
            (&self.uuid, GrowFs::grows(self.format) && crate::gpt::filesystem_may_grow(build.plan, site.owner))
        {
            made = build.push(
                format!("grow:{}", site.owner),
                format!("Grow the {} filesystem on {} to fill its partition", self.format.fs_type(), site.owner),
                vec![site.device.to_string()],
                site.disk,
                vec![made],
                crate::steps::Operation::GrowFs(GrowFs {
                    device: site.device.to_string(),
                    format: self.format,
                    uuid: uuid.to_ascii_lowercase(),
                }),
            );
        }
        if let Some(mountpoint) = &self.mountpoint {
            build.add_mount(MountSpec::new(mountpoint, site.device, self.format.fs_type(), &self.mount_options, made));
        }
    }

    fn nixos(&self, module: &mut ModuleParts, device: &str) {
        if let Some(mountpoint) = &self.mountpoint {
            module.file_systems.push(FileSystemEntry::new(
                mountpoint,
                device,
                self.format.fs_type(),
                &self.mount_options,
            ));
        }
    }

    fn to_disko(&self, w: &mut Writer) {
        w.string("type", "filesystem");
        w.string("format", self.format.fs_type());
        if let Some(m) = &self.mountpoint {
            w.string("mountpoint", m);
        }
        if !self.mount_options.is_empty() {
            w.list("mountOptions", &self.mount_options);
        }
        // A filesystem that is already there (read back by probe) keeps its UUID: disko's mkfs gets the
        // flag that sets it, and import reads it back from there (not for exFAT, whose mkfs has none:
        // disko makes one with a serial of its own).
        let mut extra: Vec<String> = self.uuid.iter().flat_map(|uuid| self.format.uuid_args(uuid)).collect();
        if let Some(label) = &self.label {
            extra.push(self.format.label_flag().to_string());
            extra.push(label.clone());
        }
        extra.extend(self.mkfs_options.iter().cloned());
        if !extra.is_empty() {
            w.list("extraArgs", &extra);
        }
    }

    /// A vfat filesystem mounted where NixOS's boot loaders put their files (`/boot`, `/efi`, or
    /// `/boot/efi`) is an EFI system partition.
    fn partition_type(&self) -> &'static str {
        let normal = self.mountpoint.as_deref().map(crate::nodes::mount::normal);
        let boot = normal.as_deref().is_some_and(|m| ["/boot", "/efi", "/boot/efi"].contains(&m));
        if self.format == Format::Vfat && boot {
            "esp"
        } else if self.format == Format::Exfat {
            // What other systems look for on a data partition.
            "microsoft-basic-data"
        } else {
            "linux"
        }
    }
}

/// What needs owners, permissions and symbolic links at `mountpoint` (a normal path), where NixOS keeps
/// the system, its boot files, its state or its users' homes.
fn needs_unix_semantics(mountpoint: &str) -> Option<&'static str> {
    let at_or_under = |top: &str| mountpoint == top || mountpoint.starts_with(&format!("{top}/"));
    if mountpoint == "/" || at_or_under("/nix") || at_or_under("/etc") || at_or_under("/usr") {
        Some("the system needs")
    } else if at_or_under("/boot") || at_or_under("/efi") {
        Some("the boot loader's files need (an ESP is vfat)")
    } else if at_or_under("/var") || mountpoint == "/tmp" {
        Some("the system's state needs")
    } else if mountpoint == "/home" || mountpoint == "/root" {
        Some("users' homes need")
    } else {
        None
    }
}

/// Reads disko's `type = "filesystem"`; a leading label flag in `extraArgs` becomes the label.
pub(crate) fn from_disko(r: &mut Reader, object: &Object, path: &FieldPath, _inside_luks: bool) -> Option<Content> {
    r.only(object, path, &["type", "format", "mountpoint", "mountOptions", "extraArgs"]);
    let format_name = r.string(object, "format", path).unwrap_or_default();
    let Some(format) = Format::ALL.into_iter().find(|f| f.fs_type() == format_name) else {
        r.refuse(
            &path.join("format"),
            format!(
                "{format_name:?} is not a format nix-dabei makes ({})",
                Format::ALL.map(Format::fs_type).join(", ")
            ),
        );
        return None;
    };
    let mut extra = r.strings(object, "extraArgs", path);
    // Leading pairs that set the UUID or the label (as export writes them) become those fields.
    let (mut uuid, mut label) = (None, None);
    while let [flag, value, ..] = extra.as_slice() {
        if let (None, Some(found)) = (&uuid, format.uuid_from_args(flag, value)) {
            uuid = Some(found);
        } else if label.is_none() && *flag == format.label_flag() {
            label = Some(value.clone());
        } else {
            break;
        }
        extra.drain(..2);
    }
    Some(Content::Filesystem(Filesystem {
        uuid,
        format,
        mountpoint: r.string(object, "mountpoint", path),
        mount_options: r.mount_options(object, path),
        label,
        mkfs_options: extra,
    }))
}
