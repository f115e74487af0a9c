//! The `nix-dabei` command: plans, disks, and (later) apply, on the engine in the library crates.

mod apply;
mod disko;
mod disks;
mod hetzner;
mod kexec;
mod plan;
mod probe;
mod remote;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Install NixOS onto the disks of a machine reached by SSH or a console.
#[derive(Debug, Parser)]
#[command(name = "nix-dabei", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the steps a layout takes, without touching any disk.
    Plan(plan::PlanArgs),
    /// List the machine's disks and whether each may be used.
    Disks(disks::DisksArgs),
    /// Read the disks back into a plan that keeps every partition as it is (for installing alongside).
    Probe(probe::ProbeArgs),
    /// Partition, format and mount the disks as a plan says; resumes where an earlier run stopped.
    Apply(apply::ApplyArgs),
    /// Apply a plan and install NixOS from a flake (apply with --flake).
    Install(apply::ApplyArgs),
    /// Open, import and mount what an earlier apply created, under the target.
    Mount(apply::MountArgs),
    /// Unmount, swap off, export the pools and close LUKS, in reverse order.
    Unmount(apply::MountArgs),
    /// Read a disko configuration and write it as a plan.
    ImportDisko(disko::ImportArgs),
    /// Write a plan as a disko configuration.
    ExportDisko(disko::ExportArgs),
    /// Print the NixOS module for a plan's layout, to commit into the host's flake before installing.
    NixosModule(NixosModuleArgs),
    /// On a rescue system: boot the RAM OS with kexec, carrying over SSH keys and network settings.
    Kexec(kexec::KexecArgs),
    /// In the RAM OS: restore the keys and network settings `kexec` carried over.
    RestoreNetwork(kexec::RestoreArgs),
    /// From a workstation: install a machine reached by SSH in one command (connect, inspect, kexec into
    /// the RAM OS, plan, apply, install, reboot), resuming a run a dropped connection interrupted.
    Remote(Box<remote::RemoteArgs>),
    /// From a workstation: make a Hetzner Cloud server (or put a dedicated one into rescue) and install it
    /// as `remote` does, in one command.
    Hetzner(hetzner::HetznerArgs),
    /// The interactive installer for a console (also what `nix-dabei` alone starts on a terminal).
    Tui(TuiArgs),
    /// List the external programs nix-dabei runs, with the nixpkgs attribute and Debian package of each.
    Programs(ProgramsArgs),
}

impl Command {
    /// Whether the command may hold a secret in memory: a passphrase (read from a file, standard input or
    /// a prompt), or SSH host keys (which kexec carries over and restore-network puts in place). Such a
    /// command makes no core dump and is not dumpable ([`installer::secret::protect_process`]). Every
    /// command is named, so that a new one must be decided on.
    fn holds_secrets(&self) -> bool {
        match self {
            Command::Tui(_)
            | Command::Apply(_)
            | Command::Install(_)
            | Command::Mount(_)
            | Command::Unmount(_)
            | Command::Probe(_)
            | Command::Kexec(_)
            | Command::RestoreNetwork(_)
            | Command::Remote(_)
            | Command::Hetzner(_) => true,
            Command::Plan(_)
            | Command::Disks(_)
            | Command::ImportDisko(_)
            | Command::ExportDisko(_)
            | Command::NixosModule(_)
            | Command::Programs(_) => false,
        }
    }
}

/// Arguments of `nix-dabei programs`.
#[derive(Debug, clap::Args)]
struct ProgramsArgs {
    /// Print JSON (the list `nix/programs.json` holds) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Prints the one list of programs (`layouts::programs`): where each runs, what provides it, what for.
fn print_programs(args: ProgramsArgs) -> anyhow::Result<()> {
    let programs = layouts::programs::all();
    if args.json {
        println!("{}", programs_json(&programs)?);
        return Ok(());
    }
    println!("{:<16} {:<12} {:<24} {:<24} used for", "program", "runs on", "nixpkgs", "debian");
    for p in &programs {
        let runs_on = serde_json::to_value(p.runs_on)?;
        let debian = if p.debian.is_empty() { "-" } else { p.debian };
        println!(
            "{:<16} {:<12} {:<24} {:<24} {}",
            p.name,
            runs_on.as_str().unwrap_or_default(),
            p.nixpkgs,
            debian,
            p.used_for
        );
    }
    Ok(())
}

/// The list as `nix/programs.json` holds it: one object per program, pretty-printed.
fn programs_json(programs: &[layouts::programs::Program]) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(programs)?)
}

