//! LVM: physical volumes, volume groups, logical volumes, activation; read back with `pvs` and `lvs`
//! in JSON.

use layouts::steps::{LvCreate, PvCreate, VgActivate, VgCreate, VgDeactivate};

use super::{blank_or, run_own_command, Perform, ProbeContext, ReadAhead, RunContext};
use crate::command::CommandError;
use crate::execute::{Outlook, StepError};
use crate::reports::Reports;
use crate::system::System;
use crate::tools::lvm::{self, LogicalVolume, PhysicalVolume};

/// Every physical volume, as `pvs` reports it (once between writes).
fn physical_volumes(cx: &ProbeContext<'_>) -> Result<Vec<PhysicalVolume>, String> {
    let output =
        both_reports(cx.system, cx.reports).0.map_err(|e| format!("cannot read LVM's physical volumes: {e}"))?;
    lvm::parse_physical_volumes(&output).map_err(|e| e.to_string())
}

/// Every logical volume, as `lvs` reports it (once between writes).
fn logical_volumes(cx: &ProbeContext<'_>) -> Result<Vec<LogicalVolume>, String> {
    let output =
        both_reports(cx.system, cx.reports).1.map_err(|e| format!("cannot read LVM's logical volumes: {e}"))?;
    lvm::parse_logical_volumes(&output).map_err(|e| e.to_string())
}

/// What `pvs` and `lvs` print, run at once when neither is kept: each scans every device (0.13 s
/// apiece in `vm-tests bench`), and the probes of a group are followed by those of its volumes.
pub(super) fn both_reports(
    system: &dyn System,
    reports: &Reports,
) -> (Result<String, CommandError>, Result<String, CommandError>) {
    std::thread::scope(|scope| {
        let volumes = scope.spawn(|| reports.run(system, &lvm::logical_volumes_command()));
        let physical = reports.run(system, &lvm::physical_volumes_command());
        let logical = volumes.join().unwrap_or_else(|_| {
            Err(CommandError::Spawn {
                command: lvm::logical_volumes_command().to_string(),
                source: std::io::Error::other("the thread reading it panicked"),
            })
        });
        (physical, logical)
    })
}

impl Perform for PvCreate {
    /// Done when the device carries this plan's physical volume (its UUID is derived from the plan).
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        blank_or(cx, &self.device, "LVM2_member", Some(&self.uuid))
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)
    }
}

/// Done when the group is made of exactly the plan's physical volumes (and, kept, has its UUID: one
/// listing serves both); a conflict when another group holds one of them, or the name belongs to a group
/// of other volumes, or a kept group has another UUID.
fn look(op: &VgCreate, cx: &ProbeContext<'_>) -> Outlook {
    let pvs = match physical_volumes(cx) {
        Ok(pvs) => pvs,
        Err(why) => return Outlook::Conflict(why),
    };
    let ours = |pv: &PhysicalVolume| op.uuids.iter().any(|u| u.eq_ignore_ascii_case(&pv.uuid));
    let in_group = |pv: &PhysicalVolume| pv.group.as_deref() == Some(op.name.as_str());
    for pv in &pvs {
        let name = &pv.device;
        match &pv.group {
            Some(group) if ours(pv) && *group != op.name => {
                return Outlook::Conflict(format!("{name} belongs to volume group {group}, not {}", op.name));
            }
            Some(_) if !ours(pv) && in_group(pv) => {
                return Outlook::Conflict(format!(
                    "a volume group {} already exists with {name}, which is not the plan's: rename or remove it",
                    op.name
                ));
            }
            _ => {}
        }
    }
    let members: Vec<&PhysicalVolume> = pvs.iter().filter(|pv| ours(pv) && in_group(pv)).collect();
    if members.len() != op.uuids.len() {
        // A kept group's volumes may not be visible yet (in containers opened by earlier steps): to do, and
        // performing it is refused.
        return Outlook::Todo { destroys: false };
    }
    // A kept group may only be found, with its UUID.
    let found = members.first().and_then(|pv| pv.group_uuid.as_deref());
    match (&op.uuid, found) {
        (Some(uuid), found) if !found.is_some_and(|f| f.eq_ignore_ascii_case(uuid)) => Outlook::Conflict(format!(
            "volume group {} has UUID {}, not the kept group's {uuid}",
            op.name,
            found.unwrap_or("(none)")
        )),
        _ => Outlook::Done(format!("volume group {} is made of the plan's physical volumes", op.name)),
    }
}

/// What stops a kept group or volume from being made: it is not there as the plan says.
fn kept_missing(what: &str, uuid: &str) -> StepError {
    StepError::Conflict(format!("kept {what} ({uuid}) is not there: it is never made anew"))
}

impl Perform for VgCreate {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        look(self, cx)
    }

    fn reads_ahead(&self) -> Option<ReadAhead> {
        Some(ReadAhead::LvmReports)
    }

    /// A group of the name made of other volumes is in the way whatever is made first.
    fn taken_by_others(&self, cx: &ProbeContext<'_>) -> Option<String> {
        match look(self, cx) {
            Outlook::Conflict(why) if why.contains("not the plan's") => Some(why),
            _ => None,
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        if let Some(uuid) = &self.uuid {
            return Err(kept_missing(&format!("volume group {}", self.name), uuid));
        }
        run_own_command(cx)
    }
}

impl Perform for LvCreate {
    /// Done when the group (the plan's own, as the step before checked) has the volume; a kept volume
    /// must be there with its UUID (another is a conflict), and is never made.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let lvs = match logical_volumes(cx) {
            Ok(lvs) => lvs,
            Err(why) => return Outlook::Conflict(why),
        };
        let found = lvs.iter().find(|lv| lv.group == self.group && lv.name == self.name);
        let volume = format!("{}/{}", self.group, self.name);
        match (found, &self.uuid) {
            (Some(lv), Some(uuid)) if !lv.uuid.eq_ignore_ascii_case(uuid) => {
                Outlook::Conflict(format!("logical volume {volume} has UUID {}, not the kept volume's {uuid}", lv.uuid))
            }
            (Some(_), _) => Outlook::Done(format!("logical volume {volume} exists")),
            // Its group may not be visible yet (in containers opened by earlier steps); performing is refused.
            (None, _) => Outlook::Todo { destroys: false },
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        if let Some(uuid) = &self.uuid {
            return Err(kept_missing(&format!("logical volume {}/{}", self.group, self.name), uuid));
        }
        run_own_command(cx)
    }
}

impl Perform for VgActivate {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        if self.devices.iter().all(|d| cx.system.exists(d)) {
            Outlook::Done(format!("the volumes of {} are active", self.name))
        } else {
            Outlook::Todo { destroys: false }
        }
    }

    /// vgchange waits for udev to make the volumes' nodes (LVM's udev synchronisation); the step then
    /// waits for exactly those nodes, which is all the steps after it need, rather than for every event
    /// udev has queued (`udevadm settle` was a tenth of an LVM mount in `vm-tests bench`).
    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)?;
        let nodes: Vec<&str> = self.devices.iter().map(String::as_str).collect();
        cx.system.wait_for_nodes(&format!("volume group {}", self.name), &nodes)?;
        Ok(())
    }
}

impl Perform for VgDeactivate {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        if self.devices.iter().any(|d| cx.system.exists(d)) {
            Outlook::Todo { destroys: false }
        } else {
            Outlook::Done(format!("the volumes of {} are inactive", self.name))
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)
    }
}
