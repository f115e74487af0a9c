//! The check before install: evaluates the flake's NixOS configuration with `nix eval` and compares it
//! with the plan ([`layouts::flake_check`]), so that an install that would not boot is refused before
//! anything is written.

use layouts::flake_check::{check, HostConfig, Mismatch, SELECT};
use layouts::{CommandLine, Operation, Plan};

use crate::command::CommandError;
use crate::execute::{Outlook, Preview};
use crate::system::System;

/// Why the configuration could not be checked, or does not fit.
#[derive(Debug, thiserror::Error)]
pub enum FlakeCheckError {
    /// `nix` is not installed.
    #[error(
        "cannot check the flake's configuration: nix is not installed here \
         (--skip-flake-check installs without the check)"
    )]
    NoNix,
    /// `nix eval` failed: the flake, or NixOS's assertions and option types, which evaluating the system's
    /// derivation checks.
    #[error(
        "cannot evaluate {installable}: {message}\nNothing was written. Fix the configuration, or give \
         --skip-flake-check"
    )]
    Evaluation {
        /// What was evaluated.
        installable: String,
        /// nix's message (its last lines).
        message: String,
    },
    /// `nix eval` printed something else than the fields asked for.
    #[error("nix eval printed an unexpected answer for {installable}: {reason}")]
    Unreadable {
        /// What was evaluated.
        installable: String,
        /// Why it could not be read.
        reason: String,
    },
    /// The configuration does not fit the plan.
    #[error(
        "the configuration {installable} does not fit the plan, so the installed system would not boot:\n{}\n\
         Nothing was written. Fix the configuration (`nix-dabei nixos-module PLAN` prints the layout's module to \
         import), or give --skip-flake-check",
        list.iter().map(|m| format!("  - {m}")).collect::<Vec<_>>().join("\n")
    )]
    Mismatches {
        /// What was evaluated.
        installable: String,
        /// Every difference.
        list: Vec<Mismatch>,
    },
}

/// `FLAKE#nixosConfigurations."NAME".config`: the name after `#`, or the plan's host name, as
/// `nixos-install --flake` takes it.
pub fn installable(flake: &str, hostname: &str) -> String {
    let (url, name) = flake.rsplit_once('#').unwrap_or((flake, hostname));
    let quoted = name.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$");
    format!("{url}#nixosConfigurations.\"{quoted}\".config")
}

/// Evaluates the configuration's fields that the check compares.
pub fn evaluate(system: &dyn System, flake: &str, hostname: &str) -> Result<HostConfig, FlakeCheckError> {
    let installable = installable(flake, hostname);
    let line = CommandLine::new(
        "nix",
        [
            "--extra-experimental-features",
            "nix-command flakes",
            "eval",
            "--json",
            "--no-write-lock-file",
            installable.as_str(),
            "--apply",
            SELECT,
        ],
    );
    let output = system.run(&line, None).map_err(|error| match error {
        CommandError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => FlakeCheckError::NoNix,
        CommandError::Failed { stderr, .. } => {
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains("build-users-group")).collect();
            let message = lines[lines.len().saturating_sub(12)..].join("\n");
            FlakeCheckError::Evaluation { installable: installable.clone(), message }
        }
        other => FlakeCheckError::Evaluation { installable: installable.clone(), message: other.to_string() },
    })?;
    serde_json::from_str(&output)
        .map_err(|error| FlakeCheckError::Unreadable { installable: installable.clone(), reason: error.to_string() })
}

/// The flake to check before this run: the plan's, when the preview still has its install to do.
pub fn pending_install<'a>(plan: &'a Plan, preview: &Preview) -> Option<&'a str> {
    let pending = preview.steps.iter().any(|(step, outlook)| {
        matches!(step.operation, Operation::NixosInstall(_)) && !matches!(outlook, Outlook::Done(_))
    });
    plan.flake.as_deref().filter(|_| pending)
}

/// The check before install on this machine: its firmware, the flake evaluated here.
pub fn verify_here(plan: &Plan, flake: &str) -> Result<(), FlakeCheckError> {
    let firmware = partitioner::hardware::booted_with_uefi(&partitioner::discover::SystemRoots::default());
    verify(&crate::RealSystem, plan, flake, Some(firmware))
}

/// Evaluates the flake and compares it with the plan; `booted_with_uefi` is this machine's firmware.
pub fn verify(
    system: &dyn System,
    plan: &Plan,
    flake: &str,
    booted_with_uefi: Option<bool>,
) -> Result<(), FlakeCheckError> {
    let host = evaluate(system, flake, &plan.hostname)?;
    let list = check(plan, &host, booted_with_uefi);
    if list.is_empty() {
        Ok(())
    } else {
        Err(FlakeCheckError::Mismatches { installable: installable(flake, &plan.hostname), list })
    }
}

#[cfg(test)]
mod tests {
    use super::installable;

    #[test]
    fn the_configuration_is_named_as_nixos_install_names_it() {
        assert_eq!(installable("path:/etc/nixos#vm", "x"), "path:/etc/nixos#nixosConfigurations.\"vm\".config");
        assert_eq!(installable("github:me/m", "web1"), "github:me/m#nixosConfigurations.\"web1\".config");
        assert_eq!(installable(".#a\"b", "x"), ".#nixosConfigurations.\"a\\\"b\".config");
    }
}
