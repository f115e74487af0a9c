//! Runs the installer on a terminal: draws the model, turns keys into messages, and carries out the
//! commands `update` returns, with the install itself on a worker thread whose events come back as
//! messages.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use installer::{Event, Mode, Options, Outlook, RealSystem, Secret, Secrets, SimSystem, System};
use layouts::presets::{self, DiskFacts, PresetOptions};
use layouts::{CompileOptions, Identity, Plan};
use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};

use crate::app::{
    self, AlongsideRoom, Command, DiskRow, Model, Msg, Outcome, Review, ReviewStep, ReviewWipe, ASHIFT_CHOICES,
    COMPRESSION_CHOICES, SWAP_CHOICES,
};

/// How the installer runs.
#[derive(Debug, Clone)]
pub struct TuiOptions {
    /// Simulate the run; nothing is written.
    pub dry_run: bool,
    /// Where the plan is saved.
    pub save_path: PathBuf,
    /// The directory the new system is mounted under.
    pub target: String,
    /// Draw with ASCII only; the default on the Linux console (TERM=linux).
    pub ascii: bool,
    /// Install without checking the flake's configuration against the plan first.
    pub skip_flake_check: bool,
}

impl Default for TuiOptions {
    fn default() -> Self {
        TuiOptions {
            dry_run: false,
            save_path: installer::journal::Journal::default_dir().join("plan.toml"),
            target: "/mnt".into(),
            ascii: std::env::var("TERM").is_ok_and(|t| t == "linux") || std::env::var_os("NIX_DABEI_ASCII").is_some(),
            skip_flake_check: false,
        }
    }
}

/// The machine's disks as the disks screen lists them.
pub fn disk_rows() -> Result<Vec<DiskRow>, String> {
    let disks = partitioner::discover().map_err(|e| e.to_string())?;
    Ok(disks
        .into_iter()
        .map(|disk| DiskRow {
            alongside: alongside_room(&disk),
            path: disk.preferred_path().to_string(),
            model: disk.model.clone().unwrap_or_else(|| "-".into()),
            serial: disk.serial.clone().unwrap_or_else(|| "-".into()),
            size: disk.size,
            in_use: disk.in_use.iter().map(ToString::to_string).collect(),
            facts: DiskFacts {
                device: disk.preferred_path().to_string(),
                size: Some(disk.size),
                logical_sector_size: disk.logical_sector_size,
                physical_sector_size: Some(disk.physical_sector_size),
                identity: Identity { serial: disk.serial.clone(), wwn: disk.wwn.clone(), model: disk.model.clone() },
            },
        })
        .collect())
}

/// What installing beside a disk's partitions would keep: its GPT read back (an MBR disk, a disk whose table cannot be
/// read back, or without free space, offers nothing), with each ESP's free space.
fn alongside_room(disk: &partitioner::DiskInfo) -> Option<AlongsideRoom> {
    if disk.partitions.is_empty() || !disk.in_use.is_empty() {
        return None;
    }
    let read = partitioner::adopt::read_back(disk).ok()?;
    // The presets' partitions are GPT ones: an MBR disk offers nothing.
    if read.disk.table != layouts::gpt::TableFormat::Gpt {
        return None;
    }
    let extents = layouts::alongside::free_extents(&read.disk, disk.size).ok()?;
    let largest_free = extents.iter().map(|e| e.size).max().filter(|size| *size >= 1 << 30)?;
    let mut esp_free = std::collections::BTreeMap::new();
    let mut stays = Vec::new();
    for (name, partition) in &read.disk.partitions {
        let kernel = partition.number.and_then(|n| disk.partitions.iter().find(|p| p.number == n));
        let holds = kernel.and_then(|k| k.signatures.first()).map(|s| s.kind.clone()).unwrap_or_else(|| "-".into());
        if partition.kind.as_deref() == Some("esp") {
            if let Some(space) = kernel.and_then(|k| partitioner::fat::fat_space(&k.path).ok()) {
                esp_free.insert(name.clone(), space.free_bytes());
            }
        }
        stays.push(format!(
            "{name}  {}  {}  {holds}  {}",
            partition.kind.as_deref().unwrap_or("-"),
            partition.size.bytes().map(layouts::size::human).unwrap_or_default(),
            partition.label.as_deref().unwrap_or("")
        ));
    }
    Some(AlongsideRoom { kept: read.disk, largest_free, esp_free, stays })
}

/// The chosen disk's partitions as read back, when installing alongside.
fn alongside_choice(model: &Model) -> Option<&AlongsideRoom> {
    let index = model.chosen.iter().next().filter(|_| model.alongside)?;
    model.disks.get(*index)?.alongside.as_ref()
}

