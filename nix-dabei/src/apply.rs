//! `nix-dabei apply`, `install`, `mount` and `unmount`: a plan carried out on this machine.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use installer::{Event, Mode, Options, Outlook, Preview, RealSystem, Secret, Secrets};
use layouts::size::human;
use layouts::{CompileOptions, Plan};

use crate::plan::read_plan_file;

/// Arguments of `nix-dabei apply` and `nix-dabei install`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The plan file.
    pub file: PathBuf,
    /// Confirm wiping this disk (its plan name, path or serial); repeat for every disk that will be wiped.
    #[arg(long = "yes-wipe", value_name = "DISK")]
    pub yes_wipe: Vec<String>,
    /// Confirm wiping every disk of the plan.
    #[arg(long)]
    pub yes_wipe_all: bool,
    /// Install NixOS from this flake after the disks are ready (overrides the plan's flake).
    #[arg(long, value_name = "REF")]
    pub flake: Option<String>,
    /// Only partition, format and mount, even when the plan names a flake (`nix-dabei install` installs
    /// later; `nix-dabei remote` runs the two as separate phases).
    #[arg(long, conflicts_with = "flake")]
    pub disks_only: bool,
    /// Install this system, built from the flake elsewhere and copied into the target's store (`nix copy
    /// --to 'ssh://HOST?remote-store=local?root=/mnt'`), instead of building the flake here. Needs --flake,
    /// which names it; the flake is not evaluated here, so the check before install is the builder's.
    #[arg(long, value_name = "STORE-PATH", requires = "flake", requires = "skip_flake_check")]
    pub system: Option<String>,
    /// After an install, leave everything mounted and the pools imported (by default they are unmounted,
    /// exported and closed, so that the installed system imports its pools cleanly at first boot).
    #[arg(long)]
    pub keep_mounted: bool,
    /// Install without first checking the flake's configuration against the plan (mountpoints, devices,
    /// LUKS, host id, ZFS support, drivers, boot loader and firmware).
    #[arg(long)]
    pub skip_flake_check: bool,
    /// Show the steps as they stand on this machine (and check the flake, when one is given), then stop:
    /// nothing is written and no passphrase is asked for. With --json, one "review" object.
    #[arg(long)]
    pub review_only: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// How a run reports, and where the system is mounted.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print one JSON event per line instead of progress for people.
    #[arg(long)]
    pub json: bool,
    /// The directory the new system is mounted under.
    #[arg(long, default_value = "/mnt")]
    pub target: String,
}

/// Where passphrases come from. They never go on the command line.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Read the passphrase from this file.
    #[arg(long, value_name = "FILE", conflicts_with = "passphrase_stdin")]
    pub passphrase_file: Option<PathBuf>,
    /// Read the passphrase from the first line of standard input.
    #[arg(long)]
    pub passphrase_stdin: bool,
}

/// Arguments of `nix-dabei mount` and `nix-dabei unmount`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// The plan file.
    pub file: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn read_secrets(plan: &Plan, keys: &KeyArgs, confirm_twice: bool) -> Result<Secrets> {
    if !plan.needs_passphrase() {
        return Ok(Secrets::default());
    }
    Ok(Secrets { passphrase: Some(read_passphrase(keys, confirm_twice)?) })
}

/// The passphrase from where the arguments say: a file, standard input, or a prompt at a terminal.
pub(crate) fn read_passphrase(keys: &KeyArgs, confirm_twice: bool) -> Result<Secret> {
    let passphrase = if let Some(path) = &keys.passphrase_file {
        Secret::from_file(path).with_context(|| format!("cannot read the passphrase file {}", path.display()))?
    } else if keys.passphrase_stdin {
        Secret::from_stdin().context("cannot read the passphrase from standard input")?
    } else if std::io::stdin().is_terminal() {
        Secret::prompt("Passphrase for the encrypted disks: ", confirm_twice).context("cannot read the passphrase")?
    } else {
        bail!("the plan encrypts with a passphrase: give --passphrase-file FILE or --passphrase-stdin");
    };
    if passphrase.is_empty() {
        bail!("the passphrase is empty");
    }
    Ok(passphrase)
}

fn options(mode: Mode) -> Options {
    Options { mode, weak_kdf: Options::weak_kdf_from_test_hook(), ..Options::default() }
}

/// How events reach the user: JSON lines, plain lines (a log, a pipe), or a progress display on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Display {
    Json,
    Lines,
    Progress,
}

