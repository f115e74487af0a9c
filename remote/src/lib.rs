//! `nix-dabei remote`: a machine reached by SSH installed in one command, phase by phase: connect,
//! inspect, kexec into the RAM OS, plan, apply, install, reboot.
//!
//! The far side does the work with its own `nix-dabei` (the RAM OS's, or one uploaded from the kexec
//! tarball); this crate drives it through [`Far`] and turns what it reports into [`RemoteEvent`]s.
//! Apply and install run there as detached jobs, so a dropped connection does not stop them: running the
//! same command again reattaches to a job still running, and a job that stopped resumes (apply probes
//! every step). Passphrases go to the far side on SSH's standard input, never on a command line.

#![deny(missing_docs)]

pub mod far;
pub mod inspect;
pub mod local;
pub mod script;
pub mod shown;
pub mod tarball;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use installer::Secret;
use serde::{Deserialize, Serialize};

pub use far::{Far, HostKeys, Ssh};
pub use inspect::{Inspection, Kexec};
pub use shown::{printable, printable_json, printable_line};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// SSH could not connect, or the connection dropped.
    #[error("the SSH connection failed: {0}")]
    Connection(String),
    /// The machine presented a host key other than the pinned ones.
    #[error(
        "the machine's host key changed, so it is not the machine this run started on (or someone is in \
         between); refusing to go on. ssh said: {0}"
    )]
    HostKeyChanged(String),
    /// A script on the far side failed.
    #[error("{0}")]
    Far(String),
    /// Waiting took too long.
    #[error("{0}")]
    Timeout(String),
    /// Something on this machine.
    #[error("{0}")]
    Local(String),
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Refused(String),
}

/// The phases of a remote install, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// One multiplexed SSH connection; the host keys are pinned.
    Connect,
    /// The OS, kernel, memory, firmware, kexec support and disks.
    Inspect,
    /// Upload the kexec tarball, boot the RAM OS, reconnect and check the host key.
    Kexec,
    /// The plan on the far side (uploaded or made from a preset there) and its review.
    Plan,
    /// `nix-dabei apply` on the far side, as a detached job.
    Apply,
    /// `nix-dabei install --flake` on the far side, as a detached job.
    Install,
    /// Reboot into the installed system and wait for its SSH.
    Reboot,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 7] =
        [Phase::Connect, Phase::Inspect, Phase::Kexec, Phase::Plan, Phase::Apply, Phase::Install, Phase::Reboot];

    /// Its name on the command line and in events.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Inspect => "inspect",
            Phase::Kexec => "kexec",
            Phase::Plan => "plan",
            Phase::Apply => "apply",
            Phase::Install => "install",
            Phase::Reboot => "reboot",
        }
    }

    /// Reads a comma-separated list of phase names.
    pub fn parse_list(text: &str) -> Result<Vec<Phase>, RemoteError> {
        text.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                Phase::ALL.into_iter().find(|p| p.name() == name).ok_or_else(|| {
                    let names: Vec<&str> = Phase::ALL.iter().map(|p| p.name()).collect();
                    RemoteError::Refused(format!("unknown phase {name:?}; the phases are {}", names.join(", ")))
                })
            })
            .collect()
    }
}

/// Where the plan comes from.
#[derive(Debug, Clone)]
pub enum PlanSource {
    /// A plan file's text (its disks are matched to the far side's by identity there).
    File(String),
    /// Arguments for `nix-dabei plan` on the far side (a preset with disk selection rules).
    Preset(Vec<String>),
}

