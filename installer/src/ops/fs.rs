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
        let found = blank_or(cx.system, device, self.format.fs_type(), Some(&self.blkid_uuid()));
        if !matches!(found, Outlook::Done(_)) {
            return found;
        }
        // A filesystem on several devices is whole only when every one of them carries it.
        for more in &self.more_devices {
            match blank_or(cx.system, more, self.format.fs_type(), Some(&self.blkid_uuid())) {
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
        let check = self.check_command();
        let fs_type = self.format.fs_type();
        let failed_code = match cx.system.run(&check, None) {
            Ok(output) if self.check_passes(&output) => {
                return Outlook::Done(format!("{device} holds this plan's {fs_type}, whole (`{check}`)"))
            }
            Ok(_) => None,
            Err(CommandError::Failed { code, .. }) => code,
            Err(error) => return Outlook::Conflict(format!("cannot check the filesystem on {device}: {error}")),
        };
        // A filesystem that was mounted before is whole (its making finished); a crash may have left it
        // failing the check. Only one that never was is half-made, and made again.
        let used = match self.used_marker() {
            UsedMarker::ByteBit { offset, bit } => {
                cx.system.read_bytes(device, offset, 1).map(|b| b[0] & (1 << bit) != 0)
            }
            UsedMarker::NonZeroU16 { offset } => {
                cx.system.read_bytes(device, offset, 2).map(|b| u16::from_le_bytes([b[0], b[1]]) > 0)
            }
            UsedMarker::CheckExitCode(code) => Ok(failed_code == Some(code)),
            _ => Ok(false),
        };
        match used {
            Ok(true) => Outlook::Done(format!(
                "{device} holds this plan's {fs_type}, mounted before (`{check}` wants a repair)"
            )),
            Ok(false) => Outlook::Todo { destroys: true },
            Err(error) => Outlook::Conflict(format!("cannot read {device}: {error}")),
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)
    }
}
