//! `nix-dabei disks`: the machine's disks and whether each may be used.

use anyhow::{Context, Result};
use clap::Args;
use layouts::size::human;

/// Arguments of `nix-dabei disks`.
#[derive(Debug, Args)]
pub struct DisksArgs {
    /// Print everything as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `nix-dabei disks`.
pub fn run(args: DisksArgs) -> Result<()> {
    let disks = partitioner::discover().context("cannot list the machine's disks")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "disks": disks }))?);
        return Ok(());
    }
    println!("{:<40} {:<20} {:<20} {:>10}  USE", "PATH", "MODEL", "SERIAL", "SIZE");
    for disk in &disks {
        let mut reasons: Vec<String> = disk.in_use.iter().map(ToString::to_string).collect();
        reasons.extend(disk.table_problems.iter().map(|why| format!("table unreadable: {why}")));
        let usage = if reasons.is_empty() { "free".to_string() } else { reasons.join("; ") };
        println!(
            "{:<40} {:<20} {:<20} {:>10}  {usage}",
            disk.preferred_path(),
            disk.model.as_deref().unwrap_or("-"),
            disk.serial.as_deref().unwrap_or("-"),
            human(disk.size)
        );
    }
    Ok(())
}