/// What to do.
#[derive(Debug)]
pub struct Request {
    /// The phases to run (connect and inspect always run: the others need them).
    pub phases: Vec<Phase>,
    /// The plan.
    pub plan: Option<PlanSource>,
    /// The flake to install.
    pub flake: Option<String>,
    /// The kexec tarball, for a far side that does not run the RAM OS yet.
    pub kexec_tarball: Option<PathBuf>,
    /// nix-dabei to upload when the far side has none and no tarball is given.
    pub binary: Option<PathBuf>,
    /// Connect, inspect and review only: nothing is written on the far side's disks.
    pub dry_run: bool,
    /// Disks confirmed for wiping beforehand (plan name, device path, kernel path or serial).
    pub yes_wipe: Vec<String>,
    /// Every disk of the plan confirmed.
    pub yes_wipe_all: bool,
    /// The passphrase for encrypted plans.
    pub passphrase: Option<Secret>,
    /// Install without checking the flake against the plan first.
    pub skip_flake_check: bool,
    /// Evaluate, check and build the flake's system here and copy it into the target's store (`nix
    /// copy`), rather than have the far side build it.
    pub build_on_local: bool,
    /// With `build_on_local`: a system built here already (a store path), copied and installed as it
    /// is instead of building the flake.
    pub system: Option<String>,
    /// With `build_on_local`: the far side fetches from its binary caches the store paths they have, and
    /// only the rest is uploaded (`nix copy --substitute-on-destination`).
    pub substitute_on_destination: bool,
    /// A command to run on the installed system once it answers after the reboot.
    pub post_install_check: Option<String>,
    /// How long a kexec or a reboot may take.
    pub boot_limit: Duration,
    /// Where to write, on this machine, the plan the far side made from a preset (to keep it, and to
    /// mount the installed system with it later).
    pub plan_out: Option<PathBuf>,
    /// Where to write, on this machine, the NixOS module of the plan the far side made (into the
    /// flake): written before the flake is checked, so that a flake here (`build_on_local`) that
    /// imports it fits the plan in the same run, as the module of a plan file would.
    pub module_out: Option<PathBuf>,
}

/// A step of the review, as the far side sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewStep {
    /// Step id.
    pub id: String,
    /// What it does.
    pub description: String,
    /// `done`, `todo`, `destroys`, `change` or `conflict`.
    pub state: String,
    /// Why it is done or in conflict.
    #[serde(default)]
    pub detail: String,
}

/// A disk the apply will wipe, as the far side names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewWipe {
    /// The disk.
    #[serde(flatten)]
    pub target: installer::WipeTarget,
    /// The word that confirms it.
    pub confirm: String,
}

impl ReviewWipe {
    /// Whether a `--yes-wipe` value names this disk (its plan name, plan path, kernel path or serial).
    pub fn is_named_by(&self, given: &str) -> bool {
        let target = &self.target;
        [Some(target.disk.as_str()), Some(target.device.as_str()), Some(target.kernel_path.as_str())]
            .into_iter()
            .chain([target.serial.as_deref()])
            .any(|name| name == Some(given))
    }
}

/// `nix-dabei apply --review-only --json` on the far side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// The id of the plan reviewed (`Plan::id`): checked against the id of the plan sent, computed here.
    #[serde(default)]
    pub plan_id: String,
    /// The plan's host name.
    pub host: String,
    /// Every step and its state.
    pub steps: Vec<ReviewStep>,
    /// The disks that will be wiped.
    pub wipes: Vec<ReviewWipe>,
    /// Whether the apply will need the passphrase.
    pub needs_passphrase: bool,
    /// Whether everything is done already.
    pub nothing_to_do: bool,
}

/// What a remote run reports.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum RemoteEvent {
    /// A phase starts.
    PhaseStarted {
        /// Which.
        phase: Phase,
    },
    /// A phase ended well.
    PhaseFinished {
        /// Which.
        phase: Phase,
        /// How long it took.
        seconds: f64,
    },
    /// A phase failed; the run stops.
    PhaseFailed {
        /// Which.
        phase: Phase,
        /// How long it ran.
        seconds: f64,
        /// Why.
        error: String,
    },
    /// A phase was not run.
    PhaseSkipped {
        /// Which.
        phase: Phase,
        /// Why.
        reason: String,
    },
    /// Something worth telling.
    Note {
        /// During which phase.
        phase: Phase,
        /// What.
        text: String,
    },
    /// What the far side is.
    Inspected {
        /// The machine.
        machine: Inspection,
        /// `nix-dabei disks --json` there.
        disks: serde_json::Value,
    },
    /// The plan made on the far side from a preset.
    PlanMade {
        /// Its TOML.
        text: String,
    },
    /// The review of the plan on the far side.
    Reviewed {
        /// The review.
        review: Review,
    },
    /// An event of `apply` or `install` on the far side: the JSON line as it printed it.
    #[serde(skip)]
    Far(String),
    /// The run ends.
    RemoteFinished {
        /// Whether every phase asked for succeeded.
        ok: bool,
        /// Wall time.
        seconds: f64,
        /// Each phase that ran and how long it took.
        phases: Vec<(Phase, f64)>,
        /// Bytes sent to the far side.
        uploaded_bytes: u64,
    },
}

