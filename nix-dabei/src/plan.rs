//! `nix-dabei plan`: a dry run of a preset or a plan file.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use layouts::presets::{self, DiskFacts, Encryption, PresetKind, PresetOptions};
use layouts::{BootMode, CompileOptions, Identity, Plan, PlanFormat, RemoteUnlock};
use partitioner::discover::SystemRoots;

/// Arguments of `nix-dabei plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// A plan file (TOML, or JSON when it ends in .json) to show instead of a preset.
    #[arg(conflicts_with_all = ["preset", "disk", "disk_select", "boot", "remote_unlock", "alongside"])]
    pub file: Option<PathBuf>,
    /// Build the plan from a preset.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// A disk for the preset (repeat for mirrors); a stable path such as /dev/disk/by-id/... is best.
    #[arg(long = "disk", value_name = "PATH")]
    pub disk: Vec<String>,
    /// Choose the preset's disks on this machine by rules instead of --disk, such as "ssd,largest:2"
    /// (ssd, hdd, size>N, size>=N, size<N, size<=N, transport:T, model:M, serial:S, path:P, largest:N,
    /// smallest:N; all apply). Disks in use, read-only or removable are never chosen.
    #[arg(long, value_name = "RULES", conflicts_with_all = ["disk", "offline_size"])]
    pub disk_select: Option<String>,
    /// Install beside what is on this disk (GPT): its partitions are kept as they are (read back as
    /// `nix-dabei probe` does), the preset's go into its largest free extent, and its ESP is reused at /boot
    /// when it has 150 MiB free (else the new system gets an ESP of its own there). Presets single and ext4.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["disk", "disk_select", "offline_size"])]
    pub alongside: Option<String>,
    /// Encrypt: ZFS native encryption, or LUKS2 under the pool (or the ext4 root) with "luks".
    #[arg(long, value_name = "KIND", num_args = 0..=1, default_missing_value = "native")]
    pub encrypt: Option<EncryptKind>,
    /// A swap partition of this size on every disk (such as 8G).
    #[arg(long, value_name = "SIZE")]
    pub swap: Option<String>,
    /// Name of the ZFS pool.
    #[arg(long, default_value = "rpool")]
    pub pool: String,
    /// Host name of the installed system.
    #[arg(long, default_value = "nixos")]
    pub hostname: String,
    /// Flake to install, such as github:me/machines#web1.
    #[arg(long)]
    pub flake: Option<String>,
    /// Plan for disks that are not attached: each --disk is assumed to have this size and 512-byte sectors,
    /// and no identity is recorded.
    #[arg(long, value_name = "SIZE")]
    pub offline_size: Option<String>,
    /// Write the plan to this file (TOML, or JSON when it ends in .json).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The firmware the installed system boots with (the preset's default: the firmware this machine
    /// booted with, "uefi" when it has EFI and "both" otherwise; "uefi" with --offline-size).
    #[arg(long, value_enum)]
    pub boot: Option<Boot>,
    /// Unlock the encrypted disks over SSH at boot, with root's authorized keys of this machine
    /// (~/.ssh/authorized_keys, authorized_keys2, /etc/ssh/authorized_keys.d/root and the sudo user's).
    #[arg(long)]
    pub remote_unlock: bool,
    /// Print the steps as JSON.
    #[arg(long)]
    pub json: bool,
    /// The directory the new system is mounted under.
    #[arg(long, default_value = "/mnt")]
    pub target: String,
}

/// The presets.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Preset {
    /// One disk: an ESP and a ZFS pool.
    Single,
    /// Two or more disks: an ESP on each and a ZFS mirror.
    Mirror,
    /// One disk: an ESP and an ext4 root.
    Ext4,
}

/// Boot firmware.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Boot {
    /// UEFI: GRUB on every ESP.
    Uefi,
    /// Legacy BIOS: a BIOS boot partition on every disk, GRUB in every disk's boot sector.
    Bios,
    /// Both, so that the machine boots whichever way its firmware is set.
    Both,
}

impl From<Boot> for BootMode {
    fn from(boot: Boot) -> Self {
        match boot {
            Boot::Uefi => BootMode::Uefi,
            Boot::Bios => BootMode::Bios,
            Boot::Both => BootMode::Both,
        }
    }
}

/// Kinds of encryption.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EncryptKind {
    /// ZFS native encryption.
    Native,
    /// LUKS2.
    Luks,
}

/// Reads a plan file, naming the file in every error.
pub fn read_plan_file(path: &PathBuf) -> Result<Plan> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.display().to_string();
    Ok(Plan::from_text(&text, PlanFormat::from_file_name(&name), &name)?)
}

