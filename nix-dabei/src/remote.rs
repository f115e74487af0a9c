//! `nix-dabei remote`: the whole install of a machine reached by SSH, from this one (the phases are in
//! the `remote` crate; this is arguments, confirmation and printing).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use installer::Event;
use layouts::size::human;
use remote::{Phase, PlanSource, RemoteError, RemoteEvent, Request, Review, ReviewWipe};

use crate::apply::{read_passphrase, KeyArgs};

/// Where the system is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BuildOn {
    /// On the far side, by its nixos-install.
    Remote,
    /// Here, then copied.
    Local,
}

/// Arguments of `nix-dabei remote`.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// The machine: user@host, or a host name from ~/.ssh/config.
    pub destination: String,
    #[command(flatten)]
    pub install: InstallArgs,
}

/// What is installed and how: everything of `nix-dabei remote` but the machine (`nix-dabei hetzner`
/// takes the same).
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// A plan file; its disks are matched to the machine's by identity there.
    #[arg(long, value_name = "FILE", conflicts_with = "preset")]
    pub plan: Option<PathBuf>,
    /// Make the plan on the machine from a preset (single, mirror, ...; see `nix-dabei plan --help`).
    #[arg(long, value_name = "PRESET")]
    pub preset: Option<String>,
    /// With --preset: encrypt (native ZFS encryption unless KIND is given).
    #[arg(long, value_name = "KIND", num_args = 0..=1, default_missing_value = "native", requires = "preset")]
    pub encrypt: Option<String>,
    /// With --preset: choose the disks there by rules, such as "ssd,largest:2" (see `nix-dabei plan --help`).
    #[arg(long, value_name = "RULES", requires = "preset")]
    pub disk_select: Option<String>,
    /// With --preset: a disk by path there; repeat for several.
    #[arg(long = "disk", value_name = "PATH", requires = "preset")]
    pub disk: Vec<String>,
    /// With --preset: the swap size.
    #[arg(long, value_name = "SIZE", requires = "preset")]
    pub swap: Option<String>,
    /// With --preset: the host name.
    #[arg(long, requires = "preset")]
    pub hostname: Option<String>,
    /// With --preset: write the plan made on the machine to FILE here (to keep it, and to mount the
    /// installed system with it later).
    #[arg(long, value_name = "FILE", requires = "preset")]
    pub plan_out: Option<PathBuf>,
    /// With --preset: write the NixOS module of the plan made on the machine to FILE here, such as
    /// into the flake. Written before the flake is checked: a flake here (`--build-on local`) that
    /// imports it is checked and built with it in the same run; one fetched there needs it committed
    /// first (a `--dry-run` writes it too).
    #[arg(long, value_name = "FILE", requires = "preset")]
    pub module_out: Option<PathBuf>,
    /// The flake to install, such as github:me/machines#web1 (as the machine that builds it sees it).
    #[arg(long, value_name = "REF")]
    pub flake: Option<String>,
    /// Where the system is evaluated, checked and built: `remote` (the far side's nixos-install builds
    /// the flake) or `local` (this machine's Nix builds it; `nix copy` puts it into the target's store
    /// there and nixos-install --system installs it).
    #[arg(long, value_enum, value_name = "WHERE", default_value_t = BuildOn::Remote, requires = "flake")]
    pub build_on: BuildOn,
    /// A system already built here from the flake (`nix build .#nixosConfigurations.HOST.config.system.
    /// build.toplevel`): copied into the target's store and installed as it is, as with `--build-on local`
    /// but without building. The flake only names it, so the check before install is the builder's.
    #[arg(long, value_name = "STORE-PATH", requires = "flake", requires = "skip_flake_check")]
    pub system: Option<String>,
    /// The kexec tarball (`nix build .#kexec-tarball`), for a machine that does not run the RAM OS yet.
    #[arg(long, value_name = "FILE")]
    pub kexec_tarball: Option<PathBuf>,
    /// nix-dabei to upload for reading the disks when there is no tarball (it must run on the machine).
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,
    /// Run only these phases, comma-separated: connect, inspect, kexec, plan, apply, install, reboot
    /// (connect and inspect always run).
    #[arg(long, value_name = "LIST")]
    pub phases: Option<String>,
    /// Connect, inspect and review the plan there; write nothing to any disk and install nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Confirm wiping this disk (plan name, path or serial); repeat for every disk that will be wiped.
    #[arg(long = "yes-wipe", value_name = "DISK")]
    pub yes_wipe: Vec<String>,
    /// Confirm wiping every disk of the plan.
    #[arg(long)]
    pub yes_wipe_all: bool,
    /// Install without first checking the flake's configuration against the plan.
    #[arg(long)]
    pub skip_flake_check: bool,
    /// With `--build-on local`: copy every store path from here, rather than let the far side fetch from
    /// its binary caches what they have (for a far side that cannot reach them).
    #[arg(long)]
    pub no_substitute_on_destination: bool,
    /// A command to run on the installed system once it answers SSH after the reboot.
    #[arg(long, value_name = "COMMAND")]
    pub post_install_check: Option<String>,
    /// Seconds a kexec or a reboot may take before the machine answers again.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub boot_timeout: u64,
    /// ssh: the identity file.
    #[arg(short = 'i', value_name = "FILE")]
    pub identity: Vec<PathBuf>,
    /// ssh: the port.
    #[arg(short = 'p', value_name = "PORT")]
    pub port: Option<u16>,
    /// ssh: jump hosts.
    #[arg(short = 'J', value_name = "DESTINATION")]
    pub jump: Option<String>,
    /// ssh: an option, as for `ssh -o`; repeat for several.
    #[arg(short = 'o', value_name = "OPTION")]
    pub ssh_option: Vec<String>,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Print one JSON event per line: the phases' own and apply's.
    #[arg(long)]
    pub json: bool,
}

