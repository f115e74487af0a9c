//! bcachefs: the format over every device and the subvolumes, refused before anything is written when the
//! running kernel has no bcachefs.

use layouts::steps::{BcachefsFormat, BcachefsSubvolumes, Mount};

use super::{blank_or, Perform, ProbeContext, RunContext};
use crate::execute::{Outlook, StepError};
use crate::secret::Secret;
use crate::system::System;

/// Why the running kernel cannot make or mount bcachefs, if it cannot: bcachefs is listed in
/// /proc/filesystems once built in or loaded.
fn kernel_lacks_bcachefs(system: &dyn System) -> Option<String> {
    match system.read_file("/proc/filesystems") {
        Ok(list) if list.lines().any(|l| l.split_whitespace().last() == Some("bcachefs")) => None,
        Ok(_) => {
            let release = system.read_file("/proc/sys/kernel/osrelease").unwrap_or_default();
            let release = if release.trim().is_empty() { "unknown" } else { release.trim() };
            Some(format!(
                "the running kernel, Linux {release}, has no bcachefs (/proc/filesystems does not list it; load \
                 its module first if it has one): mainline Linux carried bcachefs from 6.7 to 6.16, and Debian 12's \
                 6.1 never did"
            ))
        }
        Err(error) => Some(format!("cannot read /proc/filesystems: {error}")),
    }
}

impl Perform for BcachefsFormat {
    /// Refused on a kernel without bcachefs; done when every device carries this plan's filesystem.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        if let Some(why) = kernel_lacks_bcachefs(cx.system) {
            return Outlook::Conflict(why);
        }
        let mut all_done = true;
        for device in &self.devices {
            match blank_or(cx, &device.device, "bcachefs", Some(&self.uuid)) {
                Outlook::Done(_) => {}
                Outlook::Todo { .. } => all_done = false,
                conflict => return conflict,
            }
        }
        if all_done {
            Outlook::Done(format!("every device carries this plan's bcachefs {}", self.filesystem))
        } else {
            Outlook::Todo { destroys: true }
        }
    }

    /// An encrypted filesystem gets the passphrase on standard input, twice (bcachefs asks to confirm it).
    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        let line = cx.step.operation.command().ok_or_else(|| StepError::Conflict("no command".into()))?;
        let input = if self.encrypted {
            let passphrase = cx.secrets.key("prompt")?;
            let mut twice = Vec::with_capacity(passphrase.expose().len() * 2 + 2);
            for _ in 0..2 {
                twice.extend_from_slice(passphrase.expose());
                twice.push(b'\n');
            }
            Some(Secret::new(twice))
        } else {
            None
        };
        cx.system.run(&line, input.as_ref())?;
        cx.system.settle();
        Ok(())
    }

    /// No earlier step gives the kernel bcachefs: refused in the preview, before anything is written.
    fn taken_by_others(&self, cx: &ProbeContext<'_>) -> Option<String> {
        kernel_lacks_bcachefs(cx.system)
    }
}

/// The filesystem mounted at the step's private mountpoint while it lives; unmounted on drop.
struct Mounted<'a> {
    system: &'a dyn System,
    target: String,
}

impl<'a> Mounted<'a> {
    fn new(system: &'a dyn System, op: &BcachefsSubvolumes, read_only: bool) -> std::io::Result<Self> {
        let target = op.private_mountpoint();
        if system.mounted_at(&target)?.is_some() {
            system.unmount(&target)?;
        } else {
            system.create_private_dir(&target)?;
        }
        let options = if read_only { vec!["ro".to_string()] } else { vec![] };
        system.mount(&Mount {
            source: op.source.clone(),
            target: target.clone(),
            fs_type: "bcachefs".into(),
            options,
        })?;
        Ok(Mounted { system, target })
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = self.system.unmount(&self.target);
    }
}

fn missing(system: &dyn System, op: &BcachefsSubvolumes) -> Vec<String> {
    let top = op.private_mountpoint();
    op.subvolumes.iter().filter(|s| !system.exists(&format!("{top}/{s}"))).cloned().collect()
}

impl Perform for BcachefsSubvolumes {
    /// Refused on a kernel without bcachefs; done when every subvolume is there (read with the filesystem
    /// mounted read-only); to do before the filesystem exists.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        if let Some(why) = kernel_lacks_bcachefs(cx.system) {
            return Outlook::Conflict(why);
        }
        let first = self.source.split(':').next().unwrap_or_default();
        if !cx.system.exists(first) {
            return Outlook::Todo { destroys: false };
        }
        match Mounted::new(cx.system, self, true) {
            Ok(_mounted) if missing(cx.system, self).is_empty() => Outlook::Done("every subvolume is there".into()),
            Ok(_) => Outlook::Todo { destroys: false },
            // Not mountable yet: the format is still to come.
            Err(_) => Outlook::Todo { destroys: false },
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        let _mounted = Mounted::new(cx.system, self, false)
            .map_err(|source| StepError::Io { action: format!("mount {}", self.source), source })?;
        for subvolume in missing(cx.system, self) {
            cx.system.run(&self.create_command(&subvolume), None)?;
        }
        Ok(())
    }

    fn taken_by_others(&self, cx: &ProbeContext<'_>) -> Option<String> {
        kernel_lacks_bcachefs(cx.system)
    }
}
