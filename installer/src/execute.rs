//! The executor: checks the disks, works out which steps are already done, and runs the rest in
//! dependency order, independent steps on different disks at the same time.
//!
//! Every step is probed before it runs: done steps are skipped, so a finished or half-finished install
//! can be run again; what conflicts with the plan is refused before anything is written.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use layouts::steps::{Operation, Step, Steps};
use layouts::Plan;
use partitioner::{DiskError, DiskInfo};

use crate::command::CommandError;
use crate::events::Event;
use crate::journal::Journal;
use crate::luks::LuksError;
use crate::ops::{self, ProbeContext, ReadAhead, RunContext};
use crate::reports::Reports;
use crate::secret::Secret;
use crate::system::System;
use crate::tools::zfs::{Zfs, ZfsError};

/// What to do with the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Create everything that is not there yet, then write the NixOS module (and install, with a flake).
    Apply,
    /// Only open, import and mount what an earlier apply created; never write.
    Mount,
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Apply or mount.
    pub mode: Mode,
    /// Weak key derivation for LUKS and ZFS (tests under emulation only).
    pub weak_kdf: bool,
    /// Where the journal goes.
    pub journal_dir: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options { mode: Mode::Apply, weak_kdf: false, journal_dir: Journal::default_dir() }
    }
}

/// The keys a run may need.
#[derive(Debug, Default)]
pub struct Secrets {
    /// The passphrase for every key located at "prompt".
    pub passphrase: Option<Secret>,
}

impl Secrets {
    /// The key for a key location: the passphrase for "prompt", a file's contents for "file://".
    pub fn key(&self, location: &str) -> Result<Secret, StepError> {
        self.key_or_file(location, None)
    }

    /// [`Secrets::key`], with a passphrase file that a plan names taking the place of the passphrase.
    pub fn key_or_file(&self, location: &str, passphrase_file: Option<&str>) -> Result<Secret, StepError> {
        if let (Some(path), false) = (passphrase_file, location.starts_with("file://")) {
            return Secret::from_file(Path::new(path))
                .map_err(|source| StepError::Io { action: format!("read the passphrase file {path}"), source });
        }
        if let Some(path) = location.strip_prefix("file://") {
            return Secret::from_file(Path::new(path))
                .map_err(|source| StepError::Io { action: format!("read the key file {path}"), source });
        }
        self.passphrase.clone().ok_or(StepError::NoPassphrase)
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A program failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// ZFS failed.
    #[error(transparent)]
    Zfs(#[from] ZfsError),
    /// LUKS failed.
    #[error(transparent)]
    Luks(#[from] LuksError),
    /// The disk layer failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// A system call or file failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A key is needed and no passphrase was given.
    #[error("a passphrase is needed: give --passphrase-file, --passphrase-stdin, or run on a terminal")]
    NoPassphrase,
    /// What is on the machine conflicts with the plan.
    #[error("{0}")]
    Conflict(String),
    /// Mount mode met a step that would write.
    #[error("the plan has not been applied here yet: this step would write ({0})")]
    NotApplied(String),
}

/// Why a run was refused or stopped.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A disk is missing, not the planned one, or in use.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The plan types a passphrase (LUKS or ZFS encryption) and none was given.
    #[error("the plan encrypts with a passphrase and none was given; nothing was written")]
    NoPassphrase,
    /// Programs the plan's steps run are not on this machine.
    #[error(
        "this machine lacks programs the plan's steps run: {}; nothing was written (`nix-dabei programs` \
         says which packages have them)",
        .0.join(", ")
    )]
    MissingPrograms(Vec<String>),
    /// Two disks of the plan are one device.
    #[error("disks {first:?} and {second:?} of the plan are the same device, {device}; nothing was written")]
    SameDisk {
        /// The disk named first.
        first: String,
        /// The disk named second.
        second: String,
        /// The kernel's name for it.
        device: String,
    },
    /// A disk is named by a link whose partitions have no names of their own (a link of the user's under
    /// /dev, say): after the wipe its partitions would never appear under the names the steps use.
    #[error(
        "disk {disk:?}: {device} is another name of {kernel}, and its partitions have none: name the disk \
         {kernel} or by a /dev/disk/by-id/ (or by-path/) link; nothing was written"
    )]
    NotItsOwnName {
        /// The disk of the plan.
        disk: String,
        /// The name the plan gives it.
        device: String,
        /// The kernel's name for it.
        kernel: String,
    },
    /// Disks that will be wiped were not confirmed.
    #[error("not confirmed: {}; nothing was written", .0.join(", "))]
    NotConfirmed(Vec<String>),
    /// What is on the machine conflicts with the plan.
    #[error("the machine does not match the plan; nothing was written:\n  {}", .0.join("\n  "))]
    Conflicts(Vec<String>),
    /// A step touches a device outside the plan's disks.
    #[error("step {step} would write {device}, which is not on a disk of the plan")]
    OutsidePlan {
        /// The step.
        step: String,
        /// The device.
        device: String,
    },
    /// A step failed.
    #[error("step {id} ({description}) failed: {source}")]
    Step {
        /// The step.
        id: String,
        /// Its description.
        description: String,
        /// What went wrong.
        source: Box<StepError>,
    },
    /// Another run holds a disk or the state directory.
    #[error(transparent)]
    Busy(#[from] crate::lock::LockError),
    /// The journal could not be written.
    #[error("cannot write the journal: {0}")]
    Journal(std::io::Error),
}