impl Display {
    fn choose(json: bool) -> Display {
        if json {
            Display::Json
        } else if std::io::stdout().is_terminal() {
            Display::Progress
        } else {
            Display::Lines
        }
    }
}

/// The line a step's end gets, the same in both human displays.
fn step_line(number: usize, total: usize, event: &Event) -> Option<String> {
    Some(match event {
        Event::StepSkipped { description, reason, .. } => {
            format!("[{number:>2}/{total}] {description}: already done ({reason})")
        }
        Event::StepFinished { description, seconds, .. } => {
            format!("[{number:>2}/{total}] {description}: done in {seconds:.1} s")
        }
        Event::StepFailed { description, error, .. } => {
            format!("[{number:>2}/{total}] {description}: FAILED\n      {error}")
        }
        _ => return None,
    })
}

/// Prints events for people, or as JSON lines.
pub(crate) fn printer(json: bool, total: usize) -> impl Fn(Event) + Sync + Send + 'static {
    let display = Display::choose(json);
    let bar = (display == Display::Progress).then(|| progress_bar(indicatif::ProgressDrawTarget::stdout(), total));
    printer_to(display, total, bar)
}

/// The progress display: a bar with the step count and the time, and the running steps (several run at
/// once on different disks); finished steps and programs' output scroll above it.
fn progress_bar(target: indicatif::ProgressDrawTarget, total: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(total as u64), target);
    let style = indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:24} {pos}/{len} {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn printer_to(
    display: Display,
    total: usize,
    bar: Option<indicatif::ProgressBar>,
) -> impl Fn(Event) + Sync + Send + 'static {
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let running: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    move |event: Event| {
        if display == Display::Json {
            println!("{}", event.to_json_line());
            return;
        }
        let say = |line: String| match &bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        };
        let mut running = running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &event {
            Event::StepStarted { id, description } => running.push((id.clone(), description.clone())),
            Event::StepOutput { line, .. } => say(format!("      | {line}")),
            Event::StepSkipped { id, .. } | Event::StepFinished { id, .. } | Event::StepFailed { id, .. } => {
                running.retain(|(running_id, _)| running_id != id);
                let number = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if let Some(line) = step_line(number, total, &event) {
                    say(line);
                }
                if let Some(bar) = &bar {
                    bar.set_position(number as u64);
                }
            }
            Event::Finished { ok, applied, skipped, seconds } => {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                let verdict = if *ok { "finished" } else { "stopped" };
                println!("\n{verdict} after {seconds:.1} s: {applied} step(s) applied, {skipped} already done");
            }
            // Events of a newer engine: the JSON output carries them; people need not see them.
            _ => {}
        }
        if let Some(bar) = &bar {
            let names: Vec<&str> = running.iter().map(|(_, description)| description.as_str()).collect();
            bar.set_message(names.join("; "));
        }
    }
}

fn print_review(preview: &Preview) {
    println!("Steps (on this machine now):");
    for (index, (step, outlook)) in preview.steps.iter().enumerate() {
        let state = match outlook {
            Outlook::Done(_) => "done    ",
            Outlook::Todo { destroys: true } => "DESTROYS",
            Outlook::Todo { destroys: false } => "to do   ",
            Outlook::Change(_) => "change  ",
            Outlook::Conflict(_) => "CONFLICT",
        };
        println!("{:>3}. {state} {}", index + 1, step.description);
        if let Outlook::Change(what) = outlook {
            println!("               {what}");
        }
    }
    if !preview.wipes.is_empty() {
        println!("\nThese disks will be wiped, and everything on them lost:");
        for wipe in &preview.wipes {
            println!(
                "  {} {} model {} serial {} size {}",
                wipe.disk,
                wipe.device,
                wipe.model.as_deref().unwrap_or("-"),
                wipe.serial.as_deref().unwrap_or("-"),
                human(wipe.size)
            );
        }
    }
}

