//! The VM scenarios: each boots once to plan and apply a layout and write a file into the target, then
//! boots again to import, unlock and mount from scratch; the host then checks what the guest reported
//! against the plan. Every scenario has a bystander disk whose contents must not change.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use vm_tests::vm::{self, Bus, DiskSpec, Image, Machine};

pub const GIB: u64 = 1 << 30;
const BYSTANDER: &str = "bystander";
const BYSTANDER_SIZE: u64 = 64 << 20;
const BOOT_LIMIT: Duration = Duration::from_secs(300);
/// The passphrase the encrypted scenarios use; it reaches the guest as a file, never an argument.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// Shell run before every scenario script. The guest's shell is busybox, which runs its own applets
/// (mount, mkfs.vfat, ...) before anything on PATH: scripts name util-linux tools by full path.
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
    /// Boots (from 1) that end by losing power on purpose, without reporting an exit status.
    pub power_loss_boots: Vec<u32>,
    /// For a scenario with one boot and networking: what the host does while the guest runs, given
    /// the share and the host port forwarded to the guest's SSH port.
    pub driver: Option<fn(&Path, u16) -> Result<()>>,
    /// Guest memory in MiB, where the scenario proves a figure (else 2048; NIX_DABEI_VM_MEMORY overrides).
    pub memory_mib: Option<u32>,
    /// Puts what the guest needs besides the binary and the passphrase into the share before the first
    /// boot.
    pub prepare: Option<fn(&Path) -> Result<()>>,
    /// How long each boot may take, where longer than [`BOOT_LIMIT`].
    pub boot_limit: Option<Duration>,
    /// A boot (from 1, one that loses power) run again and again until the guest leaves this file in the
    /// share, at most this many times: the power-cut scenario's interrupted install.
    pub repeat_until: Option<(u32, &'static str, u32)>,
}

impl Scenario {
    /// How long it runs, roughly, as boots: the order in which scenarios are started (longest first).
    /// A driven scenario's boot is a whole remote install; a repeated boot counts as often as it may run.
    pub fn weight(&self) -> usize {
        let repeated = self.repeat_until.map_or(0, |(_, _, at_most)| at_most as usize);
        self.boots.len() + repeated + if self.driver.is_some() { 8 } else { 0 }
    }
}

/// What a passing scenario took.
pub struct Report {
    /// Wall time of everything.
    pub total: Duration,
    /// Wall time of each boot.
    pub boots: Vec<Duration>,
    /// The console logs of the boots, for where their seconds went ([`vm::stages`]).
    pub logs: Vec<std::path::PathBuf>,
}

impl Report {
    /// "boot 1 40.2 s, boot 2 21.0 s".
    pub fn boots_summary(&self) -> String {
        self.boots
            .iter()
            .enumerate()
            .map(|(i, d)| format!("boot {} {:.1} s", i + 1, d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
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
    let mut machine = Machine::new(root.join(scenario.name), disks)?;
    // NIX_DABEI_VM_MEMORY still wins, for finding the smallest guest that works.
    if let Some(memory) = scenario.memory_mib.filter(|_| std::env::var_os("NIX_DABEI_VM_MEMORY").is_none()) {
        machine.memory_mib = memory;
    }
    fs::write(machine.disk_file(BYSTANDER), bystander_bytes())?;
    let share = machine.share();
    fs::create_dir_all(share.join("bin"))?;
    fs::copy(binary, share.join("bin/nix-dabei")).with_context(|| format!("cannot copy {}", binary.display()))?;
    fs::write(share.join("passphrase"), PASSPHRASE)?;
    // disko's example configurations, for the import scenarios.
    let examples = std::env::var_os("NIX_DABEI_DISKO_EXAMPLES").map(std::path::PathBuf::from).or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().map(|d| d.join("shared/disko-examples")).find(|d| d.is_dir())
    });
    if let Some(examples) = examples {
        fs::create_dir_all(share.join("disko"))?;
        for entry in fs::read_dir(&examples)?.flatten() {
            fs::copy(entry.path(), share.join("disko").join(entry.file_name()))?;
        }
    }
    if let Some(prepare) = scenario.prepare {
        prepare(&share).context("preparing the share")?;
    }
    let start = std::time::Instant::now();
    let mut boots = Vec::new();
    let mut logs = Vec::new();
    if let Some(driver) = scenario.driver {
        return run_driven(scenario, driver, machine, image, start);
    }
    // The boot being run (counting repetitions), and the script's number in `boots` (from 1).
    let (mut boot, mut script_number, mut repeated) = (0, 1, 0);
    while let Some(script) = scenario.boots.get(script_number as usize - 1) {
        boot += 1;
        let limit = scenario.boot_limit.unwrap_or(BOOT_LIMIT);
        let result = machine.boot(image, boot, &format!("{PRELUDE}{script}"), limit)?;
        boots.push(result.elapsed);
        logs.push(result.log.clone());
        let power_lost = scenario.power_loss_boots.contains(&script_number);
        let failure = if result.timed_out {
            Some(format!("boot {boot} hit its time limit of {} s", limit.as_secs()))
        } else if power_lost && result.exit_code.is_some() {
            Some(format!("boot {boot} should have lost power but ended with {:?}", result.exit_code))
        } else if !power_lost && result.exit_code != Some(0) {
            Some(format!("boot {boot} ended with {:?}", result.exit_code))
        } else {
            None
        };
        if let Some(failure) = failure {
            bail!("{failure}; console log {}:\n{}", result.log.display(), vm::tail(&result.log, 60));
        }
        // Nothing a boot printed on the console may show the passphrase.
        let console = fs::read(&result.log).with_context(|| format!("cannot read {}", result.log.display()))?;
        ensure!(
            !String::from_utf8_lossy(&console).contains(PASSPHRASE),
            "the passphrase appears on the console of boot {boot} ({})",
            result.log.display()
        );
        match scenario.repeat_until {
            Some((again, file, at_most)) if again == script_number && !share.join(file).exists() => {
                repeated += 1;
                ensure!(repeated < at_most, "boot {boot}: {file} is not there after {at_most} repetitions");
            }
            _ => script_number += 1,
        }
    }
    let bystander = fs::read(machine.disk_file(BYSTANDER))?;
    ensure!(bystander == bystander_bytes(), "the bystander disk was written to");
    (scenario.verify)(&share).with_context(|| format!("checking the results in {}", share.display()))?;
    remove_disk_images(&machine)?;
    Ok(Report { total: start.elapsed(), boots, logs })
}

/// A passed scenario keeps its logs and results but not its disks: sparse, but gigabytes each to `ls` and
/// to backups. A failed one keeps them for inspection.
fn remove_disk_images(machine: &Machine) -> Result<()> {
    for disk in &machine.disks {
        let file = machine.disk_file(&disk.serial);
        fs::remove_file(&file).with_context(|| format!("cannot remove {}", file.display()))?;
    }
    Ok(())
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
        power_loss_boots: vec![],
        driver: None,
        memory_mib: None,
        prepare: None,
        boot_limit: None,
        repeat_until: None,
    }
}

/// Shims that record the arguments of the programs that handle keys, so the host can check that no
/// passphrase ever reached a command line.
const ARGV_SHIMS: &str = r#"
mkdir -p /host/shims
for program in zpool zfs mkfs.vfat mkfs.ext4 mkswap nixos-install; do
    # By full path: busybox's shell would run its own applet (mkswap, mkfs.vfat) for a bare name.
    real=$(for dir in /host/bin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
        if [ -x "$dir/$program" ] && [ ! -L "$dir/$program" ]; then echo "$dir/$program"; break; fi
    done)
    printf '#!/bin/sh\necho "%s $*" >> /host/out/argv.log\nexec %s "$@"\n' "$program" "$real" > "/host/shims/$program"
    chmod +x "/host/shims/$program"
done
export PATH=/host/shims:$PATH
"#;

/// Boot 2 of every layout scenario: open, import and mount from scratch with nix-dabei, then report what
/// the system sees for the host to check (and unmount: [`UNMOUNT_AFTER_VERIFY`]).
macro_rules! verify_boot_mounted {
    () => {
        r#"
if [ -f /host/secret.key ]; then cp /host/secret.key /tmp/secret.key; fi
nix-dabei mount /host/plan.toml --passphrase-file /host/passphrase --json > /host/out/mount.jsonl
cat /mnt/home/hello.txt > /host/out/hello.txt
cat /proc/mounts > /host/out/mounts.txt
ls /dev/disk/by-partuuid > /host/out/partuuids.txt
/usr/sbin/blkid -o export > /host/out/blkid.txt
# A root in memory comes back empty: then only the store keeps what the install left.
if [ -f /mnt/etc/nixos/nix-dabei.nix ]; then cp /mnt/etc/nixos/nix-dabei.nix /host/out/nix-dabei.nix; fi
if [ -f /mnt/nix/var/nix/profiles/nix-dabei-install-standin ]; then
    cp /mnt/nix/var/nix/profiles/nix-dabei-install-standin /host/out/standin-in-store.txt
    cp /mnt/nix/var/nix/profiles/nix-dabei-install-standin.nix /host/out/module-in-store.nix
fi
if [ -f /mnt/var/log/nix-dabei-install-standin ]; then
    cp /mnt/var/log/nix-dabei-install-standin /host/out/standin.txt
fi
if zpool list -H -o name | grep -q .; then
    zpool status -j --json-int > /host/out/zpool-status.json
    zfs get -j -p -o name,property,value mountpoint,encryption,keystatus,compression > /host/out/zfs-get.json
fi
cp /run/nix-dabei/journal.json /host/out/journal-boot2.json
"#
    };
}

/// The end of boot 2: unmount everything again.
macro_rules! unmount_after_verify {
    () => {
        "nix-dabei unmount /host/plan.toml --json > /host/out/unmount2.jsonl\n"
    };
}

/// Boot 2 up to the point where everything is mounted and reported; a scenario adds its own checks.
const VERIFY_BOOT_MOUNTED: &str = verify_boot_mounted!();
const UNMOUNT_AFTER_VERIFY: &str = unmount_after_verify!();
const VERIFY_BOOT: &str = concat!(verify_boot_mounted!(), unmount_after_verify!());

/// What boot 1 of every install scenario does once the system is installed: write a file into the
/// target, look at the disks, apply again (a no-op), keep the journal, unmount.
const AFTER_INSTALL: &str = r#"
mkdir -p /mnt/home
echo "written in boot 1" > /mnt/home/hello.txt
nix-dabei disks --json > /host/out/disks-in-use.json
nix-dabei apply /host/plan.toml --json > /host/out/apply2.jsonl
cp /run/nix-dabei/journal.json /host/out/journal-boot1.json
nix-dabei unmount /host/plan.toml --json > /host/out/unmount1.jsonl
"#;

/// The layout's module goes into the stand-in flake (vm-tests/image/flake.nix) before the install, as a
/// user commits it into theirs: the check before install evaluates that flake.
const LAYOUT_MODULE: &str = "nix-dabei nixos-module /host/plan.toml > /etc/nixos/nix-dabei.nix";

