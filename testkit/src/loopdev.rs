//! Loop devices over sparse files, for tests that need real block devices on the host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use anyhow::{bail, Context, Result};

/// Tests that attach loop devices hold this, so that two of them never race for the same device.
static LOOP_LOCK: Mutex<()> = Mutex::new(());

/// Serializes loop-device tests within one test binary.
pub fn serialize() -> MutexGuard<'static, ()> {
    LOOP_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// True when running as root (loop devices need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Fails the test unless it runs as root. A test that needs root carries
/// `#[cfg_attr(no_root_tests, ignore = "...")]`: the build script (`testkit/test_conditions.rs`) marks
/// it ignored, so counted as skipped, where the build is not root or NIX_DABEI_SKIP_ROOT_TESTS is set.
/// Run anyway (`--ignored`) without root, it fails: a test that did not run never reads as passed.
pub fn require_root() {
    assert!(is_root(), "this test needs root for loop devices (set NIX_DABEI_SKIP_ROOT_TESTS=1 to skip it)");
}

/// Runs a program, failing with its stderr when it fails; returns stdout.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program).args(args).output().with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        bail!("{program} {}: {}: {}", args.join(" "), output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A sparse file attached as a loop device; detached and deleted on drop.
#[derive(Debug)]
pub struct LoopDisk {
    /// The loop device, such as /dev/loop3.
    pub device: String,
    file: PathBuf,
}

impl LoopDisk {
    /// A loop device of `size` bytes with `sector_size`-byte logical sectors.
    pub fn new(size: u64, sector_size: u32) -> Result<Self> {
        let dir = std::env::temp_dir().join("nix-dabei-loops");
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(format!("disk-{}-{}.img", std::process::id(), unique()));
        let handle = std::fs::File::create(&file).with_context(|| format!("create {}", file.display()))?;
        handle.set_len(size)?;
        drop(handle);
        let path = file.to_string_lossy().into_owned();
        let sector = sector_size.to_string();
        let device = run("losetup", &["--find", "--show", "--sector-size", &sector, &path]);
        match device {
            Ok(device) => {
                // Partitions added with BLKPG outlive a detach on this kernel; a reused loop device
                // must not come with its predecessor's partitions.
                let device = device.trim().to_string();
                let _ = Command::new("partx").args(["-d", &device]).output();
                Ok(LoopDisk { device, file })
            }
            Err(error) => {
                let _ = std::fs::remove_file(&file);
                Err(error)
            }
        }
    }

    /// The device node of partition `number`.
    pub fn partition(&self, number: u32) -> String {
        format!("{}p{number}", self.device)
    }

    /// The backing file.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("partx").args(["-d", &self.device]).output();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Something mounted for a test; unmounted on drop.
#[derive(Debug)]
pub struct Mounted {
    /// The mount point.
    pub target: PathBuf,
}

impl Mounted {
    /// Mounts `device` on a fresh directory.
    pub fn new(device: &str) -> Result<Self> {
        let target = std::env::temp_dir().join(format!("nix-dabei-mnt-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&target)?;
        run("mount", &[device, &target.to_string_lossy()])?;
        Ok(Mounted { target })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.target).status();
        let _ = std::fs::remove_dir(&self.target);
    }
}

/// Active swap for a test; disabled on drop.
#[derive(Debug)]
pub struct SwapOn {
    device: String,
}

impl SwapOn {
    /// Enables swap on a device that already holds a swap signature.
    pub fn new(device: &str) -> Result<Self> {
        run("swapon", &[device])?;
        Ok(SwapOn { device: device.to_string() })
    }
}

impl Drop for SwapOn {
    fn drop(&mut self) {
        let _ = Command::new("swapoff").arg(&self.device).status();
    }
}