/// What a probe found for a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outlook {
    /// Already done; why we think so.
    Done(String),
    /// Will run; whether it destroys data.
    Todo {
        /// It destroys whatever the device holds.
        destroys: bool,
    },
    /// Will run, changing what exists in place without destroying anything (a mirror member attached
    /// to a pool); what changes.
    Change(String),
    /// Something on the machine conflicts with the plan.
    Conflict(String),
}

/// A disk that a run will wipe, for confirmation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WipeTarget {
    /// Plan name.
    pub disk: String,
    /// Device path from the plan.
    pub device: String,
    /// Kernel path.
    pub kernel_path: String,
    /// Model.
    pub model: Option<String>,
    /// Serial.
    pub serial: Option<String>,
    /// Size in bytes.
    pub size: u64,
}

impl WipeTarget {
    /// What a person types to confirm this disk: its serial, or its plan name when it has none.
    pub fn confirmation_word(&self) -> &str {
        self.serial.as_deref().unwrap_or(&self.disk)
    }

    /// Whether `given` (from --yes-wipe) names this disk: its plan name, plan path, kernel path, serial,
    /// or another path to the same device.
    pub fn is_named_by(&self, given: &str, system: &dyn System) -> bool {
        given == self.disk
            || given == self.device
            || given == self.kernel_path
            || Some(given) == self.serial.as_deref()
            || system.same_device(given, &self.kernel_path)
    }
}

/// The outcome of checking a plan against the machine, before anything is written.
#[derive(Debug)]
pub struct Preview {
    /// Every step with what its probe found.
    pub steps: Vec<(Step, Outlook)>,
    /// The disks the run will wipe.
    pub wipes: Vec<WipeTarget>,
    /// Every disk of the plan, as found and identified.
    pub disks: Vec<DiskInfo>,
}

impl Preview {
    /// True when every step is already done.
    pub fn nothing_to_do(&self) -> bool {
        self.steps.iter().all(|(_, o)| matches!(o, Outlook::Done(_)))
    }
}

/// The programs the steps and their teardown run (`Operation::programs`) that this machine lacks, each
/// with the package that has it: a plan is refused for them before any probe, as nothing may be written
/// for a run that would stop halfway at a missing mkfs or mdadm.
fn missing_programs(system: &dyn System, steps: &Steps) -> Vec<String> {
    let mut asked: Vec<String> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for program in steps.steps.iter().chain(&steps.teardown).flat_map(|step| step.operation.programs()) {
        if asked.contains(&program) {
            continue;
        }
        asked.push(program.clone());
        if system.has_program(&program) {
            continue;
        }
        let provider = match layouts::programs::find(&program) {
            Some(p) if !p.debian.is_empty() => format!("nixpkgs {}, Debian {}", p.nixpkgs, p.debian),
            Some(p) => format!("nixpkgs {}", p.nixpkgs),
            None => "not in nix-dabei's program list".to_string(),
        };
        missing.push(format!("{program} ({provider})"));
    }
    missing
}