/// What an install leaves: nothing mounted under /mnt, no pool imported, no LUKS mapping open, and each
/// pool member's label (readable where it is not inside LUKS) with the pool's state and host id.
const RELEASED: &str = r#"
zpool list -H -o name > /host/out/pools-after-install.txt
awk '$2 ~ "^/mnt"' /proc/mounts > /host/out/mounts-after-install.txt
ls /dev/mapper | grep -v '^control$' > /host/out/mappers-after-install.txt || true
for d in /dev/disk/by-partuuid/*; do
    echo "== $(basename "$d")"
    zdb -l "$d" 2>/dev/null | grep -E '^ +(state|hostid):' | sort -u
done > /host/out/labels-after-install.txt
"#;

/// Boot 1 of a layout scenario: `make_plan` writes /host/plan.toml, then apply (which installs and
/// releases the disks), [`RELEASED`], mount again and [`AFTER_INSTALL`].
fn install_boot(make_plan: &str) -> String {
    format!(
        r#"{ARGV_SHIMS}
nix-dabei disks --json > /host/out/disks.json
{make_plan}
{LAYOUT_MODULE}
nix-dabei apply /host/plan.toml --yes-wipe-all --passphrase-file /host/passphrase --json ${{APPLY_ARGS:-}} \
    > /host/out/apply1.jsonl
{RELEASED}
say "mounting after the install"
nix-dabei mount /host/plan.toml --passphrase-file /host/passphrase --json > /host/out/mount-after-install.jsonl
say "mounted after the install"
{AFTER_INSTALL}"#
    )
}

/// Boot 1 of a preset scenario.
fn apply_boot(plan_args: &str) -> String {
    install_boot(&format!(
        "nix-dabei plan {plan_args} --flake path:/etc/nixos#vm -o /host/plan.toml > /host/out/plan.txt"
    ))
}

fn events(path: &Path) -> Result<Vec<Value>> {
    read(path)?
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("{}: not a JSON event: {l}", path.display())))
        .collect()
}

/// The closing event of a run, checked to be a success.
pub fn finished(path: &Path) -> Result<Value> {
    let list = events(path)?;
    let last = list.last().cloned().with_context(|| format!("{} is empty", path.display()))?;
    ensure!(last["event"] == "finished" && last["ok"] == true, "{} did not finish well: {last}", path.display());
    ensure!(!list.iter().any(|e| e["event"] == "step-failed"), "{}: a step failed", path.display());
    Ok(last)
}

/// Checks a layout scenario's results against its plan.
fn verify_layout(share: &Path) -> Result<()> {
    let plan =
        layouts::Plan::from_toml(&read(&share.join("plan.toml"))?).map_err(|e| anyhow::anyhow!("plan.toml: {e}"))?;
    let steps = plan.compile(&layouts::CompileOptions::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let out = share.join("out");
    // Installed through the TUI, whose boot leaves its last screen; every other install boot leaves the
    // events of its apply and the disks as listed before it, and a missing one fails the check.
    let through_tui = out.join("tui.txt").exists();
    if through_tui {
        // Installed through the TUI: its last screen says so.
        let screen = read(&out.join("tui.txt"))?;
        ensure!(
            screen.contains("Installed.") && screen.contains("step(s) applied"),
            "the TUI did not finish:\n{screen}"
        );
    } else {
        let first = finished(&out.join("apply1.jsonl"))?;
        // After the power-cut boots, the resumed install may have had little or nothing left to do.
        let resumed = out.join("cuts.jsonl").exists();
        ensure!(resumed || first["applied"].as_u64() > Some(0), "the first apply applied nothing");
    }
    let second = finished(&out.join("apply2.jsonl"))?;
    ensure!(second["applied"] == 0, "the second apply was not a no-op: {second}");
    finished(&out.join("mount.jsonl"))?;
    finished(&out.join("unmount1.jsonl"))?;
    finished(&out.join("unmount2.jsonl"))?;
    ensure!(read(&out.join("hello.txt"))?.trim() == "written in boot 1", "the file written in boot 1 is gone");

    // Every planned mount is there, with its filesystem type.
    let mounts = read(&out.join("mounts.txt"))?;
    for step in &steps.steps {
        if let layouts::Operation::Mount(layouts::steps::Mount { target, fs_type, source, .. }) = &step.operation {
            let line = mounts.lines().find(|l| l.split(' ').nth(1) == Some(target.as_str()));
            let line = line.with_context(|| format!("{target} is not mounted in boot 2"))?;
            ensure!(line.split(' ').nth(2) == Some(fs_type.as_str()), "{target} is not {fs_type}: {line}");
            if fs_type == "zfs" {
                ensure!(line.starts_with(&format!("{source} ")), "{target} holds {line}, not {source}");
            }
        }
    }
    // Partitions carry the planned UUIDs, which the NixOS module uses.
    let partuuids = read(&out.join("partuuids.txt"))?;
    for (disk, d) in &plan.disks {
        for part in d.partitions.keys() {
            let uuid = plan.partition_uuid(disk, part);
            ensure!(partuuids.lines().any(|l| l == uuid), "no partition with UUID {uuid} ({disk}/{part})");
        }
    }
    // Discovery saw each planned disk with udev's stable path, its serial and size; once installed, the
    // disks are in use (mounted, in an imported pool) and the bystander is still free.
    if !through_tui {
        let before = read_json(&out.join("disks.json"))?;
        let after = read_json(&out.join("disks-in-use.json"))?;
        let find = |list: &Value, device: &str| {
            list["disks"].as_array().and_then(|disks| {
                disks
                    .iter()
                    .find(|d| d["stable_paths"].as_array().is_some_and(|p| p.iter().any(|p| p == device)))
                    .cloned()
            })
        };
        for (name, disk) in &plan.disks {
            let seen =
                find(&before, &disk.device).with_context(|| format!("nix-dabei disks did not list {}", disk.device))?;
            ensure!(
                seen["in_use"].as_array().is_some_and(Vec::is_empty),
                "{name} was in use before the install: {seen}"
            );
            ensure!(seen["size"].as_u64() == disk.size, "{name}: size {} differs from the plan", seen["size"]);
            ensure!(
                seen["serial"].as_str() == disk.identity.serial.as_deref(),
                "{name}: serial {} differs from the plan",
                seen["serial"]
            );
            let used = find(&after, &disk.device).with_context(|| format!("{} vanished", disk.device))?;
            let reasons: Vec<String> = used["in_use"]
                .as_array()
                .map(|r| r.iter().map(|x| x["reason"].as_str().unwrap_or("").to_string()).collect())
                .unwrap_or_default();
            ensure!(!reasons.is_empty(), "{name} is not in use after the install");
            let in_pool = plan.pools.keys().any(|p| plan.pool_members(p).iter().any(|(d, _)| d == name));
            let luks = disk.partitions.values().any(|p| matches!(p.content, Some(layouts::Content::Luks(_))));
            if in_pool && !luks {
                ensure!(
                    reasons.iter().any(|r| r == "imported-pool"),
                    "{name} is not reported in an imported pool: {reasons:?}"
                );
            }
            if luks {
                ensure!(
                    reasons.iter().any(|r| r == "holders"),
                    "{name}: its open LUKS mapping is not reported: {reasons:?}"
                );
            }
        }
        let bystander =
            find(&after, &format!("/dev/disk/by-id/virtio-{BYSTANDER}")).context("the bystander is not listed")?;
        ensure!(bystander["in_use"].as_array().is_some_and(Vec::is_empty), "the bystander looks in use: {bystander}");
    }
    // blkid sees on every partition what the plan put there.
    let blkid = read(&out.join("blkid.txt"))?;
    let blocks: Vec<&str> = blkid.split("\n\n").collect();
    for (disk, d) in &plan.disks {
        for (part, p) in &d.partitions {
            let uuid = plan.partition_uuid(disk, part);
            let expected = p.content.as_ref().and_then(layouts::Content::blkid_signature);
            let Some(expected) = expected else { continue };
            let block = blocks
                .iter()
                .find(|b| b.lines().any(|l| l == format!("PARTUUID={uuid}")))
                .with_context(|| format!("blkid does not list {disk}/{part} (PARTUUID {uuid})"))?;
            ensure!(
                block.lines().any(|l| l == expected),
                "{disk}/{part}: blkid says\n{block}\nbut the plan puts {expected} there"
            );
        }
    }
    let planned_module = layouts::nixos::module(&plan);
    let is_root = |m: &str| layouts::nodes::mount::normalize_mountpoint(m).is_ok_and(|m| m == "/");
    let root_in_memory = plan.nodev.iter().any(|(key, n)| is_root(n.mountpoint(key)));
    let standin = if root_in_memory {
        // `/` is a tmpfs: boot 2 mounted it empty, and the store on disk kept the install's record.
        ensure!(!out.join("nix-dabei.nix").exists(), "the root in memory kept /etc/nixos over a reboot");
        ensure!(!out.join("standin.txt").exists(), "the root in memory kept /var/log over a reboot");
        let module = read(&out.join("module-in-store.nix"))?;
        ensure!(module == planned_module, "the install saw a NixOS module other than the plan's");
        read(&out.join("standin-in-store.txt"))?
    } else {
        let module = read(&out.join("nix-dabei.nix"))?;
        ensure!(module == planned_module, "the NixOS module in the target differs from the plan's");
        read(&out.join("standin.txt"))?
    };
    verify_module(&plan, &planned_module)?;
    verify_released(&plan, &out)?;
    // The stand-in nixos-install ran with the flake, after everything was mounted.
    ensure!(
        standin.contains("flake=path:/etc/nixos#vm") && standin.contains("root=/mnt"),
        "nixos-install did not run as expected: {standin}"
    );

    for (name, pool) in &plan.pools {
        let status = read_json(&out.join("zpool-status.json"))?;
        ensure!(status["pools"][name]["state"] == "ONLINE", "pool {name} is not online");
        let members = plan.pool_members(name).len();
        let expected = match pool.mode.keyword() {
            Some(kind) => vec![(kind.trim_end_matches('1').to_string(), members)],
            None => vec![("disk".to_string(), 1); members],
        };
        // A pool with its vdevs written out is checked by its scenario (`zpool list -v`).
        if pool.vdevs.is_empty() {
            let shape: Vec<(String, usize)> =
                vdev_shape(&status, name)?.into_iter().map(|(k, n)| (k.trim_end_matches('1').to_string(), n)).collect();
            ensure!(shape == expected, "pool {name} has vdevs {shape:?}, the plan says {expected:?}");
        }
        let props = read_json(&out.join("zfs-get.json"))?;
        let property = |dataset: &str, key: &str| {
            props["datasets"][dataset]["properties"][key]["value"].as_str().map(str::to_string)
        };
        let encryption = pool.root_fs_options.get("encryption").cloned().unwrap_or_else(|| "off".into());
        ensure!(
            property(name, "encryption").as_deref() == Some(encryption.as_str()),
            "pool {name}: encryption is {:?}, planned {encryption}",
            property(name, "encryption")
        );
        for (dataset, planned) in &pool.datasets {
            let full = format!("{name}/{dataset}");
            if planned.mountpoint.is_some() {
                ensure!(property(&full, "mountpoint").as_deref() == Some("legacy"), "{full} is not a legacy mount");
            }
            if encryption != "off" {
                ensure!(property(&full, "keystatus").as_deref() == Some("available"), "{full} is still locked");
            }
        }
    }
    // No passphrase reached a command line, the journal or the console.
    let argv = read(&out.join("argv.log"))?;
    ensure!(argv.contains("zpool ") || plan.pools.is_empty(), "the argument log recorded no zpool call");
    // Each file a step of the install wrote must be there to be checked: a missing one fails.
    let through_tui = out.join("tui.txt").exists();
    let written: &[&str] = if through_tui {
        &["argv.log", "journal-boot1.json", "journal-boot2.json", "tui.txt"]
    } else {
        &["argv.log", "journal-boot1.json", "journal-boot2.json", "apply1.jsonl", "plan.txt"]
    };
    for file in written {
        let text = read(&out.join(file))?;
        ensure!(!text.contains(PASSPHRASE), "the passphrase appears in {file}");
    }
    ensure!(!read(&share.join("plan.toml"))?.contains(PASSPHRASE), "the passphrase appears in the plan");
    Ok(())
}

/// What the written module must say for the installed system to boot on this VM: the drivers of the
/// disks' controllers (virtio, virtio-scsi, NVMe) in the initrd; GRUB in every disk's boot sector, since
/// the VM boots with SeaBIOS (no EFI) and plans made here get BIOS boot partitions; every ESP and swap of
/// a mirror may be missing; pools inside LUKS keep ZFS's default device directory.
fn verify_module(plan: &layouts::Plan, module: &str) -> Result<()> {
    let made_here = !plan.initrd_kernel_modules.is_empty();
    if made_here {
        ensure!(plan.boot == Some(layouts::BootMode::Both), "booted without EFI, the plan boots {:?}", plan.boot);
        let modules = module
            .lines()
            .find(|l| l.trim_start().starts_with("boot.initrd.availableKernelModules"))
            .context("the module names no initrd kernel modules")?;
        // virtio disks and the virtio-scsi controller sit on virtio's PCI transport; NVMe is a PCI driver itself.
        let virtio = plan.disks.values().any(|d| !d.device.contains("nvme-"));
        ensure!(!virtio || modules.contains("\"virtio_pci\""), "virtio_pci is not in the initrd: {modules}");
        for disk in plan.disks.values() {
            let driver = match disk.device {
                ref d if d.contains("virtio-") => "virtio_blk",
                ref d if d.contains("nvme-") => "nvme",
                _ => "virtio_scsi",
            };
            ensure!(modules.contains(&format!("\"{driver}\"")), "{driver} for {} is not in the initrd", disk.device);
            let bios = disk.partitions.values().filter(|p| p.kind.as_deref() == Some("bios-boot")).count();
            ensure!(bios == 1, "{} has {bios} BIOS boot partitions", disk.device);
            ensure!(
                module.contains(&format!("devices = [ \"{}\" ];", disk.device)),
                "GRUB does not go into the boot sector of {}",
                disk.device
            );
        }
    }
    let in_luks = plan.disks.values().flat_map(|d| d.partitions.values()).any(
        |p| matches!(&p.content, Some(layouts::Content::Luks(l)) if matches!(*l.content, layouts::Content::Zfs(_))),
    );
    ensure!(
        module.contains("boot.zfs.devNodes") == (!plan.pools.is_empty() && !in_luks),
        "boot.zfs.devNodes is wrong for pools {} LUKS",
        if in_luks { "inside" } else { "outside" }
    );
    // ESPs with a filesystem of their own: a mirrored ESP is one filesystem on an array.
    let esps = plan
        .disks
        .values()
        .flat_map(|d| d.partitions.values())
        .filter(|p| p.is_esp() && matches!(p.content, Some(layouts::Content::Filesystem(_))))
        .count();
    let nofail = module.matches("\"nofail\" \"x-systemd.device-timeout=5s\"").count();
    let swaps = plan
        .disks
        .values()
        .flat_map(|d| d.partitions.values())
        .filter(|p| matches!(p.content, Some(layouts::Content::Swap(_))))
        .count();
    let expected = if esps > 1 { esps } else { 0 } + if plan.disks.len() > 1 { swaps } else { 0 };
    ensure!(nofail == expected, "{nofail} ESPs and swaps may be missing at boot, expected {expected}");
    Ok(())
}

/// After an apply that installed, the disks were released so that the installed system imports its
/// pools cleanly: nothing mounted, no pool imported, LUKS closed, and every readable pool label says
/// exported (state 1) under the installed system's host id.
fn verify_released(plan: &layouts::Plan, out: &Path) -> Result<()> {
    // Through the TUI (it has no events file) the install ran when it says "Installed."; the check before
    // install passed there too, against the module of the same plan made with the CLI.
    let installed = if out.join("tui.txt").exists() {
        true
    } else {
        events(&out.join("apply1.jsonl"))?.iter().any(|e| e["event"] == "step-finished" && e["id"] == "nixos-install")
    };
    if !installed {
        // A resumed run that found the install done earlier leaves things as they are.
        return Ok(());
    }
    finished(&out.join("mount-after-install.jsonl"))?;
    ensure!(read(&out.join("pools-after-install.txt"))?.trim().is_empty(), "pools stayed imported after the install");
    let mounts = read(&out.join("mounts-after-install.txt"))?;
    ensure!(mounts.trim().is_empty(), "still mounted after the install:\n{mounts}");
    let mappers = read(&out.join("mappers-after-install.txt"))?;
    ensure!(mappers.trim().is_empty(), "LUKS mappings stayed open after the install: {mappers}");
    let host_id = u64::from_str_radix(&plan.effective_host_id(), 16)?;
    let labels = read(&out.join("labels-after-install.txt"))?;
    for (name, pool) in &plan.pools {
        for (disk, part) in plan.pool_members(name) {
            let in_luks = matches!(plan.disks[disk].partitions[part].content, Some(layouts::Content::Luks(_)));
            // Cache and spare labels carry no pool state or host id (ZFS's L2CACHE and SPARE states).
            let reference = format!("{disk}/{part}");
            if in_luks || pool.cache.contains(&reference) || pool.spare.contains(&reference) {
                continue;
            }
            let uuid = plan.partition_uuid(disk, part);
            let block = labels
                .split("== ")
                .find(|b| b.starts_with(&uuid))
                .with_context(|| format!("no label listing for {disk}/{part}"))?;
            ensure!(block.contains("    state: 1"), "{disk}/{part}: pool {name} was not exported:\n{block}");
            ensure!(
                block.contains(&format!("    hostid: {host_id}")),
                "{disk}/{part}: pool {name} does not carry host id {}:\n{block}",
                plan.effective_host_id()
            );
        }
    }
    Ok(())
}

/// Three flakes that do not fit the plan, each given to `apply` before the real install: a wrong host id
/// and a mount the disks do not provide; no `/`; systemd-boot on this BIOS-booted VM. Each is refused by
/// the check before install, and the disk stays as it was.
const BAD_FLAKES: &str = r#"
nix-dabei nixos-module /host/plan.toml > /etc/nixos/nix-dabei.nix
head -c 4194304 /dev/disk/by-id/virtio-s0 | sha256sum > /host/out/disk-before-bad-flakes
for n in 1 2 3 4; do
    mkdir -p /tmp/bad$n
    cp /etc/nixos/flake.nix /etc/nixos/nix-dabei.nix /tmp/bad$n/
done
cat > /tmp/bad1/override.nix <<'END'
{ host = { }; change = c: c // { networking = c.networking // { hostId = "00000000"; };
  fileSystems = c.fileSystems // { "/data" = { device = "/dev/disk/by-label/data"; fsType = "xfs"; }; }; }; }
END
cat > /tmp/bad2/override.nix <<'END'
{ host = { }; change = c: c // { fileSystems = builtins.removeAttrs c.fileSystems [ "/" ]; }; }
END
cat > /tmp/bad3/override.nix <<'END'
{ host = { boot.loader.systemd-boot.enable = true; };
  change = c: c // { boot = c.boot // { loader = c.boot.loader // { systemd-boot.enable = true; }; }; }; }
END
# A configuration NixOS itself refuses: its system derivation fails an assertion, as NixOS reports one.
cat > /tmp/bad4/override.nix <<'END'
{ host = { }; change = c: c // { system.build.toplevel = throw ''

  Failed assertions:
  - You cannot have duplicated devices in mirroredBoots''; }; }
END
for n in 1 2 3 4; do
    if nix-dabei apply /host/plan.toml --flake "path:/tmp/bad$n#vm" --yes-wipe-all \
        --passphrase-file /host/passphrase > /host/out/bad-flake-$n.txt 2>&1; then
        echo "apply exited 0" >> /host/out/bad-flake-$n.txt
    fi
done
head -c 4194304 /dev/disk/by-id/virtio-s0 | sha256sum > /host/out/disk-after-bad-flakes
"#;

/// Root's key on the "rescue system", as a cloud image writes it: with a `command=` that would lock root
/// out if it were copied with its options.
const UNLOCK_KEY: &str = r#"mkdir -p /root/.ssh
key='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl unlock@test'
printf '%s\n' "no-port-forwarding,command=\"echo 'Please login as debian';sleep 10\" $key" > /root/.ssh/authorized_keys
"#;

/// After mounting in boot 2: the initrd host key the install generated.
const INITRD_KEY_LISTING: &str = r#"
nix-dabei mount /host/plan.toml --passphrase-file /host/passphrase --json > /dev/null
stat -c '%a %U %n' /mnt/etc/secrets/initrd /mnt/etc/secrets/initrd/* > /host/out/initrd-keys.txt
ssh-keygen -l -f /mnt/etc/secrets/initrd/ssh_host_ed25519_key.pub >> /host/out/initrd-keys.txt
nix-dabei unmount /host/plan.toml --json > /dev/null
"#;

/// Remote unlock: the plan carries root's key without its options, the module lets it into the initrd,
/// and the install generated the initrd's host key (private, readable by root alone) on the target.
fn verify_remote_unlock(share: &Path) -> Result<()> {
    let plan =
        layouts::Plan::from_toml(&read(&share.join("plan.toml"))?).map_err(|e| anyhow::anyhow!("plan.toml: {e}"))?;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl unlock@test";
    let unlock = plan.remote_unlock.as_ref().context("the plan has no remote_unlock")?;
    ensure!(unlock.authorized_keys == [key], "the carried keys are {:?}", unlock.authorized_keys);
    ensure!(unlock.network_kernel_modules.is_empty(), "the VM has no network card, yet {unlock:?}");
    let module = read(&share.join("out/nix-dabei.nix"))?;
    ensure!(module.contains(&format!("authorizedKeys = [ \"{key}\" ];")), "the module lets no key in");
    let keys = read(&share.join("out/initrd-keys.txt"))?;
    let private = "600 root /mnt/etc/secrets/initrd/ssh_host_ed25519_key\n";
    ensure!(keys.contains(private) && keys.contains("700 root /mnt/etc/secrets/initrd\n"), "{keys}");
    ensure!(keys.contains("initrd (ED25519)"), "no ed25519 host key: {keys}");
    verify_layout(share)
}

/// The single-disk scenario also checks that flakes which do not fit are refused before any write.
/// The end of single-zfs's second boot, everything released: the disk read back with its pool (imported
/// read-only to be read, exported again), reviewed, refused under another GUID, and applied.
const PROBE_POOL: &str = r#"
nix-dabei probe /dev/disk/by-id/virtio-s0 -o /host/out/probed.toml 2> /host/out/probe-notes.txt
zpool list -H -o name > /host/out/pools-after-probe.txt
nix-dabei apply /host/out/probed.toml --review-only --json > /host/out/probed-review.json
sed 's/^guid = .*/guid = "12345"/' /host/out/probed.toml > /tmp/other-guid.toml
nix-dabei apply /tmp/other-guid.toml --json > /host/out/other-guid.jsonl 2>&1 || true
nix-dabei apply /host/out/probed.toml --json > /host/out/probed-apply.jsonl
zfs get -H -p -o name,value guid -r rpool > /host/out/guids-after-probed-apply.txt
nix-dabei unmount /host/out/probed.toml --json > /host/out/probed-unmount.jsonl
"#;