impl InstallArgs {
    fn ssh_options(&self) -> Vec<String> {
        let mut options = Vec::new();
        for identity in &self.identity {
            options.extend(["-i".to_string(), identity.display().to_string()]);
        }
        if let Some(port) = self.port {
            options.extend(["-p".to_string(), port.to_string()]);
        }
        if let Some(jump) = &self.jump {
            options.extend(["-J".to_string(), jump.clone()]);
        }
        for option in &self.ssh_option {
            options.extend(["-o".to_string(), option.clone()]);
        }
        options
    }

    /// Refuses what the remote phases would refuse, before anything is made or paid for (`nix-dabei
    /// hetzner`): a bad plan file, or phases that need a layout without one.
    pub fn check(&self) -> Result<()> {
        let phases = match &self.phases {
            Some(list) => Phase::parse_list(list)?,
            None => Phase::ALL.to_vec(),
        };
        let wants_disks = phases.iter().any(|p| matches!(p, Phase::Plan | Phase::Apply | Phase::Install));
        if wants_disks && self.plan_source()?.is_none() {
            bail!("give the layout: --plan FILE, or --preset with --disk-select or --disk");
        }
        Ok(())
    }

    fn plan_source(&self) -> Result<Option<(PlanSource, bool)>> {
        if let Some(path) = &self.plan {
            let plan = crate::plan::read_plan_file(path)?;
            plan.validate()?;
            // As TOML, whatever it was written in: the far side reads plan.toml.
            return Ok(Some((PlanSource::File(plan.to_toml()), plan.needs_passphrase())));
        }
        let Some(preset) = &self.preset else { return Ok(None) };
        let mut words = vec!["--preset".to_string(), preset.clone()];
        if let Some(kind) = &self.encrypt {
            words.push(format!("--encrypt={kind}"));
        }
        if let Some(rules) = &self.disk_select {
            words.extend(["--disk-select".to_string(), rules.clone()]);
        }
        for disk in &self.disk {
            words.extend(["--disk".to_string(), disk.clone()]);
        }
        if let Some(swap) = &self.swap {
            words.extend(["--swap".to_string(), swap.clone()]);
        }
        if let Some(hostname) = &self.hostname {
            words.extend(["--hostname".to_string(), hostname.clone()]);
        }
        if let Some(flake) = &self.flake {
            words.extend(["--flake".to_string(), flake.clone()]);
        }
        Ok(Some((PlanSource::Preset(words), self.encrypt.is_some())))
    }
}

