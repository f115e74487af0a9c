//! How each operation is probed and performed: one module per node type, beside the operation types in
//! `layouts::nodes`. Every probe says whether its step is done, still to do, or in conflict with what
//! is on the machine; every perform goes through the [`System`] seam and, where it runs a program, runs
//! exactly the command line the step prints ([`layouts::OperationKind::command`]).
//!
//! A new operation type implements [`Perform`] here and gets one line in [`of`].

mod bcachefs;
mod btrfs;
mod fs;
mod gpt;
mod install;
mod luks;
mod lvm;
mod mdadm;
mod mount;
mod swap;
mod zfs;

use layouts::steps::{Operation, Step};
use layouts::Plan;

use crate::events::Event;
use crate::execute::{Options, Outlook, Secrets, StepError};
use crate::journal::Journal;
use crate::reports::Reports;
use crate::system::System;
use crate::tools::zfs::Zfs;

/// What a probe may look at.
#[derive(Clone, Copy)]
pub(crate) struct ProbeContext<'a> {
    pub system: &'a dyn System,
    pub plan: &'a Plan,
    /// Every step of the run, for probes that judge a step by another (a wipe by its partition table).
    pub steps: &'a [Step],
    pub journal: &'a Journal,
    /// ZFS as read since the last write.
    pub zfs: &'a Zfs<'a>,
    /// Report programs' outputs since the last write.
    pub reports: &'a Reports,
    /// The step being probed.
    pub step: &'a Step,
}

impl ProbeContext<'_> {
    /// The signatures on a device, as read since the last write ([`Reports::signatures`]).
    pub fn signatures(&self, device: &str) -> Result<Vec<partitioner::Signature>, partitioner::DiskError> {
        self.reports.signatures(self.system, device)
    }
}

/// What performing a step may use.
#[derive(Clone, Copy)]
pub(crate) struct RunContext<'a> {
    pub system: &'a dyn System,
    pub plan: &'a Plan,
    pub options: &'a Options,
    pub secrets: &'a Secrets,
    pub emit: &'a (dyn Fn(Event) + Sync),
    /// Every step of the run.
    pub steps: &'a [Step],
    /// The run's journal, for what a step learns (a pool's GUID).
    pub journal: &'a std::sync::Mutex<Journal>,
    /// ZFS as read since the last write.
    pub zfs: &'a Zfs<'a>,
    /// The step being performed.
    pub step: &'a Step,
}

/// The executor's side of an operation type.
pub(crate) trait Perform {
    /// Whether the step is done, to do, or conflicts with the machine. Reads only.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook;
    /// Does the step.
    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError>;

    /// A conflict that holds whatever the steps before this one do: a name or a place this step needs is
    /// already held by something outside the plan (a pool of the same name, a mapping, a mount).
    fn taken_by_others(&self, _cx: &ProbeContext<'_>) -> Option<String> {
        None
    }

    /// What its probe reads whatever the machine holds: the preview reads it ahead, while the disks are
    /// discovered, and keeps it for the probes that ask (until something is written).
    fn reads_ahead(&self) -> Option<ReadAhead> {
        None
    }

    /// In a preview, for a step after one that destroys: the change in place this step will make, when
    /// what the destruction leaves alone already tells (a pool on a kept disk that a new disk's partition
    /// joins). At run time the step is probed again, as every step is.
    fn change_despite_destruction(&self, _cx: &ProbeContext<'_>, _destroyed: &[&Step]) -> Option<Outlook> {
        None
    }
}

/// A reading that probes of several steps share, slow enough to start early: LVM's reports scan every
/// device (0.13 s apiece in `vm-tests bench`), and a group's probe otherwise waits for the probes before
/// it; `zpool list` is a program's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ReadAhead {
    /// `pvs` and `lvs`.
    LvmReports,
    /// The imported pools.
    ZfsPools,
}

impl ReadAhead {
    /// Reads it into `reports` or `zfs`. A failure is not kept: the probe that asks reads again and says
    /// why.
    pub(crate) fn read(self, system: &dyn System, reports: &Reports, zfs: &Zfs<'_>) {
        match self {
            ReadAhead::LvmReports => drop(lvm::both_reports(system, reports)),
            ReadAhead::ZfsPools => drop(zfs.imported_pools()),
        }
    }
}

/// A ZFS reader for the probes of `steps`: it reads of each dataset what they compare (the properties
/// the plan sets on its datasets), not every property ZFS has.
pub(crate) fn zfs_for<'a>(system: &'a dyn System, steps: &[Step]) -> Zfs<'a> {
    let planned = steps.iter().filter_map(|step| match &step.operation {
        Operation::ZfsCreate(op) => Some(op.properties.keys().cloned()),
        _ => None,
    });
    Zfs::asking(system, planned.flatten())
}