/// The plan `probe` wrote, in `out/probed.toml`.
fn probed_plan(out: &Path) -> Result<layouts::Plan> {
    layouts::Plan::from_toml(&read(&out.join("probed.toml"))?).map_err(|e| anyhow::anyhow!("probed: {e}"))
}

/// The review of the probed plan (`out/probed-review.json`): every step done or to do, none destroying,
/// no disk wiped.
fn review_destroys_nothing(out: &Path) -> Result<()> {
    let review = read_json(&out.join("probed-review.json"))?;
    for step in review["steps"].as_array().context("steps")? {
        ensure!(step["state"] == "done" || step["state"] == "todo", "{step}");
        ensure!(step["destroys"] != true, "a step of the probed plan destroys: {step}");
    }
    ensure!(review["wipes"].as_array().is_some_and(Vec::is_empty), "the probed plan wipes: {review}");
    Ok(())
}

/// The ids of the steps a run (its JSON events) started.
fn steps_started(path: &Path) -> Result<Vec<String>> {
    let events = events(path)?;
    let started = events.iter().filter(|e| e["event"] == "step-started");
    Ok(started.filter_map(|e| e["id"].as_str().map(String::from)).collect())
}

/// Issue item 1 and 2 for pools: the probed plan keeps the pool by its GUID, with its datasets and their
/// properties; it changes nothing when applied (the pool is imported, no dataset made); another GUID is
/// refused before anything is written.
fn verify_probed_pool(share: &Path) -> Result<()> {
    let out = share.join("out");
    let probed = probed_plan(&out)?;
    let pool = probed.pools.get("rpool").context("the pool is not read back")?;
    let status = read_json(&out.join("zpool-status.json"))?;
    let guid = status["pools"]["rpool"]["pool_guid"].to_string();
    ensure!(pool.keep && pool.guid.as_deref() == Some(guid.trim_matches('"')), "kept by GUID {guid}: {pool:?}");
    ensure!(probed.pool_members("rpool").len() == 1, "members: {:?}", probed.pool_members("rpool"));
    for dataset in ["root", "nix", "home", "var"] {
        let found = pool.datasets.get(dataset).with_context(|| format!("dataset {dataset} is not read back"))?;
        ensure!(found.properties.get("mountpoint").map(String::as_str) == Some("legacy"), "{dataset}: {found:?}");
        ensure!(found.keep && found.guid.is_some(), "{dataset} is not kept by its GUID: {found:?}");
    }
    ensure!(pool.datasets["nix"].properties.get("atime").map(String::as_str) == Some("off"), "nix's atime");
    ensure!(read(&out.join("pools-after-probe.txt"))?.trim().is_empty(), "probe left the pool imported");
    review_destroys_nothing(&out)?;
    let refused = read(&out.join("other-guid.jsonl"))?;
    ensure!(refused.contains("not the kept pool's 12345"), "another GUID was not refused by it:\n{refused}");
    ensure!(!refused.contains("\"step-started\""), "a step ran under another GUID:\n{refused}");
    finished(&out.join("probed-apply.jsonl"))?;
    let started = steps_started(&out.join("probed-apply.jsonl"))?;
    ensure!(!started.iter().any(|id| id.starts_with("zfs-create:") || id.starts_with("mkfs:")), "{started:?}");
    ensure!(read(&out.join("guids-after-probed-apply.txt"))?.lines().count() == 5, "the pool's datasets changed");
    finished(&out.join("probed-unmount.jsonl"))?;
    Ok(())
}

fn verify_single(share: &Path) -> Result<()> {
    verify_probed_pool(share)?;
    let out = share.join("out");
    let expected: [(&str, &[&str]); 4] = [
        ("1", &["networking.hostId", "fileSystems.\"/data\"", "Nothing was written"]),
        ("2", &["fileSystems.\"/\"", "mounts nothing at /"]),
        ("3", &["boot.loader.systemd-boot.enable", "legacy BIOS"]),
        // The system's own assertions, evaluated before the first write (system.build.toplevel).
        ("4", &["Failed assertions", "duplicated devices in mirroredBoots"]),
    ];
    for (n, words) in expected {
        let text = read(&out.join(format!("bad-flake-{n}.txt")))?;
        ensure!(!text.contains("apply exited 0"), "bad flake {n} was installed:\n{text}");
        for word in words {
            ensure!(text.contains(word), "bad flake {n}: the refusal does not name {word}:\n{text}");
        }
    }
    let (before, after) = (read(&out.join("disk-before-bad-flakes"))?, read(&out.join("disk-after-bad-flakes"))?);
    ensure!(before == after, "the disk changed while bad flakes were refused");
    verify_layout(share)
}

fn layout(name: &'static str, disks: Vec<DiskSpec>, plan_args: &str) -> Scenario {
    let disk_args: Vec<String> = disks.iter().map(|d| format!("--disk {}", d.by_id())).collect();
    Scenario {
        name,
        boots: vec![apply_boot(&format!("{plan_args} {}", disk_args.join(" "))), VERIFY_BOOT.to_string()],
        disks,
        verify: verify_layout,
        power_loss_boots: vec![],
        driver: None,
        memory_mib: None,
        prepare: None,
        boot_limit: None,
        repeat_until: None,
    }
}

/// Boot 1 of the resume scenario: the power goes off right after the pool is created.
const INTERRUPTED_BOOT: &str = r#"
nix-dabei plan --preset mirror --encrypt --disk /dev/disk/by-id/virtio-r0 --disk /dev/disk/by-id/virtio-r1 \
    --flake path:/etc/nixos#vm -o /host/plan.toml > /host/out/plan.txt
echo "about to lose power" > /host/out/interrupted
nix-dabei nixos-module /host/plan.toml > /etc/nixos/nix-dabei.nix
NIX_DABEI_TEST_POWER_OFF_AFTER=zpool-create:rpool nix-dabei apply /host/plan.toml --yes-wipe-all \
    --passphrase-file /host/passphrase --json > /host/out/apply0.jsonl
echo "the power did not go off" > /host/out/interrupted
"#;

/// Boot 1 of the TUI scenario: a person's keystrokes, sent through tmux, install an encrypted mirror.
/// The user made the same plan with the CLI before and committed its module into the flake, which the
/// TUI checks before installing.
const TUI_MODULE: &str = r#"
nix-dabei plan --preset mirror --encrypt --disk /dev/disk/by-id/virtio-t0 --disk /dev/disk/by-id/virtio-t1 \
    --hostname tuihost -o /tmp/same-plan.toml > /dev/null
nix-dabei nixos-module /tmp/same-plan.toml > /etc/nixos/nix-dabei.nix
"#;

const TUI_BOOT: &str = r#"
export TERM=screen
wait_for() {
    i=0
    until tmux capture-pane -p -t tui > /host/out/tui.txt 2>/dev/null && grep -q "$1" /host/out/tui.txt; do
        i=$((i + 1))
        if [ $i -gt 600 ]; then say "waited for: $1"; cat /host/out/tui.txt; exit 1; fi
        sleep 0.2
    done
}
press() { for key in "$@"; do tmux send-keys -t tui "$key"; sleep 0.2; done; }
type_text() { tmux send-keys -t tui -l "$1"; sleep 0.2; }
export LC_ALL=C.UTF-8
tmux -u new-session -d -s tui -x 120 -y 40 "env PATH=$PATH NIX_DABEI_WEAK_KDF=1 nix-dabei tui --save \
    /host/plan.toml; echo exited-\$? > /host/out/tui-exit; sleep 60"
wait_for "Install NixOS onto this machine"
press Enter
wait_for "Choose the disks"
press Space Down Space Enter
wait_for "ZFS mirror"
press Down Right
wait_for "ZFS native"
press Enter
wait_for "Host name"
press BSpace BSpace BSpace BSpace BSpace
type_text tuihost
press Tab
type_text "path:/etc/nixos#vm"
press Enter
wait_for "Repeat it"
type_text "$(cat /host/passphrase)"
press Tab
type_text "$(cat /host/passphrase)"
press Enter
wait_for "These disks will be WIPED"
type_text wipe
press Enter
wait_for "Installed."
press Enter
until [ -f /host/out/tui-exit ]; do sleep 0.2; done
test "$(cat /host/out/tui-exit)" = exited-0
"#;

/// Boot 1 of a disko scenario: import one of disko's examples onto this VM's disks, then install.
fn disko_boot(example: &str, devices: &str) -> String {
    install_boot(&format!(
        "printf '%s' 'disko example key' > /host/secret.key\ncp /host/secret.key /tmp/secret.key\n\
             nix-dabei import-disko /host/disko/{example}.json {devices} -o /host/plan.toml \
                 2> /host/out/import-warnings.txt\n\
             nix-dabei plan /host/plan.toml --flake path:/etc/nixos#vm > /host/out/plan.txt\n\
             sed -i '1i flake = \"path:/etc/nixos#vm\"' /host/plan.toml\n\
             # disko's examples boot with UEFI (an ESP, no BIOS boot partition) and the VM with SeaBIOS:\n\
             # the check before install rightly refuses them here.\n\
             APPLY_ARGS=--skip-flake-check"
    ))
}

/// An impermanent system: `/` and `/tmp` in memory, the store, homes and what persists in subvolumes of
/// one btrfs mirrored (raid1) across two disks inside LUKS, and an f2fs beside it.
const BTRFS_TMPFS_PLAN: &str = r#"
hostname = "impermanent"
boot = "both"
flake = "path:/etc/nixos#vm"

[nodev."/"]
fs_type = "tmpfs"
mount_options = ["size=256M", "mode=755"]
[nodev."/tmp"]
fs_type = "tmpfs"

[disks.b0]
device = "/dev/disk/by-id/virtio-b0"
size = 3221225472
identity = { serial = "b0" }
[disks.b0.partitions.bios]
size = "1M"
type = "bios-boot"
[disks.b0.partitions.esp]
size = "256M"
content.filesystem = { format = "vfat", mountpoint = "/boot", mount_options = ["umask=0077"] }
[disks.b0.partitions.srv]
size = "512M"
content.filesystem = { format = "f2fs", mountpoint = "/srv", label = "srv" }
[disks.b0.partitions.crypt]
size = "rest"
[disks.b0.partitions.crypt.content.luks]
name = "crypt0"
key = "prompt"
[disks.b0.partitions.crypt.content.luks.content.btrfs]
mkfs_options = ["-d", "raid1", "-m", "raid1"]
[disks.b0.partitions.crypt.content.luks.content.btrfs.subvolumes]
nix = { mountpoint = "/nix", mount_options = ["compress=zstd", "noatime"] }
home = { mountpoint = "/home" }
"home/shared" = {}
persist = { mountpoint = "/persist" }

[disks.b1]
device = "/dev/disk/by-id/virtio-b1"
size = 3221225472
identity = { serial = "b1" }
[disks.b1.partitions.bios]
size = "1M"
type = "bios-boot"
[disks.b1.partitions.esp]
size = "256M"
content.filesystem = { format = "vfat", mountpoint = "/boot-1", mount_options = ["umask=0077"] }
[disks.b1.partitions.crypt]
size = "rest"
[disks.b1.partitions.crypt.content.luks]
name = "crypt1"
key = "prompt"
content.btrfs_member = { filesystem = "b0/crypt" }
"#;

/// What boot 2 of the impermanent layout reports beyond a layout's usual: the btrfs's devices and
/// profiles, and that `/` came back empty.
const BTRFS_TMPFS_CHECKS: &str = r#"
btrfs filesystem show /dev/mapper/crypt0 > /host/out/btrfs-show.txt
btrfs filesystem df /mnt/home > /host/out/btrfs-df.txt
btrfs subvolume list /mnt/home > /host/out/btrfs-subvolumes.txt
btrfs subvolume show /mnt/home/shared > /host/out/btrfs-nested.txt
ls -A /mnt > /host/out/root-listing.txt
"#;

fn verify_btrfs_tmpfs(share: &Path) -> Result<()> {
    verify_layout(share)?;
    let out = share.join("out");
    let show = read(&out.join("btrfs-show.txt"))?;
    ensure!(show.contains("Total devices 2"), "the btrfs does not span both disks:\n{show}");
    let df = read(&out.join("btrfs-df.txt"))?;
    ensure!(df.contains("Data, RAID1") && df.contains("Metadata, RAID1"), "the btrfs is not mirrored:\n{df}");
    let subvolumes = read(&out.join("btrfs-subvolumes.txt"))?;
    for name in ["nix", "home", "persist"] {
        let top = format!(" top level 5 path {name}");
        ensure!(subvolumes.lines().any(|l| l.ends_with(&top)), "no subvolume {name}:\n{subvolumes}");
    }
    // The nested one lies inside home (btrfs lists it relative to its parent).
    let nested = read(&out.join("btrfs-nested.txt"))?;
    ensure!(nested.lines().next().is_some_and(|l| l.trim() == "home/shared"), "home/shared:\n{nested}");
    // Only the mountpoints of what is mounted inside it: the root in memory kept nothing else.
    let listing = read(&out.join("root-listing.txt"))?;
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort_unstable();
    ensure!(names == ["boot", "boot-1", "home", "nix", "persist", "srv", "tmp"], "/ holds {names:?}");
    Ok(())
}

/// LVM on LUKS over two disks: a thin pool with thin volumes for `/` and `/home`, a mirrored (raid1)
/// volume for `/srv`.
const LVM_PLAN: &str = r#"
hostname = "lvmhost"
boot = "both"
flake = "path:/etc/nixos#vm"

[disks.v0]
device = "/dev/disk/by-id/virtio-v0"
size = 3221225472
identity = { serial = "v0" }
[disks.v0.partitions.bios]
size = "1M"
type = "bios-boot"
[disks.v0.partitions.esp]
size = "256M"
content.filesystem = { format = "vfat", mountpoint = "/boot", mount_options = ["umask=0077"] }
[disks.v0.partitions.crypt]
size = "rest"
content.luks = { name = "pv0", key = "prompt", content.lvm_pv = { volume_group = "main" } }

[disks.v1]
device = "/dev/disk/by-id/virtio-v1"
size = 3221225472
identity = { serial = "v1" }
[disks.v1.partitions.bios]
size = "1M"
type = "bios-boot"
[disks.v1.partitions.esp]
size = "256M"
content.filesystem = { format = "vfat", mountpoint = "/boot-1", mount_options = ["umask=0077"] }
[disks.v1.partitions.crypt]
size = "rest"
[disks.v1.partitions.crypt.content.luks]
name = "pv1"
key = "prompt"
additional_key_files = ["/host/extra.key"]
content.lvm_pv = { volume_group = "main" }

[volume_groups.main.volumes]
pool = { size = "2G", type = "thin-pool" }
root = { size = "1G", type = "thin", pool = "pool", content.filesystem = { format = "ext4", mountpoint = "/" } }
home = { size = "1G", type = "thin", pool = "pool", content.filesystem = { format = "xfs", mountpoint = "/home" } }
srv = { size = "512M", type = "raid1", content.filesystem = { format = "ext4", mountpoint = "/srv" } }
"#;