/// Runs `nix-dabei remote`.
pub fn run(args: RemoteArgs) -> Result<()> {
    run_on(&args.destination, &args.install, Vec::new())
}

/// Runs the remote phases on `destination`, with `extra_ssh_options` before the user's own.
pub fn run_on(destination: &str, args: &InstallArgs, extra_ssh_options: Vec<String>) -> Result<()> {
    let phases = match &args.phases {
        Some(list) => Phase::parse_list(list)?,
        None => Phase::ALL.to_vec(),
    };
    let plan = args.plan_source()?;
    let wants_disks = phases.iter().any(|p| matches!(p, Phase::Plan | Phase::Apply | Phase::Install));
    if wants_disks && plan.is_none() {
        bail!("give the layout: --plan FILE, or --preset with --disk-select or --disk");
    }
    let needs_passphrase = plan.as_ref().is_some_and(|(_, needs)| *needs) && !args.dry_run;
    let passphrase = if needs_passphrase { Some(read_passphrase(&args.keys, true)?) } else { None };
    let request = Request {
        phases,
        plan: plan.map(|(source, _)| source),
        flake: args.flake.clone(),
        kexec_tarball: args.kexec_tarball.clone(),
        binary: args.binary.clone(),
        dry_run: args.dry_run,
        yes_wipe: args.yes_wipe.clone(),
        yes_wipe_all: args.yes_wipe_all,
        passphrase,
        skip_flake_check: args.skip_flake_check,
        build_on_local: args.build_on == BuildOn::Local || args.system.is_some(),
        system: args.system.clone(),
        substitute_on_destination: !args.no_substitute_on_destination,
        post_install_check: args.post_install_check.clone(),
        boot_limit: Duration::from_secs(args.boot_timeout),
        plan_out: args.plan_out.clone(),
        module_out: args.module_out.clone(),
    };
    let mut ssh_options = extra_ssh_options;
    ssh_options.extend(args.ssh_options());
    let far = remote::Ssh::new(destination, ssh_options)?;
    let printer = Printer::new(args.json);
    let confirm = |wipes: &[&ReviewWipe]| confirm(wipes, args.json);
    remote::run(&far, &request, &confirm, &|event| printer.print(event))?;
    Ok(())
}

/// Typed confirmation at this terminal, disk by disk, with the word the far side gave for each.
fn confirm(wipes: &[&ReviewWipe], json: bool) -> Result<Vec<String>, RemoteError> {
    if json || !std::io::stdin().is_terminal() {
        let names: Vec<String> = wipes.iter().map(|w| format!("--yes-wipe {}", w.target.disk)).collect();
        return Err(RemoteError::Refused(format!(
            "refusing to wipe without confirmation; nothing was written. Confirm with {} (or --yes-wipe-all)",
            names.join(" ")
        )));
    }
    let mut confirmed = Vec::new();
    for wipe in wipes {
        eprint!(
            "Type {:?} to wipe disk {} ({}, {}) on the far side: ",
            remote::printable_line(&wipe.confirm),
            remote::printable_line(&wipe.target.disk),
            remote::printable_line(&wipe.target.kernel_path),
            human(wipe.target.size)
        );
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| RemoteError::Local(e.to_string()))?;
        if line.trim() != wipe.confirm {
            return Err(RemoteError::Refused("not confirmed; nothing was written".into()));
        }
        confirmed.push(wipe.target.disk.clone());
    }
    Ok(confirmed)
}