/// The review as one JSON object, for a frontend on another machine (`nix-dabei remote`, which reads it
/// back as a `remote::Review`): each step with its state, the disks that will be wiped with the word that
/// confirms each, and whether a passphrase will be needed.
fn review_json(plan: &Plan, preview: &Preview) -> serde_json::Value {
    let steps = preview
        .steps
        .iter()
        .map(|(step, outlook)| {
            let (state, detail) = match outlook {
                Outlook::Done(reason) => ("done", reason.clone()),
                Outlook::Todo { destroys: true } => ("destroys", String::new()),
                Outlook::Todo { destroys: false } => ("todo", String::new()),
                Outlook::Change(what) => ("change", what.clone()),
                Outlook::Conflict(reason) => ("conflict", reason.clone()),
            };
            remote::ReviewStep {
                id: step.id.clone(),
                description: step.description.clone(),
                state: state.to_string(),
                detail,
            }
        })
        .collect();
    let wipes = preview
        .wipes
        .iter()
        .map(|wipe| remote::ReviewWipe { target: wipe.clone(), confirm: wipe.confirmation_word().to_string() })
        .collect();
    let review = remote::Review {
        plan_id: plan.id(),
        host: plan.hostname.clone(),
        steps,
        wipes,
        needs_passphrase: plan.needs_passphrase() && !preview.nothing_to_do(),
        nothing_to_do: preview.nothing_to_do(),
    };
    let mut value = serde_json::to_value(review).unwrap_or_default();
    value["event"] = "review".into();
    value
}

/// Confirmed disk names: from the flags, or typed at the terminal (each disk's serial).
fn confirm(preview: &Preview, args: &ApplyArgs) -> Result<Vec<String>> {
    if args.yes_wipe_all {
        return Ok(preview.wipes.iter().map(|w| w.disk.clone()).collect());
    }
    let mut confirmed = args.yes_wipe.clone();
    let unconfirmed: Vec<_> =
        preview.wipes.iter().filter(|w| !confirmed.iter().any(|c| w.is_named_by(c, &RealSystem))).collect();
    if unconfirmed.is_empty() {
        return Ok(confirmed);
    }
    if args.output.json || !std::io::stdin().is_terminal() {
        let names: Vec<String> = unconfirmed.iter().map(|w| format!("--yes-wipe {}", w.disk)).collect();
        bail!(
            "refusing to wipe without confirmation; nothing was written. Confirm with {} (or --yes-wipe-all)",
            names.join(" ")
        );
    }
    for wipe in unconfirmed {
        let word = wipe.confirmation_word();
        eprint!("Type {word:?} to wipe disk {} ({}, {}): ", wipe.disk, wipe.device, human(wipe.size));
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if line.trim() != word {
            bail!("not confirmed; nothing was written");
        }
        confirmed.push(wipe.disk.clone());
    }
    Ok(confirmed)
}

/// Runs `nix-dabei apply` (and `install`).
pub fn apply(args: ApplyArgs) -> Result<()> {
    let mut plan = read_plan_file(&args.file)?;
    if let Some(flake) = &args.flake {
        plan.flake = Some(flake.clone());
    }
    if args.disks_only {
        plan.flake = None;
    }
    let steps = plan.compile(&CompileOptions { target: args.output.target.clone(), system: args.system.clone() })?;
    let options = options(Mode::Apply);
    let preview = installer::preview(&RealSystem, &plan, &steps, &options)?;
    if !args.output.json {
        print_review(&preview);
        println!();
    }
    if let (Some(flake), false) = (installer::flake::pending_install(&plan, &preview), args.skip_flake_check) {
        if !args.output.json {
            println!("Checking {flake} against the plan (nix eval) before anything is written ...");
        }
        installer::flake::verify_here(&plan, flake)?;
        if !args.output.json {
            println!("The configuration fits the plan.\n");
        }
    }
    if args.review_only {
        if args.output.json {
            println!("{}", review_json(&plan, &preview));
        }
        return Ok(());
    }
    let confirmed = confirm(&preview, &args)?;
    let secrets = if preview.nothing_to_do() { Secrets::default() } else { read_secrets(&plan, &args.keys, true)? };
    let emit = printer(args.output.json, preview.steps.len() + steps.teardown.len());
    // The run's closing event waits until the disks are released after an install, so that a reader of
    // the events sees one run that ends once.
    let closing = std::sync::Mutex::new(None);
    let installed = std::sync::atomic::AtomicBool::new(false);
    let hold_closing = |event: Event| match event {
        Event::Finished { .. } => *closing.lock().unwrap_or_else(|p| p.into_inner()) = Some(event),
        Event::StepFinished { ref id, .. } if id == "nixos-install" => {
            installed.store(true, std::sync::atomic::Ordering::Relaxed);
            emit(event)
        }
        other => emit(other),
    };
    let result = installer::execute(&RealSystem, &plan, &preview, &confirmed, &secrets, &options, &hold_closing);
    let release = result.is_ok() && installed.load(std::sync::atomic::Ordering::Relaxed) && !args.keep_mounted;
    let result = match result {
        Ok(report) if release => {
            let inner = |event: Event| {
                if !matches!(event, Event::Started { .. } | Event::Finished { .. }) {
                    emit(event)
                }
            };
            let released = installer::teardown(&RealSystem, &plan, &steps, &options, &inner);
            let (applied, ok) = match &released {
                Ok(teardown) => (report.applied + teardown.applied, true),
                Err(_) => (report.applied, false),
            };
            emit(Event::Finished { ok, applied, skipped: report.skipped, seconds: report.seconds });
            released.map(|_| ())
        }
        Ok(_) => {
            if let Some(event) = closing.lock().unwrap_or_else(|p| p.into_inner()).take() {
                emit(event);
            }
            Ok(())
        }
        Err(error) => {
            if let Some(event) = closing.lock().unwrap_or_else(|p| p.into_inner()).take() {
                emit(event);
            }
            Err(error)
        }
    };
    match result {
        Ok(()) if release => {
            if !args.output.json {
                println!(
                    "Installed. The disks are unmounted, the pools exported and LUKS closed: the machine can \
                     reboot into the new system (`nix-dabei mount {}` mounts it again).",
                    args.file.display()
                );
            }
            Ok(())
        }
        Ok(()) => {
            if !args.output.json {
                println!(
                    "The new system is mounted at {}; `nix-dabei unmount {}` exports and closes it.",
                    args.output.target,
                    args.file.display()
                );
            }
            Ok(())
        }
        Err(error) => {
            if !args.output.json {
                eprintln!("Everything is left as it is for inspection; running apply again resumes.");
            }
            Err(error.into())
        }
    }
}