/// What boot 2 of the LVM layout reports beyond a layout's usual: the volumes' kinds.
const LVM_CHECKS: &str = r#"
lvs --reportformat json -o lv_name,segtype,pool_lv,lv_active,lv_uuid,vg_uuid main > /host/out/lvs.json
pvs --reportformat json -o pv_name,vg_name > /host/out/pvs.json
/usr/sbin/cryptsetup open --test-passphrase --key-file /host/extra.key /dev/disk/by-id/virtio-v1-part3
/usr/sbin/cryptsetup luksDump /dev/disk/by-id/virtio-v1-part3 > /host/out/luks-dump-v1.txt
"#;

/// The end of the LVM layout's second boot, everything released (the group inactive, the containers
/// closed): the disks read back with the passphrase (containers opened, the group activated to be read,
/// both undone), reviewed, refused under another group UUID, and applied.
const PROBE_VOLUMES: &str = r#"
nix-dabei probe /dev/disk/by-id/virtio-v0 /dev/disk/by-id/virtio-v1 --passphrase-file /host/passphrase \
  -o /host/out/probed.toml 2> /host/out/probe-notes.txt
ls /dev/mapper > /host/out/mapper-after-probe.txt
nix-dabei apply /host/out/probed.toml --review-only --json > /host/out/probed-review.json
awk '/^\[/ { main = ($0 == "[volume_groups.main]") }
  main && /^uuid = / { $0 = "uuid = \"AAAAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAAAA\"" } { print }' \
  /host/out/probed.toml > /tmp/other-uuid.toml
nix-dabei apply /tmp/other-uuid.toml --passphrase-file /host/passphrase --json > /host/out/other-uuid.jsonl \
  2> /host/out/other-uuid.txt || true
nix-dabei unmount /tmp/other-uuid.toml --json > /dev/null 2>&1 || true
nix-dabei apply /host/out/probed.toml --passphrase-file /host/passphrase --json > /host/out/probed-apply.jsonl
lvs --reportformat json -o lv_name,lv_uuid,lv_active main > /host/out/lvs-after-probed-apply.json
nix-dabei unmount /host/out/probed.toml --json > /host/out/probed-unmount.jsonl
"#;

/// Issue item 1 for LVM: the probed plan keeps the group and its volumes by their UUIDs, with their kinds
/// and thin pool, the filesystems in them and each physical volume (in its LUKS container) by its UUID;
/// applying it opens, activates and makes nothing; another group UUID is refused before anything is
/// written.
fn verify_probed_volumes(share: &Path) -> Result<()> {
    let out = share.join("out");
    let probed = probed_plan(&out)?;
    let lvs = read_json(&out.join("lvs.json"))?;
    let rows = lvs["report"][0]["lv"].as_array().context("lvs printed no volumes")?;
    let group = probed.volume_groups.get("main").context("volume group main is not read back")?;
    let vg_uuid = rows.first().and_then(|r| r["vg_uuid"].as_str()).context("no vg_uuid")?;
    ensure!(group.keep && group.uuid.as_deref() == Some(vg_uuid), "main is not kept by {vg_uuid}: {group:?}");
    for row in rows {
        let name = row["lv_name"].as_str().unwrap_or_default();
        let volume = group.volumes.get(name).with_context(|| format!("{name} is not read back: {group:?}"))?;
        ensure!(volume.keep && volume.uuid.as_deref() == row["lv_uuid"].as_str(), "{name}: {volume:?}");
    }
    let kind = |name: &str| group.volumes.get(name).and_then(|v| v.kind.map(|k| k.name()));
    ensure!(kind("pool") == Some("thin-pool") && kind("srv") == Some("raid1"), "kinds: {group:?}");
    ensure!(group.volumes["root"].pool.as_deref() == Some("pool"), "root's pool: {group:?}");
    let holds = |name: &str, format: layouts::Format| {
        matches!(&group.volumes[name].content, Some(layouts::Content::Filesystem(fs))
            if fs.format == format && fs.uuid.is_some())
    };
    ensure!(holds("root", layouts::Format::Ext4) && holds("home", layouts::Format::Xfs), "contents: {group:?}");
    let members = probed.volume_group_members("main");
    ensure!(members.len() == 2, "physical volumes: {members:?}");
    let left = read(&out.join("mapper-after-probe.txt"))?;
    ensure!(!left.contains("nix-dabei-probe") && !left.contains("main-"), "probe left mappings:\n{left}");
    review_destroys_nothing(&out)?;
    let refused = read(&out.join("other-uuid.txt"))? + &read(&out.join("other-uuid.jsonl"))?;
    ensure!(refused.contains("not the kept group's"), "another group UUID was not refused:\n{refused}");
    let made =
        |id: &str| ["pvcreate:", "vgcreate:", "lvcreate:", "mkfs:", "luks-format:"].iter().any(|p| id.starts_with(p));
    let other = steps_started(&out.join("other-uuid.jsonl"))?;
    ensure!(!other.iter().any(|id| made(id)), "a step ran under another group UUID: {other:?}");
    finished(&out.join("probed-apply.jsonl"))?;
    let applied = steps_started(&out.join("probed-apply.jsonl"))?;
    ensure!(!applied.iter().any(|id| made(id)), "applying the probed plan made something: {applied:?}");
    let after = read(&out.join("lvs-after-probed-apply.json"))?;
    for row in rows {
        let uuid = row["lv_uuid"].as_str().unwrap_or_default();
        ensure!(after.contains(uuid), "volume {uuid} changed:\n{after}");
    }
    finished(&out.join("probed-unmount.jsonl"))?;
    Ok(())
}

fn verify_lvm(share: &Path) -> Result<()> {
    verify_probed_volumes(share)?;
    verify_layout(share)?;
    let out = share.join("out");
    let lvs = read_json(&out.join("lvs.json"))?;
    let rows = lvs["report"][0]["lv"].as_array().context("lvs printed no volumes")?;
    let row = |name: &str| rows.iter().find(|r| r["lv_name"] == name).cloned().unwrap_or_default();
    ensure!(row("pool")["segtype"] == "thin-pool", "pool is not a thin pool: {lvs}");
    for thin in ["root", "home"] {
        ensure!(row(thin)["segtype"] == "thin" && row(thin)["pool_lv"] == "pool", "{thin} is not thin in pool: {lvs}");
    }
    ensure!(row("srv")["segtype"] == "raid1", "srv is not raid1: {lvs}");
    let pvs = read(&out.join("pvs.json"))?;
    ensure!(pvs.contains("/dev/mapper/pv0") && pvs.contains("/dev/mapper/pv1"), "the group is not on both LUKS: {pvs}");
    // The additional key file opened pv1's container (the script stops otherwise): a second key slot.
    let dump = read(&out.join("luks-dump-v1.txt"))?;
    ensure!(dump.contains("  0: luks2") && dump.contains("  1: luks2"), "pv1 has not two key slots:\n{dump}");
    Ok(())
}

/// A layout scenario from a plan written out: boot 1 runs `prepare`, reviews and installs the plan, boot 2
/// mounts it again and runs `checks` before unmounting; `verify` checks what the guest reported.
fn planned_layout(
    name: &'static str,
    disks: Vec<DiskSpec>,
    (prepare, plan): (&str, &str),
    checks: &str,
    verify: fn(&Path) -> Result<()>,
) -> Scenario {
    Scenario {
        name,
        disks,
        boots: vec![
            install_boot(&format!(
                "{prepare}cat > /host/plan.toml <<'EOF'\n{plan}EOF\n\
                 nix-dabei plan /host/plan.toml > /host/out/plan.txt"
            )),
            format!("{VERIFY_BOOT_MOUNTED}{checks}{UNMOUNT_AFTER_VERIFY}"),
        ],
        verify,
        power_loss_boots: vec![],
        driver: None,
        memory_mib: None,
        prepare: None,
        boot_limit: None,
        repeat_until: None,
    }
}

/// An MBR disk for this SeaBIOS machine: /boot a bootable primary partition, swap, and root (in LUKS) and
/// /home logical partitions in an extended one; GRUB's core image goes in the 1 MiB before partition 1.
const MBR_PLAN: &str = r#"
hostname = "oldbios"
boot = "bios"
flake = "path:/etc/nixos#vm"

[disks.m0]
device = "/dev/disk/by-id/virtio-mbr0"
size = 3221225472
identity = { serial = "mbr0" }
table = "msdos"
[disks.m0.partitions.boot]
size = "256M"
bootable = true
content.filesystem = { format = "ext4", mountpoint = "/boot" }
[disks.m0.partitions.swap]
size = "128M"
content.swap = {}
[disks.m0.partitions.root]
size = "1536M"
logical = true
content.luks = { name = "cryptroot", content.filesystem = { format = "ext4", mountpoint = "/" } }
[disks.m0.partitions.home]
size = "rest"
logical = true
content.filesystem = { format = "xfs", mountpoint = "/home" }
"#;

/// What boot 2 of the MBR layout reports: the table as sfdisk reads it, and that this boot has no EFI.
const MBR_CHECKS: &str = r#"
sfdisk --dump /dev/disk/by-id/virtio-mbr0 > /host/out/sfdisk.txt
sfdisk --verify /dev/disk/by-id/virtio-mbr0 > /host/out/sfdisk-verify.txt 2>&1 || true
[ -d /sys/firmware/efi ] && echo efi > /host/out/firmware.txt || echo bios > /host/out/firmware.txt
"#;

fn verify_mbr(share: &Path) -> Result<()> {
    verify_layout(share)?;
    let out = share.join("out");
    ensure!(read(&out.join("firmware.txt"))?.trim() == "bios", "the VM did not boot with SeaBIOS");
    let dump = read(&out.join("sfdisk.txt"))?;
    ensure!(dump.contains("label: dos"), "not an MBR table:\n{dump}");
    let rows: Vec<&str> = dump.lines().filter(|l| l.contains(" : start=")).collect();
    // Two primary partitions, the extended one, two logical ones (5 and 6).
    ensure!(rows.len() == 5, "{} entries:\n{dump}", rows.len());
    let row = |suffix: &str| rows.iter().find(|r| r.split(' ').next().is_some_and(|d| d.ends_with(suffix)));
    let first = row("1").with_context(|| format!("no partition 1:\n{dump}"))?;
    ensure!(first.contains("start=        2048") && first.contains("bootable"), "partition 1: {first}");
    ensure!(row("3").is_some_and(|r| r.contains("type=5")), "no extended partition 3:\n{dump}");
    for (suffix, kind) in [("2", "type=82"), ("5", "type=e8"), ("6", "type=83")] {
        ensure!(row(suffix).is_some_and(|r| r.contains(kind)), "partition {suffix} is not {kind}:\n{dump}");
    }
    let verified = read(&out.join("sfdisk-verify.txt"))?;
    ensure!(verified.contains("No errors detected"), "sfdisk --verify: {verified}");
    Ok(())
}

/// Software RAID over three disks: a RAID 1 ESP (metadata 1.0) and a RAID 5 array with a GPT inside,
/// holding root and /srv.
const MDADM_PLAN: &str = r#"
hostname = "raidhost"
boot = "both"
flake = "path:/etc/nixos#vm"

[disks.r0]
device = "/dev/disk/by-id/virtio-md0"
size = 2147483648
identity = { serial = "md0" }
[disks.r0.partitions]
bios = { size = "1M", type = "bios-boot" }
esp = { size = "128M", type = "esp", content.md_member = { array = "boot" } }
data = { size = "rest", content.md_member = { array = "data" } }

[disks.r1]
device = "/dev/disk/by-id/virtio-md1"
size = 2147483648
identity = { serial = "md1" }
[disks.r1.partitions]
bios = { size = "1M", type = "bios-boot" }
esp = { size = "128M", type = "esp", content.md_member = { array = "boot" } }
data = { size = "rest", content.md_member = { array = "data" } }

[disks.r2]
device = "/dev/disk/by-id/virtio-md2"
size = 2147483648
identity = { serial = "md2" }
[disks.r2.partitions]
bios = { size = "1M", type = "bios-boot" }
esp = { size = "128M", type = "esp", content.md_member = { array = "boot" } }
data = { size = "rest", content.md_member = { array = "data" } }

[raids.boot]
level = 1
metadata = "1.0"
content.filesystem = { format = "vfat", mountpoint = "/boot", mount_options = ["umask=0077"] }

[raids.data]
level = 5
options = ["--bitmap=internal"]
[raids.data.partitions.root]
size = "2G"
content.filesystem = { format = "ext4", mountpoint = "/" }
[raids.data.partitions.srv]
size = "rest"
content.filesystem = { format = "xfs", mountpoint = "/srv" }
"#;

/// What boot 2 of the RAID layout reports beyond a layout's usual: the arrays' levels and members, and
/// each ESP half read as FAT on its own.
const MDADM_CHECKS: &str = r#"
mdadm --detail --export /dev/md/boot > /host/out/md-boot.txt
mdadm --detail --export /dev/md/data > /host/out/md-data.txt
ls /dev/md > /host/out/md-links.txt
sgdisk -p /dev/md/data > /host/out/md-data-gpt.txt
sgdisk -v /dev/md/data > /host/out/md-data-verify.txt
for n in 0 1 2; do /usr/sbin/fsck.vfat -n /dev/disk/by-id/virtio-md$n-part2 > /dev/null; done
echo "every half reads as FAT" > /host/out/esp-halves.txt
"#;

/// The end of the RAID layout's second boot, everything released (the arrays stopped): the disks read back
/// with their arrays (assembled read-only to be read, stopped again), reviewed, refused under another
/// array UUID, and applied.
const PROBE_ARRAYS: &str = r#"
nix-dabei probe /dev/disk/by-id/virtio-md0 /dev/disk/by-id/virtio-md1 /dev/disk/by-id/virtio-md2 \
  -o /host/out/probed.toml 2> /host/out/probe-notes.txt
ls /dev/md > /host/out/md-after-probe.txt 2>&1 || true
nix-dabei apply /host/out/probed.toml --review-only --json > /host/out/probed-review.json
awk '/^\[/ { boot = ($0 == "[raids.boot]") }
  boot && /^uuid = / { $0 = "uuid = \"0badcafe:00000000:00000000:00000001\"" } { print }' \
  /host/out/probed.toml > /tmp/other-uuid.toml
nix-dabei apply /tmp/other-uuid.toml --json > /host/out/other-uuid.jsonl 2>&1 || true
nix-dabei apply /host/out/probed.toml --json > /host/out/probed-apply.jsonl
mdadm --detail --export /dev/md/boot > /host/out/md-boot-after-probed-apply.txt
nix-dabei unmount /host/out/probed.toml --json > /host/out/probed-unmount.jsonl
"#;

/// Issue items 1 and 2 for arrays: the probed plan keeps each array by its UUID, with its level, superblock
/// format and filesystem (the GPT inside the RAID 5 array is said, not described); applying it creates and
/// formats nothing; another UUID is refused before anything is written.
fn verify_probed_arrays(share: &Path) -> Result<()> {
    let out = share.join("out");
    let probed = probed_plan(&out)?;
    for (array, level, metadata) in [("boot", 1, "1.0"), ("data", 5, "1.2")] {
        let raid = probed.raids.get(array).with_context(|| format!("array {array} is not read back"))?;
        let detail = read(&out.join(format!("md-{array}.txt")))?;
        let uuid = detail.lines().find_map(|l| l.strip_prefix("MD_UUID=")).context("no MD_UUID")?;
        ensure!(raid.keep && raid.uuid.as_deref() == Some(uuid), "{array} is not kept by UUID {uuid}: {raid:?}");
        ensure!(raid.level == level && raid.metadata == metadata, "{array}: {raid:?}");
        ensure!(probed.array_members(array).len() == 3, "{array}'s members: {:?}", probed.array_members(array));
    }
    let boot = &probed.raids["boot"];
    let fat = |fs: &layouts::Filesystem| fs.format == layouts::Format::Vfat && fs.uuid.is_some();
    let read_back = matches!(&boot.content, Some(layouts::Content::Filesystem(fs)) if fat(fs));
    ensure!(read_back, "the ESP array's FAT is not read back: {boot:?}");
    ensure!(probed.raids["data"].content.is_none(), "the GPT inside the RAID 5 array was described");
    let notes = read(&out.join("probe-notes.txt"))?;
    ensure!(notes.contains("array data") && notes.contains("partition table"), "probe's notes:\n{notes}");
    let left = read(&out.join("md-after-probe.txt"))?;
    ensure!(!left.contains("nix-dabei-probe"), "probe left an array running:\n{left}");
    review_destroys_nothing(&out)?;
    let refused = read(&out.join("other-uuid.jsonl"))?;
    ensure!(refused.contains("md-create:boot") && refused.contains("kept"), "another UUID was not refused:\n{refused}");
    ensure!(!refused.contains("\"step-started\""), "a step ran under another UUID:\n{refused}");
    finished(&out.join("probed-apply.jsonl"))?;
    let started = steps_started(&out.join("probed-apply.jsonl"))?;
    ensure!(!started.iter().any(|id| id.starts_with("md-create:") || id.starts_with("mkfs:")), "{started:?}");
    let running = read(&out.join("md-boot-after-probed-apply.txt"))?;
    ensure!(running.contains("MD_LEVEL=raid1"), "the kept array is not assembled by apply:\n{running}");
    finished(&out.join("probed-unmount.jsonl"))?;
    Ok(())
}