/// Checks the plan's disks (present, the same identity, free when they will be wiped) and that this
/// machine has the programs the steps run, and probes every step. Writes nothing.
pub fn preview(system: &dyn System, plan: &Plan, steps: &Steps, options: &Options) -> Result<Preview, InstallError> {
    let devices: Vec<String> = plan.disks.values().map(|disk| disk.device.clone()).collect();
    let missing = missing_programs(system, steps);
    let journal = Journal::load(&options.journal_dir, &plan_id(plan), &plan.hostname);
    // The steps are probed while the disks are discovered: both only read, and every probe's outlook
    // waits for the disks' identities below (any write, and any outlook shown, comes after those).
    // Discovery and the first probes wait on different partitions at once, and what later probes read
    // whatever the machine holds (LVM's reports, ZFS's pools) is read meanwhile.
    let (reports, zfs) = (Reports::default(), ops::zfs_for(system, &steps.steps));
    let read_signatures = |device: &str| reports.signatures(system, device);
    let probing = journal.is_ok() && missing.is_empty();
    let (disks, mut outlooks) = std::thread::scope(|scope| {
        let discovery = scope.spawn(|| system.discover_for(&devices, &read_signatures));
        if probing {
            let ahead: HashSet<ReadAhead> =
                steps.steps.iter().filter_map(|step| ops::of(&step.operation)?.reads_ahead()).collect();
            for what in ahead {
                let (reports, zfs) = (&reports, &zfs);
                scope.spawn(move || what.read(system, reports, zfs));
            }
        }
        let outlooks = match &journal {
            Ok(journal) if probing => probe_in_waves(system, plan, steps, journal, &reports, &zfs),
            _ => HashMap::new(),
        };
        let disks = discovery.join().unwrap_or_else(|_| {
            let path = devices.join(", ").into();
            Err(DiskError::Read { path, source: std::io::Error::other("internal error: discovery panicked") })
        });
        (disks, outlooks)
    });
    let disks = disks?;
    let mut found: HashMap<String, DiskInfo> = HashMap::new();
    for (name, planned) in &plan.disks {
        let disk = system.find_disk(&disks, &planned.device)?;
        // Two spellings of one device (a link and its target, "/dev/./sda") are one disk, written once.
        if let Some(first) = plan.disks.keys().find(|first| found.get(*first).is_some_and(|d| d.path == disk.path)) {
            return Err(InstallError::SameDisk {
                first: first.clone(),
                second: name.clone(),
                device: disk.path.clone(),
            });
        }
        // Partition names are derived from the disk's: udev links the partitions of by-id, by-path and
        // by-diskseq links (60-persistent-storage.rules), the kernel names them after the disk; any
        // other link (the plan refuses those outside /dev) has no partitions under its name.
        let udev_named = ["/dev/disk/by-id/", "/dev/disk/by-path/", "/dev/disk/by-diskseq/"]
            .iter()
            .any(|prefix| planned.device.starts_with(prefix));
        if !udev_named && planned.device != disk.path {
            return Err(InstallError::NotItsOwnName {
                disk: name.clone(),
                device: planned.device.clone(),
                kernel: disk.path.clone(),
            });
        }
        partitioner::check_identity(name, planned, disk)?;
        found.insert(name.clone(), disk.clone());
    }
    if !missing.is_empty() {
        return Err(InstallError::MissingPrograms(missing));
    }
    journal.map_err(InstallError::Journal)?;
    let result: Vec<(Step, Outlook)> = steps
        .steps
        .iter()
        .map(|step| (step.clone(), outlooks.remove(&step.id).unwrap_or(Outlook::Conflict("never probed".into()))))
        .collect();
    let conflicts: Vec<String> = result
        .iter()
        .filter_map(|(step, outlook)| match (outlook, &step.keeps) {
            (Outlook::Conflict(why), _) => Some(format!("{}: {why}", step.id)),
            (Outlook::Todo { destroys: true }, Some(kept)) => Some(format!("{}: {}", step.id, destroys_kept(kept))),
            _ => None,
        })
        .collect();
    if !conflicts.is_empty() {
        return Err(InstallError::Conflicts(conflicts));
    }
    let mut wipes = Vec::new();
    for (step, outlook) in &result {
        if let (Operation::Wipe(layouts::steps::Wipe { device, .. }), Outlook::Todo { .. }, Some(name)) =
            (&step.operation, outlook, &step.disk)
        {
            let disk = &found[name];
            if options.mode == Mode::Mount {
                return Err(InstallError::Step {
                    id: step.id.clone(),
                    description: step.description.clone(),
                    source: Box::new(StepError::NotApplied("the disk has no partition table from this plan".into())),
                });
            }
            partitioner::ensure_free(disk)?;
            wipes.push(WipeTarget {
                disk: name.clone(),
                device: device.clone(),
                kernel_path: disk.path.clone(),
                model: disk.model.clone(),
                serial: disk.serial.clone(),
                size: disk.size,
            });
        }
    }
    ensure_inside_plan(system, &result, &found)?;
    let disks = plan.disks.keys().filter_map(|name| found.remove(name)).collect();
    Ok(Preview { steps: result, wipes, disks })
}

/// Probes of the preview running at once, at most.
const PROBES_AT_ONCE: usize = 8;

/// Every step's outlook. Steps are probed in waves: a step once every step it comes after has its
/// outlook (which decides how it is probed), the steps of a wave at once. Probes only read, and the
/// checks of different partitions (a filesystem check, a signature probe) then wait on the disk together.
fn probe_in_waves(
    system: &dyn System,
    plan: &Plan,
    steps: &Steps,
    journal: &Journal,
    reports: &Reports,
    zfs: &Zfs<'_>,
) -> HashMap<String, Outlook> {
    let ids: HashSet<&str> = steps.steps.iter().map(|s| s.id.as_str()).collect();
    let mut outlooks: HashMap<String, Outlook> = HashMap::new();
    let mut waiting: Vec<&Step> = steps.steps.iter().collect();
    while !waiting.is_empty() {
        let known = |id: &String| outlooks.contains_key(id) || !ids.contains(id.as_str());
        let (mut ready, mut rest): (Vec<&Step>, Vec<&Step>) =
            waiting.iter().partition(|step| step.after.iter().all(known));
        // The steps are in order, so a step's dependencies come before it; should they not, one at a time.
        if ready.is_empty() {
            (ready, rest) = (vec![waiting[0]], waiting[1..].to_vec());
        }
        for wave in ready.chunks(PROBES_AT_ONCE) {
            let found: Vec<Outlook> = std::thread::scope(|scope| {
                let probes: Vec<_> = wave
                    .iter()
                    .map(|&step| {
                        let cx = ProbeContext { system, plan, steps: &steps.steps, journal, zfs, reports, step };
                        let outlooks = &outlooks;
                        scope.spawn(move || outlook_in_preview(&cx, outlooks))
                    })
                    .collect();
                probes
                    .into_iter()
                    .map(|probe| {
                        probe.join().unwrap_or_else(|_| Outlook::Conflict("internal error: the probe panicked".into()))
                    })
                    .collect()
            });
            for (step, outlook) in wave.iter().zip(found) {
                outlooks.insert(step.id.clone(), outlook);
            }
        }
        waiting = rest;
    }
    outlooks
}

