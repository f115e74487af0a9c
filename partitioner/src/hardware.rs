//! What the installed system needs to know about this machine's hardware: the firmware it booted with
//! and the kernel modules of the disk controllers and network cards, read from sysfs as hardware
//! detection tools do.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::discover::SystemRoots;

/// Whether this system booted with UEFI firmware: the kernel shows `/sys/firmware/efi` only then.
pub fn booted_with_uefi(roots: &SystemRoots) -> bool {
    roots.sys.join("firmware/efi").is_dir()
}

/// The kernel modules bound to `device` (a sysfs device directory) and to every device above it: for a
/// virtio disk `virtio_blk` and `virtio_pci`, for a SATA disk `sd_mod` and `ahci`. Drivers built into
/// the kernel have no module and are left out.
fn modules_above(roots: &SystemRoots, device: &Path) -> std::io::Result<BTreeSet<String>> {
    let devices = fs::canonicalize(roots.sys.join("devices"))?;
    let mut modules = BTreeSet::new();
    let mut here: PathBuf = fs::canonicalize(device)?;
    while here.starts_with(&devices) && here != devices {
        if let Ok(module) = fs::read_link(here.join("driver/module")) {
            if let Some(name) = module.file_name().and_then(|n| n.to_str()) {
                modules.insert(name.to_string());
            }
        }
        if !here.pop() {
            break;
        }
    }
    Ok(modules)
}

/// The modules the disk `kernel_name` (such as `vda` or `nvme0n1`) needs: its driver and its
/// controllers' drivers. Virtual disks (loop devices) have no device behind them and need none.
pub fn disk_modules(roots: &SystemRoots, kernel_name: &str) -> std::io::Result<BTreeSet<String>> {
    let block = roots.sys.join("block").join(kernel_name);
    fs::metadata(&block)?;
    if fs::symlink_metadata(block.join("device")).is_err() {
        return Ok(BTreeSet::new());
    }
    let mut modules = modules_above(roots, &block.join("device"))?;
    // With NVMe multipath the namespace hangs off a virtual subsystem device whose entries link to the
    // controllers (nvme-subsys0/nvme0 -> .../0000:00:05.0/nvme/nvme0): their drivers count.
    let device = fs::canonicalize(block.join("device"))?;
    if device.starts_with(fs::canonicalize(roots.sys.join("devices/virtual"))?) {
        let devices = fs::canonicalize(roots.sys.join("devices"))?;
        for entry in fs::read_dir(&device)? {
            let entry = entry?;
            if !entry.file_type()?.is_symlink() {
                continue;
            }
            let Ok(target) = fs::canonicalize(entry.path()) else { continue };
            if target.starts_with(&devices) && !target.starts_with(&device) {
                modules.extend(modules_above(roots, &target)?);
            }
        }
    }
    // The block driver itself: sd_mod for SCSI and SATA disks shows on the SCSI device.
    if let Ok(driver) = fs::read_link(roots.sys.join("block").join(kernel_name).join("device/driver")) {
        if driver.file_name().and_then(|n| n.to_str()) == Some("sd") {
            modules.insert("sd_mod".to_string());
        }
    }
    Ok(modules)
}

/// The modules of the network cards (interfaces backed by a device, so not `lo`, bridges or VLANs).
pub fn network_modules(roots: &SystemRoots) -> std::io::Result<BTreeSet<String>> {
    let mut modules = BTreeSet::new();
    for entry in fs::read_dir(roots.sys.join("class/net"))? {
        let device = entry?.path().join("device");
        if device.exists() {
            modules.extend(modules_above(roots, &device)?);
        }
    }
    Ok(modules)
}
