//! `nix-dabei probe`: the machine's disks read back into a plan whose every partition is kept, and the
//! ZFS pools, RAID arrays and LVM volume groups on them, kept by their GUIDs and UUIDs.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use layouts::{Plan, PlanFormat};

/// Arguments of `nix-dabei probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The disks to read (paths); every disk with a partition table when none is given.
    pub disks: Vec<String>,
    /// Write the plan here (TOML, or JSON for a .json name) instead of printing it.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Open the LUKS containers with the passphrase in this file, to read what they hold (each is closed
    /// again); without it, they are kept without content.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// Runs `nix-dabei probe`.
pub fn run(args: ProbeArgs) -> Result<()> {
    let found = partitioner::discover().context("cannot list the machine's disks")?;
    let disks: Vec<&partitioner::DiskInfo> = if args.disks.is_empty() {
        found.iter().filter(|d| d.partition_table.is_some()).collect()
    } else {
        args.disks
            .iter()
            .map(|path| partitioner::find_disk(&found, path).with_context(|| format!("cannot use {path}")))
            .collect::<Result<_>>()?
    };
    if disks.is_empty() {
        anyhow::bail!("no disk with a partition table was found: there is nothing to read back");
    }
    let mut plan = Plan { version: 1, hostname: hostname(), ..Plan::default() };
    let mut notes = Vec::new();
    for (index, disk) in disks.iter().enumerate() {
        let read = partitioner::adopt::read_back(disk).with_context(|| format!("cannot read {} back", disk.path))?;
        notes.extend(read.notes);
        plan.disks.insert(format!("disk{index}"), read.disk);
    }
    let mut read = Vec::new();
    let system = &installer::RealSystem;
    // Containers holding physical volumes stay open until their groups are read, and are closed on every path.
    let mut open = installer::adopt::OpenContainers::none(system);
    if let Some(path) = &args.passphrase_file {
        let key = installer::Secret::from_file(path)
            .with_context(|| format!("cannot read the passphrase file {}", path.display()))?;
        let containers =
            installer::adopt::read_luks(system, &mut plan, &key).context("cannot read the LUKS containers back")?;
        read.extend(containers.lines);
        open = containers.open;
    }
    let pools = installer::adopt::read_pools(system, &mut plan).context("cannot read the pools back")?;
    read.extend(pools);
    let arrays = installer::adopt::read_arrays(system, &mut plan).context("cannot read the arrays back")?;
    read.extend(arrays);
    let groups =
        installer::adopt::read_volume_groups(system, &mut plan, open).context("cannot read the volume groups back")?;
    read.extend(groups);
    // A member of a pool that was read, or a container that was opened, is described by now.
    let opened: Vec<String> = plan
        .disks
        .values()
        .flat_map(|d| d.partitions.values())
        .filter_map(|p| match &p.content {
            Some(layouts::Content::Luks(luks)) => luks.uuid.clone(),
            _ => None,
        })
        .collect();
    let physical_volumes: Vec<String> = plan
        .disks
        .values()
        .flat_map(|d| d.partitions.values())
        .filter_map(|p| match p.content.as_ref().map(layouts::Content::innermost) {
            Some(layouts::Content::LvmPv(pv)) => pv.uuid.clone(),
            _ => None,
        })
        .collect();
    let described = |note: &String| {
        plan.pools.keys().any(|pool| note.contains(&format!("member of ZFS pool {pool} ")))
            || plan.raids.keys().any(|array| note.contains(&format!("member of RAID array {array} ")))
            || physical_volumes.iter().any(|uuid| note.contains(&format!("LVM physical volume (UUID {uuid})")))
            || opened.iter().any(|uuid| note.contains(&format!("header UUID {uuid}")))
    };
    for note in notes.iter().filter(|note| !described(note)).chain(&read) {
        eprintln!("nix-dabei: {note}");
    }
    plan.validate().context("the disks as read back do not make a valid plan")?;
    let json =
        args.output.as_ref().is_some_and(|o| PlanFormat::from_file_name(&o.display().to_string()) == PlanFormat::Json);
    let text = if json { plan.to_json() + "\n" } else { plan.to_toml() };
    match &args.output {
        Some(output) => std::fs::write(output, text).with_context(|| format!("cannot write {}", output.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// This machine's host name, or "nixos" when it has none that a plan accepts.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    let valid = !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        name.to_string()
    } else {
        "nixos".to_string()
    }
}
