//! Boots the test image in qemu (TCG) with fresh sparse disks and a 9p share, under a time limit.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How a test disk is attached, so that every kind of device name is exercised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    /// virtio-blk: /dev/vdX, /dev/disk/by-id/virtio-SERIAL.
    Virtio,
    /// NVMe: /dev/nvmeXn1, /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_SERIAL.
    Nvme,
    /// virtio-scsi: /dev/sdX, /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_SERIAL.
    Scsi,
}

/// A disk of a VM.
#[derive(Debug, Clone)]
pub struct DiskSpec {
    /// Serial number, also the image file's name.
    pub serial: String,
    /// Size in bytes (the file is sparse).
    pub size: u64,
    /// How it is attached.
    pub bus: Bus,
}

impl DiskSpec {
    /// A virtio disk.
    pub fn virtio(serial: &str, size: u64) -> Self {
        DiskSpec { serial: serial.to_string(), size, bus: Bus::Virtio }
    }

    /// The stable path udev gives the disk in the guest.
    pub fn by_id(&self) -> String {
        match self.bus {
            Bus::Virtio => format!("/dev/disk/by-id/virtio-{}", self.serial),
            Bus::Nvme => format!("/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_{}", self.serial),
            Bus::Scsi => format!("/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_{}", self.serial),
        }
    }
}

/// The kernel and initrd to boot.
#[derive(Debug, Clone)]
pub struct Image {
    /// Uncompressed kernel.
    pub vmlinux: PathBuf,
    /// The initrd.
    pub initrd: PathBuf,
    /// The compressed kernel, for kexec inside the VM.
    pub bzimage: PathBuf,
    /// The initrd compressed with zstd, as a RAM OS initrd is, for kexec inside the VM.
    pub initrd_zstd: PathBuf,
}

/// Builds the image (cached) with the scripts in vm-tests/image.
pub fn build_image() -> Result<Image> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("image/build-image.sh");
    let output =
        Command::new("bash").arg(&script).stderr(Stdio::inherit()).output().context("cannot run build-image.sh")?;
    if !output.status.success() {
        bail!("building the VM image failed ({})", output.status);
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    Ok(Image {
        vmlinux: dir.join("vmlinux"),
        initrd: dir.join("initrd.img"),
        bzimage: dir.join("bzImage"),
        initrd_zstd: dir.join("initrd.zst"),
    })
}

/// A machine: its disks (kept across boots) and its share folder.
#[derive(Debug)]
pub struct Machine {
    /// Where its disks, share and logs live.
    pub dir: PathBuf,
    /// Its disks, in attachment order.
    pub disks: Vec<DiskSpec>,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Extra qemu arguments (networking, for example).
    pub extra_args: Vec<String>,
    /// Virtual CPUs: [`cpus_per_machine`], so that the machines running at once share the host's cores.
    pub cpus: u32,
}

/// How many scenarios run at once: NIX_DABEI_VM_JOBS, else 2 (on 2 cores, two machines of one CPU each
/// finish the suite sooner than one machine of two: most of a boot runs on one CPU; see the README).
pub fn jobs() -> usize {
    std::env::var("NIX_DABEI_VM_JOBS").ok().and_then(|j| j.parse().ok()).filter(|&j| j > 0).unwrap_or(2)
}

/// The CPUs of each machine: NIX_DABEI_VM_CPUS, else the host's cores shared among the [`jobs`].
pub fn cpus_per_machine() -> u32 {
    if let Some(cpus) = std::env::var("NIX_DABEI_VM_CPUS").ok().and_then(|c| c.parse().ok()).filter(|&c| c > 0) {
        return cpus;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / jobs()).max(1) as u32
}

/// What one boot did.
#[derive(Debug)]
pub struct BootResult {
    /// The scenario script's exit status, if it got to report one.
    pub exit_code: Option<i32>,
    /// Wall time.
    pub elapsed: Duration,
    /// The console log.
    pub log: PathBuf,
    /// Killed by the time limit.
    pub timed_out: bool,
}

impl Machine {
    /// A machine in `dir` with fresh sparse disks.
    pub fn new(dir: PathBuf, disks: Vec<DiskSpec>) -> Result<Self> {
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        fs::create_dir_all(dir.join("share"))?;
        for disk in &disks {
            let file = fs::File::create(dir.join(format!("{}.img", disk.serial)))?;
            file.set_len(disk.size)?;
        }
        // NIX_DABEI_VM_MEMORY (MiB) finds the smallest guest that still works.
        let memory_mib = std::env::var("NIX_DABEI_VM_MEMORY").ok().and_then(|m| m.parse().ok()).unwrap_or(2048);
        Ok(Machine { dir, disks, memory_mib, extra_args: Vec::new(), cpus: cpus_per_machine() })
    }