fn verify_mdadm(share: &Path) -> Result<()> {
    verify_probed_arrays(share)?;
    verify_layout(share)?;
    let out = share.join("out");
    for (array, level) in [("boot", "raid1"), ("data", "raid5")] {
        let detail = read(&out.join(format!("md-{array}.txt")))?;
        ensure!(detail.contains(&format!("MD_LEVEL={level}")), "{array} is not {level}:\n{detail}");
        ensure!(detail.contains("MD_DEVICES=3"), "{array} does not have 3 members:\n{detail}");
    }
    ensure!(out.join("esp-halves.txt").exists(), "an ESP half does not read as FAT");
    // The GPT inside the RAID 5 array: its two partitions, linked by udev under the array's name.
    let links = read(&out.join("md-links.txt"))?;
    ensure!(links.lines().any(|l| l == "data1") && links.lines().any(|l| l == "data2"), "md links:\n{links}");
    let table = read(&out.join("md-data-gpt.txt"))?;
    for name in ["disk-data-root", "disk-data-srv"] {
        ensure!(table.lines().any(|l| l.trim_end().ends_with(name)), "no partition {name}:\n{table}");
    }
    let verified = read(&out.join("md-data-verify.txt"))?;
    ensure!(verified.contains("No problems found"), "sgdisk -v /dev/md/data:\n{verified}");
    // `nix-dabei disks` names each member's holder by the array's name.
    let in_use = read(&out.join("disks-in-use.json"))?;
    for array in ["boot", "data"] {
        ensure!(in_use.contains(&format!("(/dev/md/{array})")), "no member held by /dev/md/{array}:\n{in_use}");
    }
    Ok(())
}

/// A ZFS pool with every vdev class on two disks: a mirrored data vdev, mirrored special and dedup vdevs,
/// a log and a cache.
const ZFS_CLASSES_PLAN: &str = r#"
hostname = "classes"
boot = "both"
flake = "path:/etc/nixos#vm"

[disks.c0]
device = "/dev/disk/by-id/virtio-c0"
size = 3221225472
identity = { serial = "c0" }
[disks.c0.partitions]
bios = { size = "1M", type = "bios-boot" }
esp = { size = "256M", type = "esp", content.filesystem = { format = "vfat", mountpoint = "/boot" } }
special = { size = "256M", content.zfs = { pool = "tank" } }
dedup = { size = "256M", content.zfs = { pool = "tank" } }
log = { size = "128M", content.zfs = { pool = "tank" } }
data = { size = "rest", content.zfs = { pool = "tank" } }

[disks.c1]
device = "/dev/disk/by-id/virtio-c1"
size = 3221225472
identity = { serial = "c1" }
[disks.c1.partitions]
bios = { size = "1M", type = "bios-boot" }
esp = { size = "256M", type = "esp", content.filesystem = { format = "vfat", mountpoint = "/boot-1" } }
special = { size = "256M", content.zfs = { pool = "tank" } }
dedup = { size = "256M", content.zfs = { pool = "tank" } }
cache = { size = "128M", content.zfs = { pool = "tank" } }
data = { size = "rest", content.zfs = { pool = "tank" } }

[pools.tank]
vdevs = [{ mode = "mirror", members = ["c0/data", "c1/data"] }]
special = [{ mode = "mirror", members = ["c0/special", "c1/special"] }]
dedup = [{ mode = "mirror", members = ["c0/dedup", "c1/dedup"] }]
log = [{ members = ["c0/log"] }]
cache = ["c1/cache"]
root_fs_options = { compression = "zstd", dedup = "on" }
[pools.tank.datasets]
root = { mountpoint = "/" }
home = { mountpoint = "/home" }
"#;

/// The pool's layout as ZFS lists it, by section.
const ZFS_CLASSES_CHECKS: &str = "zpool list -v -H -P tank > /host/out/zpool-list.txt\n";

fn verify_zfs_classes(share: &Path) -> Result<()> {
    verify_layout(share)?;
    let list = read(&share.join("out/zpool-list.txt"))?;
    // A section (dedup, special, logs, cache) starts with its name; the vdevs and devices in it, with a tab.
    let mut sections: Vec<(String, Vec<String>)> = vec![("data".into(), vec![])];
    for line in list.lines().skip(1) {
        let first = line.split_whitespace().next().unwrap_or_default().to_string();
        if !line.starts_with('\t') {
            sections.push((first, vec![]));
        } else if let Some(last) = sections.last_mut() {
            last.1.push(first);
        }
    }
    let section = |name: &str| sections.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default();
    for class in ["data", "special", "dedup"] {
        let vdevs = section(class);
        ensure!(vdevs.first().is_some_and(|v| v.starts_with("mirror")), "no mirror in {class}:\n{list}");
    }
    ensure!(section("logs").iter().any(|v| v.contains("virtio-c0-part5")), "no log device:\n{list}");
    ensure!(section("cache").iter().any(|v| v.contains("virtio-c1-part5")), "no cache device:\n{list}");
    Ok(())
}

/// Every scenario, in the order CI runs them.
pub fn all() -> Vec<Scenario> {
    let gib = |serial: &str, size: u64, bus: Bus| DiskSpec { serial: serial.to_string(), size: size * GIB, bus };
    let mut resume = layout("resume", vec![gib("r0", 3, Bus::Virtio), gib("r1", 3, Bus::Virtio)], "");
    resume.boots.insert(0, INTERRUPTED_BOOT.to_string());
    resume.boots[1] = install_boot(r#"test "$(cat /host/out/interrupted)" = "about to lose power""#);
    resume.verify = verify_resume;
    resume.power_loss_boots = vec![1];
    let mut mdadm = planned_layout(
        "mdadm-raid1-boot-raid5",
        vec![gib("md0", 2, Bus::Virtio), gib("md1", 2, Bus::Virtio), gib("md2", 2, Bus::Virtio)],
        ("", MDADM_PLAN),
        MDADM_CHECKS,
        verify_mdadm,
    );
    mdadm.boots[1].push_str(PROBE_ARRAYS);
    let mut lvm = planned_layout(
        "lvm-thin-on-luks",
        vec![gib("v0", 3, Bus::Virtio), gib("v1", 3, Bus::Virtio)],
        ("printf '%s' 'a second key' > /host/extra.key\n", LVM_PLAN),
        LVM_CHECKS,
        verify_lvm,
    );
    lvm.boots[1].push_str(PROBE_VOLUMES);
    vec![
        harness(),
        Scenario {
            boots: vec![
                install_boot(&format!(
                    "nix-dabei plan --preset single --swap 256M --disk /dev/disk/by-id/virtio-s0 \
                     --flake path:/etc/nixos#vm -o /host/plan.toml > /host/out/plan.txt\n{BAD_FLAKES}"
                )),
                format!("{VERIFY_BOOT}{PROBE_POOL}"),
            ],
            verify: verify_single,
            ..layout("single-zfs", vec![gib("s0", 3, Bus::Virtio)], "--preset single --swap 256M")
        },
        layout("mirror-zfs", vec![gib("m0", 3, Bus::Virtio), gib("m1", 3, Bus::Nvme)], "--preset mirror"),
        layout("mirror-native", vec![gib("n0", 3, Bus::Virtio), gib("n1", 3, Bus::Scsi)], "--preset mirror --encrypt"),
        Scenario {
            boots: vec![
                install_boot(&format!(
                    "{UNLOCK_KEY}nix-dabei plan --preset mirror --encrypt luks --swap 256M --remote-unlock \
                     --disk /dev/disk/by-id/virtio-l0 --disk /dev/disk/by-id/virtio-l1 \
                     --flake path:/etc/nixos#vm -o /host/plan.toml > /host/out/plan.txt"
                )),
                format!("{VERIFY_BOOT}{INITRD_KEY_LISTING}"),
            ],
            verify: verify_remote_unlock,
            ..layout(
                "zfs-on-luks",
                vec![gib("l0", 3, Bus::Virtio), gib("l1", 3, Bus::Virtio)],
                "--preset mirror --encrypt luks --swap 256M",
            )
        },
        probe_scenario(),
        power_cuts(),
        Scenario {
            name: "tui-install",
            disks: vec![gib("t0", 3, Bus::Virtio), gib("t1", 3, Bus::Virtio)],
            boots: vec![
                format!(
                    "{ARGV_SHIMS}{TUI_MODULE}{TUI_BOOT}{RELEASED}\n\
                     nix-dabei mount /host/plan.toml --passphrase-file /host/passphrase --json \
                         > /host/out/mount-after-install.jsonl\n{AFTER_INSTALL}"
                ),
                VERIFY_BOOT.to_string(),
            ],
            verify: verify_layout,
            power_loss_boots: vec![],
            driver: None,
            memory_mib: None,
            prepare: None,
            boot_limit: None,
            repeat_until: None,
        },
        resume,
        kexec_scenario(),
        remote_scenario(),
        alongside_scenario(),
        grow_scenario(),
        Scenario {
            name: "disko-zfs",
            disks: vec![gib("z0", 3, Bus::Virtio), gib("z1", 3, Bus::Virtio)],
            boots: vec![
                disko_boot("zfs", "--device x=/dev/disk/by-id/virtio-z0 --device y=/dev/disk/by-id/virtio-z1"),
                VERIFY_BOOT.to_string(),
            ],
            verify: verify_layout,
            power_loss_boots: vec![],
            driver: None,
            memory_mib: None,
            prepare: None,
            boot_limit: None,
            repeat_until: None,
        },
        planned_layout(
            "btrfs-raid1-tmpfs-root",
            vec![gib("b0", 3, Bus::Virtio), gib("b1", 3, Bus::Virtio)],
            ("", BTRFS_TMPFS_PLAN),
            BTRFS_TMPFS_CHECKS,
            verify_btrfs_tmpfs,
        ),
        lvm,
        planned_layout(
            "zfs-special-dedup",
            vec![gib("c0", 3, Bus::Virtio), gib("c1", 3, Bus::Virtio)],
            ("", ZFS_CLASSES_PLAN),
            ZFS_CLASSES_CHECKS,
            verify_zfs_classes,
        ),
        planned_layout("mbr-bios", vec![gib("mbr0", 3, Bus::Virtio)], ("", MBR_PLAN), MBR_CHECKS, verify_mbr),
        mdadm,
        Scenario {
            name: "disko-zfs-encrypted-root",
            disks: vec![gib("k0", 3, Bus::Nvme)],
            boots: vec![
                disko_boot("zfs-encrypted-root", "--device root=/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_k0"),
                VERIFY_BOOT.to_string(),
            ],
            verify: verify_layout,
            power_loss_boots: vec![],
            driver: None,
            memory_mib: None,
            prepare: None,
            boot_limit: None,
            repeat_until: None,
        },
    ]
}

/// The resume scenario: the interrupted run stopped right after the pool, the next one finished it
/// without redoing the destructive steps, and the result is a normal install.
fn verify_resume(share: &Path) -> Result<()> {
    let out = share.join("out");
    let interrupted = events(&out.join("apply0.jsonl"))?;
    let last = interrupted.last().context("no events from the interrupted run")?;
    ensure!(
        last["event"] == "step-finished" && last["id"] == "zpool-create:rpool",
        "the interrupted run ended with {last}"
    );
    let resumed = events(&out.join("apply1.jsonl"))?;
    for id in ["wipe:disk0", "gpt:disk0", "wipe:disk1", "gpt:disk1", "mkfs:disk0/esp", "mkfs:disk1/esp"] {
        ensure!(
            resumed.iter().any(|e| e["event"] == "step-skipped" && e["id"] == id),
            "the resumed run did not skip {id}"
        );
        ensure!(!resumed.iter().any(|e| e["event"] == "step-started" && e["id"] == id), "the resumed run redid {id}");
    }
    verify_layout(share)
}

/// Boot 1 of the power-cut scenario: a disk outside the plan gets someone else's LUKS header and an
/// exported pool named like the plan's, then the plan is made.
const CUTS_PREPARE: &str = r#"
F=/dev/disk/by-id/virtio-f0
/usr/sbin/sgdisk -n1:0:+32M -n2:0:0 $F > /dev/null
udevadm settle
printf 'not ours' | /usr/sbin/cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 \
    --pbkdf-force-iterations 1000 --key-file - ${F}-part1
zpool create -f -o ashift=12 -O mountpoint=none rpool ${F}-part2
zpool export rpool
sha256sum $F | cut -d' ' -f1 > /host/out/foreign-before
nix-dabei plan --preset mirror --encrypt luks --disk /dev/disk/by-id/virtio-c0 --disk /dev/disk/by-id/virtio-c1 \
    --flake path:/etc/nixos#vm -o /host/plan.toml > /host/out/plan.txt
"#;

/// The end of the last install boot of the power-cut scenario: the foreign disk is as it was.
const CUTS_FOREIGN_CHECK: &str = r#"
sha256sum /dev/disk/by-id/virtio-f0 | cut -d' ' -f1 > /host/out/foreign-after
zpool import > /host/out/importable.txt 2>&1 || true
"#;

/// The boot of the power-cut scenario that runs again and again: resume the install, interrupted right
/// after the first step this run applies that no earlier run finished, and again in the same boot for as
/// long as the executor only kills the run (after a step that changed nothing but the kernel's state:
/// opening LUKS, a mount, swap), until it cuts the power (after a step that wrote to the disks) or, once
/// during each of luksFormat, zpool create and mkfs, while the step runs. A run that finds nothing left
/// to do ends the repetitions.
fn cut_boot(inside: &str) -> String {
    format!(
        r#"{LAYOUT_MODULE}
# A line of its own between the boots' events, for the check of what each boot resumed.
printf '{{"event":"boot"}}\n' >> /host/out/cuts.jsonl
while :; do
    rc=0
    NIX_DABEI_TEST_POWER_OFF_DURING={inside} NIX_DABEI_TEST_ONCE_DIR=/host/out/cut-inside \
        NIX_DABEI_TEST_KILL_AFTER=new:/host/out/cuts.jsonl nix-dabei apply /host/plan.toml --yes-wipe-all \
        --passphrase-file /host/passphrase --json >> /host/out/cuts.jsonl 2>> /host/out/cuts.err || rc=$?
    case $rc in
        0) touch /host/out/cuts-finished; break ;;
        # Killed (SIGKILL) after a step that changed only the kernel's state: resumed in this boot.
        137) ;;
        *) echo "nix-dabei apply failed with $rc" >> /host/out/cuts.err; exit 1 ;;
    esac
done
echo o > /proc/sysrq-trigger
sleep 30
"#
    )
}

