//! The last steps of a plan: write the NixOS module of the layout, then install NixOS from a flake.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::compile::Builder;
use crate::nodes::nodev::NODEV_TYPES;
use crate::programs::Program;
use crate::steps::{CommandLine, Operation, OperationKind};

/// The programs of the install: the flake's check and the install itself, and the initrd's host key.
pub const PROGRAMS: &[Program] = &[
    Program::target("nix", "nix", "nix-bin", "checking the flake's configuration against the plan (nix eval)"),
    Program::target("nixos-install", "nixos-install", "", "installing NixOS"),
    Program::target("ssh-keygen", "openssh", "openssh-client", "the initrd's SSH host key for remote unlock"),
    Program::target("nix-instantiate", "nix", "nix-bin", "import-disko: evaluating a disko configuration"),
];

/// Where the NixOS module for a layout is written, relative to the target root.
pub const NIXOS_MODULE_PATH: &str = "etc/nixos/nix-dabei.nix";

/// Write the NixOS module that describes this layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteNixosModule {
    /// Where, including the target root.
    pub path: String,
    /// `/` is a tmpfs: the file lasts only until the target is unmounted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub root_in_memory: bool,
}

impl OperationKind for WriteNixosModule {
    fn destroys_data(&self) -> bool {
        false
    }

    fn creates(&self) -> bool {
        true
    }

    fn review(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "write {}", self.path)
    }
}

/// Generate the SSH host key the installed system's initrd uses for remote unlock. It is made on the
/// target and never leaves it: nixos-install copies it into the initrd (`boot.initrd.secrets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitrdHostKey {
    /// The private key's path, including the target root.
    pub path: String,
}

impl OperationKind for InitrdHostKey {
    fn destroys_data(&self) -> bool {
        false
    }

    fn creates(&self) -> bool {
        true
    }

    fn command(&self) -> Option<CommandLine> {
        Some(CommandLine::new("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "initrd", "-f", &self.path]))
    }
}

/// Install NixOS from a flake into the target root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NixosInstall {
    /// The target root.
    pub root: String,
    /// Flake reference.
    pub flake: String,
    /// The flake's system, built elsewhere and copied into the target's store: installed as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

impl OperationKind for NixosInstall {
    /// The flake is checked against the plan with `nix eval` before the first write.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["nixos-install", "nix"]
    }

    fn destroys_data(&self) -> bool {
        false
    }

    fn creates(&self) -> bool {
        true
    }

    fn command(&self) -> Option<CommandLine> {
        // nixos-install --system sets the target's system profile to a path already in its store and
        // installs the boot loader from it, without evaluating anything (pkgs/by-name/ni/nixos-install/
        // nixos-install.sh in nixpkgs).
        let (source, value) = match &self.system {
            Some(system) => ("--system", system),
            None => ("--flake", &self.flake),
        };
        let args = ["--root", &self.root, source, value, "--no-root-passwd", "--no-channel-copy"];
        Some(CommandLine::new("nixos-install", args))
    }
}

/// Swap that is not inside LUKS would write what the install holds in memory (passphrases among it) to
/// the disk in the clear: it is turned on only once the install is done.
fn is_clear_swap(operation: &Operation) -> bool {
    matches!(operation, Operation::Swapon(swapon) if !swapon.device.starts_with("/dev/mapper/"))
}

/// The module step after every mount and encrypted swap, the install after it when the plan names a
/// flake, and swap in the clear last.
pub(crate) fn compile(build: &mut Builder<'_>) {
    // A plan of data disks mounts nothing at the target root: there is no system to write a module into
    // (validation makes a plan that installs have a root).
    let Some(root_mount) = build.steps.iter().find(|s| s.id == "mount:/") else { return };
    let root_in_memory =
        matches!(&root_mount.operation, Operation::Mount(m) if NODEV_TYPES.contains(&m.fs_type.as_str()));
    let after: Vec<String> = build
        .steps
        .iter()
        .filter(|s| matches!(s.operation, Operation::Mount(_) | Operation::Swapon(_)) && !is_clear_swap(&s.operation))
        .map(|s| s.id.clone())
        .collect();
    let root = build.options.target.clone();
    let path = format!("{}/{NIXOS_MODULE_PATH}", root.trim_end_matches('/'));
    let module = build.push(
        "nixos-module".to_string(),
        format!("Write the NixOS module for this layout to {path}"),
        vec![],
        None,
        after,
        Operation::WriteNixosModule(WriteNixosModule { path, root_in_memory }),
    );
    let mut before_install = vec![module.clone()];
    if build.plan.remote_unlock.is_some() {
        let path = format!("{}{}", root.trim_end_matches('/'), crate::boot::INITRD_HOST_KEY);
        before_install.push(build.push(
            "initrd-host-key".to_string(),
            format!("Generate the initrd's SSH host key for remote unlock at {path}"),
            vec![],
            None,
            vec![module.clone()],
            Operation::InitrdHostKey(InitrdHostKey { path }),
        ));
    }
    let last = match build.plan.flake.clone() {
        Some(flake) => build.push(
            "nixos-install".to_string(),
            match &build.options.system {
                Some(system) => format!("Install NixOS {system} (built from {flake}) into {root}"),
                None => format!("Install NixOS from {flake} into {root}"),
            },
            vec![],
            None,
            before_install,
            Operation::NixosInstall(NixosInstall { root, flake, system: build.options.system.clone() }),
        ),
        None => before_install.pop().unwrap_or(module),
    };
    for step in build.steps.iter_mut().filter(|s| is_clear_swap(&s.operation)) {
        step.after.push(last.clone());
    }
}
