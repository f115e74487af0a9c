//! A scenario's manifest, `scenario.toml`: what the harness reads from a scenario's folder.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use vm_tests::vm::{Bus, DiskSpec};

/// The manifest's name in a scenario's folder.
pub const FILE: &str = "scenario.toml";

/// What `scenario.toml` holds. Unknown keys are refused, so that a misspelt one fails the load rather
/// than being ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The disks besides the bystander, in the order they are attached.
    pub disks: Vec<Disk>,
    /// The boot scripts, relative to the scenario's folder, one per boot.
    pub boots: Vec<String>,
    /// The check on the host of what the guest reported (`checks::by_name`).
    pub check: Option<String>,
    /// What the host does while the guest runs (`drivers::by_name`).
    pub driver: Option<String>,
    /// What the host puts into the share before the first boot (`drivers::preparation`).
    pub prepare: Option<String>,
    /// Boots (from 1) that end by losing power on purpose.
    #[serde(default)]
    pub power_loss_boots: Vec<u32>,
    /// Guest memory in MiB, where the scenario proves a figure.
    pub memory_mib: Option<u32>,
    /// How long each boot may take, in seconds, where longer than the harness's limit.
    pub boot_limit_seconds: Option<u64>,
    /// A boot run again and again.
    pub repeat: Option<Repeat>,
    /// Files from elsewhere in the checkout (relative to the scenario's folder) the guest reads as
    /// `/host/scenario/<name>`.
    #[serde(default)]
    pub copy: Vec<String>,
}

/// A disk of the manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Its serial number (the guest's `/dev/disk/by-id/` name follows from it and the bus).
    pub serial: String,
    /// Its size: a number of bytes with a suffix K, M or G (binary units).
    pub size: String,
    /// `virtio` (the default), `nvme` or `scsi`.
    pub bus: Option<String>,
}

/// A boot (from 1, one that loses power) run again until the guest leaves `until` in the share, at most
/// `at_most` times.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub boot: u32,
    pub until: String,
    pub at_most: u32,
}

impl Manifest {
    /// Parses a manifest and checks what refers to its own boots.
    pub fn parse(text: &str) -> Result<Manifest> {
        let manifest: Manifest = toml::from_str(text)?;
        if manifest.boots.is_empty() {
            bail!("no boots");
        }
        let boots = manifest.boots.len() as u32;
        for boot in &manifest.power_loss_boots {
            if !(1..=boots).contains(boot) {
                bail!("power_loss_boots names boot {boot} of {boots}");
            }
        }
        if let Some(repeat) = &manifest.repeat {
            if !manifest.power_loss_boots.contains(&repeat.boot) {
                bail!(
                    "repeat.boot {} is not one of power_loss_boots: a repeated boot ends by losing power",
                    repeat.boot
                );
            }
        }
        Ok(manifest)
    }

    /// The disks as the VM runner takes them.
    pub fn disk_specs(&self) -> Result<Vec<DiskSpec>> {
        self.disks
            .iter()
            .map(|disk| {
                let bus = match disk.bus.as_deref() {
                    None | Some("virtio") => Bus::Virtio,
                    Some("nvme") => Bus::Nvme,
                    Some("scsi") => Bus::Scsi,
                    Some(other) => bail!("disk {}: bus {other:?} is not virtio, nvme or scsi", disk.serial),
                };
                let size = parse_size(&disk.size).with_context(|| format!("disk {}", disk.serial))?;
                Ok(DiskSpec { serial: disk.serial.clone(), size, bus })
            })
            .collect()
    }
}

/// "3G" as bytes (binary units: K, M, G).
fn parse_size(text: &str) -> Result<u64> {
    let (number, unit) = text.split_at(text.trim_end_matches(['K', 'M', 'G']).len());
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => bail!("size {text:?} has more than one unit"),
    };
    let number: u64 = number.parse().with_context(|| format!("size {text:?} is not a number with K, M or G"))?;
    number.checked_shl(shift).filter(|bytes| bytes >> shift == number).context("size too large")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary_units() {
        assert_eq!(parse_size("3G").expect("3G"), 3 << 30);
        assert_eq!(parse_size("512M").expect("512M"), 512 << 20);
        assert_eq!(parse_size("4096").expect("4096"), 4096);
        assert!(parse_size("3GB").is_err());
        assert!(parse_size("G").is_err());
    }

    #[test]
    fn a_misspelt_key_or_a_boot_out_of_range_is_refused() {
        let disks = "disks = [{ serial = \"a\", size = \"1G\" }]\n";
        assert!(Manifest::parse(&format!("{disks}boots = [\"a.sh\"]\ncheck = \"layout\"\n")).is_ok());
        assert!(Manifest::parse(&format!("{disks}boots = [\"a.sh\"]\nchek = \"layout\"\n")).is_err());
        assert!(Manifest::parse(&format!("{disks}boots = [\"a.sh\"]\npower_loss_boots = [2]\n")).is_err());
        let repeat = "[repeat]\nboot = 1\nuntil = \"out/x\"\nat_most = 3\n";
        assert!(Manifest::parse(&format!("{disks}boots = [\"a.sh\"]\n{repeat}")).is_err());
    }
}