/// How a job's events are shown: apply's own display (a progress bar on a terminal, else a line per step).
type JobDisplay = Box<dyn Fn(Event) + Sync + Send>;

/// Where a phase's spinner draws: the terminal, or a test's in-memory one.
type DrawTarget = Box<dyn Fn() -> indicatif::ProgressDrawTarget + Send + Sync>;

/// Prints the run for people (a line per phase, with a spinner and the time while it runs on a terminal;
/// each job as `apply` shows itself) or as JSON lines.
struct Printer {
    json: bool,
    job: std::sync::Mutex<Option<JobDisplay>>,
    spinner_target: Option<DrawTarget>,
    spinner: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl Printer {
    fn new(json: bool) -> Printer {
        let terminal = !json && std::io::stdout().is_terminal();
        let target: Option<DrawTarget> =
            terminal.then(|| Box::new(indicatif::ProgressDrawTarget::stdout) as DrawTarget);
        Printer::with_target(json, target)
    }

    fn with_target(json: bool, spinner_target: Option<DrawTarget>) -> Printer {
        Printer { json, job: std::sync::Mutex::new(None), spinner_target, spinner: std::sync::Mutex::new(None) }
    }

    /// A line above the spinner, or plainly. Lines carry what the far side said: shown, not obeyed.
    fn say(&self, line: String) {
        let line = remote::printable(&line);
        match self.spinner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
            Some(spinner) => spinner.println(line),
            None => println!("{line}"),
        }
    }

    fn stop_spinner(&self) {
        if let Some(spinner) = self.spinner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            spinner.finish_and_clear();
        }
    }

    fn start_spinner(&self, phase: Phase) {
        let Some(target) = &self.spinner_target else { return };
        let spinner = indicatif::ProgressBar::with_draw_target(None, target());
        let style = indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        spinner.set_style(style);
        spinner.set_message(phase.name());
        spinner.enable_steady_tick(std::time::Duration::from_millis(200));
        *self.spinner.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(spinner);
    }

    fn print(&self, event: RemoteEvent) {
        if self.json {
            println!("{}", event.to_json_line());
            return;
        }
        match event {
            RemoteEvent::PhaseStarted { phase } => {
                self.start_spinner(phase);
                self.say(format!("== {}", phase.name()));
            }
            RemoteEvent::PhaseFinished { phase, seconds } => {
                self.say(format!("   {} done in {seconds:.1} s", phase.name()));
                self.stop_spinner();
            }
            RemoteEvent::PhaseFailed { phase, seconds, .. } => {
                self.say(format!("   {} FAILED after {seconds:.1} s", phase.name()));
                self.stop_spinner();
            }
            RemoteEvent::PhaseSkipped { phase, reason } => self.say(format!("== {}: skipped ({reason})", phase.name())),
            RemoteEvent::Note { text, .. } => self.say(format!("   {text}")),
            RemoteEvent::Inspected { machine, disks } => {
                self.say(format!("   {}", machine.summary()));
                for disk in disks["disks"].as_array().into_iter().flatten() {
                    let in_use = disk["in_use"].as_array().map_or(0, Vec::len);
                    self.say(format!(
                        "   disk {} {} model {} serial {}{}",
                        disk["path"].as_str().unwrap_or("?"),
                        human(disk["size"].as_u64().unwrap_or(0)),
                        disk["model"].as_str().unwrap_or("-"),
                        disk["serial"].as_str().unwrap_or("-"),
                        if in_use > 0 { " (in use)" } else { "" }
                    ));
                }
            }
            RemoteEvent::PlanMade { text } => {
                self.say("   the plan made there:".into());
                for line in text.lines() {
                    self.say(format!("   | {line}"));
                }
            }
            RemoteEvent::Reviewed { review } => {
                // The review stays on the screen above the questions that follow it.
                self.stop_spinner();
                print_review(&review);
            }
            RemoteEvent::Far(line) => self.far_event(&line),
            RemoteEvent::RemoteFinished { ok, seconds, phases, uploaded_bytes } => {
                self.stop_spinner();
                let times: Vec<String> = phases.iter().map(|(p, s)| format!("{} {s:.1} s", p.name())).collect();
                let verdict = if ok { "finished" } else { "stopped" };
                println!(
                    "\nremote {verdict} after {seconds:.1} s ({}); {uploaded_bytes} bytes uploaded",
                    times.join(", ")
                );
            }
        }
    }

    fn far_event(&self, line: &str) {
        let Some(event) = far_event(line) else { return };
        let mut job = self.job.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Event::Started { steps, .. } = &event {
            // The job's own progress bar takes over from the phase's spinner.
            self.stop_spinner();
            *job = Some(Box::new(crate::apply::printer(false, *steps)));
        }
        let finished = matches!(event, Event::Finished { .. });
        if let Some(display) = job.as_ref() {
            display(event);
        }
        if finished {
            *job = None;
        }
    }
}

