//! The external programs nix-dabei runs, each declared once beside the node type whose steps run it
//! (`PROGRAMS` in each module of [`crate::nodes`]), with the nixpkgs attribute and the Debian package that
//! provide it. From this one list come the RAM OS's packages and the NixOS module's (through
//! `nix/programs.json`, which a test keeps equal to it), the VM test image's programs and Debian packages,
//! and the preview's refusal of a plan whose programs this machine lacks. `nix-dabei programs` prints it.

use serde::Serialize;

/// Where a program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunsOn {
    /// The machine being installed: the RAM OS, or a running NixOS with the module.
    Target,
    /// The rescue system `nix-dabei kexec` starts from: carried in the kexec tarball, statically linked.
    Rescue,
    /// The workstation `nix-dabei remote` runs on.
    Workstation,
}

/// An external program, and what provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Program {
    /// The name it is run by, found on PATH.
    pub name: &'static str,
    /// The nixpkgs attribute whose package has it (`zfs` stands for the kernel's `boot.zfs.package`).
    pub nixpkgs: &'static str,
    /// The Debian package that has it; empty where Debian 12 has none: `nixos-install` (the VM test image
    /// carries a stand-in that checks what the real one needs) and `bcachefs` (nor does Debian 12's kernel
    /// have bcachefs, and plans that need it are refused there).
    pub debian: &'static str,
    /// Where it runs.
    pub runs_on: RunsOn,
    /// What nix-dabei runs it for.
    pub used_for: &'static str,
}

impl Program {
    /// A program of the machine being installed.
    pub const fn target(
        name: &'static str,
        nixpkgs: &'static str,
        debian: &'static str,
        used_for: &'static str,
    ) -> Self {
        Program { name, nixpkgs, debian, runs_on: RunsOn::Target, used_for }
    }
}

/// Programs of no one node type: udev, and the installer's own programs on the far sides.
pub const FRAMEWORK: &[Program] = &[
    Program::target("udevadm", "systemd", "udev", "waiting for udev's device links after a change"),
    Program {
        name: "kexec",
        nixpkgs: "kexec-tools",
        debian: "kexec-tools",
        runs_on: RunsOn::Rescue,
        used_for: "nix-dabei kexec: loading the RAM OS (the tarball carries it)",
    },
    Program {
        name: "ip",
        nixpkgs: "iproute2",
        debian: "iproute2",
        runs_on: RunsOn::Rescue,
        used_for: "nix-dabei kexec: reading the addresses and routes to carry over (the tarball carries it)",
    },
    Program::target("ip", "iproute2", "iproute2", "restoring the carried addresses and routes in the RAM OS"),
    Program {
        name: "ssh",
        nixpkgs: "openssh",
        debian: "openssh-client",
        runs_on: RunsOn::Workstation,
        used_for: "nix-dabei remote: the connection to the far side",
    },
    Program {
        name: "nix",
        nixpkgs: "nix",
        debian: "nix-bin",
        runs_on: RunsOn::Workstation,
        used_for: "nix-dabei remote --build-on local: building the system and copying its closure",
    },
];

/// Every program, node types' first, in the order of [`crate::nodes`]'s registry.
pub fn all() -> Vec<Program> {
    crate::nodes::PROGRAMS
        .iter()
        .flat_map(|programs| programs.iter().copied())
        .chain(FRAMEWORK.iter().copied())
        .collect()
}

/// The programs of the machine being installed, each name once.
pub fn on_target() -> Vec<Program> {
    let mut seen = std::collections::BTreeSet::new();
    all().into_iter().filter(|p| p.runs_on == RunsOn::Target && seen.insert(p.name)).collect()
}

/// The declaration of a program of the machine being installed, by the name it is run by.
pub fn find(name: &str) -> Option<Program> {
    all().into_iter().find(|p| p.runs_on == RunsOn::Target && p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_is_declared_once_where_it_runs() {
        let all = all();
        for program in &all {
            let same = all.iter().filter(|p| p.name == program.name && p.runs_on == program.runs_on).count();
            assert_eq!(same, 1, "{} is declared {same} times for {:?}", program.name, program.runs_on);
            assert!(!program.nixpkgs.is_empty(), "{program:?}");
            assert!(!program.debian.is_empty() || ["nixos-install", "bcachefs"].contains(&program.name), "{program:?}");
        }
    }
}