/// Runs `nix-dabei mount`.
pub fn mount(args: MountArgs) -> Result<()> {
    let plan = read_plan_file(&args.file)?;
    let steps = plan.compile(&CompileOptions { target: args.output.target.clone(), ..Default::default() })?;
    let options = options(Mode::Mount);
    let preview = installer::preview(&RealSystem, &plan, &steps, &options)?;
    let secrets = if preview.nothing_to_do() { Secrets::default() } else { read_secrets(&plan, &args.keys, false)? };
    let emit = printer(args.output.json, preview.steps.len());
    installer::execute(&RealSystem, &plan, &preview, &[], &secrets, &options, &emit)?;
    Ok(())
}

/// Runs `nix-dabei unmount`.
pub fn unmount(args: MountArgs) -> Result<()> {
    let plan = read_plan_file(&args.file)?;
    let steps = plan.compile(&CompileOptions { target: args.output.target.clone(), ..Default::default() })?;
    let emit = printer(args.output.json, steps.teardown.len());
    installer::teardown(&RealSystem, &plan, &steps, &options(Mode::Mount), &emit)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_display_shows_the_count_the_running_step_and_the_finished_ones() {
        let term = indicatif::InMemoryTerm::new(8, 120);
        let bar = progress_bar(indicatif::ProgressDrawTarget::term_like(Box::new(term.clone())), 3);
        let emit = printer_to(Display::Progress, 3, Some(bar.clone()));
        let started =
            |id: &str, description: &str| Event::StepStarted { id: id.into(), description: description.into() };
        emit(started("wipe:disk0", "Wipe disk disk0"));
        emit(Event::StepFinished { id: "wipe:disk0".into(), description: "Wipe disk disk0".into(), seconds: 1.5 });
        emit(started("nixos-install", "Install NixOS"));
        emit(Event::StepOutput { id: "nixos-install".into(), line: "copying path /nix/store/abc".into() });
        bar.tick();
        let screen = term.contents();
        assert!(screen.contains("[ 1/3] Wipe disk disk0: done in 1.5 s"), "{screen}");
        assert!(screen.contains("      | copying path /nix/store/abc"), "the program's output scrolls: {screen}");
        let last = screen.lines().last().unwrap_or_default();
        assert!(last.contains("1/3") && last.contains("Install NixOS"), "the bar names the running step: {screen}");
        emit(Event::Finished { ok: true, applied: 2, skipped: 0, seconds: 3.0 });
        assert!(!term.contents().contains("Install NixOS\n"), "the bar is cleared at the end: {}", term.contents());
    }

    #[test]
    fn without_a_terminal_each_step_is_a_plain_line() {
        assert_eq!(
            step_line(
                2,
                5,
                &Event::StepSkipped { id: "a".into(), description: "Mount /".into(), reason: "mounted".into() }
            )
            .as_deref(),
            Some("[ 2/5] Mount /: already done (mounted)")
        );
        assert_eq!(Display::choose(true), Display::Json);
    }
}