    /// The image file of a disk.
    pub fn disk_file(&self, serial: &str) -> PathBuf {
        self.dir.join(format!("{serial}.img"))
    }

    /// The folder the guest sees as /host.
    pub fn share(&self) -> PathBuf {
        self.dir.join("share")
    }

    fn disk_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut scsi = false;
        for (index, disk) in self.disks.iter().enumerate() {
            let file = self.disk_file(&disk.serial);
            args.push("-drive".into());
            args.push(format!("file={},if=none,id=d{index},format=raw,cache=unsafe", file.display()));
            if disk.bus == Bus::Scsi && !scsi {
                scsi = true;
                args.push("-device".into());
                args.push("virtio-scsi-pci,id=scsi0".into());
            }
            args.push("-device".into());
            args.push(match disk.bus {
                Bus::Virtio => format!("virtio-blk-pci,drive=d{index},serial={}", disk.serial),
                Bus::Nvme => format!("nvme,drive=d{index},serial={}", disk.serial),
                Bus::Scsi => format!("scsi-hd,drive=d{index},bus=scsi0.0,serial={}", disk.serial),
            });
        }
        args
    }

    /// Boots once: runs `script` in the guest with the share at /host, within `limit`.
    pub fn boot(&self, image: &Image, boot: u32, script: &str, limit: Duration) -> Result<BootResult> {
        let running = self.start(image, boot, script)?;
        running.wait(limit)
    }

    /// Starts a boot and returns at once, for tests that talk to the guest while it runs.
    pub fn start(&self, image: &Image, boot: u32, script: &str) -> Result<Running> {
        let share = self.share();
        fs::write(share.join("run.sh"), script)?;
        let _ = fs::remove_file(share.join("exit-code"));
        let log = self.dir.join(format!("boot{boot}.log"));
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(["-accel", "tcg", "-cpu", "max", "-smp", &self.cpus.to_string(), "-m", &self.memory_mib.to_string()])
            .args(["-display", "none", "-monitor", "none", "-no-reboot", "-nodefaults"])
            .arg("-serial")
            .arg(format!("file:{}", log.display()))
            .arg("-kernel")
            .arg(&image.vmlinux)
            .arg("-initrd")
            .arg(&image.initrd)
            .arg("-append")
            .arg(format!("console=ttyS0 panic=-1 loglevel=4 cryptomgr.notests=1 nix_dabei_boot={boot}"))
            .args(["-device", "virtio-rng-pci"])
            .arg("-virtfs")
            .arg(format!("local,path={},mount_tag=host0,security_model=none", share.display()))
            .args(self.disk_args())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if !self.extra_args.iter().any(|a| a.starts_with("-nic") || a.starts_with("-netdev")) {
            command.args(["-nic", "none"]);
        }
        let start = Instant::now();
        let child = command.spawn().context("cannot start qemu-system-x86_64")?;
        Ok(Running { child, start, log, share })
    }
}

/// A boot in progress.
#[derive(Debug)]
pub struct Running {
    child: std::process::Child,
    start: Instant,
    log: PathBuf,
    share: PathBuf,
}

impl Running {
    /// Waits for the guest to power off, killing it after `limit`.
    pub fn wait(mut self, limit: Duration) -> Result<BootResult> {
        let Running { ref mut child, start, ref log, ref share } = self;
        let mut timed_out = false;
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    let mut stderr = String::new();
                    if let Some(mut pipe) = child.stderr.take() {
                        use std::io::Read;
                        let _ = pipe.read_to_string(&mut stderr);
                    }
                    if !stderr.trim().is_empty() {
                        bail!("qemu failed ({status}): {}", stderr.trim());
                    }
                }
                break;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                timed_out = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let exit_code = fs::read_to_string(share.join("exit-code")).ok().and_then(|s| s.trim().parse().ok());
        Ok(BootResult { exit_code, elapsed: start.elapsed(), log: log.clone(), timed_out })
    }

    /// Whether the guest has powered off.
    pub fn has_ended(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_some())
    }

    /// Stops the guest at once.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stages of a boot as the image's init marks them on the console (`nix-dabei-vm: stage NAME at
/// UPTIME s`): each stage's name with the kernel's uptime when it began: `modules` (the init has
/// started), `udev`, `share`, `script`, and `poweroff` when the scenario's script returned (absent after
/// a power cut).
pub fn stages(log: &Path) -> Vec<(String, f64)> {
    let text = fs::read(log).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let rest = &line[line.find("nix-dabei-vm: stage ")? + "nix-dabei-vm: stage ".len()..];
            let (name, at) = rest.split_once(" at ")?;
            Some((name.to_string(), at.trim_end_matches(" s").trim().parse().ok()?))
        })
        .collect()
}

/// The last `lines` lines of a log, for failure reports.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