/// A step's outlook in the preview, given those of the steps before it.
fn outlook_in_preview(cx: &ProbeContext<'_>, outlooks: &HashMap<String, Outlook>) -> Outlook {
    let step = cx.step;
    let destroys = |id: &String| matches!(outlooks.get(id), Some(Outlook::Todo { destroys: true }));
    if !step.after.iter().any(destroys) {
        return probe(cx);
    }
    // What comes after a step that destroys is not probed (the machine will differ by then), except for
    // what no earlier step can change: names and places already taken by others, and a change in place
    // that what stays tells of.
    let op = ops::of(&step.operation);
    let destroyed: Vec<&Step> = cx.steps.iter().filter(|s| step.after.contains(&s.id) && destroys(&s.id)).collect();
    match op.and_then(|op| op.taken_by_others(cx)) {
        Some(why) => Outlook::Conflict(why),
        None => op
            .and_then(|op| op.change_despite_destruction(cx, &destroyed))
            .unwrap_or(Outlook::Todo { destroys: step.operation.destroys_data() }),
    }
}

/// Refuses any step that would write a device which exists now and is not one of the plan's disks, a
/// partition of one, or a mapping or volume built on them.
fn ensure_inside_plan(
    system: &dyn System,
    steps: &[(Step, Outlook)],
    disks: &HashMap<String, DiskInfo>,
) -> Result<(), InstallError> {
    let names: HashSet<&str> = disks.values().map(|d| d.name.as_str()).collect();
    for (step, outlook) in steps {
        if !matches!(outlook, Outlook::Todo { destroys: true }) {
            continue;
        }
        for device in &step.devices {
            if device.starts_with("/dev/mapper/") || device.starts_with("/dev/zvol/") || !device.starts_with('/') {
                continue;
            }
            // A device that does not exist yet is a partition this plan will make.
            if system.kernel_name(device).is_none() {
                continue;
            }
            if !system.whole_disk_of(device).is_some_and(|disk| names.contains(disk.as_str())) {
                return Err(InstallError::OutsidePlan { step: step.id.clone(), device: device.clone() });
            }
        }
    }
    Ok(())
}

/// Why a step that would destroy a kept partition is refused.
fn destroys_kept(kept: &str) -> String {
    format!(
        "would destroy what is kept ({kept}): the machine does not hold it as the plan describes it (start, size, \
         type, name and UUID of each kept partition, the UUID of what it holds)"
    )
}

/// A stable id for a plan: a hash of its JSON form ([`Plan::id`]).
pub fn plan_id(plan: &Plan) -> String {
    plan.id()
}

/// Whether a step is already done, still to do, or conflicts with what is there, asked of its
/// operation type.
fn probe(cx: &ProbeContext<'_>) -> Outlook {
    match ops::of(&cx.step.operation) {
        Some(op) => op.probe(cx),
        None => Outlook::Conflict(format!("this nix-dabei cannot perform {}", cx.step.operation)),
    }
}

/// What a finished run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Steps applied.
    pub applied: usize,
    /// Steps found done.
    pub skipped: usize,
    /// Wall time in seconds.
    pub seconds: f64,
}

struct Runner<'a> {
    system: &'a dyn System,
    plan: &'a Plan,
    all: Vec<Step>,
    options: &'a Options,
    secrets: &'a Secrets,
    emit: &'a (dyn Fn(Event) + Sync),
    /// Mount mode only: the steps the preview found done, with why. Unless a step they come after was
    /// performed in this run, they are not probed again (a filesystem check each, for instance): mount
    /// mode writes nothing to a disk, so what it found a moment ago still holds, and a step that no
    /// longer does fails its own way.
    found_done: HashMap<String, String>,
    /// Steps performed in this run, and those after them: what the preview found of these may be stale.
    changed: std::sync::Mutex<HashSet<String>>,
    /// ZFS as read since the last step performed.
    zfs: Zfs<'a>,
    /// Report programs' outputs since the last step performed.
    reports: Reports,
}

/// Runs the steps of a preview. Every disk the preview will wipe must be in `confirmed` (named by plan
/// name, path or serial), or nothing is written.
pub fn execute(
    system: &dyn System,
    plan: &Plan,
    preview: &Preview,
    confirmed: &[String],
    secrets: &Secrets,
    options: &Options,
    emit: &(dyn Fn(Event) + Sync),
) -> Result<Report, InstallError> {
    let missing: Vec<String> = preview
        .wipes
        .iter()
        .filter(|w| !confirmed.iter().any(|c| w.is_named_by(c, system)))
        .map(|w| format!("wiping disk {} ({})", w.disk, w.device))
        .collect();
    if !missing.is_empty() {
        return Err(InstallError::NotConfirmed(missing));
    }
    // A passphrase the plan types (LUKS or ZFS, in whatever container: `Plan::needs_passphrase`) must be
    // there before the first write, not found missing at the step that asks for it after the wipes.
    if secrets.passphrase.is_none() && plan.needs_passphrase() && !preview.nothing_to_do() {
        return Err(InstallError::NoPassphrase);
    }
    // What earlier runs finished, for the tests' interruptions, is read before this run finishes a step.
    #[cfg(feature = "test-hooks")]
    let _ = finished_by_earlier_runs();
    // Every disk of the plan is held until the run ends: a second run of this plan, or of another plan
    // sharing a disk, is refused instead of writing the same disks at the same time.
    let _holds: Vec<_> = preview.disks.iter().map(|disk| system.lock_disk(disk)).collect::<Result<_, _>>()?;
    let steps: Vec<&Step> = preview.steps.iter().map(|(s, _)| s).filter(|s| runs_in(options.mode, s)).collect();
    let all: Vec<Step> = preview.steps.iter().map(|(s, _)| s.clone()).collect();
    let found_done = match options.mode {
        Mode::Mount => preview
            .steps
            .iter()
            .filter_map(|(step, outlook)| match outlook {
                Outlook::Done(why) => Some((step.id.clone(), why.clone())),
                _ => None,
            })
            .collect(),
        Mode::Apply => HashMap::new(),
    };
    let zfs = ops::zfs_for(system, &all);
    let changed = Default::default();
    let reports = Reports::default();
    let runner = Runner { system, plan, all, options, secrets, emit, found_done, changed, zfs, reports };
    runner.run(&steps)
}

