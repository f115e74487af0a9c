//! The `nix-dabei` command: plans, disks, and (later) apply, on the engine in the library crates.

mod apply;
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
    /// Partition, format and mount the disks as a plan says; resumes where an earlier run stopped.
    Apply(apply::ApplyArgs),
    /// Apply a plan and install NixOS from a flake (apply with --flake).
    Install(apply::ApplyArgs),
    /// Open, import and mount what an earlier apply created, under the target.
    Mount(apply::MountArgs),
    /// Unmount, swap off, export the pools and close LUKS, in reverse order.
    Unmount(apply::MountArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(args) => plan::run(args),
        Command::Disks(args) => disks::run(args),
        Command::Apply(args) => apply::apply(args),
        Command::Install(args) => {
            if args.flake.is_none() {
                Err(anyhow::anyhow!("install needs --flake REF"))
            } else {
                apply::apply(args)
            }
        }
        Command::Mount(args) => apply::mount(args),
        Command::Unmount(args) => apply::unmount(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("nix-dabei: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, leaving out causes whose text the message already contains.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
