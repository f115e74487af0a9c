//! Software RAID arrays: created, assembled and stopped with mdadm; members recognised by the array UUID
//! blkid reads on them.

use layouts::steps::{ArrayPartitionTable, MdAssemble, MdCreate, MdStop, PartitionTable};

use super::{blank_or, run_own_command, Perform, ProbeContext, RunContext};
use crate::command::CommandError;
use crate::execute::{Outlook, StepError};
use crate::system::System;
use crate::tools::mdadm::ArrayDetail;

impl Perform for MdCreate {
    /// Done when every member carries this plan's array (its UUID is derived from the plan); to do when
    /// they are blank or some are (a run cut inside `mdadm --create`); a conflict when one holds another.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let uuid = self.blkid_uuid();
        let mut all_done = true;
        for device in &self.devices {
            match blank_or(cx, device, "linux_raid_member", Some(&uuid)) {
                Outlook::Done(_) => {}
                Outlook::Todo { .. } => all_done = false,
                conflict => return conflict,
            }
        }
        if all_done {
            Outlook::Done(format!("the members carry this plan's array {}", self.name))
        } else {
            Outlook::Todo { destroys: true }
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)?;
        cx.system.settle();
        Ok(())
    }
}

impl Perform for MdAssemble {
    /// Done when `/dev/md/<name>` is running with this plan's UUID; another array of the name is a conflict.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let device = self.device();
        if !cx.system.exists(&device) {
            return Outlook::Todo { destroys: false };
        }
        match cx.system.run(&self.detail_command(), None) {
            Ok(text) => match ArrayDetail::parse(&text) {
                Ok(detail) if detail.is(&self.uuid) => Outlook::Done(format!("{device} is running")),
                Ok(detail) => Outlook::Conflict(format!(
                    "{device} is another array (UUID {}, the plan's is {})",
                    detail.uuid, self.uuid
                )),
                Err(error) => Outlook::Conflict(format!("cannot read {device}: {error}")),
            },
            // The node is there but the array is not running (stopped, or assembly failed part way).
            Err(CommandError::Failed { .. }) => Outlook::Todo { destroys: false },
            Err(error) => Outlook::Conflict(format!("cannot read {device}: {error}")),
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)?;
        if let Some(member) = self.devices.first() {
            cx.system.wait_for_nodes(member, &[self.device().as_str()])?;
        }
        cx.system.settle();
        Ok(())
    }
}

impl Perform for MdStop {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        if cx.system.exists(&format!("/dev/md/{}", self.name)) {
            Outlook::Todo { destroys: false }
        } else {
            Outlook::Done(format!("array {} is stopped", self.name))
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)
    }
}

/// The table as placed on the array as it is now, or why it cannot be.
fn placed(table: &ArrayPartitionTable, system: &dyn System) -> Result<PartitionTable, String> {
    let (size, sector) =
        system.device_geometry(&table.device).map_err(|e| format!("cannot read the size of {}: {e}", table.device))?;
    table
        .placed(size, sector)
        .map_err(|e| format!("the partitions do not fit array {} ({size} bytes): {e}", table.device))
}

impl Perform for ArrayPartitionTable {
    /// Placed on the array's actual size, then probed like a disk's GPT. Before the array exists, to do.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        if !cx.system.exists(&self.device) {
            return Outlook::Todo { destroys: true };
        }
        let table = match placed(self, cx.system) {
            Ok(table) => table,
            Err(why) => return Outlook::Conflict(why),
        };
        match table.probe(cx) {
            // The kernel reads an array's table when the array starts, and udev then links the partitions
            // under /dev/md: what comes next needs those links.
            Outlook::Done(why) => {
                let nodes: Vec<&str> = self.partitions.iter().map(|p| p.device.as_str()).collect();
                match cx.system.wait_for_nodes(&self.device, &nodes) {
                    Ok(()) => Outlook::Done(why),
                    Err(error) => Outlook::Conflict(error.to_string()),
                }
            }
            other => other,
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        let table = placed(self, cx.system).map_err(StepError::Conflict)?;
        table.perform(cx)
    }
}