/// Runs teardown steps (unmount, swapoff, export, close), skipping what is already undone.
pub fn teardown(
    system: &dyn System,
    plan: &Plan,
    steps: &Steps,
    options: &Options,
    emit: &(dyn Fn(Event) + Sync),
) -> Result<Report, InstallError> {
    let secrets = Secrets::default();
    let runner = Runner {
        system,
        plan,
        all: steps.teardown.clone(),
        options,
        secrets: &secrets,
        emit,
        found_done: HashMap::new(),
        changed: Default::default(),
        zfs: Zfs::new(system),
        reports: Reports::default(),
    };
    let list: Vec<&Step> = steps.teardown.iter().collect();
    runner.run(&list)
}

fn runs_in(mode: Mode, step: &Step) -> bool {
    mode == Mode::Apply
        || !matches!(
            step.operation,
            Operation::WriteNixosModule(_) | Operation::InitrdHostKey(_) | Operation::NixosInstall(_)
        )
}

impl Runner<'_> {
    fn run(&self, steps: &[&Step]) -> Result<Report, InstallError> {
        let start = Instant::now();
        let state_dir = &self.options.journal_dir;
        let _state =
            crate::lock::exclusive(&state_dir.join("lock"), &format!("the state directory {}", state_dir.display()))?;
        (self.emit)(Event::Started { host: self.plan.hostname.clone(), steps: steps.len() });
        let journal = std::sync::Mutex::new(
            Journal::open(&self.options.journal_dir, &plan_id(self.plan), &self.plan.hostname)
                .map_err(InstallError::Journal)?,
        );
        let journal = &journal;
        let ids: HashSet<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        let mut finished: HashSet<String> = HashSet::new();
        let mut remaining: Vec<&Step> = steps.to_vec();
        let (mut applied, mut skipped) = (0, 0);
        let mut failure = None;
        while !remaining.is_empty() && failure.is_none() {
            let ready = ready_steps(&remaining, &ids, &|id| finished.contains(id));
            if ready.is_empty() {
                break;
            }
            let batch = next_batch(&remaining, &ready, self.options.mode);
            let outcomes: Vec<(usize, Result<Option<String>, StepError>, f64)> = std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|&i| {
                        let step = remaining[i];
                        scope.spawn(move || {
                            let started = Instant::now();
                            let result = self.run_step(step, journal);
                            (i, result, started.elapsed().as_secs_f64())
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .zip(&batch)
                    .map(|(handle, &i)| {
                        handle.join().unwrap_or_else(|panic| {
                            let message = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                            (
                                i,
                                Err(StepError::Conflict(format!(
                                    "internal error: {}",
                                    message.unwrap_or_else(|| "the step panicked".into())
                                ))),
                                0.0,
                            )
                        })
                    })
                    .collect()
            });
            for (i, result, seconds) in outcomes {
                let step = remaining[i];
                let mut journal = journal.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok(Some(reason)) => {
                        skipped += 1;
                        journal.record(&step.id, "skipped", seconds, None).map_err(InstallError::Journal)?;
                        (self.emit)(Event::StepSkipped {
                            id: step.id.clone(),
                            description: step.description.clone(),
                            reason,
                        });
                    }
                    Ok(None) => {
                        applied += 1;
                        journal.record(&step.id, "applied", seconds, None).map_err(InstallError::Journal)?;
                        (self.emit)(Event::StepFinished {
                            id: step.id.clone(),
                            description: step.description.clone(),
                            seconds,
                        });
                        power_off_if_asked(step);
                    }
                    Err(error) => {
                        journal
                            .record(&step.id, "failed", seconds, Some(error.to_string()))
                            .map_err(InstallError::Journal)?;
                        (self.emit)(Event::StepFailed {
                            id: step.id.clone(),
                            description: step.description.clone(),
                            seconds,
                            error: error.to_string(),
                        });
                        failure.get_or_insert(InstallError::Step {
                            id: step.id.clone(),
                            description: step.description.clone(),
                            source: Box::new(error),
                        });
                    }
                }
                finished.insert(step.id.clone());
            }
            let mut index = 0;
            remaining.retain(|_| {
                let keep = !batch.contains(&index);
                index += 1;
                keep
            });
        }
        if failure.is_none() && !remaining.is_empty() {
            let stuck: Vec<&str> = remaining.iter().map(|s| s.id.as_str()).collect();
            failure = Some(InstallError::Step {
                id: stuck[0].to_string(),
                description: remaining[0].description.clone(),
                source: Box::new(StepError::Conflict(format!("steps never became ready: {}", stuck.join(", ")))),
            });
        }
        let seconds = start.elapsed().as_secs_f64();
        (self.emit)(Event::Finished { ok: failure.is_none(), applied, skipped, seconds });
        match failure {
            Some(error) => Err(error),
            None => Ok(Report { applied, skipped, seconds }),
        }
    }

    /// Probes and, when needed, performs one step; `Some(reason)` when it was already done.
    fn run_step(&self, step: &Step, journal: &std::sync::Mutex<Journal>) -> Result<Option<String>, StepError> {
        let changed = |id: &str| self.changed.lock().unwrap_or_else(|p| p.into_inner()).contains(id);
        if step.after.iter().any(|before| changed(before)) {
            self.changed.lock().unwrap_or_else(|p| p.into_inner()).insert(step.id.clone());
        } else if let Some(why) = self.found_done.get(&step.id) {
            return Ok(Some(why.clone()));
        }
        let outlook = {
            // A copy, so that the steps running together probe at once rather than one after another.
            let journal = journal.lock().unwrap_or_else(|p| p.into_inner()).clone();
            probe(&ProbeContext {
                system: self.system,
                plan: self.plan,
                steps: &self.all,
                journal: &journal,
                zfs: &self.zfs,
                reports: &self.reports,
                step,
            })
        };
        match outlook {
            Outlook::Done(reason) => return Ok(Some(reason)),
            Outlook::Conflict(why) => return Err(StepError::Conflict(why)),
            Outlook::Todo { destroys: true } if step.keeps.is_some() => {
                return Err(StepError::Conflict(destroys_kept(step.keeps.as_deref().unwrap_or_default())))
            }
            // Mount mode opens, imports and mounts what is there; it never makes or changes anything.
            Outlook::Todo { destroys }
                if self.options.mode == Mode::Mount && (destroys || step.operation.kind().creates()) =>
            {
                return Err(StepError::NotApplied(step.operation.to_string()))
            }
            Outlook::Change(what) if self.options.mode == Mode::Mount => {
                return Err(StepError::NotApplied(format!("{} ({what})", step.operation)))
            }
            Outlook::Todo { .. } | Outlook::Change(_) => {}
        }
        (self.emit)(Event::StepStarted { id: step.id.clone(), description: step.description.clone() });
        power_off_during_if_asked(&step.id);
        let cx = RunContext {
            system: self.system,
            plan: self.plan,
            options: self.options,
            secrets: self.secrets,
            emit: self.emit,
            steps: &self.all,
            journal,
            zfs: &self.zfs,
            step,
        };
        let op = ops::of(&step.operation)
            .ok_or_else(|| StepError::Conflict(format!("this nix-dabei cannot perform {}", step.operation)))?;
        self.changed.lock().unwrap_or_else(|p| p.into_inner()).insert(step.id.clone());
        let result = op.perform(&cx);
        // Whatever the step wrote (a pool exported, a volume made) may change what ZFS and LVM report.
        self.zfs.forget();
        self.reports.forget();
        result.map(|()| None)
    }
}