/// The power goes off at every step boundary of an encrypted (LUKS) mirror install where the step wrote
/// to the disks, each in its own boot, and inside luksFormat, zpool create and mkfs; at the boundaries
/// after steps that change only the kernel's state the process is killed and the install resumed in the
/// same boot, where the resumed run must find the step done (losing that state is what the next power
/// cut's boot shows). The executor decides which by the step it finished ([`cut_boot`]). Then the
/// install finishes, a second apply is a no-op, and the disks are checked as in every layout scenario.
/// A disk outside the plan carries a pool named like the plan's and a LUKS header: it stays byte for
/// byte as it was, and its pool is never imported.
fn power_cuts() -> Scenario {
    use layouts::presets::{build, DiskFacts, Encryption, PresetKind, PresetOptions};
    let disks = vec![DiskSpec::virtio("c0", 3 * GIB), DiskSpec::virtio("c1", 3 * GIB)];
    let facts = disks.iter().map(|d| DiskFacts::offline(d.by_id(), 3 * GIB)).collect();
    let mut options = PresetOptions::new(PresetKind::Mirror, facts);
    options.encryption = Encryption::Luks;
    options.flake = Some("path:/etc/nixos#vm".into());
    // As the guest plans it: booted with SeaBIOS, a BIOS boot partition on each disk.
    options.boot = layouts::BootMode::Both;
    // The step ids depend only on the plan's names, which are the guest's too.
    let steps = build(&options).map(|p| p.compile(&layouts::CompileOptions::default()));
    let steps = match steps {
        Ok(Ok(steps)) => steps.steps,
        _ => Vec::new(),
    };
    // A cut inside the first step of each kind that takes long enough to be cut into.
    let mut inside: Vec<String> = Vec::new();
    for (prefix, millis) in [("luks-format:", 30), ("zpool-create:", 300), ("mkfs:", 15)] {
        if let Some(step) = steps.iter().find(|s| s.id.starts_with(prefix)) {
            inside.push(format!("{}:{millis}", step.id));
        }
    }
    // At most one boot per step, and the cuts inside steps.
    let at_most = (steps.len() + inside.len() + 2) as u32;
    let boots = vec![
        CUTS_PREPARE.to_string(),
        cut_boot(&inside.join(",")),
        format!("{}{CUTS_FOREIGN_CHECK}", install_boot(": the plan was made in boot 1")),
        VERIFY_BOOT.to_string(),
    ];
    let mut all = disks;
    all.push(DiskSpec::virtio("f0", 512 << 20));
    Scenario {
        name: "power-cuts",
        disks: all,
        boots,
        verify: verify_power_cuts,
        power_loss_boots: vec![2],
        driver: None,
        memory_mib: None,
        prepare: None,
        boot_limit: None,
        repeat_until: Some((2, "out/cuts-finished", at_most)),
    }
}

fn verify_power_cuts(share: &Path) -> Result<()> {
    let out = share.join("out");
    let before = read(&out.join("foreign-before"))?;
    ensure!(before == read(&out.join("foreign-after"))?, "the disk outside the plan was written to");
    let importable = read(&out.join("importable.txt"))?;
    ensure!(importable.contains("virtio-f0-part2"), "the foreign pool is gone from its disk:\n{importable}");
    let cuts = events(&out.join("cuts.jsonl"))?;
    let applied = cuts.iter().filter(|e| e["event"] == "step-finished").count();
    ensure!(applied >= 10, "the interrupted runs applied only {applied} steps");
    ensure!(!cuts.iter().any(|e| e["event"] == "step-failed"), "a step failed after a power cut: {cuts:?}");
    // A run killed after a step left the kernel as the step made it: the next run, in the same boot, found
    // it done and did not run it again.
    let mut killed = Vec::new();
    for boot in cuts.split(|e| e["event"] == "boot") {
        let runs: Vec<&[Value]> = boot.split(|e| e["event"] == "started").filter(|r| !r.is_empty()).collect();
        for pair in runs.windows(2) {
            let (run, next) = (pair[0], pair[1]);
            if run.iter().any(|e| e["event"] == "finished") {
                continue;
            }
            let last = run.iter().rev().find(|e| e["event"] == "step-finished").context("a killed run did nothing")?;
            let id = &last["id"];
            ensure!(
                !next.iter().any(|e| e["event"] == "step-started" && e["id"] == *id),
                "{id} ran again in the same boot after the run was killed right after it"
            );
            killed.push(id.clone());
        }
    }
    ensure!(killed.len() >= 3, "only {} runs were killed after a step: {killed:?}", killed.len());
    let hooks = read(&out.join("cuts.err"))?;
    let cut_after = hooks.lines().filter(|l| l.starts_with("nix-dabei: test hook: powering off after step ")).count();
    let cut_inside = hooks.lines().filter(|l| l.starts_with("nix-dabei: test hook: powering off during step ")).count();
    ensure!(cut_after >= 10, "the power was cut after only {cut_after} steps");
    ensure!(
        cut_inside == 3,
        "the power was cut inside {cut_inside} steps, not inside luksFormat, zpool create and mkfs"
    );
    verify_layout(share)
}

/// Runs a scenario whose host side talks to the guest over SSH while it runs. The first boot may kexec
/// (its second system is boot 2); each later boot is the machine started again after it powered off
/// (boots 3, 4, ...), with the same forwarded port.
fn run_driven(
    scenario: &Scenario,
    driver: fn(&Path, u16) -> Result<()>,
    mut machine: Machine,
    image: &Image,
    start: std::time::Instant,
) -> Result<Report> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    machine.extra_args = vec!["-nic".into(), format!("user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{port}-:22")];
    let share = machine.share();
    fs::copy(&image.bzimage, share.join("bzImage"))?;
    fs::copy(&image.initrd_zstd, share.join("initrd.zst"))?;
    let driver_share = share.clone();
    let mut driving = Some(std::thread::spawn(move || driver(&driver_share, port)));
    let mut driven = None;
    let mut boots = Vec::new();
    let mut logs = Vec::new();
    let mut failure = None;
    for (index, script) in scenario.boots.iter().enumerate() {
        let number = if index == 0 { 1 } else { index as u32 + 2 };
        let mut running = machine.start(image, number, &format!("{PRELUDE}{script}"))?;
        let started = std::time::Instant::now();
        while !running.has_ended()? && started.elapsed() < BOOT_LIMIT * 3 {
            if driving.as_ref().is_some_and(|d| d.is_finished()) {
                let result = driving.take().map(|d| d.join().map_err(|_| anyhow::anyhow!("the driver panicked")));
                driven = result.map(|r| r.and_then(|r| r));
            }
            // A driver that gave up ends the machine instead of leaving it to its time limit.
            if driven.as_ref().is_some_and(|d| d.is_err()) {
                running.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let result = running.wait(BOOT_LIMIT * 3)?;
        boots.push(result.elapsed);
        logs.push(result.log.clone());
        if result.timed_out || result.exit_code != Some(0) {
            failure = Some(format!(
                "boot {number} ended with {:?}{}; console log {}:\n{}",
                result.exit_code,
                if result.timed_out { " (time limit)" } else { "" },
                result.log.display(),
                vm::tail(&result.log, 60)
            ));
            break;
        }
    }
    if let Some(driving) = driving {
        driving.join().map_err(|_| anyhow::anyhow!("the driver panicked"))??;
    }
    if let Some(driven) = driven {
        driven?;
    }
    if let Some(failure) = failure {
        bail!("{failure}");
    }
    let bystander = fs::read(machine.disk_file(BYSTANDER))?;
    ensure!(bystander == bystander_bytes(), "the bystander disk was written to");
    (scenario.verify)(&share).with_context(|| format!("checking the results in {}", share.display()))?;
    remove_disk_images(&machine)?;
    Ok(Report { total: start.elapsed(), boots, logs })
}

/// The guest side of the kexec scenario: a "rescue" system with a static address and SSH, which the
/// host tells to kexec into the test image; there, nix-dabei restores what it carried over.
const KEXEC_BOOT: &str = r#"
iface=$(ls /sys/class/net | grep -v '^lo$' | head -n1)
start_ssh() {
    mkdir -p /etc/dropbear
    dropbearconvert openssh dropbear /etc/ssh/ssh_host_ed25519_key /etc/dropbear/host_key 2>/dev/null
    dropbear -r /etc/dropbear/host_key -p 22
}
if [ "$NIX_DABEI_BOOT" = 1 ]; then
    say "rescue system on $iface"
    ip link set dev "$iface" up
    ip address add 10.0.2.15/24 dev "$iface"
    ip route add default via 10.0.2.2 dev "$iface"
    # An IPv6 address and a route through a gateway outside every prefix (onlink), as some hosters set up.
    /usr/sbin/ip address add 2001:db8:5::15/64 dev "$iface" nodad
    /usr/sbin/ip route add 192.0.2.0/24 via 10.0.3.1 dev "$iface" onlink
    /usr/sbin/ip route add 198.18.0.0/15 dev "$iface"
    printf '0123456789abcdef0123456789abcdef\n' > /etc/machine-id
    printf 'nameserver 10.0.2.3\n' > /etc/resolv.conf
    mkdir -p /root/.ssh /etc/ssh
    cp /host/test_key.pub /root/.ssh/authorized_keys
    # A second key as cloud images give root one: behind a command that refuses the login. sshd reads
    # authorized_keys2 too; the handover must carry the key without the command.
    printf 'no-port-forwarding,command="echo Please login as debian;sleep 1;exit 142" %s\n' \
        "$(cat /host/cloud_key.pub)" > /root/.ssh/authorized_keys2
    ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
    start_ssh
    touch /host/out/rescue-ready
    # The host runs nix-dabei kexec over SSH; this boot ends with the switch.
    sleep 600
    exit 1
fi
say "RAM OS after kexec"
test -d /etc/nix-dabei/kexec
nix-dabei restore-network /etc/nix-dabei/kexec > /host/out/restore.txt 2>&1
grep -E '^(MemTotal|MemAvailable):' /proc/meminfo > /host/out/meminfo-ramos.txt
# The least memory available while the RAM OS installs, sampled each second.
(while :; do sed -n 's/^MemAvailable: *//p' /proc/meminfo >> /host/out/memavailable-ramos.txt; sleep 1; done) &
start_ssh
touch /host/out/ramos-ready
i=0
until [ -f /host/out/installed ]; do
    i=$((i + 1)); [ $i -lt 900 ] || exit 1
    sleep 1
done
"#;

fn ssh(share: &Path, port: u16, strict: &str, command: &str) -> Result<std::process::Output> {
    ssh_with_key(share, "test_key", port, strict, command)
}

fn ssh_with_key(share: &Path, key: &str, port: u16, strict: &str, command: &str) -> Result<std::process::Output> {
    let output = std::process::Command::new("ssh")
        .args(["-p", &port.to_string(), "-i"])
        .arg(share.join(key))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", share.join("known_hosts").display()))
        .args([
            "-o",
            &format!("StrictHostKeyChecking={strict}"),
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            "root@127.0.0.1",
            command,
        ])
        .output()?;
    Ok(output)
}

fn wait_for_file(path: &Path, limit: Duration) -> Result<()> {
    let start = std::time::Instant::now();
    while !path.exists() {
        ensure!(start.elapsed() < limit, "{} did not appear within {} s", path.display(), limit.as_secs());
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

const GUEST_PATH: &str = "export PATH=/host/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin NIX_DABEI_WEAK_KDF=1;";

/// The host side of the kexec scenario.
fn drive_kexec(share: &Path, port: u16) -> Result<()> {
    let out = share.join("out");
    fs::create_dir_all(&out)?;
    for name in ["test_key", "cloud_key"] {
        let generated = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(share.join(name))
            .status()?;
        ensure!(generated.success(), "ssh-keygen failed");
    }
    wait_for_file(&out.join("rescue-ready"), Duration::from_secs(120))?;
    let first = ssh(share, port, "accept-new", "grep -E '^(MemTotal|MemAvailable):' /proc/meminfo")?;
    fs::write(out.join("meminfo-rescue.txt"), &first.stdout)?;
    ensure!(first.status.success(), "ssh into the rescue system failed: {}", String::from_utf8_lossy(&first.stderr));
    let kexec = ssh(
        share,
        port,
        "yes",
        &format!(
            "{GUEST_PATH} nix-dabei kexec --kernel /host/bzImage --initrd /host/initrd.zst --delay 15 \
            --append 'console=ttyS0 panic=-1 loglevel=4 cryptomgr.notests=1 nix_dabei_boot=2'"
        ),
    )?;
    fs::write(out.join("kexec.txt"), [kexec.stdout.clone(), kexec.stderr.clone()].concat())?;
    ensure!(kexec.status.success(), "nix-dabei kexec failed: {}", String::from_utf8_lossy(&kexec.stderr));
    // The SSH session that asked for the switch has returned before it: the rescue system still answers.
    let still_there = ssh(share, port, "yes", "true")?;
    ensure!(still_there.status.success(), "the kexec session returned only with the switch (it held the session)");
    wait_for_file(&out.join("ramos-ready"), Duration::from_secs(180))?;
    // The cloud image's key, carried without the command that refused root.
    let cloud = ssh_with_key(share, "cloud_key", port, "yes", "true")?;
    ensure!(
        cloud.status.success(),
        "the key from authorized_keys2 does not let root in after kexec ({}): {}",
        cloud.status,
        String::from_utf8_lossy(&cloud.stdout)
    );
    // The same host key (strict checking) and the carried authorized key let us in.
    let address = ssh(share, port, "yes", "ip -4 -o address show")?;
    ensure!(address.status.success(), "ssh into the RAM OS failed: {}", String::from_utf8_lossy(&address.stderr));
    let addresses = String::from_utf8_lossy(&address.stdout);
    ensure!(addresses.contains("10.0.2.15/24"), "the static address was not carried over: {addresses}");
    let network = ssh(
        share,
        port,
        "yes",
        "/usr/sbin/ip -6 -o address show scope global; /usr/sbin/ip route show 192.0.2.0/24; \
         /usr/sbin/ip route show 198.18.0.0/15; cat /etc/machine-id; cat /run/systemd/network/10-nix-dabei-*.network",
    )?;
    let network = String::from_utf8_lossy(&network.stdout).into_owned();
    fs::write(out.join("network.txt"), &network)?;
    for expected in [
        "2001:db8:5::15/64",
        "192.0.2.0/24 via 10.0.3.1",
        "onlink",
        "198.18.0.0/15 dev ",
        "Destination=198.18.0.0/15\nScope=link",
        "0123456789abcdef0123456789abcdef",
        "Address=10.0.2.15/24",
        "Address=2001:db8:5::15/64",
        "Destination=192.0.2.0/24\nGateway=10.0.3.1\nGatewayOnLink=yes",
    ] {
        ensure!(network.contains(expected), "not carried over: {expected:?} in\n{network}");
    }
    let install = ssh(
        share,
        port,
        "yes",
        &format!(
            "{GUEST_PATH} nix-dabei plan --preset mirror --encrypt --disk /dev/disk/by-id/virtio-x0 --disk \
                /dev/disk/by-id/virtio-x1 -o /host/plan.toml >/dev/null && \
             nix-dabei apply /host/plan.toml --yes-wipe-all --passphrase-file /host/passphrase --json && \
             nix-dabei unmount /host/plan.toml --json"
        ),
    )?;
    let events = String::from_utf8_lossy(&install.stdout).into_owned();
    fs::write(out.join("install.jsonl"), &events)?;
    ensure!(
        install.status.success(),
        "the install over SSH failed: {}\n{events}",
        String::from_utf8_lossy(&install.stderr)
    );
    let finished: Vec<Value> = events
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &Value| e["event"] == "finished")
        .collect();
    ensure!(
        finished.len() == 2 && finished.iter().all(|e| e["ok"] == true),
        "the install did not finish well: {events}"
    );
    let restore = read(&out.join("restore.txt"))?;
    ensure!(
        restore.contains("restored authorized_keys for root")
            && restore.contains("restored host key ssh_host_ed25519_key")
            && restore.contains("restored machine id")
            && restore.contains("restored DNS servers 10.0.2.3"),
        "{restore}"
    );
    let _ = ssh(share, port, "yes", "touch /host/out/installed");
    Ok(())
}

/// The kexec scenario.
pub fn kexec_scenario() -> Scenario {
    Scenario {
        name: "kexec-ssh",
        disks: vec![DiskSpec::virtio("x0", 3 * GIB), DiskSpec::virtio("x1", 3 * GIB)],
        boots: vec![KEXEC_BOOT.to_string()],
        verify: |_| Ok(()),
        power_loss_boots: vec![],
        driver: Some(drive_kexec),
        // A small rescue machine: the RAM OS loads beside it, and installs an encrypted mirror after.
        memory_mib: Some(512),
        prepare: None,
        boot_limit: None,
        repeat_until: None,
    }
}

/// The guest side of the remote scenario. Boot 1 is a "rescue" system with SSH and nothing of
/// nix-dabei on its PATH; boot 2, inside the same machine after the kexec `nix-dabei remote` does, is the
/// RAM OS (the test image again: it marks itself as the RAM OS, restores what the kexec carried, and at
/// first shows the wrong host key); boot 3, after the reboot `remote` asks for, is the installed system.
const REMOTE_BOOT: &str = r#"
iface=$(ls /sys/class/net | grep -v '^lo$' | head -n1)
network() {
    ip link set dev "$iface" up
    ip address add 10.0.2.15/24 dev "$iface" 2>/dev/null || true
    ip route add default via 10.0.2.2 dev "$iface" 2>/dev/null || true
}
ssh_with() { # host key file (OpenSSH format)
    mkdir -p /etc/dropbear
    dropbearconvert openssh dropbear "$1" /etc/dropbear/host_key 2>/dev/null
    dropbear -r /etc/dropbear/host_key -p 22
}
wait_for() { # file, seconds
    i=0
    until [ -f "$1" ]; do i=$((i + 1)); [ $i -lt "$2" ] || exit 1; sleep 1; done
}
# The user's flake holds the layout's module, as committed before installing.
cp /host/nix-dabei.nix /etc/nixos/nix-dabei.nix
case "$NIX_DABEI_BOOT" in
1)
    say "rescue system on $iface"
    network
    mkdir -p /root/.ssh /etc/ssh
    cp /host/test_key.pub /root/.ssh/authorized_keys
    ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
    # nix-dabei is not on the rescue system's PATH: remote brings its own.
    export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    ssh_with /etc/ssh/ssh_host_ed25519_key
    touch /host/out/rescue-ready
    # nix-dabei remote kexecs from here; this boot ends with the switch.
    sleep 900
    exit 1
    ;;
2)
    say "RAM OS after kexec"
    mkdir -p /etc/nix-dabei
    echo "nix-dabei RAM OS (test image)" > /etc/nix-dabei/ram-os
    nix-dabei restore-network /etc/nix-dabei/kexec > /host/out/restore.txt 2>&1
    grep -E '^MemAvailable:' /proc/meminfo > /host/out/meminfo-ramos.txt
    # The RAM OS's own nix-dabei, on the PATH SSH sessions get (with the test's weak key derivation).
    printf '#!/bin/sh\nexport NIX_DABEI_WEAK_KDF=1\nexec /host/bin/nix-dabei "$@"\n' > /usr/local/bin/nix-dabei
    # Rebooting (systemd's way, as in the RAM OS) ends this machine; the harness starts boot 3 as the
    # installed system.
    printf '#!/bin/sh\n[ "$1" = reboot ] || exit 1\ntouch /host/out/rebooted\n%s\n' \
        'echo 0 > /host/exit-code; sync; poweroff -f' > /usr/local/bin/systemctl
    chmod +x /usr/local/bin/nix-dabei /usr/local/bin/systemctl
    network
    # First another host key than the one carried over: remote must refuse it.
    ssh-keygen -q -t ed25519 -N '' -f /tmp/other_host_key
    ssh_with /tmp/other_host_key
    touch /host/out/ramos-wrong-key
    wait_for /host/out/right-key 600
    kill "$(pidof dropbear)"; sleep 1
    ssh_with /etc/ssh/ssh_host_ed25519_key
    touch /host/out/ramos-ready
    sleep 1500
    exit 1
    ;;