impl RemoteEvent {
    /// One line of JSON; the far side's own events as they came.
    pub fn to_json_line(&self) -> String {
        match self {
            RemoteEvent::Far(line) => line.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        }
    }
}

/// Where the far side's nix-dabei mounts the target (its default).
const TARGET: &str = "/mnt";

/// What the frontend is asked: the disks to wipe, given the review (typed confirmation at a terminal).
pub type Confirm<'a> = &'a dyn Fn(&[&ReviewWipe]) -> Result<Vec<String>, RemoteError>;

/// A run of the phases against one far side.
struct Run<'a> {
    far: &'a dyn Far,
    request: &'a Request,
    emit: &'a dyn Fn(RemoteEvent),
    /// Where this run keeps its files there.
    dir: &'static str,
    /// nix-dabei there.
    binary: String,
    machine: Option<Inspection>,
    times: Vec<(Phase, f64)>,
    /// The flake was checked against the plan here (`--build-on local`).
    checked_here: bool,
}

/// Runs the request's phases. The events tell the whole story; the error says why the run stopped.
pub fn run(
    far: &dyn Far,
    request: &Request,
    confirm: Confirm<'_>,
    emit: &dyn Fn(RemoteEvent),
) -> Result<Vec<(Phase, f64)>, RemoteError> {
    let start = Instant::now();
    let dir = if request.dry_run { script::DRY_RUN_DIR } else { script::DIR };
    let mut run =
        Run { far, request, emit, dir, binary: String::new(), machine: None, times: Vec::new(), checked_here: false };
    let result = run.all(confirm);
    if request.dry_run {
        // The one file a dry run uploads goes again, whatever happened.
        let _ = far.run(&script::remove(&[script::DRY_RUN_DIR]), None);
    }
    emit(RemoteEvent::RemoteFinished {
        ok: result.is_ok(),
        seconds: start.elapsed().as_secs_f64(),
        phases: run.times.clone(),
        uploaded_bytes: far.uploaded_bytes(),
    });
    result.map(|()| run.times)
}

/// How a job on the far side ended.
#[derive(Debug, PartialEq, Eq)]
enum JobState {
    None,
    Running,
    Ended(i32),
}