/// The executor's side of an operation: the registry, one line per operation type. `None` for an
/// operation type this executor does not know (a newer plan library).
pub(crate) fn of(operation: &Operation) -> Option<&dyn Perform> {
    Some(match operation {
        Operation::Wipe(op) => op as &dyn Perform,
        Operation::PartitionTable(op) => op,
        Operation::ArrayPartitionTable(op) => op,
        Operation::BcachefsFormat(op) => op,
        Operation::BcachefsSubvolumes(op) => op,
        Operation::LuksFormat(op) => op,
        Operation::LuksOpen(op) => op,
        Operation::HostId(op) => op,
        Operation::ZpoolCreate(op) => op,
        Operation::ZfsCreate(op) => op,
        Operation::Mkfs(op) => op,
        Operation::GrowFs(op) => op,
        Operation::BtrfsSubvolumes(op) => op,
        Operation::MdCreate(op) => op,
        Operation::MdAssemble(op) => op,
        Operation::MdStop(op) => op,
        Operation::PvCreate(op) => op,
        Operation::VgCreate(op) => op,
        Operation::LvCreate(op) => op,
        Operation::VgActivate(op) => op,
        Operation::VgDeactivate(op) => op,
        Operation::Mkswap(op) => op,
        Operation::Mount(op) => op,
        Operation::Swapon(op) => op,
        Operation::WriteNixosModule(op) => op,
        Operation::InitrdHostKey(op) => op,
        Operation::NixosInstall(op) => op,
        Operation::Unmount(op) => op,
        Operation::Swapoff(op) => op,
        Operation::ZpoolExport(op) => op,
        Operation::LuksClose(op) => op,
    })
}

/// A device that must hold `wanted` (a libblkid type) with the UUID `uuid` (when the plan fixes one):
/// done when it does, to do when it is blank, a conflict when it holds something else, or the same kind
/// of thing that is not this plan's.
pub(crate) fn blank_or(cx: &ProbeContext<'_>, device: &str, wanted: &str, uuid: Option<&str>) -> Outlook {
    let system = cx.system;
    if !system.exists(device) {
        // What a kept container holds is there only once it is open (a step before this one): nothing of
        // it can be destroyed now, and it is probed again, and refused unless found done, when it runs.
        return Outlook::Todo { destroys: cx.step.keeps.is_none() };
    }
    let signatures = match cx.signatures(device) {
        Ok(signatures) => signatures,
        Err(error) => return Outlook::Conflict(format!("cannot read what {device} holds: {error}")),
    };
    let clear_it = match &cx.step.keeps {
        // Clearing is the wrong advice for what the plan keeps: the plan is what needs mending.
        Some(kept) => format!("{kept} is kept: give the plan what is there, or stop keeping it"),
        None => format!(
            "if that is not wanted, clear it with `wipefs --all {device}` (or the whole disk with `wipefs --all` \
             on the disk) and apply again"
        ),
    };
    match signatures.first() {
        None => Outlook::Todo { destroys: true },
        Some(found) if found.kind != wanted => {
            Outlook::Conflict(format!("{device} holds {}, the plan puts {wanted} there: {clear_it}", found.kind))
        }
        Some(found) => match (uuid, found.uuid.as_deref()) {
            (Some(planned), Some(have)) if !have.eq_ignore_ascii_case(planned) => Outlook::Conflict(format!(
                "{device} holds a {wanted} that is not this plan's (UUID {have}, the plan's is {planned}): {clear_it}"
            )),
            (Some(planned), None) => Outlook::Conflict(format!(
                "{device} holds a {wanted} without a UUID, the plan's has {planned}: {clear_it}"
            )),
            _ => Outlook::Done(format!("{device} already holds this plan's {wanted}")),
        },
    }
}

/// Runs an operation's own command line, the one the step prints.
pub(crate) fn run_own_command(cx: &RunContext<'_>) -> Result<(), StepError> {
    let line =
        cx.step.operation.command().ok_or_else(|| StepError::Conflict(format!("{} runs no program", cx.step.id)))?;
    cx.system.run(&line, None)?;
    Ok(())
}

/// A filesystem mounted at a private mountpoint (under /run/nix-dabei) for as long as this lives, for a
/// step that works inside it; unmounted on drop. A mount of the same device an interrupted run left there
/// is replaced, so that it has the options asked for; another device there is an error.
pub(crate) struct PrivateMount<'a> {
    system: &'a dyn crate::system::System,
    target: String,
}

impl<'a> PrivateMount<'a> {
    pub(crate) fn new(
        system: &'a dyn crate::system::System,
        mount: layouts::nodes::mount::Mount,
    ) -> std::io::Result<Self> {
        let target = mount.target.clone();
        match system.mounted_at(&target)? {
            Some(entry) if entry.source == mount.source || system.same_device(&entry.source, &mount.source) => {
                system.unmount(&target)?;
            }
            Some(entry) => {
                return Err(std::io::Error::other(format!(
                    "{target} has {} mounted, not {}",
                    entry.source, mount.source
                )))
            }
            None => system.create_private_dir(&target)?,
        }
        system.mount(&mount)?;
        Ok(PrivateMount { system, target })
    }
}

impl Drop for PrivateMount<'_> {
    fn drop(&mut self) {
        // A failure leaves a private mount under /run, which the next run replaces.
        let _ = self.system.unmount(&self.target);
    }
}

/// A closure that wraps an I/O error with what was being done.
pub(crate) fn io(action: String) -> impl FnOnce(std::io::Error) -> StepError {
    move |source| StepError::Io { action, source }
}