/// The plan the answers describe.
pub fn plan_from_answers(model: &Model) -> Result<Plan, String> {
    let disks: Vec<DiskFacts> =
        model.chosen.iter().filter_map(|&i| model.disks.get(i)).map(|d| d.facts.clone()).collect();
    let mut modules: Vec<String> = model
        .chosen
        .iter()
        .filter_map(|&i| model.disks.get(i))
        .flat_map(|d| model.disk_modules.get(&d.path).cloned().unwrap_or_default())
        .collect();
    modules.sort();
    modules.dedup();
    let mut options = PresetOptions::new(model.layout.kind, disks);
    options.boot = model.boot;
    options.initrd_kernel_modules = modules;
    options.encryption = model.layout.encryption;
    options.swap = match SWAP_CHOICES[model.layout.swap] {
        0 => None,
        gib => Some(gib << 30),
    };
    options.hostname = model.hostname.text.trim().to_string();
    let flake = model.flake.text.trim();
    options.flake = (!flake.is_empty()).then(|| flake.to_string());
    let mut plan = match alongside_choice(model) {
        Some(room) => {
            let esp_free = |name: &str| room.esp_free.get(name).copied();
            layouts::alongside::alongside(&room.kept, &options, &esp_free).map_err(|e| e.to_string())?.plan
        }
        None => presets::build(&options).map_err(|e| e.to_string())?,
    };
    for pool in plan.pools.values_mut() {
        if let Some(ashift) = Some(ASHIFT_CHOICES[model.layout.ashift]).filter(|a| *a != 0) {
            pool.options.insert("ashift".into(), ashift.to_string());
        }
        pool.root_fs_options.insert("compression".into(), COMPRESSION_CHOICES[model.layout.compression].to_string());
    }
    plan.validate().map_err(|e| e.to_string())?;
    Ok(plan)
}

fn engine_options() -> Options {
    Options { mode: Mode::Apply, weak_kdf: Options::weak_kdf_from_test_hook(), ..Options::default() }
}

/// Builds, saves and previews the plan.
fn prepare(model: &Model, options: &TuiOptions) -> Result<(Plan, Review), String> {
    let plan = plan_from_answers(model)?;
    let steps = plan
        .compile(&CompileOptions { target: options.target.clone(), ..Default::default() })
        .map_err(|e| e.to_string())?;
    if let Some(dir) = options.save_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&options.save_path, plan.to_toml())
        .map_err(|e| format!("cannot save the plan to {}: {e}", options.save_path.display()))?;
    let preview = installer::preview(&RealSystem, &plan, &steps, &engine_options()).map_err(|e| e.to_string())?;
    // The check before install reads the flake and writes nothing; a dry run shows the steps without it.
    let pending = installer::flake::pending_install(&plan, &preview);
    if let (Some(flake), false, false) = (pending, options.dry_run, options.skip_flake_check) {
        installer::flake::verify_here(&plan, flake).map_err(|e| {
            format!(
                "{e}\nThe plan is saved at {}: `nix-dabei nixos-module {}` prints the module.",
                options.save_path.display(),
                options.save_path.display()
            )
        })?;
    }
    let review = Review {
        steps: preview
            .steps
            .iter()
            .map(|(step, outlook)| ReviewStep {
                description: step.description.clone(),
                state: match outlook {
                    Outlook::Done(_) => "done",
                    Outlook::Todo { destroys: true } => "DESTROYS",
                    Outlook::Todo { destroys: false } => "to do",
                    Outlook::Change(_) => "change",
                    Outlook::Conflict(_) => "CONFLICT",
                }
                .to_string(),
                destructive: matches!(outlook, Outlook::Todo { destroys: true }),
            })
            .collect(),
        wipes: preview
            .wipes
            .iter()
            .map(|w| ReviewWipe {
                device: w.device.clone(),
                model: w.model.clone().unwrap_or_else(|| "-".into()),
                serial: w.serial.clone().unwrap_or_else(|| "-".into()),
                size: w.size,
            })
            .collect(),
        saved_to: Some(options.save_path.display().to_string()),
        stays: alongside_choice(model).map(|room| room.stays.clone()).unwrap_or_default(),
    };
    Ok((plan, review))
}

