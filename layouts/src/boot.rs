//! How the installed system boots: the firmware it is laid out for (UEFI, legacy BIOS or both), the
//! kernel modules its initrd needs to find the disks, and unlocking encrypted disks over SSH.
//!
//! These are plan-wide settings. They change which partitions presets make (a BIOS boot partition for
//! GRUB's core image on GPT), what the NixOS module says about the boot loader, and what `nix-dabei
//! install` checks in the flake before installing.

use serde::{Deserialize, Serialize};

use crate::error::{shown, FieldPath};
use crate::model::{Content, Plan};
use crate::validate::Checker;

/// The firmware the installed system boots with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    /// UEFI: GRUB (or systemd-boot) on every ESP.
    #[default]
    Uefi,
    /// Legacy BIOS: GRUB's core image in a BIOS boot partition (`bios-boot`, EF02) of every boot disk.
    Bios,
    /// Both: a BIOS boot partition and an ESP on every boot disk, so that the machine boots whichever
    /// way its firmware is set.
    Both,
}

impl BootMode {
    /// Whether the installed system boots with UEFI firmware.
    pub fn uefi(self) -> bool {
        self != BootMode::Bios
    }

    /// Whether the installed system boots with legacy BIOS firmware.
    pub fn bios(self) -> bool {
        self != BootMode::Uefi
    }

    /// The mode for the firmware this machine booted with: UEFI when the kernel shows EFI variables
    /// support (`/sys/firmware/efi`), both otherwise, since a BIOS machine may be switched to UEFI later.
    pub fn for_firmware(booted_with_uefi: bool) -> Self {
        if booted_with_uefi {
            BootMode::Uefi
        } else {
            BootMode::Both
        }
    }

    /// The plan file's spelling.
    pub fn name(self) -> &'static str {
        match self {
            BootMode::Uefi => "uefi",
            BootMode::Bios => "bios",
            BootMode::Both => "both",
        }
    }
}

/// Unlocking the encrypted disks over SSH while the installed system's initrd waits for the passphrase,
/// for machines without a console.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteUnlock {
    /// Public keys (`authorized_keys` lines without options) allowed to log into the initrd.
    pub authorized_keys: Vec<String>,
    /// The port the initrd's SSH server listens on.
    #[serde(default = "default_unlock_port")]
    pub port: u16,
    /// Kernel modules of the network cards the initrd brings up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_kernel_modules: Vec<String>,
}

fn default_unlock_port() -> u16 {
    22
}

/// Where the installed system keeps the initrd's SSH host key; generated during the install, never
/// part of a plan.
pub const INITRD_HOST_KEY: &str = "/etc/secrets/initrd/ssh_host_ed25519_key";

/// Whether `name` may be a kernel module name.
fn valid_module_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Whether `line` is one public key in `authorized_keys` form without options: a key type, base64 and an
/// optional comment, on one line.
pub fn valid_public_key(line: &str) -> bool {
    let mut fields = line.split_whitespace();
    let (Some(kind), Some(key)) = (fields.next(), fields.next()) else {
        return false;
    };
    let known = kind.starts_with("ssh-") || kind.starts_with("ecdsa-sha2-") || kind.starts_with("sk-");
    let base64 = key.len() >= 16 && key.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
    known && base64 && !line.contains(['\n', '\r', '"', '\\', '$']) && !line.chars().any(char::is_control)
}

/// Whether anything in the plan asks for a passphrase at boot.
fn asks_at_boot(plan: &Plan) -> bool {
    plan.needs_passphrase() || plan.contents().iter().any(|(_, content)| matches!(content, Content::Luks(_)))
}

