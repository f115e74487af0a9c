//! Linux facts and calls the real system uses: the mount table, active swaps, device-mapper names, mount(2).

use std::fs;
use std::path::PathBuf;

use nix::mount::{umount2, MntFlags, MsFlags};

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where.
    pub target: String,
    /// The filesystem type.
    pub fs_type: String,
    /// What is mounted (a device or a dataset).
    pub source: String,
}

fn unescape(text: &str) -> String {
    text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// Everything mounted now.
pub fn mounts() -> std::io::Result<Vec<MountEntry>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let separator = fields.iter().position(|f| *f == "-")?;
            Some(MountEntry {
                target: unescape(fields.get(4)?),
                fs_type: fields.get(separator + 1)?.to_string(),
                source: unescape(fields.get(separator + 2)?),
            })
        })
        .collect())
}

/// What is mounted at `target` (the topmost mount), if anything.
pub fn mounted_at(target: &str) -> std::io::Result<Option<MountEntry>> {
    let target = target.trim_end_matches('/');
    let target = if target.is_empty() { "/" } else { target };
    Ok(mounts()?.into_iter().rev().find(|m| m.target == target))
}

/// Whether two device paths name the same device (following links).
pub fn same_device(a: &str, b: &str) -> bool {
    a == b || matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

/// Mount flags for the options that are flags; the rest is passed to the filesystem.
fn split_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        match option.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" | "defaults" => {}
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "lazytime" => flags |= MsFlags::MS_LAZYTIME,
            // Options for mount(8) and fstab, not for the kernel.
            "nofail" | "auto" | "noauto" | "user" | "users" | "nouser" | "owner" | "group" | "_netdev" => {}
            other if other.starts_with("x-") || other.starts_with("comment=") => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, data.join(","))
}

/// Mounts `source` at `target` (created when missing) with mount(2).
pub fn mount(source: &str, target: &str, fs_type: &str, options: &[String]) -> std::io::Result<()> {
    fs::create_dir_all(target)?;
    let (flags, data) = split_options(options);
    let data = (!data.is_empty()).then_some(data.as_str());
    nix::mount::mount(Some(source), target, Some(fs_type), flags, data).map_err(std::io::Error::from)
}

/// Unmounts `target`.
pub fn unmount(target: &str) -> std::io::Result<()> {
    umount2(target, MntFlags::empty()).map_err(std::io::Error::from)
}

/// The devices of active swap areas, resolved.
pub fn active_swaps() -> std::io::Result<Vec<PathBuf>> {
    let text = fs::read_to_string("/proc/swaps")?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(|p| fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p)))
        .collect())
}

/// Whether `device` is active swap.
pub fn is_swap_active(device: &str) -> std::io::Result<bool> {
    let resolved = fs::canonicalize(device).unwrap_or_else(|_| PathBuf::from(device));
    Ok(active_swaps()?.contains(&resolved))
}

/// The kernel names of the devices under `/dev/mapper/<name>`, or `None` when it is not open. Found by
/// the name sysfs gives each dm device: /dev/mapper entries may be nodes rather than links.
pub fn mapper_slaves(name: &str) -> Option<Vec<String>> {
    let entries = fs::read_dir("/sys/block").ok()?;
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_named = fs::read_to_string(dir.join("dm/name")).is_ok_and(|n| n.trim() == name);
        if is_named {
            let slaves = fs::read_dir(dir.join("slaves")).ok()?;
            return Some(slaves.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect());
        }
    }
    None
}

/// The kernel name a device path resolves to (`/dev/disk/by-id/x-part2` -> `vda2`).
pub fn kernel_name(device: &str) -> Option<String> {
    fs::canonicalize(device).ok()?.file_name().map(|n| n.to_string_lossy().into_owned())
}
