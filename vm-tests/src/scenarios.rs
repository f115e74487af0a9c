//! The VM scenarios: each boots once to plan and apply a layout and write a file into the target, then
//! boots again to import, unlock and mount from scratch; the host then checks what the guest reported
//! against the plan. Every scenario has a bystander disk whose contents must not change.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use vm_tests::vm::{self, Bus, DiskSpec, Image, Machine};

const GIB: u64 = 1 << 30;
const BYSTANDER: &str = "bystander";
const BYSTANDER_SIZE: u64 = 64 << 20;
const BOOT_LIMIT: Duration = Duration::from_secs(300);
/// The passphrase the encrypted scenarios use; it reaches the guest as a file, never an argument.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// Shell run before every scenario script.
const PRELUDE: &str = r#"set -eu
export PATH=/host/bin:$PATH
# Test-only: weak key derivation so that LUKS and ZFS keys are quick to derive under emulation.
export NIX_DABEI_WEAK_KDF=1
mkdir -p /host/out
say() { echo "nix-dabei-vm: $*"; }
"#;

/// A scenario.
pub struct Scenario {
    /// Name on the command line.
    pub name: &'static str,
    /// The disks besides the bystander.
    pub disks: Vec<DiskSpec>,
    /// One guest script per boot.
    pub boots: Vec<String>,
    /// Checks of what the guest left in the share, on the host.
    pub verify: fn(&Path) -> Result<()>,
}

/// What a passing scenario took.
pub struct Report {
    /// Wall time of everything.
    pub total: Duration,
    /// Wall time of each boot.
    pub boots: Vec<Duration>,
}

impl Report {
    /// "boot 1 40.2 s, boot 2 21.0 s".
    pub fn boots_summary(&self) -> String {
        self.boots.iter().enumerate().map(|(i, d)| format!("boot {} {:.1} s", i + 1, d.as_secs_f64())).collect::<Vec<_>>().join(", ")
    }
}

/// Deterministic filler for the bystander disk.
fn bystander_bytes() -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..BYSTANDER_SIZE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Runs one scenario.
pub fn run(scenario: &Scenario, image: &Image, binary: &Path, root: &Path) -> Result<Report> {
    let mut disks = scenario.disks.clone();
    disks.push(DiskSpec::virtio(BYSTANDER, BYSTANDER_SIZE));
    let machine = Machine::new(root.join(scenario.name), disks)?;
    fs::write(machine.disk_file(BYSTANDER), bystander_bytes())?;
    let share = machine.share();
    fs::create_dir_all(share.join("bin"))?;
    fs::copy(binary, share.join("bin/nix-dabei")).with_context(|| format!("cannot copy {}", binary.display()))?;
    fs::write(share.join("passphrase"), PASSPHRASE)?;
    let start = std::time::Instant::now();
    let mut boots = Vec::new();
    for (index, script) in scenario.boots.iter().enumerate() {
        let boot = index as u32 + 1;
        let result = machine.boot(image, boot, &format!("{PRELUDE}{script}"), BOOT_LIMIT)?;
        boots.push(result.elapsed);
        let failure = if result.timed_out {
            Some(format!("boot {boot} hit its time limit of {} s", BOOT_LIMIT.as_secs()))
        } else if result.exit_code != Some(0) {
            Some(format!("boot {boot} ended with {:?}", result.exit_code))
        } else {
            None
        };
        if let Some(failure) = failure {
            bail!("{failure}; console log {}:\n{}", result.log.display(), vm::tail(&result.log, 60));
        }
    }
    let bystander = fs::read(machine.disk_file(BYSTANDER))?;
    ensure!(bystander == bystander_bytes(), "the bystander disk was written to");
    (scenario.verify)(&share).with_context(|| format!("checking the results in {}", share.display()))?;
    Ok(Report { total: start.elapsed(), boots })
}

fn read_json(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The leaf devices of every vdev of a pool in `zpool status -j` output, by vdev type.
fn vdev_shape(status: &Value, pool: &str) -> Result<Vec<(String, usize)>> {
    let root = &status["pools"][pool]["vdevs"][pool];
    ensure!(root.is_object(), "pool {pool} is not in zpool status: {status}");
    let vdevs = root["vdevs"].as_object().context("no vdevs")?;
    Ok(vdevs
        .values()
        .map(|v| {
            let kind = v["vdev_type"].as_str().unwrap_or("?").to_string();
            let children = v["vdevs"].as_object().map_or(1, |c| c.len());
            (kind, children)
        })
        .collect())
}

/// The raw harness check: an encrypted ZFS mirror made by hand survives a reboot.
fn verify_harness(share: &Path) -> Result<()> {
    let status = read_json(&share.join("out/zpool-status.json"))?;
    ensure!(status["pools"]["tank"]["state"] == "ONLINE", "pool not online: {status}");
    ensure!(vdev_shape(&status, "tank")? == [("mirror".to_string(), 2)], "not a two-way mirror");
    let props = read_json(&share.join("out/zfs-get.json"))?;
    let encryption = &props["datasets"]["tank/data"]["properties"]["encryption"]["value"];
    ensure!(encryption == "aes-256-gcm", "tank/data encryption is {encryption}");
    ensure!(read(&share.join("out/hello.txt"))?.trim() == "written in boot 1", "the file did not survive");
    Ok(())
}

fn harness() -> Scenario {
    let boot1 = r#"
say "partitioning by hand"
for d in /dev/disk/by-id/virtio-h0 /dev/disk/by-id/virtio-h1; do
    sgdisk -Z -n1:1M:+512M -t1:EF00 -n2:0:0 -t2:BF01 "$d" >/dev/null
done
udevadm settle
printf '%s' "$(cat /host/passphrase)" | zpool create -f -o ashift=12 -O encryption=aes-256-gcm \
    -O keyformat=passphrase -O keylocation=prompt -O pbkdf2iters=100000 -O mountpoint=none -R /mnt \
    tank mirror /dev/disk/by-id/virtio-h0-part2 /dev/disk/by-id/virtio-h1-part2
zfs create -o mountpoint=legacy tank/data
mount -t zfs tank/data /mnt
echo "written in boot 1" > /mnt/hello.txt
umount /mnt
zpool export tank
"#;
    let boot2 = r#"
zpool import -N -R /mnt tank
zfs load-key -L file:///host/passphrase tank
mount -t zfs tank/data /mnt
cat /mnt/hello.txt > /host/out/hello.txt
zpool status -j --json-int tank > /host/out/zpool-status.json
zfs get -j -p all tank/data > /host/out/zfs-get.json
umount /mnt
zpool export tank
"#;
    Scenario {
        name: "harness",
        disks: vec![DiskSpec::virtio("h0", 2 * GIB), DiskSpec { serial: "h1".into(), size: 2 * GIB, bus: Bus::Virtio }],
        boots: vec![boot1.to_string(), boot2.to_string()],
        verify: verify_harness,
    }
}

/// Every scenario, in the order CI runs them.
pub fn all() -> Vec<Scenario> {
    vec![harness()]
}