/// Runs the install (or, for a dry run, the same engine on a simulated copy of the disks) on a worker
/// thread.
fn start_install(plan: Plan, passphrase: Option<Secret>, options: &TuiOptions, sender: Sender<Msg>) {
    let target = options.target.clone();
    let dry_run = options.dry_run;
    std::thread::spawn(move || {
        let installed = std::sync::atomic::AtomicBool::new(false);
        let emit = |event: Event| {
            if matches!(&event, Event::StepFinished { id, .. } if id == "nixos-install") {
                installed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let _ = sender.send(Msg::Engine(event));
        };
        let outcome = (|| -> Result<Outcome, String> {
            let steps = plan.compile(&CompileOptions { target, ..Default::default() }).map_err(|e| e.to_string())?;
            let mut engine = engine_options();
            let simulated;
            let system: &dyn System = if dry_run {
                // Blank copies of this machine's disks, in memory: every step is probed and performed by
                // the real executor, and nothing reaches a disk.
                simulated = SimSystem::with_disks(RealSystem.discover().map_err(|e| e.to_string())?);
                engine.journal_dir = std::env::temp_dir().join(format!("nix-dabei-dry-run-{}", std::process::id()));
                &simulated
            } else {
                &RealSystem
            };
            let passphrase = match passphrase {
                None if dry_run => Some(Secret::new(b"dry run".to_vec())),
                other => other,
            };
            let preview = installer::preview(system, &plan, &steps, &engine).map_err(|e| e.to_string())?;
            let confirmed: Vec<String> = preview.wipes.iter().map(|w| w.disk.clone()).collect();
            let secrets = Secrets { passphrase };
            let report = installer::execute(system, &plan, &preview, &confirmed, &secrets, &engine, &emit);
            if dry_run {
                let _ = std::fs::remove_dir_all(&engine.journal_dir);
            }
            let report = report.map_err(|e| e.to_string())?;
            if installed.load(std::sync::atomic::Ordering::Relaxed) && !dry_run {
                // Unmounted, exported and closed: the installed system imports its pools cleanly.
                installer::teardown(system, &plan, &steps, &engine, &emit).map_err(|e| e.to_string())?;
            }
            Ok(Outcome::Success { applied: report.applied, skipped: report.skipped })
        })();
        let _ = sender.send(Msg::Finished(outcome.unwrap_or_else(Outcome::Failure)));
    });
}

/// Runs the installer until the user leaves. The terminal is restored on exit and on panic.
pub fn run(options: TuiOptions) -> Result<(), String> {
    let disks = disk_rows()?;
    let roots = partitioner::discover::SystemRoots::default();
    let disk_modules = partitioner::discover()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|disk| {
            let modules = partitioner::hardware::disk_modules(&roots, &disk.name)
                .map_err(|e| format!("cannot read the drivers of {} from sysfs: {e}", disk.preferred_path()))?;
            Ok((disk.preferred_path().to_string(), modules.into_iter().collect()))
        })
        .collect::<Result<_, String>>()?;
    let mut model = Model::new(disks, options.dry_run, options.ascii);
    model.boot = layouts::BootMode::for_firmware(partitioner::hardware::booted_with_uefi(&roots));
    model.disk_modules = disk_modules;
    let mut terminal = ratatui::try_init().map_err(|e| format!("cannot use the terminal: {e}"))?;
    let (sender, receiver): (Sender<Msg>, Receiver<Msg>) = mpsc::channel();
    let mut plan: Option<Plan> = None;
    let mut last_tick = Instant::now();
    let result = loop {
        if let Err(error) = terminal.draw(|frame| crate::view::view(&model, frame)) {
            break Err(error.to_string());
        }
        let mut messages = Vec::new();
        match event::poll(Duration::from_millis(100)) {
            Ok(true) => match event::read() {
                Ok(TermEvent::Key(key)) if key.kind == KeyEventKind::Press => messages.push(Msg::Key(key)),
                Ok(_) => {} // resizes redraw on the next pass
                Err(error) => break Err(error.to_string()),
            },
            Ok(false) => {}
            Err(error) => break Err(error.to_string()),
        }
        messages.extend(receiver.try_iter());
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            messages.push(Msg::Tick);
        }
        let mut quit = false;
        for message in messages {
            for command in app::update(&mut model, message) {
                match command {
                    Command::Quit => quit = true,
                    Command::Prepare => match prepare(&model, &options) {
                        Ok((prepared, review)) => {
                            plan = Some(prepared);
                            let _ = sender.send(Msg::Prepared(Ok(review)));
                        }
                        Err(error) => {
                            let _ = sender.send(Msg::Prepared(Err(error)));
                        }
                    },
                    Command::Install => {
                        // Taken out of the model as it is used: nothing of it stays on screen or in memory.
                        let secret = (!model.passphrase[0].is_empty()).then(|| model.passphrase[0].take());
                        model.passphrase[1].clear();
                        match &plan {
                            Some(plan) => start_install(plan.clone(), secret, &options, sender.clone()),
                            None => {
                                let _ = sender.send(Msg::Finished(Outcome::Failure("no plan was prepared".into())));
                            }
                        }
                    }
                }
            }
        }
        if quit {
            break Ok(());
        }
    };
    for field in &mut model.passphrase {
        field.clear();
    }
    ratatui::restore();
    result
}