impl Run<'_> {
    fn selected(&self, phase: Phase) -> bool {
        self.request.phases.contains(&phase)
    }

    fn skip(&self, phase: Phase, reason: &str) {
        (self.emit)(RemoteEvent::PhaseSkipped { phase, reason: reason.to_string() });
    }

    fn note(&self, phase: Phase, text: String) {
        (self.emit)(RemoteEvent::Note { phase, text });
    }

    fn phase<T>(
        &mut self,
        phase: Phase,
        body: impl FnOnce(&mut Self) -> Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        (self.emit)(RemoteEvent::PhaseStarted { phase });
        let start = Instant::now();
        let result = body(self);
        let seconds = start.elapsed().as_secs_f64();
        self.times.push((phase, seconds));
        match &result {
            Ok(_) => (self.emit)(RemoteEvent::PhaseFinished { phase, seconds }),
            Err(error) => (self.emit)(RemoteEvent::PhaseFailed { phase, seconds, error: error.to_string() }),
        }
        result
    }

    fn all(&mut self, confirm: Confirm<'_>) -> Result<(), RemoteError> {
        let boot_id = self.phase(Phase::Connect, Self::connect)?;
        self.phase(Phase::Inspect, Self::inspect)?;
        let ram_os = self.machine.as_ref().is_some_and(|m| m.ram_os);
        if !self.selected(Phase::Kexec) {
            self.skip(Phase::Kexec, "not asked for");
        } else if ram_os {
            self.skip(Phase::Kexec, "the machine runs the RAM OS already");
        } else if self.request.dry_run {
            self.skip(Phase::Kexec, "dry run");
        } else {
            self.phase(Phase::Kexec, |run| run.kexec(&boot_id))?;
        }
        let wants_disks = [Phase::Plan, Phase::Apply, Phase::Install].iter().any(|p| self.selected(*p));
        if wants_disks && !self.machine.as_ref().is_some_and(|m| m.ram_os) && !self.request.dry_run {
            return Err(RemoteError::Refused(
                "the machine does not run the RAM OS: planning and installing happen there (add the kexec phase \
                 and --kexec-tarball)"
                    .into(),
            ));
        }
        let jobs = if self.request.dry_run { Vec::new() } else { self.job_states()? };
        let running = |name: &str| jobs.iter().any(|(n, s)| n == name && *s == JobState::Running);
        let mut review = None;
        if !self.selected(Phase::Plan) {
            self.skip(Phase::Plan, "not asked for");
        } else if running("apply") || running("install") {
            self.skip(Phase::Plan, "a job of an earlier run is still going on there: reattaching to it");
        } else {
            review = Some(self.phase(Phase::Plan, Self::plan)?);
        }
        if self.request.dry_run {
            for phase in [Phase::Apply, Phase::Install, Phase::Reboot] {
                self.skip(phase, "dry run");
            }
            return Ok(());
        }
        if !self.selected(Phase::Apply) {
            self.skip(Phase::Apply, "not asked for");
        } else if running("apply") {
            self.phase(Phase::Apply, |run| run.follow("apply"))?;
        } else if running("install") {
            self.skip(Phase::Apply, "the install job of an earlier run is going on");
        } else {
            let review = review.as_ref().ok_or_else(|| {
                RemoteError::Refused("apply needs the plan phase (its review and confirmation)".into())
            })?;
            let confirmed = self.confirmed(review, confirm)?;
            self.phase(Phase::Apply, |run| run.apply(review, &confirmed))?;
        }
        let installed = if !self.selected(Phase::Install) {
            self.skip(Phase::Install, "not asked for");
            false
        } else if running("install") {
            self.phase(Phase::Install, |run| run.follow("install"))?;
            true
        } else if let Some(flake) = self.request.flake.clone() {
            self.phase(Phase::Install, |run| run.install(&flake))?;
            true
        } else {
            self.skip(Phase::Install, "no --flake given");
            false
        };
        if !self.selected(Phase::Reboot) {
            self.skip(Phase::Reboot, "not asked for");
        } else if !installed {
            self.skip(Phase::Reboot, "nothing was installed in this run");
        } else {
            self.phase(Phase::Reboot, Self::reboot)?;
        }
        Ok(())
    }

    /// Connects, pins the host keys and returns the boot id.
    fn connect(&mut self) -> Result<String, RemoteError> {
        let output = self.far.run(&script::connect(), None)?;
        let keys: Vec<String> =
            output.lines().filter_map(|l| l.strip_prefix("host-key ")).map(str::to_string).collect();
        let boot_id = output.lines().find_map(|l| l.strip_prefix("boot-id ")).unwrap_or_default().trim().to_string();
        if keys.is_empty() {
            // Without them a changed key after kexec could not be told from the carried one.
            return Err(RemoteError::Refused(
                "the machine shows no host keys in /etc/ssh/ssh_host_*_key.pub, so the host key after kexec \
                 could not be checked"
                    .into(),
            ));
        }
        self.far.pin_host_keys(&keys)?;
        self.note(Phase::Connect, format!("connected; {} host key(s) pinned for the rest of the run", keys.len()));
        Ok(boot_id)
    }

    fn inspect(&mut self) -> Result<(), RemoteError> {
        let machine =
            Inspection::parse(&self.far.run(&script::inspect(), None)?).map_err(|e| RemoteError::Far(e.to_string()))?;
        self.binary = match (&machine.nix_dabei, machine.ram_os) {
            (Some(path), true) => path.clone(),
            _ => self.upload_binary()?,
        };
        let disks =
            self.far.run(&script::nix_dabei("disks", &self.binary, &["disks".into(), "--json".into()]), None)?;
        let disks = serde_json::from_str(&disks)
            .map_err(|e| RemoteError::Far(format!("`nix-dabei disks --json` on the far side printed no JSON: {e}")))?;
        (self.emit)(RemoteEvent::Inspected { machine: machine.clone(), disks });
        self.machine = Some(machine);
        Ok(())
    }

    /// Uploads nix-dabei (from the kexec tarball, else the one given) and returns its path there.
    fn upload_binary(&self) -> Result<String, RemoteError> {
        let bytes = match (&self.request.kexec_tarball, &self.request.binary) {
            (Some(tarball), _) => tarball::member(tarball, "kexec/nix-dabei")?,
            (None, Some(binary)) => {
                std::fs::read(binary).map_err(|e| RemoteError::Local(format!("{}: {e}", binary.display())))?
            }
            (None, None) => {
                return Err(RemoteError::Refused(
                    "the machine has no nix-dabei to read its disks with: give --kexec-tarball (its static \
                     nix-dabei is uploaded) or --binary"
                        .into(),
                ))
            }
        };
        let version = self.far.run(&script::receive_binary(self.dir), Some(&bytes))?;
        self.note(Phase::Inspect, format!("uploaded {} ({} bytes)", version.trim(), bytes.len()));
        Ok(format!("{}/bin/nix-dabei", self.dir))
    }

    fn kexec(&mut self, boot_id: &str) -> Result<(), RemoteError> {
        let machine = self.machine.as_ref().ok_or_else(|| RemoteError::Refused("not inspected".into()))?;
        match machine.kexec {
            Kexec::Available => {}
            Kexec::Disabled => {
                return Err(RemoteError::Refused(
                    "kexec is disabled on the machine (kernel.kexec_load_disabled = 1): reboot it into a rescue \
                     system that allows kexec"
                        .into(),
                ))
            }
            Kexec::Missing => return Err(RemoteError::Refused("the machine's kernel has no kexec".into())),
        }
        let tarball = self.request.kexec_tarball.as_ref().ok_or_else(|| {
            RemoteError::Refused(
                "the machine does not run the RAM OS: give --kexec-tarball FILE (`nix build .#kexec-tarball` \
                 builds it)"
                    .into(),
            )
        })?;
        self.far.run_with_file(&script::receive_tarball(self.dir), tarball)?;
        self.note(Phase::Kexec, format!("uploaded {}", tarball.display()));
        for line in self.far.run(&script::kexec(self.dir), None)?.lines() {
            self.note(Phase::Kexec, line.to_string());
        }
        self.far.await_new_boot(boot_id, HostKeys::Pinned, self.request.boot_limit)?;
        self.note(Phase::Kexec, "the machine is back, with the same host key".into());
        self.inspect()?;
        if !self.machine.as_ref().is_some_and(|m| m.ram_os) {
            return Err(RemoteError::Far("after kexec the machine does not run the RAM OS".into()));
        }
        Ok(())
    }

    fn job_states(&self) -> Result<Vec<(String, JobState)>, RemoteError> {
        let output = self.far.run(&script::job_states(&["apply", "install"]), None)?;
        Ok(output
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let name = words.next()?.to_string();
                let state = match (words.next()?, words.next()) {
                    ("running", _) => JobState::Running,
                    ("ended", Some(code)) => JobState::Ended(code.parse().unwrap_or(-1)),
                    _ => JobState::None,
                };
                Some((name, state))
            })
            .collect())
    }

    fn plan_path(&self) -> String {
        format!("{}/plan.toml", self.dir)
    }

    fn plan(&mut self) -> Result<Review, RemoteError> {
        let path = self.plan_path();
        let text = match &self.request.plan {
            Some(PlanSource::File(text)) => {
                self.far.run(&script::receive_file(&path), Some(text.as_bytes()))?;
                text.clone()
            }
            Some(PlanSource::Preset(args)) => {
                // After a kexec the RAM OS's /run is new: the run's folder is made again for the plan.
                self.far.run(&script::make_dir(self.dir), None)?;
                let mut words = vec!["plan".to_string()];
                words.extend(args.iter().cloned());
                words.extend(["-o".to_string(), path.clone()]);
                self.far.run(&script::nix_dabei("plan", &self.binary, &words), None)?;
                let text = self.read_plan()?;
                (self.emit)(RemoteEvent::PlanMade { text: text.clone() });
                self.save_plan(&text)?;
                text
            }
            None => return Err(RemoteError::Refused("give --plan FILE or --preset".into())),
        };
        // The plan's identity, computed here from the text sent (or read back): the review shows it, and a
        // review of anything else is refused.
        let plan_id = layouts::Plan::from_toml(&text)
            .map_err(|e| RemoteError::Refused(format!("the plan does not read here: {e}; nothing was written")))?
            .id();
        let mut words = vec!["apply".to_string(), path, "--review-only".into(), "--json".into()];
        if let Some(flake) = &self.request.flake {
            words.extend(["--flake".to_string(), flake.clone()]);
        }
        // Built here, the flake is checked here (before anything is written): the far side cannot see it.
        if self.request.skip_flake_check || self.request.flake.is_none() || self.request.build_on_local {
            words.push("--skip-flake-check".into());
        }
        let output = self.far.run(&script::nix_dabei("review", &self.binary, &words), None)?;
        let review: Review = output
            .lines()
            .find_map(|line| serde_json::from_str(line).ok())
            .ok_or_else(|| RemoteError::Far(format!("the review on the far side printed no review: {output}")))?;
        if review.plan_id != plan_id {
            return Err(RemoteError::Refused(format!(
                "the far side reviewed the plan {}, not the one sent ({plan_id}); nothing was written",
                shown::printable_line(&format!("{:?}", review.plan_id))
            )));
        }
        (self.emit)(RemoteEvent::Reviewed { review: review.clone() });
        let conflicts: Vec<String> = review
            .steps
            .iter()
            .filter(|s| s.state == "conflict")
            .map(|s| format!("{}: {}", s.description, s.detail))
            .collect();
        if !conflicts.is_empty() {
            return Err(RemoteError::Refused(format!(
                "the machine conflicts with the plan; nothing was written:\n  {}",
                conflicts.join("\n  ")
            )));
        }
        if let (Some(flake), true) = (&self.request.flake, self.request.build_on_local) {
            self.check_here(Phase::Plan, flake)?;
        }
        Ok(review)
    }

    /// Writes the plan made there, and its NixOS module, where the request asks (`plan_out`,
    /// `module_out`).
    fn save_plan(&mut self, text: &str) -> Result<(), RemoteError> {
        let write = |path: &PathBuf, contents: &str| {
            std::fs::write(path, contents).map_err(|e| RemoteError::Local(format!("{}: {e}", path.display())))
        };
        if let Some(path) = &self.request.plan_out {
            write(path, text)?;
            self.note(Phase::Plan, format!("the plan made there is written to {}", path.display()));
        }
        if let Some(path) = &self.request.module_out {
            let plan = layouts::Plan::from_toml(text)
                .map_err(|e| RemoteError::Far(format!("the plan made there does not read here: {e}")))?;
            write(path, &layouts::nixos::module(&plan))?;
            self.note(Phase::Plan, format!("its NixOS module is written to {}", path.display()));
        }
        Ok(())
    }

    /// The plan as the far side holds it.
    fn read_plan(&self) -> Result<String, RemoteError> {
        self.far.run(&format!("# nix-dabei-remote: read-plan\ncat {}\n", script::quote(&self.plan_path())), None)
    }

    fn far_plan(&self) -> Result<layouts::Plan, RemoteError> {
        let text = self.read_plan()?;
        layouts::Plan::from_toml(&text)
            .map_err(|e| RemoteError::Far(format!("the plan on the far side cannot be read: {e}")))
    }

    /// The check before install, with this machine's Nix: the flake's configuration against the plan and
    /// the far side's firmware.
    fn check_here(&mut self, phase: Phase, flake: &str) -> Result<(), RemoteError> {
        if self.request.skip_flake_check || self.checked_here {
            return Ok(());
        }
        let plan = self.far_plan()?;
        let uefi = self.machine.as_ref().map(|m| m.firmware == "uefi");
        self.note(phase, format!("checking {flake} against the plan here (nix eval)"));
        installer::flake::verify(&installer::RealSystem, &plan, flake, uefi)
            .map_err(|e| RemoteError::Refused(format!("{e}\nNothing was written on the far side.")))?;
        self.checked_here = true;
        Ok(())
    }

    /// `--build-on local`: checks, builds here, copies into the far side's target store; returns the
    /// system's store path.
    fn build_and_copy(&mut self, flake: &str) -> Result<String, RemoteError> {
        let root = TARGET;
        let mounted = self.far.run(&script::mounted(root), None)?;
        if mounted.trim() != "mounted" {
            return Err(RemoteError::Refused(format!(
                "{root} is not mounted on the far side, so the system has no store to go into: run the apply \
                 phase first (it mounts the plan's filesystems)"
            )));
        }
        self.check_here(Phase::Install, flake)?;
        let emit = self.emit;
        let system = match &self.request.system {
            Some(system) => system.clone(),
            None => {
                let hostname = self.far_plan()?.hostname;
                local::build_system(flake, &hostname, &mut |line| {
                    emit(RemoteEvent::Note { phase: Phase::Install, text: line.to_string() })
                })?
            }
        };
        let bytes = local::closure_bytes(&system)?;
        self.note(Phase::Install, format!("built {system}; copying {bytes} bytes into the far side's {root}"));
        let substitute = self.request.substitute_on_destination;
        self.far.copy_closure(&system, bytes, root, substitute, &mut |line| {
            emit(RemoteEvent::Note { phase: Phase::Install, text: line.to_string() })
        })?;
        Ok(system)
    }

    /// The disks confirmed for wiping: by the request, the rest asked of the frontend.
    fn confirmed(&self, review: &Review, confirm: Confirm<'_>) -> Result<Vec<String>, RemoteError> {
        if self.request.yes_wipe_all {
            return Ok(review.wipes.iter().map(|w| w.target.disk.clone()).collect());
        }
        let mut confirmed: Vec<String> = review
            .wipes
            .iter()
            .filter(|w| self.request.yes_wipe.iter().any(|given| w.is_named_by(given)))
            .map(|w| w.target.disk.clone())
            .collect();
        let unconfirmed: Vec<&ReviewWipe> =
            review.wipes.iter().filter(|w| !confirmed.contains(&w.target.disk)).collect();
        if !unconfirmed.is_empty() {
            confirmed.extend(confirm(&unconfirmed)?);
        }
        Ok(confirmed)
    }

    fn send_passphrase(&self) -> Result<Option<String>, RemoteError> {
        let Some(passphrase) = &self.request.passphrase else { return Ok(None) };
        let path = format!("{}/passphrase", self.dir);
        self.far.run(&script::receive_file(&path), Some(passphrase.expose()))?;
        Ok(Some(path))
    }

    fn apply(&mut self, review: &Review, confirmed: &[String]) -> Result<(), RemoteError> {
        if review.needs_passphrase && self.request.passphrase.is_none() {
            return Err(RemoteError::Refused(
                "the plan encrypts with a passphrase: give --passphrase-file FILE or --passphrase-stdin".into(),
            ));
        }
        // The install is the next phase's (and job's), even when the plan names a flake.
        let mut words = vec!["apply".to_string(), self.plan_path(), "--json".into(), "--disks-only".into()];
        for disk in confirmed {
            words.extend(["--yes-wipe".to_string(), disk.clone()]);
        }
        if let Some(path) = self.send_passphrase()? {
            words.extend(["--passphrase-file".to_string(), path]);
        }
        self.start_and_follow("apply", &words)
    }

    fn install(&mut self, flake: &str) -> Result<(), RemoteError> {
        let mut words = vec!["install".to_string(), self.plan_path(), "--json".into(), "--flake".into(), flake.into()];
        if self.request.build_on_local {
            let system = self.build_and_copy(flake)?;
            words.extend(["--system".to_string(), system, "--skip-flake-check".into()]);
        } else if self.request.skip_flake_check {
            words.push("--skip-flake-check".into());
        }
        if let Some(path) = self.send_passphrase()? {
            words.extend(["--passphrase-file".to_string(), path]);
        }
        let result = self.start_and_follow("install", &words);
        // The passphrase is not needed any more once the install ended, well or not.
        self.far.run(&script::remove(&[&format!("{}/passphrase", self.dir)]), None)?;
        result
    }

    fn start_and_follow(&mut self, name: &str, words: &[String]) -> Result<(), RemoteError> {
        let mut command = vec![self.binary.clone()];
        command.extend(words.iter().cloned());
        self.far.run(&script::start_job(name, &script::command_line(&command)), None)?;
        self.follow(name)
    }

    /// Shows a job's events until it ends; a dropped connection is retried for a minute, from the last
    /// event seen.
    fn follow(&mut self, name: &str) -> Result<(), RemoteError> {
        let mut seen = 0usize;
        let mut status = None;
        let mut stderr = Vec::new();
        let mut lost = false;
        let mut failures = 0;
        while status.is_none() && !lost {
            let script = script::follow_job(name, seen);
            let mut on_line = |line: &str| {
                if let Some(code) = line.strip_prefix("nix-dabei-remote job-ended ") {
                    status = Some(code.trim().parse::<i32>().unwrap_or(-1));
                } else if let Some(text) = line.strip_prefix("nix-dabei-remote stderr ") {
                    stderr.push(text.to_string());
                } else if line == "nix-dabei-remote job-lost" {
                    lost = true;
                } else {
                    seen += 1;
                    if serde_json::from_str::<serde_json::Value>(line).is_ok() {
                        (self.emit)(RemoteEvent::Far(line.to_string()));
                    } else {
                        (self.emit)(RemoteEvent::Note { phase: phase_of(name), text: line.to_string() });
                    }
                }
            };
            match self.far.stream(&script, &mut on_line) {
                Ok(()) => {}
                Err(RemoteError::Connection(message)) if failures < 12 => {
                    failures += 1;
                    self.note(phase_of(name), format!("connection lost ({message}); the job goes on; reconnecting"));
                    std::thread::sleep(Duration::from_secs(5));
                }
                Err(error) => return Err(error),
            }
        }
        match status {
            Some(0) => Ok(()),
            Some(code) => Err(RemoteError::Far(format!(
                "{name} on the far side failed (exit status {code}); everything is left as it is there, and \
                 running the same command again resumes:\n{}",
                stderr.join("\n")
            ))),
            None => Err(RemoteError::Far(format!("the {name} job on the far side ended without a status"))),
        }
    }

    fn reboot(&mut self) -> Result<(), RemoteError> {
        let boot_id = self.far.run(&script::boot_id(), None)?.trim().to_string();
        self.far.run(&script::reboot(), None)?;
        self.far.await_new_boot(&boot_id, HostKeys::New, self.request.boot_limit)?;
        self.note(Phase::Reboot, "the installed system answers SSH".into());
        if let Some(check) = &self.request.post_install_check {
            let output = self.far.run(&format!("# nix-dabei-remote: post-install-check\n{check}\n"), None)?;
            for line in output.lines() {
                self.note(Phase::Reboot, line.to_string());
            }
        }
        Ok(())
    }
}

fn phase_of(job: &str) -> Phase {
    if job == "install" {
        Phase::Install
    } else {
        Phase::Apply
    }
}
