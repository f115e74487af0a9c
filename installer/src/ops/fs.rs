//! Making filesystems.

use layouts::nodes::filesystem::UsedMarker;
use layouts::steps::Mkfs;

use super::{blank_or, run_own_command, Perform, ProbeContext, RunContext};
use crate::command::CommandError;
use crate::execute::{Outlook, StepError};

impl Perform for Mkfs {
    /// Done only when the device holds this plan's filesystem (its UUID is derived from the plan) and the
    /// filesystem is whole: a run cut inside mkfs leaves a signature blkid reads but a filesystem that
    /// never mounts. Such a half-made filesystem is the plan's own, so it is made again.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let device = &self.device;
        let found = blank_or(cx, device, self.format.fs_type(), Some(&self.blkid_uuid()));
        if !matches!(found, Outlook::Done(_)) {
            return found;
        }
        // A filesystem on several devices is whole only when every one of them carries it.
        for more in &self.more_devices {
            match blank_or(cx, more, self.format.fs_type(), Some(&self.blkid_uuid())) {
                Outlook::Done(_) => {}
                other => return other,
            }
        }
        // A mounted filesystem is whole (the kernel took it); checking it while in use would mislead.
        match cx.system.is_mounted(device) {
            Ok(true) => return found,
            Ok(false) => {}
            Err(error) => return Outlook::Conflict(format!("cannot read the mount table: {error}")),
        }
        // A filesystem that was mounted before is whole (its making finished), even where a crash left it
        // failing the check; where a marker on disk says so, the check (a whole fsck) is not needed.
        let marked = match self.used_marker() {
            UsedMarker::ByteBit { offset, bit } => {
                cx.system.read_bytes(device, offset, 1).map(|b| b[0] & (1 << bit) != 0)
            }
            UsedMarker::NonZeroU16 { offset } => {
                cx.system.read_bytes(device, offset, 2).map(|b| u16::from_le_bytes([b[0], b[1]]) > 0)
            }
            _ => Ok(false),
        };
        let fs_type = self.format.fs_type();
        match marked {
            Ok(true) => return Outlook::Done(format!("{device} holds this plan's {fs_type}, mounted before")),
            Ok(false) => {}
            Err(error) => return Outlook::Conflict(format!("cannot read {device}: {error}")),
        }
        let check = self.check_command();
        let failed_code = match cx.system.run(&check, None) {
            Ok(output) if self.check_passes(&output) => {
                return Outlook::Done(format!("{device} holds this plan's {fs_type}, whole (`{check}`)"))
            }
            Ok(_) => None,
            Err(CommandError::Failed { code, .. }) => code,
            Err(error) => return Outlook::Conflict(format!("cannot check the filesystem on {device}: {error}")),
        };
        // Only a filesystem that never was mounted is half-made, and made again.
        match self.used_marker() {
            UsedMarker::CheckExitCode(code) if failed_code == Some(code) => Outlook::Done(format!(
                "{device} holds this plan's {fs_type}, mounted before (`{check}` wants a repair)"
            )),
            _ => Outlook::Todo { destroys: true },
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)
    }
}