/// The steps of `remaining` (indices, in plan order) that may start: every step they come after has
/// finished or is not part of this run (`in_run`).
fn ready_steps(remaining: &[&Step], in_run: &HashSet<&str>, finished: &dyn Fn(&str) -> bool) -> Vec<usize> {
    (0..remaining.len())
        .filter(|&i| remaining[i].after.iter().all(|d| finished(d) || !in_run.contains(d.as_str())))
        .collect()
}

/// Which of the ready steps (indices into `remaining`, in plan order) run together next: the first, and
/// each later one on another disk. A step on no single disk runs alone, and key derivations never run
/// together (each may take half the machine's memory). In mount mode a step that makes something is
/// never performed, only checked (its filesystem is there and whole, its volume exists): it only reads,
/// and the ready checks run together (those of a volume group's filesystems, one after another, were a
/// third of an LVM mount in `vm-tests bench`), as do the ready mounts and swaps.
fn next_batch(remaining: &[&Step], ready: &[usize], mode: Mode) -> Vec<usize> {
    let checked_only = |i: usize| mode == Mode::Mount && remaining[i].operation.kind().creates();
    // The checks go together, before what is performed: a step performed beside them would make them
    // read ZFS's and LVM's state again (every write forgets what was read).
    let (checks, performed): (Vec<usize>, Vec<usize>) = ready.iter().partition(|&&i| checked_only(i));
    if !checks.is_empty() {
        return checks;
    }
    // The mounts and swaps mount mode performs go together once ready: each has its own target, whose
    // parent the steps it comes after mounted, and none writes to another's device.
    let mounts = |i: usize| matches!(remaining[i].operation, Operation::Mount(_) | Operation::Swapon(_));
    if mode == Mode::Mount && mounts(performed[0]) {
        return performed.into_iter().filter(|&i| mounts(i)).collect();
    }
    let first = performed[0];
    let mut batch = vec![first];
    if let Some(disk) = &remaining[first].disk {
        let mut busy: HashSet<&String> = HashSet::from([disk]);
        let mut deriving = remaining[first].operation.derives_key();
        for &i in &performed[1..] {
            let derives = remaining[i].operation.derives_key();
            if let Some(other) = &remaining[i].disk {
                if !(deriving && derives) && busy.insert(other) {
                    deriving |= derives;
                    batch.push(i);
                }
            }
        }
    }
    batch
}

impl Options {
    /// Whether the test hook asks for a weak key derivation (LUKS and ZFS), for tests under emulation:
    /// NIX_DABEI_WEAK_KDF, honoured only by builds with the `test-hooks` feature.
    pub fn weak_kdf_from_test_hook() -> bool {
        #[cfg(feature = "test-hooks")]
        return std::env::var_os("NIX_DABEI_WEAK_KDF").is_some();
        #[cfg(not(feature = "test-hooks"))]
        false
    }
}