*)
    say "the installed system"
    nix-dabei mount /host/plan.toml --passphrase-file /host/passphrase --json > /host/out/mount.jsonl
    cp /mnt/var/log/nix-dabei-install-standin /host/out/standin.txt
    generation=$(readlink /mnt/nix/var/nix/profiles/system)
    system=$(readlink "/mnt/nix/var/nix/profiles/$generation")
    [ -e "/mnt$system" ] && echo "$system" > /host/out/system-profile.txt
    zpool status -j --json-int > /host/out/zpool-status.json
    network
    ssh-keygen -q -t ed25519 -N '' -f /tmp/installed_host_key
    mkdir -p /root/.ssh && cp /host/test_key.pub /root/.ssh/authorized_keys
    ssh_with /tmp/installed_host_key
    wait_for /host/out/done 600
    nix-dabei unmount /host/plan.toml --json > /host/out/unmount.jsonl
    ;;
esac
"#;

/// The host flake's system: two store paths (the system refers to its module), added to the stand-in
/// configuration through its override.
const LOCAL_SYSTEM: &str = r#"{
  host = { };
  change = config: config // {
    system = (config.system or { }) // { build.toplevel = let
      module = derivation {
        name = "nix-dabei-module"; system = "x86_64-linux"; builder = "/bin/sh";
        text = builtins.readFile ./nix-dabei.nix;
        args = [ "-c" "echo \"$text\" > $out" ];
      };
    in derivation {
      name = "nixos-system-vm"; system = "x86_64-linux"; builder = "/bin/sh";
      args = [ "-c" "echo ${module} > $out" ];
    }; };
  };
}
"#;

/// Debian's Nix on the host, as root without its daemon: no build users, no binary cache, and builders
/// that are the host's /bin/sh.
const HOST_NIX_CONFIG: &str =
    "build-users-group =\nsubstituters =\nsandbox = false\nexperimental-features = nix-command flakes";

/// `nix-dabei remote` on the host, against the guest, with the test's key and known_hosts.
fn remote_command(share: &Path, port: u16, extra: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(share.join("bin/nix-dabei"));
    command
        .args(["remote", "root@127.0.0.1", "-p", &port.to_string(), "-i"])
        .arg(share.join("test_key"))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", share.join("known_hosts").display()))
        .args(["-o", "StrictHostKeyChecking=accept-new", "--json", "--plan"])
        .arg(share.join("plan.toml"))
        .args(["--kexec-tarball"])
        .arg(share.join("kexec.tar.gz"))
        .args(["--passphrase-file"])
        .arg(share.join("passphrase"))
        .args(extra)
        .stdin(std::process::Stdio::null());
    command
}

fn disk_digests(share: &Path, serials: &[&str]) -> Result<String> {
    let machine = share.parent().context("machine folder")?;
    let output = std::process::Command::new("sha256sum")
        .args(serials.iter().map(|s| machine.join(format!("{s}.img"))))
        .output()?;
    ensure!(output.status.success(), "sha256sum failed");
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The host side of the remote scenario.
fn drive_remote(share: &Path, port: u16) -> Result<()> {
    let out = share.join("out");
    fs::create_dir_all(&out)?;
    let generated = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(share.join("test_key"))
        .status()?;
    ensure!(generated.success(), "ssh-keygen failed");
    let binary = share.join("bin/nix-dabei");
    // The plan is made on the workstation; its module goes into the flake before the install.
    let plan = std::process::Command::new(&binary)
        .args(["plan", "--preset", "mirror", "--encrypt", "--disk", "/dev/disk/by-id/virtio-x0", "--disk"])
        .args(["/dev/disk/by-id/virtio-x1", "--offline-size", "3G", "--boot", "bios", "--flake", "path:/etc/nixos#vm"])
        .arg("-o")
        .arg(share.join("plan.toml"))
        .output()?;
    ensure!(plan.status.success(), "plan failed: {}", String::from_utf8_lossy(&plan.stderr));
    let module = std::process::Command::new(&binary).arg("nixos-module").arg(share.join("plan.toml")).output()?;
    ensure!(module.status.success(), "nixos-module failed");
    fs::write(share.join("nix-dabei.nix"), &module.stdout)?;
    // A kexec tarball as the flake's: kexec/{bzImage,initrd,nix-dabei,run}.
    let kexec = share.join("tarball/kexec");
    fs::create_dir_all(&kexec)?;
    fs::copy(share.join("bzImage"), kexec.join("bzImage"))?;
    fs::copy(share.join("initrd.zst"), kexec.join("initrd"))?;
    fs::copy(&binary, kexec.join("nix-dabei"))?;
    fs::write(
        kexec.join("run"),
        "#!/bin/sh\nset -eu\nhere=$(cd \"$(dirname \"$0\")\" && pwd)\nexec \"$here/nix-dabei\" kexec --kernel \
         \"$here/bzImage\" --initrd \"$here/initrd\" --delay 3 \
         --append 'console=ttyS0 panic=-1 loglevel=4 cryptomgr.notests=1 nix_dabei_boot=2'\n",
    )?;
    std::os::unix::fs::PermissionsExt::set_mode(&mut fs::metadata(kexec.join("run"))?.permissions(), 0o755);
    let packed = std::process::Command::new("sh")
        .arg("-c")
        .arg("chmod 755 tarball/kexec/run && tar -C tarball -cf - kexec | gzip -1 > kexec.tar.gz")
        .current_dir(share)
        .status()?;
    ensure!(packed.success(), "cannot pack the kexec tarball");
    wait_for_file(&out.join("rescue-ready"), Duration::from_secs(120))?;
    let disks = ["x0", "x1"];
    let before = disk_digests(share, &disks)?;

    // The flake on the far side, built there; and one here, built here (`--build-on local`): the stand-in
    // configuration with a system of two store paths, built by this machine's Nix without nixpkgs.
    let far_flake = ["--flake", "path:/etc/nixos#vm"];
    let flake = share.join("flake");
    fs::create_dir_all(&flake)?;
    fs::write(flake.join("flake.nix"), include_str!("../image/flake.nix"))?;
    fs::copy(share.join("nix-dabei.nix"), flake.join("nix-dabei.nix"))?;
    fs::write(flake.join("override.nix"), LOCAL_SYSTEM)?;
    let local_flake = format!("path:{}#vm", flake.display());

    // A dry run from the rescue system: the review, and nothing written.
    let dry = remote_command(share, port, &[&far_flake[..], &["--dry-run"]].concat()).output()?;
    let dry_events = String::from_utf8_lossy(&dry.stdout).into_owned();
    fs::write(out.join("remote-dry-run.jsonl"), &dry_events)?;
    ensure!(dry.status.success(), "the dry run failed: {}\n{dry_events}", String::from_utf8_lossy(&dry.stderr));
    let events = json_lines(&dry_events);
    let review = events.iter().find(|e| e["event"] == "reviewed").context("no review in the dry run")?;
    ensure!(review["review"]["wipes"].as_array().map(Vec::len) == Some(2), "the review wipes two disks: {review}");
    ensure!(!events.iter().any(|e| e["event"] == "phase-started" && e["phase"] == "apply"), "the dry run applied");
    ensure!(disk_digests(share, &disks)? == before, "the dry run changed a disk");
    let leftover = ssh(share, port, "yes", "test ! -e /run/nix-dabei/remote-dry-run")?;
    ensure!(leftover.status.success(), "the dry run left its folder behind");

    // The whole flow; after kexec the machine shows another host key, and the run stops there.
    let refused = remote_command(share, port, &[&far_flake[..], &["--yes-wipe-all", "--boot-timeout", "300"]].concat())
        .output()?;
    let refused_events = String::from_utf8_lossy(&refused.stdout).into_owned();
    fs::write(out.join("remote-wrong-key.jsonl"), &refused_events)?;
    let stderr = String::from_utf8_lossy(&refused.stderr).into_owned();
    ensure!(!refused.status.success(), "a changed host key after kexec was accepted: {refused_events}");
    ensure!(stderr.contains("host key changed"), "the refusal does not say why: {stderr}");
    let kexec_failed = json_lines(&refused_events)
        .into_iter()
        .any(|e| e["event"] == "phase-failed" && e["phase"] == "kexec" && e["error"].to_string().contains("host key"));
    ensure!(kexec_failed, "no phase-failed event for kexec: {refused_events}");
    ensure!(out.join("ramos-wrong-key").exists(), "the RAM OS did not come up");
    ensure!(disk_digests(share, &disks)? == before, "a disk was written before the host key was checked");
    fs::write(out.join("right-key"), "")?;
    wait_for_file(&out.join("ramos-ready"), Duration::from_secs(60))?;

    // Again, with the carried key: killed (with its SSH connections) in the middle of apply ...
    let mut first = remote_command(share, port, &[&far_flake[..], &["--yes-wipe-all"]].concat());
    first.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut first, 0);
    let mut child = first.spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut seen = String::new();
    let mut in_apply = false;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line?;
        seen.push_str(&line);
        seen.push('\n');
        let event: Value = serde_json::from_str(&line).unwrap_or_default();
        in_apply |= event["event"] == "phase-started" && event["phase"] == "apply";
        if in_apply && event["event"] == "step-finished" {
            break;
        }
    }
    let group = child.id().to_string();
    let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{group}")]).status();
    let _ = child.wait();
    fs::write(out.join("remote-killed.jsonl"), &seen)?;
    ensure!(in_apply, "the run ended before apply: {seen}");

    // ... and run once more: it reattaches to the apply still running there, checks and builds the system
    // here, copies it into the target's store there, installs it and reboots.
    let last = remote_command(share, port, &["--yes-wipe-all", "--post-install-check", "zpool list -H -o name,health"])
        .args(["--flake", &local_flake, "--build-on", "local"])
        .env("NIX_CONFIG", HOST_NIX_CONFIG)
        .output()?;
    let last_events = String::from_utf8_lossy(&last.stdout).into_owned();
    fs::write(out.join("remote-resumed.jsonl"), &last_events)?;
    fs::write(out.join("remote-resumed.stderr"), &last.stderr)?;
    let _ = fs::write(out.join("done"), "");
    ensure!(last.status.success(), "the resumed run failed: {}\n{last_events}", String::from_utf8_lossy(&last.stderr));
    let events = json_lines(&last_events);
    let skipped_plan = events.iter().find(|e| e["event"] == "phase-skipped" && e["phase"] == "plan");
    ensure!(
        skipped_plan.is_some_and(|e| e["reason"].as_str().is_some_and(|r| r.contains("reattaching"))),
        "the second run did not reattach to the running apply: {last_events}"
    );
    for phase in ["apply", "install", "reboot"] {
        ensure!(
            events.iter().any(|e| e["event"] == "phase-finished" && e["phase"] == phase),
            "phase {phase} did not finish: {last_events}"
        );
    }
    let noted = |text: &str| {
        events.iter().any(|e| e["event"] == "note" && e["text"].as_str().is_some_and(|t| t.contains(text)))
    };
    ensure!(noted("against the plan here"), "the flake was not checked here: {last_events}");
    ensure!(noted("-nixos-system-vm; copying"), "the system was not built here: {last_events}");
    ensure!(
        events.iter().any(|e| e["event"] == "note" && e["text"].as_str().is_some_and(|t| t.contains("ONLINE"))),
        "the post-install check did not see the pool: {last_events}"
    );
    ensure!(out.join("rebooted").exists(), "no reboot was asked for");
    Ok(())
}