/// An event the far side printed, with every string in it made printable.
fn far_event(line: &str) -> Option<Event> {
    let mut value: serde_json::Value = serde_json::from_str(line).ok()?;
    remote::printable_json(&mut value);
    serde_json::from_value(value).ok()
}

fn print_review(review: &Review) {
    for line in review_lines(review) {
        println!("{}", remote::printable(&line));
    }
}

/// The review as shown: its plan's id (checked here against the plan sent) first, then every step and
/// the disks to be wiped.
fn review_lines(review: &Review) -> Vec<String> {
    let mut lines = vec![format!("   Review of plan {} for host {}", review.plan_id, review.host)];
    lines.push("   Steps (on the machine now):".into());
    for (index, step) in review.steps.iter().enumerate() {
        let state = match step.state.as_str() {
            "done" => "done    ",
            "destroys" => "DESTROYS",
            "conflict" => "CONFLICT",
            "change" => "change  ",
            _ => "to do   ",
        };
        lines.push(format!("   {:>3}. {state} {}", index + 1, remote::printable_line(&step.description)));
        if step.state == "change" {
            lines.push(format!("                 {}", remote::printable_line(&step.detail)));
        }
    }
    if !review.wipes.is_empty() {
        lines.push("   These disks will be wiped, and everything on them lost:".into());
        for wipe in &review.wipes {
            lines.push(format!(
                "     {} {} ({}) model {} serial {} size {}",
                wipe.target.disk,
                wipe.target.device,
                wipe.target.kernel_path,
                wipe.target.model.as_deref().unwrap_or("-"),
                wipe.target.serial.as_deref().unwrap_or("-"),
                human(wipe.target.size)
            ));
        }
    }
    lines.iter().map(|line| remote::printable(line)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_plan_goes_to_the_far_side_as_the_same_plan_in_toml() {
        let toml = "hostname = \"web1\"\n[disks.main]\ndevice = \"/dev/disk/by-id/nvme-A\"\nsize = 21474836480\n\
                    [disks.main.partitions.root]\nsize = \"rest\"\n\
                    content.filesystem = { format = \"ext4\", mountpoint = \"/\" }\n";
        let plan = layouts::Plan::from_toml(toml).expect("plan");
        let file = std::env::temp_dir().join(format!("nix-dabei-remote-plan-{}.json", std::process::id()));
        std::fs::write(&file, plan.to_json()).expect("json");
        #[derive(clap::Parser)]
        struct Command {
            #[command(flatten)]
            remote: RemoteArgs,
        }
        let parsed =
            <Command as clap::Parser>::try_parse_from(["remote", "root@host", "--plan", &file.to_string_lossy()]);
        let source = parsed.expect("arguments").remote.install.plan_source().expect("read");
        let _ = std::fs::remove_file(&file);
        match source {
            Some((PlanSource::File(text), needs_passphrase)) => {
                assert_eq!(layouts::Plan::from_toml(&text).expect("TOML"), plan);
                assert!(!needs_passphrase);
            }
            other => panic!("{other:?}"),
        }
    }

    /// What the far side says is shown as text: escape sequences in its OS name, disk models, plan,
    /// review and job events neither clear nor retitle the screen nor reach the clipboard.
    #[test]
    fn the_far_sides_escape_sequences_are_shown_not_obeyed() {
        let clear = "\u{1b}[2J\u{1b}[H";
        let clipboard = "\u{1b}]52;c;cm0gLXJmIH4=\u{7}";
        let term = indicatif::InMemoryTerm::new(20, 200);
        let handle = term.clone();
        let target: DrawTarget = Box::new(move || indicatif::ProgressDrawTarget::term_like(Box::new(handle.clone())));
        let printer = Printer::with_target(false, Some(target));
        printer.print(RemoteEvent::PhaseStarted { phase: Phase::Inspect });
        printer.print(RemoteEvent::Note { phase: Phase::Inspect, text: format!("os Debian{clear}") });
        printer.print(RemoteEvent::PlanMade { text: format!("hostname = \"web1{clipboard}\"") });
        std::thread::sleep(std::time::Duration::from_millis(300));
        let screen = term.contents();
        assert!(screen.contains("os Debian\\u{1b}[2J\\u{1b}[H"), "{screen}");
        assert!(screen.contains("web1\\u{1b}]52;c;cm0gLXJmIH4=\\u{7}"), "{screen}");
        printer.print(RemoteEvent::PhaseFinished { phase: Phase::Inspect, seconds: 1.0 });

        let review = Review {
            plan_id: "0123456789abcdef".into(),
            host: "web1".into(),
            steps: vec![remote::ReviewStep {
                id: "wipe:disk0".into(),
                description: format!("Wipe disk0{clear}\n   All done, nothing to wipe"),
                state: "destroys".into(),
                detail: String::new(),
            }],
            wipes: vec![],
            needs_passphrase: false,
            nothing_to_do: false,
        };
        let lines = review_lines(&review);
        assert_eq!(lines[0], "   Review of plan 0123456789abcdef for host web1");
        assert!(lines.iter().all(|l| !l.chars().any(char::is_control)), "{lines:?}");
        assert_eq!(lines.len(), 3, "a description cannot add lines of its own: {lines:?}");
        let event = far_event(&format!(
            r#"{{"event":"step-finished","id":"mkfs:a","description":"Format{}","seconds":0.1}}"#,
            clipboard.replace('\u{1b}', "\\u001b").replace('\u{7}', "\\u0007")
        ))
        .expect("an event");
        let Event::StepFinished { description, .. } = event else { panic!("{event:?}") };
        assert!(!description.chars().any(char::is_control), "{description:?}");
    }

    #[test]
    fn a_running_phase_shows_its_name_and_time_and_its_lines_scroll_above() {
        let term = indicatif::InMemoryTerm::new(10, 100);
        let handle = term.clone();
        let target: DrawTarget = Box::new(move || indicatif::ProgressDrawTarget::term_like(Box::new(handle.clone())));
        let printer = Printer::with_target(false, Some(target));
        printer.print(RemoteEvent::PhaseStarted { phase: Phase::Kexec });
        printer.print(RemoteEvent::Note { phase: Phase::Kexec, text: "uploaded kexec.tar.gz".into() });
        std::thread::sleep(std::time::Duration::from_millis(300));
        let screen = term.contents();
        assert!(screen.contains("== kexec") && screen.contains("   uploaded kexec.tar.gz"), "{screen}");
        let last = screen.lines().last().unwrap_or_default();
        assert!(last.contains("[00:00:00] kexec"), "the spinner names the phase: {screen}");
        printer.print(RemoteEvent::PhaseFinished { phase: Phase::Kexec, seconds: 61.5 });
        let screen = term.contents();
        assert!(screen.contains("kexec done in 61.5 s"), "{screen}");
        assert!(!screen.lines().last().unwrap_or_default().contains("[00:00"), "the spinner is gone: {screen}");
    }
}