/// Arguments of `nix-dabei nixos-module`.
#[derive(Debug, clap::Args)]
struct NixosModuleArgs {
    /// The plan file.
    file: std::path::PathBuf,
}

/// Prints the module `install` writes to /mnt/etc/nixos/nix-dabei.nix: it depends on the plan alone
/// (partition UUIDs and the host id are derived from it), so it can be committed to the flake first.
fn print_nixos_module(args: NixosModuleArgs) -> anyhow::Result<()> {
    let plan = plan::read_plan_file(&args.file)?;
    plan.validate()?;
    print!("{}", layouts::nixos::module(&plan));
    Ok(())
}

/// Arguments of `nix-dabei tui`.
#[derive(Debug, clap::Args)]
struct TuiArgs {
    /// Go through every screen and show what would run, writing nothing to any disk.
    #[arg(long)]
    dry_run: bool,
    /// Where to save the plan the answers make.
    #[arg(long, value_name = "FILE")]
    save: Option<std::path::PathBuf>,
    /// Draw with ASCII only (the default when TERM=linux).
    #[arg(long)]
    ascii: bool,
    /// Install without first checking the flake's configuration against the plan.
    #[arg(long)]
    skip_flake_check: bool,
}

fn run_tui(args: TuiArgs) -> anyhow::Result<()> {
    let mut options = tui::TuiOptions { dry_run: args.dry_run, ..tui::TuiOptions::default() };
    if let Some(save) = args.save {
        options.save_path = save;
    }
    options.ascii |= args.ascii;
    options.skip_flake_check = args.skip_flake_check;
    tui::run(options).map_err(anyhow::Error::msg)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Some(command) => command,
        None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            Command::Tui(TuiArgs { dry_run: false, save: None, ascii: false, skip_flake_check: false })
        }
        None => {
            eprintln!(
                "nix-dabei: give a command (see nix-dabei --help); the installer starts by itself only on a terminal"
            );
            return ExitCode::FAILURE;
        }
    };
    // Commands that may hold a secret keep it out of core dumps from the start.
    if command.holds_secrets() {
        if let Err(error) = installer::secret::protect_process() {
            eprintln!("nix-dabei: cannot keep secrets out of core dumps: {error}");
            return ExitCode::FAILURE;
        }
    }
    let result = match command {
        Command::Tui(args) => run_tui(args),
        Command::Plan(args) => plan::run(args),
        Command::Disks(args) => disks::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Apply(args) => apply::apply(args),
        Command::Install(args) => {
            if args.flake.is_none() {
                Err(anyhow::anyhow!("install needs --flake REF"))
            } else {
                apply::apply(args)
            }
        }
        Command::Mount(args) => apply::mount(args),
        Command::ImportDisko(args) => disko::import(args),
        Command::Kexec(args) => kexec::run(args),
        Command::RestoreNetwork(args) => kexec::restore(args),
        Command::ExportDisko(args) => disko::export(args),
        Command::NixosModule(args) => print_nixos_module(args),
        Command::Programs(args) => print_programs(args),
        Command::Unmount(args) => apply::unmount(args),
        Command::Remote(args) => remote::run(*args),
        Command::Hetzner(args) => hetzner::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Errors may quote what another program or the far side printed: shown, not obeyed.
            eprintln!("nix-dabei: {}", ::remote::printable(&describe(&error)));
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every command that takes a passphrase (an argument named for one) is among those that keep secrets
    /// out of core dumps; `probe --passphrase-file` was not.
    #[test]
    fn every_command_that_takes_a_passphrase_protects_it() {
        let mut taking = Vec::new();
        for subcommand in Cli::command().get_subcommands() {
            let takes = subcommand.get_arguments().any(|a| a.get_id().as_str().contains("passphrase"));
            if !takes {
                continue;
            }
            let name = subcommand.get_name().to_string();
            taking.push(name.clone());
            // The smallest argument list the command parses with.
            let mut args = vec!["nix-dabei".to_string(), name.clone()];
            args.extend(match name.as_str() {
                "apply" | "install" | "mount" | "unmount" => vec!["plan.toml".to_string()],
                "remote" => vec!["root@host".to_string()],
                _ => vec![],
            });
            let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let command = cli.command.expect("a command");
            assert!(command.holds_secrets(), "`nix-dabei {name}` takes a passphrase but may dump core");
        }
        for name in ["tui", "apply", "install", "mount", "probe", "remote"] {
            assert!(
                taking.contains(&name.to_string()) || name == "tui",
                "{name} takes no passphrase argument: {taking:?}"
            );
        }
    }

    /// The commands that handle SSH host keys keep them out of core dumps too.
    #[test]
    fn kexec_and_restore_network_protect_the_host_keys() {
        for args in [
            ["nix-dabei", "kexec", "--kernel", "k", "--initrd", "i"].as_slice(),
            &["nix-dabei", "restore-network", "d"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(cli.command.expect("a command").holds_secrets(), "{args:?}");
        }
    }

    /// Every `nix-dabei` command line in the flake's NixOS tests (nix/tests/boot.nix) parses with this
    /// binary's arguments: a test that runs only where Nix and KVM are would otherwise first fail there
    /// (`install --system` without `--skip-flake-check` did). Nix's and Python's interpolations stand for
    /// a value of the kind the test gives.
    #[test]
    fn the_flake_tests_command_lines_parse() {
        let text = include_str!("../../nix/tests/boot.nix");
        let mut seen = 0;
        for line in text.lines() {
            // A command the test script runs: the machine's `succeed("…")` or a string on its own line.
            let Some(start) = ["(f\"nix-dabei ", "(\"nix-dabei ", "    \"nix-dabei "]
                .iter()
                .find_map(|opening| line.find(opening).map(|at| at + opening.find('"').unwrap_or(0)))
            else {
                continue;
            };
            // The command up to its closing quote; a line continued with `+ "..."` is joined.
            let mut command = String::new();
            let mut rest = &line[start..];
            let mut following = text.lines().skip_while(|l| *l != line).skip(1);
            loop {
                let body = rest.trim_start_matches('f').trim_start_matches('"');
                let end = body.find('"').unwrap_or(body.len());
                command.push_str(&body[..end]);
                match following.next().map(str::trim) {
                    Some(next) if next.starts_with("+ \"") || next.starts_with("+ f\"") => rest = &next[2..],
                    _ => break,
                }
            }
            let command = command.split(['|', '>']).next().unwrap_or_default();
            let mut words = vec!["nix-dabei".to_string()];
            for word in command.split_whitespace().skip(1) {
                words.extend(match word {
                    "${wipe}" => vec!["--yes-wipe".to_string(), "/dev/vdb".to_string()],
                    "{key}" => vec!["--passphrase-file".to_string(), "/etc/passphrase".to_string()],
                    "{plan}" => vec!["/etc/plan.toml".to_string()],
                    other if other.contains("${") || other.contains('{') => vec!["/nix/store/x".to_string()],
                    other => vec![other.trim_matches('\'').to_string()],
                });
            }
            Cli::try_parse_from(&words).unwrap_or_else(|e| panic!("{words:?} (boot.nix: {line:?}): {e}"));
            seen += 1;
        }
        assert!(seen >= 6, "found {seen} command lines in nix/tests/boot.nix");
    }
}
