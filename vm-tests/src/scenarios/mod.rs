//! The VM scenarios. Each is a folder of `vm-tests/scenarios/`: a manifest (`scenario.toml`: the disks,
//! the boots, the host's check of what the guest reported, and what else the host does), the shell script
//! each boot runs, and the plans and files those scripts read. Every boot script sources
//! `scenarios/lib/common.sh`; the layout scenarios share `lib/install.sh` and `lib/verify.sh`. In the
//! guest the scenario's folder is `/host/scenario`, the library `/host/lib`, and what the guest reports
//! goes to `/host/out`, which the named check reads on the host ([`checks`]). Every scenario has a
//! bystander disk whose contents must not change.

mod checks;
mod drivers;
mod manifest;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use vm_tests::vm::{self, DiskSpec, Image, Machine};

pub use checks::finished;
pub use manifest::Repeat;

/// A check of what the guest left in the share, run on the host once every boot passed.
pub type Check = fn(&Path) -> Result<()>;
/// What the host does while the guest runs, given the share and the host port forwarded to the guest's
/// SSH port.
pub type Driver = fn(&Path, u16) -> Result<()>;
/// Puts what the guest needs into the share before the first boot (after the scenario's files).
pub type Prepare = fn(&Path) -> Result<()>;

/// One boot's script, as the guest runs it.
pub struct BootScript {
    /// Where it comes from, relative to the scenarios' folder ("power-cuts/cut.sh").
    pub source: String,
    /// Its text.
    pub script: String,
}

/// A scenario, loaded from its folder (or, for the benchmark, made in code).
pub struct Scenario {
    /// Name on the command line: the folder's name.
    pub name: String,
    /// The scenario's folder, copied into the share as `scenario/`.
    pub folder: Option<PathBuf>,
    /// Files from elsewhere (an example plan) copied into the share's `scenario/` by their names.
    pub copy: Vec<PathBuf>,
    /// The disks besides the bystander.
    pub disks: Vec<DiskSpec>,
    /// One guest script per boot.
    pub boots: Vec<BootScript>,
    /// Checks of what the guest left in the share, on the host.
    pub verify: Check,
    /// Boots (from 1) that end by losing power on purpose, without reporting an exit status.
    pub power_loss_boots: Vec<u32>,
    /// For a scenario with one boot and networking: what the host does while the guest runs.
    pub driver: Option<Driver>,
    /// Guest memory in MiB, where the scenario proves a figure (else 2048; NIX_DABEI_VM_MEMORY overrides).
    pub memory_mib: Option<u32>,
    /// Puts what the guest needs besides the binary, the passphrase and the scenario's files into the
    /// share before the first boot.
    pub prepare: Option<Prepare>,
    /// How long each boot may take, where longer than [`BOOT_LIMIT`].
    pub boot_limit: Option<Duration>,
    /// A boot run again and again until the guest leaves a file in the share: the power-cut scenario's
    /// interrupted install.
    pub repeat: Option<Repeat>,
}

impl Scenario {
    /// How long it runs, roughly, as boots: the order in which scenarios are started (longest first).
    /// A driven scenario's boot is a whole remote install; a repeated boot counts as often as it may run.
    pub fn weight(&self) -> usize {
        let repeated = self.repeat.as_ref().map_or(0, |r| r.at_most as usize);
        self.boots.len() + repeated + if self.driver.is_some() { 8 } else { 0 }
    }
}

/// The folder of the scenario folders: NIX_DABEI_VM_SCENARIOS, or vm-tests/scenarios of this checkout.
pub fn folder() -> PathBuf {
    std::env::var_os("NIX_DABEI_VM_SCENARIOS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"))
}