fn verify_remote(share: &Path) -> Result<()> {
    let out = share.join("out");
    // The system built on the host, copied into the target's store, is what the profile holds.
    let standin = read(&out.join("standin.txt"))?;
    let system = read(&out.join("system-profile.txt"))?;
    let system = system.trim();
    ensure!(system.starts_with("/nix/store/") && system.ends_with("-nixos-system-vm"), "the profile: {system}");
    ensure!(standin.contains(&format!("flake=system:{system}")), "the install did not get the built system: {standin}");
    let status = read_json(&out.join("zpool-status.json"))?;
    let pool = status["pools"].as_object().and_then(|p| p.keys().next().cloned()).context("no pool")?;
    ensure!(vdev_shape(&status, &pool)? == [("mirror".to_string(), 2)], "not a two-way mirror: {status}");
    let mount = read(&out.join("mount.jsonl"))?;
    ensure!(mount.contains(r#""event":"finished","ok":true"#), "the installed system did not mount: {mount}");
    Ok(())
}

/// The remote scenario: `nix-dabei remote` from the host against a rescue VM.
pub fn remote_scenario() -> Scenario {
    Scenario {
        name: "remote",
        disks: vec![DiskSpec::virtio("x0", 3 * GIB), DiskSpec::virtio("x1", 3 * GIB)],
        boots: vec![REMOTE_BOOT.to_string(), REMOTE_BOOT.to_string()],
        verify: verify_remote,
        power_loss_boots: vec![],
        driver: Some(drive_remote),
        // The issue's target: the rescue system holds the unpacked tarball in memory (/run) beside what
        // kexec needs, and the RAM OS installs an encrypted mirror.
        memory_mib: Some(512),
        prepare: None,
        boot_limit: None,
        repeat_until: None,
    }
}

/// Boot 1 of the alongside scenario, before the install: a disk as a Windows machine leaves it (an ESP
/// with its boot manager, the system partition, free space, a recovery partition at the end; ext4 with a
/// file stands in for NTFS), and a plan that installs the ext4 preset beside it.
const ALONGSIDE_PREPARE: &str = r#"
d=/dev/disk/by-id/virtio-a0
sgdisk -n1:1M:+300M -t1:EF00 -c1:"EFI system partition" -n2:0:+600M -t2:0700 -c2:"Basic data partition" \
    -n3:-200M:0 -t3:2700 "$d" > /dev/null
udevadm settle
mkfs.vfat -F 32 -n SYSTEM "$d-part1" > /dev/null
mkfs.ext4 -q -L windows "$d-part2"
mkdir -p /tmp/foreign
mount "$d-part1" /tmp/foreign
mkdir -p /tmp/foreign/EFI/Microsoft/Boot
echo "the other system's boot manager" > /tmp/foreign/EFI/Microsoft/Boot/bootmgfw.efi
umount /tmp/foreign
mount "$d-part2" /tmp/foreign
echo "the other system's files" > /tmp/foreign/document.txt
umount /tmp/foreign
dd if=/dev/urandom of="$d-part3" bs=1M count=8 status=none
sha256sum "$d-part2" "$d-part3" | cut -d' ' -f1 > /host/out/foreign-before.txt
nix-dabei plan --preset ext4 --boot both --alongside "$d" --flake path:/etc/nixos#vm -o /host/plan.toml \
    > /host/out/plan.txt 2> /host/out/plan-notes.txt
"#;

/// Boot 2 of the alongside scenario, while the installed system is mounted: the other system's files.
const ALONGSIDE_CHECK: &str = r#"
d=/dev/disk/by-id/virtio-a0
cat /mnt/boot/EFI/Microsoft/Boot/bootmgfw.efi > /host/out/bootmgr.txt
ls /mnt/boot > /host/out/esp-listing.txt
sha256sum "$d-part2" "$d-part3" | cut -d' ' -f1 > /host/out/foreign-after.txt
"#;

fn verify_alongside(share: &Path) -> Result<()> {
    verify_layout(share)?;
    let out = share.join("out");
    let notes = read(&out.join("plan-notes.txt"))?;
    ensure!(notes.contains("p1") && notes.contains("reused at /boot"), "the ESP was not reused: {notes}");
    ensure!(
        read(&out.join("foreign-after.txt"))? == read(&out.join("foreign-before.txt"))?,
        "a partition of the other system changed"
    );
    let bootmgr = read(&out.join("bootmgr.txt"))?;
    ensure!(bootmgr.trim() == "the other system's boot manager", "the ESP lost the other system's file: {bootmgr}");
    let first = events(&out.join("apply1.jsonl"))?;
    for step in ["wipe:main", "mkfs:main/p1"] {
        let ran = first.iter().any(|e| e["event"] == "step-finished" && e["id"] == step);
        ensure!(!ran, "{step} ran on the disk shared with the other system");
    }
    Ok(())
}

/// Boot 2 of the grow scenario: the installed single-disk pool's plan, with a second disk added and the
/// pool made a mirror and a dataset's compression changed (as a person edits it), applied: the new disk is
/// partitioned, its partition attached, the property set.
const GROW_BOOT: &str = r#"
cp /host/plan.toml /host/plan-single.toml
sed 's/^mode = "stripe"$/mode = "mirror"/' /host/plan-single.toml > /host/plan.toml
cat >> /host/plan.toml <<'PLAN'

[disks.second]
device = "/dev/disk/by-id/virtio-g1"
size = 3221225472

[disks.second.partitions.esp]
size = "1G"
type = "esp"

[disks.second.partitions.esp.content.filesystem]
format = "vfat"
mountpoint = "/boot-1"
mount_options = ["umask=0077"]

[disks.second.partitions.zfs]
size = "rest"
type = "zfs"

[disks.second.partitions.zfs.content.zfs]
pool = "rpool"

[pools.rpool.datasets.home.properties]
compression = "lz4"
PLAN
nix-dabei nixos-module /host/plan.toml > /etc/nixos/nix-dabei.nix
sha256sum /dev/disk/by-id/virtio-g0-part1 | cut -d' ' -f1 > /host/out/esp-before.txt
nix-dabei apply /host/plan.toml --review-only --json > /host/out/grow-review.json
say "growing the pool"
nix-dabei apply /host/plan.toml --yes-wipe second --keep-mounted --json > /host/out/grow-apply.jsonl
zpool wait -t resilver rpool
say "resilvered"
zpool status -j --json-int > /host/out/zpool-status-grown.json
cat /mnt/home/hello.txt > /host/out/hello-grown.txt
zfs get -H -o value compression rpool/home > /host/out/home-compression.txt
nix-dabei apply /host/plan.toml --json > /host/out/grow-again.jsonl
nix-dabei unmount /host/plan.toml --json > /host/out/unmount-grown.jsonl
sha256sum /dev/disk/by-id/virtio-g0-part1 | cut -d' ' -f1 > /host/out/esp-after.txt
"#;

fn verify_grow(share: &Path) -> Result<()> {
    let out = share.join("out");
    let review = read_json(&out.join("grow-review.json"))?;
    let steps = review["steps"].as_array().context("the review's steps")?;
    let pool = steps.iter().find(|s| s["id"] == "zpool-create:rpool").context("the pool's step")?;
    ensure!(pool["state"] == "change", "the pool is not changed in place: {pool}");
    ensure!(pool["detail"].as_str().is_some_and(|d| d.contains("zpool attach")), "no attach shown: {pool}");
    for step in steps.iter().filter(|s| s["id"].as_str().is_some_and(|id| id.contains(":main"))) {
        ensure!(step["state"] == "done", "a step on the installed disk is not done: {step}");
    }
    let wipes: Vec<&Value> = review["wipes"].as_array().context("wipes")?.iter().map(|w| &w["disk"]).collect();
    ensure!(wipes == [&Value::from("second")], "only the new disk is wiped: {wipes:?}");
    finished(&out.join("grow-apply.jsonl"))?;
    let ran: Vec<String> = events(&out.join("grow-apply.jsonl"))?
        .iter()
        .filter(|e| e["event"] == "step-finished")
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect();
    ensure!(!ran.iter().any(|id| id.contains(":main")), "a step ran on the installed disk: {ran:?}");
    ensure!(ran.iter().any(|id| id == "zpool-create:rpool"), "the pool was not changed: {ran:?}");
    // Of the existing datasets, only the one whose properties the plan changed is touched: what real ZFS
    // shows for the others (inherited values, aliases, sizes) is found as planned.
    let datasets: Vec<&String> = ran.iter().filter(|id| id.starts_with("zfs-create:")).collect();
    ensure!(datasets == ["zfs-create:rpool/home"], "datasets changed: {datasets:?}");
    ensure!(read(&out.join("home-compression.txt"))?.trim() == "lz4", "the property was not set");
    let status = read_json(&out.join("zpool-status-grown.json"))?;
    ensure!(vdev_shape(&status, "rpool")? == [("mirror".to_string(), 2)], "not a two-way mirror: {status}");
    let scan = &status["pools"]["rpool"]["scan_stats"];
    ensure!(scan["function"] == "RESILVER" && scan["state"] == "FINISHED", "the resilver is not done: {scan}");
    ensure!(read(&out.join("hello-grown.txt"))?.trim() == "written in boot 1", "the data did not stay");
    ensure!(read(&out.join("esp-after.txt"))? == read(&out.join("esp-before.txt"))?, "the installed ESP changed");
    let again = finished(&out.join("grow-again.jsonl"))?;
    ensure!(again["applied"] == 0, "applying the grown plan again did something: {again}");
    // Boot 3 mounts the mirror as the installed system would, from both disks.
    ensure!(read(&out.join("hello.txt"))?.trim() == "written in boot 1", "the file did not survive the reboot");
    let status = read_json(&out.join("zpool-status.json"))?;
    ensure!(vdev_shape(&status, "rpool")? == [("mirror".to_string(), 2)], "not a mirror after the reboot: {status}");
    Ok(())
}

/// The grow scenario (issue item: change in place): a single-disk pool installed, then its plan changed to
/// a mirror with a second disk and applied: the pool is a mirror, resilvered, its data intact.
pub fn grow_scenario() -> Scenario {
    Scenario {
        name: "zfs-grow",
        disks: vec![DiskSpec::virtio("g0", 3 * GIB), DiskSpec::virtio("g1", 3 * GIB)],
        boots: vec![
            apply_boot("--preset single --disk /dev/disk/by-id/virtio-g0"),
            GROW_BOOT.to_string(),
            VERIFY_BOOT.to_string(),
        ],
        verify: verify_grow,
        power_loss_boots: vec![],
        driver: None,
        memory_mib: None,
        prepare: None,
        boot_limit: None,
        repeat_until: None,
    }
}

/// Boot 2 of ext4-single, once everything is unmounted again: the installed disk read back (probe, with
/// the passphrase, so that the LUKS container is opened and read), written as a disko configuration, read
/// from it (import-disko, evaluated with nix-instantiate here), and reviewed on the machine.
const PROBE_ROUND_TRIP: &str = r#"
nix-dabei probe /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_e0 --passphrase-file /host/passphrase \
    -o /host/out/probed.toml 2> /host/out/probe-notes.txt
ls /dev/mapper > /host/out/mappers-after-probe.txt
nix-dabei export-disko /host/out/probed.toml -o /host/out/probed.nix
nix-dabei import-disko /host/out/probed.nix -o /host/out/imported.toml 2> /host/out/import-warnings.txt
nix-dabei apply /host/out/imported.toml --review-only --json > /host/out/imported-review.json
nix-dabei mount /host/out/imported.toml --passphrase-file /host/passphrase --json > /host/out/imported-mount.jsonl
nix-dabei unmount /host/out/imported.toml --json > /host/out/imported-unmount.jsonl
"#;

/// What is on a device: its kind and UUID, and for a LUKS container the kind and UUID of what it holds.
type Made = (String, String, Option<Box<(String, String)>>);

/// What a compiled plan makes on a device, as reading it back describes it: the filesystem, swap or LUKS
/// header with its UUID (a FAT's as its volume id), and for LUKS what the opened container holds.
fn made_on(steps: &layouts::Steps, device: &str) -> Option<Made> {
    steps.steps.iter().find_map(|step| match &step.operation {
        layouts::Operation::Mkfs(m) if m.device == device => Some((m.format.fs_type().into(), m.blkid_uuid(), None)),
        layouts::Operation::Mkswap(m) if m.device == device => Some(("swap".into(), m.uuid.clone(), None)),
        layouts::Operation::LuksFormat(f) if f.device == device => {
            let inner =
                made_on(steps, &format!("/dev/mapper/{}", f.name)).map(|(kind, uuid, _)| Box::new((kind, uuid)));
            Some(("luks".into(), f.uuid.clone(), inner))
        }
        _ => None,
    })
}

/// A read-back content in the same terms as [`made_on`].
fn read_as(content: &layouts::Content) -> Option<Made> {
    match content {
        layouts::Content::Filesystem(fs) => Some((fs.format.fs_type().into(), fs.uuid.clone()?, None)),
        layouts::Content::Swap(swap) => Some(("swap".into(), swap.uuid.clone()?, None)),
        layouts::Content::Luks(luks) => {
            let inner = read_as(&luks.content).map(|(kind, uuid, _)| Box::new((kind, uuid)));
            Some(("luks".into(), luks.uuid.clone()?, inner))
        }
        _ => None,
    }
}

/// The installed layout is read back whole: the probed plan has every partition where the plan put
/// it, with the plan's partition UUIDs, and what the plan made on each with its UUID (the LUKS header's
/// and the filesystem's inside it, read with the passphrase); through disko's format and back it still
/// does, and the machine finds every step of it done (swap is off once unmounted: only swapon is left).
fn verify_probe_round_trip(share: &Path) -> Result<()> {
    verify_layout(share)?;
    let out = share.join("out");
    let plan = layouts::Plan::from_toml(&read(&share.join("plan.toml"))?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let steps = plan.compile(&layouts::CompileOptions::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let probed = probed_plan(&out)?;
    let imported =
        layouts::Plan::from_toml(&read(&out.join("imported.toml"))?).map_err(|e| anyhow::anyhow!("imported: {e}"))?;
    let (disk_name, disk) = plan.disks.first().context("a disk")?;
    let numbers = disk.partition_numbers();
    let mut luks = 0;
    for read_back in [&probed, &imported] {
        let again = read_back.disks.values().next().context("a disk read back")?;
        ensure!(again.partitions.len() == disk.partitions.len(), "partitions differ: {:?}", again.partitions.keys());
        for (((name, _), (_, found)), number) in disk.partitions.iter().zip(&again.partitions).zip(&numbers) {
            let uuid = plan.partition_uuid(disk_name, name);
            ensure!(found.uuid.as_deref() == Some(uuid.as_str()), "{name}: partition UUID {:?}", found.uuid);
            let expected = made_on(&steps, &layouts::gpt::partition_device(&disk.device, *number));
            let seen = found.content.as_ref().and_then(read_as);
            ensure!(seen == expected, "{name}: read back as {seen:?}, made as {expected:?}");
            luks += usize::from(expected.is_some_and(|(kind, _, _)| kind == "luks"));
        }
    }
    ensure!(luks == 2, "the layout has no LUKS container to read back");
    ensure!(probed.disks.values().all(|d| d.partitions.values().all(|p| p.keep)), "probe kept not everything");
    let mappers = read(&out.join("mappers-after-probe.txt"))?;
    ensure!(!mappers.contains("nix-dabei-probe"), "probe left a container open: {mappers}");
    let warnings = read(&out.join("import-warnings.txt"))?;
    ensure!(warnings.contains("512-byte sectors"), "the sector size assumption is not said: {warnings}");
    let review = read_json(&out.join("imported-review.json"))?;
    let steps = review["steps"].as_array().context("the review's steps")?;
    let in_containers: Vec<String> = imported
        .disks
        .iter()
        .flat_map(|(d, disk)| disk.partitions.iter().map(move |(p, part)| (d, p, part)))
        .filter(|(_, _, part)| matches!(part.content, Some(layouts::Content::Luks(_))))
        .map(|(d, p, _)| format!("mkfs:{d}/{p}"))
        .collect();
    let mapped = |id: &str| in_containers.iter().any(|inside| inside == id);
    for step in steps {
        let id = step["id"].as_str().unwrap_or_default();
        // Opening the container and turning swap on is all a released disk has left to do; what the
        // closed container holds is read once it is open (the mount below).
        let opens = id.starts_with("swapon:") || id.starts_with("luks-open:");
        let inside = id.starts_with("mkfs:") && mapped(id);
        ensure!(step["state"] == "done" || ((opens || inside) && step["state"] != "conflict"), "not done: {step}");
    }
    ensure!(steps.len() >= 5, "the review has too few steps: {steps:?}");
    ensure!(review["wipes"].as_array().is_some_and(Vec::is_empty), "the review wipes: {review}");
    // Mounting makes and changes nothing: it finishing shows every step of the imported plan done.
    finished(&out.join("imported-mount.jsonl"))?;
    finished(&out.join("imported-unmount.jsonl"))?;
    Ok(())
}

/// The ext4 layout on LUKS, and (issue item b) its disk probed, exported to disko, imported, and found done.
fn probe_scenario() -> Scenario {
    Scenario {
        boots: vec![
            apply_boot("--preset ext4 --encrypt luks --swap 256M --disk /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_e0"),
            format!("{VERIFY_BOOT}{PROBE_ROUND_TRIP}"),
        ],
        verify: verify_probe_round_trip,
        ..layout("ext4-single", vec![DiskSpec { serial: "e0".into(), size: 3 * GIB, bus: Bus::Nvme }], "")
    }
}

/// The alongside scenario: NixOS installed into the free space of a disk another system uses.
pub fn alongside_scenario() -> Scenario {
    Scenario {
        name: "alongside",
        disks: vec![DiskSpec::virtio("a0", 4 * GIB)],
        boots: vec![
            install_boot(ALONGSIDE_PREPARE),
            format!("{VERIFY_BOOT_MOUNTED}{ALONGSIDE_CHECK}{UNMOUNT_AFTER_VERIFY}"),
        ],
        verify: verify_alongside,
        power_loss_boots: vec![],
        driver: None,
        memory_mib: None,
        prepare: None,
        boot_limit: None,
        repeat_until: None,
    }
}
