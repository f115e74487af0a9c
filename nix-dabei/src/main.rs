//! The `nix-dabei` command: plans, disks, and (later) apply, on the engine in the library crates.

mod disks;
mod plan;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Install NixOS onto the disks of a machine reached by SSH or a console.
#[derive(Debug, Parser)]
#[command(name = "nix-dabei", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the steps a layout takes, without touching any disk.
    Plan(plan::PlanArgs),
    /// List the machine's disks and whether each may be used.
    Disks(disks::DisksArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(args) => plan::run(args),
        Command::Disks(args) => disks::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("nix-dabei: {error:#}");
            ExitCode::FAILURE
        }
    }
}