/// Without the `test-hooks` feature, nothing.
#[cfg(not(feature = "test-hooks"))]
fn power_off_if_asked(_step: &Step) {}

/// Without the `test-hooks` feature, nothing.
#[cfg(not(feature = "test-hooks"))]
fn power_off_during_if_asked(_id: &str) {}

/// Tests of resuming cut the power in the middle of a chosen step: NIX_DABEI_TEST_POWER_OFF_DURING is
/// `<step id>:<milliseconds>[,<step id>:<milliseconds>...]`, the time after the step starts. With
/// NIX_DABEI_TEST_ONCE_DIR, each cut happens once over all runs: a file named for the step there says it
/// happened (written before the cut). Only in builds with `test-hooks`.
#[cfg(feature = "test-hooks")]
fn power_off_during_if_asked(id: &str) {
    let Ok(wanted) = std::env::var("NIX_DABEI_TEST_POWER_OFF_DURING") else { return };
    for spec in wanted.split(',') {
        let Some((step, millis)) = spec.rsplit_once(':') else { continue };
        let Ok(millis) = millis.parse::<u64>() else { continue };
        if step != id {
            continue;
        }
        if let Some(dir) = std::env::var_os("NIX_DABEI_TEST_ONCE_DIR") {
            let marker = std::path::Path::new(&dir).join(id.replace('/', "_"));
            if marker.exists() || std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&marker, "")).is_err() {
                continue;
            }
        }
        let id = id.to_string();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(millis));
            eprintln!("nix-dabei: test hook: powering off during step {id}");
            let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
        });
    }
}

/// The steps the events file of NIX_DABEI_TEST_POWER_OFF_AFTER / NIX_DABEI_TEST_KILL_AFTER (`new:<file>`)
/// shows finished by earlier runs: read once, before this run finishes its first step (whose own event
/// is in the file by the time the hook asks).
#[cfg(feature = "test-hooks")]
fn finished_by_earlier_runs() -> &'static [String] {
    static SEEN: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SEEN.get_or_init(|| {
        let file = ["NIX_DABEI_TEST_KILL_AFTER", "NIX_DABEI_TEST_POWER_OFF_AFTER"]
            .iter()
            .find_map(|v| std::env::var(v).ok().and_then(|w| w.strip_prefix("new:").map(str::to_string)));
        let text = file.and_then(|f| std::fs::read_to_string(f).ok()).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| event["event"] == "step-finished")
            .filter_map(|event| event["id"].as_str().map(str::to_string))
            .collect()
    })
}

