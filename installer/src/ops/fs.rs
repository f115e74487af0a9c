//! Making filesystems, and growing kept ones.

use layouts::nodes::filesystem::{UsedMarker, WholeCheck};
use layouts::nodes::mount::Mount;
use layouts::size::human;
use layouts::steps::{GrowFs, Mkfs};
use layouts::Format;

use super::{blank_or, io, run_own_command, Perform, PrivateMount, ProbeContext, RunContext};
use crate::command::CommandError;
use crate::execute::{Outlook, StepError};

impl Perform for Mkfs {
    /// Done only when the device holds this plan's filesystem (its UUID is derived from the plan) and the
    /// filesystem is whole: a run cut inside mkfs leaves a signature blkid reads but a filesystem that
    /// never mounts. Such a half-made filesystem is the plan's own, so it is made again.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let device = &self.device;
        let found = blank_or(cx, device, self.format.fs_type(), Some(&self.blkid_uuid()));
        if self.format == Format::Exfat {
            if let Some(outlook) = exfat_unfinished(self, cx, &found) {
                return outlook;
            }
        }
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
        let check = match self.whole_check() {
            WholeCheck::Read => {
                return match cx.system.filesystem_whole(self.format, device) {
                    Ok(Ok(())) => Outlook::Done(format!("{device} holds this plan's {fs_type}, whole")),
                    // Only a filesystem that never was mounted is half-made (the marker above), and made again.
                    Ok(Err(_)) => Outlook::Todo { destroys: true },
                    Err(error) => Outlook::Conflict(format!("cannot read the filesystem on {device}: {error}")),
                };
            }
            WholeCheck::Program(check) => check,
        };
        let failed_code = match cx.system.run(&check, None) {
            Ok(_) => return Outlook::Done(format!("{device} holds this plan's {fs_type}, whole (`{check}`)")),
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
        run_own_command(cx)?;
        for command in self.follow_up() {
            cx.system.run(&command, None)?;
        }
        Ok(())
    }
}

/// exFAT is made in three runs (mkfs.exfat cannot set a serial: [`Mkfs::follow_up`]); a cut between
/// them leaves this plan's exFAT unfinished, with mkfs's serial or without the plan's label, and it is made
/// again. The marker label ([`Mkfs::exfat_marker`], derived from the plan's serial) tells it from
/// anyone else's exFAT, which stays a conflict. `None` when what [`blank_or`] found stands.
fn exfat_unfinished(op: &Mkfs, cx: &ProbeContext<'_>, found: &Outlook) -> Option<Outlook> {
    if !matches!(found, Outlook::Conflict(_) | Outlook::Done(_)) {
        return None;
    }
    let signatures = cx.signatures(&op.device).ok()?;
    let exfat = signatures.iter().find(|s| s.kind == "exfat")?;
    let marked = exfat.label.as_deref() == Some(op.exfat_marker().as_str());
    marked.then_some(Outlook::Todo { destroys: true })
}

/// How much larger the partition is than the filesystem on it, when by more than the filesystem's slack.
/// The partition's size is the larger of what it is and what the plan's table makes it: a review before
/// the table grows shows the growth to come.
fn room_to_grow(cx: &ProbeContext<'_>, op: &GrowFs) -> Result<Option<(u64, u64)>, String> {
    let (system, device) = (cx.system, &op.device);
    let (now, _) = system.device_geometry(device).map_err(|e| format!("cannot read the size of {device}: {e}"))?;
    let planned = cx.steps.iter().find_map(|step| match &step.operation {
        layouts::Operation::PartitionTable(table) => {
            let sector = u64::from(table.logical_sector_size);
            table.partitions.iter().find(|p| p.device == *device).map(|p| p.extent.sectors() * sector)
        }
        _ => None,
    });
    let partition = now.max(planned.unwrap_or(0));
    let (offset, length) = op.superblock();
    let superblock =
        system.read_bytes(device, offset, length).map_err(|e| format!("cannot read {device}'s superblock: {e}"))?;
    let fs_type = op.format.fs_type();
    let (size, slack) = op
        .size_and_slack(&superblock)
        .ok_or_else(|| format!("{device} holds no {fs_type} superblock that says its size"))?;
    Ok((partition > size.saturating_add(slack)).then_some((size, partition)))
}

impl Perform for GrowFs {
    /// Done when the filesystem fills its partition (but for its slack: see `GrowFs::size_and_slack`); a
    /// change when the partition is larger, which it is once grown into free space. The step before
    /// (the filesystem's) has checked that it is the plan's, by its UUID.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        match room_to_grow(cx, self) {
            Ok(None) => Outlook::Done(format!("the {} on {} fills its partition", self.format.fs_type(), self.device)),
            Ok(Some((size, partition))) => Outlook::Change(format!(
                "the {} on {} grows from {} to fill its partition of {}: {}",
                self.format.fs_type(),
                self.device,
                human(size),
                human(partition),
                cx.step.operation
            )),
            Err(why) => Outlook::Conflict(why),
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        let system = cx.system;
        let mounted = system.is_mounted(&self.device).map_err(io("read the mount table".into()))?;
        if self.format == layouts::Format::Ext4 {
            for command in self.commands(mounted) {
                system.run(&command, None)?;
            }
            return Ok(());
        }
        // xfs and btrfs grow while mounted: privately, for as long as it takes.
        let target = self.private_mountpoint();
        let fs_type = self.format.fs_type().to_string();
        let mount = Mount { source: self.device.clone(), target: target.clone(), fs_type, options: Vec::new() };
        let _mounted = PrivateMount::new(system, mount).map_err(io(format!("mount {} at {target}", self.device)))?;
        for command in self.commands(true) {
            system.run(&command, None)?;
        }
        Ok(())
    }
}
