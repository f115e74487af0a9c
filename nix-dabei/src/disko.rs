//! `nix-dabei import-disko` and `nix-dabei export-disko`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use layouts::{disko, PlanFormat};

use crate::plan::read_plan_file;

/// Arguments of `nix-dabei import-disko`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A disko configuration: JSON (what evaluating it prints), or a .nix file evaluated with
    /// nix-instantiate.
    pub file: PathBuf,
    /// Write the plan here (TOML, or JSON when it ends in .json) instead of printing it.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print JSON instead of TOML.
    #[arg(long)]
    pub json: bool,
    /// Use another device for a disk of the configuration: NAME=PATH (repeat).
    #[arg(long = "device", value_name = "NAME=PATH")]
    pub devices: Vec<String>,
    /// Do not look at the machine: assume every disk has this size and 512-byte sectors.
    #[arg(long, value_name = "SIZE")]
    pub offline_size: Option<String>,
    /// Host name of the plan (when the configuration sets no networking.hostName).
    #[arg(long)]
    pub hostname: Option<String>,
}

/// Arguments of `nix-dabei export-disko`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The plan file.
    pub file: PathBuf,
    /// Write the disko configuration here instead of printing it.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

fn read_configuration(path: &PathBuf) -> Result<serde_json::Value> {
    let name = path.display().to_string();
    let text = if name.ends_with(".nix") {
        if !installer::command::available("nix-instantiate") {
            bail!(
                "{name} is a Nix file and nix-instantiate is not installed: evaluate it to JSON elsewhere \
                (nix-instantiate --eval --strict --json) and import that"
            );
        }
        installer::command::run(
            "nix-instantiate",
            &["--eval".into(), "--strict".into(), "--json".into(), name.clone()],
            None,
        )?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{name} is not JSON"))
}

/// Runs `nix-dabei import-disko`.
pub fn import(args: ImportArgs) -> Result<()> {
    let value = read_configuration(&args.file)?;
    let name = args.file.display().to_string();
    let imported = disko::import(&value).map_err(|e| e.in_file(name.clone()))?;
    for warning in &imported.warnings {
        eprintln!("nix-dabei: warning: {warning}");
    }
    let mut plan = imported.plan;
    if let Some(hostname) = &args.hostname {
        plan.hostname = hostname.clone();
    }
    for mapping in &args.devices {
        let (disk, path) = mapping.split_once('=').with_context(|| format!("--device {mapping:?}: write NAME=PATH"))?;
        let entry = plan
            .disks
            .get_mut(disk)
            .with_context(|| format!("--device {mapping:?}: the configuration has no disk {disk:?}"))?;
        entry.device = path.to_string();
    }
    if let Some(size) = &args.offline_size {
        let bytes =
            layouts::size::parse_bytes(size).with_context(|| format!("--offline-size: {size:?} is not a size"))?;
        for disk in plan.disks.values_mut() {
            disk.size = Some(bytes);
        }
    } else {
        let disks = partitioner::discover().context("cannot list the machine's disks")?;
        for (disk_name, disk) in plan.disks.iter_mut() {
            let found = partitioner::find_disk(&disks, &disk.device).with_context(|| {
                format!(
                    "disk {disk_name:?}: map it to a disk of this machine with --device {disk_name}=PATH, \
                     or plan offline with --offline-size"
                )
            })?;
            disk.size = Some(found.size);
            disk.logical_sector_size = found.logical_sector_size;
            disk.physical_sector_size = Some(found.physical_sector_size);
            disk.identity =
                layouts::Identity { serial: found.serial.clone(), wwn: found.wwn.clone(), model: found.model.clone() };
        }
    }
    if plan.host_id.is_none() {
        plan.host_id = Some(plan.effective_host_id());
    }
    plan.validate().map_err(|e| e.in_file(name))?;
    let json = args.json
        || args
            .output
            .as_ref()
            .is_some_and(|o| PlanFormat::from_file_name(&o.display().to_string()) == PlanFormat::Json);
    let text = if json { plan.to_json() + "\n" } else { plan.to_toml() };
    match &args.output {
        Some(output) => std::fs::write(output, text).with_context(|| format!("cannot write {}", output.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// Runs `nix-dabei export-disko`.
pub fn export(args: ExportArgs) -> Result<()> {
    let plan = read_plan_file(&args.file)?;
    let text = disko::export(&plan)?;
    match &args.output {
        Some(output) => std::fs::write(output, text).with_context(|| format!("cannot write {}", output.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