/// Tests of resuming cut the power right after a chosen step, as a crash would: no unmount, no export,
/// no sync. Set NIX_DABEI_TEST_POWER_OFF_AFTER to a step id, or to `new:<events file>` for the first step
/// this run applies that the JSON events in that file (earlier runs) never show finished.
/// NIX_DABEI_TEST_KILL_AFTER, in the same form, kills the process instead (SIGKILL: no cleanup) where
/// that step changes only the kernel's state ([`changes_only_the_kernel`]), for resuming in the same
/// boot with the kernel as the step left it; after a step that writes, it cuts the power all the same.
/// Only in builds with the `test-hooks` feature.
#[cfg(feature = "test-hooks")]
fn power_off_if_asked(step: &Step) {
    let id = step.id.as_str();
    let asked = |variable: &str| match std::env::var(variable) {
        Ok(wanted) if wanted.starts_with("new:") => !finished_by_earlier_runs().iter().any(|s| s == id),
        Ok(wanted) => wanted == id,
        Err(_) => false,
    };
    let kill = asked("NIX_DABEI_TEST_KILL_AFTER");
    if kill && changes_only_the_kernel(&step.operation) {
        eprintln!("nix-dabei: test hook: killed after step {id}");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    if kill || asked("NIX_DABEI_TEST_POWER_OFF_AFTER") {
        eprintln!("nix-dabei: test hook: powering off after step {id}");
        let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    }
}

/// Whether an operation changes only the running kernel's state (mappings, mounts, swap, activations)
/// and nothing on the disks: what a reboot undoes. Every operation is named, so that a new one must be
/// decided on.
#[cfg(feature = "test-hooks")]
fn changes_only_the_kernel(operation: &Operation) -> bool {
    match operation {
        Operation::LuksOpen(_)
        | Operation::LuksClose(_)
        | Operation::Mount(_)
        | Operation::Unmount(_)
        | Operation::Swapon(_)
        | Operation::Swapoff(_)
        | Operation::VgActivate(_)
        | Operation::VgDeactivate(_)
        | Operation::MdAssemble(_)
        | Operation::MdStop(_) => true,
        Operation::Wipe(_)
        | Operation::PartitionTable(_)
        | Operation::LuksFormat(_)
        | Operation::HostId(_)
        | Operation::ZpoolCreate(_)
        | Operation::ZfsCreate(_)
        | Operation::Mkfs(_)
        | Operation::GrowFs(_)
        | Operation::BtrfsSubvolumes(_)
        | Operation::MdCreate(_)
        | Operation::ArrayPartitionTable(_)
        | Operation::BcachefsFormat(_)
        | Operation::BcachefsSubvolumes(_)
        | Operation::PvCreate(_)
        | Operation::VgCreate(_)
        | Operation::LvCreate(_)
        | Operation::Mkswap(_)
        | Operation::WriteNixosModule(_)
        | Operation::InitrdHostKey(_)
        | Operation::NixosInstall(_)
        | Operation::ZpoolExport(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use layouts::presets::{build, DiskFacts, Encryption, PresetKind, PresetOptions};
    use layouts::CompileOptions;

    use super::*;

    /// The power-cut scenario's kills: after opening LUKS and mounting, not after what writes.
    #[cfg(feature = "test-hooks")]
    #[test]
    fn only_steps_that_change_the_kernels_state_are_killed_after() {
        let disks = vec![DiskFacts::offline("/dev/vda", 20 << 30), DiskFacts::offline("/dev/vdb", 20 << 30)];
        let mut options = PresetOptions::new(PresetKind::Mirror, disks);
        options.encryption = Encryption::Luks;
        options.flake = Some("github:me/machines#host".into());
        let steps = build(&options).expect("preset").compile(&CompileOptions::default()).expect("compiles");
        let kernel: Vec<&str> =
            steps.steps.iter().filter(|s| changes_only_the_kernel(&s.operation)).map(|s| s.id.as_str()).collect();
        assert!(kernel.contains(&"mount:/") && kernel.contains(&"luks-open:disk0/luks"), "{kernel:?}");
        assert!(!kernel.iter().any(|id| id.starts_with("luks-format") || id.starts_with("zpool-create")), "{kernel:?}");
    }

    /// Runs the batching over a plan's steps as if each batch finished at once; returns the batches.
    fn batches_of(steps: &[Step], mode: Mode) -> Vec<Vec<&Step>> {
        let mut remaining: Vec<&Step> = steps.iter().filter(|s| runs_in(mode, s)).collect();
        let ids: HashSet<&str> = remaining.iter().map(|s| s.id.as_str()).collect();
        let mut finished: HashSet<&str> = HashSet::new();
        let mut batches = Vec::new();
        while !remaining.is_empty() {
            let ready = ready_steps(&remaining, &ids, &|id| finished.contains(id));
            assert!(!ready.is_empty(), "steps never became ready");
            let batch = next_batch(&remaining, &ready, mode);
            batches.push(batch.iter().map(|&i| remaining[i]).collect::<Vec<_>>());
            finished.extend(batch.iter().map(|&i| remaining[i].id.as_str()));
            let mut index = 0;
            remaining.retain(|_| {
                index += 1;
                !batch.contains(&(index - 1))
            });
        }
        batches
    }

    #[test]
    fn when_mounting_the_checks_of_a_volume_groups_filesystems_run_together_then_its_mounts_and_swap() {
        let plan = Plan::from_toml(include_str!("../../vm-tests/bench/lvm-single.toml")).expect("the bench's plan");
        let steps = plan.compile(&CompileOptions::default()).expect("it compiles").steps;
        let together = |mode: Mode| -> Vec<Vec<String>> {
            batches_of(&steps, mode).iter().map(|b| b.iter().map(|s| s.id.clone()).collect()).collect()
        };
        let checks = ["mkfs:main/home", "mkfs:main/root", "mkswap:main/swap"];
        let mount = together(Mode::Mount);
        assert!(
            mount.iter().any(|batch| checks.iter().all(|id| batch.iter().any(|b| b == id))),
            "the volumes' checks in one batch: {mount:?}"
        );
        // Activating the group runs alone; the swap goes on beside /, the mounts below / together after it.
        let batch_of = |id: &str| mount.iter().position(|batch| batch.iter().any(|b| b == id)).expect(id);
        assert_eq!(mount[batch_of("vg-activate:main")], ["vg-activate:main"], "{mount:?}");
        assert_eq!(batch_of("swapon:main/swap"), batch_of("mount:/"), "{mount:?}");
        assert_eq!(batch_of("mount:/boot"), batch_of("mount:/home"), "{mount:?}");
        assert!(batch_of("mount:/") < batch_of("mount:/home"), "{mount:?}");
        // Apply makes them: one at a time, as steps on no single disk.
        let apply = together(Mode::Apply);
        for batch in &apply {
            assert!(checks.iter().filter(|id| batch.iter().any(|b| b == *id)).count() <= 1, "{apply:?}");
        }
    }

    #[test]
    fn luks_key_derivations_on_a_mirror_run_one_at_a_time_while_the_disks_are_otherwise_worked_on_together() {
        let disks = ["disk0", "disk1"].map(|d| DiskFacts::offline(format!("/dev/disk/by-id/virtio-{d}"), 8 << 30));
        let mut options = PresetOptions::new(PresetKind::Mirror, disks.to_vec());
        options.encryption = Encryption::Luks;
        let plan = build(&options).expect("the LUKS mirror preset builds");
        let steps = plan.compile(&CompileOptions::default()).expect("it compiles").steps;
        let batches = batches_of(&steps, Mode::Apply);
        let derivations = steps.iter().filter(|s| s.operation.derives_key()).count();
        assert_eq!(derivations, 4, "two LUKS formats and two opens: {steps:#?}");
        for batch in &batches {
            let ids: Vec<&str> = batch.iter().map(|s| s.id.as_str()).collect();
            assert!(batch.iter().filter(|s| s.operation.derives_key()).count() <= 1, "together: {ids:?}");
        }
        assert!(batches.iter().any(|batch| batch.len() == 2), "the disks are still worked on together");
    }
}