/// Every scenario of [`folder`], by name. A folder without a manifest (`lib`) is not a scenario.
pub fn all() -> Result<Vec<Scenario>> {
    let root = folder();
    let mut names: Vec<String> = fs::read_dir(&root)
        .with_context(|| format!("cannot read the scenarios in {}", root.display()))?
        .flatten()
        .filter(|entry| entry.path().join(manifest::FILE).is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.iter().map(|name| load(&root, name)).collect()
}

/// Reads one scenario's folder: its manifest, checked against what exists (boot scripts, the check,
/// driver and preparation it names).
pub fn load(root: &Path, name: &str) -> Result<Scenario> {
    let folder = root.join(name);
    let manifest_path = folder.join(manifest::FILE);
    let text =
        fs::read_to_string(&manifest_path).with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let manifest = manifest::Manifest::parse(&text).with_context(|| format!("{}", manifest_path.display()))?;
    let context = || format!("scenario {name} ({})", manifest_path.display());
    let mut boots = Vec::new();
    for file in &manifest.boots {
        let path = folder.join(file);
        let script = fs::read_to_string(&path).with_context(|| format!("{}: boot script {file}", context()))?;
        let source = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace("/../", "/");
        let source = source.split_once("/lib/").map_or(source.clone(), |(_, rest)| format!("lib/{rest}"));
        boots.push(BootScript { source, script });
    }
    let verify = match (&manifest.check, &manifest.driver) {
        (Some(check), _) => checks::by_name(check).with_context(|| format!("{}: no check {check:?}", context()))?,
        (None, Some(_)) => checks::nothing_beyond_the_driver,
        (None, None) => bail!("{}: names no check (and no driver that checks)", context()),
    };
    let driver = match &manifest.driver {
        Some(driver) => Some(drivers::by_name(driver).with_context(|| format!("{}: no driver {driver:?}", context()))?),
        None => None,
    };
    let prepare = match &manifest.prepare {
        Some(prepare) => {
            Some(drivers::preparation(prepare).with_context(|| format!("{}: no preparation {prepare:?}", context()))?)
        }
        None => None,
    };
    let copy = manifest.copy.iter().map(|file| folder.join(file)).collect::<Vec<_>>();
    for file in &copy {
        ensure!(file.is_file(), "{}: no file {} to copy", context(), file.display());
    }
    Ok(Scenario {
        name: name.to_string(),
        folder: Some(folder),
        copy,
        disks: manifest.disk_specs()?,
        boots,
        verify,
        power_loss_boots: manifest.power_loss_boots,
        driver,
        memory_mib: manifest.memory_mib,
        prepare,
        boot_limit: manifest.boot_limit_seconds.map(Duration::from_secs),
        repeat: manifest.repeat,
    })
}

/// The share's `lib/` (the boot scripts' library) and `scenario/` (the scenario's folder and the files it
/// copies from elsewhere).
fn copy_scenario_files(scenario: &Scenario, share: &Path) -> Result<()> {
    copy_folder(&folder().join("lib"), &share.join("lib"))?;
    let target = share.join("scenario");
    if let Some(folder) = &scenario.folder {
        copy_folder(folder, &target)?;
    }
    fs::create_dir_all(&target)?;
    for file in &scenario.copy {
        let name = file.file_name().context("a file to copy has no name")?;
        fs::copy(file, target.join(name)).with_context(|| format!("cannot copy {}", file.display()))?;
    }
    Ok(())
}

fn copy_folder(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_folder(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target).with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

pub const GIB: u64 = 1 << 30;
pub(crate) const BYSTANDER: &str = "bystander";
const BYSTANDER_SIZE: u64 = 64 << 20;
const BOOT_LIMIT: Duration = Duration::from_secs(300);
/// The passphrase the encrypted scenarios use; it reaches the guest as a file, never an argument.
pub const PASSPHRASE: &str = "correct horse battery staple";

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
    let mut machine = Machine::new(root.join(&scenario.name), disks)?;
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
    copy_scenario_files(scenario, &share)?;
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
    while let Some(boot_script) = scenario.boots.get(script_number as usize - 1) {
        boot += 1;
        let limit = scenario.boot_limit.unwrap_or(BOOT_LIMIT);
        let result = machine.boot(image, boot, &boot_script.script, limit)?;
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
        match &scenario.repeat {
            Some(Repeat { boot: again, until: file, at_most })
                if *again == script_number && !share.join(file).exists() =>
            {
                repeated += 1;
                ensure!(repeated < *at_most, "boot {boot}: {file} is not there after {at_most} repetitions");
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

/// Runs a scenario whose host side talks to the guest over SSH while it runs. The first boot may kexec
/// (its second system is boot 2); each later boot is the machine started again after it powered off
/// (boots 3, 4, ...), with the same forwarded port.
fn run_driven(
    scenario: &Scenario,
    driver: Driver,
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
    for (index, boot_script) in scenario.boots.iter().enumerate() {
        let number = if index == 0 { 1 } else { index as u32 + 2 };
        let mut running = machine.start(image, number, &boot_script.script)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scenarios() -> Vec<Scenario> {
        all().expect("every scenario folder loads")
    }

    #[test]
    fn every_folder_is_a_scenario_whose_boots_checks_and_drivers_exist() {
        let loaded = scenarios();
        assert!(loaded.len() >= 20, "only {} scenarios", loaded.len());
        // Every check is some scenario's: none is left behind when a scenario goes.
        for (name, _) in checks::CHECKS {
            let used = fs::read_dir(folder()).expect("scenarios").flatten().any(|entry| {
                fs::read_to_string(entry.path().join(manifest::FILE))
                    .is_ok_and(|text| text.lines().any(|l| l == format!("check = \"{name}\"")))
            });
            assert!(used, "no scenario names the check {name}");
        }
    }

    /// Every boot starts with the library that sets `-eu` and the PATH, as its first command.
    #[test]
    fn every_boot_script_sources_the_common_library_first() {
        for scenario in scenarios() {
            for boot in &scenario.boots {
                let first =
                    boot.script.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
                assert_eq!(first, ". /host/lib/common.sh", "{}: {}", scenario.name, boot.source);
            }
        }
    }

    /// A disk a scenario's scripts or plans name by its stable path is one of the scenario's disks (a
    /// typo would otherwise be a scenario that fails in the VM, or one that checks another disk).
    #[test]
    fn the_disks_the_scripts_and_plans_name_are_the_scenarios_own() {
        for scenario in scenarios() {
            let mut known: Vec<String> = scenario.disks.iter().map(DiskSpec::by_id).collect();
            known.push(DiskSpec::virtio(BYSTANDER, 0).by_id());
            let folder = scenario.folder.clone().expect("a folder");
            let mut files: Vec<PathBuf> = fs::read_dir(&folder).expect("folder").flatten().map(|e| e.path()).collect();
            files.extend(scenario.copy.iter().cloned());
            for file in files.iter().filter(|f| f.is_file()) {
                let text = fs::read_to_string(file).expect("a text file");
                for (at, _) in text.match_indices("/dev/disk/by-id/") {
                    let rest = &text[at..];
                    let end =
                        rest.find(|c: char| !(c.is_ascii_alphanumeric() || "/_-".contains(c))).unwrap_or(rest.len());
                    // A name the shell completes ("virtio-md$n") is not checked.
                    if rest[end..].starts_with('$') || rest[end..].starts_with('*') {
                        continue;
                    }
                    let named = rest[..end].split("-part").next().unwrap_or_default().to_string();
                    assert!(
                        known.contains(&named),
                        "{}: {} names {named}, not one of {known:?}",
                        scenario.name,
                        file.display()
                    );
                }
            }
        }
    }

    /// power-cuts' repeated boot may run once per step of its plan and per cut inside a step, and twice
    /// more: the manifest's bound must allow that many.
    #[test]
    fn the_power_cut_repetitions_cover_every_step() {
        let scenario = scenarios().into_iter().find(|s| s.name == "power-cuts").expect("power-cuts");
        let (steps, inside) = drivers::power_cut_steps();
        assert_eq!(inside.len(), 3, "{inside:?}");
        let needed = (steps.len() + inside.len() + 2) as u32;
        let bound = scenario.repeat.expect("a repeated boot").at_most;
        assert!(
            bound >= needed,
            "at_most = {bound}, but the plan has {} steps and {} cuts inside",
            steps.len(),
            inside.len()
        );
    }

    /// The shell the guest runs is readable on its own: every script under vm-tests/scenarios passes
    /// shellcheck (following what it sources).
    #[test]
    fn the_scenario_scripts_are_shellcheck_clean() {
        let mut scripts = Vec::new();
        let mut folders = vec![folder()];
        while let Some(dir) = folders.pop() {
            for entry in fs::read_dir(&dir).expect("a folder").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "sh") {
                    scripts.push(path);
                }
            }
        }
        scripts.sort();
        let output = std::process::Command::new("shellcheck")
            .args(["-x", "--format=gcc"])
            .args(&scripts)
            .output()
            .expect("shellcheck runs (scripts/setup installs it)");
        assert!(
            output.status.success(),
            "shellcheck over {} scripts:\n{}",
            scripts.len(),
            String::from_utf8_lossy(&output.stdout)
        );
    }
}