impl Checker {
    /// Checks the boot settings: a BIOS boot partition on a disk for `bios`/`both`, an ESP for
    /// `uefi`/`both`, module names, and remote unlock keys.
    pub(crate) fn boot(&mut self, plan: &Plan) {
        let root = FieldPath::root();
        let Some(boot) = plan.boot else {
            self.unlock(plan);
            return;
        };
        let has_esp = plan.disks.values().flat_map(|d| d.partitions.values()).any(|p| p.is_esp());
        let has_bios_boot = plan.disks.values().any(crate::model::Disk::boots_bios);
        if boot.uefi() && !has_esp {
            let message = format!(
                "boot = {:?} needs an EFI system partition: a vfat filesystem mounted at /boot with type \"esp\"",
                boot.name()
            );
            self.report(root.join("boot"), message);
        }
        if boot.bios() && !has_bios_boot {
            let message = format!(
                "boot = {:?} needs a BIOS boot partition for GRUB: a partition of type \"bios-boot\" (1M) on \
                 every disk GRUB goes on, or an MBR table (table = \"msdos\")",
                boot.name()
            );
            self.report(root.join("boot"), message);
        }
        self.unlock(plan);
    }

    /// Checks the initrd's kernel modules and remote unlock.
    fn unlock(&mut self, plan: &Plan) {
        let root = FieldPath::root();
        for (index, module) in plan.initrd_kernel_modules.iter().enumerate() {
            if !valid_module_name(module) {
                let message = format!("{} is not a kernel module name", shown(module));
                self.report(root.join("initrd_kernel_modules").join(format!("[{index}]")), message);
            }
        }
        if let Some(unlock) = &plan.remote_unlock {
            let path = root.join("remote_unlock");
            if !asks_at_boot(plan) {
                self.report(
                    path.clone(),
                    "nothing in the plan is encrypted with a passphrase: there is nothing to unlock",
                );
            }
            if unlock.authorized_keys.is_empty() {
                self.report(
                    path.join("authorized_keys"),
                    "give at least one public key, or nobody can log into the initrd to unlock",
                );
            }
            for (index, key) in unlock.authorized_keys.iter().enumerate() {
                if !valid_public_key(key) {
                    let message =
                        format!("{} is not one public key (type, base64 key, comment; no options)", shown(key));
                    self.report(path.join("authorized_keys").join(format!("[{index}]")), message);
                }
            }
            if unlock.port == 0 {
                self.report(path.join("port"), "0 is not a port");
            }
            for (index, module) in unlock.network_kernel_modules.iter().enumerate() {
                if !valid_module_name(module) {
                    let message = format!("{} is not a kernel module name", shown(module));
                    self.report(path.join("network_kernel_modules").join(format!("[{index}]")), message);
                }
            }
        }
    }
}

/// The public key of an `authorized_keys` line, without the options before it (`command="..."`,
/// `no-pty`, ...): cloud images put `command="echo Please login as ..."` on root's keys, which would lock
/// root out of anything that copied them with the options. `None` for comments, blank and odd lines.
pub fn public_key(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    if valid_public_key(line) {
        return Some(line.to_string());
    }
    // Options end at the first blank outside double quotes.
    let mut quoted = false;
    let mut escaped = false;
    for (index, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                let rest = line[index..].trim();
                return valid_public_key(rest).then(|| rest.to_string());
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop";

    #[test]
    fn options_are_stripped_from_authorized_keys_lines() {
        assert_eq!(public_key(KEY).as_deref(), Some(KEY));
        let cloud = format!(
            "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command=\"echo 'Please login as the user \
             \\\"debian\\\" rather than the user \\\"root\\\".';echo;sleep 10;exit 142\" {KEY}"
        );
        assert_eq!(public_key(&cloud).as_deref(), Some(KEY));
        assert_eq!(public_key(&format!("restrict,from=\"10.0.0.0/8\" {KEY}")).as_deref(), Some(KEY));
        assert_eq!(public_key("# a comment"), None);
        assert_eq!(public_key(""), None);
        assert_eq!(public_key("command=\"ssh-ed25519 AAAA\" nothing"), None);
    }
}
