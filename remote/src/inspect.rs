//! What the far side is: read from the key=value lines of [`crate::script::inspect`].

use serde::Serialize;

/// Whether the far side can kexec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kexec {
    /// The kernel has kexec and allows loading.
    Available,
    /// `kernel.kexec_load_disabled` is set (until the next reboot).
    Disabled,
    /// The kernel was built without kexec.
    Missing,
}

/// The far side as inspected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// The operating system's name (`PRETTY_NAME`).
    pub os: String,
    /// The running kernel's release.
    pub kernel: String,
    /// The machine architecture (`uname -m`).
    pub arch: String,
    /// Memory in KiB.
    pub memory_total_kib: u64,
    /// Memory available in KiB.
    pub memory_available_kib: u64,
    /// `uefi` or `bios`.
    pub firmware: String,
    /// Whether it can kexec.
    pub kexec: Kexec,
    /// Whether it runs the nix-dabei RAM OS already.
    pub ram_os: bool,
    /// The boot id, to tell a new boot from this one.
    pub boot_id: String,
    /// nix-dabei on the far side's PATH, if any.
    pub nix_dabei: Option<String>,
}

/// The inspection's output lacked a line.
#[derive(Debug, thiserror::Error)]
#[error("the far side's inspection has no {0} (the script's output was: {1})")]
pub struct Incomplete(pub &'static str, pub String);

impl Inspection {
    /// Reads the script's output; every line but `nix_dabei` must be there.
    pub fn parse(output: &str) -> Result<Inspection, Incomplete> {
        let value = |key: &'static str| -> Result<String, Incomplete> {
            output
                .lines()
                .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
                .map(|v| v.trim().to_string())
                .ok_or_else(|| Incomplete(key, output.to_string()))
        };
        let number = |key: &'static str| -> Result<u64, Incomplete> {
            value(key)?.parse().map_err(|_| Incomplete(key, output.to_string()))
        };
        let kexec = match value("kexec")?.as_str() {
            "available" => Kexec::Available,
            "disabled" => Kexec::Disabled,
            "missing" => Kexec::Missing,
            _ => return Err(Incomplete("kexec", output.to_string())),
        };
        Ok(Inspection {
            os: value("os")?,
            kernel: value("kernel")?,
            arch: value("arch")?,
            memory_total_kib: number("memory_total_kib")?,
            memory_available_kib: number("memory_available_kib")?,
            firmware: value("firmware")?,
            kexec,
            ram_os: value("ram_os")? == "yes",
            boot_id: value("boot_id")?,
            nix_dabei: value("nix_dabei").ok().filter(|v| !v.is_empty()),
        })
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "{} ({}, kernel {}), {} MiB of memory ({} MiB available), {} firmware, kexec {}{}",
            self.os,
            self.arch,
            self.kernel,
            self.memory_total_kib / 1024,
            self.memory_available_kib / 1024,
            self.firmware.to_uppercase(),
            match self.kexec {
                Kexec::Available => "available",
                Kexec::Disabled => "disabled (kernel.kexec_load_disabled)",
                Kexec::Missing => "not in this kernel",
            },
            if self.ram_os { "; runs the nix-dabei RAM OS" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inspection_reads_every_line_and_refuses_a_missing_one() {
        let output = "os=Debian GNU/Linux 12 (bookworm)\nkernel=6.1.0-56-amd64\narch=x86_64\n\
                      memory_total_kib=400576\nmemory_available_kib=205928\nfirmware=bios\nkexec=available\n\
                      ram_os=no\nboot_id=abc\n";
        let inspection = Inspection::parse(output).expect("parses");
        assert_eq!(inspection.memory_total_kib, 400576);
        assert_eq!(inspection.kexec, Kexec::Available);
        assert!(!inspection.ram_os && inspection.nix_dabei.is_none());
        assert!(inspection.summary().contains("391 MiB of memory"), "{}", inspection.summary());
        let error = Inspection::parse(&output.replace("kexec=available\n", "")).expect_err("kexec is missing");
        assert!(error.to_string().contains("has no kexec"), "{error}");
    }
}