/// What the machine says about each disk, for a preset, and the kernel modules of their controllers.
fn disk_facts(paths: &[String], offline_size: Option<&str>) -> Result<(Vec<DiskFacts>, Vec<String>)> {
    if let Some(size) = offline_size {
        let bytes =
            layouts::size::parse_bytes(size).with_context(|| format!("--offline-size: {size:?} is not a size"))?;
        return Ok((paths.iter().map(|p| DiskFacts::offline(p.clone(), bytes)).collect(), Vec::new()));
    }
    let disks = partitioner::discover().context("cannot list the machine's disks")?;
    let mut modules = std::collections::BTreeSet::new();
    let facts = paths
        .iter()
        .map(|path| {
            let disk = partitioner::find_disk(&disks, path)?;
            partitioner::ensure_free(disk)?;
            let drivers = partitioner::hardware::disk_modules(&SystemRoots::default(), &disk.name)
                .with_context(|| format!("cannot read the drivers of {path} from sysfs"))?;
            modules.extend(drivers);
            Ok(DiskFacts {
                device: if path.starts_with("/dev/disk/") { path.clone() } else { disk.preferred_path().to_string() },
                size: Some(disk.size),
                logical_sector_size: disk.logical_sector_size,
                physical_sector_size: Some(disk.physical_sector_size),
                identity: Identity { serial: disk.serial.clone(), wwn: disk.wwn.clone(), model: disk.model.clone() },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((facts, modules.into_iter().collect()))
}

/// Builds the plan the arguments describe.
pub fn plan_from_args(args: &PlanArgs) -> Result<Plan> {
    if let Some(file) = &args.file {
        return read_plan_file(file);
    }
    let Some(preset) = args.preset else {
        bail!("give a plan file, or --preset single|mirror|ext4 with --disk");
    };
    let selected;
    let disks = match &args.disk_select {
        Some(rules) => {
            let machine = partitioner::discover().context("cannot list the machine's disks")?;
            let chosen = partitioner::select::select(rules, &machine)?;
            for disk in &chosen {
                eprintln!(
                    "--disk-select {rules:?} chose {} ({}, {}{})",
                    disk.preferred_path(),
                    disk.model.as_deref().unwrap_or("no model"),
                    layouts::size::human(disk.size),
                    if disk.rotational { ", rotational" } else { "" }
                );
            }
            selected = chosen.iter().map(|disk| disk.preferred_path().to_string()).collect::<Vec<_>>();
            &selected
        }
        None => match &args.alongside {
            Some(disk) => {
                selected = vec![disk.clone()];
                &selected
            }
            None => &args.disk,
        },
    };
    if disks.is_empty() {
        bail!("--preset needs at least one --disk (or --disk-select)");
    }
    let kind = match preset {
        Preset::Single => PresetKind::Single,
        Preset::Mirror => PresetKind::Mirror,
        Preset::Ext4 => PresetKind::Ext4,
    };
    let (facts, modules) = disk_facts(disks, args.offline_size.as_deref())?;
    let mut options = PresetOptions::new(kind, facts);
    options.initrd_kernel_modules = modules;
    options.boot = match args.boot {
        Some(boot) => boot.into(),
        None if args.offline_size.is_some() => BootMode::Uefi,
        None => BootMode::for_firmware(partitioner::hardware::booted_with_uefi(&SystemRoots::default())),
    };
    if args.remote_unlock {
        let network = partitioner::hardware::network_modules(&SystemRoots::default())
            .context("cannot read the network cards' drivers from sysfs")?;
        options.remote_unlock = Some(RemoteUnlock {
            authorized_keys: handover::root_keys(std::path::Path::new("/"), std::env::var("SUDO_USER").ok().as_deref())
                .context("--remote-unlock")?,
            port: 22,
            network_kernel_modules: network.into_iter().collect(),
        });
    }
    options.encryption = match args.encrypt {
        None => Encryption::None,
        Some(EncryptKind::Native) => Encryption::ZfsNative,
        Some(EncryptKind::Luks) => Encryption::Luks,
    };
    if let Some(swap) = &args.swap {
        options.swap =
            Some(layouts::size::parse_bytes(swap).with_context(|| format!("--swap: {swap:?} is not a size"))?);
    }
    options.pool_name = args.pool.clone();
    options.hostname = args.hostname.clone();
    options.flake = args.flake.clone();
    let plan = match &args.alongside {
        Some(path) => alongside_plan(path, &options)?,
        None => presets::build(&options)?,
    };
    plan.validate()?;
    Ok(plan)
}

/// The preset beside what `path` holds: its partitions read back and kept, its ESP measured.
fn alongside_plan(path: &str, options: &PresetOptions) -> Result<Plan> {
    let disks = partitioner::discover().context("cannot list the machine's disks")?;
    let disk = partitioner::find_disk(&disks, path)?;
    let read = partitioner::adopt::read_back(disk)?;
    for note in &read.notes {
        eprintln!("--alongside: {note}");
    }
    let esp_free = |name: &str| {
        let number = read.disk.partitions.get(name)?.number?;
        let partition = disk.partitions.iter().find(|p| p.number == number)?;
        partitioner::fat::fat_space(&partition.path).ok().map(|space| space.free_bytes())
    };
    let result = layouts::alongside::alongside(&read.disk, options, &esp_free)?;
    for note in &result.notes {
        eprintln!("--alongside: {note}");
    }
    Ok(result.plan)
}

/// Runs `nix-dabei plan`.
pub fn run(args: PlanArgs) -> Result<()> {
    let plan = plan_from_args(&args)?;
    let steps = plan.compile(&CompileOptions { target: args.target.clone(), ..Default::default() })?;
    if let Some(output) = &args.output {
        let name = output.display().to_string();
        let text = match PlanFormat::from_file_name(&name) {
            PlanFormat::Json => plan.to_json() + "\n",
            PlanFormat::Toml => plan.to_toml(),
        };
        std::fs::write(output, text).with_context(|| format!("cannot write {name}"))?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "steps": steps.steps, "teardown": steps.teardown }))?
        );
    } else {
        let destructive = steps.destructive();
        println!(
            "Plan for host {} ({} steps, {destructive} destroy data). Nothing has been written.\n",
            plan.hostname,
            steps.steps.len()
        );
        print!("{}", steps.render());
        if let Some(output) = &args.output {
            println!("\nPlan written to {}.", output.display());
        }
    }
    Ok(())
}
